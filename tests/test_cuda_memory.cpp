// Device memory (backends/cuda/allocator.h) and cuBLAS GEMM (backends/cuda/blas.h).
// Tests that need a GPU skip visibly without one (as tests/test_cuda.cpp); the error paths
// without a device, and argument checking, run everywhere, in the CUDA and the CPU-only build.
#include <catch2/catch.hpp>
#include "tests/cuda_test_util.h"
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>
#include "backends/cuda/allocator.h"
#include "backends/cuda/blas.h"
#include "backends/cuda/cuda.h"
#include "core/error.h"
#if MEGAGRAD_HAS_CUDA
#include <cublas_api.h>
#include "backends/cuda/stream.h"
#endif

using namespace megagrad;
using Catch::Contains;

namespace {

// The message of the megagrad::Error that f throws ("" when it throws nothing).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A device block given back to the cache on every path.
struct DeviceBlock {
  void* p;
  explicit DeviceBlock(size_t bytes) : p(cuda_alloc(bytes)) {}
  ~DeviceBlock() { cuda_free(p); }
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;
  template <typename T>
  T* as() const { return static_cast<T*>(p); }
};

}  // namespace

// ---------------------------------------------------------------- runs everywhere

TEST_CASE("cuda memory: a missing device gives a clear error, not a crash", "[cuda]") {
  // An index past the last device fails in every build, with or without a GPU.
  const int past = cuda_device_count();
  std::string msg = error_of([&] { cuda_alloc(1024, past); });
  INFO("message: " << msg);
  REQUIRE_THAT(msg, Contains("[cuda_alloc]") && Contains(fmt::format("cuda:{} is not available", past)));
  REQUIRE_THROWS_AS(cuda_alloc(1024, -1), Error);

  if (!cuda_available()) {
    // cuda:0 itself: the message names the device and the reason (the driver's, or the build's).
    msg = error_of([] { cuda_alloc(1024); });
    INFO("message: " << msg);
    REQUIRE_THAT(msg, Contains("[cuda_alloc] cuda:0 is not available: "));
    if (cuda_built())
      REQUIRE_THAT(msg, Contains(cuda_status()));  // "no device: <why the runtime gave>"
    else
      REQUIRE_THAT(msg, Contains("megagrad was built without CUDA"));
    char host[16] = {};
    REQUIRE_THROWS_WITH(cuda_memcpy_h2d(host, host, sizeof host),
                        Contains("[cuda_memcpy_h2d]") && Contains("cuda:0 is not available"));
    REQUIRE_THROWS_WITH(cuda_memcpy_d2h(host, host, sizeof host), Contains("[cuda_memcpy_d2h]"));
    REQUIRE_THROWS_WITH(cuda_memset_zero(host, sizeof host), Contains("[cuda_memset_zero]"));
    // The harmless calls stay harmless: nothing to free, wait for or count.
    REQUIRE_NOTHROW(cuda_free(nullptr));
    REQUIRE_NOTHROW(empty_cuda_cache());
    REQUIRE_NOTHROW(cuda_synchronize());
    CudaMemoryStats s = cuda_memory_stats();
    REQUIRE(s.allocated == 0);
    REQUIRE(s.reserved == 0);
    REQUIRE(s.cuda_malloc_calls == 0);
  }
}

