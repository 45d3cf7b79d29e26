// Json: a strict RFC 8259 JSON value, parser and writer (configs, safetensors headers).
//
// Strict means: exactly one value plus whitespace; no comments, trailing commas, leading zeros,
// NaN/Infinity, single quotes, control characters or invalid UTF-8 in strings, lone surrogates,
// duplicate object keys, or nesting deeper than 256. Objects keep their key order. Numbers keep
// their double value and, for integer literals that fit, the exact int64.
//
// Every parse error is a megagrad::Error "[json] <what>: line L col C: <problem>"; accessor errors
// ("[json] key "x" not found ...", "[json] expected an integer, got ...") name the value involved.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace megagrad {

class Json {
 public:
  enum class Type : uint8_t { Null, Bool, Number, String, Array, Object };
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;  // in key order

  Json() = default;  // null
  Json(std::nullptr_t) {}
  Json(bool b) : type_(Type::Bool), bool_(b) {}
  Json(double d) : type_(Type::Number), num_(d) {}
  Json(int64_t i) : type_(Type::Number), is_int_(true), int_(i), num_((double)i) {}
  Json(int i) : Json((int64_t)i) {}
  Json(uint64_t u);  // must fit in int64
  Json(std::string s) : type_(Type::String), str_(std::move(s)) {}
  Json(const char* s) : Json(std::string(s)) {}
  Json(Array a) : type_(Type::Array), arr_(std::move(a)) {}
  Json(Object o) : type_(Type::Object), obj_(std::move(o)) {}
  static Json array() { return Json(Array{}); }
  static Json object() { return Json(Object{}); }

  // Parses exactly one JSON text; `what` names the source in error messages (a file name, ...).
  static Json parse(std::string_view text, std::string_view what = "json");

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_integer() const { return type_ == Type::Number && is_int_; }  // an int64 literal
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  // Typed access; each throws "[json] expected <type>, got <value>" on a mismatch.
  bool get_bool() const;
  int64_t get_int() const;     // integer literals only ("3", not "3.0"), within int64
  double get_double() const;   // any number
  const std::string& get_string() const;
  const Array& elements() const;  // an array's values
  const Object& items() const;    // an object's (key, value) pairs, in order

  size_t size() const;  // elements of an array, keys of an object (error otherwise)
  bool contains(std::string_view key) const;  // false for non-objects
  const Json* find(std::string_view key) const;  // nullptr when absent
  const Json& at(std::string_view key) const;  // "[json] key "k" not found (keys: ...)"
  const Json& at(size_t index) const;          // array element, bounds-checked

  // Building (for writers): append to an array, set (or replace) a key of an object.
  Json& push_back(Json v);
  Json& set(std::string key, Json v);

  // Compact with indent < 0, else pretty-printed with `indent` spaces per level. Throws for
  // NaN/Infinity, which JSON cannot represent.
  std::string dump(int indent = -1) const;

  // "integer 3", "string "abc"", "object with 2 keys": for error messages.
  std::string describe() const;

 private:
  void dump_to(std::string& out, int indent, int level) const;
  friend class JsonParser;

  Type type_ = Type::Null;
  bool bool_ = false;
  bool is_int_ = false;
  int64_t int_ = 0;
  double num_ = 0;
  std::string str_;
  Array arr_;
  Object obj_;
};

// Typed access to a member of an object, for readers of nested configurations: every error names
// the member's path, e.g. "[json] train.steps: expected an integer, got string "5"" or
// "[json] train: key "steps" not found (keys: ...)". `path` is the object's own path ("" for the
// root; then the member's path is its key).
const Json& json_member(const Json& obj, std::string_view path, std::string_view key);
int64_t json_int(const Json& obj, std::string_view path, std::string_view key);
double json_double(const Json& obj, std::string_view path, std::string_view key);
bool json_bool(const Json& obj, std::string_view path, std::string_view key);
const std::string& json_string(const Json& obj, std::string_view path, std::string_view key);
// "train.steps" from ("train", "steps"); "steps" from ("", "steps").
std::string json_path(std::string_view path, std::string_view key);

// Appends s as a quoted, escaped JSON string.
void json_escape_to(std::string& out, std::string_view s);

}  // namespace megagrad
