// The Mega layers: each forward follows the official module of the same name line by line
// (spec section 2 for MovingAverageGatedAttention, section 4 for the NFFN, 5 for the norms).
#include "mega/layers.h"
#include <cmath>
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "mega/gates/gates.h"

namespace megagrad {

void MegaLayerConfig::validate() const {
  constexpr std::string_view op = "mega";
  MG_CHECK(embed_dim > 0 && hidden_dim > 0 && z_dim > 0 && n_dim > 0, op,
           "embed_dim, hidden_dim, z_dim and n_dim must be positive (got D={}, H={}, Z={}, N={})", embed_dim,
           hidden_dim, z_dim, n_dim);
  MG_CHECK(ffn_hidden_dim >= 0, op, "ffn_hidden_dim must be >= 0, got {}", ffn_hidden_dim);
  MG_CHECK(chunk_size == -1 || chunk_size > 0, op, "chunk_size must be -1 (none) or positive, got {}", chunk_size);
  MG_CHECK(!truncation || *truncation > 0, op, "truncation must be positive, got {}", truncation.value_or(0));
  MG_CHECK(rel_pos_bias != RelPosBias::Kind::Rotary || z_dim % 2 == 0, op,
           "rotary relative position bias needs an even z_dim, got Z={}", z_dim);
  MG_CHECK(!(causal && bidirectional), op, "causal attention needs a unidirectional EMA (bidirectional=false)");
  MG_CHECK(max_positions > 0, op, "max_positions must be positive, got {}", max_positions);
  for (double p : {dropout, attention_dropout, hidden_dropout})
    MG_CHECK(p >= 0 && p < 1, op, "dropout probabilities must be in [0, 1), got {}", p);
}

// ---------------------------------------------------------------- Linear

Linear::Linear(int64_t in, int64_t out, Generator& gen, double std)
    : weight(register_parameter("weight", normal({out, in}, 0.0, std, DType::Float32, &gen))),
      bias(register_parameter("bias", Tensor::zeros({out}))) {}

Tensor Linear::forward(const Tensor& x) const {
  ForwardScope scope(this);
  return linear(x, weight, bias);
}

// ---------------------------------------------------------------- SequenceNorm

SequenceNorm::Params::Params(NormType type, int64_t dim, bool affine) {
  if (!affine && type != NormType::BatchNorm) return;
  switch (type) {
    case NormType::LayerNorm:
      weight = &register_parameter("weight", Tensor::ones({dim}));
      bias = &register_parameter("bias", Tensor::zeros({dim}));
      break;
    case NormType::ScaleNorm: scalar = &register_parameter("scalar", Tensor::ones({1})); break;
    case NormType::RMSNorm: weight = &register_parameter("weight", Tensor::ones({dim})); break;
    case NormType::BatchNorm:
      if (affine) {
        weight = &register_parameter("weight", Tensor::ones({dim}));
        bias = &register_parameter("bias", Tensor::zeros({dim}));
      }
      running_mean = &register_buffer("running_mean", Tensor::zeros({dim}));
      running_var = &register_buffer("running_var", Tensor::ones({dim}));
      break;
  }
}

SequenceNorm::SequenceNorm(NormType type, int64_t dim, bool affine)
    : type_(type), p_(register_module("norm", std::make_shared<Params>(type, dim, affine))) {}

Tensor SequenceNorm::forward(const Tensor& x) {
  ForwardScope scope(this);
  switch (type_) {
    case NormType::LayerNorm:
      return layer_norm(x, p_->weight ? *p_->weight : Tensor(), p_->bias ? *p_->bias : Tensor(), kEps);
    case NormType::ScaleNorm: {  // scalar * x * rsqrt(mean(x^2) + eps)
      Tensor r = rsqrt(add_scalar(mean(square(x), {-1}, true), kEps));
      return mul(p_->scalar ? mul(x, *p_->scalar) : x, r);
    }
    case NormType::RMSNorm: {  // x * weight * rsqrt(mean(x^2) + eps)
      Tensor r = rsqrt(add_scalar(mean(square(x), {-1}, true), kEps));
      return mul(p_->weight ? mul(x, *p_->weight) : x, r);
    }
    case NormType::BatchNorm: {  // per channel over (batch, time), as torch.nn.BatchNorm1d
      Tensor mu, var_;
      if (is_training()) {
        mu = mean(x, {0, 1});
        var_ = var(x, {0, 1}, false, 0);
        no_grad g;
        const double m = 0.1, n = (double)(x.size(0) * x.size(1));
        Tensor unbiased = mul_scalar(var_.detach(), n / std::max(n - 1, 1.0));
        p_->running_mean->mul_(1 - m).add_(mu.detach().to(p_->running_mean->dtype()), m);
        p_->running_var->mul_(1 - m).add_(unbiased.to(p_->running_var->dtype()), m);
      } else {
        mu = *p_->running_mean, var_ = *p_->running_var;
      }
      Tensor y = mul(sub(x, mu), rsqrt(add_scalar(var_, kEps)));
      if (p_->weight) y = add(mul(y, *p_->weight), *p_->bias);
      return y;
    }
  }
  fail("SequenceNorm", "unknown norm type");
}

// ---------------------------------------------------------------- MultiHeadEMA

namespace {
Tensor ema_beta_init(int64_t E, int64_t N, Generator& gen) {
  // normal(0, 0.02) + [1, -1, 1, -1, ...] over N, as the official reset_parameters
  Tensor b = normal({E, N, 1}, 0.0, 0.02, DType::Float32, &gen);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t n = 0; n < N; ++n) b.set({e, n, 0}, b.at({e, n, 0}) + (n % 2 == 0 ? 1.0 : -1.0));
  return b;
}
}  // namespace

