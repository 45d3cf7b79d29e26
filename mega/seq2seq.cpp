// MegaSeq2Seq, TransformerSeq2Seq and the label-smoothed loss (seq2seq.h). The Mega model follows
// the official MegaEncoder.forward and MegaDecoder.extract_features_scriptable step by step,
// batch-major.
#include "mega/seq2seq.h"
#include <algorithm>
#include <cmath>
#include <set>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "mega/config.h"

namespace megagrad {

namespace {
constexpr std::string_view kOp = "seq2seq";

// int64 (B, L), L >= 1, every id in [0, vocab). `what` names the argument.
void check_tokens(std::string_view what, const Tensor& tokens, int64_t vocab) {
  MG_CHECK(tokens.defined() && tokens.dtype() == DType::Int64 && tokens.dim() == 2, kOp,
           "{} must be int64 (B, L), got {}", what, tokens.desc());
  MG_CHECK(tokens.size(0) >= 1 && tokens.size(1) >= 1, kOp, "{} {} is empty", what, tokens.desc());
  const std::vector<int64_t> t = tokens.to_int_vector();
  for (size_t i = 0; i < t.size(); ++i)
    MG_CHECK(t[i] >= 0 && t[i] < vocab, kOp, "{} {}: token id {} at ({}, {}) is out of the vocabulary of {}", what,
             tokens.desc(), t[i], (int64_t)i / tokens.size(1), (int64_t)i % tokens.size(1), vocab);
}

// A sentence of nothing but padding has no key for the cross-attention to read (the official
// softmax gives NaN): refused, naming the row.
void check_source_not_empty(const Tensor& src, int64_t pad) {
  const std::vector<int64_t> t = src.to_int_vector();
  const int64_t B = src.size(0), S = src.size(1);
  for (int64_t b = 0; b < B; ++b) {
    bool any = false;
    for (int64_t i = 0; i < S && !any; ++i) any = t[(size_t)(b * S + i)] != pad;
    MG_CHECK(any, kOp, "source sentence {} of src_tokens {} is all padding (id {}): nothing to translate", b,
             src.desc(), pad);
  }
}

// The official Embedding: N(0, D^-1/2) with a zero padding row.
Tensor embedding_init(int64_t V, int64_t D, int64_t pad, Generator& gen) {
  Tensor w = normal({V, D}, 0.0, std::pow((double)D, -0.5), DType::Float32, &gen);
  for (int64_t d = 0; d < D; ++d) w.set({pad, d}, 0.0);
  return w;
}

// A bool (B, 1, 1, S) key mask from a float (B, S) padding mask (undefined stays undefined).
Tensor key_mask(const Tensor& padding_mask) {
  if (!padding_mask.defined()) return Tensor();
  const int64_t B = padding_mask.size(0), S = padding_mask.size(1);
  const std::vector<double> m = padding_mask.to_vector();
  Tensor mb = Tensor::empty({B, 1, 1, S}, DType::Bool);
  bool* p = mb.data_ptr<bool>();
  for (size_t i = 0; i < m.size(); ++i) p[i] = m[i] != 0;
  return mb;
}

// The decoder's self-attention mask (B, 1, m, first+m) for queries first..first+m-1 over keys
// 0..first+m-1: key j is hidden when j > i, or when it is padding and j != i (a query always sees
// itself, so no row is empty). tokens: (B, first+m) row-major.
Tensor causal_mask(const std::vector<int64_t>& tokens, int64_t B, int64_t first, int64_t m, int64_t pad) {
  const int64_t n = first + m;
  Tensor mb = Tensor::empty({B, 1, m, n}, DType::Bool);
  bool* p = mb.data_ptr<bool>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < m; ++r) {
      const int64_t i = first + r;
      for (int64_t j = 0; j < n; ++j)
        p[(b * m + r) * n + j] = j > i || (j != i && tokens[(size_t)(b * n + j)] == pad);
    }
  return mb;
}

// new_order as a vector of row ids < B, checked.
std::vector<int64_t> checked_order(const Tensor& new_order, int64_t B) {
  MG_CHECK(new_order.defined() && new_order.dtype() == DType::Int64 && new_order.dim() == 1 && new_order.numel() >= 1,
           kOp, "new_order must be int64 (B') with B' >= 1, got {}", new_order.desc());
  std::vector<int64_t> o = new_order.to_int_vector();
  for (int64_t i : o) MG_CHECK(i >= 0 && i < B, kOp, "new_order {} holds row {}, but the state has {} rows", new_order.desc(), i, B);
  return o;
}

// Rows `order` of a row-major (B, row) vector.
std::vector<double> select_rows(const std::vector<double>& v, const std::vector<int64_t>& order, size_t row) {
  std::vector<double> out(order.size() * row);
  for (size_t i = 0; i < order.size(); ++i)
    std::copy(v.begin() + (ptrdiff_t)((size_t)order[i] * row), v.begin() + (ptrdiff_t)((size_t)(order[i] + 1) * row),
              out.begin() + (ptrdiff_t)(i * row));
  return out;
}

void select_batch(Tensor& t, const Tensor& order) {
  if (t.defined()) t = index_select(t, 0, order);
}

void check_layer_keys(const Json& j, const std::string& name) {
  MG_CHECK(j.is_object(), "config", "{}: expected a JSON object of layer keys, got {}", name, j.describe());
  for (const auto& item : j.items())
    for (const char* bad : {"seq_len", "batch", "with_padding", "pad_lengths", "param_noise", "cross_attention",
                            "src_len", "src_pad_lengths"})
      MG_CHECK(item.first != bad, "config", "{}: \"{}\" describes a reference case, not a model layer", name, bad);
}
}  // namespace

