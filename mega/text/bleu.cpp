#include "mega/text/bleu.h"
#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>
#include "core/error.h"
#include "mega/text/utf8.h"

namespace megagrad::text {

namespace {

// Python's str.replace(from, to): every non-overlapping occurrence, left to right.
void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0, hit;
  bool any = false;
  while ((hit = s.find(from, pos)) != std::string::npos) {
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
    any = true;
  }
  if (!any) return;
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// re.sub(r'(A)(B)', repl, s) for single-character classes A and B: the leftmost match, then the
// scan goes on after it (matches never overlap). On UTF-8 bytes this equals Python's code-point
// scan because both classes' members that matter ('.', ',', '-', digits) are ASCII and the
// negated class [^0-9] accepts every byte of a multibyte character alike.
template <typename A, typename B, typename Emit>
std::string sub_pair(const std::string& s, A a, B b, Emit emit) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && a(s[i]) && b(s[i + 1])) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// [\{-\~\[-\` -\&\(-\+\:-\@\/]: the ASCII punctuation 13a splits off (everything but ' , - .).
bool is_13a_punct(char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') || (c >= '(' && c <= '+') ||
         (c >= ':' && c <= '@') || c == '/';
}

// Python's s.split(): the runs of non-whitespace (Unicode whitespace as str.isspace). Invalid
// UTF-8 bytes count as non-whitespace (callers validate first).
std::vector<std::string_view> py_split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0, start = std::string_view::npos;
  while (i < s.size()) {
    char32_t cp;
    size_t n = utf8_decode(s, i, &cp);
    bool space = n > 0 && py_isspace(cp);
    if (n == 0) n = 1;
    if (space) {
      if (start != std::string_view::npos) out.push_back(s.substr(start, i - start));
      start = std::string_view::npos;
    } else if (start == std::string_view::npos) {
      start = i;
    }
    i += n;
  }
  if (start != std::string_view::npos) out.push_back(s.substr(start));
  return out;
}

// Python's s.rstrip().
std::string_view py_rstrip(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;  // back to the lead byte of the last character
    while (start > 0 && ((uint8_t)s[start] & 0xC0) == 0x80 && end - start < 4) --start;
    char32_t cp;
    if (utf8_decode(s, start, &cp) != end - start || !py_isspace(cp)) break;
    end = start;
  }
  return s.substr(0, end);
}

void check_inputs(const std::vector<std::string>& hyps, const std::vector<std::string>& refs, const char* op) {
  MG_CHECK(hyps.size() == refs.size(), op, "{} hypotheses but {} references: one reference per hypothesis",
           hyps.size(), refs.size());
  for (size_t i = 0; i < hyps.size(); ++i) {
    size_t bad = utf8_invalid_at(hyps[i]);
    MG_CHECK(bad == std::string::npos, op, "hypothesis {} is not valid UTF-8 (byte {})", i + 1, bad + 1);
    bad = utf8_invalid_at(refs[i]);
    MG_CHECK(bad == std::string::npos, op, "reference {} is not valid UTF-8 (byte {})", i + 1, bad + 1);
  }
}

using Counts = std::unordered_map<std::string, int64_t>;

// Word n-grams of orders 1..4 (keys: the tokens joined by spaces; one map per order).
std::array<Counts, 4> word_ngrams(const std::vector<std::string_view>& toks) {
  std::array<Counts, 4> c;
  for (size_t n = 1; n <= 4; ++n)
    for (size_t i = 0; i + n <= toks.size(); ++i) {
      std::string key(toks[i]);
      for (size_t k = 1; k < n; ++k) {
        key += ' ';
        key += toks[i + k];
      }
      ++c[n - 1][key];
    }
  return c;
}

// Python's math.log floored as sacrebleu's my_log: log(0) is -9999999999.
double my_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

}  // namespace

