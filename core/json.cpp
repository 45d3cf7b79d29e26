// A strict RFC 8259 parser (recursive descent over the text, one byte at a time) and writer.
#include "core/json.h"
#include <charconv>
#include <cmath>
#include <unordered_set>
#include "core/error.h"

namespace megagrad {

namespace {
constexpr int kMaxDepth = 256;

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += (char)cp;
  } else if (cp < 0x800) {
    out += (char)(0xC0 | (cp >> 6));
    out += (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += (char)(0xE0 | (cp >> 12));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  } else {
    out += (char)(0xF0 | (cp >> 18));
    out += (char)(0x80 | ((cp >> 12) & 0x3F));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  }
}

// Length of the well-formed UTF-8 sequence at s[0..n) (Unicode table 3-7: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0 when it is not well-formed.
size_t utf8_sequence_length(const unsigned char* s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else return 0;
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; ++i)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return len;
}
}  // namespace

class JsonParser {
 public:
  JsonParser(std::string_view text, std::string_view what) : s_(text), what_(what) {}

  Json parse_document() {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") fail_at(0, "a byte order mark is not allowed");
    Json v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail_at(pos_, "unexpected {} after the JSON value", here());
    return v;
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail_at(size_t pos, fmt::format_string<Args...> f, Args&&... args) {
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < pos && i < s_.size(); ++i)
      if (s_[i] == '\n') ++line, line_start = i + 1;
    fail("json", "{}: line {} col {}: {}", what_, line, pos - line_start + 1,
         fmt::format(f, std::forward<Args>(args)...));
  }
  // The byte at pos_, for messages: "'x'", "byte 0x07" or "end of input".
  std::string here() const {
    if (pos_ >= s_.size()) return "end of input";
    unsigned char c = (unsigned char)s_[pos_];
    if (c >= 0x20 && c < 0x7F) return fmt::format("'{}'", (char)c);
    return fmt::format("byte 0x{:02X}", c);
  }
  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }
  void skip_ws() {
    while (!at_end() && is_ws(s_[pos_])) ++pos_;
  }
  void expect(char c, std::string_view context) {
    if (peek() != c || at_end()) fail_at(pos_, "expected '{}' {}, got {}", c, context, here());
    ++pos_;
  }

  Json parse_value(int depth) {
    skip_ws();
    switch (peek()) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': return Json(parse_string());
      case 't': return parse_literal("true", Json(true));
      case 'f': return parse_literal("false", Json(false));
      case 'n': return parse_literal("null", Json());
      default: break;
    }
    if (at_end()) fail_at(pos_, "unexpected end of input, expected a value");
    if (peek() == '-' || is_digit(peek())) return parse_number();
    std::string_view rest = s_.substr(pos_);
    if (rest.starts_with("NaN") || rest.starts_with("Infinity"))
      fail_at(pos_, "NaN and Infinity are not valid JSON");
    fail_at(pos_, "expected a value, got {}", here());
  }

  Json parse_literal(std::string_view word, Json value) {
    if (s_.substr(pos_, word.size()) != word) fail_at(pos_, "invalid literal (expected '{}')", word);
    pos_ += word.size();
    return value;
  }

  Json parse_object(int depth) {
    if (depth > kMaxDepth) fail_at(pos_, "nesting deeper than {} levels", kMaxDepth);
    ++pos_;  // '{'
    Json obj = Json::object();
    std::unordered_set<std::string> seen;
    skip_ws();
    if (peek() == '}') return ++pos_, obj;
    for (;;) {
      skip_ws();
      if (peek() == '}') fail_at(pos_, "trailing comma in object");
      if (peek() != '"' || at_end()) fail_at(pos_, "expected a string key, got {}", here());
      size_t key_pos = pos_;
      std::string key = parse_string();
      if (!seen.insert(key).second) fail_at(key_pos, "duplicate key \"{}\"", key);
      skip_ws();
      expect(':', "after an object key");
      Json v = parse_value(depth);
      obj.obj_.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (peek() == ',' && !at_end()) { ++pos_; continue; }
      if (peek() == '}' && !at_end()) { ++pos_; return obj; }
      fail_at(pos_, "expected ',' or '}}' in object, got {}", here());
    }
  }

  Json parse_array(int depth) {
    if (depth > kMaxDepth) fail_at(pos_, "nesting deeper than {} levels", kMaxDepth);
    ++pos_;  // '['
    Json arr = Json::array();
    skip_ws();
    if (peek() == ']' && !at_end()) return ++pos_, arr;
    for (;;) {
      skip_ws();
      if (peek() == ']' && !at_end()) fail_at(pos_, "trailing comma in array");
      arr.arr_.push_back(parse_value(depth));
      skip_ws();
      if (peek() == ',' && !at_end()) { ++pos_; continue; }
      if (peek() == ']' && !at_end()) { ++pos_; return arr; }
      fail_at(pos_, "expected ',' or ']' in array, got {}", here());
    }
  }

  uint32_t parse_hex4() {  // pos_ is just after "\u"
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      char c = peek();
      int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (d < 0 || at_end()) fail_at(pos_, "invalid \\u escape: expected 4 hex digits, got {}", here());
      v = v * 16 + (uint32_t)d;
    }
    return v;
  }

  std::string parse_string() {
    size_t start = pos_++;  // '"'
    std::string out;
    for (;;) {
      if (at_end()) fail_at(start, "unterminated string");
      unsigned char c = (unsigned char)s_[pos_];
      if (c == '"') { ++pos_; return out; }
      if (c < 0x20) fail_at(pos_, "control character 0x{:02X} in a string (must be escaped)", c);
      if (c >= 0x80) {
        size_t len = utf8_sequence_length((const unsigned char*)s_.data() + pos_, s_.size() - pos_);
        if (len == 0) fail_at(pos_, "invalid UTF-8 in a string");
        out.append(s_.substr(pos_, len));
        pos_ += len;
        continue;
      }
      if (c != '\\') { out += (char)c; ++pos_; continue; }
      size_t esc = pos_++;
      char e = peek();
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(esc, "lone low surrogate \\u{:04X}", cp);
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate must be followed by a low one
            if (s_.substr(pos_, 2) != "\\u") fail_at(esc, "lone high surrogate \\u{:04X}", cp);
            pos_ += 2;
            uint32_t lo = parse_hex4();
            if (lo < 0xDC00 || lo > 0xDFFF)
              fail_at(esc, "high surrogate \\u{:04X} not followed by a low surrogate", cp);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          pos_ = esc + 1;
          if (at_end()) fail_at(start, "unterminated string");
          fail_at(esc, "invalid escape: '\\' followed by {}", here());
      }
    }
  }

  Json parse_number() {
    size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (s_.substr(pos_).starts_with("Infinity")) fail_at(start, "NaN and Infinity are not valid JSON");
    if (!is_digit(peek())) fail_at(pos_, "expected a digit, got {}", here());
    if (peek() == '0' && pos_ + 1 < s_.size() && is_digit(s_[pos_ + 1]))
      fail_at(pos_, "leading zeros are not allowed in numbers");
    while (is_digit(peek())) ++pos_;
    bool integer = true;
    if (peek() == '.') {
      integer = false;
      ++pos_;
      if (!is_digit(peek())) fail_at(pos_, "expected a digit after '.', got {}", here());
      while (is_digit(peek())) ++pos_;
    }
    size_t exp_pos = pos_;
    if (peek() == 'e' || peek() == 'E') {
      integer = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!is_digit(peek())) fail_at(pos_, "expected a digit in the exponent, got {}", here());
      while (is_digit(peek())) ++pos_;
    }
    std::string_view lit = s_.substr(start, pos_ - start);
    Json v(0.0);
    auto [p, ec] = std::from_chars(lit.data(), lit.data() + lit.size(), v.num_);
    if (ec == std::errc::result_out_of_range) {
      // Overflow is an error; underflow rounds to zero. Tell them apart by the decimal exponent
      // of the first significant digit.
      std::string_view mant = s_.substr(start, exp_pos - start);
      if (mant[0] == '-') mant.remove_prefix(1);
      size_t dot = std::min(mant.find('.'), mant.size());
      size_t first = std::min(mant.find_first_of("123456789"), mant.size());
      int64_t mag = first < dot ? (int64_t)(dot - first) : -(int64_t)(first - dot - 1);
      int64_t e = 0;
      std::string_view es = s_.substr(exp_pos, pos_ - exp_pos);
      if (!es.empty()) {
        es.remove_prefix(1);
        bool neg = es[0] == '-';
        if (es[0] == '-' || es[0] == '+') es.remove_prefix(1);
        for (char c : es) e = std::min<int64_t>(e * 10 + (c - '0'), 1'000'000'000);
        if (neg) e = -e;
      }
      if (mag + e > 0) fail_at(start, "number {} is out of the range of a double", lit);
      v.num_ = lit[0] == '-' ? -0.0 : 0.0;
    } else if (ec != std::errc() || p != lit.data() + lit.size()) {
      fail_at(start, "invalid number {}", lit);
    }
    if (integer) {
      auto [q, iec] = std::from_chars(lit.data(), lit.data() + lit.size(), v.int_);
      v.is_int_ = iec == std::errc() && q == lit.data() + lit.size();  // false beyond int64
    }
    return v;
  }

  std::string_view s_;
  std::string_view what_;
  size_t pos_ = 0;
};

