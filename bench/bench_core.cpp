// bench_core: megagrad's core ops against baselines measured in the same run, on one thread.
//
//   matmul / linear (float32, through the autograd API under no_grad, allocation included)
//       vs raw cblas_sgemm into a preallocated output, same shapes and transposes;
//   elementwise ops and sum (GB/s of memory traffic) vs a plain copy loop, on arrays far larger
//       than the caches.
//
// Each row alternates baseline and megagrad runs, so a burst of load from another process hits
// both; it prints the median and the min of each. Targets (reported, not asserted): matmul >= 0.9
// of raw sgemm at 1024^3; elementwise >= 0.6 of copy.
//
//   build/bench_core            full run (well under 2 minutes)
//   build/bench_core --quick    a few seconds
#include <cblas.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "bench/bench_util.h"
#include "backends/cpu/blas.h"
#include "core/parallel.h"
#include "core/rng.h"

using namespace megagrad;
using namespace megagrad::bench;

namespace {

// Largest |a - b| relative to max(1, |b|): a sanity check that both sides computed the same.
double max_rel_diff(const float* a, const float* b, int64_t n) {
  double worst = 0;
  for (int64_t i = 0; i < n; ++i)
    worst = std::max(worst, std::fabs((double)a[i] - b[i]) / std::max(1.0, std::fabs((double)b[i])));
  return worst;
}

Tensor rand_f32(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return uniform(s, -1, 1, DType::Float32, &g);
}

// ---------------------------------------------------------------- matmul

struct GemmCase {
  std::string name;
  bool ta, tb;           // as BLAS sees the row-major operands
  int64_t m, n, k;
  Tensor a, b;           // row-major storage as BLAS reads it (a is (k,m) when ta, b is (n,k) when tb)
  std::function<Tensor()> megagrad;  // the same product through the library's API
};

void bench_gemm(GemmCase& c, int reps, bool is_target) {
  const float* a = c.a.data_ptr<float>();
  const float* b = c.b.data_ptr<float>();
  std::vector<float> out((size_t)(c.m * c.n));
  int64_t lda = c.ta ? c.m : c.k, ldb = c.tb ? c.k : c.n;
  auto raw = [&] {
    cblas_sgemm(CblasRowMajor, c.ta ? CblasTrans : CblasNoTrans, c.tb ? CblasTrans : CblasNoTrans,
                (int)c.m, (int)c.n, (int)c.k, 1.0f, a, (int)lda, b, (int)ldb, 0.0f, out.data(), (int)c.n);
  };
  Tensor result;
  try {
    no_grad guard;
    auto [sr, sm] = race(reps, raw, [&] { result = c.megagrad(); });
    double flop = 2.0 * c.m * c.n * c.k;
    double diff = max_rel_diff(result.contiguous().data_ptr<float>(), out.data(), c.m * c.n);
    std::printf("%-34s %8.1f %8.1f %8.1f %8.1f %7.3f%s%s\n", c.name.c_str(), flop / sr.median / 1e9,
                flop / sr.min / 1e9, flop / sm.median / 1e9, flop / sm.min / 1e9, sr.median / sm.median,
                is_target ? "  (target >= 0.9)" : "", diff > 1e-4 ? "  RESULTS DIFFER" : "");
  } catch (const std::exception& e) {
    std::printf("%-34s n/a: %s\n", c.name.c_str(), e.what());
  }
}

// ---------------------------------------------------------------- memory-bound ops

void print_bw(const char* name, double bytes, Stats s, double copy_gbs, const char* note) {
  double gbs = bytes / s.median / 1e9;
  std::printf("%-34s %8.2f %8.2f %7.3f%s\n", name, gbs, bytes / s.min / 1e9, gbs / copy_gbs, note);
}

}  // namespace

