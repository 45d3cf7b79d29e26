// Whole models (spec section 6), with the official parameter names so that checkpoints can be
// compared with PyTorch's:
//   MegaClassifier  the LRA encoder:   encoder.encoder.embed_tokens.embed.weight,
//                   encoder.encoder.layers.<i>.*, encoder.encoder.final_norm.norm.* (prenorm),
//                   classifier.<j>.0.{weight,bias} (j < classifier_layers),
//                   sentence_projection_layer.weight (+ .bias with projection_bias)
//   MegaLM          the language model: decoder.embed_tokens.weight, decoder.layers.<i>.*,
//                   decoder.final_norm.norm.*, decoder.output_projection.weight
//   TransformerClassifier  a plain multi-head softmax Transformer with the same embedding,
//                   pooling and classifier head: the baseline for ablations. Names (ours, no
//                   official counterpart): embed_tokens.weight, layers.<i>.* (TransformerBlock's
//                   names), final_norm.norm.*, classifier.0.0.*, sentence_projection_layer.weight
//   TransformerLM   the causal Transformer decoder, MegaLM's baseline: decoder.embed_tokens.weight,
//                   decoder.embed_positions.weight (learned positions only), decoder.layers.<i>.*
//                   (TransformerBlock's names), decoder.final_norm.norm.*,
//                   decoder.output_projection.weight (untied only)
#pragma once
#include <memory>
#include <vector>
#include "mega/layers.h"

namespace megagrad {

// 1.0 at tokens equal to pad, as the float dtype dt; undefined when there is no pad (the official
// code passes no mask then). Shared by the classifiers, the LM and the encoder–decoder.
Tensor padding_mask_of(const Tensor& tokens, int64_t pad, DType dt);
// Pads (B, L) int64 tokens on the right with `pad` up to a multiple of `chunk` (when chunk > 0
// and L > chunk), as the official encoders and decoders do.
Tensor pad_to_chunk(const Tensor& tokens, int64_t chunk, int64_t pad);

// Sinusoidal positions 0..L-1 (L, D) float32: sin on even, cos on odd features (not trained).
// The Transformer baselines' positions.
Tensor sinusoidal_positions(int64_t L, int64_t D);

// The official LRA model (MegaLRAEncoder + LRAModel's head). Where a default differs from the
// official one it says so; tests/data/ref_models/ holds the official model run by its authors.
struct ClassifierConfig {
  MegaLayerConfig layer;      // every encoder layer (bidirectional EMA)
  int64_t num_layers = 6;
  int64_t vocab_size = 0;     // token input; 0 with real-valued input
  // The id whose positions are padding (masked in every layer, zeroed, left out of the mean).
  // Official: fairseq's dictionary pad index, 1 (ids 0, 2, 3 are <s>, </s>, <unk>). Ours: 0, the
  // pad id of megagrad's datasets; the math is the same, only the id differs.
  int64_t padding_idx = 0;
  bool real_valued_input = false;  // pixels as one real number per step (official embedding_type linear)
  int64_t classifier_dim = 160;    // classifier_out_dim
  // Linear + activation blocks before the projection (official classifier_layers, default 1):
  // classifier.0.0 is (D -> classifier_dim), classifier.<j>.0 for j >= 1 (classifier_dim -> classifier_dim).
  int64_t classifier_layers = 1;
  // A bias on sentence_projection_layer. The official LRAModel (commit aeaa4b4) builds it with
  // bias=False, as our default; the reference cases in tests/data/ref_models/ carry one.
  bool projection_bias = false;
  int64_t num_classes = 10;
};

class MegaClassifier : public Module {
 public:
  MegaClassifier(const ClassifierConfig& cfg, uint64_t seed);
  // tokens: int64 (B, L) (token input) or float (B, L) (real-valued input). Returns logits
  // (B, classes). The official order: embed; zero the padded positions; the layers (with the
  // padding mask, none when nothing is padded); the final norm (prenorm only); zero the padded
  // positions again; the mean over the unpadded positions; per classifier layer
  // gelu(dropout(Linear)); the projection. Token input is padded up to a multiple of the chunk
  // size with padding_idx, as the official encoder does.
  Tensor forward(const Tensor& tokens);
  const ClassifierConfig cfg;

