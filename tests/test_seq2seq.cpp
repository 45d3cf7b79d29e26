// The encoder-decoder models (mega/seq2seq.h): official names and shapes of the state_dict, the
// configuration's JSON, the label-smoothed loss (a hand-computed value and a gradcheck), float64
// gradchecks of whole small models, overfitting a tiny copy task, incremental decoding equal to
// the parallel forward with source padding, and the errors for bad input.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <map>
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "mega/optim.h"
#include "mega/seq2seq.h"
#include "tests/test_util.h"

using namespace megagrad;
using Catch::Matchers::Contains;
using test::max_abs_diff;

namespace {
Seq2SeqConfig tiny_config(int64_t D = 6, int64_t max_src = 16, int64_t max_tgt = 16) {
  Seq2SeqConfig c;
  MegaLayerConfig l;
  l.embed_dim = D, l.hidden_dim = 10, l.ffn_hidden_dim = 8, l.z_dim = 4, l.n_dim = 3;
  c.encoder = l, c.decoder = l;
  c.encoder.bidirectional = true, c.encoder.causal = false, c.encoder.max_positions = max_src;
  c.decoder.bidirectional = false, c.decoder.causal = true, c.decoder.max_positions = max_tgt;
  c.encoder_layers = 2, c.decoder_layers = 2, c.vocab_size = 11;
  return c;
}

// Noise on every parameter, so that biases, gates and the shared matrix all matter.
void add_noise(Module& m, uint64_t seed, double std = 0.3) {
  no_grad g;
  Generator gen(seed);
  for (auto& [name, p] : m.named_parameters()) p.add_(normal(p.shape(), 0, std, p.dtype(), &gen));
}

Tensor tokens(std::vector<int64_t> v, int64_t B) {
  const int64_t L = (int64_t)v.size() / B;
  return Tensor::from_vector(v, {B, L});
}

std::map<std::string, Shape> shapes_of(const NamedTensors& sd) {
  std::map<std::string, Shape> m;
  for (auto& [n, t] : sd) m[n] = t.shape();
  return m;
}

// Feeds the target in blocks of the given lengths (cycled) through forward_incremental.
template <typename Model>
Tensor run_incremental(Model& m, const Tensor& src, const Tensor& tgt, const std::vector<int64_t>& blocks) {
  auto st = m.begin(src);
  std::vector<Tensor> parts;
  const int64_t T = tgt.size(1);
  for (int64_t t = 0, i = 0; t < T; ++i) {
    const int64_t len = std::min(blocks[(size_t)i % blocks.size()], T - t);
    parts.push_back(m.forward_incremental(tgt.narrow(1, t, len).contiguous(), st));
    t += len;
  }
  return cat(parts, 1);
}
}  // namespace

