// MegaClassifier, MegaLM and the Transformer baseline. Each forward follows the official model
// (fairseq/models/lra/mega_lra_encoder.py + model.py; fairseq/models/mega_lm.py), batch-major.
#include "mega/models.h"
#include <algorithm>
#include <cmath>
#include <functional>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"

namespace megagrad {

namespace {
// Xavier-uniform (the official classifier Linear): U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
Tensor xavier_uniform(int64_t out, int64_t in, Generator& gen) {
  double a = std::sqrt(6.0 / (double)(in + out));
  return uniform({out, in}, -a, a, DType::Float32, &gen);
}

void check_tokens(std::string_view op, const Tensor& tokens, int64_t vocab) {
  MG_CHECK(tokens.defined() && tokens.dtype() == DType::Int64 && tokens.dim() == 2, op,
           "tokens must be int64 (B, L), got {}", tokens.desc());
  MG_CHECK(tokens.size(1) >= 1, op, "empty sequences: {}", tokens.desc());
  for (int64_t t : tokens.to_int_vector())
    MG_CHECK(t >= 0 && t < vocab, op, "token id {} out of range for a vocabulary of {}", t, vocab);
}

void check_generate_args(const std::vector<int64_t>& prompt, int64_t count, double temperature, int64_t top_k) {
  MG_CHECK(!prompt.empty(), "generate", "the prompt must hold at least one token");
  MG_CHECK(count >= 0, "generate", "count must be >= 0, got {}", count);
  MG_CHECK(temperature > 0 && std::isfinite(temperature), "generate", "temperature must be positive and finite, got {}",
           temperature);
  MG_CHECK(top_k >= 0, "generate", "top_k must be >= 0, got {}", top_k);
}

// One draw from softmax(l / temperature) over the top_k largest logits (0: all) of the vocabulary
// l (V), with the draw's uniform at Philox counter `counter` (advanced). Only real tokens may be
// drawn: the padding id's logit is -inf before top-k and the softmax, so that neither a large
// padding logit nor rounding can pick it. A NaN logit is an error naming the step.
int64_t sample_token(std::vector<double> l, int64_t padding_idx, double temperature, int64_t top_k, uint64_t seed,
                     uint64_t& counter, int64_t step) {
  const int64_t V = (int64_t)l.size();
  std::vector<int64_t> allowed;
  for (int64_t v = 0; v < V; ++v) {
    MG_CHECK(!std::isnan(l[(size_t)v]), "generate", "the logit of id {} is NaN at step {}", v, step);
    if (v == padding_idx) l[(size_t)v] = -INFINITY;
    else allowed.push_back(v);
  }
  MG_CHECK(!allowed.empty(), "generate", "the vocabulary of {} ids holds only the padding id", V);
  // Top-k among the allowed ids: keep the k largest logits (ties at the k-th are all kept).
  double cut = -INFINITY;
  if (top_k > 0 && top_k < (int64_t)allowed.size()) {
    std::vector<double> sorted;
    for (int64_t v : allowed) sorted.push_back(l[(size_t)v]);
    std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<double>());
    cut = sorted[(size_t)(top_k - 1)];
  }
  double mx = -INFINITY;
  for (int64_t v : allowed) mx = std::max(mx, l[(size_t)v]);
  MG_CHECK(mx > -INFINITY && mx < INFINITY, "generate", "the largest logit is {} at step {}", mx, step);
  // softmax(l / temperature) over the kept ids, then one uniform draw.
  std::vector<double> p((size_t)V, 0.0);
  double total = 0;
  int64_t last = -1;  // the last id with a positive probability: the draw's fallback for rounding
  for (int64_t v : allowed)
    if (l[(size_t)v] >= cut) {
      total += p[(size_t)v] = std::exp((l[(size_t)v] - mx) / temperature);
      if (p[(size_t)v] > 0) last = v;
    }
  MG_CHECK(last >= 0 && std::isfinite(total), "generate", "no id has a positive probability at step {}", step);
  double r = uniform_at(seed, counter++, 0.0, total), acc = 0;
  for (int64_t v : allowed)
    if (p[(size_t)v] > 0 && (acc += p[(size_t)v]) > r) return v;
  return last;
}
}  // namespace

