// What core needs from a device, on raw pointers: memory, transfers, and the few loops that
// Storage, Tensor and the RNG run themselves (fill_, copy_, add_, mul_, uniform_, normal_).
// Core owns this interface and names no device's code; the backends fill it in
// (backends/cpu/backend_cpu.cpp, backends/cuda/backend_cuda.cpp), in the spirit of MLX's
// allocator.h and ggml's ggml_backend_buffer_type_i.
//
// The binding is made at link time: core calls cpu_backend() and cuda_backend(), and the
// library holds exactly one definition of each. A build without CUDA links
// backends/cuda/cuda_stub.cpp, whose cuda_backend() refuses every call ("megagrad was built
// without CUDA"). No static registrar: the library is a static archive, and the linker would
// drop an object file that nothing refers to.
//
// Dispatch stays once per op: core makes one call through this table, and the backend runs a
// templated loop (or launches a kernel) over the whole operand. Every function throws
// megagrad::Error "[op] ..." on failure; the caller has already validated shapes, dtypes and
// devices, so a backend checks only what is its own (memory, launch errors).
#pragma once
#include <cstddef>
#include <cstdint>
#include "core/device.h"
#include "core/dtype.h"
#include "core/strided.h"

namespace megagrad {

// The distribution of a Philox fill: element i is uniform_at(seed, first + i, a, b) or
// normal_at(seed, first + i, a, b) (core/rng.h).
enum class Dist { Uniform, Normal };

struct DeviceBackend {
  // `bytes` on device `index` (never null, also for 0 bytes), zero-filled when `zero`. Errors
  // name the allocation: "[alloc] out of memory: could not allocate ...".
  void* (*alloc)(size_t bytes, int index, bool zero);
  // Gives back a block from alloc, with the size it was asked for. Never throws for a device
  // error (it runs in destructors).
  void (*free)(void* p, size_t bytes, int index);
  // `bytes` from src on src_device to dst on dst_device; one of them is this backend's device,
  // the other this device or the cpu. Returns when dst may be read by the host (dst on the cpu)
  // or when src may be reused (src on the cpu).
  void (*copy)(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

  // ---- loops over views of one shape; every view lives on device `index` ----
  // out = (dtype) value, any dtype.
  void (*fill)(int index, DType dtype, StridedView out, double value);
  // dst = (dst_dtype) src, elementwise, any dtype to any (C++ conversions). src has dst's shape
  // (stride 0 along broadcast dims) and does not overlap dst.
  void (*convert)(int index, DType dst_dtype, StridedView dst, DType src_dtype, StridedView src);
  // dst += alpha * src (Tensor::add_), float32 or float64; src as in convert.
  void (*add_scaled)(int index, DType dtype, StridedView dst, StridedView src, double alpha);
  // dst *= s (Tensor::mul_), float32 or float64.
  void (*scale)(int index, DType dtype, StridedView dst, double s);
  // n contiguous elements at out from Philox4x32-10 (core/rng.h), float32 or float64: element i
  // from counter first + i, so that every device draws the same stream.
  void (*philox_fill)(int index, DType dtype, void* out, int64_t n, Dist dist, double a, double b,
                      uint64_t seed, uint64_t first);
};

// The table of a backend written as a struct of static functions with these names, e.g.
//     struct Cpu { static void* alloc(size_t, int, bool); ... };
//     constexpr DeviceBackend kCpu = backend_table<Cpu>();
// so that each backend names its functions once and the table is spelled out only here.
template <typename B>
constexpr DeviceBackend backend_table() {
  return {&B::alloc, &B::free, &B::copy, &B::fill, &B::convert, &B::add_scaled, &B::scale, &B::philox_fill};
}

// Defined by the backends (one definition each in the library; see above).
const DeviceBackend& cpu_backend();
const DeviceBackend& cuda_backend();

inline const DeviceBackend& backend(Device d) { return d.is_cpu() ? cpu_backend() : cuda_backend(); }

}  // namespace megagrad
