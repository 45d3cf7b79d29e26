// The one stream per device that every megagrad kernel, copy and cuBLAS call is queued on.
// Include only from .cu files (or files compiled when MEGAGRAD_HAS_CUDA): it needs cudaStream_t.
//
// Why one stream: work on one stream runs in the order it was queued, so the caching allocator
// may hand a freed block to the next allocation at once, without events: a kernel that reads the
// old contents was queued earlier and finishes before any later kernel writes the new ones.
//
// Why a created stream rather than the legacy default stream (0): CUDA graph capture, which a
// training step will want later, does not work on the legacy stream. The stream is created
// *blocking* (cudaStreamDefault, not cudaStreamNonBlocking), so it still waits for, and is
// waited on by, anything queued on the legacy stream (plain cudaMemcpy, third-party code): mixing
// the two stays correct, only less concurrent.
#pragma once
#include <cuda_runtime.h>
#include <string_view>

namespace megagrad {

// The stream of `device`, created on first use (thread-safe). Errors as cuda_set_device.
cudaStream_t cuda_stream(int device = 0);

// Makes `device` the calling thread's current device after checking that it exists. Errors
// name the operation and the device: "[cuda_alloc] cuda:0 is not available: no device: CUDA
// driver version is insufficient for CUDA runtime version", "[cuda_gemm] cuda:3 is not
// available: this machine has 1 CUDA device (cuda:0)".
void cuda_set_device(int device, std::string_view op);

}  // namespace megagrad