Tensor padding_mask_of(const Tensor& tokens, int64_t pad, DType dt) {
  std::vector<int64_t> t = tokens.to_int_vector();
  std::vector<double> m(t.size());
  bool any = false;
  for (size_t i = 0; i < t.size(); ++i) any |= (m[i] = t[i] == pad ? 1.0 : 0.0) != 0;
  return any ? Tensor::from_vector(m, tokens.shape(), dt) : Tensor();
}

Tensor pad_to_chunk(const Tensor& tokens, int64_t chunk, int64_t pad) {
  const int64_t B = tokens.size(0), L = tokens.size(1);
  if (chunk <= 0 || L <= chunk || L % chunk == 0) return tokens;
  const int64_t Lp = (L + chunk - 1) / chunk * chunk;
  std::vector<int64_t> t = tokens.to_int_vector(), out((size_t)(B * Lp), pad);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < L; ++i) out[(size_t)(b * Lp + i)] = t[(size_t)(b * L + i)];
  return Tensor::from_vector(out, {B, Lp});
}

Tensor sinusoidal_positions(int64_t L, int64_t D) {
  std::vector<double> pe((size_t)(L * D));
  for (int64_t p = 0; p < L; ++p)
    for (int64_t i = 0; i < D; ++i) {
      double f = std::pow(10000.0, -(double)(i / 2 * 2) / (double)D) * (double)p;
      pe[(size_t)(p * D + i)] = i % 2 == 0 ? std::sin(f) : std::cos(f);
    }
  return Tensor::from_vector(pe, {L, D});
}

// ---------------------------------------------------------------- MegaClassifier

struct MegaClassifier::Encoder : Container {
  Tensor* embed = nullptr;       // embed_tokens.embed.weight (V, D), or embed_tokens.weight (D)
  Tensor* embed_bias = nullptr;  // real-valued input: embed_tokens.bias (D)
  std::vector<std::shared_ptr<MegaLayer>> layers;
  std::shared_ptr<SequenceNorm> final_norm;  // prenorm only
};

MegaClassifier::MegaClassifier(const ClassifierConfig& c, uint64_t seed) : cfg(c) {
  MG_CHECK(c.layer.bidirectional && !c.layer.causal, "MegaClassifier", "encoder layers must be bidirectional, not causal");
  MG_CHECK(c.real_valued_input || c.vocab_size > 0, "MegaClassifier", "vocab_size must be positive for token input");
  MG_CHECK(c.num_layers >= 1 && c.num_classes >= 2 && c.classifier_dim >= 1, "MegaClassifier",
           "needs >= 1 layer, >= 2 classes and a positive classifier width");
  MG_CHECK(c.classifier_layers >= 1, "MegaClassifier", "classifier_layers must be >= 1, got {}", c.classifier_layers);
  MG_CHECK(c.real_valued_input || (c.padding_idx >= 0 && c.padding_idx < c.vocab_size), "MegaClassifier",
           "padding_idx {} is not an id of the vocabulary of {}", c.padding_idx, c.vocab_size);
  Generator gen(seed);
  const int64_t D = c.layer.embed_dim;
  auto outer = std::make_shared<Container>();
  auto enc = outer->add_module("encoder", std::make_shared<Encoder>());
  encoder_outer_ = register_module("encoder", outer);
  enc_ = enc.get();
  auto emb = enc->add_module("embed_tokens", std::make_shared<Container>());
  if (c.real_valued_input) {
    enc->embed = &emb->add_parameter("weight", normal({D}, 0.0, 0.1, DType::Float32, &gen));
    enc->embed_bias = &emb->add_parameter("bias", Tensor::zeros({D}));
  } else {  // normal(0, D^-0.5), as the official Embedding.reset_parameters
    auto inner = emb->add_module("embed", std::make_shared<Container>());
    enc->embed = &inner->add_parameter("weight", normal({c.vocab_size, D}, 0.0, std::pow((double)D, -0.5), DType::Float32, &gen));
  }
  auto list = enc->add_module("layers", std::make_shared<Container>());
  for (int64_t i = 0; i < c.num_layers; ++i)
    enc->layers.push_back(list->add_module(std::to_string(i), std::make_shared<MegaLayer>(c.layer, seed + 1 + (uint64_t)i)));
  if (c.layer.prenorm)
    enc->final_norm = enc->add_module("final_norm", std::make_shared<SequenceNorm>(c.layer.norm_type, D, c.layer.norm_affine));
  // The head: classifier.<j> is the official nn.Sequential(Linear, dropout), so the Linear is
  // classifier.<j>.0. Xavier-uniform weights and zero biases, as the official Linear().
  auto cls = register_module("classifier", std::make_shared<Container>());
  for (int64_t j = 0; j < c.classifier_layers; ++j) {
    const int64_t in = j == 0 ? D : c.classifier_dim;
    auto block = cls->add_module(std::to_string(j), std::make_shared<Container>());
    auto lin = block->add_module("0", std::make_shared<Linear>(in, c.classifier_dim, gen));
    no_grad g;
    lin->weight.copy_(xavier_uniform(c.classifier_dim, in, gen));
    classifier_.push_back(lin);
  }
  auto proj = register_module("sentence_projection_layer", std::make_shared<Container>());
  projection_ = &proj->add_parameter("weight", xavier_uniform(c.num_classes, c.classifier_dim, gen));
  if (c.projection_bias) projection_bias_ = &proj->add_parameter("bias", Tensor::zeros({c.num_classes}));
}

