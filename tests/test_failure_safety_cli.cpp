// Failure safety of what the CLI runs (issue 10, items 4-7): generation never samples the padding
// id, evaluation over 0 examples and an empty training split are errors naming the file,
// ref-check fails on a non-finite value and on a shape mismatch instead of skipping or reading out
// of bounds, MEGAGRAD_NUM_THREADS is validated like --threads, a run configuration is validated
// before anything is loaded, a configuration of another task is named as such, and JSON type
// errors name the key's path.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include "autograd/grad_mode.h"
#include "core/atomic_file.h"
#include "core/json.h"
#include "core/parallel.h"
#include "core/safetensors.h"
#include "mega/config.h"
#include "mega/data/listops.h"
#include "mega/models.h"
#include "mega/ref_check.h"
#include "mega/train/checkpoint.h"
#include "mega/train/tasks.h"
#include "tests/test_util.h"

using namespace megagrad;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Sets an environment variable for the scope, then restores it.
struct ScopedEnv {
  std::string name;
  std::optional<std::string> old;
  ScopedEnv(std::string n, const char* value) : name(std::move(n)) {
    if (const char* o = std::getenv(name.c_str())) old = o;
    ::setenv(name.c_str(), value, 1);
  }
  ~ScopedEnv() {
    if (old) ::setenv(name.c_str(), old->c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

// Makes the padding logit of an LM large whatever the input: the final LayerNorm's output then
// sums to D (its normalised part sums to 0, its bias is all ones), and the padding row of the
// output projection is all `big / D`, so the padding logit is `big` at every position. The other
// logits stay input-dependent and of order 1.
void force_padding_logit(Module& lm, int64_t D, double big) {
  no_grad g;
  bool bias = false, proj = false;
  for (auto& [name, t] : lm.state_dict()) {
    if (name.find("final_norm") != std::string::npos && name.size() >= 4 && name.substr(name.size() - 4) == "bias") {
      Tensor p = t;
      p.fill_(1.0);
      bias = true;
    }
    if (name.find("output_projection.weight") != std::string::npos) {
      Tensor p = t;
      for (int64_t d = 0; d < D; ++d) p.set({0, d}, big / (double)D);
      proj = true;
    }
  }
  REQUIRE(bias);
  REQUIRE(proj);
}

LMConfig tiny_lm_config(int64_t vocab) {
  LMConfig c;
  c.layer.embed_dim = 8, c.layer.hidden_dim = 16, c.layer.ffn_hidden_dim = 16, c.layer.z_dim = 4, c.layer.n_dim = 2;
  c.layer.chunk_size = 4, c.layer.max_positions = 16;
  c.layer.bidirectional = false, c.layer.causal = true;
  c.layer.prenorm = true, c.layer.norm_type = NormType::LayerNorm, c.layer.norm_affine = true;
  c.num_layers = 1, c.vocab_size = vocab;
  return c;
}

// A small ListOps model configuration (data from `over`'s data section).
Json tiny_listops(const Json& data) {
  Json over = Json::parse(R"({
    "model": {"layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32, "z_dim": 8, "n_dim": 4,
              "max_positions": 64, "classifier_dim": 16},
    "train": {"steps": 4, "batch_size": 4}})");
  over.set("data", data);
  return merge_run_config(default_run_config("listops"), over, "test");
}

data::ListOpsData small_listops() {
  data::ListOpsConfig lc;
  lc.min_len = 8, lc.max_len = 30, lc.num_train = 8, lc.num_val = 4, lc.num_test = 4, lc.seed = 5;
  return data::generate_listops(lc);
}

}  // namespace

// ---------------------------------------------------------------- item 4: generate

TEST_CASE("generate: the padding id is never sampled, whatever its logit, seed, top-k or temperature",
          "[failure_safety_cli][generate]") {
  const int64_t V = 6;
  LMConfig c = tiny_lm_config(V);
  MegaLM lm(c, 3);
  lm.eval();
  force_padding_logit(lm, c.layer.embed_dim, 100.0);
  {  // the setup does what it says: the padding logit dominates
    Tensor logits = lm.forward(Tensor::from_vector(std::vector<int64_t>{1, 2, 3}, {1, 3}));
    std::vector<double> l = logits.select(1, 2).to_vector();
    REQUIRE(l[0] > 90);
    for (int64_t v = 1; v < V; ++v) REQUIRE(std::abs(l[(size_t)v]) < 20);
  }
  int runs = 0;
  std::set<int64_t> seen;
  for (uint64_t seed = 0; seed < 12; ++seed)
    for (int64_t top_k : {0, 1, 2, 3, 5, 6, 50})
      for (double temperature : {1e-3, 0.5, 1.0, 3.0, 1e3, 1e12}) {
        std::vector<int64_t> out = lm.generate({1, 2}, 12, temperature, top_k, seed);
        INFO("seed " << seed << " top_k " << top_k << " temperature " << temperature);
        REQUIRE(out.size() == 12);
        for (int64_t id : out) {
          REQUIRE(id >= 1);
          REQUIRE(id < V);
          seen.insert(id);
        }
        ++runs;
      }
  REQUIRE(runs == 12 * 7 * 6);
  REQUIRE(seen.size() >= 3);  // still a sampler, not a constant

  // top_k = 1 is the most likely real character, deterministically.
  REQUIRE(lm.generate({1, 2}, 8, 1.0, 1, 1) == lm.generate({1, 2}, 8, 1.0, 1, 99));
  // Bad arguments are errors.
  REQUIRE_THROWS_WITH(lm.generate({1}, 3, INFINITY, 0, 0), Contains("[generate]") && Contains("temperature"));
  REQUIRE_THROWS_WITH(lm.generate({1}, -1, 1.0, 0, 0), Contains("[generate]") && Contains("count"));
}

TEST_CASE("generate: a NaN logit is an error, not a character that is silently never drawn",
          "[failure_safety_cli][generate]") {
  LMConfig c = tiny_lm_config(5);
  MegaLM lm(c, 4);
  lm.eval();
  {
    no_grad g;
    for (auto& [name, t] : lm.state_dict())
      if (name.find("output_projection.weight") != std::string::npos) {
        Tensor p = t;
        p.set({2, 0}, NAN);
      }
  }
  REQUIRE_THROWS_WITH(lm.generate({1, 3}, 4, 1.0, 0, 0), Contains("[generate]") && Contains("id 2 is NaN"));
}

TEST_CASE("generate_from_checkpoint: every sampled id is a character of the checkpoint's vocabulary",
          "[failure_safety_cli][generate]") {
  test::TempDir dir("fs_generate");
  const std::string text = "the quick brown fox jumps over the lazy dog. the end. ";
  std::string corpus;
  for (int i = 0; i < 20; ++i) corpus += text;
  write_text(dir.file("corpus.txt"), corpus);
  Json over = Json::parse(R"({
    "model": {"layers": 1, "embed_dim": 8, "hidden_dim": 16, "ffn_hidden_dim": 16, "z_dim": 4, "n_dim": 2,
              "chunk_size": 4, "max_positions": 16},
    "data": {"seq_len": 8},
    "train": {"steps": 2, "batch_size": 2}})");
  Json d = over.at("data");
  d.set("file", dir.file("corpus.txt"));
  over.set("data", d);
  Json cfg = merge_run_config(default_run_config("charlm"), over, "test");
  std::unique_ptr<TrainTask> task = make_task(cfg);
  force_padding_logit(task->model(), 8, 60.0);
  Checkpoint ck;
  ck.model = task->model().state_dict();
  ck.meta["config"] = cfg.dump();
  ck.meta["data"] = task->data_state().dump();
  const std::set<char> alphabet(corpus.begin(), corpus.end());
  for (uint64_t seed = 0; seed < 6; ++seed)
    for (int64_t top_k : {0, 1, 3, 100})
      for (double temperature : {0.2, 0.8, 1e6}) {
        INFO("seed " << seed << " top_k " << top_k << " temperature " << temperature);
        std::string out = generate_from_checkpoint(ck, "the ", 20, temperature, top_k, seed);
        REQUIRE(out.size() == 20);
        for (char ch : out) REQUIRE(alphabet.count(ch) == 1);
      }
}

