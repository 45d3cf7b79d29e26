// The rotary bias's table and its backward on the device (rotary_bias.h has the host versions):
// the attention op builds them here for GPU tensors, so no parameter goes to the host. The
// formulas are rotary_coeffs.h's. Defined only in CUDA builds; asynchronous on `stream`.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>

namespace megagrad::rotary_cuda {

// rel (2C-1) of T, rel[C-1 + e] for e = j - i, from alpha and beta (Z contiguous values of T each,
// Z even), as rotary_bias_table.
template <typename T>
void bias_table(const T* alpha, const T* beta, int64_t Z, int64_t C, T* rel, cudaStream_t stream);

// dalpha, dbeta (Z of T each, written) from drel (2C-1 doubles), as rotary_bias_table_backward.
template <typename T>
void bias_table_backward(const T* alpha, const T* beta, const double* drel, int64_t Z, int64_t C, T* dalpha,
                         T* dbeta, cudaStream_t stream);

}  // namespace megagrad::rotary_cuda