int main(int argc, char** argv) {
  fix_openblas_core_or_reexec(argc, argv);
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      return std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0 ? 0 : 2;
    }
  }
  std::printf("OpenBLAS core: %s%s\n", blas_core_name().c_str(),
              blas_core_is_slow_fallback() ? "  (SLOW GENERIC KERNEL: results are not representative)" : "");
  std::printf("OpenBLAS config: %s\n", blas_config().c_str());
  set_num_threads(1);
  std::printf("threads: %d (megagrad) / %d (OpenBLAS)%s\n\n", get_num_threads(), blas_get_num_threads(),
              quick ? "   [--quick]" : "");

  // ---- matmul: GFLOP/s, raw sgemm vs megagrad ----
  const int r_small = quick ? 10 : 60, r_big = quick ? 3 : 15;
  std::printf("%-34s %8s %8s %8s %8s %7s\n", "matmul float32 (GFLOP/s)", "sgemm", "(best)",
              "megagrad", "(best)", "ratio");
  {
    Tensor a = rand_f32({256, 256}, 1), b = rand_f32({256, 256}, 2);
    GemmCase c{"256^3 matmul", false, false, 256, 256, 256, a, b, [&] { return matmul(a, b); }};
    bench_gemm(c, r_small, false);
  }
  {
    Tensor a = rand_f32({1024, 1024}, 3), b = rand_f32({1024, 1024}, 4);
    GemmCase c{"1024^3 matmul", false, false, 1024, 1024, 1024, a, b, [&] { return matmul(a, b); }};
    bench_gemm(c, r_big, true);
  }
  {
    // A linear layer x (8192,256) -> (8192,128), W (128,256), and its two backward products.
    Tensor x = rand_f32({8192, 256}, 5), w = rand_f32({128, 256}, 6), dy = rand_f32({8192, 128}, 7);
    GemmCase fwd{"linear x(8192,256) W(128,256)^T", false, true, 8192, 128, 256, x, w,
                 [&] { return linear(x, w); }};
    bench_gemm(fwd, r_big, false);
    GemmCase dw{"dW = dY^T X (128,8192)@(8192,256)", true, false, 128, 256, 8192, dy, x,
                [&] { return matmul(dy.t(), x); }};
    bench_gemm(dw, r_big, false);
    GemmCase dx{"dX = dY W (8192,128)@(128,256)", false, false, 8192, 256, 128, dy, w,
                [&] { return matmul(dy, w); }};
    bench_gemm(dx, r_big, false);
  }

  // ---- memory-bound ops: GB/s of traffic (bytes read + written), vs a copy loop ----
  const int64_t n = quick ? (4 << 20) : (32 << 20);
  const int r_mem = quick ? 3 : 9;
  std::printf("\n%-34s %8s %8s %7s   (%lld float32 = %lld MiB per array)\n", "memory-bound (GB/s)",
              "median", "(best)", "vs copy", (long long)n, (long long)(n * 4 >> 20));
  no_grad guard;
  Tensor a = rand_f32({n}, 8), b = rand_f32({n}, 9);
  std::vector<float> dst((size_t)n, 0.0f);  // touched once so the copy never page-faults
  const float* ap = a.data_ptr<float>();
  auto copy = [&] { std::copy(ap, ap + n, dst.data()); };
  const double fbytes = 4.0 * n;
  Tensor out;

  // Each candidate races its own copy runs so that both see the same machine state.
  auto run = [&](const char* name, double bytes, const std::function<void()>& f, const char* note) {
    auto [sc, so] = race(r_mem, copy, f);
    double copy_gbs = 2 * fbytes / sc.median / 1e9;
    print_bw(name, bytes, so, copy_gbs, note);
  };
  run("copy loop (baseline)", 2 * fbytes, copy, "");
  run("add(a, b)  [new output]", 3 * fbytes, [&] { out = add(a, b); }, "  (target >= 0.6)");
  run("mul_scalar(a, 2)  [new output]", 2 * fbytes, [&] { out = mul_scalar(a, 2.0); }, "  (target >= 0.6)");
  run("exp(a)  [new output]", 2 * fbytes, [&] { out = exp(a); }, "");
  {
    Tensor c = b.clone();
    run("c.add_(a)  [in place]", 3 * fbytes, [&] { c.add_(a); }, "");
  }
  run("sum(a)", fbytes, [&] { out = sum(a); }, "");
  // What a [new output] row pays before computing anything: a fresh allocation, first-touched.
  run("diag: empty() + fill_(0) [new]", fbytes, [&] { out = Tensor::empty({n}); out.fill_(0); }, "");
  out = Tensor();

  // Sanity: the ops computed what they claim (checked once, outside the timing).
  {
    Tensor s = add(a, b);
    const float *sp = s.data_ptr<float>(), *bp = b.data_ptr<float>();
    double worst = 0;
    for (int64_t i = 0; i < n; i += 997) worst = std::max(worst, (double)std::fabs(sp[i] - (ap[i] + bp[i])));
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) ref += ap[i];
    double got = sum(a).item();
    std::printf("\nsanity: add max |err| %.1e; sum %.6g vs %.6g (double loop)\n", worst, got, ref);
  }
  return 0;
}