// ---------------------------------------------------------------- item 5 and item 7: ListOps files

TEST_CASE("eval: a ListOps TSV with a header and no rows is an error naming the file", "[failure_safety_cli][listops]") {
  test::TempDir dir("fs_eval_empty");
  const std::string file = dir.file("empty.tsv");
  write_text(file, "Source\tTarget\r\n");
  Json data = Json::object();
  data.set("eval_file", file);
  Json cfg = tiny_listops(data);
  auto evaluate = [&] {
    std::unique_ptr<TrainTask> t = make_task(cfg);
    EvalResult r = t->evaluate("val", 0);
    return r.count;
  };
  REQUIRE_THROWS_WITH(evaluate(), Contains(file) && Contains("no examples"));
}

TEST_CASE("train: a header-only train.tsv is an empty training split, not an evaluation-only task",
          "[failure_safety_cli][listops]") {
  test::TempDir dir("fs_train_empty");
  data::ListOpsData ld = small_listops();
  write_text(dir.file("train.tsv"), "Source\tTarget\n");
  data::write_listops_tsv(dir.file("val.tsv"), ld.val);
  data::write_listops_tsv(dir.file("test.tsv"), ld.test);
  Json data = Json::object();
  data.set("dir", dir.path.string());
  Json cfg = tiny_listops(data);
  auto first_step = [&] {
    std::unique_ptr<TrainTask> t = make_task(cfg);
    StepStats st;
    (void)t->next_train_loss(st);
  };
  REQUIRE_THROWS_WITH(first_step(), Contains(dir.file("train.tsv")) && Contains("training split is empty") &&
                                        !Contains("evaluation only"));

  // Also an empty validation split: the final evaluation would be over 0 examples.
  data::write_listops_tsv(dir.file("train.tsv"), ld.train);
  write_text(dir.file("val.tsv"), "Source\tTarget\n");
  REQUIRE_THROWS_WITH(make_task(cfg), Contains(dir.file("val.tsv")) && Contains("validation split is empty"));
  // With every split filled, it trains.
  data::write_listops_tsv(dir.file("val.tsv"), ld.val);
  REQUIRE_NOTHROW(first_step());
}