TEST_CASE("seq2seq: the official state_dict names and shapes", "[seq2seq]") {
  const int64_t D = 6, V = 11, N = 3, Z = 4, H = 10, F = 8;
  Seq2SeqConfig c = tiny_config(D, 16, 24);
  MegaSeq2Seq m(c, 1);
  auto s = shapes_of(m.state_dict());
  CHECK(s.at("encoder.embed_tokens.weight") == Shape{V, D});
  CHECK(s.at("encoder.layers.0.mega_layer.move.alpha") == Shape{2 * D, N, 1});  // bidirectional EMA
  CHECK(s.at("encoder.layers.1.mega_layer.mx_proj.weight") == Shape{D + Z + H + D, D});
  CHECK(s.at("encoder.layers.1.nffn.fc1.weight") == Shape{F, D});
  CHECK(s.at("encoder.layers.0.mega_layer.rel_pos_bias.rel_pos_bias") == Shape{2 * 16 - 1});
  CHECK(s.at("encoder.final_norm.norm.weight") == Shape{D});
  CHECK(s.at("decoder.layers.0.mega_layer.move.alpha") == Shape{D, N, 1});  // causal EMA
  CHECK(s.at("decoder.layers.0.mega_layer.rel_pos_bias.rel_pos_bias") == Shape{2 * 24 - 1});
  CHECK(s.at("decoder.layers.1.cross_attn.q_proj.weight") == Shape{2 * D + Z, D});
  CHECK(s.at("decoder.layers.1.cross_attn.k_proj.weight") == Shape{Z, D});
  CHECK(s.at("decoder.layers.1.cross_attn.v_proj.weight") == Shape{D, D});
  CHECK(s.at("decoder.layers.1.cross_attn.h_proj.weight") == Shape{D, D});
  CHECK(s.at("decoder.layers.1.cross_attn.norm.norm.weight") == Shape{D});
  // The cross-attention's bias spans max(max_source_positions, max_target_positions).
  CHECK(s.at("decoder.layers.1.cross_attn.rel_pos_bias.rel_pos_bias") == Shape{2 * 24 - 1});
  CHECK(s.at("decoder.layers.1.nffn.fc2.weight") == Shape{D, F});
  CHECK(s.at("decoder.final_norm.norm.bias") == Shape{D});
  // Shared: one matrix, listed once in our state_dict and counted once.
  CHECK(s.count("decoder.embed_tokens.weight") == 0);
  CHECK(s.count("decoder.output_projection.weight") == 0);
  int64_t total = 0;
  for (auto& [n, t] : m.state_dict()) total += t.numel();
  CHECK(m.num_parameters() == total);
  // The official state_dict: versions, and the shared matrix under all three names, in order.
  NamedTensors off = m.official_state_dict();
  REQUIRE(off.size() == m.state_dict().size() + 4);
  CHECK(off.front().first == "encoder.version");
  CHECK(off[1].first == "encoder.embed_tokens.weight");
  CHECK(off.back().first == "decoder.output_projection.weight");
  std::map<std::string, Tensor> om(off.begin(), off.end());
  CHECK(om.at("decoder.embed_tokens.weight").same(om.at("encoder.embed_tokens.weight")));
  CHECK(om.at("decoder.output_projection.weight").same(om.at("encoder.embed_tokens.weight")));
  CHECK(om.at("decoder.version").item() == 3.0);
  // Official init: the embedding's padding row is zero, the rest N(0, D^-1/2).
  const std::vector<double> e = om.at("encoder.embed_tokens.weight").to_vector();
  double sq = 0;
  for (int64_t d = 0; d < D; ++d) CHECK(e[(size_t)d] == 0.0);
  for (size_t i = (size_t)D; i < e.size(); ++i) sq += e[i] * e[i];
  CHECK(std::sqrt(sq / (double)(e.size() - (size_t)D)) == Approx(std::pow((double)D, -0.5)).epsilon(0.35));

  SECTION("unshared, and decoder input-output sharing only") {
    Seq2SeqConfig u = c;
    u.share_all_embeddings = false, u.tgt_vocab_size = 13;
    MegaSeq2Seq mu(u, 2);
    auto su = shapes_of(mu.state_dict());
    CHECK(su.at("encoder.embed_tokens.weight") == Shape{V, D});
    CHECK(su.at("decoder.embed_tokens.weight") == Shape{13, D});
    CHECK(su.at("decoder.output_projection.weight") == Shape{13, D});
    CHECK(mu.official_state_dict().size() == mu.state_dict().size() + 2);
    u.share_decoder_input_output_embed = true;
    MegaSeq2Seq mt(u, 2);
    CHECK(shapes_of(mt.state_dict()).count("decoder.output_projection.weight") == 0);
    CHECK(shapes_of(mt.official_state_dict()).at("decoder.output_projection.weight") == Shape{13, D});
  }
  SECTION("postnorm has no final norms; normalize_embedding adds embed_norm") {
    Seq2SeqConfig p = c;
    p.encoder.prenorm = p.decoder.prenorm = false, p.normalize_embedding = true;
    auto sp = shapes_of(MegaSeq2Seq(p, 3).state_dict());
    CHECK(sp.count("encoder.final_norm.norm.weight") == 0);
    CHECK(sp.count("decoder.final_norm.norm.weight") == 0);
    CHECK(sp.at("encoder.embed_norm.norm.weight") == Shape{D});
    CHECK(sp.at("decoder.embed_norm.norm.bias") == Shape{D});
    p.encoder.prenorm = true;
    CHECK_THROWS_WITH(MegaSeq2Seq(p, 3), Contains("[seq2seq]") && Contains("normalize_embedding and prenorm"));
  }
  SECTION("load_official_state_dict round trip; a differing alias is refused") {
    add_noise(m, 4);
    MegaSeq2Seq other(c, 5);
    other.load_official_state_dict(m.official_state_dict());
    m.eval(), other.eval();
    Tensor src = tokens({3, 4, 5, 0, 6, 7, 8, 9}, 2), tgt = tokens({1, 3, 4, 1, 5, 0}, 2);
    no_grad g;
    CHECK(max_abs_diff(other.forward(src, tgt), m.forward(src, tgt)) == 0.0);
    NamedTensors bad;
    for (auto& [n, t] : m.official_state_dict())
      bad.emplace_back(n, n == "decoder.output_projection.weight" ? add_scalar(t, 1.0) : t);
    CHECK_THROWS_WITH(other.load_official_state_dict(bad),
                      Contains("[seq2seq]") && Contains("decoder.output_projection.weight") &&
                          Contains("encoder.embed_tokens.weight"));
  }
}

