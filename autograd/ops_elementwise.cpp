// Elementwise ops: each forward is one strided map (backends/cpu/elementwise.h); each backward
// is one more map over (grad, saved tensor), followed by sum_to for broadcast operands.
#include <cmath>
#include "autograd/checks.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "backends/cuda/op_codes.h"
#include "backends/cpu/elementwise.h"
#include "core/dispatch.h"
#include "core/vec_math.h"

namespace megagrad {

namespace {

// The CUDA launchers' op codes (backends/cuda/op_codes.h): each op states its math once for the
// CPU (the lambda) and names the CUDA op code next to it.
using cuda::BinaryOp;
using cuda::UnaryOp;

// y = f(x), a new contiguous tensor; on a GPU the launcher's `code` with the op's `scalar`.
template <typename F>
Tensor map1(std::string_view op, const Tensor& x, [[maybe_unused]] UnaryOp code, F f,
            [[maybe_unused]] double scalar = 0) {
  check_float(op, x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (on_cuda(x))
    MG_CUDA(op, cuda::cuda_unary(code, x.dtype(), cuda::make_view(x), cuda::make_view(y), scalar, cuda::stream_of(y)));
  else
    dispatch_float(op, x.dtype(), [&]<typename T>() { cpu::unary_map<T>(x, y, [&](T v) { return f(v); }); });
  return y;
}

// z = f(a, b) with broadcasting.
template <typename F>
Tensor map2(std::string_view op, const Tensor& a, const Tensor& b, [[maybe_unused]] BinaryOp code, F f,
            [[maybe_unused]] double scalar = 0) {
  check_same_float(op, a, b);
  Tensor z = Tensor::empty(broadcast_shapes(op, a.shape(), b.shape()), a.dtype(), a.device());
  if (on_cuda(a))
    MG_CUDA(op, cuda::cuda_binary(code, a.dtype(), cuda::make_view_broadcast(a, z.shape()),
                                  cuda::make_view_broadcast(b, z.shape()), cuda::make_view(z), scalar,
                                  cuda::stream_of(z)));
  else
    dispatch_float(op, a.dtype(), [&]<typename T>() {
      cpu::binary_map<T>(a, b, z, [&](T u, T v) { return f(u, v); });
    });
  return z;
}

// The backward of a unary op: dx = g * dfdx, where dfdx(x_or_y) comes from a saved tensor. On a
// GPU the launcher's *Backward `code` computes the same product (scalar: pow's exponent).
template <typename F>
Tensor grad_map(const Tensor& g, const Tensor& saved, BinaryOp code, F dfdx, double scalar = 0) {
  return map2("backward", g, saved, code, [&](auto gv, auto s) { return gv * dfdx(s); }, scalar);
}

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kTwoOverSqrtPi = 1.12837916709551257390;

}  // namespace

// ---------------------------------------------------------------- binary

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor z = map2("add", a, b, BinaryOp::Add, [](auto u, auto v) { return u + v; });
  if (needs_grad(a, b)) {
    record("add", {a, b}, z, [sa = a.shape(), sb = b.shape(), na = wants_grad(a), nb = wants_grad(b)](const Tensor& g) {
      return std::vector<Tensor>{na ? sum_to(g, sa) : Tensor(), nb ? sum_to(g, sb) : Tensor()};
    });
  }
  return z;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor z = map2("sub", a, b, BinaryOp::Sub, [](auto u, auto v) { return u - v; });
  if (needs_grad(a, b)) {
    record("sub", {a, b}, z, [sa = a.shape(), sb = b.shape(), na = wants_grad(a), nb = wants_grad(b)](const Tensor& g) {
      return std::vector<Tensor>{na ? sum_to(g, sa) : Tensor(), nb ? sum_to(neg(g), sb) : Tensor()};
    });
  }
  return z;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor z = map2("mul", a, b, BinaryOp::Mul, [](auto u, auto v) { return u * v; });
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
  Tensor z = map2("div", a, b, BinaryOp::Div, [](auto u, auto v) { return u / v; });
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
  Tensor z = map1("add_scalar", a, UnaryOp::AddScalar, [s](auto v) { return v + (decltype(v))s; }, s);
  if (needs_grad(a)) record("add_scalar", {a}, z, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return z;
}

Tensor mul_scalar(const Tensor& a, double s) {
  Tensor z = map1("mul_scalar", a, UnaryOp::MulScalar, [s](auto v) { return v * (decltype(v))s; }, s);
  if (needs_grad(a))
    record("mul_scalar", {a}, z, [s](const Tensor& g) { return std::vector<Tensor>{mul_scalar(g, s)}; });
  return z;
}

Tensor pow(const Tensor& a, double p) {
  Tensor z = map1("pow", a, UnaryOp::Pow, [p](auto v) { return (decltype(v))std::pow(v, (decltype(v))p); }, p);
  if (needs_grad(a)) {
    // d(x^p)/dx = p x^(p-1)
    record("pow", {a}, z, [p, ad = a.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, ad, BinaryOp::PowBackward, [p](auto x) {
        using T = decltype(x);
        return p == 0 ? T(0) : (T)p * (T)std::pow(x, (T)(p - 1));
      }, p)};
    });
  }
  return z;
}

