// Encoder-decoder models for translation (issue 14), taking token id tensors:
//   MegaSeq2Seq        the official Mega encoder-decoder (facebookresearch/mega,
//                      fairseq/models/mega.py MegaModel, MegaEncoder, MegaDecoder), official names:
//                        encoder.embed_tokens.weight, encoder.embed_norm.norm.* (normalize_embedding),
//                        encoder.layers.<i>.{mega_layer,nffn}.*, encoder.final_norm.norm.* (prenorm),
//                        decoder.embed_tokens.weight, decoder.embed_norm.norm.*,
//                        decoder.layers.<i>.{mega_layer,cross_attn,nffn}.*, decoder.final_norm.norm.*,
//                        decoder.output_projection.weight
//   TransformerSeq2Seq the baseline from the library's Transformer parts, the same embedding sharing
//   label_smoothed_cross_entropy  fairseq's label_smoothed_nll_loss
// Tokens are batch-major int64 (B, L); the official code is time-major inside.
#pragma once
#include <memory>
#include <string_view>
#include <vector>
#include "core/json.h"
#include "mega/decoder_layer.h"
#include "mega/models.h"

namespace megagrad {

// The official MegaModel's arguments. Encoder and decoder layers each get a MegaLayerConfig; their
// max_positions are the official max_source_positions and max_target_positions, and the decoder's
// cross-attention bias spans the larger of the two (as the official build_cross_attn).
struct Seq2SeqConfig {
  MegaLayerConfig encoder;  // every encoder layer: bidirectional = true, causal = false
  MegaLayerConfig decoder;  // every decoder layer: bidirectional = false, causal = true
  int64_t encoder_layers = 6, decoder_layers = 6;
  int64_t vocab_size = 0;      // the source vocabulary; with share_all_embeddings the joint one
  int64_t tgt_vocab_size = 0;  // 0: vocab_size. Must equal it with share_all_embeddings
  // Official: fairseq's pad index 1; ours 0, megagrad's pad id (as the other models).
  int64_t padding_idx = 0;
  // --share-all-embeddings: encoder input, decoder input and output projection are one (V, D)
  // matrix. --share-decoder-input-output-embed: the decoder's input and output only.
  bool share_all_embeddings = true;
  bool share_decoder_input_output_embed = false;
  bool scale_embedding = true;       // embeddings times sqrt(D) (official: not --no-scale-embedding)
  bool normalize_embedding = false;  // a SequenceNorm on the embeddings (not with prenorm, as official)
  int64_t max_source_positions() const { return encoder.max_positions; }
  int64_t max_target_positions() const { return decoder.max_positions; }
  int64_t target_vocab() const { return tgt_vocab_size > 0 ? tgt_vocab_size : vocab_size; }
  // Throws "[seq2seq] ..." naming the inconsistency.
  void validate() const;
};

// JSON: {"encoder_layers", "decoder_layers", "vocab_size", "tgt_vocab_size", "padding_idx",
// "share_all_embeddings", "share_decoder_input_output_embed", "scale_embedding",
// "normalize_embedding", "encoder": {layer keys}, "decoder": {layer keys}}, the layer keys those of
// mega/config.h. Every key is written; when parsing, "vocab_size", "encoder" and "decoder" are
// required, other missing keys keep the defaults above, and an unknown key or a wrong type is an
// error naming its path. A layer object's direction may be left out (its side sets it).
Json seq2seq_config_to_json(const Seq2SeqConfig& c);
Seq2SeqConfig parse_seq2seq_config(const Json& j, std::string_view what, std::string_view path = "");

// The encoder's output: (B, S, D), zero at padded positions; the source padding mask (B, S),
// 1 = pad, the output's dtype, or undefined when nothing is padded.
struct EncoderOut {
  Tensor out;
  Tensor padding_mask;
};

class MegaSeq2Seq : public Module {
 public:
  MegaSeq2Seq(const Seq2SeqConfig& cfg, uint64_t seed);
  // src_tokens (B, S), prev_output_tokens (B, T) int64 (right padding with padding_idx) ->
  // logits (B, T, target vocab). Teacher forcing: position t sees prev_output_tokens[:, :t+1].
  Tensor forward(const Tensor& src_tokens, const Tensor& prev_output_tokens);
  EncoderOut encode(const Tensor& src_tokens);
  Tensor decode(const Tensor& prev_output_tokens, const EncoderOut& enc);