TEST_CASE("train: generated ListOps with num_train 0 is a configuration error", "[failure_safety_cli][listops]") {
  Json data = Json::object();
  data.set("num_train", 0);
  REQUIRE_THROWS_WITH(validate_run_config(tiny_listops(data)), Contains("data.num_train"));
}

// ---------------------------------------------------------------- item 6: ref-check

namespace {
// A copy of a reference case whose float64 file has `name` replaced by `t`.
void copy_case_with(const test::TempDir& dir, const std::string& name, const Tensor& t) {
  const fs::path src = fs::path(MEGAGRAD_TEST_DATA) / "ref" / "ii_tiny_chunk4_padding";
  fs::copy_file(src / "config.json", dir.path / "config.json", fs::copy_options::overwrite_existing);
  SafeTensors st = load_safetensors((src / "ref_f64.safetensors").string());
  for (auto& [n, v] : st.tensors)
    if (n == name) v = t;
  save_safetensors((dir.path / "ref_f64.safetensors").string(), st.tensors, st.metadata);
}
Tensor ref_tensor(const std::string& name) {
  const fs::path src = fs::path(MEGAGRAD_TEST_DATA) / "ref" / "ii_tiny_chunk4_padding";
  return load_safetensors((src / "ref_f64.safetensors").string()).at(name).clone();
}
}  // namespace

TEST_CASE("ref-check: a NaN or an infinity in the reference fails the check and is named",
          "[failure_safety_cli][ref_check]") {
  test::TempDir dir("fs_refcheck_nan");
  {  // the unmodified copy passes
    copy_case_with(dir, "", Tensor());
    REQUIRE(ref_check(dir.path.string(), DType::Float64).passed());
  }
  for (double bad : {(double)NAN, (double)INFINITY}) {
    for (const std::string name : {"grad.x", "out"}) {
      Tensor t = ref_tensor(name);  // (16, 2, 8)
      t.set({3, 1, 5}, bad);
      copy_case_with(dir, name, t);
      RefCheckResult r = ref_check(dir.path.string(), DType::Float64);
      INFO(name << " holds " << bad);
      REQUIRE_FALSE(r.passed());
      bool named = false;
      for (const RefCheckRow& row : r.rows)
        if (row.name == name) {
          REQUIRE_FALSE(row.error <= r.tolerance);
          REQUIRE_THAT(row.problem, Contains("reference") && Contains(name + "[3, 1, 5]") &&
                                        Contains(std::isnan(bad) ? "nan" : "inf"));
          named = true;
        }
      REQUIRE(named);
    }
  }
  // A non-finite input makes the case meaningless: an error naming it.
  Tensor x = ref_tensor("x");
  x.set({0, 0, 2}, NAN);
  copy_case_with(dir, "x", x);
  REQUIRE_THROWS_WITH(ref_check(dir.path.string(), DType::Float64),
                      Contains("[ref-check]") && Contains("x[0, 0, 2]") && Contains("nan"));
}