Json Json::parse(std::string_view text, std::string_view what) {
  return JsonParser(text, what).parse_document();
}

Json::Json(uint64_t u) : Json((int64_t)u) {
  if (u > (uint64_t)INT64_MAX) fail("json", "integer {} does not fit in int64", u);
}

// ---- access ----

std::string Json::describe() const {
  switch (type_) {
    case Type::Null: return "null";
    case Type::Bool: return bool_ ? "true" : "false";
    case Type::Number: return is_int_ ? fmt::format("integer {}", int_) : fmt::format("number {}", num_);
    case Type::String:
      return str_.size() <= 40 ? fmt::format("string \"{}\"", str_)
                               : fmt::format("string \"{}...\"", str_.substr(0, 40));
    case Type::Array: return fmt::format("array of {} elements", arr_.size());
    case Type::Object: return fmt::format("object with {} keys", obj_.size());
  }
  return "?";
}

bool Json::get_bool() const {
  if (!is_bool()) fail("json", "expected true or false, got {}", describe());
  return bool_;
}
int64_t Json::get_int() const {
  if (!is_integer()) fail("json", "expected an integer (int64), got {}", describe());
  return int_;
}
double Json::get_double() const {
  if (!is_number()) fail("json", "expected a number, got {}", describe());
  return num_;
}
const std::string& Json::get_string() const {
  if (!is_string()) fail("json", "expected a string, got {}", describe());
  return str_;
}
const Json::Array& Json::elements() const {
  if (!is_array()) fail("json", "expected an array, got {}", describe());
  return arr_;
}
const Json::Object& Json::items() const {
  if (!is_object()) fail("json", "expected an object, got {}", describe());
  return obj_;
}
size_t Json::size() const {
  if (is_array()) return arr_.size();
  if (is_object()) return obj_.size();
  fail("json", "size() of {}: expected an array or an object", describe());
}
const Json* Json::find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const auto& [k, v] : obj_)
    if (k == key) return &v;
  return nullptr;
}
bool Json::contains(std::string_view key) const { return find(key) != nullptr; }