 private:
  struct Encoder;
  std::shared_ptr<Module> encoder_outer_;  // "encoder" (the official LRAEncoder wrapper)
  Encoder* enc_ = nullptr;
  std::vector<std::shared_ptr<Linear>> classifier_;  // classifier.<j>.0
  Tensor* projection_ = nullptr;           // sentence_projection_layer.weight
  Tensor* projection_bias_ = nullptr;      // sentence_projection_layer.bias (projection_bias only)
  Generator* dropout_generator_ = nullptr;
};

struct LMConfig {
  MegaLayerConfig layer;  // every decoder layer (unidirectional EMA, causal)
  int64_t num_layers = 4;
  int64_t vocab_size = 0;
  int64_t padding_idx = 0;
};

class MegaLM : public Module {
 public:
  MegaLM(const LMConfig& cfg, uint64_t seed);
  // tokens int64 (B, L) -> logits (B, L, V). L is padded up to a multiple of the chunk size
  // internally; the logits of the padding are dropped.
  Tensor forward(const Tensor& tokens);
  // Incremental decoding: per-layer states; feed tokens (B, m), get logits (B, m, V) equal to
  // forward()'s at those positions. The cost per token does not grow with the text so far
  // (beyond the current chunk).
  struct State {
    std::vector<LayerState> layers;
  };
  Tensor forward_incremental(const Tensor& tokens, State& state);
  // Samples `count` tokens after `prompt` (1-D int64) with temperature and top-k (0: all). The
  // padding id is never sampled (its logit is masked to -inf before top-k and the softmax): every
  // id returned is in [1, vocab_size) when padding_idx is 0. A NaN logit is an error.
  std::vector<int64_t> generate(const std::vector<int64_t>& prompt, int64_t count, double temperature,
                                int64_t top_k, uint64_t seed);
  const LMConfig cfg;

 private:
  struct Decoder;
  Decoder* dec_ = nullptr;
  Tensor embed(const Tensor& tokens);  // scaled by sqrt(D)
};

// One pre-norm Transformer block: x + attn(norm(x)), then x + ffn(norm(x)), with multi-head softmax
// self-attention (one fused qkv Linear) and a GELU FFN. Names: attn_norm, qkv, out_proj, ffn_norm,
// fc1, fc2. Shared by TransformerClassifier (bidirectional) and TransformerLM (causal).
class TransformerBlock : public Module {
 public:
  // Draws qkv, out_proj, fc1, fc2 from gen in that order.
  TransformerBlock(int64_t embed_dim, int64_t ffn_dim, int64_t num_heads, Generator& gen);
  // x (B, L, D). mask: bool, broadcastable to the scores (B, H, L, L); true where a query must not
  // see a key (undefined: none). dropout p on the attention weights and both residual branches.
  Tensor forward(const Tensor& x, const Tensor& mask, double dropout_p, bool train);
  const int64_t embed_dim, num_heads;

 private:
  std::shared_ptr<SequenceNorm> attn_norm_, ffn_norm_;
  std::shared_ptr<Linear> qkv_, out_proj_, fc1_, fc2_;
};

struct TransformerConfig {
  int64_t embed_dim = 64, ffn_dim = 128, num_heads = 4, num_layers = 2;
  int64_t vocab_size = 0, padding_idx = 0, max_positions = 2048;
  int64_t classifier_dim = 128, num_classes = 10;
  double dropout = 0.0;
};

// Pre-norm Transformer encoder (sinusoidal positions, multi-head softmax attention, GELU FFN),
// mean pooling over non-pad tokens, the same classifier head as MegaClassifier.
class TransformerClassifier : public Module {
 public:
  TransformerClassifier(const TransformerConfig& cfg, uint64_t seed);
  Tensor forward(const Tensor& tokens);
  const TransformerConfig cfg;

 private:
  Tensor* embed_ = nullptr;
  std::vector<std::shared_ptr<TransformerBlock>> blocks_;
  std::shared_ptr<SequenceNorm> final_norm_;
  std::shared_ptr<Linear> classifier_;
  Tensor* projection_ = nullptr;
  Tensor positions_;  // (max_positions, D) sinusoidal table
};

struct TransformerLMConfig {
  int64_t embed_dim = 128, ffn_dim = 256, num_heads = 4, num_layers = 4;
  int64_t vocab_size = 0, padding_idx = 0;
  // Learned positions (fairseq's decoder_learned_pos): a (max_positions, D) table, so sequences
  // may be at most max_positions long. Sinusoidal (false): no table to outgrow, any length.
  bool learned_positions = false;
  int64_t max_positions = 2048;
  // The output projection is the token embedding (PyTorch word_language_model's tie_weights).
  bool tie_weights = false;
  double dropout = 0.0;
};

// Pre-norm causal Transformer decoder: embed (scaled by sqrt(D), as MegaLM) + positions, dropout,
// TransformerBlocks with a causal mask, a final LayerNorm, the output projection.
class TransformerLM : public Module {
 public:
  TransformerLM(const TransformerLMConfig& cfg, uint64_t seed);
  // tokens int64 (B, L) -> logits (B, L, V). Position i sees positions <= i only. Padding keys are
  // masked as well (a position always sees itself, so no row is empty): right padding changes
  // nothing before it.
  Tensor forward(const Tensor& tokens);
  // Samples as MegaLM::generate (the same temperature, top-k, padding and seed rules). No
  // incremental state: every new token runs the full forward over the last `context` tokens
  // (0: max_positions with learned positions, else the whole text so far), O(context^2) per token.
  std::vector<int64_t> generate(const std::vector<int64_t>& prompt, int64_t count, double temperature,
                                int64_t top_k, uint64_t seed, int64_t context = 0);
  const TransformerLMConfig cfg;

 private:
  struct Decoder;
  Decoder* dec_ = nullptr;
};

}  // namespace megagrad
