// Translation data: the parallel-text reader and its errors (mega/data/parallel.h), the
// Spanish -> English Bible corpus from the SWORD modules (mega/data/bible_parallel.h; a visible
// skip without libsword or the modules), and the SentencePiece subword tokenizer
// (mega/text/subword.h; a visible skip in a build without SentencePiece).
#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>
#include <catch2/catch.hpp>
#include "core/atomic_file.h"
#include "core/error.h"
#include "mega/data/bible_parallel.h"
#include "mega/data/parallel.h"
#include "mega/text/subword.h"
#include "mega/text/utf8.h"
#include "tests/test_util.h"

using namespace megagrad;
using namespace megagrad::data;
using megagrad::text::SubwordOptions;
using megagrad::text::SubwordTokenizer;

// ---- the reader ----

TEST_CASE("parallel reader: line-aligned files and TSV", "[parallel_data]") {
  test::TempDir dir("parallel");
  write_file_atomic(dir.file("src.txt"), "\xEF\xBB\xBFHola mundo.\r\nBuenos días\n", "test");  // BOM, CRLF
  write_file_atomic(dir.file("tgt.txt"), "Hello world.\nGood morning", "test");          // no final newline
  std::vector<SentencePair> p = read_parallel_files(dir.file("src.txt"), dir.file("tgt.txt"));
  REQUIRE(p.size() == 2);
  CHECK(p[0].src == "Hola mundo.");
  CHECK(p[0].tgt == "Hello world.");
  CHECK(p[1].src == "Buenos días");
  CHECK(p[1].tgt == "Good morning");
  CHECK(p[1].where == dir.file("src.txt") + ":2");

  write_parallel_tsv(dir.file("p.tsv"), p);
  CHECK(read_file(dir.file("p.tsv"), "test", 1000) == "Hola mundo.\tHello world.\nBuenos días\tGood morning\n");
  std::vector<SentencePair> q = read_parallel_tsv(dir.file("p.tsv"));
  REQUIRE(q.size() == 2);
  CHECK(q[1].src == "Buenos días");
  CHECK(q[1].tgt == "Good morning");
}

TEST_CASE("parallel data: held-out tail splits and joint sentences", "[parallel_data]") {
  std::vector<SentencePair> p;
  for (int i = 0; i < 10; ++i) p.push_back({"s" + std::to_string(i), "t" + std::to_string(i), "x:" + std::to_string(i + 1)});
  ParallelSplits s = split_tail(p, 2, 3);
  REQUIRE(s.train.size() == 5);
  REQUIRE(s.valid.size() == 2);
  REQUIRE(s.test.size() == 3);
  CHECK(s.train.back().src == "s4");
  CHECK(s.valid.front().src == "s5");
  CHECK(s.valid.back().src == "s6");
  CHECK(s.test.front().src == "s7");
  CHECK(s.test.back().tgt == "t9");
  CHECK(split_tail(p, 0, 0).train.size() == 10);
  REQUIRE_THROWS_WITH(split_tail(p, 5, 5),
                      "[parallel_data] cannot hold out 5 validation and 5 test pairs of 10: no training pair would be left");
  CHECK(joint_sentences(s.valid) == std::vector<std::string>{"s5", "t5", "s6", "t6"});
}