std::string tokenize_13a(std::string_view in) {
  std::string line(in);
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  line = " " + line + " ";
  // TokenizerRegexp's four rules, in order.
  std::string s;
  s.reserve(line.size() * 2);
  for (char c : line) {
    if (is_13a_punct(c)) {
      s += ' ';
      s += c;
      s += ' ';
    } else {
      s += c;
    }
  }
  const auto dot_comma = [](char c) { return c == '.' || c == ','; };
  const auto not_digit = [](char c) { return !is_digit(c); };
  s = sub_pair(s, not_digit, dot_comma, [](std::string& o, char x, char y) { o += x, o += ' ', o += y, o += ' '; });
  s = sub_pair(s, dot_comma, not_digit, [](std::string& o, char x, char y) { o += ' ', o += x, o += ' ', o += y; });
  s = sub_pair(s, is_digit, [](char c) { return c == '-'; },
               [](std::string& o, char x, char y) { o += x, o += ' ', o += y, o += ' '; });
  std::string out;
  for (std::string_view t : py_split(s)) {
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  check_inputs(hyps, refs, "bleu");
  BleuScore r;
  for (size_t i = 0; i < hyps.size(); ++i) {
    const std::string h = tokenize_13a(py_rstrip(hyps[i]));
    const std::string g = tokenize_13a(py_rstrip(refs[i]));
    const std::vector<std::string_view> ht = py_split(h), gt = py_split(g);
    r.sys_len += (int64_t)ht.size();
    r.ref_len += (int64_t)gt.size();
    const std::array<Counts, 4> hc = word_ngrams(ht), gc = word_ngrams(gt);
    for (int n = 0; n < 4; ++n)
      for (const auto& kv : hc[n]) {
        r.totals[n] += kv.second;
        auto it = gc[n].find(kv.first);
        if (it != gc[n].end()) r.counts[n] += std::min(kv.second, it->second);
      }
  }
  // BLEU.compute_bleu with smooth_method "exp", effective_order off, max order 4.
  r.bp = 1.0;
  if (r.sys_len < r.ref_len) r.bp = r.sys_len > 0 ? std::exp(1.0 - (double)r.ref_len / (double)r.sys_len) : 0.0;
  bool any = false;
  for (int64_t c : r.counts) any = any || c != 0;
  if (!any) return r;  // score 0, precisions 0
  double smooth = 1.0;
  for (int n = 0; n < 4; ++n) {
    if (r.totals[n] == 0) break;
    if (r.counts[n] == 0) {
      smooth *= 2;
      r.precisions[n] = 100.0 / (smooth * (double)r.totals[n]);
    } else {
      r.precisions[n] = 100.0 * (double)r.counts[n] / (double)r.totals[n];
    }
  }
  double sum = 0;
  for (double p : r.precisions) sum += my_log(p);
  r.score = r.bp * std::exp(sum / 4);
  return r;
}

std::string BleuScore::format() const {
  return fmt::format("BLEU = {:.2f} {:.1f}/{:.1f}/{:.1f}/{:.1f} (BP = {:.3f} ratio = {:.3f} hyp_len = {} ref_len = {})",
                     score, precisions[0], precisions[1], precisions[2], precisions[3], bp,
                     ref_len > 0 ? (double)sys_len / (double)ref_len : 0.0, sys_len, ref_len);
}

namespace {
// The segment without whitespace, and the byte offset of each code point (plus the end).
struct Chars {
  std::string s;
  std::vector<size_t> at;
};
Chars strip_spaces(std::string_view in) {
  Chars c;
  for (std::string_view t : py_split(in)) c.s += t;
  char32_t cp;
  for (size_t i = 0; i < c.s.size();) {
    c.at.push_back(i);
    size_t n = utf8_decode(c.s, i, &cp);
    i += n ? n : 1;
  }
  c.at.push_back(c.s.size());
  return c;
}
std::array<Counts, 6> char_ngrams(const Chars& c) {
  std::array<Counts, 6> out;
  const size_t len = c.at.size() - 1;  // code points
  for (size_t n = 1; n <= 6; ++n)
    for (size_t i = 0; i + n <= len; ++i) ++out[n - 1][c.s.substr(c.at[i], c.at[i + n] - c.at[i])];
  return out;
}
}  // namespace

ChrfScore corpus_chrf(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  check_inputs(hyps, refs, "chrf");
  ChrfScore r;
  for (size_t i = 0; i < hyps.size(); ++i) {
    const std::array<Counts, 6> hc = char_ngrams(strip_spaces(hyps[i])), gc = char_ngrams(strip_spaces(refs[i]));
    for (int n = 0; n < 6; ++n) {
      int64_t hyp = 0, ref = 0, match = 0;
      for (const auto& kv : gc[n]) ref += kv.second;
      for (const auto& kv : hc[n]) {
        hyp += kv.second;
        auto it = gc[n].find(kv.first);
        if (it != gc[n].end()) match += std::min(kv.second, it->second);
      }
      r.stats[n][0] += gc[n].empty() ? 0 : hyp;  // CHRF._get_match_statistics: "hyp_count if ref_ngrams else 0"
      r.stats[n][1] += ref;
      r.stats[n][2] += match;
    }
  }
  // CHRF._compute_f_score without eps smoothing: precision and recall averaged over the orders
  // that have both hypothesis and reference n-grams.
  const double factor = 2.0 * 2.0;  // beta^2
  double avg_prec = 0, avg_rec = 0;
  int effective = 0;
  for (int n = 0; n < 6; ++n) {
    const int64_t h = r.stats[n][0], g = r.stats[n][1], m = r.stats[n][2];
    if (h > 0 && g > 0) {
      avg_prec += (double)m / (double)h;
      avg_rec += (double)m / (double)g;
      ++effective;
    }
  }
  if (effective == 0) {
    avg_prec = avg_rec = 0;
  } else {
    avg_prec /= effective;
    avg_rec /= effective;
  }
  if (avg_prec + avg_rec != 0) {
    double s = (1 + factor) * avg_prec * avg_rec;
    s /= factor * avg_prec + avg_rec;
    r.score = 100 * s;
  }
  return r;
}

std::string ChrfScore::format() const { return fmt::format("chrF2 = {:.2f}", score); }

}  // namespace megagrad::text
