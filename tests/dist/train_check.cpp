// Data-parallel training (mega/train/data_parallel.h) across the ranks of one mpirun launch:
//   mpirun -np 2 build/megagrad_train_check      (ctest: mpi_train_2_ranks)
// Checks, each on every rank:
//   - GradientSync sums the gradients in order-fixed buckets; a parameter that no rank gave a
//     gradient keeps none, and one that only some ranks gave gets the sum;
//   - N ranks end where one process with the same global batch ends (dropout on, gradient
//     accumulation, a batch that does not split evenly), within float32 reduction-order noise,
//     with the weights checked equal on every rank after every step;
//   - a run resumes with another number of ranks: one process -> N ranks and N ranks -> one;
//   - rank 0 alone writes the run (one header, no duplicated line);
//   - ranks that disagree on the configuration, and batch norm, stop with the same error on every
//     rank, not a hang.
// Rank 0 prints "train check: N ranks passed" only when every rank passed.
#include <unistd.h>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include "autograd/ops.h"
#include "backends/dist/communicator.h"
#include "core/error.h"
#include "tests/dist/expect.h"
#include "mega/train/checkpoint.h"
#include "mega/train/data_parallel.h"
#include "mega/train/tasks.h"
#include "mega/train/trainer.h"

using namespace megagrad;
namespace fs = std::filesystem;

using dist_test::expect;
using dist_test::failures;

namespace {

// A tiny ListOps run with dropout (so that the masks matter), 2 micro-batches per step and a
// global batch of 7, which 2 ranks split 3 + 4.
Json tiny_config(double lr = 0.003, const std::string& norm = "layernorm") {
  Json over = Json::parse(fmt::format(R"({{
    "model": {{"layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32, "z_dim": 8, "n_dim": 4,
              "max_positions": 64, "dropout": 0.1, "attention_dropout": 0.1, "hidden_dropout": 0.1,
              "classifier_dim": 16, "norm_type": "{}"}},
    "data": {{"min_len": 8, "max_len": 40, "num_train": 96}},
    "train": {{"steps": 8, "batch_size": 7, "accum": 2, "lr": {}, "warmup": 2, "log_every": 2, "eval_every": 4,
              "checkpoint_every": 4, "eval_batches": 2}}}})", norm, lr));
  return merge_run_config(default_run_config("listops"), over, "train check");
}

TrainSummary run(dist::Communicator& comm, const Json& cfg, const std::string& out, const std::string& resume = "",
                 int64_t stop_after = 0) {
  TrainOptions o = train_options(cfg);
  o.out_dir = out, o.resume = resume, o.stop_after = stop_after, o.comm = &comm;
  o.check_replicas_every = 1;  // every rank's weights hashed and compared after every step
  std::unique_ptr<TrainTask> t = make_task(cfg);
  return train(*t, o);
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}
std::vector<double> train_losses(const std::string& metrics) {
  std::vector<double> out;
  for (const std::string& l : lines_of(metrics)) {
    Json j = Json::parse(l, metrics);
    if (j.contains("split") && j.at("split").get_string() == "train") out.push_back(j.at("loss").get_double());
  }
  return out;
}

// The largest difference between the weights of two checkpoints (NaN and a missing tensor: infinite).
double max_weight_difference(const std::string& a, const std::string& b) {
  Checkpoint ca = load_checkpoint(a), cb = load_checkpoint(b);
  if (ca.model.size() != cb.model.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < ca.model.size(); ++i) {
    if (ca.model[i].first != cb.model[i].first) return INFINITY;
    const std::vector<double> x = ca.model[i].second.to_vector(), y = cb.model[i].second.to_vector();
    if (x.size() != y.size()) return INFINITY;
    for (size_t k = 0; k < x.size(); ++k) {
      const double d = std::fabs(x[k] - y[k]);
      if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;  // NaN counts as the worst
    }
  }
  return worst;
}

double max_loss_difference(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.empty()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(a[i] - b[i]);
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}

// Every rank throws from fn, with `needle` in the message.
void expect_error_on_every_rank(const std::function<void()>& fn, const std::string& needle, const std::string& what) {
  std::string message;
  try {
    fn();
  } catch (const std::exception& e) {
    message = e.what();
  }
  expect(message.find(needle) != std::string::npos, what + ": got '" + message + "'");
}

void check_gradient_sync(dist::Communicator& c) {
  const int r = c.rank(), n = c.size();
  Tensor a = Tensor::from_vector({1.0, 2.0, 3.0}, {3}, DType::Float64).requires_grad_();
  Tensor b = Tensor::from_vector({1.0, 1.0}, {2}, DType::Float64).requires_grad_();  // used on rank 1 only
  Tensor z = Tensor::from_vector({5.0}, {1}, DType::Float64).requires_grad_();       // used by no rank
  {
    // 8-byte buckets: one parameter each, so several collectives run in the fixed order.
    GradientSync sync({{"a", a}, {"b", b}, {"z", z}}, c, 8);
    expect(sync.num_buckets() == 3, "one bucket per parameter at 8 bytes");
    for (int step = 0; step < 2; ++step) {  // twice: the state resets after finish()
      a.zero_grad(), b.zero_grad(), z.zero_grad();
      sync.arm();
      Tensor loss = sum(mul_scalar(a, r + 1.0));
      if (r == 1) loss = add(loss, sum(mul(b, b)));
      loss.backward();
      sync.finish();
      // a: sum over ranks of (r + 1) = n (n + 1) / 2 per element; b: 2 b from rank 1 alone.
      const double want_a = n * (n + 1) / 2.0;
      expect(a.grad().defined() && a.grad().to_vector() == std::vector<double>(3, want_a), "GradientSync: a's sum");
      expect(b.grad().defined() && b.grad().to_vector() == std::vector<double>(2, n > 1 ? 2.0 : 0.0),
             "GradientSync: b's gradient from rank 1 only reaches every rank");
      expect(!z.grad().defined(), "GradientSync: no rank had a gradient for z: it keeps none");
    }
  }
}
}  // namespace

