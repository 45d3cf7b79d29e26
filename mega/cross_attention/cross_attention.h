// The attention core of Mega's GatedCrossAttention (official
// fairseq/modules/gated_cross_attention.py): target queries over source keys and values, with the
// relative bias rel_pos_bias(max(L,S))[:L,:S] and the source key padding mask, as one fused
// differentiable op. Derivation of the forward and backward: mega/cross_attention/cross_attention.md.
#pragma once
#include <cstdint>
#include "core/rng.h"
#include "core/tensor.h"
#include "mega/attention/attention.h"  // RelPosBias, AttentionActivation

namespace megagrad {

struct CrossAttentionOptions {
  AttentionActivation activation = AttentionActivation::Softmax;
  int64_t max_positions = 0;  // M of the simple bias (weight 2M-1); max(L, S) must not exceed it
  double dropout = 0.0;       // attention dropout on P (training only)
  bool training = false;
  Generator* generator = nullptr;  // dropout masks; default generator when null
};

// q (B, L, Z); k (B, S, Z); v (B, S, H); key_padding_mask (B, S), 1 = pad, q's dtype and device,
// or undefined. Returns h = P v, (B, L, H), differentiable in q, k, v and the bias parameters.
// On the CPU a fused kernel (cross_attention_cpu.h); on a CUDA tensor the composed ops below, on
// the device. A batch element whose source is all padding gets h = 0 (the official code: NaN).
Tensor cross_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_padding_mask,
                       const RelPosBias& bias, const CrossAttentionOptions& options);

// The same function composed of primitive ops (materialises the (B, L, S) scores): the tests'
// reference, and the CUDA path.
Tensor cross_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_padding_mask,
                                 const RelPosBias& bias, const CrossAttentionOptions& options);

}  // namespace megagrad