Tensor MegaClassifier::forward(const Tensor& input) {
  const bool train = is_training();
  const MegaLayerConfig& L = cfg.layer;
  const DType dt = enc_->embed->dtype();
  Tensor x, mask;
  if (cfg.real_valued_input) {
    MG_CHECK(input.dim() == 2 && input.dtype() == dt, "MegaClassifier", "real-valued input must be {} (B, L), got {}",
             dtype_name(dt), input.desc());
    MG_CHECK(L.chunk_size <= 0 || input.size(1) <= L.chunk_size || input.size(1) % L.chunk_size == 0,
             "MegaClassifier", "sequence length {} must be a multiple of the chunk size {}", input.size(1), L.chunk_size);
    x = add(mul(input.unsqueeze(2), *enc_->embed), *enc_->embed_bias);  // (B, L, D)
  } else {
    check_tokens("MegaClassifier", input, cfg.vocab_size);
    Tensor tokens = pad_to_chunk(input, L.chunk_size, cfg.padding_idx);
    mask = padding_mask_of(tokens, cfg.padding_idx, dt);
    x = embedding(*enc_->embed, tokens);
  }
  x = dropout(x, L.dropout, train, dropout_generator_);
  Tensor keep = mask.defined() ? add_scalar(neg(mask), 1.0).unsqueeze(2) : Tensor();  // (B, L, 1)
  if (keep.defined()) x = mul(x, keep);
  for (auto& layer : enc_->layers) x = layer->forward(x, mask);
  if (enc_->final_norm) x = enc_->final_norm->forward(x);
  // Mean pooling over the non-pad positions ('mp'): the padded positions zeroed again (the final
  // norm and the layers' residuals make them nonzero), the sum divided by the unpadded length.
  Tensor rep;
  if (keep.defined()) rep = div(sum(mul(x, keep), {1}), sum(keep, {1}));
  else rep = mean(x, {1});
  // Per classifier layer the official activation(Sequential(Linear, dropout)(rep)): dropout
  // before gelu.
  for (auto& lin : classifier_) rep = gelu(dropout(lin->forward(rep), L.dropout, train, dropout_generator_));
  return projection_bias_ ? linear(rep, *projection_, *projection_bias_) : linear(rep, *projection_);
}

// ---------------------------------------------------------------- MegaLM

struct MegaLM::Decoder : Container {
  Tensor* embed = nullptr;
  std::vector<std::shared_ptr<MegaLayer>> layers;
  std::shared_ptr<SequenceNorm> final_norm;
  Tensor* output_projection = nullptr;
};

