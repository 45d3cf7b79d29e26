// The decoder layer of Mega's encoder-decoder (translation) model, with the official module and
// parameter names (facebookresearch/mega, fairseq/modules/mega_layer.py MegaDecoderLayer and
// fairseq/modules/gated_cross_attention.py GatedCrossAttention):
//   MegaDecoderLayer
//     mega_layer: MovingAverageGatedAttention (unidirectional EMA, causal attention)
//     cross_attn: GatedCrossAttention
//       norm.norm.*, k_proj (D -> Z), v_proj (D -> D), q_proj (D -> 2D+Z), h_proj (D -> D),
//       rel_pos_bias.{rel_pos_bias | alpha, beta}
//     nffn: NormalizedFeedForwardNetwork (absent when ffn_hidden_dim = 0)
// Activations are batch-major (B, L, D) for the target and (B, S, D) for the encoder output.
#pragma once
#include <memory>
#include <vector>
#include "mega/cross_attention/cross_attention.h"
#include "mega/layers.h"

namespace megagrad {

// The cross-attention's source side for incremental decoding, computed once per sentence:
// k = k_proj(mem), v = silu(v_proj(mem)) and the source key padding, in double (the decoding
// loops read them at every generated token).
struct CrossAttentionCache {
  int64_t B = 0, S = 0;
  std::vector<double> k, v;  // (B, S, Z), (B, S, D)
  std::vector<double> key_pad;  // (B, S) 1 = pad; empty: no padding
};

// out = query + u * (silu(h_proj(attn(q, k, v) * r)) - query), normalised before (prenorm: the
// query only) or after (postnorm), with
//   u, r, q = sigmoid, silu, identity of the split of q_proj(query) into [D | D | Z];
//   k = k_proj(mem);  v = silu(v_proj(mem));
//   attn: the fused cross-attention (mega/cross_attention/), softmax / laplace / relu2, the
//   relative bias rel_pos_bias(max(L, S))[:L, :S], the source key padding mask.
// Uses of cfg: embed_dim D, z_dim Z, norm_type, norm_affine, prenorm, rel_pos_bias,
// attention_activation, dropout, attention_dropout, hidden_dropout. The bias spans
// max_positions positions (official: max(max_target_positions, max_source_positions)).
class GatedCrossAttention : public Module {
 public:
  // Weights normal(0, 0.02), biases 0, bias parameters normal(0, 0.02), as the official
  // reset_parameters.
  GatedCrossAttention(const MegaLayerConfig& cfg, int64_t max_positions, Generator& gen);
  // query (B, L, D); mem (B, S, D); key_padding_mask (B, S), 1 = pad, mem's dtype, or undefined.
  // Padded queries are not masked (as the official module).
  Tensor forward(const Tensor& query, const Tensor& mem, const Tensor& key_padding_mask);
  // Incremental decoding: the projected source keys and values of mem (B, S, D) with its key
  // padding mask (B, S) (or undefined), once per sentence. No graph is recorded.
  CrossAttentionCache precompute(const Tensor& mem, const Tensor& key_padding_mask);
  // query (B, m, D), the target positions pos .. pos+m-1: what forward() gives at those rows.
  // Costs O(m S (Z + D)) whatever pos is. No graph is recorded, no dropout.
  Tensor forward_incremental(const Tensor& query, const CrossAttentionCache& cache, int64_t pos);
  RelPosBias rel_pos_bias() const;  // handles to the rel_pos_bias module's parameters
  const MegaLayerConfig cfg;
  const int64_t max_positions;
  std::shared_ptr<SequenceNorm> norm;
  std::shared_ptr<Linear> k_proj, v_proj, q_proj, h_proj;
  Generator* dropout_generator = nullptr;  // default generator when null

 private:
  struct BiasParams : Module {
    Tensor* add(const std::string& name, Tensor value) { return &register_parameter(name, std::move(value)); }
    Tensor *weight = nullptr, *alpha = nullptr, *beta = nullptr;
  };
  std::shared_ptr<BiasParams> bias_;
};

// The official MegaDecoderLayer: the causal MovingAverageGatedAttention over the target, then the
// gated cross-attention over the encoder output, then the NFFN. cfg must be a decoder layer's
// (bidirectional = false); cross_max_positions <= 0 means cfg.max_positions.
class MegaDecoderLayer : public Module {
 public:
  MegaDecoderLayer(const MegaLayerConfig& cfg, uint64_t seed, int64_t cross_max_positions = 0);
  // x (B, L, D); mem (B, S, D); padding_mask (B, L) of the target and src_padding_mask (B, S) of
  // the source, 1 = pad, or undefined.
  Tensor forward(const Tensor& x, const Tensor& mem, const Tensor& padding_mask = Tensor(),
                 const Tensor& src_padding_mask = Tensor());
  // Incremental decoding: a target block x (B, m, D) after the tokens in `state` (the causal
  // layer's EMA state and current-chunk keys), with the source side precomputed by
  // cross_attn->precompute(). Equals forward() at those positions. No graph is recorded.
  Tensor forward_incremental(const Tensor& x, const Tensor& padding_mask, LayerState& state,
                             const CrossAttentionCache& cross);
  const MegaLayerConfig cfg;
  std::shared_ptr<MovingAverageGatedAttention> mega_layer;
  std::shared_ptr<GatedCrossAttention> cross_attn;
  std::shared_ptr<NormalizedFeedForwardNetwork> nffn;  // null when ffn_hidden_dim = 0
};

}  // namespace megagrad
