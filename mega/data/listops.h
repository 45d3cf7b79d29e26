// ListOps (Nangia & Bowman 2018) as in the Long Range Arena (Tay et al. 2020): nested lists of
// operators over the digits 0-9, e.g. [MAX 2 9 [MIN 4 7 ] 0 ] = 9; the label is the value (10
// classes).
//
// Operators: MIN, MAX, MED (the median; for an even count the mean of the two middle values,
// truncated: int(np.median(...)) as LRA computes it), SM (sum mod 10).
//
// Generation follows LRA's lra_benchmarks/data/listops.py: the root sits at depth 1; a node at
// depth < max_depth is an operator with probability 0.25 (else a digit), a node at max_depth is a
// digit; a digit is uniform in 0-9; an operator has a uniform 2..max_args arguments, generated
// first, then a uniform operator. The token length counts operators, digits and "]" (LRA's
// parentheses are not tokens). Trees are kept when min_len <= length <= max_len (inclusive; LRA
// keeps 500 < length < 2000, which is our [501, 1999]), and duplicates are dropped.
//
// This is exactly LRA's distribution, conditioned on the length. It is sampled by rejection, but
// a candidate is abandoned as soon as it grows past max_len (it would be rejected anyway), so a
// rejected candidate costs at most max_len nodes. Candidate i draws from its own SplitMix64
// stream, seeded with Philox4x32-10(seed, counter i): candidates are generated in parallel and
// kept in index order, so the data is the same on every machine and for any thread count.
//
// The unique accepted trees, in candidate order, fill the test split first, then validation, then
// train: the test set of a seed does not change when the training set grows.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include "mega/data/batch.h"

namespace megagrad::data {

// Token ids. 0 is padding; vocabulary size 16.
enum ListOpsToken : uint8_t {
  kListOpsPad = 0,
  kListOpsDigit0 = 1,  // digit d is 1 + d
  kListOpsMin = 11,
  kListOpsMax = 12,
  kListOpsMed = 13,
  kListOpsSum = 14,  // "[SM": sum mod 10
  kListOpsEnd = 15,  // "]"
};
inline constexpr int64_t kListOpsVocabSize = 16;
inline constexpr int64_t kListOpsClasses = 10;

// id -> token text: "<pad>", "0".."9", "[MIN", "[MAX", "[MED", "[SM", "]".
const std::array<std::string_view, kListOpsVocabSize>& listops_vocab();
// token text -> id, or -1 for an unknown token (and for "<pad>").
int listops_token_id(std::string_view token);
// "[MAX 2 9 ]" (space-separated tokens, no parentheses).
std::string listops_decode(std::span<const uint8_t> ids);
// The reverse of listops_decode; throws "[listops] unknown token ..." (parentheses are skipped).
std::vector<uint8_t> listops_encode(std::string_view text);

// The value (0-9) of one complete expression. Throws "[listops] ..." naming the token position
// for a malformed sequence: unknown/pad id, "]" without an operator, an operator without
// arguments, unclosed operators, tokens after the end, or an empty sequence.
int listops_evaluate(std::span<const uint8_t> ids);

struct ListOpsConfig {
  int64_t min_len = 501, max_len = 1999;  // token lengths kept, inclusive
  int max_depth = 10;                     // the root is depth 1
  int max_args = 10;                      // arguments per operator: uniform in [2, max_args]
  double op_probability = 0.25;           // a node above max_depth is an operator
  int64_t num_train = 96000, num_val = 2000, num_test = 2000;
  uint64_t seed = 0;
};

// "lra": LRA's lengths (500 < L < 2000) and sizes 96000/2000/2000.
// "medium": lengths 100-400 and sizes 20000/1000/1000.
// "short": lengths 20-100 and sizes 40000/1000/1000: a small model learns it in minutes on one CPU
// core (the main job); longer sequences need thousands of steps before accuracy leaves the
// majority class.
ListOpsConfig listops_preset(std::string_view name, uint64_t seed = 0);

struct ListOpsData {
  SequenceDataset train, val, test;  // token ids and labels 0-9
  int64_t candidates = 0;            // trees drawn (accepted or not), for the record
};

// Throws "[listops] ..." for an impossible configuration (min_len > max_len, max_args < 2, ...)
// and when 1000 times the requested number of trees are drawn without collecting enough
// distinct ones (a length range the generator can hardly reach).
ListOpsData generate_listops(const ListOpsConfig& config);
// The configuration checks of generate_listops alone (nothing is generated).
void validate_listops_config(const ListOpsConfig& config);

// LRA's TSV files: a header "Source<TAB>Target", then one row per example: the expression with
// parentheses, e.g. "( ( ( [MAX 2 ) 9 ) ] )" (they are dropped), and the label 0-9. Lines may end
// in "\r\n" (Python's csv writer) or "\n". Every row is checked: two columns, known tokens, an
// integer label 0-9, a well-formed expression, and (with verify_labels) label == its value.
// Errors: "[listops] <what> line N: <problem>".
SequenceDataset parse_listops_tsv(std::string_view text, std::string_view what, bool verify_labels = true);
SequenceDataset read_listops_tsv(const std::string& path, bool verify_labels = true);
// The same format, parenthesised as LRA's to_string does, lines ending in "\r\n".
std::string listops_to_tsv(const SequenceDataset& ds);
void write_listops_tsv(const std::string& path, const SequenceDataset& ds);

}  // namespace megagrad::data
