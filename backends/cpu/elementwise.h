// Elementwise maps over tensors of any strides, with broadcasting. The output is a fresh
// contiguous tensor; inputs are read through their strides (no copies). When every operand is
// contiguous the rows merge into one and the inner loop is a plain vectorisable loop.
#pragma once
#include "core/strided.h"
#include "core/tensor.h"

namespace megagrad::cpu {

// out[i] = f(x[i]); out must be contiguous with x's shape.
template <typename T, typename R = T, typename F>
void unary_map(const Tensor& x, Tensor& out, F f) {
  const T* xp = x.data_ptr<T>();
  R* op = out.data_ptr<R>();
  for_each_row<2>(out.shape(), {out.strides(), x.strides()}, [&](auto off, int64_t n, auto in) {
    R* o = op + off[0];
    const T* a = xp + off[1];
    if (in[0] == 1 && in[1] == 1)
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
    else
      for (int64_t i = 0; i < n; ++i) o[i * in[0]] = f(a[i * in[1]]);
  });
}

// out[i] = f(a[i], b[i]) with a and b broadcast to out's shape.
template <typename T, typename R = T, typename F>
void binary_map(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const T* ap = a.data_ptr<T>();
  const T* bp = b.data_ptr<T>();
  R* op = out.data_ptr<R>();
  Strides as = broadcast_strides(a.shape(), a.strides(), out.shape());
  Strides bs = broadcast_strides(b.shape(), b.strides(), out.shape());
  for_each_row<3>(out.shape(), {out.strides(), as, bs}, [&](auto off, int64_t n, auto in) {
    R* o = op + off[0];
    const T* x = ap + off[1];
    const T* y = bp + off[2];
    if (in[0] == 1 && in[1] == 1 && in[2] == 1)
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
    else if (in[0] == 1 && in[1] == 1 && in[2] == 0)
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[0]);  // row times a broadcast scalar
    else
      for (int64_t i = 0; i < n; ++i) o[i * in[0]] = f(x[i * in[1]], y[i * in[2]]);
  });
}

// out[i] = f(a[i], b[i], c[i]) with broadcasting; a, b, c may have different element types.
template <typename A, typename B, typename C, typename R, typename F>
void ternary_map(const Tensor& a, const Tensor& b, const Tensor& c, Tensor& out, F f) {
  const A* ap = a.data_ptr<A>();
  const B* bp = b.data_ptr<B>();
  const C* cp = c.data_ptr<C>();
  R* op = out.data_ptr<R>();
  Strides as = broadcast_strides(a.shape(), a.strides(), out.shape());
  Strides bs = broadcast_strides(b.shape(), b.strides(), out.shape());
  Strides cs = broadcast_strides(c.shape(), c.strides(), out.shape());
  for_each_row<4>(out.shape(), {out.strides(), as, bs, cs}, [&](auto off, int64_t n, auto in) {
    for (int64_t i = 0; i < n; ++i)
      op[off[0] + i * in[0]] = f(ap[off[1] + i * in[1]], bp[off[2] + i * in[2]], cp[off[3] + i * in[3]]);
  });
}

}  // namespace megagrad::cpu
