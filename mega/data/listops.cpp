#include "mega/data/listops.h"
#include <algorithm>
#include <functional>
#include <unordered_set>
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/parallel.h"

namespace megagrad::data {

namespace {
constexpr const char* kOp = "listops";
constexpr std::array<std::string_view, kListOpsVocabSize> kVocab = {
    "<pad>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "[MIN", "[MAX", "[MED", "[SM", "]"};

bool is_digit_id(uint8_t t) { return t >= kListOpsDigit0 && t < kListOpsDigit0 + 10; }
bool is_op_id(uint8_t t) { return t >= kListOpsMin && t <= kListOpsSum; }
}  // namespace

const std::array<std::string_view, kListOpsVocabSize>& listops_vocab() { return kVocab; }

int listops_token_id(std::string_view token) {
  if (token.size() == 1) {  // the common case: a digit or "]"
    char c = token[0];
    return c >= '0' && c <= '9' ? kListOpsDigit0 + (c - '0') : c == ']' ? kListOpsEnd : -1;
  }
  for (int i = kListOpsMin; i <= kListOpsSum; ++i)
    if (kVocab[i] == token) return i;
  return -1;
}

std::string listops_decode(std::span<const uint8_t> ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    MG_CHECK(ids[i] < kListOpsVocabSize, kOp, "token id {} at position {} is not in the vocabulary (size {})",
             ids[i], i, kListOpsVocabSize);
    if (i) s += ' ';
    s += kVocab[ids[i]];
  }
  return s;
}

std::vector<uint8_t> listops_encode(std::string_view text) {
  std::vector<uint8_t> ids;
  size_t pos = 0;
  int64_t n = 0;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view tok = text.substr(pos, end - pos);
    pos = end + 1;
    if (tok.empty() || tok == "(" || tok == ")") continue;
    ++n;
    int id = listops_token_id(tok);
    MG_CHECK(id > 0, kOp, "unknown token \"{}\" (token {})", tok, n);
    ids.push_back((uint8_t)id);
  }
  return ids;
}

// ---- evaluation ----

namespace {
// An open operator: its arguments so far, summarised (min, max, sum, and a histogram for MED).
struct Frame {
  uint8_t op;
  int count = 0, lo = 9, hi = 0, sum = 0;
  int hist[10] = {0};
  void add(int v) {
    ++count, lo = std::min(lo, v), hi = std::max(hi, v), sum += v;
    ++hist[v];
  }
  // The k-th smallest argument (0-based).
  int kth(int k) const {
    for (int v = 0; v < 10; ++v) {
      if (k < hist[v]) return v;
      k -= hist[v];
    }
    return 9;
  }
  int value() const {
    switch (op) {
      case kListOpsMin: return lo;
      case kListOpsMax: return hi;
      case kListOpsSum: return sum % 10;
      default:  // MED: int(np.median): the middle value, or the mean of the two middle values, truncated
        return count % 2 ? kth(count / 2) : (kth(count / 2 - 1) + kth(count / 2)) / 2;
    }
  }
};
}  // namespace

int listops_evaluate(std::span<const uint8_t> ids) {
  const size_t n = ids.size();
  MG_CHECK(n > 0, kOp, "empty expression");
  std::vector<Frame> stack;
  int result = -1;
  for (size_t i = 0; i < n; ++i) {
    uint8_t t = ids[i];
    auto where = [&] { return fmt::format("token {} of {}", i + 1, n); };
    MG_CHECK(result < 0, kOp, "{} (\"{}\") follows the end of the expression", where(),
             t < kListOpsVocabSize ? kVocab[t] : "?");
    if (t == kListOpsPad || t >= kListOpsVocabSize)
      fail(kOp, "{} has id {}, which is not an operator, a digit or \"]\"", where(), t);
    if (is_op_id(t)) {
      stack.push_back(Frame{t});
      continue;
    }
    int v;
    if (is_digit_id(t)) {
      v = t - kListOpsDigit0;
    } else {  // "]"
      MG_CHECK(!stack.empty(), kOp, "{} is a \"]\" with no open operator", where());
      MG_CHECK(stack.back().count > 0, kOp, "{} closes {} with no arguments", where(), kVocab[stack.back().op]);
      v = stack.back().value();
      stack.pop_back();
    }
    if (stack.empty()) result = v;
    else stack.back().add(v);
  }
  MG_CHECK(stack.empty(), kOp, "{} operator{} not closed at the end of the expression ({} tokens)", stack.size(),
           stack.size() == 1 ? " is" : "s are", n);
  return result;
}

// ---- generation ----

ListOpsConfig listops_preset(std::string_view name, uint64_t seed) {
  ListOpsConfig c;
  c.seed = seed;
  if (name == "lra") return c;
  if (name == "short") {  // the main job: a small Mega reaches ~50% in two minutes on one core
    c.min_len = 20, c.max_len = 100;
    c.num_train = 40000, c.num_val = 1000, c.num_test = 1000;
    return c;
  }
  if (name == "medium") {
    c.min_len = 100, c.max_len = 400;
    c.num_train = 20000, c.num_val = 1000, c.num_test = 1000;
    return c;
  }
  fail(kOp, "unknown preset \"{}\" (presets: lra, medium, short)", name);
}

namespace {

// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit state, fast, and portable.
struct SplitMix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double unit() { return (double)(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  uint64_t below(uint64_t n) { return bounded(next(), n); }      // [0, n)
};

constexpr uint64_t kCandidateStream = 0x4C4953544F505300ull;  // "LISTOPS"

// Appends one node (LRA's generate_tree, same order of draws) to `out`. Returns false as soon as
// the tree has more than max_len tokens.
bool grow(SplitMix64& rng, int depth, const ListOpsConfig& c, std::vector<uint8_t>& out) {
  double r = depth < c.max_depth ? rng.unit() : 1.0;
  if (r > c.op_probability) {
    out.push_back((uint8_t)(kListOpsDigit0 + rng.below(10)));
    return (int64_t)out.size() <= c.max_len;
  }
  size_t slot = out.size();
  out.push_back(0);  // the operator, drawn after its arguments as LRA does
  int nargs = 2 + (int)rng.below((uint64_t)c.max_args - 1);
  for (int a = 0; a < nargs; ++a)
    if (!grow(rng, depth + 1, c, out)) return false;
  out[slot] = (uint8_t)(kListOpsMin + rng.below(4));
  out.push_back(kListOpsEnd);
  return (int64_t)out.size() <= c.max_len;
}

// The accepted candidates of one chunk of candidate indices, in index order.
struct Chunk {
  std::vector<uint8_t> tokens;
  std::vector<int64_t> offsets{0};
  std::vector<int64_t> labels;
};

}  // namespace

void validate_listops_config(const ListOpsConfig& c) {
  MG_CHECK(c.min_len >= 1 && c.min_len <= c.max_len, kOp, "length range [{}, {}] is empty or invalid", c.min_len,
           c.max_len);
  MG_CHECK(c.max_depth >= 1, kOp, "max_depth must be at least 1, got {}", c.max_depth);
  MG_CHECK(c.max_args >= 2, kOp, "max_args must be at least 2, got {}", c.max_args);
  MG_CHECK(c.op_probability >= 0 && c.op_probability <= 1, kOp, "op_probability {} is not in [0, 1]",
           c.op_probability);
  MG_CHECK(c.num_train >= 0 && c.num_val >= 0 && c.num_test >= 0, kOp, "negative split size ({}/{}/{})",
           c.num_train, c.num_val, c.num_test);
}

ListOpsData generate_listops(const ListOpsConfig& c) {
  validate_listops_config(c);
  ListOpsData data;
  SequenceDataset* splits[3] = {&data.test, &data.val, &data.train};
  const int64_t want[3] = {c.num_test, c.num_val, c.num_train};
  const int64_t total = c.num_train + c.num_val + c.num_test;
  for (int s = 0; s < 3; ++s) {
    splits[s]->labels.reserve(want[s]);
    splits[s]->offsets.reserve(want[s] + 1);
  }

  // Distinct sequences: the set holds (split, index) and compares the stored tokens.
  struct Key {
    size_t hash;
    int split;
    int64_t index;
  };
  auto span_of = [&](const Key& k) { return splits[k.split]->sequence(k.index); };
  auto hash_of = [](std::span<const uint8_t> s) {
    return std::hash<std::string_view>()(std::string_view((const char*)s.data(), s.size()));
  };
  auto hasher = [](const Key& k) { return k.hash; };
  auto equal = [&](const Key& a, const Key& b) {
    auto x = span_of(a), y = span_of(b);
    return std::equal(x.begin(), x.end(), y.begin(), y.end());
  };
  std::unordered_set<Key, decltype(hasher), decltype(equal)> seen(2 * total + 1, hasher, equal);

  constexpr int64_t kChunk = 1024;
  const int64_t max_candidates = std::max<int64_t>(1000 * total, 1 << 20);
  int64_t accepted = 0, next = 0, split = 0;
  while (split < 3 && want[split] == 0) ++split;
  while (accepted < total) {
    MG_CHECK(next < max_candidates, kOp,
             "only {} distinct trees with lengths in [{}, {}] after {} candidates, {} wanted: widen the range",
             accepted, c.min_len, c.max_len, next, total);
    // Enough chunks to probably finish (about 1 in 30 candidates is kept), at least 8.
    int64_t chunks = std::clamp<int64_t>((total - accepted) * 32 / kChunk + 1, 8, 256);
    std::vector<Chunk> out(chunks);
    parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
      std::vector<uint8_t> tree;
      for (int64_t k = b; k < e; ++k)
        for (int64_t i = next + k * kChunk; i < next + (k + 1) * kChunk; ++i) {
          SplitMix64 rng{philox64(c.seed, kCandidateStream, (uint64_t)i)};
          tree.clear();
          if (!grow(rng, 1, c, tree) || (int64_t)tree.size() < c.min_len) continue;
          out[k].tokens.insert(out[k].tokens.end(), tree.begin(), tree.end());
          out[k].offsets.push_back((int64_t)out[k].tokens.size());
          out[k].labels.push_back(listops_evaluate(tree));
        }
    });
    next += chunks * kChunk;
    for (const Chunk& ch : out) {
      for (size_t j = 0; j + 1 < ch.offsets.size() && accepted < total; ++j) {
        std::span<const uint8_t> tree(ch.tokens.data() + ch.offsets[j], ch.offsets[j + 1] - ch.offsets[j]);
        SequenceDataset& ds = *splits[split];
        ds.add(tree, ch.labels[j]);
        Key key{hash_of(tree), (int)split, ds.size() - 1};
        if (!seen.insert(key).second) {  // a duplicate: undo the add
          ds.tokens.resize(ds.offsets[ds.size() - 1]);
          ds.offsets.pop_back();
          ds.labels.pop_back();
          continue;
        }
        ++accepted;
        while (split < 3 && splits[split]->size() == want[split]) ++split;
      }
    }
    data.candidates = next;
  }
  return data;
}

// ---- TSV ----

SequenceDataset parse_listops_tsv(std::string_view text, std::string_view what, bool verify_labels) {
  SequenceDataset ds;
  size_t pos = 0;
  int64_t line_no = 0;
  std::vector<uint8_t> ids;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1) {
      MG_CHECK(line == "Source\tTarget", kOp, "{} line 1: expected the header \"Source<TAB>Target\", got \"{}\"",
               what, line.substr(0, 80));
      continue;
    }
    MG_CHECK(!line.empty(), kOp, "{} line {}: empty line", what, line_no);
    size_t tab = line.find('\t');
    MG_CHECK(tab != std::string_view::npos, kOp,
             "{} line {}: expected 2 tab-separated columns (Source, Target), found 1", what, line_no);
    MG_CHECK(line.find('\t', tab + 1) == std::string_view::npos, kOp,
             "{} line {}: expected 2 tab-separated columns (Source, Target), found more", what, line_no);
    std::string_view source = line.substr(0, tab), target = line.substr(tab + 1);
    MG_CHECK(target.size() == 1 && target[0] >= '0' && target[0] <= '9', kOp,
             "{} line {}: target \"{}\" is not an integer from 0 to 9", what, line_no, target.substr(0, 40));
    int label = target[0] - '0';
    int value;
    try {
      ids = listops_encode(source);
      value = listops_evaluate(ids);
    } catch (const Error& e) {
      std::string_view msg = e.what();
      if (msg.starts_with("[listops] ")) msg.remove_prefix(10);
      fail(kOp, "{} line {}: {}", what, line_no, msg);
    }
    MG_CHECK(!verify_labels || value == label, kOp, "{} line {}: the expression's value is {} but the target is {}",
             what, line_no, value, label);
    ds.add(ids, label);
  }
  MG_CHECK(line_no > 0, kOp, "{} is empty: expected the header \"Source<TAB>Target\"", what);
  return ds;
}

