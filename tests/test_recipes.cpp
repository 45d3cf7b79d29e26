// Named recipes (megagrad train --recipe NAME): "official" carries the paper's mega_lra_listop
// settings, "cpu" is the defaults, and a wrong name or task is an error naming the recipes.
#include <unistd.h>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include "core/error.h"
#include "core/json.h"
#include "mega/train/tasks.h"
#include "tests/test_util.h"

using namespace megagrad;

namespace {

// The values of the official ListOps recipe that our keys express (examples/mega/README.lra.md,
// fairseq/models/lra/model.py mega_lra_listop).
void check_official(const Json& cfg) {
  const Json& m = cfg.at("model");
  CHECK(m.at("type").get_string() == "mega");
  CHECK(m.at("layers").get_int() == 6);
  CHECK(m.at("embed_dim").get_int() == 80);
  CHECK(m.at("hidden_dim").get_int() == 160);
  CHECK(m.at("ffn_hidden_dim").get_int() == 160);
  CHECK(m.at("z_dim").get_int() == 64);
  CHECK(m.at("n_dim").get_int() == 16);
  CHECK(m.at("prenorm").get_bool() == false);
  CHECK(m.at("truncation").get_int() == 1024);
  CHECK(m.at("chunk_size").get_int() == -1);
  CHECK(m.at("max_positions").get_int() == 2002);
  CHECK(m.at("norm_type").get_string() == "layernorm");
  CHECK(m.at("attention_activation").get_string() == "softmax");
  CHECK(m.at("dropout").get_double() == 0.1);
  CHECK(m.at("attention_dropout").get_double() == 0.0);
  CHECK(m.at("hidden_dropout").get_double() == 0.0);
  CHECK(m.at("classifier_dim").get_int() == 160);
  CHECK(m.at("classifier_layers").get_int() == 1);
  const Json& t = cfg.at("train");
  CHECK(t.at("lr").get_double() == 1e-3);
  CHECK(t.at("beta1").get_double() == 0.9);
  CHECK(t.at("beta2").get_double() == 0.98);
  CHECK(t.at("eps").get_double() == 1e-8);
  CHECK(t.at("weight_decay").get_double() == 0.01);
  CHECK(t.at("clip").get_double() == 1.0);
  CHECK(t.at("warmup").get_int() == 3000);
  CHECK(t.at("steps").get_int() == 90000);
  CHECK(t.at("batch_size").get_int() == 64);
  CHECK(t.at("end_lr").get_double() == 0.0);
  CHECK(cfg.at("data").at("preset").get_string() == "lra");
}

// The megagrad program next to this test binary (both are built into the same folder), or "".
std::string megagrad_program() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const auto p = self.parent_path() / "megagrad";
  return std::filesystem::exists(p) ? p.string() : "";
}

// Runs a command; its stdout, and its exit status in `status`.
std::string run(const std::string& cmd, int& status) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  status = ::pclose(f);
  return out;
}

}  // namespace

TEST_CASE("recipes: official carries the paper's ListOps settings and validates", "[recipes]") {
  const Json cfg = recipe_run_config("listops", "official");
  check_official(cfg);
  CHECK(cfg.at("_recipe").get_string() == "official");
  CHECK_NOTHROW(validate_run_config(cfg));
  // A --config file still overrides the recipe (e.g. the paper's model on the 'medium' data).
  const Json over = Json::parse(R"({"data": {"preset": "medium"}, "train": {"steps": 10}})", "test");
  const Json merged = merge_run_config(cfg, over, "test");
  CHECK(merged.at("data").at("preset").get_string() == "medium");
  CHECK(merged.at("train").at("steps").get_int() == 10);
  CHECK(merged.at("model").at("layers").get_int() == 6);
}

TEST_CASE("recipes: cpu is the defaults, and unknown names and tasks are errors", "[recipes]") {
  for (const char* task : {"listops", "fmnist", "charlm"}) {
    Json cpu = recipe_run_config(task, "cpu");
    CHECK(cpu.at("_recipe").get_string() == "cpu");
    const Json def = default_run_config(task);
    CHECK(cpu.at("model").dump() == def.at("model").dump());
    CHECK(cpu.at("train").dump() == def.at("train").dump());
    CHECK(cpu.at("data").dump() == def.at("data").dump());
  }
  CHECK(recipe_names("listops") == std::vector<std::string>{"cpu", "official"});
  CHECK_THROWS_WITH(recipe_overrides("listops", "paper"), Catch::Contains("unknown recipe \"paper\"") &&
                                                               Catch::Contains("cpu, official"));
  CHECK_THROWS_WITH(recipe_overrides("fmnist", "official"), Catch::Contains("for task fmnist"));
  CHECK_THROWS(recipe_overrides("nosuchtask", "cpu"));
}

TEST_CASE("recipes: train --recipe official --show-config prints the paper's values", "[recipes]") {
  const std::string prog = megagrad_program();
  if (prog.empty()) {
    test::skip("no megagrad program next to the test binary (build the megagrad target)");
    return;
  }
  int status = 0;
  const std::string out = run("'" + prog + "' train --task listops --recipe official --show-config --threads 1", status);
  REQUIRE(status == 0);
  const Json cfg = Json::parse(out, "megagrad train --show-config");
  check_official(cfg);
  const std::string bad = run("'" + prog + "' train --task listops --recipe nosuch --show-config 2>&1", status);
  CHECK(status != 0);
  CHECK(bad.find("unknown recipe") != std::string::npos);
}
