// Translation end to end through the library: greedy and beam search on the incremental state
// (mega/beam_search.h), and the translate task (mega/train/tasks.h) on a tiny parallel text:
// a few training steps, the checkpoint's tokenizer, BLEU and chrF of a split, and the bad-input
// messages of the Translator. The task's tests skip visibly without SentencePiece.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>
#include <catch2/catch.hpp>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "mega/beam_search.h"
#include "mega/layers.h"
#include "mega/seq2seq.h"
#include "mega/text/subword.h"
#include "mega/train/checkpoint.h"
#include "mega/train/tasks.h"
#include "tests/test_util.h"

using namespace megagrad;
using Catch::Matchers::Contains;

namespace {
// Small models with noisy weights (a fresh one is nearly uniform, where every search ties).
void add_noise(Module& m, uint64_t seed, double std) {
  no_grad g;
  Generator gen(seed);
  for (auto& [name, p] : m.named_parameters()) p.add_(normal(p.shape(), 0, std, p.dtype(), &gen));
}

std::unique_ptr<MegaSeq2Seq> small_mega(uint64_t seed, int64_t chunk) {
  Seq2SeqConfig c;
  MegaLayerConfig l;
  l.embed_dim = 16, l.hidden_dim = 24, l.ffn_hidden_dim = 16, l.z_dim = 8, l.n_dim = 4, l.chunk_size = chunk;
  l.max_positions = 32;
  c.encoder = l, c.decoder = l;
  c.encoder.bidirectional = true, c.encoder.causal = false;
  c.decoder.bidirectional = false, c.decoder.causal = true;
  c.encoder_layers = c.decoder_layers = 1, c.vocab_size = 13;
  auto m = std::make_unique<MegaSeq2Seq>(c, seed);
  add_noise(*m, seed + 100, 0.5);
  m->eval();
  return m;
}

std::unique_ptr<TransformerSeq2Seq> small_transformer(uint64_t seed) {
  TransformerSeq2SeqConfig c;
  c.embed_dim = 16, c.ffn_dim = 32, c.num_heads = 2, c.encoder_layers = c.decoder_layers = 1, c.vocab_size = 13;
  c.max_source_positions = c.max_target_positions = 32;
  auto m = std::make_unique<TransformerSeq2Seq>(c, seed);
  add_noise(*m, seed + 100, 0.5);
  m->eval();
  return m;
}

// Sources of ids 3..12 ending in eos (2).
std::vector<std::vector<int64_t>> sources() {
  return {{5, 6, 7, 2}, {3, 2}, {12, 11, 10, 9, 8, 7, 2}, {4, 4, 4, 4, 9, 2}, {8, 3, 11, 2}};
}

void check_searches(Module& m) {
  DecodeOptions o;
  o.max_len = 12;
  for (const auto& src : sources()) {
    const Hypothesis greedy = greedy_decode(m, src, o);
    REQUIRE(greedy.tokens.back() == 2);
    o.beam = 1;
    const std::vector<Hypothesis> b1 = beam_search(m, src, o);
    REQUIRE(b1.size() == 1);
    CHECK(b1[0].tokens == greedy.tokens);
    CHECK(b1[0].score == Approx(greedy.score).margin(1e-12));
    // The searches' scores are the model's: a teacher-forced forward gives them again.
    CHECK(score_hypothesis(m, src, greedy.tokens, o).score == Approx(greedy.score).margin(1e-4));
    for (int64_t k : {2, 4, 6}) {
      o.beam = k;
      const std::vector<Hypothesis> hs = beam_search(m, src, o);
      REQUIRE(!hs.empty());
      REQUIRE((int64_t)hs.size() <= k);
      for (size_t i = 1; i < hs.size(); ++i) CHECK(hs[i - 1].score >= hs[i].score);
      const Hypothesis rescored = score_hypothesis(m, src, hs[0].tokens, o);
      CHECK(rescored.score == Approx(hs[0].score).margin(1e-4));
      INFO("beam " << k << ": best " << hs[0].score << ", greedy " << greedy.score);
      CHECK(rescored.score >= score_hypothesis(m, src, greedy.tokens, o).score - 1e-6);
      CHECK((int64_t)hs[0].tokens.size() <= o.max_len);
    }
    o.beam = 4;
  }
}

bool skip_without_sentencepiece() {
  if (text::sentencepiece_built()) return false;
  test::skip("built without SentencePiece (libsentencepiece-dev): no translate task");
  return true;
}

// 40 short Spanish-English pairs from a few words, as a user's TSV.
std::string tiny_tsv() {
  const char* es_subj[] = {"el perro", "el gato", "la niña", "el hombre", "la mujer"};
  const char* en_subj[] = {"the dog", "the cat", "the girl", "the man", "the woman"};
  const char* es_verb[] = {"come", "duerme", "corre", "canta", "bebe agua", "lee", "camina", "habla"};
  const char* en_verb[] = {"eats", "sleeps", "runs", "sings", "drinks water", "reads", "walks", "speaks"};
  std::string out;
  for (int i = 0; i < 40; ++i) {
    const int s = i % 5, v = (i / 5 + i) % 8;
    out += std::string(es_subj[s]) + " " + es_verb[v] + " hoy.\t" + en_subj[s] + " " + en_verb[v] + " today.\n";
  }
  return out;
}

Json tiny_translate_config(const std::string& tsv, const std::string& model) {
  return complete_run_config(Json::parse(R"({"task": "translate",
    "model": {"type": ")" + model + R"(", "layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32,
              "z_dim": 8, "n_dim": 4, "max_positions": 24, "heads": 2, "transformer_ffn_dim": 32, "dropout": 0.0},
    "data": {"src": ")" + tsv + R"(", "valid_size": 4, "test_size": 4, "vocab_size": 48},
    "train": {"steps": 6, "batch_size": 8, "warmup": 1, "log_every": 3, "eval_every": 6, "checkpoint_every": 6}})"));
}
}  // namespace