TEST_CASE("cuda gemm: bad sizes are refused before any device work", "[cuda]") {
  REQUIRE_FALSE(cuda_allow_tf32());  // the default: full fp32
  float x[64] = {};
#if MEGAGRAD_HAS_CUDA
  // A is 2 x 4 (m 2, k 4): lda 3 cannot hold a row.
  REQUIRE_THROWS_WITH(cuda_gemm(false, false, 2, 3, 4, 1.f, x, 3, x, 3, 0.f, x, 3),
                      Contains("[cuda_gemm]") && Contains("lda 3") && Contains("row length 4"));
  // Transposed A is k x m = 4 x 2: lda 2 is enough, ldb 2 is not for B (4 x 3).
  REQUIRE_THROWS_WITH(cuda_gemm(true, false, 2, 3, 4, 1.f, x, 2, x, 2, 0.f, x, 3),
                      Contains("[cuda_gemm]") && Contains("ldb 2"));
  REQUIRE_THROWS_WITH(cuda_gemm(false, false, 2, 3, 4, 1.0, (const double*)nullptr, 4,
                                (const double*)nullptr, 3, 0.0, (double*)nullptr, 2),
                      Contains("[cuda_gemm]") && Contains("ldc 2"));
  REQUIRE_THROWS_WITH(cuda_gemm(false, false, -1, 3, 4, 1.f, x, 4, x, 3, 0.f, x, 3),
                      Contains("[cuda_gemm]") && Contains("negative size"));
  REQUIRE_THROWS_WITH(cuda_gemm(false, false, int64_t(1) << 31, 3, 4, 1.f, x, 4, x, 3, 0.f, x, 3),
                      Contains("[cuda_gemm]") && Contains("2^31-1"));
  // Batched: the 2 x 3 matrices of C (ldc 3) need stride_c >= (2 - 1) * 3 + 3 = 6.
  REQUIRE_THROWS_WITH(cuda_gemm_strided_batched(false, false, 2, 3, 4, 1.f, x, 4, 8, x, 3, 12, 0.f,
                                                x, 3, 5, 2),
                      Contains("[cuda_gemm_strided_batched]") && Contains("overlap"));
  REQUIRE_THROWS_WITH(cuda_gemm(false, false, 2, 3, 4, 1.f, nullptr, 4, x, 3, 0.f, x, 3),
                      Contains("[cuda_gemm]") && Contains("null"));
  // Status names for messages.
  REQUIRE(cublas_status_name(CUBLAS_STATUS_INVALID_VALUE) == "CUBLAS_STATUS_INVALID_VALUE");
  REQUIRE(cublas_status_name(CUBLAS_STATUS_NOT_INITIALIZED) == "CUBLAS_STATUS_NOT_INITIALIZED");
  REQUIRE(cublas_status_name(12345) == "CUBLAS_STATUS_12345");
#else
  REQUIRE_THROWS_WITH(cuda_gemm(false, false, 2, 3, 4, 1.f, x, 4, x, 3, 0.f, x, 3),
                      Contains("[cuda_gemm]") && Contains("built without CUDA"));
  REQUIRE_THROWS_WITH(cuda_gemm_strided_batched(false, false, 2, 3, 4, 1.0, (const double*)nullptr,
                                                4, 8, (const double*)nullptr, 3, 12, 0.0,
                                                (double*)nullptr, 3, 6, 2),
                      Contains("[cuda_gemm_strided_batched]") && Contains("built without CUDA"));
#endif
}

// ---------------------------------------------------------------- needs a device

