// mega/data: ListOps (generation, evaluation, LRA TSV files), IDX and gzip files, Fashion-MNIST,
// character-level text, padding and the resumable batch iterator. Expected values come from
// independent computations in this file (a recursive evaluator, naive loops, regenerated fixture
// contents), never from the code under test.
#include <catch2/catch.hpp>
#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include "core/atomic_file.h"
#include "core/parallel.h"
#include "mega/data/batch.h"
#include "mega/data/gzip.h"
#include "mega/data/idx.h"
#include "mega/data/listops.h"
#include "mega/data/text.h"
#include "tests/test_util.h"

using namespace megagrad;
using namespace megagrad::data;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {
const std::string kData = MEGAGRAD_TEST_DATA;

using TempDir = test::TempDir;

void write_bytes(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), (std::streamsize)bytes.size());
  REQUIRE(f.good());
}

std::vector<uint8_t> ids_of(std::string_view text) { return listops_encode(text); }

// ---- an independent ListOps evaluator: build the tree recursively, then compute each operator
// from the list of its argument values (std::sort for the median). ----
struct Parser {
  std::span<const uint8_t> t;
  size_t pos = 0;
  int max_op_depth = 0;     // deepest operator nesting seen
  std::vector<int> nargs;   // argument count of every operator
  std::map<int, int64_t> op_count, digit_count;
  int node(int depth) {
    REQUIRE(pos < t.size());
    uint8_t tok = t[pos++];
    if (tok >= 1 && tok <= 10) {
      ++digit_count[tok - 1];
      return tok - 1;
    }
    REQUIRE((tok >= kListOpsMin && tok <= kListOpsSum));
    ++op_count[tok];
    max_op_depth = std::max(max_op_depth, depth);
    std::vector<int> v;
    while (pos < t.size() && t[pos] != kListOpsEnd) v.push_back(node(depth + 1));
    REQUIRE(pos < t.size());
    ++pos;
    nargs.push_back((int)v.size());
    std::sort(v.begin(), v.end());
    int n = (int)v.size();
    switch (tok) {
      case kListOpsMin: return v.front();
      case kListOpsMax: return v.back();
      case kListOpsSum: {
        int s = 0;
        for (int x : v) s += x;
        return s % 10;
      }
      default: {
        double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
        return (int)med;  // LRA: int(np.median(values))
      }
    }
  }
};

int reference_value(std::span<const uint8_t> ids, Parser* stats = nullptr) {
  Parser p{ids};
  int v = p.node(1);
  REQUIRE(p.pos == ids.size());
  if (stats) {
    stats->max_op_depth = std::max(stats->max_op_depth, p.max_op_depth);
    stats->nargs.insert(stats->nargs.end(), p.nargs.begin(), p.nargs.end());
    for (auto [k, c] : p.op_count) stats->op_count[k] += c;
    for (auto [k, c] : p.digit_count) stats->digit_count[k] += c;
  }
  return v;
}

ListOpsConfig small_config(uint64_t seed) {
  ListOpsConfig c;
  c.min_len = 20, c.max_len = 120;
  c.num_train = 300, c.num_val = 50, c.num_test = 50;
  c.seed = seed;
  return c;
}

bool same(const SequenceDataset& a, const SequenceDataset& b) {
  return a.tokens == b.tokens && a.offsets == b.offsets && a.labels == b.labels;
}
}  // namespace

// =============================== ListOps ===============================

TEST_CASE("listops: vocabulary, encoding and decoding", "[data]") {
  const auto& v = listops_vocab();
  REQUIRE(v.size() == 16);
  REQUIRE(v[kListOpsPad] == "<pad>");
  for (int d = 0; d < 10; ++d) REQUIRE(listops_token_id(std::to_string(d)) == 1 + d);
  REQUIRE(listops_token_id("[MIN") == kListOpsMin);
  REQUIRE(listops_token_id("[SM") == kListOpsSum);
  REQUIRE(listops_token_id("]") == kListOpsEnd);
  REQUIRE(listops_token_id("<pad>") == -1);
  REQUIRE(listops_token_id("(") == -1);
  // Parentheses are dropped; the decoded text has none.
  auto ids = ids_of("( ( ( [MAX 2 ) 9 ) ] )");
  REQUIRE(ids == std::vector<uint8_t>{kListOpsMax, 3, 10, kListOpsEnd});
  REQUIRE(listops_decode(ids) == "[MAX 2 9 ]");
  REQUIRE(ids_of(listops_decode(ids)) == ids);
  REQUIRE_THROWS_WITH(ids_of("[MAX 2 [FOO 3 ] ]"),
                      Contains("[listops]") && Contains("\"[FOO\"") && Contains("token 3"));
  std::vector<uint8_t> bad = {kListOpsMax, 99};
  REQUIRE_THROWS_WITH(listops_decode(bad), Contains("[listops]") && Contains("99"));
}

TEST_CASE("listops: the evaluator on hand-computed expressions", "[data]") {
  struct Case {
    const char* expr;
    int value;
  } cases[] = {
      {"7", 7},
      {"[MAX 2 9 ]", 9},
      {"[MIN 4 [MAX 1 7 ] 5 ]", 4},
      {"[MED 1 2 3 4 ]", 2},        // (2 + 3) / 2 = 2.5 -> 2
      {"[MED 0 9 ]", 4},            // 4.5 -> 4
      {"[MED 5 1 9 ]", 5},          // odd count: the middle value
      {"[MED 3 [SM 5 5 ] 8 9 ]", 5},  // 0 3 8 9 -> 5.5 -> 5
      {"[SM 9 8 7 ]", 4},           // 24 mod 10
      {"[SM [SM 9 9 ] [MAX 0 0 ] 1 ]", 9},
      {"[MAX [MED [SM 1 2 ] 6 ] 2 ]", 4},
      {"[MIN 3 ]", 3},              // one argument is accepted by the evaluator
  };
  for (const auto& c : cases) {
    INFO(c.expr);
    REQUIRE(listops_evaluate(ids_of(c.expr)) == c.value);
    REQUIRE(reference_value(ids_of(c.expr)) == c.value);
  }
}