  // Incremental decoding: begin() runs the encoder once and caches every decoder layer's projected
  // source keys and values; forward_incremental() feeds the next target block (B, m) and returns
  // logits (B, m, V) equal to forward()'s at those positions. Per token the self-attention reads
  // the current chunk (constant with chunking) or the whole prefix (without), the EMA one state,
  // the cross-attention the S cached keys. No graph is recorded.
  struct State {
    EncoderOut enc;
    std::vector<LayerState> self;             // per decoder layer: EMA state, current chunk's keys
    std::vector<CrossAttentionCache> cross;   // per decoder layer: k_proj(mem), silu(v_proj(mem))
    int64_t pos = 0;                          // target tokens consumed
  };
  State begin(const Tensor& src_tokens);
  Tensor forward_incremental(const Tensor& prev_output_tokens, State& state);
  // For beam search: keeps the batch rows new_order (int64 (B'), ids < B, repeats allowed, so
  // B' may differ from B) of everything the state caches, as fairseq's reorder_encoder_out and
  // reorder_incremental_state.
  void reorder_incremental_state(State& state, const Tensor& new_order) const;

  // The official state_dict: state_dict() plus the aliases of the shared embedding
  // (decoder.embed_tokens.weight, decoder.output_projection.weight: the same tensor, as PyTorch
  // lists shared parameters under each name) and the encoder.version / decoder.version buffers
  // (3.0), in the official order.
  NamedTensors official_state_dict() const;
  // Loads an official_state_dict(): aliases must equal the tensor they alias; versions are skipped.
  void load_official_state_dict(const NamedTensors& values);
  const Seq2SeqConfig cfg;

 private:
  struct Side;
  Side *enc_ = nullptr, *dec_ = nullptr;
  Tensor embed(const Side& side, const Tensor& tokens, Tensor& mask);
};

// fairseq's label_smoothed_nll_loss (the facebookresearch/mega tree's
// fairseq/criterions/label_smoothed_cross_entropy.py), summed (reduce=True):
//   nll = -lprobs[target], smooth = -sum_v lprobs[v], both 0 where target == ignore_index,
//   loss = (1 - epsilon) * sum nll + epsilon / V * sum smooth.
// (Later fairseq versions use eps_i = epsilon / (V - 1) and 1 - epsilon - eps_i; this is the
// formula of the tree the official Mega was trained with.) fairseq divides by the token count
// (sample_size) for the gradient: loss / ntokens is torch's cross_entropy with label_smoothing.
// logits (..., V) float; target int64 of logits' shape without the last dim. Differentiable in
// logits (composed of log_softmax, gather, sum).
struct LabelSmoothedLoss {
  Tensor loss, nll_loss;  // scalars (sums)
  int64_t ntokens = 0;    // targets != ignore_index
};
LabelSmoothedLoss label_smoothed_cross_entropy(const Tensor& logits, const Tensor& target, double epsilon = 0.1,
                                               int64_t ignore_index = 0);

// ---------------------------------------------------------------- Transformer baseline

// A pre-norm Transformer decoder layer: TransformerBlock's causal self-attention, then a
// multi-head cross-attention over the encoder output, then the GELU FFN, each x + f(norm(x)).
// Names: attn_norm, qkv, out_proj (as TransformerBlock), cross_norm, cross_q, cross_kv,
// cross_out_proj, ffn_norm, fc1, fc2.
class TransformerDecoderLayer : public Module {
 public:
  TransformerDecoderLayer(int64_t embed_dim, int64_t ffn_dim, int64_t num_heads, Generator& gen);
  // x (B, L, D); mem (B, S, D); self_mask bool (B, 1, L, L) and src_mask bool (B, 1, 1, S), true
  // where a query must not see a key (undefined: none).
  Tensor forward(const Tensor& x, const Tensor& mem, const Tensor& self_mask, const Tensor& src_mask,
                 double dropout_p, bool train);
  // The KV cache: the self-attention's keys and values so far (B, heads, t, dh), and the
  // cross-attention's projected source keys and values (B, heads, S, dh), computed once.
  struct Cache {
    Tensor self_k, self_v, cross_k, cross_v;
  };
  void precompute(const Tensor& mem, Cache& cache);
  // x (B, m, D) at positions t .. t+m-1 (t = cached keys); self_mask bool (B, 1, m, t+m).
  Tensor forward_incremental(const Tensor& x, const Tensor& self_mask, const Tensor& src_mask, Cache& cache);
  const int64_t embed_dim, num_heads;