TEST_CASE("seq2seq: the configuration's JSON round trip and errors", "[seq2seq]") {
  Seq2SeqConfig c = tiny_config();
  c.decoder.chunk_size = 4, c.decoder.truncation = 5, c.encoder.rel_pos_bias = RelPosBias::Kind::Rotary;
  c.decoder.attention_activation = AttentionActivation::Laplace, c.share_all_embeddings = false, c.tgt_vocab_size = 9;
  const Json j = seq2seq_config_to_json(c);
  const Seq2SeqConfig back = parse_seq2seq_config(Json::parse(j.dump()), "test");
  CHECK(seq2seq_config_to_json(back).dump() == j.dump());
  CHECK(back.decoder.truncation == std::optional<int64_t>(5));
  CHECK(back.decoder.causal);
  CHECK_FALSE(back.encoder.causal);
  Json bad = Json::parse(j.dump());
  bad.set("layers", 3);
  CHECK_THROWS_WITH(parse_seq2seq_config(bad, "test"), Contains("[config]") && Contains("unknown key \"layers\""));
  Json causal_enc = Json::parse(j.dump());
  Json enc = causal_enc.at("encoder");
  enc.set("causal", true);
  causal_enc.set("encoder", enc);
  CHECK_THROWS_WITH(parse_seq2seq_config(causal_enc, "test"),
                    Contains("[config] test: encoder") && Contains("unidirectional"));
  Json shared = Json::parse(j.dump());
  shared.set("share_all_embeddings", true);
  CHECK_THROWS_WITH(parse_seq2seq_config(shared, "test"), Contains("one joint vocabulary"));
}

TEST_CASE("seq2seq: label-smoothed cross-entropy", "[seq2seq]") {
  // Rows: target 2 of logits (1, 2, 3); a padding target (ignored); target 1 of (0, 0, 0).
  Tensor logits = Tensor::from_vector({1, 2, 3, 0.5, -1, 2, 0, 0, 0}, {3, 3}, DType::Float64);
  Tensor target = Tensor::from_vector(std::vector<int64_t>{2, 0, 1}, {3});
  LabelSmoothedLoss l = label_smoothed_cross_entropy(logits, target, 0.1, 0);
  // By hand: lse0 = 3 + log(1 + e^-1 + e^-2); nll = (lse0 - 3) + log 3; the smoothing term sums
  // -log p over the vocabulary: (3 lse0 - 6) + 3 log 3.
  const double lse0 = 3 + std::log(1 + std::exp(-1.0) + std::exp(-2.0));
  const double nll = (lse0 - 3) + std::log(3.0), smooth = (3 * lse0 - 6) + 3 * std::log(3.0);
  CHECK(l.ntokens == 2);
  CHECK(l.nll_loss.item() == Approx(nll).epsilon(1e-14));
  CHECK(l.loss.item() == Approx(0.9 * nll + 0.1 / 3 * smooth).epsilon(1e-14));
  CHECK(l.loss.item() == Approx(1.6062182531124904).epsilon(1e-14));
  // Per token it is torch's cross_entropy with label smoothing (the same target distribution).
  CHECK(l.loss.item() / (double)l.ntokens == Approx(cross_entropy(logits, target, 0, 0.1).item()).epsilon(1e-13));
  // float64 gradcheck through (B, T, V) logits with padding targets.
  Generator gen(3);
  Tensor x = randn({2, 3, 5}, DType::Float64, &gen);
  x.requires_grad_(true);
  Tensor t3 = tokens({1, 4, 0, 2, 0, 3}, 2);
  GradcheckResult r = gradcheck(
      [&](const std::vector<Tensor>& in) { return label_smoothed_cross_entropy(in[0], t3, 0.1, 0).loss; }, {x});
  INFO(r.report());
  CHECK(r.passed);
  CHECK(r.max_error < 1e-7);
  CHECK_THROWS_WITH(label_smoothed_cross_entropy(logits, tokens({1, 2}, 1), 0.1, 0),
                    Contains("[label_smoothed_cross_entropy]") && Contains("(3,3)"));
  CHECK_THROWS_WITH(label_smoothed_cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{2, 7, 1}, {3}), 0.1, 0),
                    Contains("target id 7"));
}