TEST_CASE("listops: malformed expressions give errors with the token position", "[data]") {
  auto err = [](std::vector<uint8_t> ids) { return listops_evaluate(ids); };
  REQUIRE_THROWS_WITH(err({}), Contains("[listops] empty expression"));
  REQUIRE_THROWS_WITH(err(ids_of("]")), Contains("token 1 of 1") && Contains("no open operator"));
  REQUIRE_THROWS_WITH(err(ids_of("[MAX ]")), Contains("token 2 of 2") && Contains("no arguments"));
  REQUIRE_THROWS_WITH(err(ids_of("[MAX 1 [MIN 2")), Contains("2 operators are not closed"));
  REQUIRE_THROWS_WITH(err(ids_of("[MAX 1 2 ] 3")), Contains("token 5 of 5") && Contains("follows the end"));
  REQUIRE_THROWS_WITH(err(ids_of("1 2")), Contains("token 2 of 2"));
  REQUIRE_THROWS_WITH(err({kListOpsMax, 0, 2, kListOpsEnd}), Contains("token 2 of 4") && Contains("id 0"));
  REQUIRE_THROWS_WITH(err({kListOpsMax, 2, 77, kListOpsEnd}), Contains("token 3 of 4") && Contains("id 77"));
}

TEST_CASE("listops: generated data follows the specification", "[data]") {
  ListOpsConfig c = small_config(11);
  ListOpsData d = generate_listops(c);
  REQUIRE(d.train.size() == 300);
  REQUIRE(d.val.size() == 50);
  REQUIRE(d.test.size() == 50);
  std::set<std::vector<uint8_t>> seen;
  Parser stats{{}};
  int64_t hist[10] = {0};
  for (const SequenceDataset* s : {&d.train, &d.val, &d.test}) {
    REQUIRE(s->offsets.size() == (size_t)s->size() + 1);
    for (int64_t i = 0; i < s->size(); ++i) {
      auto seq = s->sequence(i);
      INFO(listops_decode(seq));
      REQUIRE(s->length(i) >= c.min_len);
      REQUIRE(s->length(i) <= c.max_len);
      REQUIRE(s->labels[i] == reference_value(seq, &stats));  // labels agree with an independent evaluator
      REQUIRE(s->labels[i] == listops_evaluate(seq));
      REQUIRE(seen.insert(std::vector<uint8_t>(seq.begin(), seq.end())).second);  // no duplicates, across splits
      ++hist[s->labels[i]];
    }
  }
  // Trees: the root is depth 1 and operators only occur above max_depth; 2..max_args arguments.
  REQUIRE(stats.max_op_depth <= c.max_depth - 1);
  REQUIRE(*std::min_element(stats.nargs.begin(), stats.nargs.end()) >= 2);
  REQUIRE(*std::max_element(stats.nargs.begin(), stats.nargs.end()) <= c.max_args);
  // Operator and digit draws do not depend on the tree's shape, so the length filter leaves them
  // uniform: 4 operators and 10 digits, each within a loose band around its share.
  int64_t ops = 0, digits = 0;
  for (auto [k, n] : stats.op_count) ops += n;
  for (auto [k, n] : stats.digit_count) digits += n;
  REQUIRE(stats.op_count.size() == 4);
  for (auto [k, n] : stats.op_count) REQUIRE(std::abs((double)n / ops - 0.25) < 0.05);
  REQUIRE(stats.digit_count.size() == 10);
  for (auto [k, n] : stats.digit_count) REQUIRE(std::abs((double)n / digits - 0.1) < 0.03);
  // Classes: every class occurs and none dominates (LRA's labels are skewed towards 0 and 9).
  std::string dist;
  for (int k = 0; k < 10; ++k) dist += fmt::format("{}:{} ", k, hist[k]);
  INFO("label counts " << dist);
  for (int k = 0; k < 10; ++k) {
    REQUIRE(hist[k] > 0);
    REQUIRE(hist[k] < 400 * 0.4);
  }
}

TEST_CASE("listops: generation is deterministic, also across thread counts", "[data]") {
  int threads = get_num_threads();
  set_num_threads(1);
  ListOpsData a = generate_listops(small_config(5));
  set_num_threads(3);
  ListOpsData b = generate_listops(small_config(5));
  set_num_threads(threads);
  ListOpsData c = generate_listops(small_config(5));
  ListOpsData other = generate_listops(small_config(6));
  REQUIRE(same(a.train, b.train));
  REQUIRE(same(a.val, b.val));
  REQUIRE(same(a.test, b.test));
  REQUIRE(same(a.train, c.train));
  REQUIRE(a.candidates == b.candidates);
  REQUIRE_FALSE(same(a.train, other.train));
  // The test split comes first from the stream: a larger training set keeps the same test set.
  ListOpsConfig bigger = small_config(5);
  bigger.num_train = 600;
  ListOpsData e = generate_listops(bigger);
  REQUIRE(same(e.test, a.test));
  REQUIRE(same(e.val, a.val));
  REQUIRE(e.train.size() == 600);
  REQUIRE(std::equal(a.train.tokens.begin(), a.train.tokens.end(), e.train.tokens.begin()));
}

TEST_CASE("listops: presets and configuration errors", "[data]") {
  ListOpsConfig lra = listops_preset("lra", 3);
  REQUIRE(lra.min_len == 501);  // LRA keeps 500 < length < 2000
  REQUIRE(lra.max_len == 1999);
  REQUIRE(lra.num_train == 96000);
  REQUIRE(lra.num_val == 2000);
  REQUIRE(lra.num_test == 2000);
  REQUIRE(lra.max_depth == 10);
  REQUIRE(lra.max_args == 10);
  REQUIRE(lra.seed == 3);
  ListOpsConfig sh = listops_preset("medium");
  REQUIRE(sh.min_len == 100);
  REQUIRE(sh.max_len == 400);
  ListOpsConfig quick = listops_preset("short");
  REQUIRE(quick.min_len == 20);
  REQUIRE(quick.max_len == 100);
  REQUIRE(quick.num_train == 40000);
  REQUIRE_THROWS_WITH(listops_preset("long"), Contains("[listops] unknown preset \"long\""));

  ListOpsData d = generate_listops(sh);  // the whole medium preset (about 0.3 s)
  REQUIRE(d.train.size() == 20000);
  REQUIRE(d.val.size() == 1000);
  REQUIRE(d.test.size() == 1000);
  REQUIRE(d.train.max_length() <= 400);
  for (int64_t i = 0; i < d.test.size(); ++i) {
    REQUIRE(d.test.length(i) >= 100);
    REQUIRE(d.test.labels[i] == reference_value(d.test.sequence(i)));
  }

  ListOpsConfig bad = small_config(0);
  bad.min_len = 200;
  REQUIRE_THROWS_WITH(generate_listops(bad), Contains("[listops] length range [200, 120]"));
  bad = small_config(0);
  bad.max_args = 1;
  REQUIRE_THROWS_WITH(generate_listops(bad), Contains("max_args"));
  bad = small_config(0);
  bad.num_val = -1;
  REQUIRE_THROWS_WITH(generate_listops(bad), Contains("negative split size"));
  // Only 10 distinct one-token trees exist: asking for 11 must end with an error, not a hang.
  bad = small_config(0);
  bad.min_len = 1, bad.max_len = 1, bad.num_train = 11, bad.num_val = 0, bad.num_test = 0;
  REQUIRE_THROWS_WITH(generate_listops(bad), Contains("only 10 distinct trees"));
}

