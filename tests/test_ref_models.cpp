// The official LRA classifier (MegaLRAEncoder + the LRAModel head), run by the authors' code:
// tests/data/ref_models/ (copied from shared/ref/models/, see its README). Every case must match
// in float64 to 1e-8 and in float32 to 1e-4, relative to each tensor's largest value, through
// ref_check() (the code `megagrad ref-check` runs). Then the model options the cases need
// (classifier_layers, projection_bias, padding_idx) in MegaClassifier and in the run config.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "mega/data/listops.h"
#include "mega/models.h"
#include "mega/ref_check.h"
#include "mega/train/tasks.h"
#include "tests/test_util.h"

using namespace megagrad;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {
const fs::path kModels = fs::path(MEGAGRAD_TEST_DATA) / "ref_models";

std::vector<std::string> model_case_dirs() {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(kModels))
    if (e.is_directory() && fs::exists(e.path() / "config.json")) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

Json case_config(const std::string& dir) {
  return Json::parse(read_file(dir + "/config.json", "test", 1 << 20), dir);
}

// The official state_dict names of a case, in the official order (config.json lists the file's
// tensors in state_dict order; the data and the gradients are not parameters).
std::vector<std::string> official_names(const std::string& dir) {
  std::vector<std::string> out;
  const Json cfg = case_config(dir);  // kept alive: items() refers into it
  for (const auto& [name, shape] : cfg.at("_files").at("ref_f64.safetensors").at("tensors").items())
    if (name != "tokens" && name != "lengths" && name != "G" && name != "logits" && name != "loss" &&
        name.rfind("grad.", 0) != 0)
      out.push_back(name);
  return out;
}

// A copy of a model case whose float64 file has `name` replaced by `t` (or nothing replaced).
void copy_case_with(const test::TempDir& dir, const std::string& case_name, const std::string& name, const Tensor& t) {
  const fs::path src = kModels / case_name;
  fs::copy_file(src / "config.json", dir.path / "config.json", fs::copy_options::overwrite_existing);
  SafeTensors st = load_safetensors((src / "ref_f64.safetensors").string());
  for (auto& [n, v] : st.tensors)
    if (n == name) v = t;
  save_safetensors((dir.path / "ref_f64.safetensors").string(), st.tensors, st.metadata);
}

Tensor case_tensor(const std::string& case_name, const std::string& name) {
  return load_safetensors((kModels / case_name / "ref_f64.safetensors").string()).at(name).clone();
}

// The worst row of a result; a NaN error is the worst (never skipped, unlike std::max).
const RefCheckRow* worst_row(const RefCheckResult& r) {
  const RefCheckRow* worst = nullptr;
  for (const RefCheckRow& row : r.rows)
    if (worst == nullptr || !(row.error <= worst->error)) worst = &row;
  return worst;
}
}  // namespace

TEST_CASE("ref models: the three official LRA classifier cases are present", "[ref][ref_models]") {
  std::vector<std::string> dirs = model_case_dirs();
  REQUIRE(dirs.size() == 3);
  for (const std::string& dir : dirs) {
    INFO(dir);
    CHECK(case_config(dir).at("kind").get_string() == "lra_classifier");
    CHECK(fs::exists(fs::path(dir) / "ref_f64.safetensors"));
    CHECK(fs::exists(fs::path(dir) / "ref_f32.safetensors"));
  }
}

TEST_CASE("ref models: logits and every gradient match the official LRA classifier", "[ref][ref_models]") {
  for (const std::string& dir : model_case_dirs())
    for (DType dt : {DType::Float64, DType::Float32}) {
      // The tolerances of issue 13, relative to each tensor's largest value.
      const double tol = dt == DType::Float64 ? 1e-8 : 1e-4;
      RefCheckResult r = ref_check(dir, dt);
      const RefCheckRow* worst = worst_row(r);
      REQUIRE(worst != nullptr);
      INFO(dir << " " << dtype_name(dt) << ": worst " << worst->name << " " << worst->error << " ("
               << r.rows.size() << " tensors)");
      CHECK(r.kind == "lra_classifier");
      CHECK(r.tolerance == tol);
      for (const RefCheckRow& row : r.rows) {
        INFO(row.name << ": " << row.error << " " << row.problem);
        CHECK(row.problem.empty());
        CHECK(row.error <= tol);  // false for a NaN error
      }
      CHECK(r.passed());
      // logits, loss and one gradient per official parameter: nothing left out.
      const std::vector<std::string> names = official_names(dir);
      CHECK(r.rows.size() == 2 + names.size());
      REQUIRE(r.rows.size() >= 2);
      CHECK(r.rows[0].name == "logits");
      CHECK(r.rows[1].name == "loss");
      for (size_t i = 0; i + 2 < r.rows.size() && i < names.size(); ++i) CHECK(r.rows[i + 2].name == "grad." + names[i]);
    }
}