TEST_CASE("beam search: beam 1 is greedy, a wider beam scores at least greedy's", "[translate][beam]") {
  for (int64_t chunk : {-1, 4}) {
    INFO("Mega, chunk_size " << chunk);
    auto m = small_mega(7, chunk);
    check_searches(*m);
  }
  INFO("Transformer");
  auto t = small_transformer(7);
  check_searches(*t);
}

TEST_CASE("beam search: bad arguments", "[translate][beam]") {
  auto m = small_mega(3, -1);
  DecodeOptions o;
  REQUIRE_THROWS_WITH(beam_search(*m, {}, o), "[beam_search] the source is empty: nothing to translate");
  o.beam = 0;
  REQUIRE_THROWS_WITH(beam_search(*m, {3, 2}, o), "[beam_search] beam must be >= 1, got 0");
  o.beam = 2, o.max_len = 0;
  REQUIRE_THROWS_WITH(greedy_decode(*m, {3, 2}, o), "[beam_search] max_len must be >= 1, got 0");
  o.max_len = 1;  // eos forced at once
  CHECK(greedy_decode(*m, {3, 2}, o).tokens == std::vector<int64_t>{2});
  Generator gen(1);
  Linear lin(2, 2, gen);
  o.max_len = 4;
  REQUIRE_THROWS_WITH(greedy_decode(lin, {3, 2}, o), Contains("not an encoder-decoder"));
}

TEST_CASE("translate task: train, checkpoint with its tokenizer, translate, BLEU", "[translate][task]") {
  if (skip_without_sentencepiece()) return;
  test::TempDir dir("translate");
  const std::string tsv = (dir.path / "pairs.tsv").string();
  { std::ofstream(tsv) << tiny_tsv(); }
  for (const char* model : {"mega", "transformer"}) {
    INFO("model " << model);
    const Json cfg = tiny_translate_config(tsv, model);
    const std::string run = (dir.path / model).string();
    TrainOptions o = train_options(cfg);
    o.out_dir = run;
    std::unique_ptr<TrainTask> t = make_task(cfg);
    set_task_run_dir(*t, run, true);
    CHECK_THAT(t->describe(), Contains("32 train / 4 val / 4 test pairs"));
    TrainSummary s = train(*t, o);
    REQUIRE(s.step == 6);
    CHECK(std::isfinite(s.val.loss));
    CHECK(s.val.count > 0);
    CHECK(t->metric_name() == "accuracy");
    CHECK(std::filesystem::exists(run + "/tokenizer.model"));  // the run folder's cache

    // The checkpoint carries the tokenizer: a Translator needs nothing else.
    const Checkpoint ck = load_checkpoint(s.checkpoint);
    const Translator tr(ck, s.checkpoint);
    CHECK(tr.tokenizer().vocab_size() == 48);
    const std::vector<int64_t> src = tr.encode_source("el perro come hoy.", "test");
    CHECK(src.back() == text::SubwordTokenizer::kEos);
    const std::string greedy = tr.translate(src, 1, 0), beam = tr.translate(src, 3, 0);
    (void)greedy, (void)beam;  // six steps teach little: any text, but no failure

    // Bad input: an empty source, one longer than the positions, an unseen character.
    REQUIRE_THROWS_WITH(tr.encode_source("   ", "line 2"), "[translate] line 2: the source is empty: nothing to translate");
    std::string long_line;
    for (int i = 0; i < 30; ++i) long_line += "perro gato ";
    REQUIRE_THROWS_WITH(tr.encode_source(long_line, "line 3"),
                        Contains("[translate] line 3: the source is ") &&
                            Contains("subword tokens with eos, longer than the model's 24 positions"));
    std::vector<std::string> unknown;
    const std::vector<int64_t> with_unk = tr.encode_source("el perro \xe2\x98\x83 come", "line 4", &unknown);
    CHECK(std::count(with_unk.begin(), with_unk.end(), text::SubwordTokenizer::kUnk) >= 1);
    REQUIRE(!unknown.empty());
    CHECK_THAT(unknown[0], Contains("\xe2\x98\x83"));
    (void)tr.translate(with_unk, 2, 0);

    // BLEU and chrF of the test split, from a fresh task that loads the checkpoint (as eval).
    std::unique_ptr<TrainTask> e = make_task(cfg);
    e->model().load_state_dict(ck.model);
    e->load_data_state(Json::parse(ck.meta.at("data")));
    const TranslationScores sc = translation_scores(*e, "test", 2, 0, 0);
    CHECK(sc.hypotheses.size() == 4);
    CHECK(sc.references[0] == "the cat sings today.");  // pair 37 of 40: the last 4 are the test split
    CHECK(sc.bleu.score >= 0);
    CHECK(sc.chrf.score >= 0);
    CHECK_THAT(sc.bleu.format(), Contains("BLEU = "));
  }
}

