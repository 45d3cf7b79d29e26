// Incremental decoding of a decoder layer: feeding the sequence one token at a time, or in
// blocks of any length, gives the parallel forward's outputs to 1e-10 in float64, with and
// without truncation, chunking and padding, for each attention activation and bias.
#include <catch2/catch.hpp>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "mega/layers.h"
#include "tests/test_util.h"

using namespace megagrad;

namespace {
MegaLayerConfig decoder_config() {
  MegaLayerConfig c;
  c.embed_dim = 6, c.hidden_dim = 10, c.ffn_hidden_dim = 8, c.z_dim = 4, c.n_dim = 3;
  c.bidirectional = false, c.causal = true, c.max_positions = 32;
  return c;
}

using test::max_abs_diff;

// Runs the layer in parallel and in blocks of the given lengths; returns the largest difference.
double incremental_vs_parallel(const MegaLayerConfig& cfg, std::vector<int64_t> blocks, bool pad) {
  const int64_t B = 2, L = 16;
  MegaLayer layer(cfg, 3);
  layer.to(DType::Float64);
  layer.eval();
  {  // noise on every parameter, so that attention and biases matter (as the _noise cases)
    no_grad g;
    Generator gen(4);
    for (auto& [name, p] : layer.named_parameters()) p.add_(normal(p.shape(), 0, 0.5, DType::Float64, &gen));
  }
  Generator gen(5);
  Tensor x = randn({B, L, cfg.embed_dim}, DType::Float64, &gen);
  Tensor mask;
  if (pad) {  // right padding: 0 and 5 pads
    std::vector<double> m((size_t)(B * L), 0.0);
    for (int64_t t = L - 5; t < L; ++t) m[(size_t)(L + t)] = 1.0;
    mask = Tensor::from_vector(m, {B, L}, DType::Float64);
  }
  Tensor full;
  {
    no_grad g;
    full = layer.forward(x, mask);
  }
  LayerState st;
  std::vector<Tensor> parts;
  int64_t t = 0;
  for (size_t i = 0; t < L; ++i) {
    int64_t len = std::min(blocks[i % blocks.size()], L - t);
    Tensor xb = x.narrow(1, t, len);
    Tensor mb = mask.defined() ? mask.narrow(1, t, len) : Tensor();
    parts.push_back(layer.forward_incremental(xb, mb, st));
    t += len;
  }
  return max_abs_diff(cat(parts, 1), full);
}
}  // namespace

TEST_CASE("incremental decoding equals the parallel forward", "[incremental]") {
  const double tol = 1e-10;  // float64, same math in a different order
  for (auto act : {AttentionActivation::Softmax, AttentionActivation::Laplace, AttentionActivation::Relu2})
    for (auto bias : {RelPosBias::Kind::Simple, RelPosBias::Kind::Rotary})
      for (int64_t chunk : {-1, 4})
        for (std::optional<int64_t> trunc : {std::optional<int64_t>{}, std::optional<int64_t>{5}})
          for (bool pad : {false, true}) {
            MegaLayerConfig cfg = decoder_config();
            cfg.attention_activation = act, cfg.rel_pos_bias = bias, cfg.chunk_size = chunk, cfg.truncation = trunc;
            INFO("activation " << (int)act << " bias " << (int)bias << " chunk " << chunk << " truncation "
                               << trunc.value_or(0) << " padding " << pad);
            CHECK(incremental_vs_parallel(cfg, {1}, pad) < tol);          // one token at a time
            CHECK(incremental_vs_parallel(cfg, {3, 1, 5}, pad) < tol);    // blocks crossing chunks
            CHECK(incremental_vs_parallel(cfg, {16}, pad) < tol);         // all at once
          }
}

TEST_CASE("incremental decoding refuses encoder layers and non-causal layers", "[incremental][errors]") {
  MegaLayerConfig enc = decoder_config();
  enc.bidirectional = true, enc.causal = false;
  MegaLayer layer(enc, 1);
  LayerState st;
  REQUIRE_THROWS_WITH(layer.forward_incremental(Tensor::zeros({1, 1, 6}), Tensor(), st),
                      Catch::Contains("[mega]") && Catch::Contains("bidirectional"));
  MegaLayerConfig nc = decoder_config();
  nc.causal = false;
  MegaLayer layer2(nc, 1);
  REQUIRE_THROWS_WITH(layer2.forward_incremental(Tensor::zeros({1, 1, 6}), Tensor(), st), Catch::Contains("causal"));
}
