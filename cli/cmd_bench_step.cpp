// megagrad bench-step --config FILE.json --seq-len L: one training step (forward, backward,
// gradient clipping, AdamW) of the whole ListOps classifier of a run configuration (Mega, Mega
// with chunks, or the Transformer: what `megagrad train --task listops --config FILE` builds) on a
// batch of synthetic ListOps sequences of exactly L tokens; reports the median time per step and
// its parts, and the process's peak resident memory. For the scaling experiment
// (experiments/scaling/): time and memory against L, one model at a time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include "autograd/ops.h"
#include "backends/cpu/allocator.h"
#include "backends/cpu/blas.h"
#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/json.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "mega/data/listops.h"
#include "mega/optim.h"
#include "mega/train/tasks.h"

namespace megagrad::cli {

namespace {
// A field of /proc/self/status ("VmHWM:", "VmRSS:"), in MiB; -1 when absent.
double proc_status_mib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0) return std::stod(line.substr(n)) / 1024.0;
  return -1;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// `count` well-formed ListOps sequences of exactly `len` tokens ("[MAX d d ... d ]", random
// digits) with their labels. Every layer's cost depends on the length, not on the tokens.
data::SequenceDataset synthetic_listops(int64_t count, int64_t len, uint64_t seed) {
  data::SequenceDataset ds;
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < count; ++i) {
    std::vector<uint8_t> seq;
    seq.push_back(data::kListOpsMax);
    for (int64_t t = 0; t < len - 2; ++t) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      seq.push_back((uint8_t)(data::kListOpsDigit0 + (s >> 33) % 10));
    }
    seq.push_back(data::kListOpsEnd);
    ds.add(seq, data::listops_evaluate(seq));
  }
  return ds;
}
}  // namespace

