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

namespace {
// `bytes` with the first occurrence of `from` replaced by `to` (the same length, so the file
// stays a valid safetensors file and only the checksum can notice).
std::string edit(std::string bytes, const std::string& from, const std::string& to) {
  REQUIRE(from.size() == to.size());
  size_t at = bytes.find(from);
  REQUIRE(at != std::string::npos);
  return bytes.replace(at, from.size(), to);
}
}  // namespace

TEST_CASE("checkpoint: the checksum covers the header and the metadata, not only the data", "[train_io]") {
  TmpDir d;
  Checkpoint c = sample_checkpoint(1.5);
  c.meta["rng"] = "12345 0";
  c.meta["config"] = R"({"model":{"attention_activation":"softmax"}})";
  std::string path = d.file("a.ckpt");
  save_checkpoint(path, c);
  const std::string bytes = read_file(path, "test", 1 << 20);
  REQUIRE_NOTHROW(load_checkpoint(path));
  // Format 1 covered only the tensors: each of these edits loaded silently and changed the run.
  const std::vector<std::pair<std::string, std::string>> edits = {
      {R"("step":"17")", R"("step":"97")"},                            // --resume at the wrong step
      {R"("rng":"12345 0")", R"("rng":"12344 0")"},                    // the data seed (a bit flip)
      {"softmax", "laplace"},                                          // another activation
      {R"("shape":[3,4])", R"("shape":[4,3])"},                        // a tensor entry of the header
      {R"("dtype":"F64")", R"("dtype":"I64")"},                        // a dtype
  };
  for (const auto& [from, to] : edits) {
    INFO(from << " -> " << to);
    write_file_atomic(d.file("edited.ckpt"), edit(bytes, from, to), "test");
    REQUIRE_THROWS_WITH(load_checkpoint(d.file("edited.ckpt")), Contains("checksum mismatch"));
  }
  // One bit flipped anywhere in the header (but in the checksum's own digits, tested below) is
  // refused: as a checksum mismatch, or as a header that no longer parses.
  size_t header_end = 0;
  for (int i = 7; i >= 0; --i) header_end = header_end * 256 + (unsigned char)bytes[(size_t)i];
  header_end += 8;
  const size_t digits = bytes.find(R"("checksum":")") + 12;
  int refused = 0, tried = 0;
  for (size_t i = 0; i < header_end; i += 7) {
    if (i >= digits && i < digits + 16) continue;
    std::string b = bytes;
    b[i] ^= 0x01;
    write_file_atomic(d.file("bit.ckpt"), b, "test");
    ++tried;
    try {
      load_checkpoint(d.file("bit.ckpt"));
    } catch (const Error&) {
      ++refused;
    }
  }
  CHECK(refused == tried);
  // An edited checksum no longer matches the rest.
  std::string b = bytes;
  b[digits] = b[digits] == '0' ? '1' : '0';
  write_file_atomic(d.file("sum.ckpt"), b, "test");
  REQUIRE_THROWS_WITH(load_checkpoint(d.file("sum.ckpt")), Contains("checksum mismatch"));
}

TEST_CASE("checkpoint: a format-1 file loads with its metadata marked unverified", "[train_io]") {
  TmpDir d;
  // A format-1 file as the previous version wrote it: the checksum over tensor names, dtypes,
  // shapes and data (FNV-1a 64), computed here independently.
  NamedTensors all = {{"model.w", Tensor::full({2}, 0.5)}};
  uint64_t h = 1469598103934665603ull;
  auto add = [&h](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  };
  add("model.w", 8), add("float32", 8);
  int64_t dim = 2;
  add(&dim, 8);
  add(all[0].second.raw_data(), 8);
  save_safetensors(d.file("v1.ckpt"), all,
                   {{"format", "megagrad-checkpoint-1"}, {"checksum", fmt::format("{:016x}", h)}, {"step", "3"}});
  Checkpoint c = load_checkpoint(d.file("v1.ckpt"));
  CHECK(c.meta.at("step") == "3");
  CHECK_THAT(c.unverified, Contains("format-1") && Contains("metadata"));
  // Its tensors are still verified.
  all[0].second = Tensor::full({2}, 0.25);
  save_safetensors(d.file("v1bad.ckpt"), all,
                   {{"format", "megagrad-checkpoint-1"}, {"checksum", fmt::format("{:016x}", h)}, {"step", "3"}});
  REQUIRE_THROWS_WITH(load_checkpoint(d.file("v1bad.ckpt")), Contains("checksum mismatch"));
  // A format-2 file is fully verified.
  save_checkpoint(d.file("v2.ckpt"), sample_checkpoint(1.0));
  CHECK(load_checkpoint(d.file("v2.ckpt")).unverified.empty());
}

TEST_CASE("checkpoint: first_non_finite names the tensor and the index", "[train_io]") {
  NamedTensors t = {{"a", Tensor::full({2, 3}, 1.0)}, {"b", Tensor::full({2, 2}, 1.0)}};
  CHECK_FALSE(first_non_finite(t).has_value());
  t[1].second = Tensor::from_vector(std::vector<double>{1.0, 2.0, INFINITY, NAN}, {2, 2});
  auto bad = first_non_finite(t);
  REQUIRE(bad.has_value());
  CHECK_THAT(*bad, Contains("b: Inf at [1, 0]") && Contains("2 of 4"));
}

namespace {
int g_pipe_write = -1;
// In the writer child: on the first half written, tell the parent and wait to be killed.
void pause_mid_write(size_t written, size_t total) {
  if (written >= total) return;
  char c = 'w';
  if (::write(g_pipe_write, &c, 1) != 1) _exit(3);
  for (;;) pause();
}
}  // namespace

