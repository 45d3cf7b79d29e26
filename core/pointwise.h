// Each elementwise op's math, written once: the forward and the derivative of every pointwise op
// as a functor that both devices instantiate. The CPU maps (backends/cpu/elementwise.h) call it
// in their loops; the CUDA launchers (backends/cuda/elementwise.cu) pass it to their kernels. The
// ops (autograd/ops_elementwise.cpp) name the functor once, for either device.
//
// A unary functor computes y = f(x). One that has a gradient also gives
//   derivative(s)  f' written from the tensor the backward saves, and
//   saves          which tensor that is: the input x or the output y, whichever is cheaper.
// The backward map is Grad<F>: dx = g * f'(s).
// Scalars (add_scalar's s, pow's p) are held as double and converted to the element type at use;
// the compilers hoist the conversion out of the loops.
//
// exp, erf and sigmoid are the polynomials of core/vec_math.h on both devices: one numeric policy.
// The rest is IEEE arithmetic or libm (sqrtf/sqrt, logf/log, ...) on each device.
//
// Adding an op: write its functor here, add it to the list at the bottom (the CUDA build
// instantiates its launchers from that list), and call map1/map2/grad_map with it in the op.
// C++17, so that nvcc reads it.
#pragma once
#include <cmath>
#include "core/host_device.h"
#include "core/vec_math.h"

namespace megagrad::pointwise {

// libm, one overload per type, so that float math stays in float on a GPU (logf, not log). The
// global names (::log) because megagrad::log is the tensor op.
MG_HD float m_log(float x) { return ::logf(x); }
MG_HD double m_log(double x) { return ::log(x); }
MG_HD float m_sqrt(float x) { return ::sqrtf(x); }
MG_HD double m_sqrt(double x) { return ::sqrt(x); }
MG_HD float m_pow(float x, float p) { return ::powf(x, p); }
MG_HD double m_pow(double x, double p) { return ::pow(x, p); }
MG_HD float m_tanh(float x) { return ::tanhf(x); }
MG_HD double m_tanh(double x) { return ::tanh(x); }
MG_HD float m_abs(float x) { return ::fabsf(x); }
MG_HD double m_abs(double x) { return ::fabs(x); }

inline constexpr double kInvSqrt2 = 0.70710678118654752440;
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;
inline constexpr double kTwoOverSqrtPi = 1.12837916709551257390;

enum class Saves { Input, Output };

// ---------------------------------------------------------------- unary
struct Neg {
  template <typename T> MG_HD T operator()(T x) const { return -x; }
};
struct AddScalar {
  double s;
  template <typename T> MG_HD T operator()(T x) const { return x + T(s); }
};
struct MulScalar {  // also Tensor::mul_ (in place)
  double s;
  template <typename T> MG_HD T operator()(T x) const { return x * T(s); }
};
struct Pow {  // x^p; d/dx = p x^(p-1), 0 when p == 0 (as PyTorch: no 0 * inf at x = 0)
  double p;
  static constexpr Saves saves = Saves::Input;
  template <typename T> MG_HD T operator()(T x) const { return m_pow(x, T(p)); }
  template <typename T> MG_HD T derivative(T x) const { return p == 0 ? T(0) : T(p) * m_pow(x, T(p - 1)); }
};
struct Exp {  // exp' = exp = y; the op multiplies by y directly (a plain mul, no map of its own)
  template <typename T> MG_HD T operator()(T x) const { return exp_fast(x); }
};
struct Log {  // log' = 1/x; the op divides by x directly
  template <typename T> MG_HD T operator()(T x) const { return m_log(x); }
};
struct Sqrt {  // sqrt' = 1 / (2 y)
  static constexpr Saves saves = Saves::Output;
  template <typename T> MG_HD T operator()(T x) const { return m_sqrt(x); }
  template <typename T> MG_HD T derivative(T y) const { return T(0.5) / y; }
};
struct Rsqrt {  // (x^-1/2)' = -1/2 x^-3/2 = -y^3 / 2
  static constexpr Saves saves = Saves::Output;
  template <typename T> MG_HD T operator()(T x) const { return T(1) / m_sqrt(x); }
  template <typename T> MG_HD T derivative(T y) const { return T(-0.5) * y * y * y; }
};
struct Square {
  static constexpr Saves saves = Saves::Input;
  template <typename T> MG_HD T operator()(T x) const { return x * x; }
  template <typename T> MG_HD T derivative(T x) const { return T(2) * x; }
};
struct Abs {  // d/dx = sign(x), 0 at 0 (as PyTorch)
  static constexpr Saves saves = Saves::Input;
  template <typename T> MG_HD T operator()(T x) const { return m_abs(x); }
  template <typename T> MG_HD T derivative(T x) const { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); }
};
struct Tanh {  // 1 - y^2
  static constexpr Saves saves = Saves::Output;
  template <typename T> MG_HD T operator()(T x) const { return m_tanh(x); }
  template <typename T> MG_HD T derivative(T y) const { return T(1) - y * y; }
};
struct Sigmoid {  // y (1 - y)
  static constexpr Saves saves = Saves::Output;
  template <typename T> MG_HD T operator()(T x) const { return sigmoid_fast(x); }
  template <typename T> MG_HD T derivative(T y) const { return y * (T(1) - y); }
};
struct Silu {  // x s(x); d/dx = s (1 + x (1 - s)), s = sigmoid(x)
  static constexpr Saves saves = Saves::Input;
  template <typename T> MG_HD T operator()(T x) const { return x * sigmoid_fast(x); }
  template <typename T> MG_HD T derivative(T x) const {
    const T s = sigmoid_fast(x);
    return s * (T(1) + x * (T(1) - s));
  }
};
struct Relu {  // d/dx = 1 where x > 0
  static constexpr Saves saves = Saves::Input;
  template <typename T> MG_HD T operator()(T x) const { return x > T(0) ? x : T(0); }
  template <typename T> MG_HD T derivative(T x) const { return T(x > T(0) ? 1 : 0); }
};
struct Gelu {  // exact: 0.5 x (1 + erf(x / sqrt 2)); d/dx = Phi(x) + x phi(x)
  static constexpr Saves saves = Saves::Input;
  template <typename T> MG_HD T operator()(T x) const { return T(0.5) * x * (T(1) + erf_fast(x * T(kInvSqrt2))); }
  template <typename T> MG_HD T derivative(T x) const {
    const T u = x * T(kInvSqrt2);
    const T e = exp_fast(-(u * u));  // phi's exp(-x^2/2) = exp(-u^2), which serves erf too
    const T cdf = T(0.5) * (T(1) + erf_fast_with_exp(u, e));
    return cdf + x * T(kInvSqrt2Pi) * e;
  }
};
struct Erf {  // 2/sqrt(pi) exp(-x^2)
  static constexpr Saves saves = Saves::Input;
  template <typename T> MG_HD T operator()(T x) const { return erf_fast(x); }
  template <typename T> MG_HD T derivative(T x) const { return T(kTwoOverSqrtPi) * exp_fast(-(x * x)); }
};