 private:
  std::shared_ptr<SequenceNorm> attn_norm_, cross_norm_, ffn_norm_;
  std::shared_ptr<Linear> qkv_, out_proj_, cross_q_, cross_kv_, cross_out_, fc1_, fc2_;
  Tensor heads(const Tensor& t) const;    // (B, L, D) -> (B, H, L, dh)
  Tensor merge(const Tensor& t) const;    // (B, H, L, dh) -> (B, L, D)
  Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double p, bool train) const;
  Tensor feed_forward(const Tensor& x, double p, bool train);
};

struct TransformerSeq2SeqConfig {
  int64_t embed_dim = 64, ffn_dim = 128, num_heads = 4, encoder_layers = 2, decoder_layers = 2;
  int64_t vocab_size = 0, tgt_vocab_size = 0, padding_idx = 0;  // as Seq2SeqConfig
  int64_t max_source_positions = 1024, max_target_positions = 1024;
  bool share_all_embeddings = true;
  double dropout = 0.0;
  int64_t target_vocab() const { return tgt_vocab_size > 0 ? tgt_vocab_size : vocab_size; }
};

// Pre-norm Transformer encoder-decoder: embeddings (N(0, D^-1/2), zero padding row) times sqrt(D)
// plus sinusoidal positions; TransformerBlocks with the source key padding mask and a final
// LayerNorm; TransformerDecoderLayers and a final LayerNorm; the output projection. Names:
// encoder.embed_tokens.weight, encoder.layers.<i>.*, encoder.final_norm.norm.*,
// decoder.embed_tokens.weight and decoder.output_projection.weight (unshared only),
// decoder.layers.<i>.*, decoder.final_norm.norm.*.
class TransformerSeq2Seq : public Module {
 public:
  TransformerSeq2Seq(const TransformerSeq2SeqConfig& cfg, uint64_t seed);
  Tensor forward(const Tensor& src_tokens, const Tensor& prev_output_tokens);
  EncoderOut encode(const Tensor& src_tokens);
  Tensor decode(const Tensor& prev_output_tokens, const EncoderOut& enc);
  struct State {
    EncoderOut enc;
    Tensor src_mask;                                  // bool (B, 1, 1, S) or undefined
    std::vector<TransformerDecoderLayer::Cache> layers;
    std::vector<int64_t> tokens;                      // (B, pos) the target so far (its padding)
    int64_t pos = 0;
  };
  State begin(const Tensor& src_tokens);
  Tensor forward_incremental(const Tensor& prev_output_tokens, State& state);
  void reorder_incremental_state(State& state, const Tensor& new_order) const;  // as MegaSeq2Seq's
  const TransformerSeq2SeqConfig cfg;

 private:
  struct Side;
  Side *enc_ = nullptr, *dec_ = nullptr;
  Tensor positions(int64_t first, int64_t count, DType dt);
  Tensor sinusoids_;
};

}  // namespace megagrad