MultiHeadEMA::MultiHeadEMA(int64_t D, int64_t N, bool bidirectional, std::optional<int64_t> truncation,
                           Generator& gen)
    : delta(register_parameter("delta", normal({(bidirectional ? 2 : 1) * D, N, 1}, 0.0, 0.2, DType::Float32, &gen))),
      alpha(register_parameter("alpha", normal({(bidirectional ? 2 : 1) * D, N, 1}, 0.0, 0.2, DType::Float32, &gen))),
      beta(register_parameter("beta", ema_beta_init((bidirectional ? 2 : 1) * D, N, gen))),
      gamma(register_parameter("gamma", normal({(bidirectional ? 2 : 1) * D, N}, 0.0, 1.0, DType::Float32, &gen))),
      omega(register_parameter("omega", normal({D}, 0.0, 1.0, DType::Float32, &gen))),
      options{bidirectional, truncation} {}

Tensor MultiHeadEMA::forward(const Tensor& x, const Tensor& padding_mask) const {
  ForwardScope scope(this);
  return ema(x, padding_mask, params(), options);
}

// ---------------------------------------------------------------- MovingAverageGatedAttention

MovingAverageGatedAttention::MovingAverageGatedAttention(const MegaLayerConfig& c, Generator& gen)
    : cfg((c.validate(), c)),
      norm(register_module("norm", std::make_shared<SequenceNorm>(c.norm_type, c.embed_dim, c.norm_affine))),
      move(register_module("move", std::make_shared<MultiHeadEMA>(c.embed_dim, c.n_dim, c.bidirectional,
                                                                  c.truncation, gen))),
      v_proj(register_module("v_proj", std::make_shared<Linear>(c.embed_dim, c.hidden_dim, gen))),
      mx_proj(register_module("mx_proj", std::make_shared<Linear>(c.embed_dim, c.z_dim + c.hidden_dim + 2 * c.embed_dim, gen))),
      h_proj(register_module("h_proj", std::make_shared<Linear>(c.hidden_dim, c.embed_dim, gen))),
      gamma(register_parameter("gamma", normal({2, c.z_dim}, 0.0, 0.02, DType::Float32, &gen))),
      beta(register_parameter("beta", Tensor::zeros({2, c.z_dim}))),
      bias_(register_module("rel_pos_bias", std::make_shared<BiasParams>())) {
  BiasParams* b = bias_.get();
  int64_t M = c.chunk_size > 0 ? c.chunk_size : c.max_positions;
  if (c.rel_pos_bias == RelPosBias::Kind::Simple) {
    b->weight = b->add("rel_pos_bias", normal({2 * M - 1}, 0.0, 0.02, DType::Float32, &gen));
  } else {
    b->alpha = b->add("alpha", normal({1, c.z_dim}, 0.0, 0.02, DType::Float32, &gen));
    b->beta = b->add("beta", normal({1, c.z_dim}, 0.0, 0.02, DType::Float32, &gen));
  }
}

RelPosBias MovingAverageGatedAttention::rel_pos_bias() const {
  RelPosBias r;
  r.kind = cfg.rel_pos_bias;
  if (bias_->weight) r.weight = *bias_->weight;
  if (bias_->alpha) r.alpha = *bias_->alpha, r.beta = *bias_->beta;
  return r;
}

Tensor MovingAverageGatedAttention::forward(const Tensor& x, const Tensor& padding_mask) {
  return run(x, padding_mask, nullptr);
}

Tensor MovingAverageGatedAttention::forward_incremental(const Tensor& x, const Tensor& padding_mask,
                                                        LayerState& state) {
  MG_CHECK(!cfg.bidirectional, "mega", "incremental decoding needs a decoder layer (bidirectional = false)");
  no_grad guard;
  return run(x, padding_mask, &state);
}