TEST_CASE("translate task: configuration and data errors", "[translate][task]") {
  test::TempDir dir("translate_cfg");
  const Json d = default_run_config("translate");
  CHECK(d.at("data").at("vocab_size").get_int() == 4000);
  CHECK(d.at("train").at("label_smoothing").get_double() == 0.1);
  CHECK(d.at("model").at("embed_dim").get_int() == 128);
  CHECK_FALSE(d.at("model").contains("classifier_dim"));
  Json bad = Json::parse(R"({"task": "translate", "data": {"vocab_size": 3}})");
  REQUIRE_THROWS_WITH(validate_run_config(bad), "[config] data.vocab_size must be >= 5 (4 special ids and a piece), got 3");
  bad = Json::parse(R"({"task": "translate", "data": {"tgt": "x.txt"}})");
  REQUIRE_THROWS_WITH(validate_run_config(bad), "[config] data.tgt needs data.src (the source side)");
  bad = Json::parse(R"({"task": "translate", "train": {"label_smoothing": 1.0}})");
  REQUIRE_THROWS_WITH(validate_run_config(bad), "[config] train.label_smoothing must be in [0, 1), got 1");
  if (skip_without_sentencepiece()) return;
  const std::string tsv = (dir.path / "pairs.tsv").string();
  { std::ofstream(tsv) << tiny_tsv(); }
  Json cfg = tiny_translate_config(tsv, "mega");
  Json data = cfg.at("data");
  data.set("valid_size", 30), data.set("test_size", 10);
  cfg.set("data", data);
  REQUIRE_THROWS_WITH(make_task(cfg), Contains("40 pairs, but data.valid_size 30 + data.test_size 10 leave none"));
  // A pair longer than the positions: refused at data load, naming it, or cut with data.truncate.
  cfg = tiny_translate_config(tsv, "mega");
  Json model = cfg.at("model");
  model.set("max_positions", 4);
  cfg.set("model", model);
  std::unique_ptr<TrainTask> t = make_task(cfg);
  StepStats st;
  REQUIRE_THROWS_WITH(t->next_train_loss(st), Contains("pairs.tsv:") &&
                                                  Contains("subword tokens with eos, longer than the model's 4 positions "
                                                           "(model.max_positions); raise model.max_positions, or set "
                                                           "data.truncate"));
  data = cfg.at("data");
  data.set("truncate", true);
  cfg.set("data", data);
  t = make_task(cfg);
  CHECK(std::isfinite(t->next_train_loss(st).item()));
  // A checkpoint of another task.
  Checkpoint other;
  other.meta["config"] = default_run_config("listops").dump();
  other.meta["data"] = "{}";
  REQUIRE_THROWS_WITH(Translator(other, "ck.safetensors"),
                      "[translate] ck.safetensors: a 'listops' checkpoint, not a translation model (train one with "
                      "megagrad train --task translate)");
}

TEST_CASE("translate task: a resumed run equals an uninterrupted one", "[translate][task]") {
  if (skip_without_sentencepiece()) return;
  test::TempDir dir("translate_resume");
  const std::string tsv = (dir.path / "pairs.tsv").string();
  { std::ofstream(tsv) << tiny_tsv(); }
  Json cfg = tiny_translate_config(tsv, "mega");
  Json m = cfg.at("model");
  m.set("dropout", 0.1);  // the dropout masks resume too
  cfg.set("model", m);
  auto run = [&](const std::string& out, const std::string& resume, int64_t stop_after) {
    TrainOptions o = train_options(cfg);
    o.out_dir = (dir.path / out).string(), o.resume = resume, o.stop_after = stop_after;
    std::unique_ptr<TrainTask> t = make_task(cfg);
    return train(*t, o);
  };
  const TrainSummary a = run("a", "", 0);
  const TrainSummary b1 = run("b", "", 3);
  REQUIRE(b1.step == 3);
  const TrainSummary b2 = run("b", (dir.path / "b/checkpoint.safetensors").string(), 0);
  REQUIRE(b2.step == 6);
  const Checkpoint ka = load_checkpoint(a.checkpoint), kb = load_checkpoint(b2.checkpoint);
  REQUIRE(ka.model.size() == kb.model.size());
  for (size_t i = 0; i < ka.model.size(); ++i) {
    INFO(ka.model[i].first);
    CHECK(ka.model[i].second.to_vector() == kb.model[i].second.to_vector());
  }
  CHECK(a.val.loss == b2.val.loss);
  CHECK(ka.meta.at("data") == kb.meta.at("data"));  // the same tokenizer and batch position
}
