// UTF-8 decoding and Python's notion of whitespace, shared by the parallel-text reader
// (mega/data/bible_parallel.cpp) and BLEU/chrF (mega/text/bleu.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace megagrad::text {

// Decodes the code point that starts at s[i]. Returns its length in bytes (1-4) and sets *cp, or
// returns 0 when the bytes there are not valid UTF-8 (a stray continuation byte, a truncated
// sequence, an overlong form, a surrogate, or a value above U+10FFFF).
inline size_t utf8_decode(std::string_view s, size_t i, char32_t* cp) {
  const auto b = [&](size_t k) { return (uint8_t)s[i + k]; };
  const uint8_t c = b(0);
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t n;
  char32_t v, min;
  if ((c & 0xE0) == 0xC0) n = 2, v = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) n = 3, v = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) n = 4, v = c & 0x07, min = 0x10000;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(k) & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return n;
}

// The byte offset of the first invalid UTF-8 sequence in s, or npos when s is valid.
inline size_t utf8_invalid_at(std::string_view s) {
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_decode(s, i, &cp);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

// Python's str.isspace() (what str.split() and str.strip() use): ASCII \t \n \v \f \r and space,
// the separators U+001C-U+001F, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
// U+205F, U+3000. (U+200B ZERO WIDTH SPACE and U+FEFF are not whitespace.)
inline bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace megagrad::text