TEST_CASE("seq2seq: whole-model gradchecks (float64)", "[seq2seq][gradcheck]") {
  Tensor src = tokens({3, 4, 5, 6, 2, 7, 0, 0}, 2);  // source padding in row 1
  Tensor tgt = tokens({1, 3, 4, 1, 5, 0}, 2);        // target padding in row 1
  SECTION("Mega") {
    Seq2SeqConfig c = tiny_config(4, 8, 8);
    c.encoder.hidden_dim = c.decoder.hidden_dim = 6, c.encoder.ffn_hidden_dim = c.decoder.ffn_hidden_dim = 4;
    c.encoder.z_dim = c.decoder.z_dim = 2, c.encoder.n_dim = c.decoder.n_dim = 2;
    c.encoder_layers = c.decoder_layers = 1, c.vocab_size = 8;
    MegaSeq2Seq m(c, 6);
    m.to(DType::Float64);
    add_noise(m, 7);
    GradcheckResult r = gradcheck([&](const std::vector<Tensor>&) { return m.forward(src, tgt); }, m.parameters());
    INFO("MegaSeq2Seq (" << m.num_parameters() << " parameters): " << r.report());
    CHECK(r.passed);
    // And through the loss.
    GradcheckResult rl = gradcheck(
        [&](const std::vector<Tensor>&) {
          return label_smoothed_cross_entropy(m.forward(src, tgt), tokens({3, 4, 2, 5, 0, 0}, 2)).loss;
        },
        m.parameters());
    INFO("MegaSeq2Seq + loss: " << rl.report());
    CHECK(rl.passed);
  }
  SECTION("Transformer") {
    TransformerSeq2SeqConfig c;
    c.embed_dim = 4, c.ffn_dim = 4, c.num_heads = 2, c.encoder_layers = c.decoder_layers = 1, c.vocab_size = 8;
    TransformerSeq2Seq m(c, 8);
    m.to(DType::Float64);
    add_noise(m, 9);
    GradcheckResult r = gradcheck([&](const std::vector<Tensor>&) { return m.forward(src, tgt); }, m.parameters());
    INFO("TransformerSeq2Seq (" << m.num_parameters() << " parameters): " << r.report());
    CHECK(r.passed);
  }
}

TEST_CASE("seq2seq: overfitting a tiny copy task with AdamW", "[seq2seq]") {
  // 8 sentences of 5 symbols (ids 2..9); the target is the source, fed as [1, y0..y3] (1 = BOS).
  const int64_t B = 8, L = 5;
  std::vector<int64_t> s((size_t)(B * L)), prev((size_t)(B * L));
  for (auto& v : s) v = 2 + (int64_t)(uniform_at(11, (uint64_t)(&v - s.data()), 0.0, 8.0));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < L; ++i) prev[(size_t)(b * L + i)] = i == 0 ? 1 : s[(size_t)(b * L + i - 1)];
  Tensor src = Tensor::from_vector(s, {B, L}), tgt_in = Tensor::from_vector(prev, {B, L}), tgt_out = src;
  auto train = [&](Module& m, auto&& forward, int steps) {
    AdamWOptions o;
    o.lr = 1e-2, o.beta2 = 0.98, o.weight_decay = 0.0;
    AdamW opt(m.named_parameters(), o);
    std::vector<double> losses;
    for (int step = 0; step < steps; ++step) {
      LabelSmoothedLoss l = label_smoothed_cross_entropy(forward(), tgt_out, 0.1, 0);
      Tensor loss = mul_scalar(l.loss, 1.0 / (double)l.ntokens);
      losses.push_back(loss.item());
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
    return losses;
  };
  SECTION("Mega") {
    Seq2SeqConfig c = tiny_config(16, 8, 8);
    for (MegaLayerConfig* l : {&c.encoder, &c.decoder}) l->hidden_dim = 32, l->ffn_hidden_dim = 32, l->z_dim = 8, l->n_dim = 4;
    c.encoder_layers = c.decoder_layers = 1, c.vocab_size = 10;
    MegaSeq2Seq m(c, 12);
    std::vector<double> losses = train(m, [&] { return m.forward(src, tgt_in); }, 40);
    INFO("Mega copy-task loss: " << losses.front() << " -> " << losses.back());
    CHECK(losses.back() < 0.5 * losses.front());
    CHECK(losses.back() < 1.2);  // near the label-smoothing floor (about 0.5 here), far below log 10 = 2.3
  }
  SECTION("Transformer") {
    TransformerSeq2SeqConfig c;
    c.embed_dim = 16, c.ffn_dim = 32, c.num_heads = 2, c.encoder_layers = c.decoder_layers = 1, c.vocab_size = 10;
    TransformerSeq2Seq m(c, 13);
    std::vector<double> losses = train(m, [&] { return m.forward(src, tgt_in); }, 40);
    INFO("Transformer copy-task loss: " << losses.front() << " -> " << losses.back());
    CHECK(losses.back() < 0.5 * losses.front());
  }
}