// ---------------------------------------------------------------- unary
// Each backward multiplies the incoming gradient by f'(.), written from x or from y = f(x),
// whichever is cheaper; the closure saves only that tensor.

Tensor neg(const Tensor& x) {
  Tensor y = map1("neg", x, UnaryOp::Neg, [](auto v) { return -v; });
  if (needs_grad(x)) record("neg", {x}, y, [](const Tensor& g) { return std::vector<Tensor>{neg(g)}; });
  return y;
}

Tensor exp(const Tensor& x) {
  Tensor y = map1("exp", x, UnaryOp::Exp, [](auto v) { return exp_fast(v); });
  if (needs_grad(x))  // exp' = exp = y
    record("exp", {x}, y, [yd = y.detach()](const Tensor& g) { return std::vector<Tensor>{mul(g, yd)}; });
  return y;
}

Tensor log(const Tensor& x) {
  Tensor y = map1("log", x, UnaryOp::Log, [](auto v) { return std::log(v); });
  if (needs_grad(x))  // log' = 1/x
    record("log", {x}, y, [xd = x.detach()](const Tensor& g) { return std::vector<Tensor>{div(g, xd)}; });
  return y;
}

Tensor sqrt(const Tensor& x) {
  Tensor y = map1("sqrt", x, UnaryOp::Sqrt, [](auto v) { return std::sqrt(v); });
  if (needs_grad(x))  // sqrt' = 1 / (2 y)
    record("sqrt", {x}, y, [yd = y.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, yd, BinaryOp::SqrtBackward, [](auto s) { return (decltype(s))0.5 / s; })};
    });
  return y;
}

Tensor rsqrt(const Tensor& x) {
  Tensor y = map1("rsqrt", x, UnaryOp::Rsqrt, [](auto v) { return (decltype(v))1 / std::sqrt(v); });
  if (needs_grad(x))  // (x^-1/2)' = -1/2 x^-3/2 = -y^3 / 2
    record("rsqrt", {x}, y, [yd = y.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, yd, BinaryOp::RsqrtBackward, [](auto s) { return (decltype(s))-0.5 * s * s * s; })};
    });
  return y;
}

Tensor square(const Tensor& x) {
  Tensor y = map1("square", x, UnaryOp::Square, [](auto v) { return v * v; });
  if (needs_grad(x))  // 2x
    record("square", {x}, y, [xd = x.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, xd, BinaryOp::SquareBackward, [](auto s) { return 2 * s; })};
    });
  return y;
}

Tensor abs(const Tensor& x) {
  Tensor y = map1("abs", x, UnaryOp::Abs, [](auto v) { return std::abs(v); });
  if (needs_grad(x))  // sign(x), 0 at 0 (as PyTorch)
    record("abs", {x}, y, [xd = x.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, xd, BinaryOp::AbsBackward, [](auto s) {
        using T = decltype(s);
        return s > 0 ? T(1) : (s < 0 ? T(-1) : T(0));
      })};
    });
  return y;
}

Tensor tanh(const Tensor& x) {
  Tensor y = map1("tanh", x, UnaryOp::Tanh, [](auto v) { return std::tanh(v); });
  if (needs_grad(x))  // 1 - y^2
    record("tanh", {x}, y, [yd = y.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, yd, BinaryOp::TanhBackward, [](auto s) { return 1 - s * s; })};
    });
  return y;
}

