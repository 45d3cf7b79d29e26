// Element types. Float32 and Float64 are differentiable; Int64 holds indices (embedding, gather,
// targets) and Bool holds masks (one byte per element).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include "core/error.h"

namespace megagrad {

enum class DType : uint8_t { Float32, Float64, Int64, Bool };

inline constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::Bool: return 1;
  }
  return 0;
}

inline constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
  }
  return "?";
}

inline constexpr bool is_floating(DType t) { return t == DType::Float32 || t == DType::Float64; }

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };
template <typename T> inline constexpr DType dtype_of_v = dtype_of<T>::value;

}  // namespace megagrad

template <> struct fmt::formatter<megagrad::DType> : fmt::formatter<std::string_view> {
  auto format(megagrad::DType t, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(megagrad::dtype_name(t), ctx);
  }
};