// ---------------------------------------------------------------- configuration

void Seq2SeqConfig::validate() const {
  MG_CHECK(encoder.bidirectional && !encoder.causal, kOp, "encoder layers must be bidirectional and not causal");
  MG_CHECK(!decoder.bidirectional && decoder.causal, kOp, "decoder layers must be unidirectional and causal");
  try {
    encoder.validate();
    decoder.validate();
  } catch (const Error& e) {
    fail(kOp, "{}", e.what());
  }
  MG_CHECK(encoder.embed_dim == decoder.embed_dim, kOp,
           "the encoder's embed_dim {} and the decoder's {} must match (the cross-attention reads the encoder output "
           "at the decoder's width)",
           encoder.embed_dim, decoder.embed_dim);
  MG_CHECK(encoder_layers >= 1 && decoder_layers >= 1, kOp, "needs >= 1 encoder and decoder layer, got {} and {}",
           encoder_layers, decoder_layers);
  MG_CHECK(vocab_size > 1 && tgt_vocab_size >= 0, kOp, "vocab_size must be > 1, got {} (tgt_vocab_size {})",
           vocab_size, tgt_vocab_size);
  MG_CHECK(!share_all_embeddings || target_vocab() == vocab_size, kOp,
           "share_all_embeddings needs one joint vocabulary, got vocab_size {} and tgt_vocab_size {}", vocab_size,
           tgt_vocab_size);
  MG_CHECK(padding_idx >= 0 && padding_idx < std::min(vocab_size, target_vocab()), kOp,
           "padding_idx {} is not an id of the vocabularies of {} and {}", padding_idx, vocab_size, target_vocab());
  MG_CHECK(!normalize_embedding || (!encoder.prenorm && !decoder.prenorm), kOp,
           "normalize_embedding and prenorm exclude each other (the official assertion)");
  // A target padded up to a multiple of the chunk must still fit the cross-attention's bias.
  for (const MegaLayerConfig* l : {&encoder, &decoder}) {
    const int64_t C = l->chunk_size, M = l->max_positions;
    MG_CHECK(C <= 0 || C >= M || M % C == 0, kOp,
             "{}: max_positions {} must be a multiple of chunk_size {} (sequences are padded to whole chunks)",
             l == &encoder ? "encoder" : "decoder", M, C);
  }
}

Json seq2seq_config_to_json(const Seq2SeqConfig& c) {
  Json j = Json::object();
  j.set("encoder_layers", c.encoder_layers), j.set("decoder_layers", c.decoder_layers);
  j.set("vocab_size", c.vocab_size), j.set("tgt_vocab_size", c.tgt_vocab_size), j.set("padding_idx", c.padding_idx);
  j.set("share_all_embeddings", c.share_all_embeddings);
  j.set("share_decoder_input_output_embed", c.share_decoder_input_output_embed);
  j.set("scale_embedding", c.scale_embedding), j.set("normalize_embedding", c.normalize_embedding);
  j.set("encoder", layer_config_to_json(c.encoder)), j.set("decoder", layer_config_to_json(c.decoder));
  return j;
}

Seq2SeqConfig parse_seq2seq_config(const Json& j, std::string_view what, std::string_view path) {
  const std::string where = what.empty() ? std::string(path.empty() ? "seq2seq config" : path)
                            : path.empty() ? std::string(what)
                                           : fmt::format("{}: {}", what, path);
  MG_CHECK(j.is_object(), "config", "{}: expected a JSON object, got {}", where, j.describe());
  Seq2SeqConfig c;
  c.encoder.bidirectional = true, c.encoder.causal = false;
  c.decoder.bidirectional = false, c.decoder.causal = true;
  for (const auto& item : j.items()) {
    const std::string& key = item.first;
    if (!key.empty() && key[0] == '_') continue;  // provenance
    const std::string name = what.empty() ? json_path(path, key) : fmt::format("{}: {}", what, json_path(path, key));
    if (key == "encoder_layers") c.encoder_layers = json_int(j, path, key);
    else if (key == "decoder_layers") c.decoder_layers = json_int(j, path, key);
    else if (key == "vocab_size") c.vocab_size = json_int(j, path, key);
    else if (key == "tgt_vocab_size") c.tgt_vocab_size = json_int(j, path, key);
    else if (key == "padding_idx") c.padding_idx = json_int(j, path, key);
    else if (key == "share_all_embeddings") c.share_all_embeddings = json_bool(j, path, key);
    else if (key == "share_decoder_input_output_embed") c.share_decoder_input_output_embed = json_bool(j, path, key);
    else if (key == "scale_embedding") c.scale_embedding = json_bool(j, path, key);
    else if (key == "normalize_embedding") c.normalize_embedding = json_bool(j, path, key);
    else if (key == "encoder" || key == "decoder") {
      check_layer_keys(item.second, name);
      // The side fixes the direction: an encoder layer is bidirectional, a decoder layer causal.
      Json layer = item.second;
      const bool enc = key == "encoder";
      if (!layer.contains("bidirectional")) layer.set("bidirectional", enc);
      if (!layer.contains("causal")) layer.set("causal", !enc);
      (enc ? c.encoder : c.decoder) = parse_layer_config(layer, what, json_path(path, key)).layer;
    } else {
      fail("config", "{}: unknown key \"{}\"", where, key);
    }
  }
  for (const char* required : {"vocab_size", "encoder", "decoder"})
    MG_CHECK(j.contains(required), "config", "{}: missing key \"{}\"", where, required);
  try {
    c.validate();
  } catch (const Error& e) {
    fail("config", "{}: {}", where, e.what());
  }
  return c;
}