TEST_CASE("cuda memory: a freed block is reused from the cache, and the counters follow", "[cuda]") {
  if (test::skip_without_cuda()) return;
  empty_cuda_cache();
  const CudaMemoryStats s0 = cuda_memory_stats();
  REQUIRE(s0.reserved == s0.allocated);  // nothing cached after emptying

  // A small request: 512-byte steps, so 1000 bytes take a 1024-byte block.
  const size_t n = 1000;
  void* p = cuda_alloc(n);
  REQUIRE(p != nullptr);
  const CudaMemoryStats s1 = cuda_memory_stats();
  REQUIRE(s1.cuda_malloc_calls == s0.cuda_malloc_calls + 1);
  REQUIRE(s1.cache_hits == s0.cache_hits);
  REQUIRE(s1.allocated - s0.allocated >= n);
  REQUIRE(s1.allocated - s0.allocated <= 1024);
  REQUIRE(s1.reserved == s1.allocated);
  REQUIRE(s1.peak_allocated >= s1.allocated);

  cuda_free(p);
  const CudaMemoryStats s2 = cuda_memory_stats();
  REQUIRE(s2.allocated == s0.allocated);
  if (!cuda_caching_enabled()) {
    WARN("MEGAGRAD_CUDA_CACHE=0: the cache is off, so its reuse is not tested");
    REQUIRE(s2.reserved == s0.reserved);
    return;
  }
  REQUIRE(s2.reserved == s1.reserved);  // kept, not given back to CUDA

  // The same size again: the same block, from the cache, without cudaMalloc.
  void* q = cuda_alloc(n);
  const CudaMemoryStats s3 = cuda_memory_stats();
  REQUIRE(q == p);
  REQUIRE(s3.cache_hits == s2.cache_hits + 1);
  REQUIRE(s3.cuda_malloc_calls == s2.cuda_malloc_calls);
  REQUIRE(s3.allocated == s1.allocated);

  // A smaller request of the same size class is a hit too; a second live block is a new one.
  cuda_free(q);
  void* r = cuda_alloc(n - 100);
  REQUIRE(r == p);
  void* r2 = cuda_alloc(n);
  REQUIRE(r2 != r);
  const CudaMemoryStats s4 = cuda_memory_stats();
  REQUIRE(s4.cache_hits == s0.cache_hits + 2);
  REQUIRE(s4.cuda_malloc_calls == s0.cuda_malloc_calls + 2);
  cuda_free(r);
  cuda_free(r2);

  // A large request: four size classes per power of two, so at most 25% is added, and a
  // request a little larger (within the same quarter step) reuses the block.
  const size_t big = (size_t(3) << 20) + 1;
  const CudaMemoryStats s5 = cuda_memory_stats();
  void* b = cuda_alloc(big);
  const size_t got = cuda_memory_stats().allocated - s5.allocated;
  REQUIRE(got >= big);
  REQUIRE(got <= big + big / 4);
  cuda_free(b);
  void* b2 = cuda_alloc(big + 1000);
  REQUIRE(b2 == b);
  cuda_free(b2);

  // 0 bytes still gives a real block, distinct from any other live one.
  void* z1 = cuda_alloc(0);
  void* z2 = cuda_alloc(0);
  REQUIRE(z1 != nullptr);
  REQUIRE(z2 != nullptr);
  REQUIRE(z1 != z2);
  cuda_free(z1);
  cuda_free(z2);

  // Freeing twice is a clear error, not a corrupted cache.
  void* d = cuda_alloc(256);
  cuda_free(d);
  REQUIRE_THROWS_WITH(cuda_free(d), Contains("[cuda_free]"));
  int on_host = 0;
  REQUIRE_THROWS_WITH(cuda_free(&on_host), Contains("[cuda_free]"));

  // Emptying gives every cached block back; the peak restarts from what is allocated now.
  empty_cuda_cache();
  const CudaMemoryStats s6 = cuda_memory_stats();
  REQUIRE(s6.allocated == s0.allocated);
  REQUIRE(s6.reserved == s6.allocated);
  REQUIRE(s6.peak_allocated >= s0.allocated + got);
  cuda_reset_peak_memory_stats();
  REQUIRE(cuda_memory_stats().peak_allocated == s6.allocated);
}

TEST_CASE("cuda memory: out of memory is a megagrad::Error with the sizes", "[cuda]") {
  if (test::skip_without_cuda()) return;
  const CudaMemoryStats before = cuda_memory_stats();
  const size_t huge = size_t(1) << 50;  // 1 PiB: more than any device has
  std::string msg = error_of([&] { cuda_alloc(huge); });
  INFO("message: " << msg);
  REQUIRE_THAT(msg, Contains("[cuda_alloc] out of memory on cuda:0") &&
                        Contains("tried to allocate 1.00 PiB (1125899906842624 bytes)") &&
                        Contains("allocated by megagrad") && Contains("free of"));
  // A size whose rounding would overflow: refused the same way.
  const size_t absurd = std::numeric_limits<size_t>::max();
  msg = error_of([&] { cuda_alloc(absurd); });
  REQUIRE_THAT(msg, Contains("out of memory") && Contains(std::to_string(absurd) + " bytes"));
  // Nothing was counted, and the device still works (the error was not left sticky).
  const CudaMemoryStats after = cuda_memory_stats();
  REQUIRE(after.allocated == before.allocated);
  DeviceBlock ok(4096);
  cuda_memset_zero(ok.p, 4096);
  REQUIRE_NOTHROW(cuda_synchronize());
}

