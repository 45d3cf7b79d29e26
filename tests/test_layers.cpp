// Mega layers: whole-layer gradchecks (every parameter and the input, float64) for each norm,
// pre- and postnorm, encoder and decoder; parameter names; save/load; configuration errors.
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include "autograd/gradcheck.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/safetensors.h"
#include "mega/layers.h"

using namespace megagrad;
using Catch::Contains;

namespace {
MegaLayerConfig small_config() {
  MegaLayerConfig c;
  c.embed_dim = 4, c.hidden_dim = 6, c.ffn_hidden_dim = 5, c.z_dim = 4, c.n_dim = 2, c.max_positions = 16;
  return c;
}

// gradcheck of the layer output w.r.t. x and every parameter (noise on the parameters so that
// every path, attention included, carries weight).
GradcheckResult layer_gradcheck(const MegaLayerConfig& cfg, bool pad) {
  MegaLayer layer(cfg, 11);
  layer.to(DType::Float64);
  {
    no_grad g;
    Generator gen(12);
    for (auto& [n, p] : layer.named_parameters()) p.add_(normal(p.shape(), 0, 0.3, DType::Float64, &gen));
  }
  const int64_t B = 2, L = 8;
  Generator gen(13);
  Tensor x = randn({B, L, cfg.embed_dim}, DType::Float64, &gen).requires_grad_();
  Tensor mask;
  if (pad) {
    std::vector<double> m((size_t)(B * L), 0.0);
    for (int64_t t = L - 3; t < L; ++t) m[(size_t)(L + t)] = 1.0;
    mask = Tensor::from_vector(m, {B, L}, DType::Float64);
  }
  std::vector<Tensor> inputs{x};
  for (auto& [n, p] : layer.named_parameters()) inputs.push_back(p);
  return gradcheck([&](const std::vector<Tensor>& in) { return layer.forward(in[0], mask); }, inputs);
}
}  // namespace

TEST_CASE("layers: whole-layer gradcheck for each norm, pre/postnorm, encoder and decoder", "[layers][gradcheck]") {
  for (NormType norm : {NormType::LayerNorm, NormType::ScaleNorm, NormType::RMSNorm, NormType::BatchNorm})
    for (bool prenorm : {true, false}) {
      MegaLayerConfig c = small_config();
      c.norm_type = norm, c.prenorm = prenorm;
      GradcheckResult r = layer_gradcheck(c, false);
      INFO("encoder, norm " << (int)norm << " prenorm " << prenorm << ": " << r.report());
      CHECK(r.passed);
    }
  MegaLayerConfig dec = small_config();
  dec.bidirectional = false, dec.causal = true, dec.chunk_size = 4, dec.truncation = 3;
  dec.attention_activation = AttentionActivation::Relu2, dec.rel_pos_bias = RelPosBias::Kind::Rotary;
  GradcheckResult r = layer_gradcheck(dec, true);
  INFO("decoder: " << r.report());
  CHECK(r.passed);
}

TEST_CASE("layers: parameter names are the official state_dict names", "[layers]") {
  MegaLayerConfig c = small_config();
  MegaLayer layer(c, 1);
  std::vector<std::string> names;
  for (auto& [n, p] : layer.named_parameters()) names.push_back(n);
  std::vector<std::string> expected{
      "mega_layer.gamma", "mega_layer.beta", "mega_layer.norm.norm.weight", "mega_layer.norm.norm.bias",
      "mega_layer.move.delta", "mega_layer.move.alpha", "mega_layer.move.beta", "mega_layer.move.gamma",
      "mega_layer.move.omega", "mega_layer.v_proj.weight", "mega_layer.v_proj.bias", "mega_layer.mx_proj.weight",
      "mega_layer.mx_proj.bias", "mega_layer.h_proj.weight", "mega_layer.h_proj.bias",
      "mega_layer.rel_pos_bias.rel_pos_bias", "nffn.norm.norm.weight", "nffn.norm.norm.bias", "nffn.fc1.weight",
      "nffn.fc1.bias", "nffn.fc2.weight", "nffn.fc2.bias"};
  std::sort(names.begin(), names.end());
  std::sort(expected.begin(), expected.end());
  CHECK(names == expected);
  // Official shapes: mx_proj is (D + Z + H + D, D); the EMA is bidirectional (E = 2D).
  for (auto& [n, p] : layer.named_parameters()) {
    if (n == "mega_layer.mx_proj.weight") CHECK(p.shape() == Shape{4 + 4 + 6 + 4, 4});
    if (n == "mega_layer.move.gamma") CHECK(p.shape() == Shape{8, 2});
    if (n == "mega_layer.rel_pos_bias.rel_pos_bias") CHECK(p.shape() == Shape{2 * 16 - 1});
  }
  c.ffn_hidden_dim = 0;
  CHECK(MegaLayer(c, 1).named_parameters().size() == expected.size() - 6);  // no nffn.*
}

