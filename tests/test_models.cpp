// Models: official names, gradchecks of whole small models, invariance to padding, causality and
// incremental decoding of the language model, generation.
#include <catch2/catch.hpp>
#include "autograd/gradcheck.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "mega/models.h"
#include "tests/test_util.h"

using namespace megagrad;

namespace {
MegaLayerConfig tiny_layer(bool decoder) {
  MegaLayerConfig c;
  c.embed_dim = 6, c.hidden_dim = 8, c.ffn_hidden_dim = 8, c.z_dim = 4, c.n_dim = 2, c.max_positions = 32;
  c.norm_type = NormType::ScaleNorm;
  if (decoder) c.bidirectional = false, c.causal = true, c.chunk_size = 4, c.prenorm = true, c.norm_type = NormType::LayerNorm;
  return c;
}

ClassifierConfig tiny_classifier() {
  ClassifierConfig c;
  c.layer = tiny_layer(false), c.num_layers = 2, c.vocab_size = 7, c.classifier_dim = 5, c.num_classes = 3;
  c.layer.prenorm = false;  // as the official ListOps model
  return c;
}

void add_noise(Module& m, uint64_t seed) {
  no_grad g;
  Generator gen(seed);
  for (auto& [n, p] : m.named_parameters()) p.add_(normal(p.shape(), 0, 0.3, p.dtype(), &gen));
}

using test::max_abs_diff;

Tensor tokens(std::vector<int64_t> v, int64_t B) { return Tensor::from_vector(v, {B, (int64_t)v.size() / B}); }
}  // namespace

TEST_CASE("models: MegaClassifier uses the official LRA names", "[models]") {
  MegaClassifier m(tiny_classifier(), 1);
  std::vector<std::string> names;
  for (auto& [n, p] : m.named_parameters()) names.push_back(n);
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  CHECK(has("encoder.encoder.embed_tokens.embed.weight"));
  CHECK(has("encoder.encoder.layers.0.mega_layer.move.alpha"));
  CHECK(has("encoder.encoder.layers.1.nffn.fc2.bias"));
  CHECK(has("classifier.0.0.weight"));
  CHECK(has("sentence_projection_layer.weight"));
  CHECK_FALSE(has("encoder.encoder.final_norm.norm.scalar"));  // postnorm: no final norm
}

TEST_CASE("models: MegaClassifier ignores padding and has correct gradients", "[models]") {
  ClassifierConfig c = tiny_classifier();
  MegaClassifier m(c, 2);
  m.to(DType::Float64);
  add_noise(m, 3);
  no_grad g;
  Tensor a = m.forward(tokens({3, 4, 5, 6, 1, 2}, 1));
  Tensor b = m.forward(tokens({3, 4, 5, 6, 1, 2, 0, 0, 0}, 1));  // 0 is the padding id
  CHECK(max_abs_diff(a, b) < 1e-12);
  Tensor both = m.forward(tokens({3, 4, 5, 6, 1, 2, 0, 0, 0, 2, 2, 5, 1, 3, 6, 4, 4, 1}, 2));
  CHECK(max_abs_diff(both.narrow(0, 0, 1), a) < 1e-12);
}

