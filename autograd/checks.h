// Input checks shared by the ops. Each throws "[op] ..." naming the shapes, dtypes and devices.
#pragma once
#include "core/tensor.h"

namespace megagrad {

inline void check_defined(std::string_view op, const Tensor& t, std::string_view what = "input") {
  if (!t.defined()) fail(op, "{} is an undefined tensor", what);
}

// A float32/float64 tensor on the CPU (the only backend these kernels run on so far).
inline void check_float(std::string_view op, const Tensor& t) {
  check_defined(op, t);
  MG_CHECK(is_floating(t.dtype()), op, "expected a float tensor, got {}", t.desc());
  MG_CHECK(t.device().is_cpu(), op, "tensor {} is not on the cpu; this op has no {} kernel yet",
           t.desc(), t.device());
}

// Two operands of one op: both float, same dtype, same device.
inline void check_same_float(std::string_view op, const Tensor& a, const Tensor& b) {
  check_float(op, a);
  check_float(op, b);
  MG_CHECK(a.dtype() == b.dtype(), op, "dtypes differ: {} and {}", a.desc(), b.desc());
  MG_CHECK(a.device() == b.device(), op, "devices differ: {} and {}", a.desc(), b.desc());
}

}  // namespace megagrad
