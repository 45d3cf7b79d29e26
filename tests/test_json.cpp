// core/json: the strict parser (values, escapes, error positions, limits) and the writer.
#include <catch2/catch.hpp>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <random>
#include "core/atomic_file.h"
#include "core/json.h"

using namespace megagrad;
using Catch::Contains;

TEST_CASE("json: scalars, integer literals and int64 limits", "[json]") {
  REQUIRE(Json::parse("null").is_null());
  REQUIRE(Json::parse(" true ").get_bool() == true);
  REQUIRE(Json::parse("\n\tfalse\r\n").get_bool() == false);

  Json i = Json::parse("42");
  REQUIRE(i.is_integer());
  REQUIRE(i.get_int() == 42);
  REQUIRE(i.get_double() == 42.0);
  REQUIRE(Json::parse("-0").get_int() == 0);
  REQUIRE(Json::parse("9223372036854775807").get_int() == INT64_MAX);
  REQUIRE(Json::parse("-9223372036854775808").get_int() == INT64_MIN);

  // Not integer literals: a fraction, an exponent, or beyond int64. They keep their double value.
  for (const char* text : {"3.0", "1e3", "2E+2", "9223372036854775808", "-9223372036854775809"}) {
    Json v = Json::parse(text);
    INFO(text);
    REQUIRE(v.is_number());
    REQUIRE_FALSE(v.is_integer());
    REQUIRE(v.get_double() == std::strtod(text, nullptr));
    REQUIRE_THROWS_WITH(v.get_int(), Contains("[json]") && Contains("expected an integer"));
  }
}

TEST_CASE("json: numbers agree with strtod", "[json]") {
  // strtod (C locale) is an independent decimal-to-double conversion.
  for (const char* text : {"0", "-0.0", "0.1", "-1.25e-2", "123456789.987654321", "1e308", "1.7976931348623157e308",
                           "5e-324", "2.2250738585072014e-308", "4.9406564584124654e-324", "1E-7", "0.30000000000000004",
                           "12345678901234567890123", "1e-400", "-1e-400"}) {
    INFO(text);
    double expect = std::strtod(text, nullptr);
    double got = Json::parse(text).get_double();
    REQUIRE(std::memcmp(&got, &expect, sizeof got) == 0);  // bit-exact, sign of zero included
  }
}

TEST_CASE("json: strings, escapes and UTF-8", "[json]") {
  REQUIRE(Json::parse(R"("a\"b\\c\/d\be\ff\ng\rh\ti")").get_string() == "a\"b\\c/d\be\ff\ng\rh\ti");
  REQUIRE(Json::parse(R"("\u0041\u00e9\u20AC")").get_string() == "A\xC3\xA9\xE2\x82\xAC");
  // U+1F600 as a surrogate pair, and U+10FFFF (the largest code point).
  REQUIRE(Json::parse(R"("\uD83D\uDE00")").get_string() == "\xF0\x9F\x98\x80");
  REQUIRE(Json::parse(R"("\uDBFF\uDFFF")").get_string() == "\xF4\x8F\xBF\xBF");
  // Raw UTF-8 passes through unchanged; \u0000 gives a real NUL byte.
  REQUIRE(Json::parse("\"caf\xC3\xA9 \xF0\x9F\x98\x80\"").get_string() == "caf\xC3\xA9 \xF0\x9F\x98\x80");
  std::string nul = Json::parse(R"("a\u0000b")").get_string();
  REQUIRE(nul.size() == 3);
  REQUIRE(nul[1] == '\0');
  REQUIRE(Json::parse("\"\"").get_string().empty());
}

