// Checkpoints (round trip, checksum, corruption, a kill in the middle of a write), the metrics
// log (resume keeps the log as if the run never stopped), the plot and the progress output.
#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "mega/train/checkpoint.h"
#include "mega/train/report.h"
#include "tests/test_util.h"

using namespace megagrad;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {
using TmpDir = test::TempDir;

Checkpoint sample_checkpoint(double v) {
  Checkpoint c;
  c.model.emplace_back("encoder.w", Tensor::full({3, 4}, v));
  c.model.emplace_back("encoder.b", Tensor::arange(0, 5, 1, DType::Float64));
  c.optimizer.emplace_back("exp_avg.encoder.w", Tensor::full({3, 4}, 2 * v));
  c.meta["step"] = "17";
  c.meta["config"] = "{\"lr\": 0.001}";
  return c;
}
}  // namespace

TEST_CASE("checkpoint: round trip keeps tensors and metadata", "[train_io]") {
  TmpDir d;
  save_checkpoint(d.file("a.ckpt"), sample_checkpoint(1.5));
  Checkpoint c = load_checkpoint(d.file("a.ckpt"));
  REQUIRE(c.model.size() == 2);
  CHECK(c.model[0].first == "encoder.w");
  CHECK(c.model[0].second.to_vector() == std::vector<double>(12, 1.5));
  CHECK(c.optimizer[0].first == "exp_avg.encoder.w");
  CHECK(c.meta.at("step") == "17");
  CHECK_FALSE(c.meta.count("checksum"));
}

TEST_CASE("checkpoint: corruption and foreign files are clear errors", "[train_io]") {
  TmpDir d;
  std::string path = d.file("a.ckpt");
  save_checkpoint(path, sample_checkpoint(1.5));
  std::string bytes = read_file(path, "test", 1 << 20);
  // Flip one byte of tensor data (the end of the file is data): the format stays valid, the
  // checksum does not.
  std::string bad = bytes;
  bad[bad.size() - 3] ^= 0x40;
  write_file_atomic(d.file("flipped.ckpt"), bad, "test");
  REQUIRE_THROWS_WITH(load_checkpoint(d.file("flipped.ckpt")), Contains("[load_checkpoint]") && Contains("checksum mismatch"));
  write_file_atomic(d.file("short.ckpt"), bytes.substr(0, bytes.size() / 2), "test");
  REQUIRE_THROWS_WITH(load_checkpoint(d.file("short.ckpt")), Contains("short.ckpt"));
  save_safetensors(d.file("plain.safetensors"), {{"x", Tensor::zeros({2})}});
  REQUIRE_THROWS_WITH(load_checkpoint(d.file("plain.safetensors")), Contains("not a megagrad checkpoint"));
  REQUIRE_THROWS_WITH(load_checkpoint(d.file("missing.ckpt")), Contains("missing.ckpt"));
}

TEST_CASE("checkpoint: a process killed while writing leaves the previous checkpoint intact", "[train_io]") {
  TmpDir d;
  std::string path = d.file("run.ckpt");
  save_checkpoint(path, sample_checkpoint(1.0));
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Writes large checkpoints in a loop until killed.
    Checkpoint big;
    big.model.emplace_back("w", Tensor::full({4'000'000}, 7.0));
    for (;;) save_checkpoint(path, big);
  }
  usleep(150 * 1000);  // let it get into the middle of a write
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  // Either the old checkpoint or a complete new one: never a torn file.
  Checkpoint c = load_checkpoint(path);
  bool old_one = c.model.size() == 2 && c.model[0].second.at({0, 0}) == 1.0;
  bool new_one = c.model.size() == 1 && c.model[0].second.numel() == 4'000'000;
  CHECK((old_one || new_one));
  // The killed writer may leave its temporary file; it is never mistaken for the checkpoint.
  for (auto& e : fs::directory_iterator(d.path)) INFO(e.path().string());
}

TEST_CASE("metrics log: a resumed run drops the records after the checkpoint", "[train_io]") {
  TmpDir d;
  std::string path = d.file("metrics.jsonl");
  {
    MetricsLog log(path, -1);
    for (int s = 1; s <= 5; ++s) {
      Json j = Json::object();
      j.set("step", s), j.set("split", "train"), j.set("loss", 1.0 / s);
      log.write(j);
    }
  }
  {
    MetricsLog log(path, 3);  // resumed from step 3
    Json j = Json::object();
    j.set("step", 4), j.set("split", "train"), j.set("loss", 0.2);
    log.write(j);
  }
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  REQUIRE(lines.size() == 4);
  CHECK(Json::parse(lines[3]).at("loss").get_double() == 0.2);
  plot_metrics_log(path, d.file("plot.svg"), "test run", "accuracy");
  std::string svg = read_file(d.file("plot.svg"), "test", 1 << 20);
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("train loss") != std::string::npos);
  CHECK(svg.find("<polyline") != std::string::npos);
}

TEST_CASE("progress: plain log lines when the output is not a terminal", "[train_io]") {
  TmpDir d;
  std::FILE* f = std::fopen(d.file("out.txt").c_str(), "w");
  {
    Progress p(10, 5, f);
    CHECK_FALSE(p.is_terminal());
    for (int s = 1; s <= 10; ++s) p.update(s, {{"loss", fmt::format("{:.3f}", 1.0 / s)}}, 1000);
    p.message("done");
  }
  std::fclose(f);
  std::string out = read_file(d.file("out.txt"), "test", 1 << 20);
  CHECK(out.find("step 5/10  loss 0.200") != std::string::npos);
  CHECK(out.find("step 10/10  loss 0.100") != std::string::npos);
  CHECK(out.find("step 3/10") == std::string::npos);
  CHECK(out.find("\r") == std::string::npos);
  CHECK(out.find("done\n") != std::string::npos);
}
