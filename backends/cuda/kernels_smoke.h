// A minimal device kernel with a host wrapper: proves that the toolchain, the driver and a
// device work together (tests/test_cuda.cpp compares it with the CPU).
// Defined only in CUDA builds (MEGAGRAD_HAS_CUDA); callers check cuda_available() first.
#pragma once
#include <cstdint>

namespace megagrad {

// y[i] = alpha * x[i] + y[i] for i in [0, n), x and y host arrays of n floats: copies them to
// device 0, runs the kernel, copies y back. Errors: "[cuda] <call>: <reason>".
void cuda_axpy(float alpha, const float* x, float* y, int64_t n);

}  // namespace megagrad
