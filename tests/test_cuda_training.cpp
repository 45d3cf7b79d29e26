// A whole Mega encoder layer, and whole training steps, on a CUDA device against the same on the
// CPU: forward, every gradient, and the parameters after AdamW steps. Visible skip without a device.
#include <catch2/catch.hpp>
#include "tests/cuda_test_util.h"
#include "autograd/ops.h"
#include "core/rng.h"
#include "mega/layers.h"
#include "mega/optim.h"
#include "tests/test_util.h"

using namespace megagrad;

namespace {
MegaLayerConfig layer_config() {
  MegaLayerConfig c;
  c.embed_dim = 16, c.hidden_dim = 32, c.ffn_hidden_dim = 32, c.z_dim = 8, c.n_dim = 4, c.chunk_size = 16;
  c.dropout = 0.1, c.attention_dropout = 0.1, c.hidden_dropout = 0.1;  // same Philox masks on both devices
  return c;
}

struct Inputs {
  Tensor x, mask, G;
};
Inputs make_inputs(DType dt) {
  Generator g(11);
  const int64_t B = 2, L = 48, D = 16;
  std::vector<double> m((size_t)(B * L), 0.0);
  for (int64_t t = L - 7; t < L; ++t) m[(size_t)(L + t)] = 1.0;  // the second sequence ends with padding
  return {randn({B, L, D}, dt, &g), Tensor::from_vector(m, {B, L}, dt), randn({B, L, D}, dt, &g)};
}
}  // namespace

TEST_CASE("cuda training: an encoder layer's forward and gradients match the CPU", "[cuda]") {
  if (test::skip_without_cuda()) return;
  // Tolerances relative to each tensor's largest value: float64 differs by summation order only;
  // float32 by that and by the device's float math.
  for (auto [dt, tol_out, tol_grad] : {std::tuple{DType::Float64, 1e-10, 1e-9}, std::tuple{DType::Float32, 1e-4, 1e-3}}) {
    INFO(dtype_name(dt));
    MegaLayer cpu(layer_config(), 3), gpu(layer_config(), 3);
    cpu.to(dt), gpu.to(dt);
    gpu.to(Device::cuda());
    Inputs in = make_inputs(dt);
    Tensor xc = in.x.clone().requires_grad_(), xg = in.x.cuda().requires_grad_();
    manual_seed(5);
    Tensor yc = cpu.forward(xc, in.mask);
    manual_seed(5);
    Tensor yg = gpu.forward(xg, in.mask.cuda());
    REQUIRE(yg.device() == Device::cuda(0));
    CHECK(test::max_rel_diff(yg.cpu(), yc) < tol_out);
    sum(mul(yc, in.G)).backward();
    sum(mul(yg, in.G.cuda())).backward();
    CHECK(test::max_rel_diff(xg.grad().cpu(), xc.grad()) < tol_grad);
    NamedTensors pc = cpu.named_parameters(), pg = gpu.named_parameters();
    REQUIRE(pc.size() == pg.size());
    for (size_t i = 0; i < pc.size(); ++i) {
      INFO(pc[i].first);
      REQUIRE(pg[i].second.grad().defined());
      CHECK(pg[i].second.grad().device() == Device::cuda(0));
      CHECK(test::max_rel_diff(pg[i].second.grad().cpu(), pc[i].second.grad()) < tol_grad);
    }
  }
}

TEST_CASE("cuda training: AdamW steps with clipping give the CPU's parameters", "[cuda]") {
  if (test::skip_without_cuda()) return;
  const DType dt = DType::Float64;  // tight: the steps amplify nothing but summation order
  MegaLayer cpu(layer_config(), 4), gpu(layer_config(), 4);
  cpu.to(dt), gpu.to(dt);
  gpu.to(Device::cuda());
  AdamW oc(cpu.named_parameters()), og(gpu.named_parameters());
  Inputs in = make_inputs(dt);
  Tensor xg = in.x.cuda(), mg = in.mask.cuda(), Gg = in.G.cuda();
  for (int step = 0; step < 3; ++step) {
    manual_seed(100 + step);
    oc.zero_grad();
    Tensor lc = mean(square(sub(cpu.forward(in.x, in.mask), in.G)));
    lc.backward();
    double nc = clip_grad_norm(oc.params(), 0.5);
    oc.step();
    manual_seed(100 + step);
    og.zero_grad();
    Tensor lg = mean(square(sub(gpu.forward(xg, mg), Gg)));
    lg.backward();
    double ng = clip_grad_norm(og.params(), 0.5);
    og.step();
    INFO("step " << step);
    CHECK(std::abs(lg.item() - lc.item()) <= 1e-10 * std::abs(lc.item()));
    CHECK(std::abs(ng - nc) <= 1e-9 * nc);
  }
  NamedTensors pc = cpu.named_parameters(), pg = gpu.named_parameters();
  for (size_t i = 0; i < pc.size(); ++i) {
    INFO(pc[i].first);
    CHECK(test::max_rel_diff(pg[i].second.cpu(), pc[i].second) < 1e-9);
  }
  // The optimizer's moment estimates live with the parameters, on the device.
  for (auto& [name, t] : og.state_dict())
    if (t.numel() > 1) CHECK(t.device() == Device::cuda(0));
}