// ---------------------------------------------------------------- MegaSeq2Seq

struct MegaSeq2Seq::Side : Container {
  Tensor* embed = nullptr;  // (V, D): its own, or the encoder's when shared
  std::shared_ptr<SequenceNorm> embed_norm;
  std::vector<std::shared_ptr<MegaLayer>> encoder_layers;
  std::vector<std::shared_ptr<MegaDecoderLayer>> decoder_layers;
  std::shared_ptr<SequenceNorm> final_norm;
  Tensor* output_projection = nullptr;  // decoder: its own, or the embedding when shared
  const MegaLayerConfig* layer = nullptr;
};

MegaSeq2Seq::MegaSeq2Seq(const Seq2SeqConfig& c, uint64_t seed) : cfg((c.validate(), c)) {
  Generator gen(seed);
  const int64_t D = c.encoder.embed_dim;
  // The official registration order: embed_tokens, embed_norm, layers, final_norm (and the
  // decoder's output_projection last).
  auto enc = register_module("encoder", std::make_shared<Side>());
  enc_ = enc.get();
  enc->layer = &cfg.encoder;
  enc->embed = &enc->add_module("embed_tokens", std::make_shared<Container>())
                    ->add_parameter("weight", embedding_init(c.vocab_size, D, c.padding_idx, gen));
  if (c.normalize_embedding)
    enc->embed_norm = enc->add_module("embed_norm", std::make_shared<SequenceNorm>(c.encoder.norm_type, D, c.encoder.norm_affine));
  auto elist = enc->add_module("layers", std::make_shared<Container>());
  for (int64_t i = 0; i < c.encoder_layers; ++i)
    enc->encoder_layers.push_back(
        elist->add_module(std::to_string(i), std::make_shared<MegaLayer>(c.encoder, seed + 1 + (uint64_t)i)));
  if (c.encoder.prenorm)
    enc->final_norm = enc->add_module("final_norm", std::make_shared<SequenceNorm>(c.encoder.norm_type, D, c.encoder.norm_affine));

  auto dec = register_module("decoder", std::make_shared<Side>());
  dec_ = dec.get();
  dec->layer = &cfg.decoder;
  const int64_t V = c.target_vocab();
  dec->embed = c.share_all_embeddings
                   ? enc->embed
                   : &dec->add_module("embed_tokens", std::make_shared<Container>())
                          ->add_parameter("weight", embedding_init(V, D, c.padding_idx, gen));
  if (c.normalize_embedding)
    dec->embed_norm = dec->add_module("embed_norm", std::make_shared<SequenceNorm>(c.decoder.norm_type, D, c.decoder.norm_affine));
  auto dlist = dec->add_module("layers", std::make_shared<Container>());
  const int64_t cross_max = std::max(c.max_source_positions(), c.max_target_positions());
  for (int64_t i = 0; i < c.decoder_layers; ++i)
    dec->decoder_layers.push_back(dlist->add_module(
        std::to_string(i),
        std::make_shared<MegaDecoderLayer>(c.decoder, seed + 1 + (uint64_t)(c.encoder_layers + i), cross_max)));
  if (c.decoder.prenorm)
    dec->final_norm = dec->add_module("final_norm", std::make_shared<SequenceNorm>(c.decoder.norm_type, D, c.decoder.norm_affine));
  if (c.share_all_embeddings || c.share_decoder_input_output_embed)
    dec->output_projection = dec->embed;
  else  // official: nn.init.normal_(weight, 0, D^-0.5), no padding row
    dec->output_projection = &dec->add_module("output_projection", std::make_shared<Container>())
                                  ->add_parameter("weight", normal({V, D}, 0.0, std::pow((double)D, -0.5),
                                                                   DType::Float32, &gen));
}

// embed_scale * embed_tokens(tokens), embed_norm, dropout, zeroed at pads; mask: the padding mask
// (undefined when nothing is padded).
Tensor MegaSeq2Seq::embed(const Side& side, const Tensor& tokens, Tensor& mask) {
  const DType dt = side.embed->dtype();
  Tensor x = embedding(*side.embed, tokens);
  if (cfg.scale_embedding) x = mul_scalar(x, std::sqrt((double)side.layer->embed_dim));
  if (side.embed_norm) x = side.embed_norm->forward(x);
  x = dropout(x, side.layer->dropout, is_training(), nullptr);
  mask = padding_mask_of(tokens, cfg.padding_idx, dt);
  if (mask.defined()) x = mul(x, add_scalar(neg(mask), 1.0).unsqueeze(2));
  return x;
}