MegaLM::MegaLM(const LMConfig& c, uint64_t seed) : cfg(c) {
  MG_CHECK(!c.layer.bidirectional && c.layer.causal, "MegaLM", "decoder layers must be unidirectional and causal");
  MG_CHECK(c.vocab_size > 1 && c.num_layers >= 1, "MegaLM", "needs a vocabulary and at least one layer");
  Generator gen(seed);
  const int64_t D = c.layer.embed_dim;
  auto dec = register_module("decoder", std::make_shared<Decoder>());
  dec_ = dec.get();
  auto emb = dec->add_module("embed_tokens", std::make_shared<Container>());
  Tensor w = normal({c.vocab_size, D}, 0.0, std::pow((double)D, -0.5), DType::Float32, &gen);
  for (int64_t d = 0; d < D; ++d) w.set({c.padding_idx, d}, 0.0);  // nn.Embedding's padding row
  dec->embed = &emb->add_parameter("weight", w);
  auto list = dec->add_module("layers", std::make_shared<Container>());
  for (int64_t i = 0; i < c.num_layers; ++i)
    dec->layers.push_back(list->add_module(std::to_string(i), std::make_shared<MegaLayer>(c.layer, seed + 1 + (uint64_t)i)));
  if (c.layer.prenorm)
    dec->final_norm = dec->add_module("final_norm", std::make_shared<SequenceNorm>(c.layer.norm_type, D, c.layer.norm_affine));
  auto proj = dec->add_module("output_projection", std::make_shared<Container>());
  dec->output_projection = &proj->add_parameter("weight", normal({c.vocab_size, D}, 0.0, std::pow((double)D, -0.5), DType::Float32, &gen));
}

Tensor MegaLM::embed(const Tensor& tokens) {
  Tensor x = mul_scalar(embedding(*dec_->embed, tokens), std::sqrt((double)cfg.layer.embed_dim));
  return dropout(x, cfg.layer.dropout, is_training(), nullptr);
}

Tensor MegaLM::forward(const Tensor& input) {
  check_tokens("MegaLM", input, cfg.vocab_size);
  const int64_t L = input.size(1);
  Tensor tokens = pad_to_chunk(input, cfg.layer.chunk_size, cfg.padding_idx);
  Tensor mask = padding_mask_of(tokens, cfg.padding_idx, dec_->embed->dtype());
  Tensor x = embed(tokens);
  for (auto& layer : dec_->layers) x = layer->forward(x, mask);
  if (dec_->final_norm) x = dec_->final_norm->forward(x);
  if (x.size(1) != L) x = x.narrow(1, 0, L);  // causal: the padding after L changes nothing before it
  return linear(x, *dec_->output_projection);
}

Tensor MegaLM::forward_incremental(const Tensor& tokens, State& state) {
  check_tokens("MegaLM", tokens, cfg.vocab_size);
  no_grad g;
  if (state.layers.empty()) state.layers.resize(dec_->layers.size());
  Tensor mask = padding_mask_of(tokens, cfg.padding_idx, dec_->embed->dtype());
  Tensor x = embed(tokens);
  for (size_t i = 0; i < dec_->layers.size(); ++i) x = dec_->layers[i]->forward_incremental(x, mask, state.layers[i]);
  if (dec_->final_norm) x = dec_->final_norm->forward(x);
  return linear(x, *dec_->output_projection);
}

std::vector<int64_t> MegaLM::generate(const std::vector<int64_t>& prompt, int64_t count, double temperature,
                                      int64_t top_k, uint64_t seed) {
  check_generate_args(prompt, count, temperature, top_k);
  const int64_t V = cfg.vocab_size;
  State st;
  Tensor logits = forward_incremental(Tensor::from_vector(prompt, {1, (int64_t)prompt.size()}), st);
  MG_CHECK(logits.dim() == 3 && logits.size(2) == V, "generate", "logits are {}, expected (1, L, {})", logits.desc(), V);
  std::vector<int64_t> out;
  uint64_t counter = 0;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t next = sample_token(logits.select(1, logits.size(1) - 1).to_vector(), cfg.padding_idx, temperature,
                                      top_k, seed, counter, i);
    out.push_back(next);
    logits = forward_incremental(Tensor::from_vector(std::vector<int64_t>{next}, {1, 1}), st);
  }
  return out;
}