int cmd_bench_step(const std::vector<std::string>& args) {
  Options opts("bench-step",
               {{"--config", "FILE", "run configuration as for `megagrad train --task listops --config FILE` (the model section matters)"},
                {"--seq-len", "L", "tokens per sequence (required; the model's max_positions must allow it)"},
                {"--batch-size", "N", "sequences per step (default 1)"},
                {"--iters", "N", "timed steps after one warm-up step (default 3)"},
                {"--json", "OUT", "also write the measurements as JSON"},
                threads_option()});
  opts.parse(args);
  if (opts.help()) {
    std::printf("usage: megagrad bench-step --config FILE.json --seq-len L [options]\n\n"
                "Builds the ListOps classifier of FILE.json (Mega, Mega with chunk_size > 0, or the Transformer),\n"
                "as `megagrad train --task listops` would, and times full training steps (forward,\n"
                "backward, gradient clipping, AdamW) on a batch of synthetic sequences of exactly L tokens:\n"
                "one warm-up step, then the median of --iters steps. Prints the time per step and its\n"
                "parts and the process's peak resident memory (VmHWM: the model, the activations kept\n"
                "for the backward pass, and megagrad's CPU block cache). CPU only.\n\n%s",
                opts.options_help().c_str());
    return 0;
  }
  if (!opts.has("--config")) throw UsageError("megagrad bench-step: --config FILE is required (see: megagrad bench-step --help)");
  if (!opts.has("--seq-len")) throw UsageError("megagrad bench-step: --seq-len L is required (see: megagrad bench-step --help)");
  apply_threads(opts);
  const int64_t L = opts.get_int("--seq-len", 0, 3, 1 << 24);
  const int64_t B = opts.get_int("--batch-size", 1, 1, 1 << 20);
  const int iters = (int)opts.get_int("--iters", 3, 1, 100000);
  const std::string path = *opts.get("--config");

  Json cfg = merge_run_config(default_run_config("listops"), Json::parse(read_file(path, "bench-step", 1 << 20), path), path);
  const int64_t max_pos = cfg.at("model").at("max_positions").get_int();
  if (max_pos < L)
    throw UsageError(fmt::format("megagrad bench-step: {}: model.max_positions is {}, below --seq-len {}: set it to {} or more",
                                 path, max_pos, L, L));
  // The data: B sequences of L tokens, in LRA's TSV format in a private folder (read back by the
  // ListOps task, then deleted), so that the step is exactly the training loop's.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / fmt::format("megagrad-bench-step-{}", (long long)getpid());
  fs::create_directories(dir);
  const data::SequenceDataset ds = synthetic_listops(B, L, 1);
  for (const char* split : {"train", "val", "test"}) data::write_listops_tsv((dir / (std::string(split) + ".tsv")).string(), ds);
  Json d = cfg.at("data");
  d.set("dir", dir.string());
  cfg.set("data", d);
  Json t = cfg.at("train");
  t.set("batch_size", B);
  cfg.set("train", t);
  std::unique_ptr<TrainTask> task;
  try {
    task = make_task(cfg);
  } catch (...) {
    fs::remove_all(dir);
    throw;
  }
  fs::remove_all(dir);
  const TrainOptions o = train_options(cfg);
  Module& model = task->model();
  AdamWOptions ao;
  ao.lr = o.lr, ao.beta1 = o.beta1, ao.beta2 = o.beta2, ao.eps = o.eps, ao.weight_decay = o.weight_decay;
  AdamW opt(model.named_parameters(), ao);
  model.train();
  default_generator().set_state(o.seed, 0);
  const double rss_before = proc_status_mib("VmRSS:");
  const int64_t chunk = cfg.at("model").at("chunk_size").get_int();
  const int64_t padded = chunk > 0 ? (L + chunk - 1) / chunk * chunk : L;  // the task pads to a multiple of the chunk

  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::vector<double> tf, tb, to, tt;
  double loss_value = 0;
  for (int i = 0; i <= iters; ++i) {  // step 0: the warm-up
    auto t0 = Clock::now();
    opt.zero_grad();
    StepStats st;
    Tensor loss = task->next_train_loss(st);
    loss_value = loss.item();
    auto t1 = Clock::now();
    loss.backward();
    loss = Tensor();
    auto t2 = Clock::now();
    if (o.clip > 0) clip_grad_norm(opt.params(), o.clip);
    opt.step();
    auto t3 = Clock::now();
    MG_CHECK(st.tokens == B * padded, "bench-step", "the batch has {} tokens, not {} x {} (L padded to the chunk)",
             st.tokens, B, padded);
    tf.push_back(ms(t0, t1)), tb.push_back(ms(t1, t2)), to.push_back(ms(t2, t3)), tt.push_back(ms(t0, t3));
  }
  const double warmup_ms = tt.front();
  tf.erase(tf.begin()), tb.erase(tb.begin()), to.erase(to.begin()), tt.erase(tt.begin());
  const double peak = proc_status_mib("VmHWM:");
  const double cache = (double)cpu_cache_bytes() / (1024.0 * 1024.0);
  const std::string type = cfg.at("model").at("type").get_string();

  std::printf("bench-step %s  (%s%s, %lld layers, D=%lld, B=%lld L=%lld, %lld parameters)\n", path.c_str(), type.c_str(),
              type == "mega" && chunk > 0 ? fmt::format(" chunk {}", chunk).c_str() : "",
              (long long)cfg.at("model").at("layers").get_int(), (long long)cfg.at("model").at("embed_dim").get_int(),
              (long long)B, (long long)L, (long long)model.num_parameters());
  std::printf("OpenBLAS core %s, threads %d (megagrad) / %d (OpenBLAS), %d timed steps after 1 warm-up step\n",
              blas_core_name().c_str(), get_num_threads(), blas_get_num_threads(), iters);
  std::printf("step ms (median): %.1f (forward %.1f, backward %.1f, optimizer %.1f); min %.1f; warm-up step %.1f\n",
              median(tt), median(tf), median(tb), median(to), *std::min_element(tt.begin(), tt.end()), warmup_ms);
  std::printf("peak RSS %.1f MiB (%.1f MiB before the first step; %.1f MiB free in the block cache at the end)\n", peak,
              rss_before, cache);
  std::printf("loss %.4f\n", loss_value);
  if (auto out = opts.get("--json")) {
    Json j = Json::object();
    j.set("model", type), j.set("chunk_size", chunk), j.set("seq_len", L), j.set("batch_size", B);
    j.set("parameters", (int64_t)model.num_parameters()), j.set("iters", (int64_t)iters);
    j.set("step_ms", median(tt)), j.set("step_min_ms", *std::min_element(tt.begin(), tt.end()));
    j.set("forward_ms", median(tf)), j.set("backward_ms", median(tb)), j.set("optimizer_ms", median(to));
    j.set("warmup_step_ms", warmup_ms);
    j.set("peak_rss_mib", peak), j.set("rss_before_mib", rss_before), j.set("cache_free_mib", cache);
    j.set("threads", (int64_t)get_num_threads()), j.set("openblas_core", blas_core_name());
    j.set("loss", loss_value), j.set("seed", (int64_t)o.seed);
    write_file_atomic(*out, j.dump(2) + "\n", "bench-step");
  }
  return 0;
}

}  // namespace megagrad::cli