TEST_CASE("cuda memory: copies round-trip, at offsets too", "[cuda]") {
  if (test::skip_without_cuda()) return;
#if MEGAGRAD_HAS_CUDA
  REQUIRE(cuda_stream() != nullptr);  // a created stream, not the legacy default one
  REQUIRE(cuda_stream() == cuda_stream());
#endif
  const size_t count = (size_t(1) << 20) + 7, bytes = count * sizeof(float);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> host(count);
  for (float& v : host) v = u(rng);

  DeviceBlock a(bytes), b(bytes);
  cuda_memcpy_h2d(a.p, host.data(), bytes);
  cuda_memcpy_d2d(b.p, a.p, bytes);
  std::vector<float> back(count, -7.f);
  cuda_memcpy_d2h(back.data(), b.p, bytes);
  REQUIRE(std::memcmp(back.data(), host.data(), bytes) == 0);

  // Zero elements [100, 150) of a through an interior pointer: only those change.
  cuda_memset_zero(a.as<float>() + 100, 50 * sizeof(float));
  // Copy elements [1000, 1003) of b over elements [0, 3) of a (d2d at offsets).
  cuda_memcpy_d2d(a.as<float>(), b.as<float>() + 1000, 3 * sizeof(float));
  cuda_memcpy_d2h(back.data(), a.p, bytes);
  int64_t wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    float expect = i < 3 ? host[1000 + i] : (i >= 100 && i < 150) ? 0.f : host[i];
    if (std::memcmp(&back[i], &expect, sizeof(float)) != 0) ++wrong;
  }
  REQUIRE(wrong == 0);

  // Zero bytes: nothing happens, even with null pointers; a null pointer with bytes is an error.
  REQUIRE_NOTHROW(cuda_memcpy_h2d(nullptr, nullptr, 0));
  REQUIRE_NOTHROW(cuda_memcpy_d2h(nullptr, nullptr, 0));
  REQUIRE_THROWS_WITH(cuda_memcpy_h2d(nullptr, host.data(), 4),
                      Contains("[cuda_memcpy_h2d]") && Contains("null"));
  REQUIRE_THROWS_WITH(cuda_memset_zero(nullptr, 4), Contains("[cuda_memset_zero]"));
}

TEST_CASE("cuda memory: the allocator is safe from several threads", "[cuda]") {
  if (test::skip_without_cuda()) return;
  const size_t before = cuda_memory_stats().allocated;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t, &errors] {
      try {
        std::mt19937 rng(100 + t);
        std::vector<void*> live;
        for (int i = 0; i < 2000; ++i) {
          if (live.size() < 8 && (rng() % 3 != 0 || live.empty())) {
            live.push_back(cuda_alloc(rng() % (size_t(1) << 21)));
          } else {
            size_t j = rng() % live.size();
            cuda_free(live[j]);
            live.erase(live.begin() + j);
          }
        }
        for (void* p : live) cuda_free(p);
      } catch (...) {
        ++errors;
      }
    });
  for (auto& th : threads) th.join();
  REQUIRE(errors == 0);
  const CudaMemoryStats after = cuda_memory_stats();
  REQUIRE(after.allocated == before);  // every block came back exactly once
  REQUIRE(after.reserved >= after.allocated);
}

// ---------------------------------------------------------------- GEMM

