// The decoder layer with cross-attention, following the official MegaDecoderLayer and
// GatedCrossAttention line by line (decoder_layer.h; the attention core's derivation:
// mega/cross_attention/cross_attention.md).
#include "mega/decoder_layer.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace megagrad {

// ---------------------------------------------------------------- GatedCrossAttention

GatedCrossAttention::GatedCrossAttention(const MegaLayerConfig& c, int64_t max_pos, Generator& gen)
    : cfg((c.validate(), c)),
      max_positions(max_pos),
      // The official registration order: norm, k_proj, v_proj, q_proj, h_proj, rel_pos_bias.
      norm(register_module("norm", std::make_shared<SequenceNorm>(c.norm_type, c.embed_dim, c.norm_affine))),
      k_proj(register_module("k_proj", std::make_shared<Linear>(c.embed_dim, c.z_dim, gen))),
      v_proj(register_module("v_proj", std::make_shared<Linear>(c.embed_dim, c.embed_dim, gen))),
      q_proj(register_module("q_proj", std::make_shared<Linear>(c.embed_dim, 2 * c.embed_dim + c.z_dim, gen))),
      h_proj(register_module("h_proj", std::make_shared<Linear>(c.embed_dim, c.embed_dim, gen))),
      bias_(register_module("rel_pos_bias", std::make_shared<BiasParams>())) {
  MG_CHECK(max_pos > 0, "mega", "the cross-attention's max_positions must be positive, got {}", max_pos);
  BiasParams* b = bias_.get();
  if (c.rel_pos_bias == RelPosBias::Kind::Simple) {
    b->weight = b->add("rel_pos_bias", normal({2 * max_pos - 1}, 0.0, 0.02, DType::Float32, &gen));
  } else {
    b->alpha = b->add("alpha", normal({1, c.z_dim}, 0.0, 0.02, DType::Float32, &gen));
    b->beta = b->add("beta", normal({1, c.z_dim}, 0.0, 0.02, DType::Float32, &gen));
  }
}

RelPosBias GatedCrossAttention::rel_pos_bias() const {
  RelPosBias r;
  r.kind = cfg.rel_pos_bias;
  if (bias_->weight) r.weight = *bias_->weight;
  if (bias_->alpha) r.alpha = *bias_->alpha, r.beta = *bias_->beta;
  return r;
}

Tensor GatedCrossAttention::forward(const Tensor& query, const Tensor& mem, const Tensor& key_padding_mask) {
  ForwardScope scope(this);
  const int64_t D = cfg.embed_dim, Z = cfg.z_dim;
  MG_CHECK(query.dim() == 3 && query.size(2) == D, "cross_attn", "query must be (B, L, {}), got {}", D, query.desc());
  MG_CHECK(mem.dim() == 3 && mem.size(2) == D && mem.size(0) == query.size(0), "cross_attn",
           "mem must be (B, S, {}) with query {}'s batch, got {}", D, query.desc(), mem.desc());
  const bool train = is_training();
  Generator* gen = dropout_generator;
  Tensor qn = cfg.prenorm ? norm->forward(query) : query;
  Tensor base = q_proj->forward(qn);                  // (B,L,2D+Z): [u | r | q]
  Tensor u = sigmoid(base.narrow(2, 0, D));           // (B,L,D)
  Tensor r = silu(base.narrow(2, D, D));              // (B,L,D)
  Tensor q = base.narrow(2, 2 * D, Z);                // (B,L,Z)
  Tensor k = k_proj->forward(mem);                    // (B,S,Z)
  Tensor v = silu(v_proj->forward(mem));              // (B,S,D)
  v = dropout(v, cfg.hidden_dropout, train, gen);
  CrossAttentionOptions o;
  o.activation = cfg.attention_activation;
  o.max_positions = max_positions;
  o.dropout = cfg.attention_dropout;
  o.training = train;
  o.generator = gen;
  Tensor h = cross_attention(q, k, v, key_padding_mask, rel_pos_bias(), o);  // (B,L,D)
  h = dropout(silu(h_proj->forward(mul(h, r))), cfg.dropout, train, gen);
  Tensor out = add(query, mul(u, sub(h, query)));     // torch.addcmul(query, u, h - query)
  return cfg.prenorm ? out : norm->forward(out);
}

// ---------------------------------------------------------------- MegaDecoderLayer

MegaDecoderLayer::MegaDecoderLayer(const MegaLayerConfig& c, uint64_t seed, int64_t cross_max_positions)
    : cfg((c.validate(), c)) {
  MG_CHECK(!c.bidirectional, "mega", "a decoder layer needs a unidirectional EMA (bidirectional = false)");
  Generator gen(seed);
  mega_layer = register_module("mega_layer", std::make_shared<MovingAverageGatedAttention>(c, gen));
  cross_attn = register_module("cross_attn", std::make_shared<GatedCrossAttention>(
                                                 c, cross_max_positions > 0 ? cross_max_positions : c.max_positions, gen));
  if (c.ffn_hidden_dim > 0) nffn = register_module("nffn", std::make_shared<NormalizedFeedForwardNetwork>(c, gen));
}

Tensor MegaDecoderLayer::forward(const Tensor& x, const Tensor& mem, const Tensor& padding_mask,
                                 const Tensor& src_padding_mask) {
  ForwardScope scope(this);
  Tensor y = mega_layer->forward(x, padding_mask);
  y = cross_attn->forward(y, mem, src_padding_mask);
  return nffn ? nffn->forward(y) : y;
}

}  // namespace megagrad
