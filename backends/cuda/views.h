// Tensor -> CUDA launcher arguments, for the ops (autograd/ops_*.cpp, through checks.h) and the
// CUDA DeviceBackend (backend_cuda.cpp) when a tensor lives on a GPU. Include only under
// `#if MEGAGRAD_HAS_CUDA` (it needs cuda_runtime.h).
//
//   cuda::cuda_unary(UnaryOp::Exp, x.dtype(), cuda::make_view(x), cuda::make_view(y), 0,
//                    cuda::stream_of(y));
#pragma once
#include <cuda_runtime.h>
#include "backends/cuda/deferred_check.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/stream.h"
#include "core/tensor.h"

namespace megagrad::cuda {

// The tensor's own sizes and strides (element [0,...,0], offset applied).
inline CudaView make_view(const Tensor& t) { return make_view(t.raw_device_data(), t.shape(), t.strides()); }

// The tensor broadcast (numpy rules) to `to`: stride 0 along the dims it is broadcast over.
inline CudaView make_view_broadcast(const Tensor& t, const Shape& to) {
  return make_view_broadcast(t.raw_device_data(), t.shape(), t.strides(), to);
}

// The stream every kernel on cuda:`dev` is queued on (the allocator's: see stream.h), with that
// device made current for this thread, since a launch goes to the current device.
inline cudaStream_t stream_on(int dev) {
  int cur = -1;
  if (cudaGetDevice(&cur) != cudaSuccess || cur != dev) cuda_set_device(dev, "cuda");
  return cuda_stream(dev);
}
inline cudaStream_t stream_of(const Tensor& t) { return stream_on(t.device().index); }

}  // namespace megagrad::cuda