TEST_CASE("listops: the sample TSV file", "[data]") {
  SequenceDataset ds = read_listops_tsv(kData + "/listops/sample.tsv");
  REQUIRE(ds.size() == 10);
  REQUIRE(ds.labels == std::vector<int64_t>{9, 4, 2, 4, 5, 7, 9, 8, 4, 4});  // computed by hand
  REQUIRE(listops_decode(ds.sequence(0)) == "[MAX 2 9 ]");
  REQUIRE(listops_decode(ds.sequence(4)) == "[MED 3 [SM 5 5 ] 8 9 ]");
  for (int64_t i = 0; i < ds.size(); ++i) REQUIRE(reference_value(ds.sequence(i)) == ds.labels[i]);
  // Written back in LRA's format, the file is reproduced byte for byte.
  REQUIRE(listops_to_tsv(ds) == read_file(kData + "/listops/sample.tsv", "test", 1 << 20));
}

TEST_CASE("listops: TSV round trip of generated data with LF or CRLF line ends", "[data]") {
  ListOpsData d = generate_listops(small_config(2));
  std::string tsv = listops_to_tsv(d.val);
  REQUIRE(same(parse_listops_tsv(tsv, "crlf"), d.val));
  std::string lf;
  for (char ch : tsv)
    if (ch != '\r') lf += ch;
  REQUIRE(same(parse_listops_tsv(lf, "lf"), d.val));
  TempDir dir;
  write_listops_tsv(dir.file("val.tsv"), d.val);
  REQUIRE(same(read_listops_tsv(dir.file("val.tsv")), d.val));
  // Parentheses carry no information: one row without any still reads.
  REQUIRE(parse_listops_tsv("Source\tTarget\n[MAX 2 9 ]\t9\n", "x").labels == std::vector<int64_t>{9});
  REQUIRE(parse_listops_tsv("Source\tTarget\r\n", "x").size() == 0);
}

TEST_CASE("listops: malformed TSV files give the file, line and problem", "[data]") {
  const std::string ok = "( ( ( [MAX 2 ) 9 ) ] )\t9\r\n";
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"", "is empty"},
      {"Source,Target\r\n" + ok, "line 1: expected the header \"Source<TAB>Target\""},
      {"source\ttarget\n" + ok, "line 1: expected the header"},
      {"Source\tTarget\r\n" + ok + "( [MAX 2 9 ] )\r\n", "line 3: expected 2 tab-separated columns"},
      {"Source\tTarget\r\n" + ok + "[MAX 2 9 ]\t9\t1\r\n",
       "line 3: expected 2 tab-separated columns (Source, Target), found more"},
      {"Source\tTarget\r\n( [MAX 2 [FOO 1 ] ] )\t9\r\n", "line 2: unknown token \"[FOO\""},
      {"Source\tTarget\r\n[max 2 9 ]\t9\r\n", "line 2: unknown token \"[max\""},
      {"Source\tTarget\r\n" + ok + "[MAX 2 9 ]\t12\r\n", "line 3: target \"12\" is not an integer from 0 to 9"},
      {"Source\tTarget\r\n[MAX 2 9 ]\t-1\r\n", "line 2: target \"-1\""},
      {"Source\tTarget\r\n[MAX 2 9 ]\t\r\n", "line 2: target \"\""},
      {"Source\tTarget\r\n[MAX 2 9 ]\t9 \r\n", "line 2: target \"9 \""},
      {"Source\tTarget\r\n" + ok + "\r\n" + ok, "line 3: empty line"},
      {"Source\tTarget\r\n" + ok + ok + "[MAX 2 9 ]\t3\r\n", "line 4: the expression's value is 9 but the target is 3"},
      {"Source\tTarget\r\n[MAX 2 [MIN 9 ]\t2\r\n", "line 2: 1 operator is not closed"},
      {"Source\tTarget\r\n[MAX 2 ] ]\t2\r\n", "line 2: token 4 of 4"},
      {"Source\tTarget\r\n( ( ) )\t2\r\n", "line 2: empty expression"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    INFO(c.text);
    REQUIRE_THROWS_WITH(parse_listops_tsv(c.text, "bad.tsv"), Contains("[listops] bad.tsv") && Contains(c.expect));
  }
  // A wrong label passes only without verification.
  REQUIRE(parse_listops_tsv("Source\tTarget\n[MAX 2 9 ]\t3\n", "x", false).labels == std::vector<int64_t>{3});
  // Through a file: the path names the file.
  write_bytes(dir.file("bad.tsv"), "Source\tTarget\n[MAX 2 9 ]\tx\n");
  REQUIRE_THROWS_WITH(read_listops_tsv(dir.file("bad.tsv")), Contains(dir.file("bad.tsv") + " line 2"));
  REQUIRE_THROWS_WITH(read_listops_tsv(dir.file("missing.tsv")), Contains("[listops] cannot read"));
}

// =============================== gzip ===============================

namespace {
std::string lines_text() {
  std::string s;
  for (int i = 0; i < 2000; ++i) s += fmt::format("line {}: {}\n", i, i * i % 9973);
  return s;
}
std::string lcg_bytes(size_t n) {
  std::string s;
  uint64_t x = 1;
  for (size_t i = 0; i < n; ++i) {
    x = (x * 1103515245 + 12345) % (1ull << 31);
    s += (char)((x >> 16) & 0xFF);
  }
  return s;
}
std::string fixture(const std::string& name) { return read_file(kData + "/" + name, "test", 1 << 24); }
}  // namespace

