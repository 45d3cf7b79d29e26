// Plots and TensorBoard: round ticks, smoothing, the SVG's content, the TFRecord framing and
// CRC32C against known vectors, Event bytes equal to protobuf's own, and a TensorBoard writer
// that cannot write does not stop training.
#include <catch2/catch.hpp>
#include <unistd.h>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include "core/atomic_file.h"
#include "core/json.h"
#include "mega/data/listops.h"
#include "mega/train/report.h"
#include "mega/train/tasks.h"
#include "mega/train/tensorboard.h"
#include "mega/train/trainer.h"
#include "tests/test_util.h"

using namespace megagrad;
namespace fs = std::filesystem;

namespace {
struct Dir {
  fs::path p;
  explicit Dir(const std::string& tag) {
    p = fs::temp_directory_path() / fmt::format("megagrad_plots_{}_{}", tag, getpid());
    fs::remove_all(p);
    fs::create_directories(p);
  }
  ~Dir() { fs::remove_all(p); }
  std::string sub(const std::string& n) const { return (p / n).string(); }
};

std::string hex(std::string_view b) {
  std::string o;
  for (unsigned char c : b) o += fmt::format("{:02x}", c);
  return o;
}
uint32_t le32(const std::string& b, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | (unsigned char)b[at + (size_t)i];
  return v;
}
}  // namespace

TEST_CASE("tensorboard: CRC32C on known vectors", "[plots][tensorboard]") {
  CHECK(crc32c("123456789") == 0xE3069283u);
  CHECK(crc32c("") == 0u);
  // RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of ones.
  CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);
  CHECK(crc32c(std::string(32, '\xff')) == 0x62A8AB43u);
  CHECK(crc32c("56789", crc32c("1234")) == 0xE3069283u);  // continues a CRC
  // Masked as TensorFlow masks it (the value from tensorboard's own masked_crc32c).
  CHECK(masked_crc32c("123456789") == 0xC78AB0E5u);
}

TEST_CASE("tensorboard: record framing and Event bytes equal protobuf's", "[plots][tensorboard]") {
  // Expected bytes: tensorboard.compat.proto.event_pb2.Event(...).SerializeToString().
  CHECK(hex(tb_scalar_event(1.5, 3, "train/loss", 0.5f)) ==
        "09000000000000f83f10032a130a110a0a747261696e2f6c6f7373150000003f");
  CHECK(hex(tb_file_version_event(1.5)) == "09000000000000f83f1a0d627261696e2e4576656e743a32");
  CHECK(hex(tb_session_start_event(1.5, 7)) == "09000000000000f83f10073a020801");

  const std::string data = "0123456789";
  const std::string r = tfrecord(data);
  REQUIRE(r.size() == 8 + 4 + data.size() + 4);
  CHECK(hex(r.substr(0, 8)) == "0a00000000000000");     // uint64 length, little-endian
  CHECK(le32(r, 8) == 0x3ABFA3AEu);                       // tensorboard's masked_crc32c(pack('<Q', 10))
  CHECK(le32(r, 8) == masked_crc32c(r.substr(0, 8)));
  CHECK(r.substr(12, data.size()) == data);
  CHECK(le32(r, 12 + data.size()) == masked_crc32c(data));
}

TEST_CASE("tensorboard: a writer that cannot write warns once and never throws", "[plots][tensorboard]") {
  Dir d("tbfail");
  { std::ofstream(d.sub("afile")) << "x"; }
  std::FILE* warn = std::tmpfile();
  {
    TensorBoardWriter w(d.sub("afile/tb"), -1, warn);  // a file where the folder should be
    CHECK_FALSE(w.ok());
    w.add_scalar("train/loss", 1, 0.5);
    Json j = Json::object();
    j.set("step", (int64_t)1), j.set("split", "train"), j.set("loss", 0.5);
    w.add_metrics(j);
  }
  {
    fs::create_directories(d.sub("tb2"));
    TensorBoardWriter ok(d.sub("tb2"), -1, warn);
    REQUIRE(ok.ok());
    fs::create_directories(d.sub("tb3"));
    // The events file's name taken by a folder: it cannot be opened.
    const std::string name = fs::path(ok.path()).filename().string();
    fs::create_directories(d.sub("tb3") + "/" + name);
    fs::create_directories(d.sub("tb3") + "/" + name + fmt::format(".{}", getpid()));
    TensorBoardWriter blocked(d.sub("tb3"), -1, warn);
    CHECK_FALSE(blocked.ok());
  }
  std::rewind(warn);
  std::string text(4096, '\0');
  text.resize(std::fread(text.data(), 1, text.size(), warn));
  std::fclose(warn);
  // One warning per writer that failed (two), none for the one that works.
  size_t n = 0;
  for (size_t at = 0; (at = text.find("warning: tensorboard", at)) != std::string::npos; ++at) ++n;
  CHECK(n == 2);
  CHECK(text.find("training goes on") != std::string::npos);
}