const Json& Json::at(std::string_view key) const {
  if (const Json* v = find(key)) return *v;
  if (!is_object()) fail("json", "looking up key \"{}\": expected an object, got {}", key, describe());
  std::string keys;
  for (size_t i = 0; i < obj_.size() && i < 10; ++i) keys += fmt::format("{}\"{}\"", i ? ", " : "", obj_[i].first);
  if (obj_.size() > 10) keys += ", ...";
  fail("json", "key \"{}\" not found (keys: {})", key, obj_.empty() ? "none" : keys);
}
const Json& Json::at(size_t index) const {
  const Array& a = elements();
  if (index >= a.size()) fail("json", "index {} out of range for an array of {} elements", index, a.size());
  return a[index];
}

// ---- access by path ----

std::string json_path(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

const Json& json_member(const Json& obj, std::string_view path, std::string_view key) {
  if (!obj.is_object())
    fail("json", "{}: expected an object (looking up key \"{}\"), got {}", path.empty() ? "the root" : path, key,
         obj.describe());
  if (const Json* v = obj.find(key)) return *v;
  std::string keys;
  const Json::Object& items = obj.items();
  for (size_t i = 0; i < items.size() && i < 10; ++i) keys += fmt::format("{}\"{}\"", i ? ", " : "", items[i].first);
  if (items.size() > 10) keys += ", ...";
  fail("json", "{}key \"{}\" not found (keys: {})", path.empty() ? "" : fmt::format("{}: ", path), key,
       items.empty() ? "none" : keys);
}
int64_t json_int(const Json& obj, std::string_view path, std::string_view key) {
  const Json& v = json_member(obj, path, key);
  if (!v.is_integer()) fail("json", "{}: expected an integer, got {}", json_path(path, key), v.describe());
  return v.get_int();
}
double json_double(const Json& obj, std::string_view path, std::string_view key) {
  const Json& v = json_member(obj, path, key);
  if (!v.is_number()) fail("json", "{}: expected a number, got {}", json_path(path, key), v.describe());
  return v.get_double();
}
bool json_bool(const Json& obj, std::string_view path, std::string_view key) {
  const Json& v = json_member(obj, path, key);
  if (!v.is_bool()) fail("json", "{}: expected true or false, got {}", json_path(path, key), v.describe());
  return v.get_bool();
}
const std::string& json_string(const Json& obj, std::string_view path, std::string_view key) {
  const Json& v = json_member(obj, path, key);
  if (!v.is_string()) fail("json", "{}: expected a string, got {}", json_path(path, key), v.describe());
  return v.get_string();
}

Json& Json::push_back(Json v) {
  if (!is_array()) fail("json", "push_back on {}: expected an array", describe());
  arr_.push_back(std::move(v));
  return arr_.back();
}
Json& Json::set(std::string key, Json v) {
  if (!is_object()) fail("json", "set(\"{}\") on {}: expected an object", key, describe());
  for (auto& [k, old] : obj_)
    if (k == key) return old = std::move(v);
  obj_.emplace_back(std::move(key), std::move(v));
  return obj_.back().second;
}

// ---- writing ----

void json_escape_to(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    unsigned char c = (unsigned char)ch;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += ch;
    }
  }
  out += '"';
}

