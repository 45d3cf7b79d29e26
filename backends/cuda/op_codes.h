// The op codes of the CUDA elementwise launchers (backends/cuda/kernels.h). Plain C++ without
// cuda_runtime.h, so that the ops (autograd/ops_elementwise.cpp) name the code next to their CPU
// lambda in every build, CPU-only included.
#pragma once

namespace megagrad::cuda {

// out = f(x), x and out of `dtype` (float32 or float64). `scalar` is the op's constant.
enum class UnaryOp {
  Neg,        // -x
  AddScalar,  // x + scalar
  MulScalar,  // x * scalar (also in-place scaling: x and out the same view)
  Pow,        // x ^ scalar
  Exp, Log, Sqrt,
  Rsqrt,      // 1 / sqrt(x)
  Square, Abs, Tanh,
  Sigmoid,    // 1 / (1 + exp(-x))
  Silu,       // x * sigmoid(x)
  Relu,       // x > 0 ? x : 0
  Gelu,       // exact: 0.5 x (1 + erf(x / sqrt 2))
  Erf,
};

// out = f(a, b), a, b of `dtype`; out of `dtype`, or Bool for the comparisons.
// The *Backward maps are the unary ops' backward: out = g * f'(s), with a = g (the output's
// gradient) and b = s the saved tensor named after the op (x: the input, y: the output).
// The other backwards are plain binary ops: exp: Mul(g, y); log: Div(g, x); neg: Neg(g);
// mul: Mul; div: Div(g, b) and -Div(Mul(g, z), b); where / masked_fill: themselves with 0.
enum class BinaryOp {
  Add, Sub, Mul, Div,
  Axpy,             // a + scalar * b  (Tensor::add_ with alpha; gradient accumulation)
  Gt, Lt, Eq,       // -> Bool
  PowBackward,      // (g, x), scalar = p:  g * p x^(p-1)   (0 when p == 0)
  SqrtBackward,     // (g, y):  g * 0.5 / y
  RsqrtBackward,    // (g, y):  g * -0.5 y^3
  SquareBackward,   // (g, x):  g * 2x
  AbsBackward,      // (g, x):  g * sign(x)  (0 at 0)
  TanhBackward,     // (g, y):  g * (1 - y^2)
  SigmoidBackward,  // (g, y):  g * y (1 - y)
  SiluBackward,     // (g, x):  g * s (1 + x (1 - s)), s = sigmoid(x)
  ReluBackward,     // (g, x):  g * (x > 0)
  GeluBackward,     // (g, x):  g * (Phi(x) + x phi(x))
  ErfBackward,      // (g, x):  g * 2/sqrt(pi) exp(-x^2)
};

}  // namespace megagrad::cuda