// ---------------------------------------------------------------- Transformer baseline

TransformerBlock::TransformerBlock(int64_t D, int64_t ffn_dim, int64_t heads, Generator& gen)
    : embed_dim(D), num_heads(heads) {
  MG_CHECK(D >= 1 && heads >= 1 && D % heads == 0 && ffn_dim >= 1, "TransformerBlock",
           "embed_dim {} must be a positive multiple of num_heads {}, and ffn_dim {} positive", D, heads, ffn_dim);
  attn_norm_ = register_module("attn_norm", std::make_shared<SequenceNorm>(NormType::LayerNorm, D, true));
  qkv_ = register_module("qkv", std::make_shared<Linear>(D, 3 * D, gen));
  out_proj_ = register_module("out_proj", std::make_shared<Linear>(D, D, gen));
  ffn_norm_ = register_module("ffn_norm", std::make_shared<SequenceNorm>(NormType::LayerNorm, D, true));
  fc1_ = register_module("fc1", std::make_shared<Linear>(D, ffn_dim, gen));
  fc2_ = register_module("fc2", std::make_shared<Linear>(ffn_dim, D, gen));
}

Tensor TransformerBlock::forward(const Tensor& x, const Tensor& mask, double p, bool train) {
  MG_CHECK(x.dim() == 3 && x.size(2) == embed_dim, "TransformerBlock", "x must be (B, L, {}), got {}", embed_dim,
           x.desc());
  const int64_t B = x.size(0), L = x.size(1), D = embed_dim, Hn = num_heads, dh = D / Hn;
  Tensor h = attn_norm_->forward(x);
  std::vector<Tensor> qkv = split(qkv_->forward(h), {D, D, D}, -1);
  auto heads = [&](const Tensor& t) { return t.reshape({B, L, Hn, dh}).permute({0, 2, 1, 3}); };  // (B,H,L,dh)
  Tensor s = mul_scalar(matmul(heads(qkv[0]), heads(qkv[1]).transpose(2, 3)), 1.0 / std::sqrt((double)dh));
  if (mask.defined()) s = masked_fill(s, mask, -INFINITY);
  Tensor a = matmul(dropout(softmax(s, -1), p, train), heads(qkv[2]));  // (B,H,L,dh)
  Tensor y = add(x, dropout(out_proj_->forward(a.permute({0, 2, 1, 3}).reshape({B, L, D})), p, train));
  h = ffn_norm_->forward(y);
  return add(y, dropout(fc2_->forward(gelu(fc1_->forward(h))), p, train));
}

TransformerClassifier::TransformerClassifier(const TransformerConfig& c, uint64_t seed) : cfg(c) {
  MG_CHECK(c.embed_dim % c.num_heads == 0, "TransformerClassifier", "embed_dim {} is not a multiple of num_heads {}",
           c.embed_dim, c.num_heads);
  Generator gen(seed);
  const int64_t D = c.embed_dim;
  auto emb = register_module("embed_tokens", std::make_shared<Container>());
  embed_ = &emb->add_parameter("weight", normal({c.vocab_size, D}, 0.0, std::pow((double)D, -0.5), DType::Float32, &gen));
  auto list = register_module("layers", std::make_shared<Container>());
  for (int64_t i = 0; i < c.num_layers; ++i)
    blocks_.push_back(list->add_module(std::to_string(i), std::make_shared<TransformerBlock>(D, c.ffn_dim, c.num_heads, gen)));
  final_norm_ = register_module("final_norm", std::make_shared<SequenceNorm>(NormType::LayerNorm, D, true));
  auto cls = register_module("classifier", std::make_shared<Container>());
  classifier_ = cls->add_module("0", std::make_shared<Container>())->add_module("0", std::make_shared<Linear>(D, c.classifier_dim, gen));
  auto proj = register_module("sentence_projection_layer", std::make_shared<Container>());
  projection_ = &proj->add_parameter("weight", xavier_uniform(c.num_classes, c.classifier_dim, gen));
  positions_ = sinusoidal_positions(c.max_positions, D);
}

