// backends/cuda/blas.h: row-major GEMM on cuBLAS.
//
// Legend: M rows of C, N columns of C, K the summed dimension, B batch.
//   A (B, M, K) or (B, K, M) with trans_a, row stride lda, batch stride stride_a
//   B (B, K, N) or (B, N, K) with trans_b, row stride ldb, batch stride stride_b
//   C (B, M, N), row stride ldc, batch stride stride_c
//
// cuBLAS is column-major. A row-major matrix with leading dimension ld is, read column-major,
// its transpose with the same ld. So row-major C = op(A) op(B) is column-major
// C^T = op(B)^T op(A)^T: cuBLAS gets B first and A second, with n and m swapped, and the same
// transpose flags (op(B)^T of the column-major view B^T is B^T when B is not transposed, etc.).
#include <algorithm>
#include <atomic>
#include <climits>
#include <mutex>
#include <type_traits>
#include <cublas_v2.h>
#include "backends/cuda/blas.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/stream.h"

namespace megagrad {

std::string cublas_status_name(int status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return fmt::format("CUBLAS_STATUS_{}", status);
}

namespace {

std::atomic<bool> g_allow_tf32{false};

void cublas_check(cublasStatus_t st, const char* call) {
  if (st != CUBLAS_STATUS_SUCCESS) fail("cublas", "{}: {}", call, cublas_status_name((int)st));
}

constexpr int kMaxDevices = 64;  // as stream.cu

// One handle per device. A handle must not be used by two threads at once, hence the mutex
// around each call (the calls only queue work, so it is held briefly).
struct Handles {
  std::once_flag once[kMaxDevices];
  cublasHandle_t handle[kMaxDevices] = {};
  std::mutex mu[kMaxDevices];
};

// Never destroyed, like the streams they are bound to.
Handles& handles() {
  static Handles* h = new Handles();
  return *h;
}

// The handle of `device` (already the current device), created and bound on first use.
cublasHandle_t handle_for(int device) {
  Handles& h = handles();
  std::call_once(h.once[device], [&] {
    cublasHandle_t hd = nullptr;
    cublas_check(cublasCreate(&hd), "cublasCreate");
    cublasStatus_t st = cublasSetStream(hd, cuda_stream(device));
    if (st != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(hd);
      cublas_check(st, "cublasSetStream");
    }
    h.handle[device] = hd;
  });
  return h.handle[device];
}

// C = beta * C for the k == 0 case (an empty sum), without relying on how cuBLAS treats it.
// beta == 0 writes zeros, so NaN in C does not survive (BLAS semantics).
// One thread per element of C, grid-stride; i runs over (B, M, N) row-major.
template <typename T>
__global__ void scale_c_kernel(T* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c,
                               int64_t batch, T beta) {
  const int64_t total = batch * m * n;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t col = i % n, row = (i / n) % m, bi = i / (m * n);
    T* p = c + bi * stride_c + row * ldc + col;
    *p = beta == T(0) ? T(0) : beta * *p;
  }
}

template <typename T>
void scale_c(T* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c, int64_t batch, T beta,
             int device) {
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((batch * m * n + threads - 1) / threads, 65535);
  scale_c_kernel<T><<<(unsigned)blocks, threads, 0, cuda_stream(device)>>>(c, m, n, ldc, stride_c,
                                                                           batch, beta);
  MG_CUDA_CHECK(cudaGetLastError());
}

// Checks sizes and pointers; throws "[op] ..." naming the offending argument.
void validate(const char* op, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void* a,
              int64_t lda, int64_t stride_a, const void* b, int64_t ldb, int64_t stride_b,
              const void* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  MG_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0, op,
           "negative size: m {}, n {}, k {}, batch {}", m, n, k, batch);
  // cuBLAS takes int sizes.
  MG_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && batch <= INT_MAX && lda <= INT_MAX &&
               ldb <= INT_MAX && ldc <= INT_MAX,
           op, "sizes beyond 2^31-1 are not supported: m {}, n {}, k {}, lda {}, ldb {}, ldc {}, batch {}",
           m, n, k, lda, ldb, ldc, batch);
  const int64_t a_width = ta ? m : k, b_width = tb ? k : n;
  MG_CHECK(lda >= std::max<int64_t>(1, a_width), op,
           "lda {} is smaller than the row length {} of A ({} x {}{})", lda, a_width,
           ta ? k : m, a_width, ta ? ", transposed" : "");
  MG_CHECK(ldb >= std::max<int64_t>(1, b_width), op,
           "ldb {} is smaller than the row length {} of B ({} x {}{})", ldb, b_width,
           tb ? n : k, b_width, tb ? ", transposed" : "");
  MG_CHECK(ldc >= std::max<int64_t>(1, n), op, "ldc {} is smaller than the row length {} of C ({} x {})",
           ldc, n, m, n);
  MG_CHECK(stride_a >= 0 && stride_b >= 0, op, "negative batch stride: stride_a {}, stride_b {}",
           stride_a, stride_b);
  if (batch > 1 && m > 0 && n > 0)
    MG_CHECK(stride_c >= (m - 1) * ldc + n, op,
             "stride_c {} makes the {} x {} matrices of C (ldc {}) overlap", stride_c, m, n, ldc);
  if (m > 0 && n > 0 && batch > 0) {
    MG_CHECK(c, op, "C is a null pointer");
    if (k > 0) MG_CHECK(a && b, op, "null pointer: A {}, B {}", a, b);
  }
}