TEST_CASE("parallel reader: corrupt or unaligned input says where and why", "[parallel_data]") {
  const auto lines = [](std::string_view a, std::string_view b) { return parse_parallel_lines(a, b, "es.txt", "en.txt"); };
  const auto tsv = [](std::string_view t) { return parse_parallel_tsv(t, "p.tsv"); };
  // line-aligned files
  REQUIRE_THROWS_WITH(lines("a\nb\nc\n", "A\nB\n"),
                      "[parallel_data] es.txt has 3 lines but en.txt has 2: the files must be line-aligned (line 3 "
                      "has no translation)");
  REQUIRE_THROWS_WITH(lines("a\n\nc\n", "A\nB\nC\n"), "[parallel_data] es.txt:2: the line is empty");
  REQUIRE_THROWS_WITH(lines("a\nb\n", "A\n \t\n"), "[parallel_data] en.txt:2: the line is only whitespace");
  REQUIRE_THROWS_WITH(lines("a\nb\xC3(\n", "A\nB\n"), "[parallel_data] es.txt:2: invalid UTF-8 at byte 2 (0xc3)");
  REQUIRE_THROWS_WITH(lines("a\n\xED\xA0\x80\n", "A\nB\n"),  // a UTF-16 surrogate encoded in UTF-8
                      "[parallel_data] es.txt:2: invalid UTF-8 at byte 1 (0xed)");
  REQUIRE_THROWS_WITH(lines("a\tb\n", "A\n"),
                      "[parallel_data] es.txt:1: a tab inside the sentence (a TSV line? give it as one TSV file instead)");
  REQUIRE_THROWS_WITH(lines("", "A\n"), "[parallel_data] es.txt is empty");
  REQUIRE_THROWS_WITH(lines("a\r\rb\n", "A\n"), "[parallel_data] es.txt:1: a carriage return inside the line");
  // TSV
  REQUIRE_THROWS_WITH(tsv("a\tA\nb B\n"), "[parallel_data] p.tsv:2: no tab: expected source<TAB>target");
  REQUIRE_THROWS_WITH(tsv("a\tA\tx\n"), "[parallel_data] p.tsv:1: more than one tab: expected source<TAB>target");
  REQUIRE_THROWS_WITH(tsv("a\tA\n\nc\tC\n"), "[parallel_data] p.tsv:2: empty line");
  REQUIRE_THROWS_WITH(tsv("a\tA\n\tB\n"), "[parallel_data] p.tsv:2: the source side is empty");
  REQUIRE_THROWS_WITH(tsv("a\tA\nb\t  \n"), "[parallel_data] p.tsv:2: the target side is only whitespace");
  REQUIRE_THROWS_WITH(tsv("a\tA\xFF\n"), "[parallel_data] p.tsv:1: invalid UTF-8 in the target at byte 2 (0xff)");
  REQUIRE_THROWS_WITH(tsv("\xEF\xBB\xBF"), "[parallel_data] p.tsv is empty");
  // files: a missing one is named
  REQUIRE_THROWS_WITH(read_parallel_tsv("/nonexistent/p.tsv"),
                      Catch::StartsWith("[parallel_data] cannot read /nonexistent/p.tsv"));
  // the writer refuses what the reader would refuse
  REQUIRE_THROWS_WITH(parallel_to_tsv({{"a\tb", "A", "x:1"}}),
                      "[parallel_data] cannot write pair 1 (x:1) source: it holds a tab or a line break");
  REQUIRE_THROWS_WITH(parallel_to_tsv({{"a", "", "x:1"}}), "[parallel_data] cannot write pair 1 (x:1) target: empty");
}

// ---- the Bible corpus ----

namespace {
// Loaded once per process (a few seconds).
const BibleCorpus& bible() {
  static const BibleCorpus c = load_bible_parallel();
  return c;
}
// Under AddressSanitizer libsword's many small allocations make one reading of the modules take
// minutes (about 4 on the CI machine, against 5 s): only one test case reads them there (the
// clean-text check, which runs every verse through our cleanup code); the others skip with
// this, and run in the normal build.
bool skip_under_asan() {
#if defined(__SANITIZE_ADDRESS__)
  test::skip("under AddressSanitizer: reading the SWORD modules takes minutes; the normal build runs this");
  return true;
#else
  return false;
#endif
}
bool skip_without_bible() {
  std::string why;
  if (bible_modules_available({}, &why)) return false;
  test::skip(why);
  if (!sword_built())
    REQUIRE_THROWS_WITH(load_bible_parallel(),
                        Catch::StartsWith("[bible_parallel] built without SWORD: install libsword-dev and rebuild"));
  return true;
}
const SentencePair* find_verse(const std::vector<SentencePair>& v, const std::string& ref) {
  for (const SentencePair& p : v)
    if (p.where == ref) return &p;
  return nullptr;
}
}  // namespace

