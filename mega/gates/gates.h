// The gate chains of MovingAverageGatedAttention (spec section 2), each as one fused
// differentiable op: the input gates after mx_proj, and the output gate after h_proj.
// Derivation of the forwards and the backwards: mega/gates/gates.md.
#pragma once
#include <cstdint>
#include "core/tensor.h"

namespace megagrad {

// The gates computed from mx_proj's output. On the CPU, u, r, q, k are views of one packed
// tensor (B, L, D + H + 2Z) laid out [u | r | q | k] (the op's single output, `packed`); on a
// CUDA device they come from the composed ops and `packed` is undefined.
struct InputGates {
  Tensor u;  // (B, L, D) sigmoid(x[..., :D])
  Tensor r;  // (B, L, H) silu(x[..., D+Z:])
  Tensor q;  // (B, L, Z) silu(x[..., D:D+Z]) * gamma[0] + beta[0]
  Tensor k;  // (B, L, Z) silu(x[..., D:D+Z]) * gamma[1] + beta[1]
  Tensor packed;
};

// x: (B, L, D + Z + H) float, any strides over B and L (the layer passes the first D + Z + H
// columns of mx_proj's output as a view); gamma, beta: (2, Z) of x's dtype and device.
// Differentiable in x, gamma and beta.
InputGates input_gates(const Tensor& x, const Tensor& gamma, const Tensor& beta, int64_t D);

// out = residual + u * (silu(hx + hp) - residual), all four (B, L, D) float of one dtype and
// device, any strides over B and L. Returns (B, L, D) contiguous; differentiable in all four.
Tensor output_gate(const Tensor& hx, const Tensor& hp, const Tensor& u, const Tensor& residual);

// The same functions composed of primitive ops (split, sigmoid, silu, mul, add, sub): the code
// the layer ran before the fusion, for the tests, and the path on a CUDA device.
InputGates input_gates_reference(const Tensor& x, const Tensor& gamma, const Tensor& beta, int64_t D);
Tensor output_gate_reference(const Tensor& hx, const Tensor& hp, const Tensor& u, const Tensor& residual);

}  // namespace megagrad
