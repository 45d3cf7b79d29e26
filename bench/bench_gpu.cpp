// GPU benchmarks (bench/gpu_check.sh runs them), each against a baseline measured in the same
// run on the same device:
//   copy        cudaMemcpy device-to-device of 1 GiB: the device's copy bandwidth (read + write)
//   add, exp    memory-bound ops with a new output: GB/s of their minimal traffic, ratio to copy
//               (goal >= 0.7)
//   ema         the fused EMA forward: minimal traffic = read x, write out; ratio to copy
//               (goal >= 0.6); and its forward+backward time
//   attention   the fused attention forward and forward+backward: time and TFLOP/s (the flops
//               of the two matrix products per chunk, 4 B L C (Z + H) / 2 when causal; the
//               backward counts 2.5 times the forward)
// Without a device it prints a visible skip and exits 0.
#include <cstdio>
#include <string>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "backends/cpu/blas.h"
#include "backends/cuda/allocator.h"
#include "backends/cuda/cuda.h"
#include "bench/bench_util.h"
#include "core/rng.h"
#include "mega/attention/attention.h"
#include "mega/ema/ema.h"

using namespace megagrad;

namespace {
const Device kDev = Device::cuda(0);

// Median seconds of `reps` runs of f, each followed by a device synchronisation.
double device_seconds(int reps, const std::function<void()>& f) {
  f();
  cuda_synchronize(0);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i)
    t.push_back(bench::seconds_of([&] {
      f();
      cuda_synchronize(0);
    }));
  return bench::stats_of(t).median;
}

void row(const std::string& what, double seconds, const std::string& rate, const std::string& ratio) {
  std::printf("| %-44s | %10.3f | %-16s | %-14s |\n", what.c_str(), seconds * 1e3, rate.c_str(), ratio.c_str());
}
}  // namespace

int main(int argc, char** argv) {
  fix_openblas_core_or_reexec(argc, argv);
  std::printf("bench_gpu: OpenBLAS core %s (host side); %s\n", blas_core_name().c_str(), cuda_status().c_str());
  if (!cuda_available()) {
    std::printf("SKIPPED: no CUDA device\n");
    return 0;
  }
  for (const std::string& d : cuda_device_descriptions()) std::printf("device: %s\n", d.c_str());
  no_grad off;  // forward timings without a graph; the backward timings enable it themselves
  Generator gen(1);
  std::printf("| %-44s | %10s | %-16s | %-14s |\n", "measurement (float32)", "ms", "rate", "vs baseline");
  std::printf("|%s|%s|%s|%s|\n", std::string(46, '-').c_str(), std::string(12, '-').c_str(), std::string(18, '-').c_str(),
              std::string(16, '-').c_str());

  // ---- baseline: copy bandwidth
  const int64_t n = int64_t(1) << 28;  // 1 GiB of float32
  Tensor a = randn({n}, DType::Float32, &gen).cuda(), b = randn({n}, DType::Float32, &gen).cuda();
  Tensor c = Tensor::empty({n}, DType::Float32, kDev);
  const double bytes1 = 4.0 * (double)n;
  double t_copy = device_seconds(10, [&] { cuda_memcpy_d2d(c.raw_device_data(), a.raw_device_data(), (size_t)bytes1); });
  const double copy_gbs = 2 * bytes1 / t_copy / 1e9;
  row("copy 1 GiB (baseline)", t_copy, fmt::format("{:.0f} GB/s", copy_gbs), "1.00");

  // ---- memory-bound ops
  double t_add = device_seconds(10, [&] { add(a, b); });
  double add_gbs = 3 * bytes1 / t_add / 1e9;
  row("add(a, b), new output, 1 GiB each", t_add, fmt::format("{:.0f} GB/s", add_gbs), fmt::format("{:.2f} (goal 0.7)", add_gbs / copy_gbs));
  double t_exp = device_seconds(10, [&] { exp(a); });
  double exp_gbs = 2 * bytes1 / t_exp / 1e9;
  row("exp(a), new output", t_exp, fmt::format("{:.0f} GB/s", exp_gbs), fmt::format("{:.2f} (goal 0.7)", exp_gbs / copy_gbs));
  a = b = c = Tensor();

  // ---- EMA: B=16, L=8192, D=1024, N=16, bidirectional
  {
    const int64_t B = 16, L = 8192, D = 1024, N = 16, E = 2 * D;
    Tensor x = randn({B, L, D}, DType::Float32, &gen).cuda();
    EmaParams p{normal({E, N, 1}, 0, 0.2, DType::Float32, &gen).cuda(), normal({E, N, 1}, 0, 0.2, DType::Float32, &gen).cuda(),
                normal({E, N, 1}, 0, 0.02, DType::Float32, &gen).cuda(), normal({E, N}, 0, 1, DType::Float32, &gen).cuda(),
                normal({D}, 0, 1, DType::Float32, &gen).cuda()};
    EmaOptions o;
    o.bidirectional = true;
    double t = device_seconds(10, [&] { ema(x, Tensor(), p, o); });
    const double bytes = 2.0 * 4.0 * (double)(B * L * D);
    double gbs = bytes / t / 1e9;
    row(fmt::format("ema forward B{} L{} D{} N{} bidir", B, L, D, N), t, fmt::format("{:.0f} GB/s", gbs),
        fmt::format("{:.2f} (goal 0.6)", gbs / copy_gbs));
    for (Tensor* t0 : {&p.delta, &p.alpha, &p.beta, &p.gamma, &p.omega}) t0->requires_grad_();
    x.requires_grad_();
    Tensor G = randn({B, L, D}, DType::Float32, &gen).cuda();
    double tb = device_seconds(5, [&] {
      enable_grad on;
      sum(mul(ema(x, Tensor(), p, o), G)).backward();
    });
    row("ema forward+backward (incl. sum(out*G))", tb, "", "");
  }

  // ---- attention: B=8, L=4096, chunk 1024, Z=128, H=1536 (Mega's 2D), softmax
  for (bool causal : {false, true}) {
    const int64_t B = 8, L = 4096, C = 1024, Z = 128, H = 1536;
    Tensor q = randn({B, L, Z}, DType::Float32, &gen).cuda(), k = randn({B, L, Z}, DType::Float32, &gen).cuda();
    Tensor v = randn({B, L, H}, DType::Float32, &gen).cuda();
    RelPosBias bias;
    bias.weight = normal({2 * C - 1}, 0, 0.02, DType::Float32, &gen).cuda();
    AttentionOptions o;
    o.chunk_size = C, o.causal = causal;
    const double flops = 2.0 * 2.0 * (double)(B * L * C) * (double)(Z + H) / (causal ? 2.0 : 1.0);
    double t = device_seconds(10, [&] { attention(q, k, v, Tensor(), bias, o); });
    row(fmt::format("attention fwd B{} L{} C{} Z{} H{}{}", B, L, C, Z, H, causal ? " causal" : ""), t,
        fmt::format("{:.1f} TFLOP/s", flops / t / 1e12), "");
    for (Tensor* t0 : {&q, &k, &v, &bias.weight}) t0->requires_grad_();
    Tensor G = randn({B, L, H}, DType::Float32, &gen).cuda();
    double tb = device_seconds(5, [&] {
      enable_grad on;
      sum(mul(attention(q, k, v, Tensor(), bias, o), G)).backward();
    });
    row("attention fwd+bwd", tb, fmt::format("{:.1f} TFLOP/s", 3.5 * flops / tb / 1e12), "");
  }
  std::printf("peak device memory allocated by megagrad: %s\n", human_bytes(cuda_memory_stats(0).peak_allocated).c_str());
  return 0;
}