Tensor TransformerClassifier::forward(const Tensor& tokens) {
  check_tokens("TransformerClassifier", tokens, cfg.vocab_size);
  const int64_t B = tokens.size(0), L = tokens.size(1), D = cfg.embed_dim;
  MG_CHECK(L <= cfg.max_positions, "TransformerClassifier", "sequence length {} exceeds max_positions {}", L,
           cfg.max_positions);
  const bool train = is_training();
  const DType dt = embed_->dtype();
  Tensor mask = padding_mask_of(tokens, cfg.padding_idx, dt);
  Tensor x = add(mul_scalar(embedding(*embed_, tokens), std::sqrt((double)D)), positions_.narrow(0, 0, L).to(dt));
  x = dropout(x, cfg.dropout, train);
  Tensor key_pad;  // (B, 1, 1, L) bool: pads never receive attention
  if (mask.defined()) {
    std::vector<double> m = mask.to_vector();
    Tensor mb = Tensor::empty({B, 1, 1, L}, DType::Bool);
    bool* p = mb.data_ptr<bool>();
    for (size_t i = 0; i < m.size(); ++i) p[i] = m[i] != 0;
    key_pad = mb;
  }
  for (auto& b : blocks_) x = b->forward(x, key_pad, cfg.dropout, train);
  x = final_norm_->forward(x);
  Tensor rep;
  if (mask.defined()) {
    Tensor keep = add_scalar(neg(mask), 1.0).unsqueeze(2);
    rep = div(sum(mul(x, keep), {1}), sum(keep, {1}));
  } else {
    rep = mean(x, {1});
  }
  Tensor h = dropout(gelu(classifier_->forward(rep)), cfg.dropout, train);
  return linear(h, *projection_);
}

// ---------------------------------------------------------------- TransformerLM

struct TransformerLM::Decoder : Container {
  Tensor* embed = nullptr;
  Tensor* positions = nullptr;  // learned only
  std::vector<std::shared_ptr<TransformerBlock>> layers;
  std::shared_ptr<SequenceNorm> final_norm;
  Tensor* output_projection = nullptr;  // untied only
  Tensor sinusoids;                     // the sinusoidal table, grown on demand (not a parameter)
};

TransformerLM::TransformerLM(const TransformerLMConfig& c, uint64_t seed) : cfg(c) {
  MG_CHECK(c.vocab_size > 1 && c.num_layers >= 1, "TransformerLM",
           "needs a vocabulary of >= 2 ids and >= 1 layer, got vocab_size {} and num_layers {}", c.vocab_size,
           c.num_layers);
  MG_CHECK(c.embed_dim >= 1 && c.num_heads >= 1 && c.embed_dim % c.num_heads == 0, "TransformerLM",
           "embed_dim {} must be a positive multiple of num_heads {}", c.embed_dim, c.num_heads);
  MG_CHECK(c.ffn_dim >= 1, "TransformerLM", "ffn_dim must be >= 1, got {}", c.ffn_dim);
  MG_CHECK(c.padding_idx >= 0 && c.padding_idx < c.vocab_size, "TransformerLM",
           "padding_idx {} is not an id of the vocabulary of {}", c.padding_idx, c.vocab_size);
  MG_CHECK(!c.learned_positions || c.max_positions >= 1, "TransformerLM",
           "learned positions need max_positions >= 1, got {}", c.max_positions);
  MG_CHECK(c.dropout >= 0 && c.dropout < 1, "TransformerLM", "dropout must be in [0, 1), got {}", c.dropout);
  Generator gen(seed);
  const int64_t D = c.embed_dim;
  auto dec = register_module("decoder", std::make_shared<Decoder>());
  dec_ = dec.get();
  // As MegaLM: N(0, D^-1/2) embeddings with a zero padding row, scaled by sqrt(D) in forward.
  Tensor w = normal({c.vocab_size, D}, 0.0, std::pow((double)D, -0.5), DType::Float32, &gen);
  for (int64_t d = 0; d < D; ++d) w.set({c.padding_idx, d}, 0.0);
  dec->embed = &dec->add_module("embed_tokens", std::make_shared<Container>())->add_parameter("weight", w);
  if (c.learned_positions)  // fairseq's LearnedPositionalEmbedding: N(0, D^-1/2)
    dec->positions = &dec->add_module("embed_positions", std::make_shared<Container>())
                          ->add_parameter("weight", normal({c.max_positions, D}, 0.0, std::pow((double)D, -0.5),
                                                           DType::Float32, &gen));
  auto list = dec->add_module("layers", std::make_shared<Container>());
  for (int64_t i = 0; i < c.num_layers; ++i)
    dec->layers.push_back(list->add_module(std::to_string(i), std::make_shared<TransformerBlock>(D, c.ffn_dim, c.num_heads, gen)));
  dec->final_norm = dec->add_module("final_norm", std::make_shared<SequenceNorm>(NormType::LayerNorm, D, true));
  if (!c.tie_weights)
    dec->output_projection = &dec->add_module("output_projection", std::make_shared<Container>())
                                  ->add_parameter("weight", normal({c.vocab_size, D}, 0.0, std::pow((double)D, -0.5),
                                                                   DType::Float32, &gen));
}