TEST_CASE("gzip: fixtures of every block type decode to their contents", "[data]") {
  REQUIRE(crc32("123456789") == 0xCBF43926u);  // the standard check value of CRC-32
  REQUIRE(crc32("") == 0);
  REQUIRE(crc32("56789", crc32("1234")) == 0xCBF43926u);
  REQUIRE(gunzip(fixture("gzip/lines.txt.gz"), "lines") == lines_text());        // dynamic Huffman
  REQUIRE(gunzip(fixture("gzip/hello.txt.gz"), "hello") == "hello megagrad\n");   // fixed Huffman
  REQUIRE(gunzip(fixture("gzip/random.bin.gz"), "random") == lcg_bytes(70000));   // stored blocks
  REQUIRE(gunzip(fixture("gzip/two_members.txt.gz"), "two") == "first member\nsecond member\n");
  REQUIRE(is_gzip(fixture("gzip/hello.txt.gz")));
  REQUIRE_FALSE(is_gzip("hello"));
}

TEST_CASE("gzip: optional header fields and their checks", "[data]") {
  std::string plain = fixture("gzip/hello.txt.gz");
  std::string body = plain.substr(10);  // deflate data + trailer
  // FEXTRA (4 bytes), FNAME, FCOMMENT and FHCRC (low 16 bits of the header's CRC-32).
  std::string header = plain.substr(0, 10);
  header[3] = (char)(4 | 8 | 16 | 2);
  header += std::string("\x04\x00" "abcd", 6) + std::string("hello.txt\0", 10) + std::string("a comment\0", 10);
  uint32_t hcrc = crc32(header) & 0xFFFF;
  std::string with = header + (char)(hcrc & 0xFF) + (char)(hcrc >> 8) + body;
  REQUIRE(gunzip(with, "fields") == "hello megagrad\n");
  std::string bad_hcrc = with;
  bad_hcrc[header.size()] ^= 1;
  REQUIRE_THROWS_WITH(gunzip(bad_hcrc, "f"), Contains("[gzip] f: header CRC"));
  std::string reserved = plain;
  reserved[3] = (char)0x20;
  REQUIRE_THROWS_WITH(gunzip(reserved, "f"), Contains("reserved header flags"));
  std::string method = plain;
  method[2] = 7;
  REQUIRE_THROWS_WITH(gunzip(method, "f"), Contains("compression method 7"));
  std::string unterminated = header.substr(0, 10 + 6) + "no-terminator";
  REQUIRE_THROWS_WITH(gunzip(unterminated, "f"), Contains("truncated"));
  REQUIRE_THROWS_WITH(gunzip("", "f"), Contains("[gzip] f: empty input"));
  REQUIRE_THROWS_WITH(gunzip(plain + "junk", "f"), Contains("4 bytes after member 1"));
  REQUIRE_THROWS_WITH(gunzip(plain + std::string(20, 'x'), "f"),
                      Contains("member 2 starts with 78 78, expected 1f 8b"));
  REQUIRE_THROWS_WITH(gunzip(fixture("gzip/lines.txt.gz"), "f", 1000), Contains("exceeds the limit of 1000 bytes"));
}

TEST_CASE("gzip: corrupted or truncated data is an error or the exact original, never garbage", "[data]") {
  for (const char* name : {"gzip/lines.txt.gz", "gzip/hello.txt.gz", "gzip/random.bin.gz"}) {
    const std::string gz = fixture(name), original = gunzip(gz, name);
    INFO(name);
    int errors = 0, checked = 0;
    // One bit flipped at a time: every bit of the first 32 bytes after the fixed header (bytes
    // 4-9, time stamp and OS, do not matter) and of the last 16 (the end of the deflate data and
    // the trailer), and one bit of 200 bytes spread over the rest.
    const size_t stride = std::max<size_t>(1, gz.size() / 200);
    for (size_t i = 10; i < gz.size(); ++i) {
      bool edge = i < 42 || i + 16 >= gz.size();
      if (!edge && i % stride) continue;
      for (int bit = edge ? 0 : (int)(i % 8); bit < 8; bit += edge ? 1 : 8) {
        std::string bad = gz;
        bad[i] ^= (char)(1 << bit);
        ++checked;
        std::string out;
        try {
          // A cap near the real size: a flipped length must not make it inflate gigabytes.
          out = gunzip(bad, "fuzz", original.size() * 4 + 4096);
        } catch (const Error& e) {
          ++errors;
          REQUIRE_THAT(e.what(), Contains("[gzip] fuzz:"));
          continue;
        }
        REQUIRE(out == original);  // e.g. an unused bit after the last block
      }
    }
    REQUIRE(errors > checked * 9 / 10);
    for (size_t n = 0; n < gz.size(); n += (gz.size() > 1000 ? 97 : 1))
      REQUIRE_THROWS_WITH(gunzip(gz.substr(0, n), "cut"), Contains("[gzip] cut:"));
  }
}

TEST_CASE("gzip: members after a large one, and the output limit at the exact size", "[data]") {
  // random.bin.gz (70000 bytes, stored blocks) 4 times, then lines.txt.gz: 5 members whose output
  // crosses the wrapper's 256 KiB pieces; zlib's state is reset between the members.
  const std::string random = fixture("gzip/random.bin.gz");
  const std::string gz = random + random + random + random + fixture("gzip/lines.txt.gz");
  const std::string r = lcg_bytes(70000), want = r + r + r + r + lines_text();
  REQUIRE(gunzip(gz, "two") == want);
  REQUIRE(gunzip(gz, "two", want.size()) == want);
  REQUIRE_THROWS_WITH(gunzip(gz, "two", want.size() - 1),
                      Contains("[gzip] two: the decompressed data exceeds the limit of " + std::to_string(want.size() - 1)));
  REQUIRE_THROWS_WITH(gunzip(gz, "two", 100), Contains("exceeds the limit of 100 bytes"));
  // A corrupt member after the first is named.
  std::string bad = gz;
  bad[bad.size() - 6] ^= 0x40;  // its stored CRC
  REQUIRE_THROWS_WITH(gunzip(bad, "two"), Contains("[gzip] two: CRC-32 mismatch") && Contains("(member 5)"));
  std::string cut = gz.substr(0, gz.size() - 3);
  REQUIRE_THROWS_WITH(gunzip(cut, "two"), Contains("[gzip] two: the compressed data is truncated (member 5)"));
  // Trailer size wrong (CRC right): zlib's length check.
  std::string size = fixture("gzip/hello.txt.gz");
  size[size.size() - 4] ^= 1;
  REQUIRE_THROWS_WITH(gunzip(size, "s"), Contains("[gzip] s: size mismatch"));
  // Garbage instead of deflate data.
  std::string garbage = fixture("gzip/hello.txt.gz").substr(0, 10) + std::string(20, '\xff');
  REQUIRE_THROWS_WITH(gunzip(garbage, "g"), Contains("[gzip] g: corrupt compressed data (zlib: invalid block type)"));
}

