// cuBLAS GEMM for matmul/linear on CUDA: the same row-major interface as backends/cpu/blas.h.
// A plain C++ header (both builds; a CPU-only build links stubs that throw "built without CUDA").
//
// Pointers are device pointers on cuda:`device`; the work is queued on cuda_stream(device) and
// the call returns without waiting for it. Each device has one cuBLAS handle, created on first
// use and bound to that stream. A failing cuBLAS call throws "[cublas] <call>: <status name>".
#pragma once
#include <cstdint>
#include <string>

namespace megagrad {

// C[m,n] = alpha * op(A)[m,k] @ op(B)[k,n] + beta * C, all row-major with leading dimensions
// (elements between rows). trans_a / trans_b select op(X) = X^T, read without a copy:
//   A is m x k (lda >= k), or k x m (lda >= m) with trans_a; likewise B; C is m x n (ldc >= n).
// beta == 0: C is only written, so it may hold garbage (NaN) beforehand, as with BLAS.
// k == 0: C = beta * C.
// Bad sizes throw "[cuda_gemm] ...".
void cuda_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc, int device = 0);
void cuda_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
               const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
               int64_t ldc, int device = 0);

// `batch` independent GEMMs as above; matrix i of X starts at x + i * stride_x (elements).
// stride_a or stride_b may be 0 (the same matrix for every batch: broadcasting); C's matrices
// must not overlap (stride_c >= (m - 1) * ldc + n when batch > 1).
void cuda_gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                               float alpha, const float* a, int64_t lda, int64_t stride_a,
                               const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
                               int64_t ldc, int64_t stride_c, int64_t batch, int device = 0);
void cuda_gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                               double alpha, const double* a, int64_t lda, int64_t stride_a,
                               const double* b, int64_t ldb, int64_t stride_b, double beta,
                               double* c, int64_t ldc, int64_t stride_c, int64_t batch,
                               int device = 0);

// float32 GEMMs may use TF32 tensor cores (inputs rounded to 10 mantissa bits: ~1e-3 relative
// error, several times faster) only after cuda_set_allow_tf32(true). Default: off, full fp32,
// so that results match the CPU closely. float64 is never affected.
void cuda_set_allow_tf32(bool allow);
bool cuda_allow_tf32();

// "CUBLAS_STATUS_NOT_INITIALIZED" for a cublasStatus_t value; unknown values give
// "CUBLAS_STATUS_<number>".
std::string cublas_status_name(int status);

}  // namespace megagrad