TEST_CASE("ref-check: a reference tensor of another shape is an error naming both shapes",
          "[failure_safety_cli][ref_check]") {
  test::TempDir dir("fs_refcheck_shape");
  // Larger (more values than ours) and smaller (fewer: the old loop read past its end).
  for (Shape shape : {Shape{16, 2, 9}, Shape{16, 2, 4}, Shape{2, 16, 8}}) {
    copy_case_with(dir, "grad.x", Tensor::zeros(shape, DType::Float64));
    INFO(shape_str(shape));
    REQUIRE_THROWS_WITH(ref_check(dir.path.string(), DType::Float64),
                        Contains("[ref-check]") && Contains("grad.x") && Contains(shape_str(shape)) &&
                            Contains("(16,2,8)"));
  }
  copy_case_with(dir, "G", Tensor::zeros({16, 1, 8}, DType::Float64));
  REQUIRE_THROWS_WITH(ref_check(dir.path.string(), DType::Float64), Contains("G is (16,1,8)"));
}

// ---------------------------------------------------------------- item 7: threads

TEST_CASE("MEGAGRAD_NUM_THREADS is validated like --threads", "[failure_safety_cli][threads]") {
  for (const char* bad : {"zz", "0", "-2", "4097", "3x", " 4", "", "99999999999999999999"}) {
    ScopedEnv env("MEGAGRAD_NUM_THREADS", bad);
    INFO("MEGAGRAD_NUM_THREADS='" << bad << "'");
    REQUIRE_THROWS_WITH(default_num_threads(), Contains("MEGAGRAD_NUM_THREADS") &&
                                                   Contains(std::string("'") + bad + "'") &&
                                                   Contains("[1, 4096]"));
  }
  {
    ScopedEnv env("MEGAGRAD_NUM_THREADS", "3");
    REQUIRE(default_num_threads() == 3);
  }
  REQUIRE_THROWS_WITH(set_num_threads(5000), Contains("[1, 4096]"));
}

// ---------------------------------------------------------------- item 7: configuration

TEST_CASE("validate_run_config rejects what training would reject, before any data is loaded",
          "[failure_safety_cli][config]") {
  for (const char* task : {"listops", "fmnist", "charlm"}) REQUIRE_NOTHROW(validate_run_config(default_run_config(task)));
  struct Case {
    const char* task;
    const char* over;
    const char* expected;
  };
  const Case cases[] = {
      {"listops", R"({"train": {"steps": 0}})", "train.steps must be >= 1"},
      {"listops", R"({"train": {"batch_size": 0}})", "train.batch_size must be >= 1"},
      {"listops", R"({"train": {"accum": -1}})", "train.accum"},
      {"listops", R"({"train": {"lr": -0.1}})", "train.lr"},
      {"listops", R"({"train": {"beta2": 1.0}})", "train.beta2"},
      {"listops", R"({"train": {"clip": -1.0}})", "train.clip"},
      {"listops", R"({"train": {"seed": -1}})", "train.seed"},
      {"listops", R"({"train": {"eval_batches": -1}})", "train.eval_batches"},
      {"listops", R"({"model": {"embed_dim": 0}})", "embed_dim"},
      {"listops", R"({"model": {"layers": 0}})", "model.layers"},
      {"listops", R"({"model": {"dropout": 1.5}})", "dropout"},
      {"listops", R"({"model": {"chunk_size": 0}})", "chunk_size"},
      {"listops", R"({"model": {"type": "lstm"}})", "model type"},
      {"listops", R"({"model": {"type": "transformer", "heads": 5}})", "model.heads"},
      {"listops", R"({"data": {"preset": "huge"}})", "unknown preset \"huge\""},
      {"listops", R"({"data": {"min_len": 50, "max_len": 10}})", "length range"},
      {"charlm", R"({"model": {"type": "transformer", "heads": 3}})", "model.heads"},
      {"charlm", R"({"data": {"seq_len": 0}})", "data.seq_len"},
      {"charlm", R"({"data": {"val_fraction": 0.0}})", "data.val_fraction"},
      {"fmnist", R"({"data": {"val_size": 0}})", "data.val_size"},
  };
  for (const Case& c : cases) {
    INFO(c.task << " " << c.over);
    // merge_run_config accepts it (the types are right); the values are checked by validation.
    Json cfg = merge_run_config(default_run_config(c.task), Json::parse(c.over), "x.json");
    REQUIRE_THROWS_WITH(validate_run_config(cfg), Contains(c.expected));
  }
}