// =============================== IDX and Fashion-MNIST ===============================

namespace {
std::string be32(uint32_t v) {
  return std::string{(char)(v >> 24), (char)((v >> 16) & 0xFF), (char)((v >> 8) & 0xFF), (char)(v & 0xFF)};
}
std::string idx_file(std::vector<uint32_t> dims, std::string_view data, uint8_t type = 8) {
  std::string s{'\0', '\0', (char)type, (char)dims.size()};
  for (uint32_t d : dims) s += be32(d);
  return s + std::string(data);
}
// The tiny fixture's pixels: (8n + 4r + c) * 7 mod 256.
uint8_t tiny_pixel(int n, int r, int c) { return (uint8_t)(((8 * n + 4 * r + c) * 7) % 256); }
}  // namespace

TEST_CASE("idx: small files written here, plain and gzip", "[data]") {
  std::string pixels;
  for (int i = 0; i < 24; ++i) pixels += (char)(i * 11);
  IdxArray a = parse_idx(idx_file({3, 2, 4}, pixels), "a");
  REQUIRE(a.dims == std::vector<int64_t>{3, 2, 4});
  REQUIRE(a.data.size() == 24);
  for (int i = 0; i < 24; ++i) REQUIRE(a.data[i] == (uint8_t)(i * 11));
  IdxArray big = parse_idx(idx_file({70000}, std::string(70000, '\x05')), "big");  // sizes over 16 bits
  REQUIRE(big.dims == std::vector<int64_t>{70000});
  IdxArray empty = parse_idx(idx_file({0, 28, 28}, ""), "empty");
  REQUIRE(empty.dims[0] == 0);
  REQUIRE(parse_idx(idx_file({0, 0xFFFFFFFF, 0xFFFFFFFF}, ""), "zero").data.empty());  // no overflow

  TempDir dir;
  write_bytes(dir.file("x-idx3-ubyte"), idx_file({3, 2, 4}, pixels));
  REQUIRE(read_idx(dir.file("x-idx3-ubyte")).data == a.data);
  // The gzip fixture pair.
  ImageSet s = load_idx_images(kData + "/idx/tiny-images-idx3-ubyte.gz", kData + "/idx/tiny-labels-idx1-ubyte");
  REQUIRE(s.count == 3);
  REQUIRE(s.rows == 2);
  REQUIRE(s.cols == 4);
  REQUIRE(s.labels == std::vector<uint8_t>{3, 1, 4});
  for (int n = 0; n < 3; ++n)
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 4; ++c) REQUIRE(s.pixels[n * 8 + r * 4 + c] == tiny_pixel(n, r, c));

  // As sequences of rows*cols pixels, in raster order.
  std::vector<int64_t> idx = {2, 0};
  Tensor px = image_pixels(s, idx), px64 = image_pixels(s, idx, DType::Float64);
  Tensor tok = image_tokens(s, idx), raw = image_tokens(s, idx, 0);
  REQUIRE(px.shape() == Shape{2, 8});
  REQUIRE(px.dtype() == DType::Float32);
  REQUIRE(tok.dtype() == DType::Int64);
  for (int b = 0; b < 2; ++b)
    for (int p = 0; p < 8; ++p) {
      uint8_t v = tiny_pixel((int)idx[b], p / 4, p % 4);
      REQUIRE(px.at({b, p}) == Approx(v / 255.0).epsilon(1e-6));
      REQUIRE(px64.at({b, p}) == v / 255.0);
      REQUIRE(tok.at({b, p}) == v + 1);
      REQUIRE(raw.at({b, p}) == v);
    }
  REQUIRE(image_labels(s, idx).to_int_vector() == std::vector<int64_t>{4, 3});
  std::vector<int64_t> out_of_range = {3};
  REQUIRE_THROWS_WITH(image_pixels(s, out_of_range), Contains("[image_pixels] index 3 out of range for 3 images"));
  REQUIRE_THROWS_WITH(image_tokens(s, {}), Contains("no images"));
}