TEST_CASE("ref models: a value that differs from the official one fails the check", "[ref][ref_models]") {
  test::TempDir dir("ref_models_fail");
  const std::string c = "m1_lra_postnorm_softmax_noise";
  copy_case_with(dir, c, "", Tensor());
  REQUIRE(ref_check(dir.path.string(), DType::Float64).passed());  // the unmodified copy passes

  auto fails_at = [&](const std::string& name, const Tensor& t, const std::string& row_name) {
    copy_case_with(dir, c, name, t);
    RefCheckResult r = ref_check(dir.path.string(), DType::Float64);
    INFO(name);
    CHECK_FALSE(r.passed());
    bool found = false;
    for (const RefCheckRow& row : r.rows)
      if (row.name == row_name) {
        found = true;
        CHECK_FALSE(row.error <= r.tolerance);
      }
    CHECK(found);
    return r;
  };
  // A logit off by 1e-6 of its scale, a NaN and an infinity in a gradient.
  Tensor logits = case_tensor(c, "logits");
  logits.set({1, 3}, logits.at({1, 3}) + 1e-6 * std::abs(logits.at({1, 3})) + 1e-12);
  fails_at("logits", logits, "logits");
  for (double bad : {(double)NAN, (double)INFINITY}) {
    Tensor g = case_tensor(c, "grad.classifier.0.0.weight");
    g.set({2, 5}, bad);
    RefCheckResult r = fails_at("grad.classifier.0.0.weight", g, "grad.classifier.0.0.weight");
    for (const RefCheckRow& row : r.rows)
      if (row.name == "grad.classifier.0.0.weight")
        CHECK_THAT(row.problem, Contains("grad.classifier.0.0.weight[2, 5]") && Contains(std::isnan(bad) ? "nan" : "inf"));
  }
  // Another weight changes the logits and the gradients.
  Tensor b = case_tensor(c, "sentence_projection_layer.bias");
  b.set({0}, b.at({0}) + 1e-3);
  fails_at("sentence_projection_layer.bias", b, "logits");

  // A malformed case is an error, not a pass: lengths that disagree with the padding, a NaN
  // token, a missing gradient, an unknown key.
  Tensor lengths = case_tensor(c, "lengths");
  lengths.set({1}, lengths.at({1}) + 1);
  copy_case_with(dir, c, "lengths", lengths);
  CHECK_THROWS_WITH(ref_check(dir.path.string(), DType::Float64), Contains("[ref-check]") && Contains("lengths[1]"));
  Tensor tokens = case_tensor(c, "tokens");
  tokens.set({0, 2}, NAN);
  copy_case_with(dir, c, "tokens", tokens);
  CHECK_THROWS_WITH(ref_check(dir.path.string(), DType::Float64), Contains("tokens[0, 2]") && Contains("nan"));
  {
    SafeTensors st = load_safetensors((kModels / c / "ref_f64.safetensors").string());
    std::erase_if(st.tensors, [](const auto& p) { return p.first == "grad.classifier.0.0.bias"; });
    save_safetensors((dir.path / "ref_f64.safetensors").string(), st.tensors, st.metadata);
    CHECK_THROWS_WITH(ref_check(dir.path.string(), DType::Float64), Contains("no reference gradient grad.classifier.0.0.bias"));
  }
  Json cfg = case_config((kModels / c).string());
  cfg.set("pooling", "cls");
  copy_case_with(dir, c, "", Tensor());
  write_file_atomic(dir.file("config.json"), cfg.dump(1), "test");
  CHECK_THROWS_WITH(ref_check(dir.path.string(), DType::Float64), Contains("unknown key \"pooling\""));
  cfg = case_config((kModels / c).string());
  cfg.set("sen_rep_type", "cls");
  CHECK_THROWS_WITH(parse_lra_case_config(cfg, "x"), Contains("sen_rep_type") && Contains("\"mp\""));
}