EncoderOut MegaSeq2Seq::encode(const Tensor& src_tokens) {
  ForwardScope scope(this);
  check_tokens("src_tokens", src_tokens, cfg.vocab_size);
  const int64_t S = src_tokens.size(1);
  MG_CHECK(S <= cfg.max_source_positions(), kOp, "src_tokens {}: source length {} exceeds max_source_positions {}",
           src_tokens.desc(), S, cfg.max_source_positions());
  check_source_not_empty(src_tokens, cfg.padding_idx);
  Tensor tokens = pad_to_chunk(src_tokens, cfg.encoder.chunk_size, cfg.padding_idx);
  Tensor mask;
  Tensor x = embed(*enc_, tokens, mask);
  for (auto& layer : enc_->encoder_layers) x = layer->forward(x, mask);
  if (enc_->final_norm) x = enc_->final_norm->forward(x);
  if (mask.defined()) x = mul(x, add_scalar(neg(mask), 1.0).unsqueeze(2));
  if (x.size(1) != S) {  // drop the chunk padding
    x = x.narrow(1, 0, S);
    mask = padding_mask_of(src_tokens, cfg.padding_idx, x.dtype());
  }
  return {x, mask};
}

Tensor MegaSeq2Seq::decode(const Tensor& prev_output_tokens, const EncoderOut& enc) {
  ForwardScope scope(this);
  check_tokens("prev_output_tokens", prev_output_tokens, cfg.target_vocab());
  const int64_t T = prev_output_tokens.size(1);
  MG_CHECK(T <= cfg.max_target_positions(), kOp,
           "prev_output_tokens {}: target length {} exceeds max_target_positions {}", prev_output_tokens.desc(), T,
           cfg.max_target_positions());
  MG_CHECK(enc.out.defined() && enc.out.dim() == 3 && enc.out.size(0) == prev_output_tokens.size(0), kOp,
           "the encoder output {} must be (B, S, D) with prev_output_tokens {}'s batch", enc.out.desc(),
           prev_output_tokens.desc());
  Tensor tokens = pad_to_chunk(prev_output_tokens, cfg.decoder.chunk_size, cfg.padding_idx);
  Tensor mask;
  Tensor x = embed(*dec_, tokens, mask);
  for (auto& layer : dec_->decoder_layers) x = layer->forward(x, enc.out, mask, enc.padding_mask);
  if (dec_->final_norm) x = dec_->final_norm->forward(x);
  if (mask.defined()) x = mul(x, add_scalar(neg(mask), 1.0).unsqueeze(2));
  if (x.size(1) != T) x = x.narrow(1, 0, T);  // causal: the chunk padding changes nothing before it
  return linear(x, *dec_->output_projection);
}

Tensor MegaSeq2Seq::forward(const Tensor& src_tokens, const Tensor& prev_output_tokens) {
  MG_CHECK(src_tokens.defined() && prev_output_tokens.defined() && src_tokens.dim() == 2 &&
               prev_output_tokens.dim() == 2 && src_tokens.size(0) == prev_output_tokens.size(0),
           kOp, "src_tokens {} and prev_output_tokens {} must be (B, S) and (B, T) with one batch size",
           src_tokens.desc(), prev_output_tokens.desc());
  return decode(prev_output_tokens, encode(src_tokens));
}

MegaSeq2Seq::State MegaSeq2Seq::begin(const Tensor& src_tokens) {
  no_grad guard;
  State st;
  st.enc = encode(src_tokens);
  st.self.resize(dec_->decoder_layers.size());
  for (auto& layer : dec_->decoder_layers) st.cross.push_back(layer->cross_attn->precompute(st.enc.out, st.enc.padding_mask));
  return st;
}

Tensor MegaSeq2Seq::forward_incremental(const Tensor& prev_output_tokens, State& st) {
  ForwardScope scope(this);
  no_grad guard;
  MG_CHECK(st.enc.out.defined() && st.cross.size() == dec_->decoder_layers.size(), kOp,
           "forward_incremental needs a state from begin(src_tokens)");
  check_tokens("prev_output_tokens", prev_output_tokens, cfg.target_vocab());
  const int64_t m = prev_output_tokens.size(1);
  MG_CHECK(prev_output_tokens.size(0) == st.enc.out.size(0), kOp,
           "prev_output_tokens {} has another batch size than the state's source {}", prev_output_tokens.desc(),
           st.enc.out.desc());
  MG_CHECK(st.pos + m <= cfg.max_target_positions(), kOp,
           "prev_output_tokens {}: target length {} (after {} decoded) exceeds max_target_positions {}",
           prev_output_tokens.desc(), st.pos + m, st.pos, cfg.max_target_positions());
  Tensor mask;
  Tensor x = embed(*dec_, prev_output_tokens, mask);
  for (size_t i = 0; i < dec_->decoder_layers.size(); ++i)
    x = dec_->decoder_layers[i]->forward_incremental(x, mask, st.self[i], st.cross[i]);
  if (dec_->final_norm) x = dec_->final_norm->forward(x);
  if (mask.defined()) x = mul(x, add_scalar(neg(mask), 1.0).unsqueeze(2));
  st.pos += m;
  return linear(x, *dec_->output_projection);
}

void MegaSeq2Seq::reorder_incremental_state(State& st, const Tensor& new_order) const {
  no_grad guard;
  MG_CHECK(st.enc.out.defined(), kOp, "reorder_incremental_state needs a state from begin(src_tokens)");
  const std::vector<int64_t> o = checked_order(new_order, st.enc.out.size(0));
  select_batch(st.enc.out, new_order), select_batch(st.enc.padding_mask, new_order);
  for (LayerState& ls : st.self) {
    select_batch(ls.ema.h, new_order), select_batch(ls.ema.ring, new_order);
    select_batch(ls.keys, new_order), select_batch(ls.values, new_order), select_batch(ls.key_pad, new_order);
  }
  for (CrossAttentionCache& c : st.cross) {
    const size_t S = (size_t)c.S;
    c.k = select_rows(c.k, o, c.k.size() / (size_t)c.B);
    c.v = select_rows(c.v, o, c.v.size() / (size_t)c.B);
    if (!c.key_pad.empty()) c.key_pad = select_rows(c.key_pad, o, S);
    c.B = (int64_t)o.size();
  }
}