namespace {

struct GemmSetup {
  bool ta = false, tb = false;
  int64_t m = 1, n = 1, k = 1;
  int64_t pad = 0;      // extra elements per row of A, B, C (leading dimensions > width)
  int64_t batch = 1;
  bool batched = false;  // through cuda_gemm_strided_batched
  bool broadcast_b = false;  // stride_b = 0: one B for every batch
  double alpha = 1, beta = 0;
};

std::string describe(const GemmSetup& s) {
  return fmt::format("ta {} tb {} m {} n {} k {} pad {} batch {} batched {} broadcast_b {} alpha {} beta {}",
                     s.ta, s.tb, s.m, s.n, s.k, s.pad, s.batch, s.batched, s.broadcast_b, s.alpha,
                     s.beta);
}

// Runs one GEMM on the device and compares it with a naive loop in double:
//   C[i,j] = alpha * sum_p op(A)[i,p] op(B)[p,j] + beta * C0[i,j]
// per element within tol * (|alpha| sum_p |op(A)[i,p] op(B)[p,j]| + |beta C0[i,j]|), the size
// of the rounding error of a sum of k products. Elements outside the matrices (row padding,
// gaps between batches) must be untouched, bit for bit.
template <typename T>
void check_gemm(const GemmSetup& s, double tol, uint32_t seed) {
  INFO(describe(s) << (sizeof(T) == 4 ? " float32" : " float64"));
  const int64_t a_rows = s.ta ? s.k : s.m, a_cols = s.ta ? s.m : s.k;
  const int64_t b_rows = s.tb ? s.n : s.k, b_cols = s.tb ? s.k : s.n;
  const int64_t lda = std::max<int64_t>(a_cols, 1) + s.pad;
  const int64_t ldb = std::max<int64_t>(b_cols, 1) + s.pad;
  const int64_t ldc = std::max<int64_t>(s.n, 1) + s.pad;
  const int64_t batch = s.batched ? s.batch : 1;
  // Gaps between the matrices of a batch, so that batch strides are not just the matrix sizes.
  const int64_t stride_a = s.batched ? a_rows * lda + 3 : 0;
  const int64_t stride_b = s.batched && !s.broadcast_b ? b_rows * ldb + 5 : 0;
  const int64_t stride_c = s.batched ? s.m * ldc + 2 : 0;
  const size_t na = (size_t)std::max<int64_t>((batch - 1) * stride_a + a_rows * lda, 1);
  const size_t nb = (size_t)std::max<int64_t>((batch - 1) * stride_b + b_rows * ldb, 1);
  const size_t nc = (size_t)std::max<int64_t>((batch - 1) * stride_c + s.m * ldc, 1);

  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> A(na), B(nb), C0(nc);
  for (T& v : A) v = (T)u(rng);
  for (T& v : B) v = (T)u(rng);
  // beta == 0: C is write-only, so NaN there must not reach the result.
  for (T& v : C0) v = s.beta == 0 ? std::numeric_limits<T>::quiet_NaN() : (T)u(rng);

  DeviceBlock da(na * sizeof(T)), db(nb * sizeof(T)), dc(nc * sizeof(T));
  cuda_memcpy_h2d(da.p, A.data(), na * sizeof(T));
  cuda_memcpy_h2d(db.p, B.data(), nb * sizeof(T));
  cuda_memcpy_h2d(dc.p, C0.data(), nc * sizeof(T));
  const T alpha = (T)s.alpha, beta = (T)s.beta;
  if (s.batched)
    cuda_gemm_strided_batched(s.ta, s.tb, s.m, s.n, s.k, alpha, da.as<T>(), lda, stride_a,
                              db.as<T>(), ldb, stride_b, beta, dc.as<T>(), ldc, stride_c, batch);
  else
    cuda_gemm(s.ta, s.tb, s.m, s.n, s.k, alpha, da.as<T>(), lda, db.as<T>(), ldb, beta,
              dc.as<T>(), ldc);
  std::vector<T> C(nc);
  cuda_memcpy_d2h(C.data(), dc.p, nc * sizeof(T));

  std::vector<char> inside(nc, 0);
  int64_t bad = 0;
  double worst = 0;  // largest err / scale
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        double acc = 0, mag = 0;
        for (int64_t p = 0; p < s.k; ++p) {
          double av = s.ta ? A[bi * stride_a + p * lda + i] : A[bi * stride_a + i * lda + p];
          double bv = s.tb ? B[bi * stride_b + j * ldb + p] : B[bi * stride_b + p * ldb + j];
          acc += av * bv;
          mag += std::fabs(av * bv);
        }
        const size_t idx = (size_t)(bi * stride_c + i * ldc + j);
        inside[idx] = 1;
        const double c0 = s.beta == 0 ? 0.0 : (double)C0[idx];
        const double ref = (double)alpha * acc + (double)beta * c0;
        const double scale = std::fabs((double)alpha) * mag + std::fabs((double)beta * c0);
        const double err = std::fabs((double)C[idx] - ref);
        if (!(err <= tol * scale)) ++bad;  // NaN counts as bad
        if (scale > 0) worst = std::max(worst, err / scale);
      }
  int64_t touched = 0;
  for (size_t idx = 0; idx < nc; ++idx)
    if (!inside[idx] && std::memcmp(&C[idx], &C0[idx], sizeof(T)) != 0) ++touched;
  INFO("worst error / scale " << worst << " (tolerance " << tol << ")");
  REQUIRE(bad == 0);
  REQUIRE(touched == 0);
}