TEST_CASE("merge_run_config: a configuration of another task is named as such", "[failure_safety_cli][config]") {
  REQUIRE_THROWS_WITH(merge_run_config(default_run_config("listops"), Json::parse(R"({"task": "charlm"})"), "run.json"),
                      Contains("run.json") && Contains("\"task\" is \"charlm\"") && Contains("listops") &&
                          !Contains("not found"));
  // The same task is fine.
  REQUIRE_NOTHROW(merge_run_config(default_run_config("listops"), Json::parse(R"({"task": "listops"})"), "run.json"));
}

TEST_CASE("JSON type errors name the key's path", "[failure_safety_cli][config][json]") {
  // Through a --config file.
  auto load = [](const char* task, const char* over) {
    Json cfg = merge_run_config(default_run_config(task), Json::parse(over), "run.json");
    (void)train_options(cfg);
    validate_run_config(cfg);
  };
  REQUIRE_THROWS_WITH(load("listops", R"({"train": {"steps": "5"}})"),
                      Contains("train.steps: expected an integer, got string \"5\""));
  REQUIRE_THROWS_WITH(load("listops", R"({"train": {"lr": "fast"}})"),
                      Contains("train.lr: expected a number, got string \"fast\""));
  REQUIRE_THROWS_WITH(load("listops", R"({"model": {"embed_dim": 8.5}})"),
                      Contains("model.embed_dim: expected an integer, got number 8.5"));
  REQUIRE_THROWS_WITH(load("listops", R"({"model": {"prenorm": 1}})"), Contains("model.prenorm: expected true or false"));
  REQUIRE_THROWS_WITH(load("listops", R"({"data": {"min_len": "5"}})"),
                      Contains("data.min_len: expected null or an integer, got string \"5\""));
  REQUIRE_THROWS_WITH(load("charlm", R"({"data": {"file": 3}})"),
                      Contains("data.file: expected null or a string, got integer 3"));
  REQUIRE_THROWS_WITH(load("listops", R"({"model": {"truncation": "no"}})"), Contains("model.truncation"));
  REQUIRE_THROWS_WITH(load("listops", R"({"train": 5})"), Contains("train: expected an object, got integer 5"));

  // A configuration that did not go through the merge (e.g. a checkpoint's): the readers name it.
  Json cfg = default_run_config("listops");
  Json t = cfg.at("train");
  t.set("steps", "5");
  cfg.set("train", t);
  REQUIRE_THROWS_WITH(train_options(cfg), Contains("train.steps: expected an integer, got string \"5\""));
  Json cfg2 = default_run_config("listops");
  Json m = cfg2.at("model");
  m.set("layers", "2");
  cfg2.set("model", m);
  REQUIRE_THROWS_WITH(validate_run_config(cfg2), Contains("model.layers: expected an integer, got string \"2\""));
  Json layer = Json::parse(R"({"embed_dim": 8, "hidden_dim": 16, "z_dim": true, "n_dim": 2})");
  REQUIRE_THROWS_WITH(parse_layer_config(layer, "", "model"), Contains("model.z_dim: expected an integer, got true"));
  REQUIRE_THROWS_WITH(parse_layer_config(layer, "case/config.json"),
                      Contains("case/config.json: z_dim: expected an integer, got true"));

  // The path accessors of core/json.h.
  Json j = Json::parse(R"({"train": {"steps": "5", "lr": 0.1}})");
  REQUIRE_THROWS_WITH(json_int(j.at("train"), "train", "steps"),
                      Contains("[json] train.steps: expected an integer, got string \"5\""));
  REQUIRE_THROWS_WITH(json_string(j.at("train"), "train", "lr"), Contains("train.lr: expected a string, got number 0.1"));
  REQUIRE_THROWS_WITH(json_int(j.at("train"), "train", "warmup"),
                      Contains("train: key \"warmup\" not found") && Contains("\"steps\""));
  REQUIRE(json_double(j.at("train"), "train", "lr") == 0.1);
}