TEST_CASE("seq2seq: incremental decoding equals the parallel forward (float64, source padding)", "[seq2seq][incremental]") {
  const double tol = 1e-10;
  // Sources of 7 with 0, 2 and 5 pads; targets of 11, row 2 right-padded.
  Tensor src = tokens({3, 4, 5, 6, 7, 8, 9,  //
                       2, 5, 7, 9, 3, 0, 0,  //
                       10, 4, 0, 0, 0, 0, 0},
                      3);
  Tensor tgt = tokens({1, 3, 4, 5, 6, 7, 8, 9, 10, 2, 3,  //
                       1, 9, 8, 7, 6, 5, 4, 3, 2, 10, 9,  //
                       1, 4, 4, 5, 5, 6, 7, 0, 0, 0, 0},
                      3);
  Tensor other_src = tokens({3, 4, 5, 6, 7, 8, 2,  //
                             2, 5, 7, 9, 4, 0, 0,  //
                             10, 5, 0, 0, 0, 0, 0},
                            3);
  double worst = 0;
  for (auto act : {AttentionActivation::Softmax, AttentionActivation::Laplace, AttentionActivation::Relu2})
    for (auto bias : {RelPosBias::Kind::Simple, RelPosBias::Kind::Rotary})
      for (int64_t chunk : {-1, 4})
        for (bool prenorm : {true, false}) {
          if (!prenorm && (act != AttentionActivation::Softmax || bias != RelPosBias::Kind::Simple)) continue;
          Seq2SeqConfig c = tiny_config(6, 16, 16);
          for (MegaLayerConfig* l : {&c.encoder, &c.decoder})
            l->attention_activation = act, l->rel_pos_bias = bias, l->chunk_size = chunk, l->prenorm = prenorm;
          if (chunk > 0) c.decoder.truncation = 6;  // the decoder's EMA truncated as well
          if (!prenorm) {  // postnorm runs also normalise the embeddings and keep two vocabularies
            c.normalize_embedding = true, c.share_all_embeddings = false, c.tgt_vocab_size = 13;
            c.encoder.norm_type = c.decoder.norm_type = NormType::ScaleNorm;
          }
          MegaSeq2Seq m(c, 21);
          m.to(DType::Float64);
          add_noise(m, 22);
          m.eval();
          Tensor full;
          {
            no_grad g;
            full = m.forward(src, tgt);
          }
          INFO("activation " << (int)act << " bias " << (int)bias << " chunk " << chunk << " prenorm " << prenorm);
          const double d1 = max_abs_diff(run_incremental(m, src, tgt, {1}), full);
          const double d2 = max_abs_diff(run_incremental(m, src, tgt, {3, 1, 5}), full);
          CHECK(d1 < tol);
          CHECK(d2 < tol);
          worst = test::max_or_inf(test::max_or_inf(worst, d1), d2);  // NaN -> inf
          // Not vacuous: another source changes every target position's logits.
          CHECK(max_abs_diff(run_incremental(m, other_src, tgt.narrow(1, 0, 1).contiguous(), {1}),
                             full.narrow(1, 0, 1)) > 1e-6);
          if (chunk > 0) {  // the self-attention's cache holds the current chunk only
            auto st = m.begin(src);
            for (int64_t t = 0; t < 11; ++t) m.forward_incremental(tgt.narrow(1, t, 1).contiguous(), st);
            for (auto& ls : st.self) CHECK(ls.keys.size(1) <= chunk);
          }
        }
  WARN("MegaSeq2Seq incremental vs parallel, worst max |difference|: " << worst);
  {  // float32, as translation runs: the decoding loops sum in double, the parallel kernels in float
    Seq2SeqConfig c = tiny_config(6, 16, 16);
    c.decoder.chunk_size = 4;
    MegaSeq2Seq m(c, 25);
    add_noise(m, 26);
    m.eval();
    Tensor full;
    {
      no_grad g;
      full = m.forward(src, tgt);
    }
    const double d = max_abs_diff(run_incremental(m, src, tgt, {1}), full);
    INFO("float32: " << d);
    CHECK(d < 1e-4);
  }

  TransformerSeq2SeqConfig tc;
  tc.embed_dim = 8, tc.ffn_dim = 12, tc.num_heads = 2, tc.encoder_layers = tc.decoder_layers = 2, tc.vocab_size = 11;
  TransformerSeq2Seq tr(tc, 23);
  tr.to(DType::Float64);
  add_noise(tr, 24);
  tr.eval();
  Tensor full;
  {
    no_grad g;
    full = tr.forward(src, tgt);
  }
  const double t1 = max_abs_diff(run_incremental(tr, src, tgt, {1}), full);
  const double t2 = max_abs_diff(run_incremental(tr, src, tgt, {3, 1, 5}), full);
  CHECK(t1 < tol);
  CHECK(t2 < tol);
  CHECK(max_abs_diff(run_incremental(tr, other_src, tgt.narrow(1, 0, 1).contiguous(), {1}), full.narrow(1, 0, 1)) >
        1e-6);
  WARN("TransformerSeq2Seq incremental vs parallel, max |difference|: " << std::max(t1, t2));
}

