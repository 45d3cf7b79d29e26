// Device memory: a caching allocator and the copies between host and device, all queued on the
// device's one stream (backends/cuda/stream.h). A plain C++ header: usable from .cpp files in
// both builds (a CPU-only build links the stubs in cuda_stub.cpp, which throw
// "[cuda_alloc] cuda:0 is not available: megagrad was built without CUDA").
//
// The cache: cudaMalloc and cudaFree are slow (cudaFree also waits for the whole device), and a
// training step allocates the same sizes every time. So a freed block is kept and handed out
// again for the next request of the same size class:
//   - small requests (under 1 MiB) round up to a multiple of 512 bytes;
//   - large ones round up to one of four classes per power of two (at most 25% waste), so that
//     sizes that vary a little between steps (padded batches) still reuse blocks.
// A block is reused only for its own size class (no splitting): simple and predictable. Blocks
// parked in other classes are given back when a cudaMalloc fails: the cache is emptied and the
// cudaMalloc tried once more before reporting "out of memory".
// Reuse without events is safe because all work runs on one stream per device, in queue order.
// MEGAGRAD_CUDA_CACHE=0 (read once, at the first allocation) turns the cache off: every
// cuda_free is a cudaFree, so that compute-sanitizer sees each use after free.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include "core/human_bytes.h"

namespace megagrad {

// A block of at least `bytes` bytes on cuda:`device` (256-byte aligned, as cudaMalloc; never
// null, also for 0 bytes), contents undefined. Errors: "[cuda_alloc] out of memory on cuda:0:
// tried to allocate 1.00 PiB (1125899906842624 bytes); ...", "[cuda_alloc] cuda:0 is not
// available: <why>".
void* cuda_alloc(size_t bytes, int device = 0);
// Returns a block from cuda_alloc to the cache (no-op for nullptr). Never throws for CUDA errors
// (it runs in destructors, also while an earlier CUDA error unwinds the stack): a failing
// cudaFree is reported on stderr and the block leaked. A pointer that cuda_alloc did not return
// (or one freed twice) throws "[cuda_free] ...".
void cuda_free(void* p);
// cudaFree of every cached (free) block, on all devices. Blocks in use stay.
void empty_cuda_cache();
// False when MEGAGRAD_CUDA_CACHE=0.
bool cuda_caching_enabled();

struct CudaMemoryStats {
  size_t allocated = 0;       // bytes in blocks handed out and not yet freed (rounded sizes)
  size_t reserved = 0;        // bytes held from cudaMalloc: allocated + cached
  size_t peak_allocated = 0;  // highest `allocated` since start or the last reset
  int64_t cuda_malloc_calls = 0;  // successful cudaMalloc calls
  int64_t cache_hits = 0;         // allocations served from the cache
};
// Counters of one device (zeros for a device never used; no CUDA call, works without a device).
CudaMemoryStats cuda_memory_stats(int device = 0);
void cuda_reset_peak_memory_stats(int device = 0);

// ---- copies, queued on cuda_stream(device) and checked ----
// `device` is the GPU the device pointers live on. Zero bytes: nothing happens.
// Host to device. src may be reused as soon as this returns when it is ordinary (pageable) host
// memory, as all megagrad CPU storage is: CUDA stages it before returning.
void cuda_memcpy_h2d(void* dst, const void* src, size_t bytes, int device = 0);
// Device to host; waits for the stream, so the host sees the data (and earlier kernel errors
// surface here, as do the inputs that device-side checks found bad: deferred_check.h).
void cuda_memcpy_d2h(void* dst, const void* src, size_t bytes, int device = 0);
// Device to device, same device.
void cuda_memcpy_d2d(void* dst, const void* src, size_t bytes, int device = 0);
void cuda_memset_zero(void* p, size_t bytes, int device = 0);
// Waits until all queued work on the device is done; reports errors from kernels that ran and
// bad inputs found by device-side checks (deferred_check.h).
// Without any device (or in a CPU-only build) there is no work: it does nothing.
void cuda_synchronize(int device = 0);

}  // namespace megagrad
