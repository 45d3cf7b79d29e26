// The Mega layers of spec sections 2, 4, 5, 6, with the official module and parameter names:
//   MegaLayer (an encoder layer, or a decoder layer when unidirectional)
//     mega_layer: MovingAverageGatedAttention
//       norm.norm.*, move.{delta,alpha,beta,gamma,omega}, v_proj, mx_proj, h_proj, gamma, beta,
//       rel_pos_bias.{rel_pos_bias | alpha, beta}
//     nffn: NormalizedFeedForwardNetwork (absent when ffn_hidden_dim = 0)
//       norm.norm.*, fc1, fc2
// Activations are batch-major (B, L, D); the official code is time-major (L, B, D).
#pragma once
#include <optional>
#include <string>
#include "core/rng.h"
#include "mega/attention/attention.h"
#include "mega/ema/ema.h"
#include "mega/module.h"

namespace megagrad {

enum class NormType { LayerNorm, ScaleNorm, RMSNorm, BatchNorm };

struct MegaLayerConfig {
  int64_t embed_dim = 0;       // D
  int64_t hidden_dim = 0;      // H
  int64_t ffn_hidden_dim = 0;  // F (0: no NFFN)
  int64_t z_dim = 0;           // Z
  int64_t n_dim = 16;          // N
  int64_t chunk_size = -1;     // C (-1: no chunking)
  std::optional<int64_t> truncation;
  RelPosBias::Kind rel_pos_bias = RelPosBias::Kind::Simple;
  int64_t max_positions = 1024;
  AttentionActivation attention_activation = AttentionActivation::Softmax;
  NormType norm_type = NormType::LayerNorm;
  bool norm_affine = true;
  bool prenorm = true;
  bool bidirectional = true;  // true: encoder layer; false: decoder layer
  bool causal = false;        // causal attention mask (decoder layers only)
  double dropout = 0.0, attention_dropout = 0.0, hidden_dropout = 0.0;
  // Throws "[mega] ..." for an inconsistent configuration (e.g. odd Z with rotary).
  void validate() const;
};

class Linear : public Module {
 public:
  // weight (out, in) ~ normal(0, std), bias 0, as the official reset_parameters.
  Linear(int64_t in, int64_t out, Generator& gen, double std = 0.02);
  Tensor forward(const Tensor& x) const;
  Tensor& weight;
  Tensor& bias;
};

// SequenceNorm: the official wrapper whose child `norm` holds the parameters.
class SequenceNorm : public Module {
 public:
  SequenceNorm(NormType type, int64_t dim, bool affine);
  Tensor forward(const Tensor& x);  // x (B, L, D)
  NormType type() const { return type_; }

 private:
  struct Params : Module {
    Params(NormType type, int64_t dim, bool affine);
    // Null where the norm type (or affine = false) has no such tensor.
    Tensor *weight = nullptr, *bias = nullptr, *scalar = nullptr, *running_mean = nullptr,
           *running_var = nullptr;
  };
  NormType type_;
  std::shared_ptr<Params> p_;
  static constexpr double kEps = 1e-5;
};

class MultiHeadEMA : public Module {
 public:
  MultiHeadEMA(int64_t D, int64_t N, bool bidirectional, std::optional<int64_t> truncation, Generator& gen);
  Tensor forward(const Tensor& x, const Tensor& padding_mask) const;
  EmaParams params() const { return {delta, alpha, beta, gamma, omega}; }
  Tensor &delta, &alpha, &beta, &gamma, &omega;
  EmaOptions options;
};

// Incremental decoding state of one decoder layer: the EMA state and the keys, values and key
// padding of the current chunk (spec section 6).
struct LayerState {
  EmaState ema;
  int64_t pos = 0;        // tokens consumed
  Tensor keys, values;    // (B, c, Z), (B, c, H): the current chunk's tokens so far (float64)
  Tensor key_pad;         // (B, c) 1 = pad
};

class MovingAverageGatedAttention : public Module {
 public:
  MovingAverageGatedAttention(const MegaLayerConfig& cfg, Generator& gen);
  // x (B, L, D); padding_mask (B, L) with 1 at pads, x's dtype, or undefined.
  Tensor forward(const Tensor& x, const Tensor& padding_mask);
  // Decoder layers only: feeds a block x (B, m, D) after the tokens in `state` and returns what
  // forward() gives at those positions. No graph is recorded.
  Tensor forward_incremental(const Tensor& x, const Tensor& padding_mask, LayerState& state);
  const MegaLayerConfig cfg;
  std::shared_ptr<SequenceNorm> norm;
  std::shared_ptr<MultiHeadEMA> move;
  std::shared_ptr<Linear> v_proj, mx_proj, h_proj;
  Tensor &gamma, &beta;
  Generator* dropout_generator = nullptr;  // default generator when null
  RelPosBias rel_pos_bias() const;         // handles to the rel_pos_bias module's parameters

 private:
  struct BiasParams : Module {
    Tensor* add(const std::string& name, Tensor value) { return &register_parameter(name, std::move(value)); }
    Tensor *weight = nullptr, *alpha = nullptr, *beta = nullptr;
  };
  std::shared_ptr<BiasParams> bias_;
  Tensor run(const Tensor& x, const Tensor& padding_mask, LayerState* state);
  // The attention of a block of new queries against the current chunk's cached keys.
  Tensor attention_incremental(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& padding_mask,
                               LayerState& state) const;
};

class NormalizedFeedForwardNetwork : public Module {
 public:
  NormalizedFeedForwardNetwork(const MegaLayerConfig& cfg, Generator& gen);
  Tensor forward(const Tensor& x);
  const MegaLayerConfig cfg;
  std::shared_ptr<SequenceNorm> norm;
  std::shared_ptr<Linear> fc1, fc2;
  Generator* dropout_generator = nullptr;
};

// An encoder layer (bidirectional EMA) or a decoder layer (unidirectional EMA, causal).
class MegaLayer : public Module {
 public:
  MegaLayer(const MegaLayerConfig& cfg, uint64_t seed);
  Tensor forward(const Tensor& x, const Tensor& padding_mask = Tensor());
  // Incremental decoding (decoder layers): equals forward() on the whole sequence, block by block.
  Tensor forward_incremental(const Tensor& x, const Tensor& padding_mask, LayerState& state);
  const MegaLayerConfig cfg;
  std::shared_ptr<MovingAverageGatedAttention> mega_layer;
  std::shared_ptr<NormalizedFeedForwardNetwork> nffn;  // null when ffn_hidden_dim = 0
};

}  // namespace megagrad