namespace {
// Decodes 3 target tokens for a batch of 2, reorders the state to rows {1, 0, 1} (as a beam search
// does), decodes 3 more; the logits must be those of a fresh state over the reordered batch, and
// those of the parallel forward.
template <typename Model>
void check_reorder(Model& m) {
  Tensor src = tokens({3, 4, 5, 6, 7, 2, 5, 7, 0, 0}, 2);
  Tensor hist = tokens({1, 3, 4, 1, 9, 8}, 2), next = tokens({5, 6, 2, 7, 6, 5, 2, 2, 9}, 3);
  Tensor order = Tensor::from_vector(std::vector<int64_t>{1, 0, 1}, {3});
  no_grad g;
  auto st = m.begin(src);
  for (int64_t t = 0; t < 3; ++t) m.forward_incremental(hist.narrow(1, t, 1).contiguous(), st);
  m.reorder_incremental_state(st, order);
  std::vector<Tensor> parts;
  for (int64_t t = 0; t < 3; ++t) parts.push_back(m.forward_incremental(next.narrow(1, t, 1).contiguous(), st));
  Tensor got = cat(parts, 1);
  Tensor src2 = index_select(src, 0, order), hist2 = index_select(hist, 0, order);
  Tensor full = m.forward(src2, cat({hist2, next}, 1)).narrow(1, 3, 3);
  CHECK(max_abs_diff(got, full) < 1e-10);
  CHECK_THROWS_WITH(m.reorder_incremental_state(st, Tensor::from_vector(std::vector<int64_t>{0, 3}, {2})),
                    Contains("[seq2seq]") && Contains("row 3") && Contains("3 rows"));
}
}  // namespace

TEST_CASE("seq2seq: reordering the incremental state for beam search", "[seq2seq][incremental]") {
  Seq2SeqConfig c = tiny_config(6, 16, 16);
  c.decoder.chunk_size = 4, c.decoder.truncation = 3;  // a chunk boundary after the reorder; the EMA's ring
  MegaSeq2Seq m(c, 41);
  m.to(DType::Float64);
  add_noise(m, 42);
  m.eval();
  check_reorder(m);
  TransformerSeq2SeqConfig tc;
  tc.embed_dim = 8, tc.ffn_dim = 12, tc.num_heads = 2, tc.vocab_size = 11;
  TransformerSeq2Seq tr(tc, 43);
  tr.to(DType::Float64);
  add_noise(tr, 44);
  tr.eval();
  check_reorder(tr);
}

