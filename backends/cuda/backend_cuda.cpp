// The CUDA DeviceBackend (core/backend.h): Storage's memory from the caching allocator
// (allocator.h), transfers on the device's stream, and the launchers (kernels.h) behind
// Tensor::fill_, copy_, add_, mul_ and the Philox fills. Compiled only with CUDA; a build without
// it links cuda_stub.cpp's cuda_backend() instead.
#include <vector>
#include "backends/cuda/allocator.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/views.h"
#include "core/backend.h"
#include "core/pointwise.h"

namespace megagrad {

namespace {
cuda::CudaView cuda_view(StridedView v) {
  return cuda::make_view(v.data, std::vector<int64_t>(v.shape.begin(), v.shape.end()),
                         std::vector<int64_t>(v.strides.begin(), v.strides.end()));
}

// The GPU's entries of the DeviceBackend table.
struct Cuda {
  static void* alloc(size_t bytes, int index, bool zero) {
    void* p = cuda_alloc(bytes, index);
    if (zero) {
      try {
        cuda_memset_zero(p, bytes, index);
      } catch (...) {
        cuda_free(p);  // the caller never saw the block
        throw;
      }
    }
    return p;
  }

  static void free(void* p, size_t, int) { cuda_free(p); }

  static void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
    if (src_device.is_cpu())
      cuda_memcpy_h2d(dst, src, bytes, dst_device.index);
    else if (dst_device.is_cpu())
      cuda_memcpy_d2h(dst, src, bytes, src_device.index);
    else
      cuda_memcpy_d2d(dst, src, bytes, dst_device.index);
  }

  static void fill(int index, DType dtype, StridedView out, double value) {
    cuda::cuda_fill(dtype, cuda_view(out), value, cuda::stream_on(index));
  }

  static void convert(int index, DType dst_dtype, StridedView dst, DType src_dtype, StridedView src) {
    cuda::cuda_copy(dst_dtype, cuda_view(dst), src_dtype, cuda_view(src), cuda::stream_on(index));
  }

  static void add_scaled(int index, DType dtype, StridedView dst, StridedView src, double alpha) {
    const cuda::CudaView self = cuda_view(dst);  // read and written in place, element by element
    cuda::cuda_map(pointwise::Axpy{alpha}, dtype, self, cuda_view(src), self, cuda::stream_on(index));
  }

  static void scale(int index, DType dtype, StridedView dst, double s) {
    const cuda::CudaView self = cuda_view(dst);
    cuda::cuda_map(pointwise::MulScalar{s}, dtype, self, self, cuda::stream_on(index));
  }

  static void philox_fill(int index, DType dtype, void* out, int64_t n, Dist dist, double a, double b,
                          uint64_t seed, uint64_t first) {
    if (dist == Dist::Uniform)
      cuda::cuda_uniform(dtype, out, n, a, b, seed, first, cuda::stream_on(index));
    else
      cuda::cuda_normal(dtype, out, n, a, b, seed, first, cuda::stream_on(index));
  }
};

constexpr DeviceBackend kCudaBackend = backend_table<Cuda>();
}  // namespace

const DeviceBackend& cuda_backend() { return kCudaBackend; }

}  // namespace megagrad