namespace {
template <typename T> inline T sigmoid_of(T v) { return sigmoid_fast(v); }
}  // namespace

Tensor sigmoid(const Tensor& x) {
  Tensor y = map1("sigmoid", x, UnaryOp::Sigmoid, [](auto v) { return sigmoid_of(v); });
  if (needs_grad(x))  // y (1 - y)
    record("sigmoid", {x}, y, [yd = y.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, yd, BinaryOp::SigmoidBackward, [](auto s) { return s * (1 - s); })};
    });
  return y;
}

Tensor silu(const Tensor& x) {
  Tensor y = map1("silu", x, UnaryOp::Silu, [](auto v) { return v * sigmoid_of(v); });
  if (needs_grad(x))  // s (1 + x (1 - s)),  s = sigmoid(x)
    record("silu", {x}, y, [xd = x.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, xd, BinaryOp::SiluBackward, [](auto v) {
        auto s = sigmoid_of(v);
        return s * (1 + v * (1 - s));
      })};
    });
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y = map1("relu", x, UnaryOp::Relu, [](auto v) { return v > 0 ? v : decltype(v)(0); });
  if (needs_grad(x))  // 1 where x > 0
    record("relu", {x}, y, [xd = x.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, xd, BinaryOp::ReluBackward, [](auto v) { return decltype(v)(v > 0 ? 1 : 0); })};
    });
  return y;
}

Tensor gelu(const Tensor& x) {
  Tensor y = map1("gelu", x, UnaryOp::Gelu, [](auto v) {
    using T = decltype(v);
    return T(0.5) * v * (T(1) + erf_fast(v * T(kInvSqrt2)));
  });
  if (needs_grad(x))  // Phi(x) + x phi(x); phi's exp(-x^2/2) = exp(-u^2), u = x/sqrt2, serves erf too
    record("gelu", {x}, y, [xd = x.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, xd, BinaryOp::GeluBackward, [](auto v) {
        using T = decltype(v);
        const T u = v * T(kInvSqrt2);
        const T e = exp_fast(-(u * u));
        const T cdf = T(0.5) * (T(1) + erf_fast_with_exp(u, e));
        return cdf + v * T(kInvSqrt2Pi) * e;
      })};
    });
  return y;
}

Tensor erf(const Tensor& x) {
  Tensor y = map1("erf", x, UnaryOp::Erf, [](auto v) { return erf_fast(v); });
  if (needs_grad(x))  // 2/sqrt(pi) exp(-x^2)
    record("erf", {x}, y, [xd = x.detach()](const Tensor& g) {
      return std::vector<Tensor>{grad_map(g, xd, BinaryOp::ErfBackward, [](auto v) {
        using T = decltype(v);
        return T(kTwoOverSqrtPi) * exp_fast(-(v * v));
      })};
    });
  return y;
}

// ---------------------------------------------------------------- comparisons (no gradient)

namespace {
template <typename F>
Tensor compare(std::string_view op, const Tensor& a, const Tensor& b, [[maybe_unused]] BinaryOp code, F f) {
  check_same_float(op, a, b);
  Tensor z = Tensor::empty(broadcast_shapes(op, a.shape(), b.shape()), DType::Bool, a.device());
  if (on_cuda(a))
    MG_CUDA(op, cuda::cuda_binary(code, a.dtype(), cuda::make_view_broadcast(a, z.shape()),
                                  cuda::make_view_broadcast(b, z.shape()), cuda::make_view(z), 0,
                                  cuda::stream_of(z)));
  else
    dispatch_float(op, a.dtype(), [&]<typename T>() {
      cpu::binary_map<T, bool>(a, b, z, [&](T u, T v) { return f(u, v); });
    });
  return z;
}
}  // namespace

Tensor gt(const Tensor& a, const Tensor& b) { return compare("gt", a, b, BinaryOp::Gt, [](auto u, auto v) { return u > v; }); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare("lt", a, b, BinaryOp::Lt, [](auto u, auto v) { return u < v; }); }
Tensor eq(const Tensor& a, const Tensor& b) { return compare("eq", a, b, BinaryOp::Eq, [](auto u, auto v) { return u == v; }); }

}  // namespace megagrad