NamedTensors MegaSeq2Seq::official_state_dict() const {
  const NamedTensors mine = state_dict();
  const Tensor version = Tensor::from_vector(std::vector<double>{3.0}, {1}, DType::Float32);
  NamedTensors out;
  out.emplace_back("encoder.version", version);
  for (auto& [n, t] : mine)
    if (n.rfind("encoder.", 0) == 0) out.emplace_back(n, t);
  out.emplace_back("decoder.version", version);
  if (cfg.share_all_embeddings) out.emplace_back("decoder.embed_tokens.weight", *dec_->embed);
  for (auto& [n, t] : mine)
    if (n.rfind("decoder.", 0) == 0) out.emplace_back(n, t);
  if (cfg.share_all_embeddings || cfg.share_decoder_input_output_embed)
    out.emplace_back("decoder.output_projection.weight", *dec_->output_projection);
  return out;
}

void MegaSeq2Seq::load_official_state_dict(const NamedTensors& values) {
  // The aliases of the shared matrix and the name each stands for.
  std::vector<std::pair<std::string, std::string>> aliases;
  if (cfg.share_all_embeddings)
    aliases = {{"decoder.embed_tokens.weight", "encoder.embed_tokens.weight"},
               {"decoder.output_projection.weight", "encoder.embed_tokens.weight"}};
  else if (cfg.share_decoder_input_output_embed)
    aliases = {{"decoder.output_projection.weight", "decoder.embed_tokens.weight"}};
  NamedTensors own;
  for (auto& [n, t] : values) {
    if (n == "encoder.version" || n == "decoder.version") continue;
    bool alias = false;
    for (auto& a : aliases) alias |= a.first == n;
    if (!alias) own.emplace_back(n, t);
  }
  for (auto& a : aliases) {
    const Tensor *alias = nullptr, *primary = nullptr;
    for (auto& [n, t] : values) {
      if (n == a.first) alias = &t;
      if (n == a.second) primary = &t;
    }
    if (!alias || !primary) continue;
    MG_CHECK(alias->shape() == primary->shape() && alias->to(DType::Float64).to_vector() == primary->to(DType::Float64).to_vector(),
             kOp, "{} {} differs from {} {}, which this configuration shares it with", a.first, alias->desc(), a.second,
             primary->desc());
  }
  load_state_dict(own, true);
}

// ---------------------------------------------------------------- label-smoothed cross-entropy

LabelSmoothedLoss label_smoothed_cross_entropy(const Tensor& logits, const Tensor& target, double epsilon,
                                               int64_t ignore_index) {
  constexpr std::string_view op = "label_smoothed_cross_entropy";
  MG_CHECK(logits.defined() && logits.dim() >= 1 && is_floating(logits.dtype()), op,
           "logits must be a float tensor (..., V), got {}", logits.desc());
  const int64_t V = logits.size(logits.dim() - 1);
  Shape expect(logits.shape().begin(), logits.shape().end() - 1);
  MG_CHECK(target.defined() && target.dtype() == DType::Int64 && target.shape() == expect, op,
           "target must be int64 {} (logits {} without the vocabulary dim), got {}", shape_str(expect), logits.desc(),
           target.desc());
  MG_CHECK(epsilon >= 0 && epsilon < 1, op, "epsilon must be in [0, 1), got {}", epsilon);
  const int64_t N = target.numel();
  const std::vector<int64_t> t = target.to_int_vector();
  std::vector<double> keep((size_t)N);
  LabelSmoothedLoss out;
  for (size_t i = 0; i < t.size(); ++i) {
    MG_CHECK(t[i] == ignore_index || (t[i] >= 0 && t[i] < V), op, "target id {} at flat index {} is out of [0, {})",
             t[i], i, V);
    keep[i] = t[i] == ignore_index ? 0.0 : 1.0;
    out.ntokens += t[i] != ignore_index;
  }
  std::vector<int64_t> idx(t);
  for (int64_t& v : idx)
    if (v < 0 || v >= V) v = 0;  // an ignored id outside the vocabulary: gathered, then masked
  Tensor lp = log_softmax(logits.reshape({N, V}), 1);                            // (N, V)
  Tensor k = Tensor::from_vector(keep, {N, 1}, logits.dtype());
  if (!logits.device().is_cpu()) k = k.to(logits.device());
  Tensor index = Tensor::from_vector(idx, {N, 1});
  if (!logits.device().is_cpu()) index = index.to(logits.device());
  Tensor nll = mul(neg(gather(lp, 1, index)), k);                               // (N, 1)
  Tensor smooth = mul(neg(sum(lp, {1}, true)), k);                               // (N, 1)
  out.nll_loss = sum(nll);
  out.loss = add(mul_scalar(out.nll_loss, 1.0 - epsilon), mul_scalar(sum(smooth), epsilon / (double)V));
  return out;
}

// ---------------------------------------------------------------- Transformer baseline