TEST_CASE("json: arrays, objects in key order, and accessors", "[json]") {
  Json v = Json::parse(R"({"zeta": 1, "alpha": [1, 2.5, {"c": null}], "mid": "s", "t": true, "e": {}, "a": []})");
  REQUIRE(v.is_object());
  REQUIRE(v.size() == 6);
  std::vector<std::string> keys;
  for (const auto& [k, val] : v.items()) keys.push_back(k);
  REQUIRE(keys == std::vector<std::string>{"zeta", "alpha", "mid", "t", "e", "a"});
  REQUIRE(v.at("zeta").get_int() == 1);
  REQUIRE(v.at("alpha").size() == 3);
  REQUIRE(v.at("alpha").at(1).get_double() == 2.5);
  REQUIRE(v.at("alpha").at(2).contains("c"));
  REQUIRE(v.at("alpha").at(2).at("c").is_null());
  REQUIRE(v.at("mid").get_string() == "s");
  REQUIRE(v.at("t").get_bool());
  REQUIRE(v.at("e").size() == 0);
  REQUIRE(v.at("a").elements().empty());
  REQUIRE_FALSE(v.contains("missing"));
  REQUIRE_FALSE(v.at("mid").contains("x"));  // not an object: contains nothing

  REQUIRE_THROWS_WITH(v.at("missing"), Contains("[json]") && Contains("key \"missing\" not found") &&
                                           Contains("\"zeta\""));
  REQUIRE_THROWS_WITH(v.at("alpha").at(3), Contains("index 3 out of range"));
  REQUIRE_THROWS_WITH(v.at("mid").get_int(), Contains("expected an integer") && Contains("string \"s\""));
  REQUIRE_THROWS_WITH(v.at("zeta").get_string(), Contains("expected a string") && Contains("integer 1"));
  REQUIRE_THROWS_WITH(v.at("zeta").get_bool(), Contains("expected true or false"));
  REQUIRE_THROWS_WITH(v.at("mid").get_double(), Contains("expected a number"));
  REQUIRE_THROWS_WITH(v.at("mid").at("x"), Contains("expected an object") && Contains("\"x\""));
  REQUIRE_THROWS_WITH(v.at("zeta").size(), Contains("expected an array or an object"));
  REQUIRE_THROWS_WITH(v.at("alpha").items(), Contains("expected an object"));
}

