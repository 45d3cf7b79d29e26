// The training loop: the loss falls, the same seed gives the same curve, a run stopped and
// resumed from its checkpoint gives the same loss curve and weights as one that never stopped,
// a NaN loss stops the run and keeps the last good checkpoint, and bad configurations are errors.
#include <catch2/catch.hpp>
#include <unistd.h>
#include <filesystem>
#include <cmath>
#include <fstream>
#include <iterator>
#include "autograd/ops.h"
#include "core/json.h"
#include "mega/data/listops.h"
#include "mega/train/checkpoint.h"
#include "mega/train/tasks.h"
#include "mega/train/trainer.h"
#include "tests/test_util.h"

using namespace megagrad;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {
struct RunDir {
  fs::path p;
  explicit RunDir(const std::string& tag) {
    p = fs::temp_directory_path() / fmt::format("megagrad_train_{}_{}", tag, getpid());
    fs::remove_all(p);
    fs::create_directories(p / "data");
  }
  ~RunDir() { fs::remove_all(p); }
  std::string sub(const std::string& n) const { return (p / n).string(); }
};

// A small ListOps dataset written as LRA TSV files, and a tiny model with dropout (so that the
// RNG state matters for the resume).
Json tiny_listops_config(const RunDir& d) {
  data::ListOpsConfig lc;
  lc.min_len = 8, lc.max_len = 40, lc.num_train = 96, lc.num_val = 16, lc.num_test = 16, lc.seed = 3;
  test::write_listops_splits(d.sub("data"), lc);
  Json over = Json::parse(fmt::format(R"({{
    "model": {{"layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32, "z_dim": 8, "n_dim": 4,
              "max_positions": 64, "dropout": 0.1, "attention_dropout": 0.1, "classifier_dim": 16}},
    "data": {{"dir": "{}"}},
    "train": {{"steps": 8, "batch_size": 8, "lr": 0.003, "warmup": 2, "log_every": 2, "eval_every": 4,
              "checkpoint_every": 4}}}})", d.sub("data")));
  return merge_run_config(default_run_config("listops"), over, "test");
}

std::vector<double> losses_of(const std::string& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    Json j = Json::parse(line);
    if (j.contains("header")) continue;  // a run's header line
    if (j.at("split").get_string() == "train") out.push_back(j.at("loss").get_double());
  }
  return out;
}

TrainSummary run(const Json& cfg, const std::string& out, const std::string& resume = "", int64_t stop_after = 0) {
  TrainOptions o = train_options(cfg);
  o.out_dir = out, o.resume = resume, o.stop_after = stop_after;
  std::unique_ptr<TrainTask> t = make_task(cfg);
  return train(*t, o);
}
}  // namespace

TEST_CASE("train: deterministic, and a resumed run equals an uninterrupted one", "[train]") {
  RunDir d("resume");
  Json cfg = tiny_listops_config(d);
  TrainSummary a = run(cfg, d.sub("a"));
  TrainSummary b = run(cfg, d.sub("b"));
  std::vector<double> la = losses_of(a.metrics);
  REQUIRE(la.size() == 8);
  CHECK(la == losses_of(b.metrics));  // same seed, same threads: the same curve bit for bit

  // Stop after step 3 (between checkpoints), then resume to the end.
  TrainSummary c1 = run(cfg, d.sub("c"), "", 3);
  CHECK(c1.step == 3);
  TrainSummary c2 = run(cfg, d.sub("c"), d.sub("c/checkpoint.safetensors"));
  CHECK(c2.step == 8);
  CHECK(losses_of(c2.metrics) == la);
  Checkpoint ka = load_checkpoint(a.checkpoint), kc = load_checkpoint(c2.checkpoint);
  REQUIRE(ka.model.size() == kc.model.size());
  for (size_t i = 0; i < ka.model.size(); ++i) {
    INFO(ka.model[i].first);
    CHECK(ka.model[i].second.to_vector() == kc.model[i].second.to_vector());
  }
  CHECK(a.val.metric == c2.val.metric);
}