TransformerDecoderLayer::TransformerDecoderLayer(int64_t D, int64_t ffn_dim, int64_t heads, Generator& gen)
    : embed_dim(D), num_heads(heads) {
  MG_CHECK(D >= 1 && heads >= 1 && D % heads == 0 && ffn_dim >= 1, "TransformerDecoderLayer",
           "embed_dim {} must be a positive multiple of num_heads {}, and ffn_dim {} positive", D, heads, ffn_dim);
  attn_norm_ = register_module("attn_norm", std::make_shared<SequenceNorm>(NormType::LayerNorm, D, true));
  qkv_ = register_module("qkv", std::make_shared<Linear>(D, 3 * D, gen));
  out_proj_ = register_module("out_proj", std::make_shared<Linear>(D, D, gen));
  cross_norm_ = register_module("cross_norm", std::make_shared<SequenceNorm>(NormType::LayerNorm, D, true));
  cross_q_ = register_module("cross_q", std::make_shared<Linear>(D, D, gen));
  cross_kv_ = register_module("cross_kv", std::make_shared<Linear>(D, 2 * D, gen));
  cross_out_ = register_module("cross_out_proj", std::make_shared<Linear>(D, D, gen));
  ffn_norm_ = register_module("ffn_norm", std::make_shared<SequenceNorm>(NormType::LayerNorm, D, true));
  fc1_ = register_module("fc1", std::make_shared<Linear>(D, ffn_dim, gen));
  fc2_ = register_module("fc2", std::make_shared<Linear>(ffn_dim, D, gen));
}

Tensor TransformerDecoderLayer::heads(const Tensor& t) const {
  const int64_t B = t.size(0), L = t.size(1);
  return t.reshape({B, L, num_heads, embed_dim / num_heads}).permute({0, 2, 1, 3});
}

Tensor TransformerDecoderLayer::merge(const Tensor& t) const {
  const int64_t B = t.size(0), L = t.size(2);
  return t.permute({0, 2, 1, 3}).reshape({B, L, embed_dim});
}

// softmax(q k^T / sqrt(dh), masked) v, per head.
Tensor TransformerDecoderLayer::attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double p,
                                       bool train) const {
  Tensor s = mul_scalar(matmul(q, k.transpose(2, 3)), 1.0 / std::sqrt((double)(embed_dim / num_heads)));
  if (mask.defined()) s = masked_fill(s, mask, -INFINITY);
  return matmul(dropout(softmax(s, -1), p, train), v);
}

Tensor TransformerDecoderLayer::feed_forward(const Tensor& x, double p, bool train) {
  return add(x, dropout(fc2_->forward(gelu(fc1_->forward(ffn_norm_->forward(x)))), p, train));
}

Tensor TransformerDecoderLayer::forward(const Tensor& x, const Tensor& mem, const Tensor& self_mask,
                                        const Tensor& src_mask, double p, bool train) {
  ForwardScope scope(this);
  const int64_t D = embed_dim;
  MG_CHECK(x.dim() == 3 && x.size(2) == D && mem.dim() == 3 && mem.size(2) == D && mem.size(0) == x.size(0),
           "TransformerDecoderLayer", "x {} and mem {} must be (B, L, {}) and (B, S, {})", x.desc(), mem.desc(), D, D);
  std::vector<Tensor> qkv = split(qkv_->forward(attn_norm_->forward(x)), {D, D, D}, -1);
  Tensor a = attend(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), self_mask, p, train);
  Tensor y = add(x, dropout(out_proj_->forward(merge(a)), p, train));
  std::vector<Tensor> kv = split(cross_kv_->forward(mem), {D, D}, -1);
  Tensor c = attend(heads(cross_q_->forward(cross_norm_->forward(y))), heads(kv[0]), heads(kv[1]), src_mask, p, train);
  y = add(y, dropout(cross_out_->forward(merge(c)), p, train));
  return feed_forward(y, p, train);
}

void TransformerDecoderLayer::precompute(const Tensor& mem, Cache& cache) {
  no_grad guard;
  std::vector<Tensor> kv = split(cross_kv_->forward(mem), {embed_dim, embed_dim}, -1);
  cache.cross_k = heads(kv[0]).contiguous(), cache.cross_v = heads(kv[1]).contiguous();
  cache.self_k = cache.self_v = Tensor();
}

Tensor TransformerDecoderLayer::forward_incremental(const Tensor& x, const Tensor& self_mask, const Tensor& src_mask,
                                                    Cache& cache) {
  ForwardScope scope(this);
  no_grad guard;
  const int64_t D = embed_dim;
  std::vector<Tensor> qkv = split(qkv_->forward(attn_norm_->forward(x)), {D, D, D}, -1);
  Tensor k = heads(qkv[1]).contiguous(), v = heads(qkv[2]).contiguous();
  cache.self_k = cache.self_k.defined() ? cat({cache.self_k, k}, 2) : k;
  cache.self_v = cache.self_v.defined() ? cat({cache.self_v, v}, 2) : v;
  Tensor a = attend(heads(qkv[0]), cache.self_k, cache.self_v, self_mask, 0.0, false);
  Tensor y = add(x, out_proj_->forward(merge(a)));
  Tensor c = attend(heads(cross_q_->forward(cross_norm_->forward(y))), cache.cross_k, cache.cross_v, src_mask, 0.0,
                    false);
  y = add(y, cross_out_->forward(merge(c)));
  return feed_forward(y, 0.0, false);
}