// ---------------------------------------------------------------- binary
struct Add {
  template <typename T> MG_HD T operator()(T a, T b) const { return a + b; }
};
struct Sub {
  template <typename T> MG_HD T operator()(T a, T b) const { return a - b; }
};
struct Mul {
  template <typename T> MG_HD T operator()(T a, T b) const { return a * b; }
};
struct Div {
  template <typename T> MG_HD T operator()(T a, T b) const { return a / b; }
};
struct Axpy {  // a + alpha b: Tensor::add_ with alpha (gradient accumulation)
  double alpha;
  template <typename T> MG_HD T operator()(T a, T b) const { return a + T(alpha) * b; }
};
struct Gt {  // comparisons give Bool
  template <typename T> MG_HD bool operator()(T a, T b) const { return a > b; }
};
struct Lt {
  template <typename T> MG_HD bool operator()(T a, T b) const { return a < b; }
};
struct Eq {
  template <typename T> MG_HD bool operator()(T a, T b) const { return a == b; }
};

// The backward map of a unary op F: (g, s) -> g * F'(s), s the tensor F::saves names.
template <typename F> struct Grad {
  F f;
  template <typename T> MG_HD T operator()(T g, T s) const { return g * f.derivative(s); }
};

// ---------------------------------------------------------------- selects
struct Where {  // cond ? a : b
  template <typename T> MG_HD T operator()(bool c, T a, T b) const { return c ? a : b; }
};

// ---------------------------------------------------------------- the list
// Every functor that runs as a map of its own, for the CUDA build's explicit instantiations
// (backends/cuda/elementwise.cu). A functor missing here is a link error in the CUDA build.
#define MG_POINTWISE_UNARY(X) \
  X(Neg) X(AddScalar) X(MulScalar) X(Pow) X(Exp) X(Log) X(Sqrt) X(Rsqrt) X(Square) X(Abs) X(Tanh) \
  X(Sigmoid) X(Silu) X(Relu) X(Gelu) X(Erf)
#define MG_POINTWISE_BINARY(X) \
  X(Add) X(Sub) X(Mul) X(Div) X(Axpy) X(Gt) X(Lt) X(Eq) \
  X(Grad<Pow>) X(Grad<Sqrt>) X(Grad<Rsqrt>) X(Grad<Square>) X(Grad<Abs>) X(Grad<Tanh>) X(Grad<Sigmoid>) \
  X(Grad<Silu>) X(Grad<Relu>) X(Grad<Gelu>) X(Grad<Erf>)

}  // namespace megagrad::pointwise
