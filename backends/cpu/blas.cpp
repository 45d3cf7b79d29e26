#include "backends/cpu/blas.h"
#include <cblas.h>
#include "core/parallel.h"
#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
// OpenBLAS's thread count follows megagrad's (core/parallel.h). Core cannot call up into this
// backend, so every BLAS entry point applies the count in force when it has changed since: one
// atomic load per GEMM, and a lock only on a change.
void follow_megagrad_threads() {
  static std::atomic<int> applied{0};
  static std::mutex mu;
  const int n = get_num_threads();
  if (applied.load(std::memory_order_acquire) == n) return;
  std::lock_guard g(mu);
  if (applied.load(std::memory_order_relaxed) != n) {
    openblas_set_num_threads(n);
    applied.store(n, std::memory_order_release);
  }
}
}  // namespace

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  follow_megagrad_threads();
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  follow_megagrad_threads();
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

int blas_get_num_threads() {
  follow_megagrad_threads();
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