TEST_CASE("seq2seq: bad input is refused with its shapes", "[seq2seq][errors]") {
  Seq2SeqConfig c = tiny_config(6, 16, 16);
  MegaSeq2Seq m(c, 31);
  TransformerSeq2SeqConfig tc;
  tc.embed_dim = 8, tc.ffn_dim = 8, tc.num_heads = 2, tc.vocab_size = 11, tc.max_source_positions = 16,
  tc.max_target_positions = 16;
  TransformerSeq2Seq tr(tc, 32);
  Tensor src = tokens({3, 4, 5, 6}, 1);
  std::vector<int64_t> long_target(17, 3);
  Tensor too_long = Tensor::from_vector(long_target, {1, 17});
  CHECK_THROWS_WITH(m.forward(src, too_long),
                    Contains("[seq2seq]") && Contains("target length 17 exceeds max_target_positions 16") &&
                        Contains("(1,17)"));
  CHECK_THROWS_WITH(tr.forward(src, too_long), Contains("[seq2seq]") && Contains("target length 17 exceeds"));
  CHECK_THROWS_WITH(m.forward(too_long, tokens({1, 2}, 1)),
                    Contains("[seq2seq]") && Contains("source length 17 exceeds max_source_positions 16"));
  {  // incremental decoding past the limit
    no_grad g;
    auto st = m.begin(src);
    m.forward_incremental(Tensor::from_vector(std::vector<int64_t>(15, 3), {1, 15}), st);
    CHECK_THROWS_WITH(m.forward_incremental(tokens({3, 3}, 1), st),
                      Contains("[seq2seq]") && Contains("target length 17 (after 15 decoded) exceeds max_target_positions 16"));
  }
  CHECK_THROWS_WITH(m.forward(tokens({3, 11, 5}, 1), tokens({1, 2}, 1)),
                    Contains("[seq2seq]") && Contains("src_tokens") && Contains("token id 11") &&
                        Contains("vocabulary of 11"));
  CHECK_THROWS_WITH(m.forward(src, tokens({1, -2}, 1)), Contains("prev_output_tokens") && Contains("token id -2"));
  CHECK_THROWS_WITH(m.forward(tokens({3, 4, 0, 0, 0, 0}, 2), tokens({1, 2, 1, 2}, 2)),
                    Contains("[seq2seq]") && Contains("source sentence 1") && Contains("all padding") &&
                        Contains("(2,3)"));
  CHECK_THROWS_WITH(tr.forward(tokens({0, 0, 0}, 1), tokens({1, 2}, 1)), Contains("all padding"));
  CHECK_THROWS_WITH(m.forward(src, tokens({1, 2, 1, 2}, 2)), Contains("[seq2seq]") && Contains("one batch size"));
  CHECK_THROWS_WITH(m.forward(Tensor::from_vector(std::vector<double>{1.0, 2.0}, {1, 2}), tokens({1, 2}, 1)),
                    Contains("[seq2seq]") && Contains("int64"));
  Seq2SeqConfig bad = c;
  bad.decoder.embed_dim = 8;
  CHECK_THROWS_WITH(MegaSeq2Seq(bad, 1), Contains("[seq2seq]") && Contains("must match"));
  bad = c;
  bad.decoder.causal = false;
  CHECK_THROWS_WITH(MegaSeq2Seq(bad, 1), Contains("decoder layers must be unidirectional and causal"));
}

TEST_CASE("seq2seq: parameter counts of Mega and the Transformer at one width", "[seq2seq]") {
  // The sizes the translation runs start from (D = 128, 2 + 2 layers, a joint vocabulary of 4000):
  // Mega with H = 2D, Z = 64, N = 16, F = 2D; the Transformer with F chosen to match.
  Seq2SeqConfig c = tiny_config(128, 256, 256);
  for (MegaLayerConfig* l : {&c.encoder, &c.decoder}) l->hidden_dim = 256, l->ffn_hidden_dim = 256, l->z_dim = 64, l->n_dim = 16;
  c.encoder_layers = c.decoder_layers = 2, c.vocab_size = 4000;
  MegaSeq2Seq mega(c, 1);
  TransformerSeq2SeqConfig tc;
  tc.embed_dim = 128, tc.ffn_dim = 512, tc.num_heads = 4, tc.encoder_layers = tc.decoder_layers = 2;
  tc.vocab_size = 4000, tc.max_source_positions = tc.max_target_positions = 256;
  TransformerSeq2Seq tr(tc, 1);
  const double ratio = (double)tr.num_parameters() / (double)mega.num_parameters();
  WARN("parameters at D=128, 2+2 layers, V=4000: Mega " << mega.num_parameters() << ", Transformer (F=512) "
                                                          << tr.num_parameters() << ", ratio " << ratio);
  CHECK(ratio > 0.85);
  CHECK(ratio < 1.15);
}