TEST_CASE("ref models: MegaClassifier has the official head options and names", "[ref_models][models]") {
  // The configuration of m2 (prenorm, classifier_layers 2, a projection bias, padding id 1).
  const std::string dir = (kModels / "m2_lra_prenorm_chunk4_laplace_rotary_scalenorm_noise").string();
  ClassifierConfig c = parse_lra_case_config(case_config(dir), dir).model;
  c.projection_bias = true;
  MegaClassifier m(c, 7);
  std::vector<std::string> ours;
  for (auto& [n, p] : m.named_parameters()) ours.push_back(n);
  CHECK(ours == official_names(dir));  // the official state_dict: the same names, the same order
  {
    no_grad g;  // official Linear init: zero biases
    for (auto& [n, p] : m.named_parameters())
      if (n == "classifier.1.0.bias" || n == "sentence_projection_layer.bias")
        for (double v : p.to_vector()) CHECK(v == 0.0);
  }
  // Padding id 1: trailing 1s change nothing; id 0 is an ordinary token.
  m.to(DType::Float64);
  no_grad g;
  Tensor a = m.forward(Tensor::from_vector(std::vector<int64_t>{3, 4, 5, 6, 7, 2, 9, 8}, {1, 8}));
  Tensor b = m.forward(Tensor::from_vector(std::vector<int64_t>{3, 4, 5, 6, 7, 2, 9, 8, 1, 1, 1, 1}, {1, 12}));
  CHECK(test::max_abs_diff(a, b) < 1e-12);
  Tensor z = m.forward(Tensor::from_vector(std::vector<int64_t>{3, 4, 5, 6, 7, 2, 9, 8, 0, 0, 0, 0}, {1, 12}));
  CHECK(test::max_abs_diff(a, z) > 1e-6);

  // The defaults are the model as before: one classifier layer, no projection bias, pad id 0.
  ClassifierConfig d;
  d.layer = c.layer, d.num_layers = 1, d.vocab_size = 20, d.classifier_dim = 16;
  MegaClassifier md(d, 7);
  std::vector<std::string> names;
  for (auto& [n, p] : md.named_parameters()) names.push_back(n);
  CHECK(std::count(names.begin(), names.end(), "classifier.0.0.weight") == 1);
  CHECK(std::count(names.begin(), names.end(), "classifier.1.0.weight") == 0);
  CHECK(std::count(names.begin(), names.end(), "sentence_projection_layer.bias") == 0);
  CHECK(d.padding_idx == 0);
  d.classifier_layers = 0;
  CHECK_THROWS_WITH(MegaClassifier(d, 1), Contains("classifier_layers"));
  d.classifier_layers = 1, d.padding_idx = 20;
  CHECK_THROWS_WITH(MegaClassifier(d, 1), Contains("padding_idx 20"));
}

namespace {
// A tiny ListOps run configuration on TSV files in `dir`, with model overrides.
Json tiny_listops(const test::TempDir& dir, const std::string& model_over) {
  data::ListOpsConfig lc;
  lc.min_len = 8, lc.max_len = 40, lc.num_train = 16, lc.num_val = 12, lc.num_test = 4, lc.seed = 5;
  test::write_listops_splits(dir.path.string(), lc);
  Json over = Json::parse(fmt::format(R"({{
    "model": {{"layers": 1, "embed_dim": 8, "hidden_dim": 16, "ffn_hidden_dim": 16, "z_dim": 8, "n_dim": 4,
              "max_positions": 64, "chunk_size": 8, "classifier_dim": 8 {}}},
    "data": {{"dir": "{}"}},
    "train": {{"steps": 1, "batch_size": 4}}}})", model_over, dir.path.string()));
  return merge_run_config(default_run_config("listops"), over, "test");
}
}  // namespace