// The layer's forward; with a state, the EMA and the attention continue from earlier blocks.
Tensor MovingAverageGatedAttention::run(const Tensor& x, const Tensor& padding_mask, LayerState* state) {
  ForwardScope scope(this);
  const int64_t D = cfg.embed_dim, Z = cfg.z_dim, H = cfg.hidden_dim;
  MG_CHECK(x.dim() == 3 && x.size(2) == D, "mega", "input must be (B, L, {}), got {}", D, x.desc());
  const bool train = is_training();
  Generator* gen = dropout_generator;
  Tensor residual = x;
  Tensor xn = cfg.prenorm ? norm->forward(x) : x;
  Tensor v = silu(v_proj->forward(xn));                                         // (B,L,H)
  Tensor ema_out = state ? ema_step(xn, padding_mask, move->params(), move->options, state->ema)
                         : move->forward(xn, padding_mask);
  Tensor mx = dropout(ema_out, cfg.dropout, train, gen);                        // (B,L,D)
  Tensor base = mx_proj->forward(mx);                                           // (B,L,D+Z+H+D)
  // u = sigmoid, r = silu, q/k = silu(z) * gamma + beta from the first D+Z+H columns; the last D
  // columns (hx) stay a view of base for the output gate. Fused (mega/gates/) when no graph is
  // recorded; with one, the composed ops measured as fast or faster (S: 25.5 against 25.75 ms,
  // medians of 6; gates.md, "Where the fusion pays").
  Tensor xg = base.narrow(2, 0, D + Z + H);
  InputGates gates = needs_grad({&xg, &gamma, &beta}) ? input_gates_reference(xg, gamma, beta, D)
                                                      : input_gates(xg, gamma, beta, D);
  Tensor u = gates.u, r = gates.r, q = gates.q, k = gates.k;                    // (B,L,D|H|Z|Z)
  Tensor hx = base.narrow(2, D + Z + H, D);                                     // (B,L,D)
  v = dropout(v, cfg.hidden_dropout, train, gen);
  AttentionOptions ao;
  ao.activation = cfg.attention_activation;
  ao.chunk_size = cfg.chunk_size;
  ao.causal = cfg.causal;
  ao.max_positions = cfg.max_positions;
  ao.dropout = cfg.attention_dropout;
  ao.training = train;
  ao.generator = gen;
  Tensor h = state ? attention_incremental(q, k, v, padding_mask, *state)
                   : attention(q, k, v, padding_mask, rel_pos_bias(), ao);      // (B,L,H)
  Tensor hp = h_proj->forward(mul(h, r));
  Tensor out;
  if (train && cfg.dropout > 0) {  // dropout sits between the silu and the gate: the composed ops
    h = dropout(silu(add(hx, hp)), cfg.dropout, train, gen);
    out = add(residual, mul(u, sub(h, residual)));
  } else {  // residual + u * (silu(hx + hp) - residual), one fused op
    out = output_gate(hx, hp, u, residual);
  }
  return cfg.prenorm ? out : norm->forward(out);
}

// ---------------------------------------------------------------- NFFN

NormalizedFeedForwardNetwork::NormalizedFeedForwardNetwork(const MegaLayerConfig& c, Generator& gen)
    : cfg(c),
      norm(register_module("norm", std::make_shared<SequenceNorm>(c.norm_type, c.embed_dim, c.norm_affine))),
      fc1(register_module("fc1", std::make_shared<Linear>(c.embed_dim, c.ffn_hidden_dim, gen))),
      fc2(register_module("fc2", std::make_shared<Linear>(c.ffn_hidden_dim, c.embed_dim, gen))) {}

Tensor NormalizedFeedForwardNetwork::forward(const Tensor& x) {
  ForwardScope scope(this);
  const bool train = is_training();
  Tensor xn = cfg.prenorm ? norm->forward(x) : x;
  Tensor h = dropout(silu(fc1->forward(xn)), cfg.hidden_dropout, train, dropout_generator);
  Tensor y = add(dropout(fc2->forward(h), cfg.dropout, train, dropout_generator), x);
  return cfg.prenorm ? y : norm->forward(y);
}

// ---------------------------------------------------------------- MegaLayer

MegaLayer::MegaLayer(const MegaLayerConfig& c, uint64_t seed) : cfg((c.validate(), c)) {
  Generator gen(seed);
  mega_layer = register_module("mega_layer", std::make_shared<MovingAverageGatedAttention>(c, gen));
  if (c.ffn_hidden_dim > 0) nffn = register_module("nffn", std::make_shared<NormalizedFeedForwardNetwork>(c, gen));
}

Tensor MegaLayer::forward(const Tensor& x, const Tensor& padding_mask) {
  ForwardScope scope(this);
  Tensor y = mega_layer->forward(x, padding_mask);
  return nffn ? nffn->forward(y) : y;
}

Tensor MegaLayer::forward_incremental(const Tensor& x, const Tensor& padding_mask, LayerState& state) {
  no_grad guard;
  Tensor y = mega_layer->forward_incremental(x, padding_mask, state);
  return nffn ? nffn->forward(y) : y;
}

}  // namespace megagrad
