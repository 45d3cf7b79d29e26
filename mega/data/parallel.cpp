#include "mega/data/parallel.h"
#include <iterator>
#include "core/atomic_file.h"
#include "core/error.h"
#include "mega/text/utf8.h"

namespace megagrad::data {

namespace {
constexpr const char* kOp = "parallel_data";
constexpr size_t kMaxFileBytes = size_t(2) << 30;

// Splits a file into lines: "\n" ends a line, a "\r" before it is dropped, a final newline is
// optional, and a UTF-8 byte-order mark at the start is skipped.
std::vector<std::string_view> split_lines(std::string_view text) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    pos = end + 1;
  }
  return lines;
}

bool blank(std::string_view s) {
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    size_t n = text::utf8_decode(s, i, &cp);
    if (n == 0 || !text::py_isspace(cp)) return false;
    i += n;
  }
  return true;
}

// The checks of one sentence. `col` is "" for a line of a line-aligned file, else "source" or
// "target" (a TSV column).
void check_sentence(std::string_view s, std::string_view what, size_t line_no, std::string_view col) {
  const std::string in = col.empty() ? "" : fmt::format(" in the {}", col);
  const std::string part = col.empty() ? "the line" : fmt::format("the {} side", col);
  size_t bad = text::utf8_invalid_at(s);
  MG_CHECK(bad == std::string_view::npos, kOp, "{}:{}: invalid UTF-8{} at byte {} (0x{:02x})", what, line_no, in,
           bad + 1, bad == std::string_view::npos ? 0 : (uint8_t)s[bad]);
  MG_CHECK(!s.empty(), kOp, "{}:{}: {} is empty", what, line_no, part);
  MG_CHECK(!blank(s), kOp, "{}:{}: {} is only whitespace", what, line_no, part);
  MG_CHECK(s.find('\r') == std::string_view::npos, kOp, "{}:{}: a carriage return inside {}", what, line_no, part);
}

std::string_view strip_bom(std::string_view t) { return t.substr(0, 3) == "\xEF\xBB\xBF" ? t.substr(3) : t; }
}  // namespace

std::vector<SentencePair> parse_parallel_lines(std::string_view src_text, std::string_view tgt_text,
                                               std::string_view src_what, std::string_view tgt_what) {
  MG_CHECK(!strip_bom(src_text).empty(), kOp, "{} is empty", src_what);
  MG_CHECK(!strip_bom(tgt_text).empty(), kOp, "{} is empty", tgt_what);
  const std::vector<std::string_view> src = split_lines(src_text), tgt = split_lines(tgt_text);
  std::vector<SentencePair> pairs;
  pairs.reserve(std::min(src.size(), tgt.size()));
  for (size_t i = 0; i < std::min(src.size(), tgt.size()); ++i) {
    for (int side = 0; side < 2; ++side) {
      std::string_view s = side ? tgt[i] : src[i], what = side ? tgt_what : src_what;
      check_sentence(s, what, i + 1, "");
      MG_CHECK(s.find('\t') == std::string_view::npos, kOp,
               "{}:{}: a tab inside the sentence (a TSV line? give it as one TSV file instead)", what, i + 1);
    }
    pairs.push_back({std::string(src[i]), std::string(tgt[i]), fmt::format("{}:{}", src_what, i + 1)});
  }
  MG_CHECK(src.size() == tgt.size(), kOp,
           "{} has {} lines but {} has {}: the files must be line-aligned (line {} has no translation)", src_what,
           src.size(), tgt_what, tgt.size(), std::min(src.size(), tgt.size()) + 1);
  return pairs;
}

std::vector<SentencePair> read_parallel_files(const std::string& src_path, const std::string& tgt_path) {
  return parse_parallel_lines(read_file(src_path, kOp, kMaxFileBytes), read_file(tgt_path, kOp, kMaxFileBytes),
                              src_path, tgt_path);
}

std::vector<SentencePair> parse_parallel_tsv(std::string_view text, std::string_view what) {
  MG_CHECK(!strip_bom(text).empty(), kOp, "{} is empty", what);
  const std::vector<std::string_view> lines = split_lines(text);
  std::vector<SentencePair> pairs;
  pairs.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    MG_CHECK(!line.empty(), kOp, "{}:{}: empty line", what, i + 1);
    size_t tab = line.find('\t');
    MG_CHECK(tab != std::string_view::npos, kOp, "{}:{}: no tab: expected source<TAB>target", what, i + 1);
    MG_CHECK(line.find('\t', tab + 1) == std::string_view::npos, kOp,
             "{}:{}: more than one tab: expected source<TAB>target", what, i + 1);
    std::string_view src = line.substr(0, tab), tgt = line.substr(tab + 1);
    check_sentence(src, what, i + 1, "source");
    check_sentence(tgt, what, i + 1, "target");
    pairs.push_back({std::string(src), std::string(tgt), fmt::format("{}:{}", what, i + 1)});
  }
  return pairs;
}

std::vector<SentencePair> read_parallel_tsv(const std::string& path) {
  return parse_parallel_tsv(read_file(path, kOp, kMaxFileBytes), path);
}

ParallelSplits split_tail(std::vector<SentencePair> pairs, size_t n_valid, size_t n_test) {
  MG_CHECK(n_valid + n_test < pairs.size(), kOp,
           "cannot hold out {} validation and {} test pairs of {}: no training pair would be left", n_valid, n_test,
           pairs.size());
  ParallelSplits s;
  const size_t n_train = pairs.size() - n_valid - n_test;
  s.test.assign(std::make_move_iterator(pairs.end() - (ptrdiff_t)n_test), std::make_move_iterator(pairs.end()));
  s.valid.assign(std::make_move_iterator(pairs.begin() + (ptrdiff_t)n_train),
                 std::make_move_iterator(pairs.begin() + (ptrdiff_t)(n_train + n_valid)));
  pairs.resize(n_train);
  s.train = std::move(pairs);
  return s;
}

std::vector<std::string> joint_sentences(const std::vector<SentencePair>& pairs) {
  std::vector<std::string> out;
  out.reserve(2 * pairs.size());
  for (const SentencePair& p : pairs) {
    out.push_back(p.src);
    out.push_back(p.tgt);
  }
  return out;
}

std::string parallel_to_tsv(const std::vector<SentencePair>& pairs) {
  std::string out;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const SentencePair& p = pairs[i];
    for (int side = 0; side < 2; ++side) {
      const std::string& s = side ? p.tgt : p.src;
      const std::string what = fmt::format("pair {} ({}) {}", i + 1, p.where, side ? "target" : "source");
      MG_CHECK(!s.empty() && !blank(s), kOp, "cannot write {}: empty", what);
      MG_CHECK(s.find_first_of("\t\n\r") == std::string::npos, kOp, "cannot write {}: it holds a tab or a line break",
               what);
      MG_CHECK(text::utf8_invalid_at(s) == std::string::npos, kOp, "cannot write {}: invalid UTF-8", what);
    }
    out += p.src;
    out += '\t';
    out += p.tgt;
    out += '\n';
  }
  return out;
}

void write_parallel_tsv(const std::string& path, const std::vector<SentencePair>& pairs) {
  write_file_atomic(path, parallel_to_tsv(pairs), kOp);
}

}  // namespace megagrad::data