TEST_CASE("Bible corpus: pair counts per split", "[parallel_data][bible]") {
  if (skip_under_asan() || skip_without_bible()) return;
  const BibleCorpus& c = bible();
  // The Debian modules spaRV1909eb (sword-text-sparv) and engKJV2006eb (sword-text-kjv): the KJV
  // versification's 31,102 verses, 18 of them empty in the Spanish module.
  CHECK(c.stats.verses == 31102);
  CHECK(c.stats.skipped == 18);
  CHECK(c.stats.pairs == 31084);
  CHECK(c.splits.train.size() == 29527);
  CHECK(c.splits.valid.size() == 678);  // Mark: 678 verses
  CHECK(c.splits.test.size() == 879);   // John: 879 verses
  CHECK(c.stats.skipped_verses.front() == "Num.12.16 (empty in spaRV1909eb)");
  CHECK(std::find(c.stats.skipped_verses.begin(), c.stats.skipped_verses.end(), "Acts.19.41 (empty in spaRV1909eb)") !=
        c.stats.skipped_verses.end());
  CHECK(c.stats.titles_moved == 116);  // the KJV's canonical psalm titles
}

TEST_CASE("Bible corpus: known verses in both languages", "[parallel_data][bible]") {
  if (skip_under_asan() || skip_without_bible()) return;
  const BibleCorpus& c = bible();
  const SentencePair* j = find_verse(c.splits.test, "John.3.16");
  REQUIRE(j != nullptr);
  CHECK(j->src ==
        "Porque de tal manera amó Dios al mundo, que ha dado á su Hijo unigénito, para que todo aquel que en él cree, no "
        "se pierda, mas tenga vida eterna.");
  CHECK(j->tgt ==
        "For God so loved the world, that he gave his only begotten Son, that whosoever believeth in him should not "
        "perish, but have everlasting life.");  // the KJV's "¶" dropped
  const SentencePair* m = find_verse(c.splits.valid, "Mark.1.1");
  REQUIRE(m != nullptr);
  CHECK(m->src == "PRINCIPIO del evangelio de Jesucristo, Hijo de Dios.");  // " <G5547>" removed
  CHECK(m->tgt == "The beginning of the gospel of Jesus Christ, the Son of God;");
  const SentencePair* g = find_verse(c.splits.train, "Gen.1.1");
  REQUIRE(g != nullptr);
  CHECK(g->src == "EN el principio crió Dios los cielos y la tierra.");
  CHECK(g->tgt == "In the beginning God created the heaven and the earth.");
  // The psalm title: a heading before verse 1 in the KJV, inside verse 1 in the Reina-Valera.
  const SentencePair* ps = find_verse(c.splits.train, "Ps.3.1");
  REQUIRE(ps != nullptr);
  CHECK(ps->src.rfind("Salmo de David, cuando huía de delante de Absalom su hijo.", 0) == 0);
  CHECK(ps->tgt ==
        "A Psalm of David, when he fled from Absalom his son. LORD, how are they increased that trouble me! many are "
        "they that rise up against me.");
  const SentencePair* ex = find_verse(c.splits.train, "Exod.6.3");  // "\nd JEHOVAH" in the module
  REQUIRE(ex != nullptr);
  CHECK(ex->tgt.find("by my name JEHOVAH was I not known") != std::string::npos);
}

TEST_CASE("Bible corpus: no markup left and the text clean", "[parallel_data][bible]") {
  if (skip_without_bible()) return;
  const BibleCorpus& c = bible();
  int64_t n = 0;
  for (const std::vector<SentencePair>* split : {&c.splits.train, &c.splits.valid, &c.splits.test})
    for (const SentencePair& p : *split)
      for (const std::string* s : {&p.src, &p.tgt}) {
        INFO(p.where << ": \"" << *s << "\"");
        REQUIRE(!s->empty());
        REQUIRE(s->find_first_of("<>\\") == std::string::npos);
        REQUIRE(s->find("\xC2\xB6") == std::string::npos);  // ¶
        REQUIRE(s->find("savlm") == std::string::npos);  // an attribute of the markup
        REQUIRE(s->find("  ") == std::string::npos);
        REQUIRE(s->find_first_of("\t\n\r") == std::string::npos);
        REQUIRE(s->front() != ' ');
        REQUIRE(s->back() != ' ');
        REQUIRE(text::utf8_invalid_at(*s) == std::string::npos);
        ++n;
      }
  CHECK(n == 2 * 31084);
}

