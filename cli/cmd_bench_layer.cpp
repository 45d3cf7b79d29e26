// megagrad bench-layer --config FILE.json: one Mega layer (random seeded weights) on a random
// input of the config's batch and seq_len; times the forward without a graph and the
// forward+backward, and reports the process's peak resident memory.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <vector>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "autograd/profile.h"
#include "backends/cpu/blas.h"
#include "backends/cuda/allocator.h"
#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/json.h"
#include "core/parallel.h"
#include "mega/config.h"

namespace megagrad::cli {

namespace {
// VmHWM: the peak resident set size of this process, in MiB.
double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}

// GFLOP/s of gemm() (the pool's blocks of single-threaded sgemm) on 1024 x 1024 x 1024, the
// best of 5, at the thread count in force: the rate that bench_core reports for sgemm.
double sgemm_gflops_1024() {
  const int64_t n = 1024;
  std::vector<float> a((size_t)(n * n), 0.5f), b((size_t)(n * n), 0.25f), c((size_t)(n * n));
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * (double)(n * n * n) / best * 1e-9;
}

struct Timing {
  double median, min;
};
Timing timing_of(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}
}  // namespace

int cmd_bench_layer(const std::vector<std::string>& args) {
  Options opts("bench-layer", {{"--config", "FILE", "layer config in the reference cases' config.json format"},
                               {"--iters", "N", "timed repetitions of each measurement (default 5)"},
                               {"--json", "OUT", "also write {forward_ms, forward_backward_ms, peak_rss_mib} (medians)"},
                               {"--profile-ops", "", "then time each op of the forward+backward passes (autograd/profile.h) and print the table"},
                               {"--floor", "", "then count the GEMM work of a forward+backward and time sgemm at 1024^3 here: the GEMM floor (CPU, float32)"},
                               {"--dtype", "T", "float32 (default) or float64"},
                               device_option(), threads_option()});
  opts.parse(args);
  if (opts.help()) {
    std::printf("usage: megagrad bench-layer --config FILE.json [options]\n\n"
                "Builds one Mega layer from FILE.json (random weights, seed 0), feeds it a random\n"
                "input of the config's batch and seq_len (with its padding), and times the forward\n"
                "(no graph) and the forward+backward of sum(out * G). Prints median and min ms and\n"
                "the process's peak resident memory (and the device's, with --device cuda). Example configs: bench/configs/*.json.\n\n%s",
                opts.options_help().c_str());
    return 0;
  }
  if (!opts.has("--config")) throw UsageError("megagrad bench-layer: --config FILE is required (see: megagrad bench-layer --help)");
  apply_threads(opts);
  const int iters = (int)opts.get_int("--iters", 5, 1, 100000);
  const std::string dts = opts.get("--dtype").value_or("float32");
  if (dts != "float32" && dts != "float64")
    throw UsageError(fmt::format("megagrad bench-layer: --dtype must be float32 or float64, got '{}'", dts));
  const DType dt = dts == "float32" ? DType::Float32 : DType::Float64;

  const Device device = parse_device(opts, "bench-layer");
  const std::string path = *opts.get("--config");
  LayerCaseConfig cfg = load_layer_config(path);
  MG_CHECK(cfg.seq_len > 0 && cfg.batch > 0, "bench-layer", "{}: seq_len and batch must be set", path);
  const int64_t B = cfg.batch, L = cfg.seq_len, D = cfg.layer.embed_dim;
  MegaLayer layer(cfg.layer, 0);
  layer.to(dt);
  layer.to(device);
  Generator gen(1);
  Tensor x = randn({B, L, D}, dt, &gen).to(device).requires_grad_();
  Tensor G = randn({B, L, D}, dt, &gen).to(device);
  Tensor mask;
  if (cfg.with_padding) {
    std::vector<double> m((size_t)(B * L), 0.0);
    for (int64_t b = 0; b < B; ++b) {
      int64_t pad = cfg.pad_lengths.empty() ? (b * L) / (2 * B) : cfg.pad_lengths[(size_t)(b % cfg.pad_lengths.size())];
      for (int64_t t = L - std::min(pad, L); t < L; ++t) m[(size_t)(b * L + t)] = 1.0;
    }
    mask = Tensor::from_vector(m, {B, L}, dt).to(device);
  }

  auto ms_of = [&](auto&& f) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    if (!device.is_cpu()) cuda_synchronize(device.index);  // kernels run asynchronously
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  auto forward = [&] {
    no_grad g;
    layer.forward(x, mask);
  };
  auto forward_backward = [&] {
    layer.zero_grad();
    x.zero_grad();
    sum(mul(layer.forward(x, mask), G)).backward();
  };
  forward();  // warm-up: first-touch of buffers, BLAS initialisation
  forward_backward();
  std::vector<double> tf, tfb;
  for (int i = 0; i < iters; ++i) tf.push_back(ms_of(forward)), tfb.push_back(ms_of(forward_backward));
  Timing f = timing_of(tf), fb = timing_of(tfb);
  const double rss = peak_rss_mib();

  std::printf("bench-layer %s  (%s, B=%lld L=%lld D=%lld H=%lld Z=%lld N=%lld F=%lld chunk %lld, %lld parameters)\n",
              path.c_str(), dts.c_str(), (long long)B, (long long)L, (long long)D, (long long)cfg.layer.hidden_dim,
              (long long)cfg.layer.z_dim, (long long)cfg.layer.n_dim, (long long)cfg.layer.ffn_hidden_dim,
              (long long)cfg.layer.chunk_size, (long long)layer.num_parameters());
  std::printf("OpenBLAS core %s, threads %d (megagrad) / %d (OpenBLAS), %d iterations\n", blas_core_name().c_str(),
              get_num_threads(), blas_get_num_threads(), iters);
  std::printf("%-20s %10s %10s\n", "", "median ms", "min ms");
  std::printf("%-20s %10.1f %10.1f\n", "forward", f.median, f.min);
  std::printf("%-20s %10.1f %10.1f\n", "forward+backward", fb.median, fb.min);
  std::printf("peak RSS %.1f MiB\n", rss);
  if (opts.has("--profile-ops")) {
    // On a GPU the ops only queue kernels: the table would show launch costs, not kernel times.
    profile_ops prof;
    for (int i = 0; i < iters; ++i) forward_backward();
    std::printf("\nper-op times over %d forward+backward passes%s:\n%s", iters,
                device.is_cpu() ? "" : " (launch times: the kernels run asynchronously)", prof.table().c_str());
  }
  if (opts.has("--floor")) {
    MG_CHECK(device.is_cpu() && dt == DType::Float32, "bench-layer", "--floor is for float32 on the CPU, got {} on {}",
             dts, device.str());
    const int64_t macs0 = gemm_mac_count();
    forward_backward();
    const double gflop = 2.0 * (double)(gemm_mac_count() - macs0) * 1e-9;
    const double rate = sgemm_gflops_1024();
    const double floor_ms = gflop / rate * 1e3;
    std::printf("\nGEMM floor: %.3f GFLOP of GEMM per forward+backward; sgemm 1024^3 here runs at %.1f GFLOP/s "
                "(%d thread%s), so the GEMMs alone need %.2f ms;\nforward+backward median %.1f ms = %.2fx that floor\n",
                gflop, rate, get_num_threads(), get_num_threads() == 1 ? "" : "s", floor_ms, fb.median,
                fb.median / floor_ms);
  }
  if (!device.is_cpu())
    std::printf("%s: peak %s allocated by megagrad\n", device.str().c_str(),
                human_bytes(cuda_memory_stats(device.index).peak_allocated).c_str());
  if (auto out = opts.get("--json")) {
    Json j = Json::object();
    j.set("forward_ms", f.median);
    j.set("forward_backward_ms", fb.median);
    j.set("peak_rss_mib", rss);
    j.set("forward_min_ms", f.min);
    j.set("forward_backward_min_ms", fb.min);
    write_file_atomic(*out, j.dump(2) + "\n", "bench-layer");
  }
  return 0;
}

}  // namespace megagrad::cli
