// Input checks shared by the ops. Each throws "[op] ..." naming the shapes, dtypes and devices.
#pragma once
#include "core/tensor.h"

namespace megagrad {

inline void check_defined(std::string_view op, const Tensor& t, std::string_view what = "input") {
  if (!t.defined()) fail(op, "{} is an undefined tensor", what);
}

// A float32/float64 tensor on any device: the op runs its CPU kernel or its CUDA launcher.
inline void check_float(std::string_view op, const Tensor& t) {
  check_defined(op, t);
  MG_CHECK(is_floating(t.dtype()), op, "expected a float tensor, got {}", t.desc());
}

// For an op (or one input of it) that has only a CPU kernel so far: refuses a GPU tensor
// before any host code could touch its memory.
inline void check_cpu_kernel(std::string_view op, const Tensor& t, std::string_view what = "tensor") {
  check_defined(op, t, what);
  MG_CHECK(t.device().is_cpu(), op, "{} {} is not on the cpu: this op has no cuda kernel yet", what,
           t.desc());
}

// Two operands of one op: both float, same dtype, same device.
inline void check_same_float(std::string_view op, const Tensor& a, const Tensor& b) {
  check_float(op, a);
  check_float(op, b);
  MG_CHECK(a.dtype() == b.dtype(), op, "dtypes differ: {} and {}", a.desc(), b.desc());
  MG_CHECK(a.device() == b.device(), op, "devices differ: {} and {}", a.desc(), b.desc());
}

// Does the op take its CUDA path? (Tensors on a GPU exist only in a CUDA build: a CPU-only build
// fails at allocation.)
inline bool on_cuda(const Tensor& t) { return !t.device().is_cpu(); }

}  // namespace megagrad

// MG_CUDA(op, statements): the CUDA branch of an op. In a CUDA build the statements run (they
// may use the launchers of backends/cuda/kernels.h and the helpers of backends/cuda/views.h); in
// a CPU-only build they are not compiled and reaching the branch (impossible: no GPU tensor can
// be made) is an error rather than undefined behaviour.
#if MEGAGRAD_HAS_CUDA
#include "backends/cuda/views.h"
#define MG_CUDA(op, ...) \
  do {                   \
    __VA_ARGS__;         \
  } while (0)
#else
#define MG_CUDA(op, ...) ::megagrad::fail(op, "a cuda tensor in a build without CUDA")
#endif