TEST_CASE("Bible corpus: splits are disjoint by book", "[parallel_data][bible]") {
  if (skip_under_asan() || skip_without_bible()) return;
  const BibleCorpus& c = bible();
  const auto book = [](const std::string& ref) { return ref.substr(0, ref.find('.')); };
  std::set<std::string> train_books, refs;
  for (const SentencePair& p : c.splits.train) {
    train_books.insert(book(p.where));
    refs.insert(p.where);
  }
  for (const SentencePair& p : c.splits.valid) {
    CHECK(book(p.where) == "Mark");
    refs.insert(p.where);
  }
  for (const SentencePair& p : c.splits.test) {
    CHECK(book(p.where) == "John");  // not 1John, 2John, 3John
    refs.insert(p.where);
  }
  CHECK(train_books.count("Mark") == 0);
  CHECK(train_books.count("John") == 0);
  CHECK(train_books.count("1John") == 1);
  CHECK(train_books.size() == 64);  // 66 books, less Mark and John
  CHECK(refs.size() == 31084);      // every verse once
}

TEST_CASE("Bible corpus: cached TSV splits and a missing module's error", "[parallel_data][bible]") {
  if (skip_under_asan() || skip_without_bible()) return;
  test::TempDir dir("bible");
  ParallelSplits a = bible_parallel_splits(dir.path.string());
  const std::string folder = dir.file("bible/spaRV1909eb-engKJV2006eb-Mark-John");
  REQUIRE(std::filesystem::exists(folder + "/test.tsv"));
  ParallelSplits b = bible_parallel_splits(dir.path.string());  // read back from the files
  REQUIRE(a.train.size() == 29527);  // one reading of the modules in this test case, not two
  REQUIRE(b.train.size() == a.train.size());
  REQUIRE(b.valid.size() == a.valid.size());
  REQUIRE(b.test.size() == a.test.size());
  for (size_t i = 0; i < a.test.size(); ++i) {
    REQUIRE(b.test[i].src == a.test[i].src);
    REQUIRE(b.test[i].tgt == a.test[i].tgt);
  }
  CHECK(b.valid[0].where == folder + "/valid.tsv:1");

  BibleOptions bad;
  bad.src_module = "noSuchModule";
  std::string why;
  CHECK_FALSE(bible_modules_available(bad, &why));
  CHECK(why == "SWORD module noSuchModule is not installed");
  REQUIRE_THROWS_WITH(load_bible_parallel(bad), "[bible_parallel] SWORD module noSuchModule is not installed");
  BibleOptions book;
  book.test_book = "Johnn";
  REQUIRE_THROWS_WITH(load_bible_parallel(book),  // refused before any verse is read
                      Catch::StartsWith("[bible_parallel] no book \"Johnn\" in the KJV versification (its OSIS book "
                                        "ids: Gen Exod Lev") &&
                          Catch::Contains(" Mark Luke John Acts ") && Catch::EndsWith(" Jude Rev)"));
  book.test_book = "Mark";
  REQUIRE_THROWS_WITH(load_bible_parallel(book), "[bible_parallel] the validation and test books are both Mark");
}

// ---- SentencePiece ----