Tensor TransformerLM::forward(const Tensor& tokens) {
  check_tokens("TransformerLM", tokens, cfg.vocab_size);
  const int64_t B = tokens.size(0), L = tokens.size(1), D = cfg.embed_dim;
  MG_CHECK(!cfg.learned_positions || L <= cfg.max_positions, "TransformerLM",
           "tokens {}: sequence length {} exceeds max_positions {} (learned positions)", tokens.desc(), L,
           cfg.max_positions);
  const bool train = is_training();
  const DType dt = dec_->embed->dtype();
  Tensor pos;
  if (dec_->positions) {
    pos = dec_->positions->narrow(0, 0, L);
  } else {
    if (!dec_->sinusoids.defined() || dec_->sinusoids.size(0) < L) dec_->sinusoids = sinusoidal_positions(L, D);
    pos = dec_->sinusoids.narrow(0, 0, L).to(dt);
  }
  Tensor x = add(mul_scalar(embedding(*dec_->embed, tokens), std::sqrt((double)D)), pos);
  x = dropout(x, cfg.dropout, train);
  // (B, 1, L, L) bool: key j is hidden from query i when j > i, or when j is padding and j != i.
  std::vector<int64_t> t = tokens.to_int_vector();
  Tensor mb = Tensor::empty({B, 1, L, L}, DType::Bool);
  bool* m = mb.data_ptr<bool>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < L; ++j)
        m[(b * L + i) * L + j] = j > i || (j != i && t[(size_t)(b * L + j)] == cfg.padding_idx);
  for (auto& layer : dec_->layers) x = layer->forward(x, mb, cfg.dropout, train);
  x = dec_->final_norm->forward(x);
  return linear(x, dec_->output_projection ? *dec_->output_projection : *dec_->embed);
}

std::vector<int64_t> TransformerLM::generate(const std::vector<int64_t>& prompt, int64_t count, double temperature,
                                             int64_t top_k, uint64_t seed, int64_t context) {
  check_generate_args(prompt, count, temperature, top_k);
  MG_CHECK(context >= 0, "generate", "context must be >= 0, got {}", context);
  if (context == 0 && cfg.learned_positions) context = cfg.max_positions;
  if (cfg.learned_positions) context = std::min(context, cfg.max_positions);
  no_grad g;
  std::vector<int64_t> text = prompt, out;
  uint64_t counter = 0;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t n = (int64_t)text.size(), first = context > 0 ? std::max<int64_t>(0, n - context) : 0;
    std::vector<int64_t> window(text.begin() + first, text.end());
    Tensor logits = forward(Tensor::from_vector(window, {1, n - first}));  // (1, n, V)
    const int64_t next = sample_token(logits.select(1, n - first - 1).to_vector(), cfg.padding_idx, temperature, top_k,
                                      seed, counter, i);
    out.push_back(next);
    text.push_back(next);
  }
  return out;
}

}  // namespace megagrad
