// Corpus BLEU and chrF, computed exactly as sacreBLEU 2.x computes them with its defaults, so that
// a number reported here is the number `sacrebleu` prints for the same hypotheses and references
// (tests/test_bleu.cpp checks it against sacrebleu from PyPI to 0.01 when Python has it).
//
// BLEU (sacrebleu.metrics.BLEU(), signature nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp):
//   - each segment is right-stripped of whitespace and tokenised with `13a` (tokenize_13a below:
//     mteval-v13a's rules: "<skipped>" removed, "-\n" joined, the four HTML entities &quot; &amp;
//     &lt; &gt; unescaped, ASCII punctuation split off, "." and "," split off unless between
//     digits, "-" split off after a digit, whitespace runs (Python's str.split set, Unicode
//     included) collapsed);
//   - n-grams of orders 1-4 over the tokens; each hypothesis n-gram count is clipped by its count
//     in the reference; matches and totals are summed over the corpus;
//   - p_n = 100 * matches_n / totals_n; a zero match count takes the "exp" smoothing (NIST,
//     mteval-v13a): the k-th order with no match gets p_n = 100 / (2^k * totals_n); an order with
//     no hypothesis n-grams at all stops the loop and leaves p_n = 0, whose log is floored at
//     -9999999999 (the score is then 0.0 to any precision);
//   - no match of any order: score 0;
//   - brevity penalty BP = exp(1 - ref_len / hyp_len) when hyp_len < ref_len (0 when hyp_len is
//     0), else 1; BLEU = BP * exp(mean of log p_1..p_4), on a 0-100 scale.
// chrF (sacrebleu.metrics.CHRF(): char order 6, word order 0, beta 2, no lowercasing, whitespace
// removed, no eps smoothing):
//   - each segment loses all whitespace (Python's str.split set); character n-grams (Unicode code
//     points, not bytes) of orders 1-6;
//   - per segment and order: hypothesis n-grams (counted only when the reference has n-grams of
//     that order), reference n-grams, and clipped matches; summed over the corpus;
//   - per order with both counts > 0: precision and recall; their averages over those orders P
//     and R; chrF = 100 * (1 + beta^2) P R / (beta^2 P + R) (0 when P + R = 0).
// One reference per hypothesis. Errors: "[bleu] ..." / "[chrf] ..." for different list lengths,
// and for a segment that is not valid UTF-8 (it names the segment).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace megagrad::text {

struct BleuScore {
  double score = 0;                  // 0-100
  std::array<int64_t, 4> counts{};   // clipped n-gram matches, orders 1-4
  std::array<int64_t, 4> totals{};   // hypothesis n-grams, orders 1-4
  std::array<double, 4> precisions{};  // percentages, after smoothing (as sacrebleu reports them)
  double bp = 1;                     // brevity penalty
  int64_t sys_len = 0, ref_len = 0;  // tokens after 13a
  // "BLEU = 34.56 65.4/40.1/27.8/19.2 (BP = 1.000 ratio = 1.012 hyp_len = 1234 ref_len = 1219)",
  // sacrebleu's own format.
  std::string format() const;
};

struct ChrfScore {
  double score = 0;  // 0-100
  // Per order 1-6: hypothesis n-grams, reference n-grams, matches (summed over the corpus).
  std::array<std::array<int64_t, 3>, 6> stats{};
  std::string format() const;  // "chrF2 = 56.78"
};

// sacreBLEU's default tokenizer `13a` (Tokenizer13a): the tokens joined by single spaces.
std::string tokenize_13a(std::string_view line);

// hyps[i] is scored against refs[i].
BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs);
ChrfScore corpus_chrf(const std::vector<std::string>& hyps, const std::vector<std::string>& refs);

}  // namespace megagrad::text
