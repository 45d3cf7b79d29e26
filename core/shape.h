// Shapes and strides (in elements), and the helpers every op needs: numel, contiguous strides,
// broadcasting, dimension wrapping.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>
#include <fmt/format.h>

namespace megagrad {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t numel_of(const Shape& s);
Strides contiguous_strides(const Shape& s);
// "(3,4)"; a scalar is "()".
std::string shape_str(const Shape& s);
// Broadcast two shapes numpy-style; throws "[op] shapes (..) and (..) cannot be broadcast".
Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b);
// Wrap a possibly negative dim into [0, ndim); throws "[op] dim d out of range for shape ..".
int64_t wrap_dim(std::string_view op, int64_t dim, int64_t ndim);

}  // namespace megagrad
