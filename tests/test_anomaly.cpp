// Anomaly mode: the first NaN/Inf in a recorded op's output or in a gradient raises an error that
// names the op and the module it ran in; without it, the same computation runs through silently.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <thread>
#include "autograd/anomaly.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "mega/layers.h"

using namespace megagrad;
using Catch::Matchers::Contains;

namespace {
// Two encoder layers under "layers.0" and "layers.1", as a model names them.
struct TwoLayers : Container {
  std::shared_ptr<MegaLayer> l0, l1;
  TwoLayers() {
    MegaLayerConfig c;
    c.embed_dim = 8, c.hidden_dim = 16, c.ffn_hidden_dim = 16, c.z_dim = 4, c.n_dim = 2;
    auto layers = add_module("layers", std::make_shared<Container>());
    l0 = layers->add_module("0", std::make_shared<MegaLayer>(c, 1));
    l1 = layers->add_module("1", std::make_shared<MegaLayer>(c, 2));
    to(DType::Float64);
  }
  Tensor forward(const Tensor& x) { return l1->forward(l0->forward(x)); }
};
}  // namespace

TEST_CASE("anomaly: off by default, scoped by detect_anomaly, per thread", "[anomaly]") {
  REQUIRE_FALSE(AnomalyMode::is_enabled());
  {
    detect_anomaly guard;
    REQUIRE(AnomalyMode::is_enabled());
    bool other_thread = true;
    std::thread([&] { other_thread = AnomalyMode::is_enabled(); }).join();
    REQUIRE_FALSE(other_thread);
    {
      detect_anomaly off(false);
      REQUIRE_FALSE(AnomalyMode::is_enabled());
    }
    REQUIRE(AnomalyMode::is_enabled());
  }
  REQUIRE_FALSE(AnomalyMode::is_enabled());
}

TEST_CASE("anomaly: a NaN in the forward names the op and the module path", "[anomaly]") {
  TwoLayers m;
  REQUIRE(m.l1->mega_layer->v_proj->scope_path() == "layers.1.mega_layer.v_proj");
  REQUIRE(m.scope_path().empty());
  Tensor x = normal({2, 5, 8}, 0, 1, DType::Float64);
  {
    no_grad g;
    m.l1->mega_layer->v_proj->weight.set({3, 2}, std::numeric_limits<double>::quiet_NaN());
  }
  // Without anomaly mode the NaN flows through to the output.
  Tensor y = m.forward(x);
  bool has_nan = false;
  for (double v : y.to_vector()) has_nan |= std::isnan(v);
  REQUIRE(has_nan);
  // With it, the first op that makes it (the linear of layers.1's v_proj) stops the forward.
  detect_anomaly guard;
  REQUIRE_THROWS_WITH(m.forward(x), Contains("[anomaly] op 'linear' in layers.1.mega_layer.v_proj produced NaN") &&
                                        Contains("its output (2,5,16) float64") && Contains("first at [0,0,3]") &&
                                        Contains("10 of 160 values"));
}

TEST_CASE("anomaly: an Inf that appears only in the backward names the op", "[anomaly]") {
  // sqrt(0) = 0 is finite; its derivative 1 / (2 sqrt(0)) is not.
  auto make = [] {
    Tensor x = Tensor::from_vector({1.0, 0.0, 4.0}, {3}, DType::Float64);
    x.requires_grad_();
    return x;
  };
  Tensor x = make();
  sum(sqrt(x)).backward();
  REQUIRE(std::isinf(x.grad().at({1})));

  detect_anomaly guard;
  Tensor x2 = make();
  Tensor loss = sum(sqrt(x2));  // the forward is finite: no error yet
  REQUIRE_THROWS_WITH(loss.backward(), Contains("[anomaly] the backward of op 'sqrt' produced Inf") &&
                                           Contains("the gradient of input 0 (3) float64") &&
                                           Contains("first at [1]"));
}

TEST_CASE("anomaly: a model whose numbers are finite runs unchanged", "[anomaly]") {
  TwoLayers m;
  Tensor x = normal({2, 5, 8}, 0, 1, DType::Float64);
  Tensor y0 = m.forward(x);
  sum(y0).backward();
  std::vector<double> g0 = m.l0->mega_layer->move->alpha.grad().to_vector();
  m.zero_grad();
  detect_anomaly guard;
  Tensor y1 = m.forward(x);
  sum(y1).backward();
  REQUIRE(y1.to_vector() == y0.to_vector());
  REQUIRE(m.l0->mega_layer->move->alpha.grad().to_vector() == g0);
}