SequenceDataset read_listops_tsv(const std::string& path, bool verify_labels) {
  return parse_listops_tsv(read_file(path, kOp, size_t(4) << 30), path, verify_labels);
}

std::string listops_to_tsv(const SequenceDataset& ds) {
  std::string out = "Source\tTarget\r\n";
  std::vector<int> nargs;  // per token: the argument count of an operator
  std::vector<size_t> open;
  for (int64_t i = 0; i < ds.size(); ++i) {
    auto seq = ds.sequence(i);
    MG_CHECK(ds.labels[i] >= 0 && ds.labels[i] <= 9, kOp, "example {} has label {}, not 0-9", i, ds.labels[i]);
    listops_evaluate(seq);  // well-formed, or an error
    // First pass: each operator's number of arguments.
    nargs.assign(seq.size(), 0);
    open.clear();
    for (size_t t = 0; t < seq.size(); ++t) {
      if (!open.empty() && seq[t] != kListOpsEnd) ++nargs[open.back()];
      if (is_op_id(seq[t])) open.push_back(t);
      else if (seq[t] == kListOpsEnd) open.pop_back();
    }
    // Second pass, as LRA's to_string of ((((op, a1), a2), ..., ak), "]"):
    // "( " * (k+1) op, then " arg )" per argument, then " ] )".
    size_t depth = 0;
    for (size_t t = 0; t < seq.size(); ++t) {
      uint8_t tok = seq[t];
      if (is_op_id(tok)) {
        if (depth) out += ' ';
        for (int k = 0; k <= nargs[t]; ++k) out += "( ";
        out += kVocab[tok];
        ++depth;
      } else if (is_digit_id(tok)) {
        if (depth) out += ' ';
        out += kVocab[tok];
        if (depth) out += " )";
      } else {
        out += " ] )";
        if (--depth) out += " )";
      }
    }
    out += fmt::format("\t{}\r\n", ds.labels[i]);
  }
  return out;
}

void write_listops_tsv(const std::string& path, const SequenceDataset& ds) {
  write_file_atomic(path, listops_to_tsv(ds), kOp);
}

}  // namespace megagrad::data