TEST_CASE("idx: malformed files give clear errors", "[data]") {
  struct Case {
    std::string bytes, expect;
  } cases[] = {
      {"", "0 bytes, too short for an IDX header"},
      {std::string("\0\0\x08", 3), "too short"},
      {std::string("\x01\0\x08\x01", 4) + be32(1) + "a", "not an IDX file (magic 01 00 08 01"},
      {idx_file({1}, "a", 0x07), "unknown IDX data type 0x07"},
      {idx_file({1}, "abcd", 0x0D), "0x0d (float32) is not supported"},
      {idx_file({}, ""), "0 dimensions"},
      {std::string("\0\0\x08\x11", 4) + std::string(68, '\0'), "17 dimensions"},
      {std::string("\0\0\x08\x03", 4) + be32(1) + be32(1), "too short for the header of 3 dimensions"},
      {idx_file({2, 3}, "abcde"), "sizes (2,3) need more than the 5 data bytes"},
      {idx_file({2, 3}, "abcdefg"), "need 6 data bytes but the file has 7 (trailing bytes)"},
      {idx_file({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, "abc"), "sizes (4294967295)... need more than the 3 data bytes"},
      {idx_file({5, 0xFFFFFFFF}, "abcde"), "sizes (5,4294967295) need more than the 5 data bytes"},
  };
  for (const auto& c : cases) {
    INFO(c.expect);
    REQUIRE_THROWS_WITH(parse_idx(c.bytes, "f.idx"), Contains("[idx] f.idx: ") && Contains(c.expect));
  }
  // Through files: gzip corruption, wrong shapes, disagreeing pairs, bad labels.
  TempDir dir;
  std::string gz = fixture("idx/tiny-images-idx3-ubyte.gz");
  gz[gz.size() - 6] ^= 0x40;  // the stored CRC
  write_bytes(dir.file("corrupt.gz"), gz);
  REQUIRE_THROWS_WITH(read_idx(dir.file("corrupt.gz")), Contains("[gzip]") && Contains("CRC-32 mismatch"));
  write_bytes(dir.file("img"), idx_file({2, 1, 2}, "abcd"));
  write_bytes(dir.file("lab3"), idx_file({3}, std::string("\1\2\3", 3)));
  write_bytes(dir.file("lab2"), idx_file({2}, std::string("\1\x0a", 2)));
  write_bytes(dir.file("flat"), idx_file({4}, "abcd"));
  REQUIRE_THROWS_WITH(load_idx_images(dir.file("img"), dir.file("lab3")),
                      Contains("has 2 images but") && Contains("3 labels"));
  REQUIRE_THROWS_WITH(load_idx_images(dir.file("img"), dir.file("lab2")),
                      Contains("label 10 of image 1 is not below 10"));
  REQUIRE_THROWS_WITH(load_idx_images(dir.file("flat"), dir.file("lab2")), Contains("images must have 3 dimensions"));
  REQUIRE_THROWS_WITH(load_idx_images(dir.file("img"), dir.file("img")), Contains("labels must have 1 dimension"));
  REQUIRE_THROWS_WITH(read_idx(dir.file("missing")), Contains("[idx] cannot read"));
}

TEST_CASE("fashion-mnist: a missing directory names the Debian package", "[data]") {
  TempDir dir;
  REQUIRE_THROWS_WITH(load_fashion_mnist(dir.path.string()),
                      Contains("[fashion_mnist]") && Contains("train-images-idx3-ubyte") &&
                          Contains("apt-get install dataset-fashion-mnist"));
}

TEST_CASE("fashion-mnist: the installed package, if present", "[data]") {
  if (!fs::exists(std::string(kFashionMnistDir) + "/t10k-labels-idx1-ubyte.gz") &&
      !fs::exists(std::string(kFashionMnistDir) + "/t10k-labels-idx1-ubyte")) {
    test::skip("dataset-fashion-mnist is not installed: no real-data checks");
    return;
  }
  FashionMnist f = load_fashion_mnist();
  REQUIRE(f.train.count == 60000);
  REQUIRE(f.test.count == 10000);
  REQUIRE(f.train.pixels_per_image() == 784);
  // Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
  int64_t train_hist[10] = {0}, test_hist[10] = {0};
  for (uint8_t l : f.train.labels) ++train_hist[l];
  for (uint8_t l : f.test.labels) ++test_hist[l];
  for (int k = 0; k < 10; ++k) {
    REQUIRE(train_hist[k] == 6000);
    REQUIRE(test_hist[k] == 1000);
  }
  REQUIRE(fashion_mnist_classes()[9] == "Ankle boot");
  std::vector<int64_t> first = {0};
  Tensor px = image_pixels(f.test, first);
  REQUIRE(px.shape() == Shape{1, 784});
  std::vector<double> v = px.to_vector();
  REQUIRE(std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); }));  // max_element skips NaN
  REQUIRE(*std::max_element(v.begin(), v.end()) <= 1.0);
  REQUIRE(*std::max_element(v.begin(), v.end()) > 0.5);  // not a blank image
  REQUIRE(*std::min_element(v.begin(), v.end()) == 0.0);  // background
}

// =============================== text ===============================

TEST_CASE("text: vocabularies", "[data]") {
  CharVocab v = CharVocab::from_text("banana!");
  REQUIRE(v.size() == 5);  // pad + '!', 'a', 'b', 'n' in byte order
  REQUIRE(v.id('!') == 1);
  REQUIRE(v.id('a') == 2);
  REQUIRE(v.id('b') == 3);
  REQUIRE(v.id('n') == 4);
  REQUIRE(v.id('z') == -1);
  REQUIRE(v.encode_ids("nab") == std::vector<int64_t>{4, 2, 3});
  std::vector<int64_t> ids = {3, 2, 4, 1};
  REQUIRE(v.decode(ids) == "ban!");
  REQUIRE_THROWS_WITH(v.encode_ids("bad"), Contains("[text] byte 'd' (0x64) at position 2 is not in the vocabulary"));
  std::vector<int64_t> pad = {0};
  REQUIRE_THROWS_WITH(v.decode(pad), Contains("id 0 is not a character"));
  CharVocab round = CharVocab::from_json(Json::parse(v.to_json().dump()));
  for (int b = 0; b < 256; ++b) REQUIRE(round.id((uint8_t)b) == v.id((uint8_t)b));

  CharVocab all = CharVocab::bytes();
  REQUIRE(all.size() == 257);
  for (int b = 0; b < 256; ++b) REQUIRE(all.id((uint8_t)b) == b + 1);
  REQUIRE(all.decode(all.encode_ids(std::string("\0\xff" "x", 3))) == std::string("\0\xff" "x", 3));
  REQUIRE_THROWS_WITH(all.encode("x"), Contains("does not fit bytes"));

  REQUIRE_THROWS_WITH(CharVocab::from_json(Json::parse(R"({"chars": [97, 97]})")), Contains("distinct and increasing"));
  REQUIRE_THROWS_WITH(CharVocab::from_json(Json::parse(R"({"chars": [300]})")), Contains("300 is not in 0..255"));
  REQUIRE_THROWS_WITH(CharVocab::from_json(Json::parse(R"({"chars": []})")), Contains("empty"));
  REQUIRE_THROWS_WITH(CharVocab::from_json(Json::parse(R"({"bytes": [1]})")), Contains("[text]"));
  REQUIRE_THROWS_WITH(CharVocab::from_text(""), Contains("empty"));
}