TEST_CASE("train: the loss falls on a learnable task", "[train]") {
  RunDir d("falls");
  Json cfg = tiny_listops_config(d);
  Json t = cfg.at("train");
  t.set("steps", 40), t.set("eval_every", 40), t.set("checkpoint_every", 40);
  cfg.set("train", t);
  TrainSummary s = run(cfg, d.sub("run"));
  std::vector<double> l = losses_of(s.metrics);
  double first = (l[0] + l[1] + l[2] + l[3]) / 4, last = (l[36] + l[37] + l[38] + l[39]) / 4;
  INFO("first " << first << " last " << last);
  CHECK(last < first);
  CHECK(fs::exists(s.plot));
}

namespace {
// The run diverges: lr 1e30 without clipping gives weights of about 1e30, finite in float32, and
// the forward pass after them is not.
Json diverging(Json cfg) {
  Json t = cfg.at("train");
  t.set("lr", 1e30), t.set("clip", 0.0), t.set("warmup", 0);
  t.set("steps", 50), t.set("checkpoint_every", 1), t.set("eval_every", 100);
  cfg.set("train", t);
  return cfg;
}

// Every weight and optimizer moment is finite, and so is the loss of a forward pass with the weights.
void require_good_checkpoint(const Json& cfg, const std::string& path) {
  Checkpoint k = load_checkpoint(path);
  REQUIRE_FALSE(first_non_finite(k.model).has_value());
  REQUIRE_FALSE(first_non_finite(k.optimizer).has_value());
  std::unique_ptr<TrainTask> t = make_task(cfg);
  t->model().load_state_dict(k.model);
  EvalResult r = t->evaluate("val", 0);
  REQUIRE(std::isfinite(r.loss));
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST_CASE("train: a NaN loss stops the run, and a checkpoint is only written once its weights gave a finite loss",
          "[train]") {
  RunDir d("nan");
  const Json cfg = diverging(tiny_listops_config(d));
  TrainSummary s = run(cfg, d.sub("run"));
  CHECK(s.stopped_on_nan);
  CHECK(s.step < 50);
  // Before: step 1's weights (about 1e30) were written and called "the last good checkpoint".
  // Now the only candidates failed their next forward pass, so there is none, and it says so.
  if (s.checkpoint.empty()) {
    CHECK_FALSE(fs::exists(d.sub("run/checkpoint.safetensors")));
  } else {
    require_good_checkpoint(cfg, s.checkpoint);
  }
}

TEST_CASE("train: a diverging resumed run keeps the good checkpoint it started from", "[train]") {
  RunDir d("keep");
  Json good = tiny_listops_config(d);
  TrainSummary a = run(good, d.sub("run"));
  REQUIRE(a.checkpoint == d.sub("run/checkpoint.safetensors"));
  require_good_checkpoint(good, a.checkpoint);
  const std::string before = bytes_of(a.checkpoint), metrics_before = bytes_of(a.metrics);
  REQUIRE(a.step == 8);

  // Another run into the same folder is refused: it would overwrite the run.
  const Json bad = diverging(good);
  REQUIRE_THROWS_AS(run(bad, d.sub("run")), RunExistsError);
  REQUIRE_THROWS_WITH(run(bad, d.sub("run")), Contains("already holds a run") && Contains("--resume") &&
                                                  Contains("--force"));
  CHECK(bytes_of(a.checkpoint) == before);
  CHECK(bytes_of(a.metrics) == metrics_before);

  // Continued with lr 1e30: it diverges, and the checkpoint it resumed from stays, byte for byte,
  // named as the last good one.
  Json more = bad;
  Json t = more.at("train");
  t.set("steps", 60);
  more.set("train", t);
  TrainSummary r = run(more, d.sub("run"), a.checkpoint);
  CHECK(r.stopped_on_nan);
  CHECK(r.checkpoint == a.checkpoint);
  CHECK(bytes_of(a.checkpoint) == before);
  require_good_checkpoint(good, a.checkpoint);
  // The metrics log keeps the good run's records.
  CHECK(bytes_of(a.metrics).rfind(metrics_before, 0) == 0);
}

TEST_CASE("train: force moves an old run aside instead of deleting it", "[train]") {
  RunDir d("force");
  Json cfg = tiny_listops_config(d);
  TrainSummary a = run(cfg, d.sub("run"));
  const std::string before = bytes_of(a.checkpoint);
  TrainOptions o = train_options(cfg);
  o.out_dir = d.sub("run"), o.force = true;
  std::unique_ptr<TrainTask> task = make_task(cfg);
  TrainSummary b = train(*task, o);
  REQUIRE_FALSE(b.moved_aside.empty());
  CHECK(b.moved_aside.rfind(d.sub("run.old-"), 0) == 0);
  CHECK(bytes_of(b.moved_aside + "/checkpoint.safetensors") == before);
  CHECK(fs::exists(b.checkpoint));
  // --force with --resume is a contradiction.
  o.resume = b.checkpoint;
  REQUIRE_THROWS_WITH(prepare_run_dir(o), Contains("--force") && Contains("--resume"));
  // A file in the way of the output folder: our message, not std::filesystem's.
  { std::ofstream(d.sub("afile")) << "x"; }
  TrainOptions f = train_options(cfg);
  f.out_dir = d.sub("afile/run");
  REQUIRE_THROWS_WITH(prepare_run_dir(f), Contains("[train] cannot create the output folder") && Contains("afile/run"));
}

TEST_CASE("train: with detect_anomaly the same divergence stops at the op that made the first NaN/Inf", "[train][anomaly]") {
  RunDir d("anomaly");
  Json cfg = tiny_listops_config(d);
  Json t = cfg.at("train");
  t.set("lr", 1e30), t.set("clip", 0.0), t.set("warmup", 0);  // diverges, as in the test above
  t.set("steps", 50), t.set("checkpoint_every", 1), t.set("eval_every", 100);
  cfg.set("train", t);
  TrainOptions o = train_options(cfg);
  o.out_dir = d.sub("run"), o.detect_anomaly = true;
  std::unique_ptr<TrainTask> task = make_task(cfg);
  REQUIRE_THROWS_WITH(train(*task, o), Contains("[anomaly]") && Contains("op '") && Contains("produced"));
}

TEST_CASE("train: configuration errors", "[train][errors]") {
  REQUIRE_THROWS_WITH(default_run_config("mnist"), Contains("unknown task 'mnist'"));
  Json cfg = default_run_config("listops");
  REQUIRE_THROWS_WITH(merge_run_config(cfg, Json::parse(R"({"train": {"stepz": 3}})"), "x.json"),
                      Contains("x.json.train") && Contains("stepz"));
  RunDir d("errors");
  Json c2 = tiny_listops_config(d);
  Json m = c2.at("model");
  m.set("type", "lstm");
  c2.set("model", m);
  REQUIRE_THROWS_WITH(make_task(c2), Contains("model type"));
}

TEST_CASE("train: a checkpoint whose configuration predates a model key resumes with that key's default", "[train]") {
  RunDir d("oldcfg");
  Json cfg = tiny_listops_config(d);
  TrainSummary a = run(cfg, d.sub("run"), "", 4);
  Checkpoint k = load_checkpoint(a.checkpoint);
  // As a checkpoint written before classifier_layers, projection_bias and padding_idx existed.
  Json saved = Json::parse(k.meta.at("config"));
  Json model = Json::object();
  for (const auto& [key, v] : saved.at("model").items())
    if (key != "classifier_layers" && key != "projection_bias" && key != "padding_idx") model.set(key, v);
  saved.set("model", model);
  k.meta["config"] = saved.dump();
  save_checkpoint(d.sub("old.safetensors"), k);
  TrainSummary b = run(cfg, d.sub("run2"), d.sub("old.safetensors"));
  CHECK(b.step == 8);
  // A real difference is still refused.
  Json other = cfg;
  Json m = other.at("model");
  m.set("classifier_layers", 2);
  other.set("model", m);
  REQUIRE_THROWS_WITH(run(other, d.sub("run3"), d.sub("old.safetensors")), Contains("model configuration differs"));
}