TEST_CASE("checkpoint: a process killed while writing leaves the previous checkpoint intact", "[train_io]") {
  TmpDir d;
  std::string path = d.file("run.ckpt");
  save_checkpoint(path, sample_checkpoint(1.0));
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    g_pipe_write = fds[1];
    set_atomic_write_hook_for_tests(pause_mid_write);
    Checkpoint big;
    big.model.emplace_back("w", Tensor::full({1'000'000}, 7.0));
    save_checkpoint(path, big);
    _exit(4);  // not reached: the hook waits to be killed
  }
  ::close(fds[1]);
  char c = 0;
  const ssize_t got = ::read(fds[0], &c, 1);  // blocks until the child is half-way through the write
  ::close(fds[0]);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(got == 1);
  REQUIRE(WIFSIGNALED(status));
  // The old checkpoint, untouched.
  Checkpoint k = load_checkpoint(path);
  REQUIRE(k.model.size() == 2);
  CHECK(k.model[0].second.at({0, 0}) == 1.0);
  // The killed writer left its half-written temp file beside it: proof that the kill landed
  // mid-write. It is never mistaken for the checkpoint, and it is refused if given by hand.
  std::vector<std::string> temps;
  for (auto& e : fs::directory_iterator(d.path))
    if (e.path().filename().string().rfind("run.ckpt.tmp.", 0) == 0) temps.push_back(e.path().string());
  REQUIRE(temps.size() == 1);
  CHECK(fs::file_size(temps[0]) < 4'000'000);
  REQUIRE_THROWS_WITH(load_checkpoint(temps[0]), Contains("[load_checkpoint]"));
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

TEST_CASE("progress: one number format, and a bar line that fits the terminal", "[train_io]") {
  CHECK(format_metric("loss", 2.30258509) == "2.3026");
  CHECK(format_metric("accuracy", 15.6249) == "15.62%");
  CHECK(format_metric("accuracy", 25) == "25.00%");
  CHECK(format_metric("bpc", 3.125) == "3.125");
  CHECK(format_metric("perplexity", 123.456) == "123.5");
  CHECK(format_seconds(12.345) == "12.3 s");

  const std::vector<std::pair<std::string, std::string>> fields = {
      {"loss", "2.3026"}, {"accuracy", "41.25%"}, {"lr", "1.00e-03"}};
  const std::string wide = progress_bar_line(50, 100, fields, "12345", "1:23", 200);
  CHECK(wide == "[###############...............] 50/100  loss 2.3026  accuracy 41.25%  lr 1.00e-03  "
                "12345 tok/s  ETA 1:23");
  // Narrower and narrower: never longer than columns - 1; the bar shrinks (to 10 cells), then
  // tok/s goes first, then lr, ETA, accuracy, loss, the bar; the count stays.
  std::string prev = wide;
  for (int cols = 120; cols >= 2; --cols) {
    const std::string line = progress_bar_line(50, 100, fields, "12345", "1:23", cols);
    INFO(cols << ": " << line);
    CHECK((int)line.size() <= cols - 1);
    CHECK(line.find('\n') == std::string::npos);
    if (cols >= 9) CHECK(line.find("50/100") != std::string::npos);
    CHECK(line.size() <= prev.size());
    prev = line;
  }
  auto at = [&](int cols) { return progress_bar_line(50, 100, fields, "12345", "1:23", cols); };
  CHECK(at(80).find("tok/s") == std::string::npos);
  CHECK(at(80).find("lr 1.00e-03") != std::string::npos);
  CHECK(at(80).rfind("[", 0) == 0);
  CHECK(at(80) == "[########.........] 50/100  loss 2.3026  accuracy 41.25%  lr 1.00e-03  ETA 1:23");
  CHECK(at(60) == "[#####.....] 50/100  loss 2.3026  accuracy 41.25%  ETA 1:23");
  CHECK(at(40) == "[########.........] 50/100  loss 2.3026");
  CHECK(at(20) == "[#####.....] 50/100");
  CHECK(at(10) == "50/100");
  CHECK(at(5) == "50/1");
}

TEST_CASE("progress: silent without an output (the other ranks of a data-parallel run)", "[train_io]") {
  Progress p(10, 1, nullptr);
  CHECK_FALSE(p.is_terminal());
  p.update(1, {{"loss", "1.0000"}}, 10);
  p.message("nothing");
  p.finish();
}

TEST_CASE("checkpoint: eval and generate refuse weights that are not finite", "[train_io]") {
  TmpDir d;
  Checkpoint c = sample_checkpoint(1.0);
  c.model[1].second = Tensor::from_vector(std::vector<double>{0.0, 1.0, NAN, 3.0, 4.0}, {5}, DType::Float64);
  save_checkpoint(d.file("nan.ckpt"), c);
  // Before: eval loaded it and printed "loss nan" with exit 0.
  REQUIRE_NOTHROW(load_checkpoint(d.file("nan.ckpt")));
  REQUIRE_THROWS_WITH(load_checkpoint_with_finite_weights(d.file("nan.ckpt"), "eval"),
                      Contains("[eval]") && Contains("nan.ckpt: the weights are not finite") &&
                          Contains("encoder.b: NaN at [2]"));
  save_checkpoint(d.file("ok.ckpt"), sample_checkpoint(1.0));
  REQUIRE_NOTHROW(load_checkpoint_with_finite_weights(d.file("ok.ckpt"), "eval"));
}
