// Mega's single-head attention inside chunks (spec section 3), as one fused differentiable op.
// Derivation of the backward: mega/attention/attention.md.
#pragma once
#include <cstdint>
#include "core/rng.h"
#include "core/tensor.h"
#include "mega/attention/attention_types.h"  // AttentionActivation

namespace megagrad {

// The relative position bias (module rel_pos_bias).
struct RelPosBias {
  enum class Kind { Simple, Rotary } kind = Kind::Simple;
  Tensor weight;  // Simple: (2M-1), official name rel_pos_bias.rel_pos_bias
  Tensor alpha;   // Rotary: (1, Z)
  Tensor beta;    // Rotary: (1, Z)
};

struct AttentionOptions {
  AttentionActivation activation = AttentionActivation::Softmax;
  int64_t chunk_size = -1;    // <= 0 or >= L: the whole sequence is one chunk
  bool causal = false;
  int64_t max_positions = 0;  // M of the simple bias when not chunking (chunking: M = chunk size)
  double dropout = 0.0;       // attention dropout on P (training only)
  bool training = false;
  Generator* generator = nullptr;  // dropout masks; default generator when null
};

// q, k: (B, L, Z); v: (B, L, H); padding_mask: (B, L), 1 = pad, same dtype, or undefined.
// Returns h = P v, (B, L, H). Differentiable in q, k, v and the bias parameters.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& padding_mask,
                 const RelPosBias& bias, const AttentionOptions& options);

// The same function composed of primitive ops (materialises the C x C matrices), for tests.
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& padding_mask,
                           const RelPosBias& bias, const AttentionOptions& options);

}  // namespace megagrad