TEST_CASE("text: split, sampled windows and evaluation windows", "[data]") {
  const std::string text = lcg_bytes(1000);
  TextData d = make_text_data(text, 0.05);
  REQUIRE(d.train.size() == 950);
  REQUIRE(d.val.size() == 50);
  for (size_t i = 0; i < 950; ++i) REQUIRE(d.vocab.byte(d.train[i]) == (uint8_t)text[i]);
  for (size_t i = 0; i < 50; ++i) REQUIRE(d.vocab.byte(d.val[i]) == (uint8_t)text[950 + i]);
  REQUIRE(make_text_data(text, 0.0).val.empty());
  REQUIRE_THROWS_WITH(make_text_data(text, 1.0), Contains("val_fraction"));
  REQUIRE_THROWS_WITH(make_text_data("", 0.1), Contains("is empty"));

  // Windows: rows are contiguous slices of the split, targets shifted by one.
  const int64_t T = 16, B = 64;
  Generator gen(42);
  LMBatch b = sample_windows(d.train, B, T, gen);
  REQUIRE(gen.offset() == (uint64_t)B);
  REQUIRE(b.inputs.shape() == Shape{B, T});
  std::vector<int64_t> x = b.inputs.to_int_vector(), y = b.targets.to_int_vector();
  for (int64_t r = 0; r < B; ++r) {
    int64_t found = -1;
    for (int64_t s = 0; s + T < (int64_t)d.train.size() && found < 0; ++s)
      if (std::equal(d.train.begin() + s, d.train.begin() + s + T, x.begin() + r * T)) found = s;
    REQUIRE(found >= 0);
    REQUIRE(std::equal(d.train.begin() + found + 1, d.train.begin() + found + 1 + T, y.begin() + r * T));
  }
  // Resumable: the generator's (seed, offset) reproduces the next batch.
  Generator saved = gen;
  LMBatch next1 = sample_windows(d.train, B, T, gen);
  Generator restored(0);
  restored.set_state(saved.seed(), saved.offset());
  LMBatch next2 = sample_windows(d.train, B, T, restored);
  REQUIRE(next1.inputs.to_int_vector() == next2.inputs.to_int_vector());
  REQUIRE(next1.inputs.to_int_vector() != x);
  // Every start in [0, n - T - 1] is reachable, both ends included: on a text of 20 distinct
  // tokens with T = 4 there are 16 starts.
  std::string small;
  for (int i = 0; i < 20; ++i) small += (char)('a' + i);
  TextData sd = make_text_data(small, 0.0);
  Generator g2(7);
  LMBatch many = sample_windows(sd.train, 2000, 4, g2);
  std::map<int64_t, int> starts;
  std::vector<int64_t> first = many.inputs.to_int_vector();
  for (int r = 0; r < 2000; ++r) ++starts[first[r * 4] - 1];  // id - 1 = position in the text
  REQUIRE(starts.size() == 16);
  REQUIRE(starts.begin()->first == 0);
  REQUIRE(starts.rbegin()->first == 15);
  for (auto [s, n] : starts) REQUIRE(n > 60);  // about 125 each
  REQUIRE_THROWS_WITH(sample_windows(d.val, 1, 50, gen),
                      Contains("[sample_windows] the text has 50 tokens, fewer than a window of 50"));

  // Evaluation windows tile the split: window k is ids[kT, kT + T), targets one further.
  int64_t nw = num_eval_windows(d.val, 7);
  REQUIRE(nw == 7);  // floor(49 / 7)
  LMBatch ev = eval_windows(d.val, 7, 0, nw);
  std::vector<int64_t> ex = ev.inputs.to_int_vector(), ey = ev.targets.to_int_vector();
  for (int64_t i = 0; i < nw * 7; ++i) {
    REQUIRE(ex[i] == d.val[i]);
    REQUIRE(ey[i] == d.val[i + 1]);
  }
  REQUIRE(eval_windows(d.val, 7, 3, 2).inputs.to_int_vector() ==
          std::vector<int64_t>(d.val.begin() + 21, d.val.begin() + 35));
  REQUIRE_THROWS_WITH(eval_windows(d.val, 7, 6, 2), Contains("out of range"));

  TempDir dir;
  write_bytes(dir.file("t.txt"), text);
  TextData f = load_text(dir.file("t.txt"), 0.05, true);
  REQUIRE(f.vocab.size() == 257);
  REQUIRE(f.train.size() == 950);
  REQUIRE(f.train[0] == (uint8_t)text[0] + 1);
}

TEST_CASE("text: the default corpus (King James Bible from bible-kjv)", "[data]") {
  TempDir dir;
  bool have_bible = fs::exists("/usr/bin/bible");
  if (!have_bible) {
    REQUIRE_THROWS_WITH(ensure_kjv_corpus(dir.path.string()), Contains("[kjv]") && Contains("bible-kjv"));
    WARN("bible-kjv is not installed: checked only the error message");
    return;
  }
  std::string path = ensure_kjv_corpus(dir.file("cache"));
  REQUIRE(path == dir.file("cache") + "/kjv.txt");
  std::string text = read_file(path, "test", 1 << 24);
  REQUIRE(text.size() > 4'000'000);
  REQUIRE(text.starts_with("\nGenesis 1\n\n  1 In the beginning God created the heaven and the earth.\n"));
  REQUIRE(text.ends_with("The grace of our Lord Jesus Christ be with you all. Amen.\n"));
  size_t longest = 0, line = 0;
  for (char c : text) line = c == '\n' ? 0 : line + 1, longest = std::max(longest, line);
  REQUIRE(longest <= 79);  // -l79, whatever $COLUMNS says
  auto mtime = fs::last_write_time(path);
  REQUIRE(ensure_kjv_corpus(dir.file("cache")) == path);  // cached: not rewritten
  REQUIRE(fs::last_write_time(path) == mtime);
  TextData d = load_text(path);
  REQUIRE(d.vocab.size() == 74);  // 73 distinct ASCII bytes + pad
}

// =============================== batches ===============================

TEST_CASE("batch: padding, masks and lengths", "[data]") {
  std::vector<std::vector<int64_t>> seqs = {{5, 6, 7}, {8}, {}};
  auto check = [&](const PaddedBatch& b, int64_t L, int64_t pad) {
    REQUIRE(b.tokens.shape() == Shape{3, L});
    REQUIRE(b.tokens.dtype() == DType::Int64);
    REQUIRE(b.padding_mask.shape() == Shape{3, L});
    REQUIRE(b.lengths == std::vector<int64_t>{3, 1, 0});
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t t = 0; t < L; ++t) {
        bool is_pad = t >= (int64_t)seqs[r].size();
        REQUIRE(b.tokens.at({r, t}) == (is_pad ? pad : seqs[r][t]));
        REQUIRE(b.padding_mask.at({r, t}) == (is_pad ? 1.0 : 0.0));
      }
  };
  PaddedBatch b = pad_batch(seqs);
  check(b, 3, 0);
  REQUIRE(b.padding_mask.dtype() == DType::Float32);
  REQUIRE_FALSE(b.labels.defined());
  check(pad_batch(seqs, {.pad_id = 9, .length = 5}), 5, 9);
  check(pad_batch(seqs, {.multiple_of = 4}), 4, 0);
  check(pad_batch(seqs, {.length = 5, .multiple_of = 4}), 8, 0);
  PaddedBatch d = pad_batch(seqs, {.mask_dtype = DType::Float64});
  REQUIRE(d.padding_mask.dtype() == DType::Float64);
  check(d, 3, 0);
  REQUIRE(pad_batch(std::vector<std::vector<int64_t>>{{}, {}}).tokens.shape() == Shape{2, 1});  // all empty: L = 1

  REQUIRE_THROWS_WITH(pad_batch(seqs, {.length = 2}),
                      Contains("[pad_batch] sequence 0 has 3 tokens, longer than the batch length 2"));
  REQUIRE_THROWS_WITH(pad_batch(std::vector<std::vector<int64_t>>{}), Contains("no sequences"));
  REQUIRE_THROWS_WITH(pad_batch(seqs, {.multiple_of = 0}), Contains("multiple_of"));
  REQUIRE_THROWS_WITH(pad_batch(seqs, {.pad_id = -1}), Contains("pad id -1"));
  REQUIRE_THROWS_WITH(pad_batch(seqs, {.mask_dtype = DType::Int64}), Contains("float32 or float64"));
}