// float32 accumulates k products with relative rounding 6e-8 each: for k <= 100 the error is
// below 100 * 6e-8 = 6e-6 of the scale even in the worst case. float64: 100 * 1.1e-16.
constexpr double kTolF32 = 1e-5;
constexpr double kTolF64 = 1e-13;

std::vector<GemmSetup> plain_setups() {
  std::vector<GemmSetup> out;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      GemmSetup s;
      s.ta = ta;
      s.tb = tb;
      s.m = 5, s.n = 7, s.k = 3, s.pad = 2;  // tiny, non-square, padded rows
      out.push_back(s);
      s.m = 67, s.n = 45, s.k = 71, s.pad = 3, s.alpha = 0.5, s.beta = -1.5;  // odd sizes, beta
      out.push_back(s);
      s.m = 1, s.n = 33, s.k = 17, s.pad = 1, s.alpha = 1, s.beta = 0;  // a row vector times B
      out.push_back(s);
      s.m = 33, s.n = 1, s.k = 17, s.pad = 0, s.alpha = -2, s.beta = 1;  // A times a column
      out.push_back(s);
    }
  return out;
}

std::vector<GemmSetup> batched_setups() {
  std::vector<GemmSetup> out;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      GemmSetup s;
      s.ta = ta;
      s.tb = tb;
      s.batched = true;
      s.batch = 3, s.m = 9, s.n = 6, s.k = 13, s.pad = 2, s.alpha = 1.25, s.beta = 0.5;
      out.push_back(s);
      s.broadcast_b = true, s.beta = 0;  // one B for all (stride 0), as matmul broadcasting needs
      out.push_back(s);
      s.broadcast_b = false, s.batch = 1, s.m = 20, s.n = 31, s.k = 8;  // a batch of one
      out.push_back(s);
    }
  return out;
}

}  // namespace

TEST_CASE("cuda gemm: all transposes, odd sizes and padded rows match a naive loop", "[cuda]") {
  if (test::skip_without_cuda()) return;
  uint32_t seed = 1;
  for (const GemmSetup& s : plain_setups()) {
    check_gemm<float>(s, kTolF32, seed++);
    check_gemm<double>(s, kTolF64, seed++);
  }
}

TEST_CASE("cuda gemm: strided batches (and a broadcast B) match a naive loop", "[cuda]") {
  if (test::skip_without_cuda()) return;
  uint32_t seed = 100;
  for (const GemmSetup& s : batched_setups()) {
    check_gemm<float>(s, kTolF32, seed++);
    check_gemm<double>(s, kTolF64, seed++);
  }
}

TEST_CASE("cuda gemm: k == 0 gives beta * C, and an empty C is left alone", "[cuda]") {
  if (test::skip_without_cuda()) return;
  uint32_t seed = 200;
  for (bool batched : {false, true})
    for (double beta : {0.5, 0.0}) {  // 0: C held NaN, the result must be exact zeros
      GemmSetup s;
      s.m = 4, s.n = 5, s.k = 0, s.pad = 1, s.beta = beta, s.batched = batched, s.batch = 2;
      check_gemm<float>(s, 0.0, seed++);  // beta * c rounds the same way on both sides: exact
      check_gemm<double>(s, 0.0, seed++);
    }
  GemmSetup s;
  s.m = 0, s.n = 5, s.k = 3;
  check_gemm<float>(s, 0.0, seed++);
}

TEST_CASE("cuda gemm: TF32 only when allowed, and then within its precision", "[cuda]") {
  if (test::skip_without_cuda()) return;
  REQUIRE_FALSE(cuda_allow_tf32());
  struct Reset {
    ~Reset() { cuda_set_allow_tf32(false); }
  } reset;
  cuda_set_allow_tf32(true);
  REQUIRE(cuda_allow_tf32());
  // TF32 rounds each input to 10 mantissa bits (relative 2^-11 = 4.9e-4), so a product is off by
  // about 1e-3 of its size; 4e-3 of the scale leaves room for the fp32 sum on top.
  GemmSetup s;
  s.m = 64, s.n = 96, s.k = 128, s.pad = 0;
  check_gemm<float>(s, 4e-3, 300);
  s.batched = true, s.batch = 2, s.tb = true;
  check_gemm<float>(s, 4e-3, 301);
  check_gemm<double>(s, kTolF64, 302);  // float64 ignores the switch
}