TEST_CASE("tensorboard: training goes on when the events cannot be written, and writes them when they can",
          "[plots][tensorboard][train]") {
  Dir d("tbtrain");
  fs::create_directories(d.sub("data"));
  data::ListOpsConfig lc;
  lc.min_len = 8, lc.max_len = 30, lc.num_train = 32, lc.num_val = 8, lc.num_test = 8, lc.seed = 3;
  test::write_listops_splits(d.sub("data"), lc);
  Json over = Json::parse(fmt::format(R"({{
    "model": {{"layers": 1, "embed_dim": 8, "hidden_dim": 16, "ffn_hidden_dim": 16, "z_dim": 4, "n_dim": 2,
              "max_positions": 64, "classifier_dim": 8}},
    "data": {{"dir": "{}"}},
    "train": {{"steps": 4, "batch_size": 8, "warmup": 1, "log_every": 2, "eval_every": 2, "checkpoint_every": 4}}}})",
                                      d.sub("data")));
  const Json cfg = merge_run_config(default_run_config("listops"), over, "test");
  auto run = [&](const std::string& out, const std::string& tb) {
    TrainOptions o = train_options(cfg);
    o.out_dir = out, o.tensorboard_dir = tb;
    std::unique_ptr<TrainTask> t = make_task(cfg);
    return train(*t, o);
  };
  { std::ofstream(d.sub("blocker")) << "x"; }
  TrainSummary bad = run(d.sub("run_bad"), d.sub("blocker/tensorboard"));
  CHECK(bad.step == 4);
  CHECK(fs::exists(bad.checkpoint));

  TrainSummary good = run(d.sub("run_good"), d.sub("run_good/tensorboard"));
  REQUIRE(good.step == 4);
  std::string events;
  for (const auto& e : fs::directory_iterator(d.sub("run_good/tensorboard")))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) events = e.path().string();
  REQUIRE_FALSE(events.empty());
  const std::string bytes = read_file(events, "test", 1 << 20);
  // Walk the records: every CRC checks, and the tags the trainer promises are there.
  size_t at = 0, records = 0;
  std::string all;
  while (at < bytes.size()) {
    REQUIRE(at + 12 <= bytes.size());
    uint64_t len = 0;
    std::memcpy(&len, bytes.data() + at, 8);
    CHECK(le32(bytes, at + 8) == masked_crc32c(bytes.substr(at, 8)));
    REQUIRE(at + 12 + len + 4 <= bytes.size());
    const std::string data = bytes.substr(at + 12, len);
    CHECK(le32(bytes, at + 12 + len) == masked_crc32c(data));
    all += data;
    at += 12 + len + 4, ++records;
  }
  CHECK(records == 1 + 4 * 5 + 2 * 2);  // file_version; per step loss, lr, grad_norm, accuracy, tokens/s; 2 evaluations
  for (const char* tag : {"brain.Event:2", "train/loss", "train/lr", "train/grad_norm", "train/accuracy",
                          "train/tokens_per_s", "val/loss", "val/accuracy"})
    CHECK(all.find(tag) != std::string::npos);
}

TEST_CASE("plot: round ticks", "[plots]") {
  CHECK(nice_ticks(1, 601, 6) == std::vector<double>{0, 100, 200, 300, 400, 500, 600, 700});
  CHECK(nice_ticks(1, 601, 5) == std::vector<double>{0, 200, 400, 600, 800});
  CHECK(nice_ticks(0, 100) == std::vector<double>{0, 20, 40, 60, 80, 100});
  const std::vector<double> t = nice_ticks(0.412, 0.795);
  REQUIRE(t.size() >= 2);
  CHECK(t.front() == Approx(0.4));
  CHECK(t.back() == Approx(0.8));
  CHECK(t[1] - t[0] == Approx(0.1));
  CHECK(nice_ticks(3, 3).size() >= 2);  // a flat curve still gets an axis
}

