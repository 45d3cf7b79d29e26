// The smoke kernel: axpy on device buffers.
//
// Legend: N number of elements.
//   x (N) read, y (N) read and written.
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernels_smoke.h"

namespace megagrad {

namespace {

// Grid-stride loop: any N runs with a bounded grid.
__global__ void axpy_kernel(float alpha, const float* __restrict__ x, float* __restrict__ y,
                            int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = alpha * x[i] + y[i];
}

// A device buffer freed on every path, exceptions included.
struct DeviceBuffer {
  float* p = nullptr;
  explicit DeviceBuffer(int64_t n) { MG_CUDA_CHECK(cudaMalloc(&p, (size_t)n * sizeof(float))); }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

}  // namespace

void cuda_axpy(float alpha, const float* x, float* y, int64_t n) {
  MG_CHECK(n >= 0, "cuda_axpy", "negative length {}", n);
  if (n == 0) return;
  MG_CUDA_CHECK(cudaSetDevice(0));
  DeviceBuffer dx(n), dy(n);
  size_t bytes = (size_t)n * sizeof(float);
  MG_CUDA_CHECK(cudaMemcpy(dx.p, x, bytes, cudaMemcpyHostToDevice));
  MG_CUDA_CHECK(cudaMemcpy(dy.p, y, bytes, cudaMemcpyHostToDevice));
  const int threads = 256;
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 65535) blocks = 65535;
  axpy_kernel<<<(unsigned)blocks, threads>>>(alpha, dx.p, dy.p, n);
  MG_CUDA_CHECK(cudaGetLastError());  // launch errors (bad config, no kernel image for this sm)
  MG_CUDA_CHECK(cudaDeviceSynchronize());  // errors while the kernel ran
  MG_CUDA_CHECK(cudaMemcpy(y, dy.p, bytes, cudaMemcpyDeviceToHost));
}

}  // namespace megagrad