TEST_CASE("models: whole-model gradchecks (float64)", "[models][gradcheck]") {
  ClassifierConfig c = tiny_classifier();
  c.num_layers = 1;
  MegaClassifier m(c, 4);
  m.to(DType::Float64);
  add_noise(m, 5);
  Tensor t = tokens({1, 2, 3, 4, 5, 6, 0, 0, 6, 5, 4, 3, 2, 1, 1, 0}, 2);
  GradcheckResult r = gradcheck([&](const std::vector<Tensor>&) { return m.forward(t); }, m.parameters());
  INFO("MegaClassifier: " << r.report());
  CHECK(r.passed);

  TransformerConfig tc;
  tc.embed_dim = 8, tc.ffn_dim = 8, tc.num_heads = 2, tc.num_layers = 1, tc.vocab_size = 7, tc.classifier_dim = 4,
  tc.num_classes = 3, tc.max_positions = 16;
  TransformerClassifier tr(tc, 6);
  tr.to(DType::Float64);
  GradcheckResult r2 = gradcheck([&](const std::vector<Tensor>&) { return tr.forward(t); }, tr.parameters());
  INFO("Transformer: " << r2.report());
  CHECK(r2.passed);

  LMConfig lc;
  lc.layer = tiny_layer(true), lc.num_layers = 1, lc.vocab_size = 7;
  MegaLM lm(lc, 7);
  lm.to(DType::Float64);
  add_noise(lm, 8);
  Tensor lt = tokens({1, 2, 3, 4, 5, 6, 5, 4, 3, 2}, 1);
  GradcheckResult r3 = gradcheck([&](const std::vector<Tensor>&) { return lm.forward(lt); }, lm.parameters());
  INFO("MegaLM: " << r3.report());
  CHECK(r3.passed);
}

TEST_CASE("models: the Transformer baseline ignores padding", "[models]") {
  TransformerConfig tc;
  tc.embed_dim = 8, tc.ffn_dim = 8, tc.num_heads = 2, tc.num_layers = 2, tc.vocab_size = 7, tc.num_classes = 3;
  TransformerClassifier tr(tc, 9);
  tr.to(DType::Float64);
  no_grad g;
  CHECK(max_abs_diff(tr.forward(tokens({3, 4, 5}, 1)), tr.forward(tokens({3, 4, 5, 0, 0}, 1))) < 1e-12);
}

TEST_CASE("models: MegaLM is causal, pads to the chunk size, and decodes incrementally", "[models][incremental]") {
  LMConfig lc;
  lc.layer = tiny_layer(true), lc.num_layers = 2, lc.vocab_size = 9;
  lc.layer.truncation = 3;
  MegaLM lm(lc, 10);
  lm.to(DType::Float64);
  add_noise(lm, 11);
  lm.eval();
  no_grad g;
  std::vector<int64_t> seq{1, 5, 2, 8, 3, 3, 7, 4, 6, 2, 1};  // 11 tokens: padded to 12 inside
  Tensor full = lm.forward(tokens(seq, 1));
  REQUIRE(full.shape() == Shape{1, 11, 9});
  // Causality: changing the last token changes nothing before it.
  std::vector<int64_t> other = seq;
  other.back() = 8;
  CHECK(max_abs_diff(lm.forward(tokens(other, 1)).narrow(1, 0, 10), full.narrow(1, 0, 10)) < 1e-12);
  // Incremental decoding, one token at a time and in blocks, equals the parallel forward.
  for (std::vector<int64_t> blocks : {std::vector<int64_t>{1}, std::vector<int64_t>{2, 3, 1, 5}}) {
    MegaLM::State st;
    std::vector<Tensor> parts;
    size_t pos = 0;
    for (size_t i = 0; pos < seq.size(); ++i) {
      size_t n = std::min<size_t>((size_t)blocks[i % blocks.size()], seq.size() - pos);
      parts.push_back(lm.forward_incremental(tokens(std::vector<int64_t>(seq.begin() + (long)pos, seq.begin() + (long)(pos + n)), 1), st));
      pos += n;
    }
    CHECK(max_abs_diff(cat(parts, 1), full) < 1e-10);
  }
  // Generation is deterministic for a seed and respects top-k = 1 (greedy).
  std::vector<int64_t> g1 = lm.generate({1, 5}, 12, 1.0, 0, 42), g2 = lm.generate({1, 5}, 12, 1.0, 0, 42);
  CHECK(g1 == g2);
  CHECK(g1.size() == 12);
  std::vector<int64_t> greedy = lm.generate({1, 5}, 3, 1.0, 1, 7);
  Tensor l = lm.forward(tokens({1, 5}, 1));
  CHECK(greedy[0] == argmax(l.select(1, 1), -1).to_int_vector()[0]);
  REQUIRE_THROWS_WITH(lm.forward(tokens({1, 99}, 1)), Catch::Contains("[MegaLM]") && Catch::Contains("99"));
}
