// rotary_bias_cuda.h: one thread per table entry pair (e, -e), or per frequency k for the
// backward; each sums in the host's order (rotary_bias.cpp) with the shared formulas.
#include "mega/attention/rotary_bias_cuda.h"
#include <algorithm>
#include "backends/cuda/cuda_check.h"
#include "core/error.h"
#include "mega/attention/rotary_coeffs.h"

namespace megagrad::rotary_cuda {

namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void __launch_bounds__(kThreads)
bias_table_kernel(const T* __restrict__ alpha, const T* __restrict__ beta, int64_t half, int64_t C,
                  T* __restrict__ rel) {
  const int64_t e = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  if (e >= C) return;
  double pc = 0, qs = 0;
  for (int64_t k = 0; k < half; ++k) {
    const RotaryPQ pq = rotary_pq((double)alpha[k], (double)alpha[k + half], (double)beta[k], (double)beta[k + half]);
    rotary_rel_term(pq, rotary_theta_at(k, half), e, pc, qs);
  }
  rel[C - 1 + e] = (T)(pc - qs);
  rel[C - 1 - e] = (T)(pc + qs);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
bias_table_backward_kernel(const T* __restrict__ alpha, const T* __restrict__ beta, const double* __restrict__ drel,
                           int64_t half, int64_t C, T* __restrict__ dalpha, T* __restrict__ dbeta) {
  const int64_t k = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  if (k >= half) return;
  const RotaryGrads g = rotary_grads(drel, C, rotary_theta_at(k, half), (double)alpha[k], (double)alpha[k + half],
                                     (double)beta[k], (double)beta[k + half]);
  dalpha[k] = (T)g.da1;
  dalpha[k + half] = (T)g.da2;
  dbeta[k] = (T)g.db1;
  dbeta[k + half] = (T)g.db2;
}

unsigned blocks(int64_t n) { return (unsigned)std::max<int64_t>((n + kThreads - 1) / kThreads, 1); }

}  // namespace

template <typename T>
void bias_table(const T* alpha, const T* beta, int64_t Z, int64_t C, T* rel, cudaStream_t stream) {
  MG_CHECK(alpha && beta && rel && Z % 2 == 0 && C >= 1, "rotary_cuda", "bias_table: Z = {}, C = {}", Z, C);
  bias_table_kernel<T><<<blocks(C), kThreads, 0, stream>>>(alpha, beta, Z / 2, C, rel);
  MG_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void bias_table_backward(const T* alpha, const T* beta, const double* drel, int64_t Z, int64_t C, T* dalpha,
                         T* dbeta, cudaStream_t stream) {
  MG_CHECK(alpha && beta && drel && dalpha && dbeta && Z % 2 == 0 && C >= 1, "rotary_cuda",
           "bias_table_backward: Z = {}, C = {}", Z, C);
  if (Z == 0) return;
  bias_table_backward_kernel<T><<<blocks(Z / 2), kThreads, 0, stream>>>(alpha, beta, drel, Z / 2, C, dalpha, dbeta);
  MG_CUDA_CHECK(cudaGetLastError());
}

template void bias_table<float>(const float*, const float*, int64_t, int64_t, float*, cudaStream_t);
template void bias_table<double>(const double*, const double*, int64_t, int64_t, double*, cudaStream_t);
template void bias_table_backward<float>(const float*, const float*, const double*, int64_t, int64_t, float*, float*,
                                         cudaStream_t);
template void bias_table_backward<double>(const double*, const double*, const double*, int64_t, int64_t, double*,
                                          double*, cudaStream_t);

}  // namespace megagrad::rotary_cuda
