// OpenBLAS: GEMM for matmul/linear, its thread setting, and the fix for Debian's OpenBLAS
// falling back to a slow generic kernel on CPUs it does not know.
//
// We link Debian's libopenblas (the pthread variant, libopenblas0-pthread) and run it on one
// thread: gemm() cuts C into blocks of rows or columns over megagrad's own pool (set_num_threads,
// core/parallel.h), so one set of threads runs the GEMMs and every other loop, and a gemm may be
// called from inside a parallel_for (it then runs inline).
#pragma once
#include <cstdint>
#include <string>

namespace megagrad {

// C[m,n] = alpha * op(A)[m,k] @ op(B)[k,n] + beta * C, row-major, with leading dimensions.
// trans_a / trans_b select op(X) = X^T, which BLAS reads without a copy. The blocks depend on the
// shape only, so the result does not depend on the thread count.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

// OpenBLAS's own thread count: 1 (megagrad's pool runs the GEMMs' blocks).
int blas_get_num_threads();

// Multiply-adds (m n k) that gemm() has computed since the program started, all threads together
// (a relaxed atomic count per call): what bench-layer --floor divides by the sgemm rate.
int64_t gemm_mac_count();
// The OpenBLAS kernel in use, e.g. "SkylakeX", "Haswell", or the slow generic "Prescott".
std::string blas_core_name();
std::string blas_config();

// True when OpenBLAS runs a generic kernel although the CPU has AVX2 or AVX-512.
bool blas_core_is_slow_fallback();
// The OPENBLAS_CORETYPE that fits this CPU ("SkylakeX" with AVX-512, "Haswell" with AVX2), or "".
std::string blas_best_core_type();

// For the megagrad programs: call first thing in main(). When OpenBLAS chose a generic kernel on
// a CPU that has a fast one, re-executes this program with OPENBLAS_CORETYPE set (the variable
// is read only when libopenblas loads, so setting it later is too late). Does nothing when
// MEGAGRAD_NO_REEXEC is set or when already re-executed once.
void fix_openblas_core_or_reexec(int argc, char** argv);

// For library users: warns once on stderr when the kernel is a slow fallback, saying how to fix it.
void warn_if_slow_openblas_core();

}  // namespace megagrad