TEST_CASE("json: every malformed input names its line, column and problem", "[json]") {
  struct Case {
    std::string text;
    int line, col;
    std::string problem;
  };
  const std::vector<Case> cases = {
      {"", 1, 1, "unexpected end of input"},
      {"   ", 1, 4, "unexpected end of input"},
      {"{} x", 1, 4, "unexpected 'x' after the JSON value"},
      {"1 2", 1, 3, "unexpected '2' after the JSON value"},
      {"[1]\n\n  ]", 3, 3, "unexpected ']' after the JSON value"},
      {"[1,]", 1, 4, "trailing comma in array"},
      {"{\"a\":1,}", 1, 8, "trailing comma in object"},
      {"{\"a\":1,\"a\":2}", 1, 8, "duplicate key \"a\""},
      {"{\"a\":1,\"\\u0061\":2}", 1, 8, "duplicate key \"a\""},  // the same key once unescaped
      {"01", 1, 1, "leading zeros"},
      {"-012", 1, 2, "leading zeros"},
      {"1.", 1, 3, "expected a digit after '.'"},
      {"1.e5", 1, 3, "expected a digit after '.'"},
      {".5", 1, 1, "expected a value, got '.'"},
      {"+1", 1, 1, "expected a value, got '+'"},
      {"-", 1, 2, "expected a digit, got end of input"},
      {"1e", 1, 3, "expected a digit in the exponent"},
      {"1e+", 1, 4, "expected a digit in the exponent"},
      {"0x10", 1, 2, "unexpected 'x'"},
      {"NaN", 1, 1, "NaN and Infinity are not valid JSON"},
      {"Infinity", 1, 1, "NaN and Infinity"},
      {"[-Infinity]", 1, 2, "NaN and Infinity"},
      {"1e400", 1, 1, "out of the range of a double"},
      {"-1e400", 1, 1, "out of the range of a double"},
      {"\"abc", 1, 1, "unterminated string"},
      {"\"abc\\", 1, 1, "unterminated string"},
      {"\"a\\qb\"", 1, 3, "invalid escape: '\\' followed by 'q'"},
      {"\"a\\'\"", 1, 3, "invalid escape"},
      {"\"\\u12G4\"", 1, 6, "expected 4 hex digits, got 'G'"},
      {"\"\\u12\"", 1, 6, "expected 4 hex digits"},
      {"\"\\uD800\"", 1, 2, "lone high surrogate \\uD800"},
      {"\"\\uDC00\"", 1, 2, "lone low surrogate \\uDC00"},
      {"\"\\uD800\\u0041\"", 1, 2, "not followed by a low surrogate"},
      {"\"a\tb\"", 1, 3, "control character 0x09"},
      {"\"a\nb\"", 1, 3, "control character 0x0A"},
      {"\"\xC3\x28\"", 1, 2, "invalid UTF-8"},          // bad continuation byte
      {"\"\xC0\xAF\"", 1, 2, "invalid UTF-8"},          // overlong '/'
      {"\"\xED\xA0\x80\"", 1, 2, "invalid UTF-8"},      // an encoded surrogate
      {"\"\xF4\x90\x80\x80\"", 1, 2, "invalid UTF-8"},  // above U+10FFFF
      {"\"\xE2\x82\"", 1, 2, "invalid UTF-8"},          // truncated sequence
      {"\"\xFF\"", 1, 2, "invalid UTF-8"},
      {"tru", 1, 1, "invalid literal (expected 'true')"},
      {"nul", 1, 1, "invalid literal"},
      {"True", 1, 1, "expected a value, got 'T'"},
      {"{a:1}", 1, 2, "expected a string key, got 'a'"},
      {"{'a':1}", 1, 2, "expected a string key"},
      {"{\"a\" 1}", 1, 6, "expected ':' after an object key, got '1'"},
      {"{\"a\":}", 1, 6, "expected a value, got '}'"},
      {"{\"a\":1 \"b\":2}", 1, 8, "expected ',' or '}' in object"},
      {"[1 2]", 1, 4, "expected ',' or ']' in array"},
      {"[1,", 1, 4, "unexpected end of input"},
      {"{", 1, 2, "expected a string key, got end of input"},
      {"// c\n1", 1, 1, "expected a value, got '/'"},
      {"\xEF\xBB\xBF{}", 1, 1, "byte order mark"},
      {"\x01", 1, 1, "expected a value, got byte 0x01"},
      {std::string("[1,\0]", 5), 1, 4, "expected a value, got byte 0x00"},
      {"{\n  \"a\": 1,\n  \"b\": tru\n}", 3, 8, "invalid literal"},
  };
  for (const Case& c : cases) {
    INFO("input: " << c.text);
    std::string where = "[json] cfg.json: line " + std::to_string(c.line) + " col " + std::to_string(c.col) + ": ";
    REQUIRE_THROWS_WITH(Json::parse(c.text, "cfg.json"), Contains(where) && Contains(c.problem));
  }
}

TEST_CASE("json: nesting up to 256 levels, no deeper", "[json]") {
  auto nested = [](int depth) { return std::string((size_t)depth, '[') + std::string((size_t)depth, ']'); };
  REQUIRE(Json::parse(nested(256)).is_array());
  REQUIRE_THROWS_WITH(Json::parse(nested(257)), Contains("line 1 col 257") && Contains("deeper than 256"));
  std::string objects;
  for (int i = 0; i < 257; ++i) objects += "{\"k\":";
  objects += "1" + std::string(257, '}');
  REQUIRE_THROWS_WITH(Json::parse(objects), Contains("deeper than 256"));
  // A hostile input much deeper than the limit fails cleanly (no stack overflow).
  REQUIRE_THROWS_WITH(Json::parse(std::string(1000000, '[')), Contains("deeper than 256"));
}