constexpr cublasOperation_t op_of(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

template <typename T>
void gemm_impl(const char* op, bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha,
               const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
               int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch,
               bool batched, int device) {
  validate(op, ta, tb, m, n, k, a, lda, stride_a, b, ldb, stride_b, c, ldc, stride_c, batch);
  cuda_set_device(device, op);
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) {
    if (beta == T(1)) return;
    scale_c<T>(c, m, n, ldc, stride_c, batch, beta, device);
    return;
  }
  cublasHandle_t h = handle_for(device);
  std::lock_guard g(handles().mu[device]);
  // Swapped operands: see the top of the file.
  const cublasOperation_t opa = op_of(ta), opb = op_of(tb);
  const int im = (int)m, in = (int)n, ik = (int)k, ila = (int)lda, ilb = (int)ldb, ilc = (int)ldc;
  const char* call = nullptr;
  cublasStatus_t st;
  if constexpr (std::is_same_v<T, float>) {
    const cublasComputeType_t compute =
        g_allow_tf32.load() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    if (!batched) {
      call = "cublasGemmEx";
      st = cublasGemmEx(h, opb, opa, in, im, ik, &alpha, b, CUDA_R_32F, ilb, a, CUDA_R_32F, ila,
                        &beta, c, CUDA_R_32F, ilc, compute, CUBLAS_GEMM_DEFAULT);
    } else {
      call = "cublasGemmStridedBatchedEx";
      st = cublasGemmStridedBatchedEx(h, opb, opa, in, im, ik, &alpha, b, CUDA_R_32F, ilb,
                                      stride_b, a, CUDA_R_32F, ila, stride_a, &beta, c,
                                      CUDA_R_32F, ilc, stride_c, (int)batch, compute,
                                      CUBLAS_GEMM_DEFAULT);
    }
  } else {
    static_assert(std::is_same_v<T, double>);
    if (!batched) {
      call = "cublasDgemm";
      st = cublasDgemm(h, opb, opa, in, im, ik, &alpha, b, ilb, a, ila, &beta, c, ilc);
    } else {
      call = "cublasDgemmStridedBatched";
      st = cublasDgemmStridedBatched(h, opb, opa, in, im, ik, &alpha, b, ilb, stride_b, a, ila,
                                     stride_a, &beta, c, ilc, stride_c, (int)batch);
    }
  }
  if (st != CUBLAS_STATUS_SUCCESS)
    fail("cublas", "{}: {} ({}: row-major m {}, n {}, k {}, trans_a {}, trans_b {}, lda {}, ldb {}, ldc {}, batch {}, cuda:{})",
         call, cublas_status_name((int)st), op, m, n, k, ta, tb, lda, ldb, ldc, batch, device);
}

}  // namespace

void cuda_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
               int device) {
  gemm_impl<float>("cuda_gemm", ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1,
                   false, device);
}

void cuda_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
               int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc,
               int device) {
  gemm_impl<double>("cuda_gemm", ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1,
                    false, device);
}

void cuda_gemm_strided_batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                               const float* a, int64_t lda, int64_t stride_a, const float* b,
                               int64_t ldb, int64_t stride_b, float beta, float* c, int64_t ldc,
                               int64_t stride_c, int64_t batch, int device) {
  gemm_impl<float>("cuda_gemm_strided_batched", ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb,
                   stride_b, beta, c, ldc, stride_c, batch, true, device);
}

void cuda_gemm_strided_batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                               const double* a, int64_t lda, int64_t stride_a, const double* b,
                               int64_t ldb, int64_t stride_b, double beta, double* c,
                               int64_t ldc, int64_t stride_c, int64_t batch, int device) {
  gemm_impl<double>("cuda_gemm_strided_batched", ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb,
                    stride_b, beta, c, ldc, stride_c, batch, true, device);
}

void cuda_set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool cuda_allow_tf32() { return g_allow_tf32.load(); }

}  // namespace megagrad