TEST_CASE("ref models: the run config's head options and padding id", "[ref_models][config]") {
  // Defaults: as before (and, but for padding_idx, as the official model), and shown with the
  // differences from the official model.
  Json d = default_run_config("listops");
  CHECK(d.at("model").at("classifier_layers").get_int() == 1);
  CHECK(d.at("model").at("projection_bias").get_bool() == false);
  CHECK(d.at("model").at("padding_idx").get_int() == 0);
  CHECK_THAT(d.at("_model_vs_official").dump(), Contains("padding_idx 0 (official 1"));
  CHECK(default_run_config("fmnist").at("model").contains("classifier_layers"));
  CHECK_FALSE(default_run_config("fmnist").at("model").contains("padding_idx"));  // pixels: no padding
  CHECK_FALSE(default_run_config("charlm").at("model").contains("classifier_layers"));
  CHECK_THROWS_WITH(merge_run_config(default_run_config("charlm"), Json::parse(R"({"model": {"classifier_layers": 2}})"), "x.json"),
                    Contains("classifier_layers"));
  auto invalid = [](const char* over, const char* expected) {
    Json cfg = merge_run_config(default_run_config("listops"), Json::parse(over), "x.json");
    CHECK_THROWS_WITH(validate_run_config(cfg), Contains(expected));
  };
  invalid(R"({"model": {"classifier_layers": 0}})", "model.classifier_layers must be >= 1");
  invalid(R"({"model": {"padding_idx": 17}})", "model.padding_idx must be in [0, 16]");
  invalid(R"({"model": {"padding_idx": -1}})", "model.padding_idx");
  invalid(R"({"model": {"type": "transformer", "classifier_layers": 2}})", "Transformer baseline");

  test::TempDir dir("ref_models_task");
  // The official head and padding id through a run configuration: the official names.
  std::unique_ptr<TrainTask> t = make_task(tiny_listops(dir, R"(, "classifier_layers": 2, "projection_bias": true, "padding_idx": 1)"));
  std::map<std::string, Shape> shapes;
  for (auto& [n, p] : t->model().named_parameters()) shapes[n] = p.shape();
  CHECK(shapes.count("classifier.1.0.weight"));
  CHECK(shapes.count("sentence_projection_layer.bias"));
  CHECK(shapes["encoder.encoder.embed_tokens.embed.weight"] == Shape{17, 8});  // 16 ids, renumbered around id 1

  // padding_idx 1 is the same model as padding_idx 0 with its embedding rows renumbered:
  // the same loss on the same data.
  std::unique_ptr<TrainTask> t0 = make_task(tiny_listops(dir, ""));
  std::unique_ptr<TrainTask> t1 = make_task(tiny_listops(dir, R"(, "padding_idx": 1)"));
  NamedTensors w = t0->model().state_dict();
  for (auto& [n, v] : w)
    if (n == "encoder.encoder.embed_tokens.embed.weight") {  // row k of 16 -> row k + 1 of 17 (k >= 1), pad 0 -> 1
      Tensor e = Tensor::zeros({17, 8});
      for (int64_t k = 0; k < 16; ++k)
        for (int64_t j = 0; j < 8; ++j) e.set({k == 0 ? 1 : k + 1, j}, v.at({k, j}));
      v = e;
    }
  t1->model().load_state_dict(w);
  EvalResult e0 = t0->evaluate("val", 0), e1 = t1->evaluate("val", 0);
  CHECK(e0.count == 12);
  CHECK(std::abs(e0.loss - e1.loss) < 1e-5);  // float32: the same sums in the same order
  CHECK(e0.metric == e1.metric);

  // A configuration from before these keys (a checkpoint's) takes their defaults.
  Json old = tiny_listops(dir, "");
  Json m = old.at("model");
  Json m2 = Json::object();
  for (const auto& [k, v] : m.items())
    if (k != "classifier_layers" && k != "projection_bias" && k != "padding_idx") m2.set(k, v);
  old.set("model", m2);
  REQUIRE_NOTHROW(validate_run_config(old));
  std::unique_ptr<TrainTask> t_old = make_task(old);
  t_old->model().load_state_dict(t0->model().state_dict());  // strict: the same parameters
  CHECK(t_old->evaluate("val", 0).loss == e0.loss);
}