void Json::dump_to(std::string& out, int indent, int level) const {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append((size_t)(indent * lvl), ' ');
  };
  switch (type_) {
    case Type::Null: out += "null"; return;
    case Type::Bool: out += bool_ ? "true" : "false"; return;
    case Type::String: json_escape_to(out, str_); return;
    case Type::Number: {
      if (is_int_) { out += std::to_string(int_); return; }
      if (!std::isfinite(num_)) fail("json", "cannot write {}: JSON has no NaN or Infinity", num_);
      char buf[32];
      auto [p, ec] = std::to_chars(buf, buf + sizeof buf, num_);  // shortest round-trip form
      std::string_view sv(buf, (size_t)(p - buf));
      out += sv;
      // "3" would read back as an integer literal: keep it a double.
      if (sv.find_first_of(".e") == std::string_view::npos) out += ".0";
      return;
    }
    case Type::Array:
      if (arr_.empty()) { out += "[]"; return; }
      out += '[';
      for (size_t i = 0; i < arr_.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        arr_[i].dump_to(out, indent, level + 1);
      }
      newline(level);
      out += ']';
      return;
    case Type::Object:
      if (obj_.empty()) { out += "{}"; return; }
      out += '{';
      for (size_t i = 0; i < obj_.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        json_escape_to(out, obj_[i].first);
        out += indent < 0 ? ":" : ": ";
        obj_[i].second.dump_to(out, indent, level + 1);
      }
      newline(level);
      out += '}';
      return;
  }
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

}  // namespace megagrad