namespace {
bool skip_without_sentencepiece() {
  if (text::sentencepiece_built()) return false;
  test::skip("built without SentencePiece (libsentencepiece-dev)");
  REQUIRE_THROWS_WITH(SubwordTokenizer::train({"a"}),
                      "[subword] built without SentencePiece: install libsentencepiece-dev and rebuild");
  return true;
}

// A small bilingual corpus: enough text for a vocabulary of 120.
std::vector<std::string> small_corpus() {
  const std::vector<std::string> base = {
      "In the beginning God created the heaven and the earth.",
      "EN el principio crió Dios los cielos y la tierra.",
      "And the earth was without form, and void; and darkness was upon the face of the deep.",
      "Y la tierra estaba desordenada y vacía, y las tinieblas estaban sobre la haz del abismo.",
      "And God said, Let there be light: and there was light.",
      "Y dijo Dios: Sea la luz: y fué la luz.",
      "And God saw the light, that it was good: and God divided the light from the darkness.",
      "Y vió Dios que la luz era buena: y apartó Dios la luz de las tinieblas.",
      "For God so loved the world, that he gave his only begotten Son.",
      "Porque de tal manera amó Dios al mundo, que ha dado á su Hijo unigénito.",
  };
  std::vector<std::string> out;
  for (int rep = 0; rep < 20; ++rep)
    for (const std::string& s : base) out.push_back(s);
  return out;
}

SubwordOptions small_options(const std::string& type = "unigram") {
  SubwordOptions o;
  o.vocab_size = 120;
  o.model_type = type;
  return o;
}
}  // namespace

TEST_CASE("subword tokenizer: fixed special ids and round trip and unknown characters", "[parallel_data][subword]") {
  if (skip_without_sentencepiece()) return;
  for (const std::string type : {"unigram", "bpe"}) {
    INFO(type);
    const SubwordTokenizer t = SubwordTokenizer::train(small_corpus(), small_options(type));
    CHECK(t.vocab_size() == 120);
    CHECK(t.id_to_piece(SubwordTokenizer::kPad) == "<pad>");
    CHECK(t.id_to_piece(SubwordTokenizer::kBos) == "<s>");
    CHECK(t.id_to_piece(SubwordTokenizer::kEos) == "</s>");
    CHECK(t.id_to_piece(SubwordTokenizer::kUnk) == "<unk>");
    for (const std::string& s : {std::string("Y dijo Dios: Sea la luz: y fué la luz."),
                                 std::string("And the light was good."),      // unseen sentence, seen characters
                                 std::string("tinieblas, mundo, earth.")}) {
      std::vector<int64_t> ids = t.encode(s);
      REQUIRE(!ids.empty());
      for (int64_t id : ids) {
        CHECK(id >= 4);  // no special id, no unknown
        CHECK(id < 120);
      }
      CHECK(t.decode(ids) == s);
      std::vector<int64_t> be = t.encode(s, true, true);
      CHECK(be.front() == SubwordTokenizer::kBos);
      CHECK(be.back() == SubwordTokenizer::kEos);
      CHECK(be.size() == ids.size() + 2);
      CHECK(t.decode(be) == s);  // bos/eos (and pad) are dropped
    }
    // A character never seen in training: unk, never an error.
    std::vector<int64_t> u = t.encode("luz \xE2\x98\x83 Ω");  // ☃ and Ω are not in the corpus
    CHECK(std::count(u.begin(), u.end(), SubwordTokenizer::kUnk) == 2);
    CHECK(t.decode(u).find("luz") != std::string::npos);
    CHECK(t.encode("").empty());
    REQUIRE_THROWS_WITH(t.decode(std::vector<int64_t>{5, 120}),
                        "[subword] id 120 at position 1 is outside the vocabulary of 120");
    REQUIRE_THROWS_WITH(t.decode(std::vector<int64_t>{-1}),
                        "[subword] id -1 at position 0 is outside the vocabulary of 120");
  }
}

