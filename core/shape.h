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

// The row-major multi-index of element i of shape s.
inline std::vector<int64_t> unravel_index(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}

// A shape seen as (O, N, I) around dim d: the product of the dims before d, d itself, and the
// product of the dims after it. A contiguous tensor is then an O x N x I array.
struct OuterInner {
  int64_t O = 1, N = 1, I = 1;
};
inline OuterInner outer_inner(const Shape& s, int64_t d) {
  OuterInner r;
  for (int64_t i = 0; i < (int64_t)s.size(); ++i) {
    if (i < d) r.O *= s[(size_t)i];
    else if (i == d) r.N = s[(size_t)i];
    else r.I *= s[(size_t)i];
  }
  return r;
}

}  // namespace megagrad