struct TransformerSeq2Seq::Side : Container {
  Tensor* embed = nullptr;
  std::vector<std::shared_ptr<TransformerBlock>> encoder_layers;
  std::vector<std::shared_ptr<TransformerDecoderLayer>> decoder_layers;
  std::shared_ptr<SequenceNorm> final_norm;
  Tensor* output_projection = nullptr;
};

TransformerSeq2Seq::TransformerSeq2Seq(const TransformerSeq2SeqConfig& c, uint64_t seed) : cfg(c) {
  constexpr std::string_view op = "seq2seq";
  MG_CHECK(c.embed_dim >= 1 && c.num_heads >= 1 && c.embed_dim % c.num_heads == 0 && c.ffn_dim >= 1, op,
           "embed_dim {} must be a positive multiple of num_heads {}, and ffn_dim {} positive", c.embed_dim,
           c.num_heads, c.ffn_dim);
  MG_CHECK(c.encoder_layers >= 1 && c.decoder_layers >= 1 && c.vocab_size > 1, op,
           "needs >= 1 encoder and decoder layer and a vocabulary, got {}, {} and {}", c.encoder_layers,
           c.decoder_layers, c.vocab_size);
  MG_CHECK(!c.share_all_embeddings || c.target_vocab() == c.vocab_size, op,
           "share_all_embeddings needs one joint vocabulary, got vocab_size {} and tgt_vocab_size {}", c.vocab_size,
           c.tgt_vocab_size);
  MG_CHECK(c.padding_idx >= 0 && c.padding_idx < std::min(c.vocab_size, c.target_vocab()), op,
           "padding_idx {} is not an id of the vocabularies", c.padding_idx);
  MG_CHECK(c.max_source_positions >= 1 && c.max_target_positions >= 1, op, "max positions must be >= 1");
  Generator gen(seed);
  const int64_t D = c.embed_dim;
  auto enc = register_module("encoder", std::make_shared<Side>());
  enc_ = enc.get();
  enc->embed = &enc->add_module("embed_tokens", std::make_shared<Container>())
                    ->add_parameter("weight", embedding_init(c.vocab_size, D, c.padding_idx, gen));
  auto elist = enc->add_module("layers", std::make_shared<Container>());
  for (int64_t i = 0; i < c.encoder_layers; ++i)
    enc->encoder_layers.push_back(
        elist->add_module(std::to_string(i), std::make_shared<TransformerBlock>(D, c.ffn_dim, c.num_heads, gen)));
  enc->final_norm = enc->add_module("final_norm", std::make_shared<SequenceNorm>(NormType::LayerNorm, D, true));
  auto dec = register_module("decoder", std::make_shared<Side>());
  dec_ = dec.get();
  const int64_t V = c.target_vocab();
  dec->embed = c.share_all_embeddings ? enc->embed
                                      : &dec->add_module("embed_tokens", std::make_shared<Container>())
                                             ->add_parameter("weight", embedding_init(V, D, c.padding_idx, gen));
  auto dlist = dec->add_module("layers", std::make_shared<Container>());
  for (int64_t i = 0; i < c.decoder_layers; ++i)
    dec->decoder_layers.push_back(
        dlist->add_module(std::to_string(i), std::make_shared<TransformerDecoderLayer>(D, c.ffn_dim, c.num_heads, gen)));
  dec->final_norm = dec->add_module("final_norm", std::make_shared<SequenceNorm>(NormType::LayerNorm, D, true));
  dec->output_projection = c.share_all_embeddings
                               ? enc->embed
                               : &dec->add_module("output_projection", std::make_shared<Container>())
                                      ->add_parameter("weight", normal({V, D}, 0.0, std::pow((double)D, -0.5),
                                                                       DType::Float32, &gen));
}

Tensor TransformerSeq2Seq::positions(int64_t first, int64_t count, DType dt) {
  if (!sinusoids_.defined() || sinusoids_.size(0) < first + count)
    sinusoids_ = sinusoidal_positions(std::max(cfg.max_source_positions, cfg.max_target_positions), cfg.embed_dim);
  return sinusoids_.narrow(0, first, count).to(dt);
}

EncoderOut TransformerSeq2Seq::encode(const Tensor& src_tokens) {
  ForwardScope scope(this);
  check_tokens("src_tokens", src_tokens, cfg.vocab_size);
  const int64_t S = src_tokens.size(1);
  MG_CHECK(S <= cfg.max_source_positions, kOp, "src_tokens {}: source length {} exceeds max_source_positions {}",
           src_tokens.desc(), S, cfg.max_source_positions);
  check_source_not_empty(src_tokens, cfg.padding_idx);
  const DType dt = enc_->embed->dtype();
  const bool train = is_training();
  Tensor x = add(mul_scalar(embedding(*enc_->embed, src_tokens), std::sqrt((double)cfg.embed_dim)), positions(0, S, dt));
  x = dropout(x, cfg.dropout, train);
  Tensor mask = padding_mask_of(src_tokens, cfg.padding_idx, dt);
  Tensor km = key_mask(mask);
  for (auto& b : enc_->encoder_layers) x = b->forward(x, km, cfg.dropout, train);
  return {enc_->final_norm->forward(x), mask};
}

