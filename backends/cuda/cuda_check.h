// MG_CUDA_CHECK(call): every CUDA runtime call goes through it. A failure becomes a
// megagrad::Error "[cuda] <call>: <cudaGetErrorString>", never an abort.
// Include only from .cu files (or files compiled when MEGAGRAD_HAS_CUDA).
#pragma once
#include <cuda_runtime.h>
#include "core/error.h"

namespace megagrad {

inline void cuda_check(cudaError_t err, const char* call) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  fail("cuda", "{}: {}", call, cudaGetErrorString(err));
}

}  // namespace megagrad

#define MG_CUDA_CHECK(call) ::megagrad::cuda_check((call), #call)
