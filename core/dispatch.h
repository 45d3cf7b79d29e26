// Dispatch on dtype once per op, then run a templated loop: no per-element virtual calls.
//
//   dispatch_float("exp", x.dtype(), [&]<typename T>() { kernel<T>(...); });
#pragma once
#include "core/dtype.h"
#include "core/error.h"

namespace megagrad {

template <typename F>
decltype(auto) dispatch_float(std::string_view op, DType t, F&& f) {
  switch (t) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    default: fail(op, "expected a float32 or float64 tensor, got {}", dtype_name(t));
  }
}

template <typename F>
decltype(auto) dispatch_all(std::string_view op, DType t, F&& f) {
  switch (t) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    case DType::Int64: return f.template operator()<int64_t>();
    case DType::Bool: return f.template operator()<bool>();
  }
  fail(op, "unknown dtype");
}

}  // namespace megagrad
