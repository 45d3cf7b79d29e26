// The decoder layer with cross-attention, following the official MegaDecoderLayer and
// GatedCrossAttention line by line (decoder_layer.h; the attention core's derivation:
// mega/cross_attention/cross_attention.md).
#include "mega/decoder_layer.h"
#include <cmath>
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "mega/attention/activation.h"
#include "mega/attention/rotary_bias.h"
#include "mega/attention/rotary_coeffs.h"

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

CrossAttentionCache GatedCrossAttention::precompute(const Tensor& mem, const Tensor& key_padding_mask) {
  ForwardScope scope(this);
  no_grad guard;
  const int64_t D = cfg.embed_dim;
  MG_CHECK(mem.dim() == 3 && mem.size(2) == D, "cross_attn", "mem must be (B, S, {}), got {}", D, mem.desc());
  CrossAttentionCache c;
  c.B = mem.size(0), c.S = mem.size(1);
  MG_CHECK(!key_padding_mask.defined() || key_padding_mask.shape() == (Shape{c.B, c.S}), "cross_attn",
           "key_padding_mask must be (B, S) = ({}, {}) for mem {}, got {}", c.B, c.S, mem.desc(),
           key_padding_mask.desc());
  MG_CHECK(c.S <= max_positions, "cross_attn", "source length S={} exceeds max_positions {} (mem {})", c.S,
           max_positions, mem.desc());
  c.k = k_proj->forward(mem).to_vector();
  c.v = silu(v_proj->forward(mem)).to_vector();
  if (key_padding_mask.defined()) c.key_pad = key_padding_mask.to_vector();
  return c;
}

// The fused op's math (cross_attention.md) for the rows pos .. pos+m-1, as plain loops in double:
// a decoding step reads the cached S keys and values once, O(S (Z + D)) per token.
Tensor GatedCrossAttention::forward_incremental(const Tensor& query, const CrossAttentionCache& c, int64_t pos) {
  ForwardScope scope(this);
  no_grad guard;
  const int64_t D = cfg.embed_dim, Z = cfg.z_dim, S = c.S;
  MG_CHECK(query.dim() == 3 && query.size(2) == D && query.size(0) == c.B, "cross_attn",
           "query must be (B, m, {}) with the cache's batch B={}, got {}", D, c.B, query.desc());
  const int64_t B = c.B, m = query.size(1);
  MG_CHECK(pos >= 0 && pos + m <= max_positions, "cross_attn",
           "target positions {}..{} exceed max_positions {} (query {})", pos, pos + m - 1, max_positions, query.desc());
  Tensor qn = cfg.prenorm ? norm->forward(query) : query;
  Tensor base = q_proj->forward(qn);                   // (B,m,2D+Z): [u | r | q]
  Tensor u = sigmoid(base.narrow(2, 0, D));
  Tensor r = silu(base.narrow(2, D, D));
  const std::vector<double> q = base.narrow(2, 2 * D, Z).contiguous().to_vector();
  // bias(e), e = j - i, for the offsets of this block only, e in [-(pos+m-1), S-1-pos]: rel[off + e]
  // (S + m - 1 values, however long the prefix).
  const int64_t off = pos + m - 1, e_max = S - 1 - pos;
  std::vector<double> rel((size_t)(S + m - 1));
  const RelPosBias rb = rel_pos_bias();
  if (rb.kind == RelPosBias::Kind::Simple) {
    const std::vector<double> w = rb.weight.to_vector();
    for (int64_t e = -off; e <= e_max; ++e) rel[(size_t)(off + e)] = w[(size_t)(max_positions - 1 + e)];
  } else {  // rotary: the Toeplitz form of rotary_bias.h, only the offsets this block uses
    const std::vector<double> a = rb.alpha.to_vector(), bt = rb.beta.to_vector(), th = rotary_theta(Z);
    const int64_t half = Z / 2;
    for (int64_t e = -off; e <= e_max; ++e) {
      double pc = 0, qs = 0;
      const int64_t ae = e < 0 ? -e : e;
      for (int64_t kk = 0; kk < half; ++kk)
        rotary_rel_term(rotary_pq(a[(size_t)kk], a[(size_t)(kk + half)], bt[(size_t)kk], bt[(size_t)(kk + half)]),
                        th[(size_t)kk], ae, pc, qs);
      rel[(size_t)(off + e)] = e >= 0 ? pc - qs : pc + qs;
    }
  }
  const bool softmax = cfg.attention_activation == AttentionActivation::Softmax;
  const bool padded = !c.key_pad.empty();
  std::vector<double> h((size_t)(B * m * D), 0.0), w((size_t)S);
  for (int64_t b = 0; b < B; ++b) {
    const double* pad = padded ? &c.key_pad[(size_t)(b * S)] : nullptr;
    int64_t visible = S;
    if (padded) {
      visible = 0;
      for (int64_t j = 0; j < S; ++j) visible += pad[j] == 0;
    }
    if (visible == 0) continue;  // a source of padding only: h = 0, as the fused op
    for (int64_t t = 0; t < m; ++t) {
      const int64_t i = pos + t;
      const double* qi = &q[(size_t)((b * m + t) * Z)];
      double mx = -INFINITY;
      for (int64_t j = 0; j < S; ++j) {
        const double* kj = &c.k[(size_t)((b * S + j) * Z)];
        double s = 0;
        for (int64_t z = 0; z < Z; ++z) s += qi[z] * kj[z];
        const double bias = rel[(size_t)(off + j - i)];
        const bool masked = pad && pad[j] != 0;
        if (softmax) {
          w[(size_t)j] = masked ? -INFINITY : s / std::sqrt((double)Z) + bias;
          mx = std::max(mx, w[(size_t)j]);
        } else {
          const double x = s / (double)visible + bias;
          w[(size_t)j] = masked ? 0.0
                         : cfg.attention_activation == AttentionActivation::Relu2
                             ? act_f<AttentionActivation::Relu2, double>(x)
                             : act_f<AttentionActivation::Laplace, double>(x);
        }
      }
      if (softmax) {
        double total = 0;
        for (double& x : w) total += (x = std::exp(x - mx));
        for (double& x : w) x /= total;
      }
      double* hi = &h[(size_t)((b * m + t) * D)];
      for (int64_t j = 0; j < S; ++j) {
        if (w[(size_t)j] == 0) continue;
        const double* vj = &c.v[(size_t)((b * S + j) * D)];
        for (int64_t d = 0; d < D; ++d) hi[d] += w[(size_t)j] * vj[d];
      }
    }
  }
  Tensor hv = Tensor::from_vector(h, {B, m, D}, query.dtype());
  Tensor hh = silu(h_proj->forward(mul(hv, r)));
  Tensor out = add(query, mul(u, sub(hh, query)));
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

Tensor MegaDecoderLayer::forward_incremental(const Tensor& x, const Tensor& padding_mask, LayerState& state,
                                             const CrossAttentionCache& cross) {
  ForwardScope scope(this);
  no_grad guard;
  const int64_t pos = state.pos;  // the block's first target position (the self-attention advances it)
  Tensor y = mega_layer->forward_incremental(x, padding_mask, state);
  y = cross_attn->forward_incremental(y, cross, pos);
  return nffn ? nffn->forward(y) : y;
}

}  // namespace megagrad
