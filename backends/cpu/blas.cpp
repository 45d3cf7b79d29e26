#include "backends/cpu/blas.h"
#include <cblas.h>
#include "core/error.h"
#include "core/parallel.h"
#include <unistd.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
}

namespace megagrad {

namespace {
// OpenBLAS runs single-threaded: gemm() cuts C into blocks over megagrad's pool (core/parallel.h),
// so one set of threads does all the work. With OpenBLAS's own threads beside the pool's, the two
// fought for the cores: OpenBLAS's threads spin after each call, on the core the pool's worker
// needs for the next elementwise loop (the pool's workers now spin too), and a gemm called from a
// pool job (the attention's) would start threads of its own.
void single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

// A block of C is at least this many multiply-adds (~20 us on one AVX-512 core), and kMinBlock rows
// (or columns). The size is also above OpenBLAS's small-matrix bound (its "small kernel", taken for
// m n k <= 100^3 on AVX-512 cores, sums in another order): every block runs OpenBLAS's blocked path,
// as the whole product would, and that path computes each element with the same k blocking
// whatever the split of m or n. So results do not depend on the thread count; the tests check it
// on shapes around these bounds (tests/test_ops_linalg.cpp).
constexpr double kGemmBlockMacs = double(1 << 20);
constexpr int64_t kMinBlock = 64, kAlign = 16;

// C = alpha op(A) op(B) + beta C over the pool: at most one block of C's rows (or, when C is wide
// and short, of its columns) per thread, each one single-threaded BLAS call. Few blocks, because
// each call packs the other operand again (64 blocks made config C's forward+backward 7% slower
// on one thread than one call).
template <typename T, typename Blas>
void gemm_blocks(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
                 int64_t ldb, T beta, T* c, int64_t ldc, Blas blas) {
  auto call = [&](int64_t mm, int64_t nn, const T* aa, const T* bb, T* cc) {
    blas(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)mm, (int)nn, (int)k,
         alpha, aa, (int)lda, bb, (int)ldb, beta, cc, (int)ldc);
  };
  const bool by_rows = m >= n;  // the operand packed again by every block is then B (k x n), the smaller
  const int64_t extent = by_rows ? m : n;
  const double macs = (double)m * (double)n * (double)std::max<int64_t>(k, 1);
  // Inside a pool job (the attention's pairs) the blocks would run one after another: one call.
  const int64_t threads = in_parallel_region() ? 1 : get_num_threads();
  const int64_t pieces = std::min({threads, (int64_t)std::min(macs / kGemmBlockMacs, 1e9),
                                   extent / kMinBlock});
  if (pieces < 2) return call(m, n, a, b, c);
  const int64_t step = ((extent + pieces - 1) / pieces + kAlign - 1) / kAlign * kAlign;
  parallel_for(pieces, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t i0 = p * step, i1 = std::min(extent, i0 + step);
      if (i0 >= i1) continue;
      if (by_rows)  // rows i0..i1 of op(A): A's rows, or its columns when transposed
        call(i1 - i0, n, ta ? a + i0 : a + i0 * lda, b, c + i0 * ldc);
      else          // columns i0..i1 of op(B)
        call(m, i1 - i0, a, tb ? b + i0 * ldb : b + i0, c + i0);
    }
  });
}

std::atomic<int64_t> g_gemm_macs{0};
}  // namespace

int64_t gemm_mac_count() { return g_gemm_macs.load(std::memory_order_relaxed); }

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  single_threaded_blas();
  g_gemm_macs.fetch_add(m * n * k, std::memory_order_relaxed);
  gemm_blocks<float>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, cblas_sgemm);
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  single_threaded_blas();
  g_gemm_macs.fetch_add(m * n * k, std::memory_order_relaxed);
  gemm_blocks<double>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, cblas_dgemm);
}

int blas_get_num_threads() {
  single_threaded_blas();
  return openblas_get_num_threads();
}
std::string blas_core_name() { return openblas_get_corename(); }
std::string blas_config() { return openblas_get_config(); }

bool blas_core_is_slow_fallback() {
  static const char* generic[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                  "Atom", "Katmai", "Coppermine", "Northwood", "Banias",
                                  "Generic", "unknown"};
  std::string core = blas_core_name();
  bool is_generic = false;
  for (const char* g : generic)
    if (strcasecmp(core.c_str(), g) == 0) is_generic = true;
  return is_generic && !blas_best_core_type().empty();
}

std::string blas_best_core_type() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

void fix_openblas_core_or_reexec(int argc, char** argv) {
  (void)argc;
  if (!blas_core_is_slow_fallback()) return;
  if (std::getenv("MEGAGRAD_NO_REEXEC") || std::getenv("MEGAGRAD_REEXECUTED")) {
    warn_if_slow_openblas_core();
    return;
  }
  std::string core = blas_best_core_type();
  setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  setenv("MEGAGRAD_REEXECUTED", blas_core_name().c_str(), 1);  // remembers what we replaced
  std::vector<char> self(4096);
  ssize_t len = readlink("/proc/self/exe", self.data(), self.size() - 1);
  if (len > 0) {
    self[len] = 0;
    execv(self.data(), argv);
  }
  // exec failed: carry on, slowly, and say so.
  warn_if_slow_openblas_core();
}

void warn_if_slow_openblas_core() {
  static std::once_flag once;
  if (!blas_core_is_slow_fallback()) return;
  std::call_once(once, [] {
    std::fprintf(stderr,
                 "megagrad: warning: OpenBLAS uses its generic '%s' kernel on a CPU that supports "
                 "'%s'; matrix products run several times slower. Fix: export "
                 "OPENBLAS_CORETYPE=%s before starting the program.\n",
                 blas_core_name().c_str(), blas_best_core_type().c_str(),
                 blas_best_core_type().c_str());
  });
}

}  // namespace megagrad
