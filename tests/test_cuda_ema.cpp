// The CUDA kernels of the fused EMA (mega/ema/ema_cuda.h) against the CPU kernels they mirror
// (mega/ema/ema_cpu.h), on the same random inputs: y and the fused epilogue, dx~ and the parameter
// sums, in float32 and float64, for one and two directions, with and without padding mask and
// truncation, and for chunk lengths that cut the sequence in several ways. Without a GPU these
// tests report a visible skip (the argument checks run anyway: they fail before any launch).
#include <catch2/catch.hpp>
#include "backends/cuda/cuda.h"
#include "tests/cuda_test_util.h"

#if MEGAGRAD_HAS_CUDA
#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>
#include "backends/cuda/cuda_check.h"
#include "core/error.h"
#include "mega/ema/ema_cpu.h"
#include "mega/ema/ema_cuda.h"

using namespace megagrad;

namespace {

// A device copy of a host vector (or n uninitialised elements), freed on every path.
template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    if (n) MG_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
  }
  explicit DevBuf(const std::vector<T>& h) : DevBuf(h.size()) {
    if (n) MG_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  std::vector<T> get() const {
    std::vector<T> h(n);
    if (n) MG_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

// max |a - b| / max |b|; exactly 0 when both are all zeros; INFINITY on any NaN or Inf (an
// Inf on both sides used to give Inf - Inf = NaN, skipped by std::max, and an infinite scale).
template <typename A, typename B>
double max_rel(const std::vector<A>& a, const std::vector<B>& b) {
  return test::max_rel_diff(std::vector<double>(a.begin(), a.end()), std::vector<double>(b.begin(), b.end()));
}

struct Case {
  const char* label;
  int64_t B, L, D, N;
  int ndirs;
  int64_t trunc;  // 0: none; K = min(trunc, L)
  bool mask;
  bool strided;   // x stored (L, B, D): strides sb = D, sl = B D
  int64_t chunk;  // 0: automatic
};

// Random inputs, the CPU kernels, the CUDA launchers on device copies, and the comparisons.
template <typename T>
void run_case(const Case& c, double tol) {
  INFO(c.label << " (" << (sizeof(T) == 4 ? "float32" : "float64") << "): B=" << c.B << " L=" << c.L << " D=" << c.D
               << " N=" << c.N << " dirs=" << c.ndirs << " trunc=" << c.trunc << " mask=" << c.mask
               << " strided=" << c.strided << " chunk=" << c.chunk);
  const int64_t B = c.B, L = c.L, D = c.D, N = c.N, K = c.trunc > 0 ? std::min(c.trunc, L) : L;
  const EmaShape sh{B, L, D, N, K, c.ndirs};
  const int64_t Dp = sh.Dp(), R = c.ndirs;
  std::mt19937_64 rng(1000 + (uint64_t)(B * 131 + L * 17 + D * 7 + N + R * 3 + K));
  std::uniform_real_distribution<double> sym(-1, 1), unit(0, 1);

  // Coefficients (N, Dp) per direction, zero in the padding d >= D as make_coeffs leaves them.
  // q in (0.3, 0.98) mixes short and long memories, so carries across chunks matter.
  struct HostCoeffs {
    std::vector<T> q, a, c, Q;
  };
  std::vector<HostCoeffs> cdirs((size_t)R);
  std::vector<EmaCoeffs<T>> hdirs;
  for (auto& cf : cdirs) {
    for (auto* v : {&cf.q, &cf.a, &cf.c, &cf.Q}) v->assign((size_t)(N * Dp), T(0));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < D; ++d) {
        const size_t j = (size_t)(n * Dp + d);
        const double q = 0.3 + 0.68 * unit(rng);
        cf.q[j] = (T)q;
        cf.a[j] = (T)sym(rng);
        cf.c[j] = (T)sym(rng);
        cf.Q[j] = K < L ? (T)std::pow(q, (double)K) : T(0);
      }
    hdirs.push_back({cf.q.data(), cf.a.data(), cf.c.data(), cf.Q.data()});
  }
  const int64_t sb = c.strided ? D : L * D, sl = c.strided ? B * D : D;
  std::vector<T> x((size_t)(B * L * D)), gy((size_t)(B * L * D)), omega((size_t)D), mask;
  for (auto& v : x) v = (T)sym(rng);
  for (auto& v : gy) v = (T)sym(rng);
  for (auto& v : omega) v = (T)sym(rng);
  if (c.mask) {  // (B, L), 1 = pad: about a quarter of the steps, anywhere
    mask.resize((size_t)(B * L));
    for (auto& v : mask) v = unit(rng) < 0.25 ? T(1) : T(0);
  }

  // CPU: the kernels of ema_cpu.h, and the epilogue silu(y + omega x) in double.
  const EmaInput<T> cin{x.data(), sb, sl, c.mask ? mask.data() : nullptr, L, 1};
  std::vector<T> y_cpu((size_t)(B * L * D)), dxt_cpu((size_t)(B * L * D));
  std::vector<double> sums_ref((size_t)(4 * R * N * Dp));  // summed over b, as on the GPU
  ema_cpu::forward<T>(cin, hdirs.data(), sh, y_cpu.data());
  std::vector<double> scratch((size_t)ema_cpu::backward_scratch_doubles(sh));
  ema_cpu::backward<T>(cin, hdirs.data(), sh, gy.data(), dxt_cpu.data(), sums_ref.data(), scratch.data());
  std::vector<double> out_ref((size_t)(B * L * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t d = 0; d < D; ++d) {
        const size_t o = (size_t)((b * L + t) * D + d);
        const double v = (double)y_cpu[o] + (double)omega[(size_t)d] * (double)x[(size_t)(b * sb + t * sl + d)];
        out_ref[o] = v / (1 + std::exp(-v));
      }

  // GPU: the same arrays on the device.
  std::vector<std::unique_ptr<DevBuf<T>>> coef;
  std::vector<EmaCoeffs<T>> gdirs;
  for (const auto& cf : cdirs) {
    for (const auto* v : {&cf.q, &cf.a, &cf.c, &cf.Q}) coef.push_back(std::make_unique<DevBuf<T>>(*v));
    const size_t k = coef.size();
    gdirs.push_back({coef[k - 4]->p, coef[k - 3]->p, coef[k - 2]->p, coef[k - 1]->p});
  }
  DevBuf<T> dx(x), dgy(gy), domega(omega), dmask(mask);
  DevBuf<T> dy((size_t)(B * L * D)), dout((size_t)(B * L * D)), ddxt((size_t)(B * L * D));
  DevBuf<double> dsums((size_t)(4 * R * N * Dp));
  const size_t ws_bytes = std::max(ema_cuda::forward_workspace_bytes<T>(sh, c.chunk),
                                   ema_cuda::backward_workspace_bytes<T>(sh, c.chunk));
  DevBuf<char> ws(ws_bytes);
  cudaStream_t stream;
  MG_CUDA_CHECK(cudaStreamCreate(&stream));
  const EmaInput<T> gin{dx.p, sb, sl, c.mask ? dmask.p : nullptr, L, 1};
  ema_cuda::forward<T>(gin, gdirs.data(), sh, dy.p, domega.p, dout.p, ws.p, ws_bytes, stream, c.chunk);
  ema_cuda::backward<T>(gin, gdirs.data(), sh, dgy.p, ddxt.p, dsums.p, ws.p, ws_bytes, stream, c.chunk);
  MG_CUDA_CHECK(cudaStreamSynchronize(stream));
  MG_CUDA_CHECK(cudaStreamDestroy(stream));

  CHECK(max_rel(dy.get(), y_cpu) <= tol);
  CHECK(max_rel(dout.get(), out_ref) <= tol);
  CHECK(max_rel(ddxt.get(), dxt_cpu) <= tol);
  const std::vector<double> sums = dsums.get();
  const char* names[4] = {"dc", "da", "dq", "dQ"};
  for (int k = 0; k < 4; ++k) {
    INFO("parameter sum " << names[k]);
    const auto first = [&](const std::vector<double>& v) {
      return std::vector<double>(v.begin() + k * R * N * Dp, v.begin() + (k + 1) * R * N * Dp);
    };
    CHECK(max_rel(first(sums), first(sums_ref)) <= tol);
  }
}

const Case kCases[] = {
    // label                                         B   L    D   N  R trunc mask  strided chunk
    {"tail chunk of 5 steps",                        2,  37,  45, 16, 1, 0,   false, false, 8},
    {"bidirectional, lag inside a chunk",            3,  50,  33, 16, 2, 5,   true,  true,  16},
    {"bidirectional, lag spans chunks, N = 3",       2,  40,  40, 3,  2, 13,  true,  false, 6},
    {"L = 1",                                        2,  1,   7,  16, 2, 0,   true,  false, 0},
    {"N = 1, one step per chunk",                    2,  20,  64, 1,  2, 4,   false, true,  1},
    {"N = 20: several register groups",              1,  70,  50, 20, 2, 0,   true,  false, 32},
    {"automatic chunks (two), truncation",           2,  300, 96, 16, 2, 50,  true,  false, 0},
    {"automatic: one chunk",                         2,  100, 20, 16, 1, 0,   false, true,  0},
    {"truncation >= L is none",                      1,  37,  31, 5,  1, 200, false, false, 8},
    // Two directions without truncation and chunk 0: the shared-memory tile kernels (chunks of
    // 256 steps in float32, 128 in float64; the last chunk here ends inside a warp's steps).
    {"tiles: several chunks, the last one partial",  2,  600, 45, 16, 2, 0,   true,  true,  0},
    {"tiles: N = 20, several register groups",       1,  300, 33, 20, 2, 0,   false, false, 0},
    {"tiles: N = 3, one 32-channel tile",            3,  130, 8,  3,  2, 0,   true,  false, 0},
};

}  // namespace

TEST_CASE("cuda ema: kernels match the CPU kernels (float64)", "[cuda][ema]") {
  if (test::skip_without_cuda()) return;
  // Same math in another order (chunked, c a folded): float64 rounding only.
  const double tol = 1e-10;
  for (const Case& c : kCases) run_case<double>(c, tol);
}

TEST_CASE("cuda ema: kernels match the CPU kernels (float32)", "[cuda][ema]") {
  if (test::skip_without_cuda()) return;
  // float32 recurrences over up to 300 steps with q up to 0.98, summed in another order: a few
  // 1e-6 expected; an indexing error would be O(1).
  const double tol = 1e-4;
  for (const Case& c : kCases) run_case<float>(c, tol);
}

TEST_CASE("cuda ema: bad arguments are rejected before any launch", "[cuda][ema]") {
  // These throw in the argument checks, so they run without a GPU as well.
  const EmaShape s{2, 16, 8, 4, 16, 1}, s3{2, 16, 8, 4, 16, 3};
  float dummy = 0;
  const EmaCoeffs<float> dirs[2] = {{&dummy, &dummy, &dummy, &dummy}, {&dummy, &dummy, &dummy, &dummy}};
  const EmaInput<float> in{&dummy, 16 * 8, 8, nullptr, 0, 0};
  const size_t need = ema_cuda::forward_workspace_bytes<float>(s, 4);
  REQUIRE(need > 0);  // 4 chunks: the scan needs its chunk states
  CHECK_THROWS_WITH(ema_cuda::forward<float>(in, dirs, s, &dummy, nullptr, nullptr, nullptr, 0, nullptr, 4),
                    Catch::Contains("[ema_cuda] workspace of 0 bytes is too small"));
  CHECK_THROWS_WITH(ema_cuda::forward<float>(in, dirs, s3, &dummy, nullptr, nullptr, nullptr, 0, nullptr, 4),
                    Catch::Contains("ndirs must be 1 or 2"));
  const EmaShape bad_k{2, 16, 8, 4, 17, 1};
  CHECK_THROWS_WITH(ema_cuda::backward<float>(in, dirs, bad_k, &dummy, &dummy, nullptr, nullptr, 0, nullptr),
                    Catch::Contains("K must be in [1, L]"));
  const EmaCoeffs<float> missing[1] = {{&dummy, nullptr, &dummy, &dummy}};
  CHECK_THROWS_WITH(ema_cuda::forward<float>(in, missing, s, &dummy, nullptr, nullptr, nullptr, 0, nullptr, 4),
                    Catch::Contains("null coefficient"));
  float omega = 0;
  CHECK_THROWS_WITH(ema_cuda::forward<float>(in, dirs, s, &dummy, &omega, nullptr, nullptr, 0, nullptr),
                    Catch::Contains("needs both omega and out"));
}

// Not a correctness test: a timing run for a machine with a GPU (hidden; run it with
// `megagrad_tests "[cuda-bench]"`). It prints, per shape, the forward time and its bandwidth
// counted as the minimal traffic (read x once, write y once), next to a device-to-device copy of
// the same bytes; the goal is a ratio of at least 0.6.
TEST_CASE("cuda ema: forward and backward bandwidth", "[.][cuda-bench]") {
  if (test::skip_without_cuda()) return;
  struct Shape { int64_t B, L, D, N; int ndirs; };
  for (Shape sh : {Shape{8, 4096, 1024, 16, 1}, Shape{8, 4096, 1024, 16, 2}, Shape{64, 1024, 2048, 16, 1},
                   Shape{64, 1024, 2048, 16, 2}, Shape{1, 16384, 1024, 16, 1}}) {
    const EmaShape s{sh.B, sh.L, sh.D, sh.N, sh.L, sh.ndirs};
    const size_t n = (size_t)(sh.B * sh.L * sh.D), Dp = (size_t)s.Dp();
    DevBuf<float> x(n), y(n), gy(n), dxt(n), coef(4 * (size_t)sh.N * Dp);
    DevBuf<double> sums(4 * (size_t)sh.ndirs * (size_t)sh.N * Dp);
    // Inputs: zeros would do for timing, but keep the values finite and typical.
    std::vector<float> hc(4 * (size_t)sh.N * Dp, 0.5f);
    MG_CUDA_CHECK(cudaMemcpy(coef.p, hc.data(), hc.size() * sizeof(float), cudaMemcpyHostToDevice));
    MG_CUDA_CHECK(cudaMemset(x.p, 0, n * sizeof(float)));
    MG_CUDA_CHECK(cudaMemset(gy.p, 0, n * sizeof(float)));
    const size_t plane = (size_t)sh.N * Dp;
    const EmaCoeffs<float> c1{coef.p, coef.p + plane, coef.p + 2 * plane, coef.p + 3 * plane};
    const EmaCoeffs<float> dirs[2] = {c1, c1};
    const EmaInput<float> in{x.p, sh.L * sh.D, sh.D, nullptr, 0, 0};
    const size_t wsb = std::max(ema_cuda::forward_workspace_bytes<float>(s),
                                ema_cuda::backward_workspace_bytes<float>(s));
    DevBuf<char> ws(wsb);
    cudaEvent_t e0, e1;
    MG_CUDA_CHECK(cudaEventCreate(&e0));
    MG_CUDA_CHECK(cudaEventCreate(&e1));
    auto time_ms = [&](auto&& fn) {
      fn();  // warm-up
      MG_CUDA_CHECK(cudaEventRecord(e0, 0));
      const int reps = 5;
      for (int r = 0; r < reps; ++r) fn();
      MG_CUDA_CHECK(cudaEventRecord(e1, 0));
      MG_CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      MG_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      return (double)ms / reps;
    };
    const double copy_ms =
        time_ms([&] { MG_CUDA_CHECK(cudaMemcpyAsync(y.p, x.p, n * sizeof(float), cudaMemcpyDeviceToDevice, 0)); });
    const double fwd_ms = time_ms(
        [&] { ema_cuda::forward<float>(in, dirs, s, y.p, nullptr, nullptr, ws.p, wsb, 0); });
    const double bwd_ms = time_ms(
        [&] { ema_cuda::backward<float>(in, dirs, s, gy.p, dxt.p, sums.p, ws.p, wsb, 0); });
    MG_CUDA_CHECK(cudaEventDestroy(e0));
    MG_CUDA_CHECK(cudaEventDestroy(e1));
    const double bytes = 2.0 * (double)n * sizeof(float);  // x read once, y written once
    const double copy_gbs = bytes / copy_ms / 1e6, fwd_gbs = bytes / fwd_ms / 1e6;
    WARN("ema forward float32 B=" << sh.B << " L=" << sh.L << " D=" << sh.D << " N=" << sh.N << " dirs=" << sh.ndirs
                                  << ": " << fwd_ms << " ms, " << fwd_gbs << " GB/s minimal traffic; copy " << copy_gbs
                                  << " GB/s; ratio " << fwd_gbs / copy_gbs << "; backward (dx~ and sums) " << bwd_ms
                                  << " ms");
    CHECK(std::isfinite(fwd_gbs / copy_gbs));
  }
}

#else

TEST_CASE("cuda ema: kernels match the CPU kernels", "[cuda][ema]") {
  megagrad::test::skip("megagrad was built without CUDA");
}

#endif