TEST_CASE("layers: Module::to converts in place, so earlier handles stay valid", "[layers]") {
  MegaLayer layer(small_config(), 1);
  NamedTensors before = layer.named_parameters();
  layer.to(DType::Float64);
  for (auto& [n, t] : before) {
    INFO(n);
    CHECK(t.dtype() == DType::Float64);
    CHECK(t.requires_grad());
  }
  CHECK(before[0].second.same(layer.named_parameters()[0].second));
}

TEST_CASE("layers: save and load a layer's state_dict through safetensors", "[layers]") {
  MegaLayerConfig c = small_config();
  c.norm_type = NormType::BatchNorm;  // buffers too
  MegaLayer a(c, 1), b(c, 2);
  std::string path = (std::filesystem::temp_directory_path() / "megagrad_layer_test.safetensors").string();
  save_safetensors(path, a.state_dict());
  b.load_state_dict(load_safetensors(path).tensors);
  std::remove(path.c_str());
  auto sa = a.state_dict(), sb = b.state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) CHECK(sa[i].second.to_vector() == sb[i].second.to_vector());
  NamedTensors wrong = a.state_dict();
  wrong[0].second = Tensor::zeros({3});
  REQUIRE_THROWS_WITH(b.load_state_dict(wrong), Contains("[load_state_dict]") && Contains(wrong[0].first));
  wrong = a.state_dict();
  wrong.pop_back();
  REQUIRE_THROWS_WITH(b.load_state_dict(wrong), Contains("missing"));
  wrong = a.state_dict();
  wrong.emplace_back("mega_layer.extra", Tensor::zeros({1}));
  REQUIRE_THROWS_WITH(b.load_state_dict(wrong), Contains("unexpected 'mega_layer.extra'"));
}

TEST_CASE("layers: bad configurations and inputs give clear errors", "[layers][errors]") {
  MegaLayerConfig c = small_config();
  c.chunk_size = 3;
  MegaLayer chunked(c, 1);
  REQUIRE_THROWS_WITH(chunked.forward(Tensor::zeros({1, 8, 4})), Contains("not a multiple of the chunk"));
  MegaLayer plain(small_config(), 1);
  REQUIRE_THROWS_WITH(plain.forward(Tensor::zeros({1, 20, 4})), Contains("max_positions"));
  c = small_config();
  c.z_dim = 5, c.rel_pos_bias = RelPosBias::Kind::Rotary;
  REQUIRE_THROWS_WITH(MegaLayer(c, 1), Contains("[mega]") && Contains("even z_dim"));
  c = small_config();
  c.causal = true;  // with bidirectional = true
  REQUIRE_THROWS_WITH(MegaLayer(c, 1), Contains("causal") && Contains("bidirectional"));
  REQUIRE_THROWS_WITH(plain.forward(Tensor::zeros({1, 8, 5})), Contains("[mega]") && Contains("(1,8,5)"));
  REQUIRE_THROWS_WITH(plain.forward(Tensor::zeros({1, 8, 4}, DType::Float64)), Contains("float64") && Contains("float32"));
  c = small_config();
  c.dropout = 1.0;
  REQUIRE_THROWS_WITH(MegaLayer(c, 1), Contains("dropout"));
}
