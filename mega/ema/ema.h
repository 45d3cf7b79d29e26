// The multi-dimensional damped EMA of Mega (spec section 1), as one fused differentiable op.
// Derivation of the forward recurrence and of the backward: mega/ema/ema.md.
#pragma once
#include <cstdint>
#include <optional>
#include "core/tensor.h"

namespace megagrad {

// The module `move`'s parameters, official names and shapes (E = 2D if bidirectional else D).
struct EmaParams {
  Tensor delta;  // (E, N, 1)
  Tensor alpha;  // (E, N, 1)
  Tensor beta;   // (E, N, 1)
  Tensor gamma;  // (E, N)
  Tensor omega;  // (D)
};

struct EmaOptions {
  bool bidirectional = false;
  std::optional<int64_t> truncation;  // keep lags j < truncation only
};

// x: (B, L, D) float, any strides over B and L. padding_mask: (B, L) of the same float dtype
// (1 = pad) or undefined. Returns silu(EMA(x * (1 - mask)) + omega * x), (B, L, D) contiguous.
// Differentiable in x and all five parameters; the backward is one fused kernel (ema_cpu.h).
Tensor ema(const Tensor& x, const Tensor& padding_mask, const EmaParams& params, const EmaOptions& options);

// The same function composed of primitive ops (kernel k built with exp/log/sigmoid, then a direct
// convolution as a Toeplitz matmul): slow, O(L^2), for tests only.
Tensor ema_reference(const Tensor& x, const Tensor& padding_mask, const EmaParams& params,
                     const EmaOptions& options);

// The EMA kernel k[e, j] = sum_n c a q^j, (E, K), from primitive ops (for tests and for
// comparing with the reference files' inter.ema_kernel).
Tensor ema_kernel_reference(const EmaParams& params, int64_t K);

}  // namespace megagrad

namespace megagrad {

// Incremental decoding (unidirectional EMA only): the state after the tokens seen so far.
struct EmaState {
  int64_t pos = 0;  // tokens consumed
  Tensor h;         // (B, N, D) the states h_n of spec section 1 (with the truncation input)
  Tensor ring;      // (B, K, D) the last K masked inputs x~, for truncation K < max length
};

// Feeds x (B, m, D) (m >= 1, any block length) after the tokens already in `state`, returns the
// same values as the parallel ema() gives at those positions, and advances the state. Not
// differentiable (generation runs under no_grad).
Tensor ema_step(const Tensor& x, const Tensor& padding_mask, const EmaParams& params,
                const EmaOptions& options, EmaState& state);

}  // namespace megagrad