Tensor TransformerSeq2Seq::decode(const Tensor& prev_output_tokens, const EncoderOut& enc) {
  ForwardScope scope(this);
  check_tokens("prev_output_tokens", prev_output_tokens, cfg.target_vocab());
  const int64_t B = prev_output_tokens.size(0), T = prev_output_tokens.size(1);
  MG_CHECK(T <= cfg.max_target_positions, kOp, "prev_output_tokens {}: target length {} exceeds max_target_positions {}",
           prev_output_tokens.desc(), T, cfg.max_target_positions);
  MG_CHECK(enc.out.defined() && enc.out.dim() == 3 && enc.out.size(0) == B, kOp,
           "the encoder output {} must be (B, S, D) with prev_output_tokens {}'s batch", enc.out.desc(),
           prev_output_tokens.desc());
  const DType dt = dec_->embed->dtype();
  const bool train = is_training();
  Tensor x =
      add(mul_scalar(embedding(*dec_->embed, prev_output_tokens), std::sqrt((double)cfg.embed_dim)), positions(0, T, dt));
  x = dropout(x, cfg.dropout, train);
  Tensor self_mask = causal_mask(prev_output_tokens.to_int_vector(), B, 0, T, cfg.padding_idx);
  Tensor src_mask = key_mask(enc.padding_mask);
  for (auto& layer : dec_->decoder_layers) x = layer->forward(x, enc.out, self_mask, src_mask, cfg.dropout, train);
  return linear(dec_->final_norm->forward(x), *dec_->output_projection);
}

Tensor TransformerSeq2Seq::forward(const Tensor& src_tokens, const Tensor& prev_output_tokens) {
  MG_CHECK(src_tokens.defined() && prev_output_tokens.defined() && src_tokens.dim() == 2 &&
               prev_output_tokens.dim() == 2 && src_tokens.size(0) == prev_output_tokens.size(0),
           kOp, "src_tokens {} and prev_output_tokens {} must be (B, S) and (B, T) with one batch size",
           src_tokens.desc(), prev_output_tokens.desc());
  return decode(prev_output_tokens, encode(src_tokens));
}

TransformerSeq2Seq::State TransformerSeq2Seq::begin(const Tensor& src_tokens) {
  no_grad guard;
  State st;
  st.enc = encode(src_tokens);
  st.src_mask = key_mask(st.enc.padding_mask);
  st.layers.resize(dec_->decoder_layers.size());
  for (size_t i = 0; i < st.layers.size(); ++i) dec_->decoder_layers[i]->precompute(st.enc.out, st.layers[i]);
  return st;
}

Tensor TransformerSeq2Seq::forward_incremental(const Tensor& prev_output_tokens, State& st) {
  ForwardScope scope(this);
  no_grad guard;
  MG_CHECK(st.enc.out.defined() && st.layers.size() == dec_->decoder_layers.size(), kOp,
           "forward_incremental needs a state from begin(src_tokens)");
  check_tokens("prev_output_tokens", prev_output_tokens, cfg.target_vocab());
  const int64_t B = prev_output_tokens.size(0), m = prev_output_tokens.size(1);
  MG_CHECK(B == st.enc.out.size(0), kOp, "prev_output_tokens {} has another batch size than the state's source {}",
           prev_output_tokens.desc(), st.enc.out.desc());
  MG_CHECK(st.pos + m <= cfg.max_target_positions, kOp,
           "prev_output_tokens {}: target length {} (after {} decoded) exceeds max_target_positions {}",
           prev_output_tokens.desc(), st.pos + m, st.pos, cfg.max_target_positions);
  // The target so far, (B, pos+m): its padding decides which keys the new queries may see.
  const std::vector<int64_t> nt = prev_output_tokens.to_int_vector();
  std::vector<int64_t> all((size_t)(B * (st.pos + m)));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < st.pos + m; ++j)
      all[(size_t)(b * (st.pos + m) + j)] =
          j < st.pos ? st.tokens[(size_t)(b * st.pos + j)] : nt[(size_t)(b * m + j - st.pos)];
  Tensor self_mask = causal_mask(all, B, st.pos, m, cfg.padding_idx);
  const DType dt = dec_->embed->dtype();
  Tensor x = add(mul_scalar(embedding(*dec_->embed, prev_output_tokens), std::sqrt((double)cfg.embed_dim)),
                 positions(st.pos, m, dt));
  for (size_t i = 0; i < st.layers.size(); ++i)
    x = dec_->decoder_layers[i]->forward_incremental(x, self_mask, st.src_mask, st.layers[i]);
  st.tokens = std::move(all);
  st.pos += m;
  return linear(dec_->final_norm->forward(x), *dec_->output_projection);
}

void TransformerSeq2Seq::reorder_incremental_state(State& st, const Tensor& new_order) const {
  no_grad guard;
  MG_CHECK(st.enc.out.defined(), kOp, "reorder_incremental_state needs a state from begin(src_tokens)");
  const std::vector<int64_t> o = checked_order(new_order, st.enc.out.size(0));
  select_batch(st.enc.out, new_order), select_batch(st.enc.padding_mask, new_order), select_batch(st.src_mask, new_order);
  for (TransformerDecoderLayer::Cache& c : st.layers) {
    select_batch(c.self_k, new_order), select_batch(c.self_v, new_order);
    select_batch(c.cross_k, new_order), select_batch(c.cross_v, new_order);
  }
  std::vector<int64_t> tokens(o.size() * (size_t)st.pos);
  for (size_t i = 0; i < o.size(); ++i)
    for (int64_t j = 0; j < st.pos; ++j) tokens[i * (size_t)st.pos + (size_t)j] = st.tokens[(size_t)(o[i] * st.pos + j)];
  st.tokens = std::move(tokens);
}

}  // namespace megagrad