int main() {
  dist::Communicator& c = dist::world();
  const int r = c.rank(), n = c.size();
  expect(n >= 2, "run under mpirun with at least 2 ranks");
  // One scratch folder for the job, named by rank 0.
  std::string dir = r == 0 ? (fs::temp_directory_path() / fmt::format("megagrad_train_check_{}", getpid())).string() : "";
  c.broadcast_bytes(dir, 0);
  if (r == 0) fs::remove_all(dir), fs::create_directories(dir);
  c.barrier();
  auto sub = [&](const char* name) { return (fs::path(dir) / name).string(); };

  try {
    check_gradient_sync(c);

    const Json cfg = tiny_config();
    // One process with the global batch (rank 0 alone), then N ranks.
    if (r == 0) run(dist::single_process(), cfg, sub("one"));
    c.barrier();
    TrainSummary many = run(c, cfg, sub("many"));
    expect(many.step == 8, "N ranks ran every step");
    if (r == 0) {
      const std::vector<double> one_losses = train_losses(sub("one/metrics.jsonl"));
      const std::vector<double> many_losses = train_losses(sub("many/metrics.jsonl"));
      expect(one_losses.size() == 8, "one process logged 8 steps");
      // float32 losses of ~2.3 summed in another order: differences of a few ulps.
      const double dl = max_loss_difference(one_losses, many_losses);
      expect(dl < 1e-5, fmt::format("N ranks' loss curve equals one process's (max difference {:.3g})", dl));
      const double dw = max_weight_difference(sub("one/checkpoint.safetensors"), sub("many/checkpoint.safetensors"));
      expect(dw < 1e-5, fmt::format("N ranks end with one process's weights (max difference {:.3g})", dw));
      // Rank 0 alone wrote the log: one header line (world_size N), no step twice.
      int headers = 0, duplicated = 0;
      std::map<std::string, int> seen;
      for (const std::string& l : lines_of(sub("many/metrics.jsonl"))) {
        Json j = Json::parse(l);
        if (j.contains("header")) {
          ++headers;
          expect(j.at("header").at("world_size").get_int() == n, "the header records world_size N");
        } else {
          duplicated += ++seen[fmt::format("{} {}", j.at("step").get_int(), j.at("split").get_string())] > 1;
        }
      }
      expect(headers == 1 && duplicated == 0, fmt::format("one writer: {} header(s), {} duplicated line(s)", headers,
                                                          duplicated));
    }

    // Resume with another number of ranks, both ways, to the same end.
    if (r == 0) run(dist::single_process(), cfg, sub("one_then_many"), "", 3);
    c.barrier();
    run(c, cfg, sub("one_then_many"), sub("one_then_many/checkpoint.safetensors"));
    run(c, cfg, sub("many_then_one"), "", 3);
    if (r == 0) {
      run(dist::single_process(), cfg, sub("many_then_one"), sub("many_then_one/checkpoint.safetensors"));
      for (const char* d : {"one_then_many", "many_then_one"}) {
        const double dw = max_weight_difference(sub("one/checkpoint.safetensors"),
                                                (fs::path(dir) / d / "checkpoint.safetensors").string());
        expect(dw < 1e-5, fmt::format("{}: resumed with another rank count, ends at one process's weights (max "
                                      "difference {:.3g})", d, dw));
      }
    }
    c.barrier();

    // Disagreement and refusals: the same error on every rank, before any step.
    expect_error_on_every_rank([&] { run(c, tiny_config(r == 0 ? 0.003 : 0.004), sub("disagree")); },
                               "[train] ranks disagree", "ranks with different learning rates");
    expect_error_on_every_rank([&] { run(c, tiny_config(0.003, "batchnorm"), sub("batchnorm")); },
                               "batch-norm statistic", "batch norm under data parallelism");
    // A folder that holds another run: refused on every rank (only rank 0 looked).
    expect_error_on_every_rank([&] { run(c, cfg, sub("many")); }, "already holds a run",
                               "a run folder that holds a run");
  } catch (const std::exception& e) {
    expect(false, std::string("unexpected error: ") + e.what());
  }

  Tensor f = Tensor::from_vector({(double)failures}, {1}, DType::Float64);
  c.all_reduce_sum(f);
  c.barrier();
  if (r == 0) {
    fs::remove_all(dir);
    if (f.to_vector()[0] == 0) std::printf("train check: %d ranks passed\n", n);
    else std::printf("train check: %g failures over %d ranks\n", f.to_vector()[0], n);
  }
  return failures == 0 ? 0 : 1;
}