TEST_CASE("batch: make_batch from a dataset", "[data]") {
  SequenceDataset ds = read_listops_tsv(kData + "/listops/sample.tsv");
  std::vector<int64_t> idx = {4, 0, 7};
  PaddedBatch b = make_batch(ds, idx, {.multiple_of = 8});
  int64_t longest = std::max({ds.length(4), ds.length(0), ds.length(7)});
  REQUIRE(b.tokens.size(1) == (longest + 7) / 8 * 8);
  REQUIRE(b.labels.to_int_vector() == std::vector<int64_t>{ds.labels[4], ds.labels[0], ds.labels[7]});
  for (int r = 0; r < 3; ++r) {
    auto seq = ds.sequence(idx[r]);
    for (size_t t = 0; t < seq.size(); ++t) REQUIRE(b.tokens.at({r, (int64_t)t}) == seq[t]);
    REQUIRE(b.lengths[r] == (int64_t)seq.size());
  }
  std::vector<int64_t> bad = {10};
  REQUIRE_THROWS_WITH(make_batch(ds, bad), Contains("[make_batch] index 10 out of range for a dataset of 10 examples"));
}

TEST_CASE("batch: the iterator visits every example once per epoch", "[data]") {
  BatchIterator it(10, 3, 99);
  REQUIRE(it.batches_per_epoch() == 4);
  std::vector<std::vector<int64_t>> epochs(3);
  for (int e = 0; e < 3; ++e) {
    REQUIRE(it.epoch() == e);
    for (int k = 0; k < 4; ++k) {
      auto b = it.next();
      REQUIRE(b.size() == (k < 3 ? 3u : 1u));
      epochs[e].insert(epochs[e].end(), b.begin(), b.end());
    }
    REQUIRE(epochs[e] == it.epoch_order(e));
    std::vector<int64_t> sorted = epochs[e];
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < 10; ++i) REQUIRE(sorted[i] == i);
  }
  REQUIRE(epochs[0] != epochs[1]);
  REQUIRE(BatchIterator(10, 3, 99).epoch_order(1) == epochs[1]);  // depends on (seed, epoch) only
  REQUIRE(BatchIterator(10, 3, 98).epoch_order(0) != epochs[0]);
  BatchIterator plain(10, 4, 99, false, true);
  REQUIRE(plain.batches_per_epoch() == 2);
  REQUIRE(plain.next() == std::vector<int64_t>{0, 1, 2, 3});
  REQUIRE(plain.next() == std::vector<int64_t>{4, 5, 6, 7});
  REQUIRE(plain.epoch() == 1);  // 8 and 9 are dropped
  REQUIRE(plain.next() == std::vector<int64_t>{0, 1, 2, 3});
  // Fisher-Yates with Philox draws: the 6 orders of 3 elements are equally likely.
  BatchIterator three(3, 3, 1);
  std::map<std::vector<int64_t>, int> counts;
  for (int e = 0; e < 6000; ++e) ++counts[three.epoch_order(e)];
  REQUIRE(counts.size() == 6);
  for (auto& [order, n] : counts) REQUIRE(std::abs(n - 1000) < 150);
  REQUIRE_THROWS_WITH(BatchIterator(0, 3, 1), Contains("[batch_iterator] the dataset is empty"));
  REQUIRE_THROWS_WITH(BatchIterator(5, 0, 1), Contains("batch size must be positive"));
  REQUIRE_THROWS_WITH(BatchIterator(5, 6, 1, true, true), Contains("leaves no batch"));
}

TEST_CASE("batch: the iterator resumes bit-exactly from a saved state", "[data]") {
  const uint64_t seed = 0xFEDCBA9876543210ull;  // above 2^63: saved as a string
  BatchIterator a(103, 8, seed);
  for (int k = 0; k < 19; ++k) a.next();  // into the second epoch (13 batches per epoch)
  REQUIRE(a.epoch() == 1);
  std::string saved = a.state_json().dump();
  BatchIterator b(103, 8, seed);
  b.load_state_json(Json::parse(saved));
  REQUIRE(b.epoch() == a.epoch());
  REQUIRE(b.position() == a.position());
  for (int k = 0; k < 40; ++k) REQUIRE(a.next() == b.next());
  // The saved state must come from the same configuration.
  Json state = Json::parse(saved);
  REQUIRE_THROWS_WITH(BatchIterator(104, 8, seed).load_state_json(state),
                      Contains("saved state has size 103, this iterator has 104"));
  REQUIRE_THROWS_WITH(BatchIterator(103, 4, seed).load_state_json(state), Contains("batch_size"));
  REQUIRE_THROWS_WITH(BatchIterator(103, 8, 1).load_state_json(state), Contains("seed \"18364758544493064720\""));
  REQUIRE_THROWS_WITH(BatchIterator(103, 8, seed, false).load_state_json(state), Contains("shuffle"));
  Json moved = Json::parse(saved);
  moved.set("position", 5);
  REQUIRE_THROWS_WITH(b.load_state_json(moved), Contains("position 5 is not the start of a batch"));
  moved.set("position", 104);
  REQUIRE_THROWS_WITH(b.load_state_json(moved), Contains("position 104"));
  Json extra = Json::parse(saved);
  extra.set("rng", 1);
  REQUIRE_THROWS_WITH(b.load_state_json(extra), Contains("unknown key \"rng\""));
  REQUIRE_THROWS_WITH(b.load_state_json(Json::parse("[]")), Contains("JSON object"));
}