TEST_CASE("json: dump, compact and indented", "[json]") {
  Json v = Json::object();
  v.set("b", Json(1));
  v.set("a", Json(Json::Array{Json(true), Json(), Json(2.5), Json("x\"y")}));
  v.set("e", Json::object());
  v.set("z", Json::array());
  REQUIRE(v.dump() == R"({"b":1,"a":[true,null,2.5,"x\"y"],"e":{},"z":[]})");
  REQUIRE(v.dump(2) ==
          "{\n"
          "  \"b\": 1,\n"
          "  \"a\": [\n"
          "    true,\n"
          "    null,\n"
          "    2.5,\n"
          "    \"x\\\"y\"\n"
          "  ],\n"
          "  \"e\": {},\n"
          "  \"z\": []\n"
          "}");
  v.set("b", Json(7));  // set replaces in place, keeping the position
  REQUIRE(v.dump().starts_with(R"({"b":7,"a")"));
  // Escapes: the required ones, control characters as \u00XX, UTF-8 and '/' as they are.
  REQUIRE(Json(std::string("q\"\\\b\f\n\r\t\x01\x1F/\xC3\xA9\x7F")).dump() ==
          "\"q\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f/\xC3\xA9\x7F\"");
  // A whole-valued double stays a double; integers stay integers.
  REQUIRE(Json(3.0).dump() == "3.0");
  REQUIRE_FALSE(Json::parse(Json(3.0).dump()).is_integer());
  REQUIRE(Json(-3.0).dump() == "-3.0");
  REQUIRE(Json(int64_t(-3)).dump() == "-3");
  REQUIRE(Json(INT64_MIN).dump() == "-9223372036854775808");
  REQUIRE(Json(1e300).dump() == "1e+300");
  REQUIRE_THROWS_WITH(Json(std::nan("")).dump(), Contains("[json]") && Contains("NaN"));
  REQUIRE_THROWS_WITH(Json(HUGE_VAL).dump(), Contains("[json]"));
}

TEST_CASE("json: dump then parse round-trips values exactly", "[json]") {
  const char* doc = R"({"s": "tab\t nl\n uni \u00e9 \ud83d\ude00 nul \u0000 end",
    "n": [0, -0.0, 0.1, 1e-300, 5e-324, 1.7976931348623157e308, -123456789012345678, 2.5e10],
    "o": {"": {"deep": [[[]], {}]}, "t": true, "f": false, "null": null}})";
  Json v = Json::parse(doc);
  for (int indent : {-1, 0, 1, 4}) {
    std::string text = v.dump(indent);
    INFO(text);
    REQUIRE(Json::parse(text).dump() == v.dump());
  }
  // Shortest round-trip formatting: every finite double comes back bit-exact.
  std::mt19937_64 rng(123);
  for (int i = 0; i < 20000; ++i) {
    uint64_t bits = rng();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    if (!std::isfinite(d)) continue;
    double back = Json::parse(Json(d).dump()).get_double();
    INFO(Json(d).dump());
    REQUIRE(std::memcmp(&back, &d, sizeof d) == 0);
  }
}

TEST_CASE("json: reads the reference case's config.json", "[json]") {
  std::string path = std::string(MEGAGRAD_TEST_DATA) + "/ref/i_tiny_softmax_simple_layernorm/config.json";
  Json cfg = Json::parse(read_file(path, "test", 1 << 20), path);
  REQUIRE(cfg.at("embed_dim").get_int() == 8);
  REQUIRE(cfg.at("chunk_size").get_int() == -1);
  REQUIRE(cfg.at("truncation").is_null());
  REQUIRE(cfg.at("prenorm").get_bool());
  REQUIRE(cfg.at("param_noise").get_double() == 0.0);
  REQUIRE_FALSE(cfg.at("param_noise").is_integer());
  REQUIRE(cfg.at("attention_activation").get_string() == "softmax");
  REQUIRE(cfg.at("_f64_patches").size() == 3);
  const Json& x = cfg.at("_files").at("ref_f64.safetensors").at("tensors").at("x");
  REQUIRE(x.size() == 3);
  REQUIRE(x.at(0).get_int() == 16);
  REQUIRE(cfg.items().front().first == "embed_dim");  // file order, not sorted
  REQUIRE(cfg.items().back().first == "_official_source");
}