// What each generated token reads: the self-attention's cached keys and values are the current
// chunk's tokens (at most chunk_size: constant work per token) with chunking, the whole prefix
// without; the cross-attention's cache stays the S projected source rows. A count, not a timing:
// the hidden test below prints the times.
TEST_CASE("seq2seq: the incremental state holds the current chunk with chunking and the prefix without", "[seq2seq][incremental]") {
  const int64_t T = 40, S = 7, B = 2;
  std::vector<int64_t> sv((size_t)(B * S));
  for (int64_t i = 0; i < B * S; ++i) sv[(size_t)i] = 3 + i % 8;
  Tensor src = Tensor::from_vector(sv, {B, S});
  for (int64_t chunk : {8, -1}) {
    Seq2SeqConfig c = tiny_config(6, S, T);
    c.decoder.chunk_size = chunk;
    MegaSeq2Seq m(c, 1);
    m.eval();
    auto st = m.begin(src);
    for (int64_t t = 0; t < T; ++t) {
      m.forward_incremental(Tensor::from_vector(std::vector<int64_t>(B, 3 + t % 8), {B, 1}), st);
      const int64_t want = chunk > 0 ? t % chunk + 1 : t + 1;
      for (size_t l = 0; l < st.self.size(); ++l) {
        INFO("chunk " << chunk << ", token " << t << ", decoder layer " << l);
        REQUIRE(st.self[l].keys.defined());
        CHECK(st.self[l].keys.shape() == Shape{B, want, c.decoder.z_dim});
        CHECK(st.self[l].values.shape() == Shape{B, want, c.decoder.hidden_dim});
        CHECK(st.cross[l].S == S);
        CHECK(st.cross[l].k.size() == (size_t)(B * S * c.decoder.z_dim));
      }
    }
  }
}

// Hidden (run with "[.seq2seq_decode_cost]"): the time per generated token early and late in a
// long target, with and without chunking, printed (speed is measured, never asserted).
TEST_CASE("seq2seq: decoding cost per token against the prefix", "[.seq2seq_decode_cost]") {
  const int64_t T = 512, S = 32;
  std::vector<int64_t> sv((size_t)S);
  for (int64_t i = 0; i < S; ++i) sv[(size_t)i] = 2 + i % 50;
  Tensor src = Tensor::from_vector(sv, {1, S});
  auto per_token_ms = [&](auto& m) {
    m.eval();
    auto st = m.begin(src);
    std::vector<double> ms;
    for (int64_t t = 0; t < T; ++t) {
      const auto t0 = std::chrono::steady_clock::now();
      m.forward_incremental(Tensor::from_vector(std::vector<int64_t>{2 + t % 50}, {1, 1}), st);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    double early = 0, late = 0;
    for (int64_t t = 0; t < 64; ++t) early += ms[(size_t)t] / 64, late += ms[(size_t)(T - 64 + t)] / 64;
    return std::pair<double, double>{early, late};
  };
  for (int64_t chunk : {32, -1}) {
    Seq2SeqConfig c = tiny_config(64, T, T);
    for (MegaLayerConfig* l : {&c.encoder, &c.decoder})
      l->hidden_dim = 128, l->ffn_hidden_dim = 128, l->z_dim = 32, l->n_dim = 16, l->chunk_size = chunk;
    c.vocab_size = 1000;
    MegaSeq2Seq m(c, 1);
    const std::pair<double, double> r = per_token_ms(m);
    const double early = r.first, late = r.second;
    WARN("Mega chunk " << chunk << ": ms/token at tokens 0-63 " << early << ", at " << T - 64 << "-" << T - 1 << " "
                       << late);
  }
  TransformerSeq2SeqConfig tc;
  tc.embed_dim = 64, tc.ffn_dim = 256, tc.num_heads = 4, tc.vocab_size = 1000, tc.max_source_positions = T,
  tc.max_target_positions = T;
  TransformerSeq2Seq tr(tc, 1);
  const std::pair<double, double> r = per_token_ms(tr);
  const double early = r.first, late = r.second;
  WARN("Transformer (KV cache): ms/token at tokens 0-63 " << early << ", at " << T - 64 << "-" << T - 1 << " " << late);
}