TEST_CASE("subword tokenizer: deterministic training and serialize then load", "[parallel_data][subword]") {
  if (skip_without_sentencepiece()) return;
  const std::string cwd_before = [] {
    std::string names;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::current_path()))
      names += e.path().filename().string() + "\n";
    return names;
  }();
  const SubwordTokenizer a = SubwordTokenizer::train(small_corpus(), small_options());
  const SubwordTokenizer b = SubwordTokenizer::train(small_corpus(), small_options());
  CHECK(a.to_bytes() == b.to_bytes());  // the same sentences and options: the same model, byte for byte
  SubwordOptions seeded = small_options();
  seeded.seed = 12345;
  CHECK(SubwordTokenizer::train(small_corpus(), seeded).to_bytes() == a.to_bytes());  // nothing is sampled
  SubwordOptions other = small_options();
  other.vocab_size = 100;
  CHECK(SubwordTokenizer::train(small_corpus(), other).to_bytes() != a.to_bytes());
  // Training writes nothing into the working directory (SentencePiece's file-based API would
  // write <prefix>.model and .vocab).
  std::string cwd_after;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::current_path()))
    cwd_after += e.path().filename().string() + "\n";
  CHECK(cwd_after == cwd_before);

  const std::string bytes = a.to_bytes();
  const SubwordTokenizer c = SubwordTokenizer::from_bytes(bytes);
  CHECK(c.to_bytes() == bytes);
  CHECK(c.vocab_size() == a.vocab_size());
  for (const std::string& s : small_corpus()) REQUIRE(c.encode(s) == a.encode(s));
  CHECK(c.encode_pieces("la luz") == a.encode_pieces("la luz"));
  const SubwordTokenizer copy = c;  // copies share the model
  CHECK(copy.encode("la luz") == c.encode("la luz"));

  REQUIRE_THROWS_WITH(SubwordTokenizer::from_bytes(""), "[subword] empty model bytes");
  REQUIRE_THROWS_WITH(SubwordTokenizer::from_bytes("not a model"),
                      Catch::StartsWith("[subword] not a SentencePiece model (11 bytes)"));
  REQUIRE_THROWS_WITH(SubwordTokenizer::train({}), "[subword] no training sentences");
  REQUIRE_THROWS_WITH(SubwordTokenizer::train(small_corpus(), [] {
                        SubwordOptions o;
                        o.model_type = "word";
                        return o;
                      }()),
                      "[subword] model type \"word\" is not \"unigram\" or \"bpe\"");
  REQUIRE_THROWS_WITH(SubwordTokenizer::train(small_corpus()),  // 4000 pieces from 10 sentences
                      Catch::StartsWith("[subword] SentencePiece training failed"));
  REQUIRE_THROWS_WITH(SubwordTokenizer().encode("a"), "[subword] no model: train one or load one with from_bytes");
}

TEST_CASE("subword tokenizer on the Bible training split (4000 pieces)", "[parallel_data][subword][bible]") {
  if (skip_under_asan() || skip_without_sentencepiece() || skip_without_bible()) return;
  const BibleCorpus& c = bible();
  std::vector<std::string> sentences;
  for (const SentencePair& p : c.splits.train) {
    sentences.push_back(p.src);
    sentences.push_back(p.tgt);
  }
  REQUIRE(sentences == joint_sentences(c.splits.train));
  const SubwordTokenizer t = SubwordTokenizer::train(sentences);  // the defaults: unigram, 4000
  CHECK(t.vocab_size() == 4000);
  const SentencePair& j = *find_verse(c.splits.test, "John.3.16");
  for (const std::string* s : {&j.src, &j.tgt}) {
    std::vector<int64_t> ids = t.encode(*s, true, true);
    CHECK(t.decode(ids) == *s);
    CHECK(std::count(ids.begin(), ids.end(), SubwordTokenizer::kUnk) == 0);
    std::printf("John.3.16: %zu bytes -> %zu ids\n", s->size(), ids.size());
  }
  // Test-split text is tokenized without unknowns except for characters absent from training.
  int64_t unk = 0, ids_total = 0;
  for (const SentencePair& p : c.splits.test)
    for (const std::string* s : {&p.src, &p.tgt}) {
      std::vector<int64_t> ids = t.encode(*s);
      unk += std::count(ids.begin(), ids.end(), SubwordTokenizer::kUnk);
      ids_total += (int64_t)ids.size();
    }
  std::printf("test split: %lld ids, %lld unknown\n", (long long)ids_total, (long long)unk);
  CHECK(unk == 0);
}