TEST_CASE("plot: smoothing keeps a constant curve and calms a noisy one", "[plots]") {
  std::vector<std::pair<double, double>> flat, noisy;
  for (int i = 0; i < 500; ++i) flat.emplace_back(i, 2.0), noisy.emplace_back(i, 1.0 + (i % 2 ? 0.5 : -0.5));
  for (auto [x, y] : smooth_curve(flat)) CHECK(y == Approx(2.0));  // debiased: no pull towards 0 at the start
  const auto s = smooth_curve(noisy);
  REQUIRE(s.size() == noisy.size());
  CHECK(std::fabs(s.back().second - 1.0) < 0.1);
}

TEST_CASE("plot: the metrics plot skips header lines, has % ticks, eval markers, the baseline and an outside legend",
          "[plots]") {
  Dir d("svg");
  {
    MetricsLog log(d.sub("metrics.jsonl"), -1);
    Json h = Json::object();
    h.set("header", Json::object());
    log.write(h);
    for (int64_t s = 1; s <= 601; ++s) {
      Json j = Json::object();
      j.set("step", s), j.set("split", "train"), j.set("loss", 2.0 - s / 601.0), j.set("elapsed_s", 0.1 * (double)s);
      log.write(j);
      if (s % 300 == 0 || s == 601) {
        Json v = Json::object();
        v.set("step", s), v.set("split", "val"), v.set("loss", 1.9 - s / 601.0), v.set("accuracy", 30.0 + s / 20.0);
        log.write(v);
      }
    }
    log.write(h);  // a resume's header in the middle
  }
  const RunCurves c = read_run_curves(d.sub("metrics.jsonl"));
  CHECK(c.train_loss.size() == 601);
  REQUIRE(c.val_curve("accuracy"));
  CHECK(c.val_curve("accuracy")->size() == 3);
  CHECK(c.val_curve("elapsed_s") == nullptr);

  plot_metrics_log(d.sub("metrics.jsonl"), d.sub("curves.svg"), "t", "accuracy", {41.5, "majority class"});
  const std::string svg = read_file(d.sub("curves.svg"), "test", 1 << 22);
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find(">100%</text>") != std::string::npos);
  CHECK(svg.find(">0%</text>") != std::string::npos);
  CHECK(svg.find(">600</text>") != std::string::npos);
  CHECK(svg.find(">601<") == std::string::npos);
  CHECK(svg.find(">301<") == std::string::npos);
  CHECK(svg.find("majority class (41.5%)") != std::string::npos);
  CHECK(svg.find("stroke-dasharray") != std::string::npos);
  CHECK(svg.find("<circle") != std::string::npos);
  CHECK(svg.find("train loss, smoothed") != std::string::npos);
  CHECK(svg.find("stroke-opacity=\"0.25\"") != std::string::npos);  // the raw curve, faint
  // The legend's first sample starts right of the data area (whose frame is the only <rect> with a stroke).
  const size_t frame = svg.find("<rect x=\"72\" y=\"44\" width=\"600\"");
  REQUIRE(frame != std::string::npos);
  const size_t legend = svg.find("train loss, per step</text>");
  REQUIRE(legend != std::string::npos);
  const size_t x_at = svg.rfind("<text x=\"", legend);
  CHECK(std::stod(svg.substr(x_at + 9)) > 72 + 600);
}

TEST_CASE("plot: a metrics log that is not JSON lines is an error naming the file and line", "[plots][errors]") {
  Dir d("bad");
  { std::ofstream(d.sub("metrics.jsonl")) << "{\"step\": 1, \"split\": \"train\", \"loss\": 1}\nnot json\n"; }
  REQUIRE_THROWS_WITH(read_run_curves(d.sub("metrics.jsonl")), Catch::Contains("metrics.jsonl line 2"));
  REQUIRE_THROWS_WITH(read_run_curves(d.sub("missing.jsonl")), Catch::Contains("[plot] cannot read"));
}
