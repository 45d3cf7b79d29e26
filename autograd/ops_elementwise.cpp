// Elementwise ops: each forward is one strided map of a core/pointwise.h functor (on the CPU
// backends/cpu/elementwise.h, on a GPU backends/cuda/elementwise.cu); each backward is one more map
// over (grad, saved tensor), followed by sum_to for broadcast operands.
#include <type_traits>
#include "autograd/checks.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "backends/cpu/elementwise.h"
#include "core/dispatch.h"
#include "core/pointwise.h"

namespace megagrad {

namespace {

namespace pw = pointwise;

// y = f(x), a new contiguous tensor; f is a functor of core/pointwise.h, which both devices run.
template <typename F>
Tensor map1(std::string_view op, const Tensor& x, const F& f) {
  check_float(op, x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (on_cuda(x))
    MG_CUDA(op, cuda::cuda_map(f, x.dtype(), cuda::make_view(x), cuda::make_view(y), cuda::stream_of(y)));
  else
    dispatch_float(op, x.dtype(), [&]<typename T>() { cpu::unary_map<T>(x, y, f); });
  return y;
}

// z = f(a, b) with broadcasting; z is Bool where f returns bool (the comparisons).
template <typename F>
Tensor map2(std::string_view op, const Tensor& a, const Tensor& b, const F& f) {
  check_same_float(op, a, b);
  constexpr bool compare = std::is_same_v<decltype(f(0.0, 0.0)), bool>;
  Tensor z = Tensor::empty(broadcast_shapes(op, a.shape(), b.shape()), compare ? DType::Bool : a.dtype(),
                           a.device());
  if (on_cuda(a))
    MG_CUDA(op, cuda::cuda_map(f, a.dtype(), cuda::make_view_broadcast(a, z.shape()),
                               cuda::make_view_broadcast(b, z.shape()), cuda::make_view(z), cuda::stream_of(z)));
  else
    dispatch_float(op, a.dtype(), [&]<typename T>() { cpu::binary_map<T, decltype(f(T(), T()))>(a, b, z, f); });
  return z;
}

// The backward of a unary op F: dx = g * F'(s), s the tensor F::saves names (the closure saved it).
template <typename F>
Tensor grad_map(const Tensor& g, const Tensor& saved, const F& f) {
  return map2("backward", g, saved, pw::Grad<F>{f});
}

// The forward and backward of a unary op with a derivative in core/pointwise.h: saves x or y,
// whichever F::saves names, and only when x needs a gradient.
template <typename F>
Tensor unary_op(std::string_view op, const Tensor& x, const F& f) {
  Tensor y = map1(op, x, f);
  if (needs_grad(x)) {
    const Tensor saved = F::saves == pw::Saves::Output ? y.detach() : x.detach();
    record(op, {x}, y, [f, saved](const Tensor& g) { return std::vector<Tensor>{grad_map(g, saved, f)}; });
  }
  return y;
}

}  // namespace

// ---------------------------------------------------------------- binary

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor z = map2("add", a, b, pw::Add{});
  if (needs_grad(a, b)) {
    record("add", {a, b}, z, [sa = a.shape(), sb = b.shape(), na = wants_grad(a), nb = wants_grad(b)](const Tensor& g) {
      return std::vector<Tensor>{na ? sum_to(g, sa) : Tensor(), nb ? sum_to(g, sb) : Tensor()};
    });
  }
  return z;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor z = map2("sub", a, b, pw::Sub{});
  if (needs_grad(a, b)) {
    record("sub", {a, b}, z, [sa = a.shape(), sb = b.shape(), na = wants_grad(a), nb = wants_grad(b)](const Tensor& g) {
      return std::vector<Tensor>{na ? sum_to(g, sa) : Tensor(), nb ? sum_to(neg(g), sb) : Tensor()};
    });
  }
  return z;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor z = map2("mul", a, b, pw::Mul{});
  if (needs_grad(a, b)) {
    // d(ab)/da = b, d(ab)/db = a: save only the operand the other gradient needs.
    bool na = wants_grad(a), nb = wants_grad(b);
    record("mul", {a, b}, z, [na, nb, sa = a.shape(), sb = b.shape(), ad = nb ? a.detach() : Tensor(),
                              bd = na ? b.detach() : Tensor()](const Tensor& g) {
      return std::vector<Tensor>{na ? sum_to(mul(g, bd), sa) : Tensor(),
                                 nb ? sum_to(mul(g, ad), sb) : Tensor()};
    });
  }
  return z;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor z = map2("div", a, b, pw::Div{});
  if (needs_grad(a, b)) {
    // d(a/b)/da = 1/b;  d(a/b)/db = -a/b^2 = -z/b.
    bool na = wants_grad(a), nb = wants_grad(b);
    record("div", {a, b}, z, [na, nb, sa = a.shape(), sb = b.shape(), bd = b.detach(),
                              zd = nb ? z.detach() : Tensor()](const Tensor& g) {
      Tensor ga, gb;
      if (na) ga = sum_to(div(g, bd), sa);
      if (nb) gb = sum_to(neg(div(mul(g, zd), bd)), sb);
      return std::vector<Tensor>{ga, gb};
    });
  }
  return z;
}

Tensor add_scalar(const Tensor& a, double s) {
  Tensor z = map1("add_scalar", a, pw::AddScalar{s});
  if (needs_grad(a)) record("add_scalar", {a}, z, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return z;
}

Tensor mul_scalar(const Tensor& a, double s) {
  Tensor z = map1("mul_scalar", a, pw::MulScalar{s});
  if (needs_grad(a))
    record("mul_scalar", {a}, z, [s](const Tensor& g) { return std::vector<Tensor>{mul_scalar(g, s)}; });
  return z;
}

Tensor pow(const Tensor& a, double p) { return unary_op("pow", a, pw::Pow{p}); }

// ---------------------------------------------------------------- unary
// The math and each derivative are in core/pointwise.h. exp, log and neg have backwards that are
// plain ops of their own.

Tensor neg(const Tensor& x) {
  Tensor y = map1("neg", x, pw::Neg{});
  if (needs_grad(x)) record("neg", {x}, y, [](const Tensor& g) { return std::vector<Tensor>{neg(g)}; });
  return y;
}

Tensor exp(const Tensor& x) {
  Tensor y = map1("exp", x, pw::Exp{});
  if (needs_grad(x))  // exp' = exp = y
    record("exp", {x}, y, [yd = y.detach()](const Tensor& g) { return std::vector<Tensor>{mul(g, yd)}; });
  return y;
}

Tensor log(const Tensor& x) {
  Tensor y = map1("log", x, pw::Log{});
  if (needs_grad(x))  // log' = 1/x
    record("log", {x}, y, [xd = x.detach()](const Tensor& g) { return std::vector<Tensor>{div(g, xd)}; });
  return y;
}

Tensor sqrt(const Tensor& x) { return unary_op("sqrt", x, pw::Sqrt{}); }
Tensor rsqrt(const Tensor& x) { return unary_op("rsqrt", x, pw::Rsqrt{}); }
Tensor square(const Tensor& x) { return unary_op("square", x, pw::Square{}); }
Tensor abs(const Tensor& x) { return unary_op("abs", x, pw::Abs{}); }
Tensor tanh(const Tensor& x) { return unary_op("tanh", x, pw::Tanh{}); }
Tensor sigmoid(const Tensor& x) { return unary_op("sigmoid", x, pw::Sigmoid{}); }
Tensor silu(const Tensor& x) { return unary_op("silu", x, pw::Silu{}); }
Tensor relu(const Tensor& x) { return unary_op("relu", x, pw::Relu{}); }
Tensor gelu(const Tensor& x) { return unary_op("gelu", x, pw::Gelu{}); }
Tensor erf(const Tensor& x) { return unary_op("erf", x, pw::Erf{}); }

// ---------------------------------------------------------------- comparisons (no gradient)

Tensor gt(const Tensor& a, const Tensor& b) { return map2("gt", a, b, pw::Gt{}); }
Tensor lt(const Tensor& a, const Tensor& b) { return map2("lt", a, b, pw::Lt{}); }
Tensor eq(const Tensor& a, const Tensor& b) { return map2("eq", a, b, pw::Eq{}); }

}  // namespace megagrad
