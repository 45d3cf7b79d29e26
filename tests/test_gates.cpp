// The fused gate ops of MovingAverageGatedAttention (mega/gates/): gradcheck (in
// test_gradcheck.cpp through the registered cases), agreement of the forward and of every
// gradient with the composed ops in float64 and float32, thread-count independence, error
// messages, the layer's use of them, and (with a device) the CUDA path against the CPU.
#include <catch2/catch.hpp>
#include <string>
#include <vector>
#include <algorithm>
#include <memory>
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "mega/gates/gates.h"
#include "mega/layers.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace megagrad;

namespace {
using test::max_rel_diff;

// Tolerances, relative to the largest reference value (test::max_rel_diff).
struct Tol {
  double value;  // the outputs and the elementwise gradients: the same formulas, but the
                 // compiler may contract a*b+c into one fma in the fused loop (one rounding less)
  double sum;    // dgamma, dbeta: sums over B L rows, in double per block here, in the
                 // reduction's order and precision there
};

// mx_proj's output as the layer has it: (B, L, D+Z+H+D) contiguous, of which the input gates
// read the first D+Z+H columns through a view (row stride D+Z+H+D).
struct GateInputs {
  int64_t B = 3, L = 37, D = 5, Z = 4, H = 7;
  Tensor base, gamma, beta;
  GateInputs(DType dt, uint64_t seed) {
    Generator g(seed);
    base = mul_scalar(randn({B, L, D + Z + H + D}, dt, &g), 2.0).requires_grad_();
    gamma = randn({2, Z}, dt, &g).requires_grad_();
    beta = randn({2, Z}, dt, &g).requires_grad_();
  }
  Tensor x() const { return base.narrow(2, 0, D + Z + H); }
};

void compare_input_gates(DType dt, Tol tol) {
  GateInputs in(dt, 11);
  Generator g(12);
  const Tensor Gu = randn({in.B, in.L, in.D}, dt, &g), Gr = randn({in.B, in.L, in.H}, dt, &g),
               Gq = randn({in.B, in.L, in.Z}, dt, &g), Gk = randn({in.B, in.L, in.Z}, dt, &g);
  auto run = [&](bool fused) {
    for (Tensor* t : {&in.base, &in.gamma, &in.beta}) t->zero_grad();
    InputGates o = fused ? input_gates(in.x(), in.gamma, in.beta, in.D)
                         : input_gates_reference(in.x(), in.gamma, in.beta, in.D);
    add(add(sum(mul(o.u, Gu)), sum(mul(o.r, Gr))), add(sum(mul(o.q, Gq)), sum(mul(o.k, Gk)))).backward();
    return std::vector<Tensor>{o.u, o.r, o.q, o.k, in.base.grad(), in.gamma.grad(), in.beta.grad()};
  };
  std::vector<Tensor> f = run(true), r = run(false);
  const char* names[] = {"u", "r", "q", "k", "dx", "dgamma", "dbeta"};
  INFO("dtype " << dtype_name(dt));
  for (size_t i = 0; i < f.size(); ++i) {
    INFO(names[i]);
    CHECK(max_rel_diff(f[i], r[i]) < (i < 5 ? tol.value : tol.sum));
  }
  // the last D columns of base are not read: their gradient is exactly zero
  CHECK(test::max_abs_diff(f[4].narrow(2, in.D + in.Z + in.H, in.D).contiguous(),
                           Tensor::zeros({in.B, in.L, in.D}, dt)) == 0.0);
}

struct OutputInputs {
  int64_t B = 3, L = 37, D = 9;
  Tensor hx_src, hp, u_src, res;
  OutputInputs(DType dt, uint64_t seed) {
    Generator g(seed);
    hx_src = randn({B, L, D + 4}, dt, &g).requires_grad_();                    // hx: a narrowed view
    hp = randn({B, L, D}, dt, &g).requires_grad_();
    u_src = sigmoid(randn({B, L, D + 2}, dt, &g)).detach().requires_grad_();  // u in (0, 1), a view
    res = randn({L, B, D}, dt, &g).requires_grad_();                           // stored (L, B, D)
  }
  Tensor hx() const { return hx_src.narrow(2, 4, D); }
  Tensor u() const { return u_src.narrow(2, 1, D); }
  Tensor residual() const { return res.permute({1, 0, 2}); }
};

void compare_output_gate(DType dt, Tol tol) {
  OutputInputs in(dt, 21);
  Generator g(22);
  const Tensor G = randn({in.B, in.L, in.D}, dt, &g);
  auto run = [&](bool fused) {
    for (Tensor* t : {&in.hx_src, &in.hp, &in.u_src, &in.res}) t->zero_grad();
    Tensor o = fused ? output_gate(in.hx(), in.hp, in.u(), in.residual())
                     : output_gate_reference(in.hx(), in.hp, in.u(), in.residual());
    sum(mul(o, G)).backward();
    return std::vector<Tensor>{o, in.hx_src.grad(), in.hp.grad(), in.u_src.grad(), in.res.grad()};
  };
  std::vector<Tensor> f = run(true), r = run(false);
  const char* names[] = {"out", "dhx", "dhp", "du", "dresidual"};
  INFO("dtype " << dtype_name(dt));
  for (size_t i = 0; i < f.size(); ++i) {
    INFO(names[i]);
    CHECK(max_rel_diff(f[i], r[i]) < tol.value);
  }
}
}  // namespace

TEST_CASE("gates: fused input gates equal the composed ops (float64)", "[gates]") {
  compare_input_gates(DType::Float64, {1e-14, 1e-13});
}

TEST_CASE("gates: fused input gates equal the composed ops (float32)", "[gates]") {
  // an fma in q = z gamma + b and in dz = gq gamma0 + gk gamma1: ~1 ulp; the parameter sums over
  // 111 rows in float there and double here: a few ulps of the largest sum
  compare_input_gates(DType::Float32, {1e-6, 1e-5});
}

TEST_CASE("gates: fused output gate equals the composed ops (float64)", "[gates]") {
  compare_output_gate(DType::Float64, {1e-14, 0});
}

TEST_CASE("gates: fused output gate equals the composed ops (float32)", "[gates]") {
  // res + u (h - res) may become one fma: ~1 ulp of the largest value
  compare_output_gate(DType::Float32, {1e-6, 0});
}

TEST_CASE("gates: results do not depend on the thread count", "[gates]") {
  const int before = get_num_threads();
  GateInputs in(DType::Float32, 31);
  in.B = 8;
  in.L = 300;  // 2400 rows: many blocks of the parameter sums
  Generator g(32);
  in.base = randn({in.B, in.L, in.D + in.Z + in.H + in.D}, DType::Float32, &g).requires_grad_();
  auto run = [&](int threads) {
    set_num_threads(threads);
    for (Tensor* t : {&in.base, &in.gamma, &in.beta}) t->zero_grad();
    InputGates o = input_gates(in.x(), in.gamma, in.beta, in.D);
    Tensor y = output_gate(in.base.narrow(2, in.D + in.Z + in.H, in.D), sum(o.q, {2}, true).expand({in.B, in.L, in.D}),
                           o.u, in.base.narrow(2, 0, in.D));
    sum(square(add(y, add(sum(o.r, {2}, true), sum(o.k, {2}, true))))).backward();
    return std::vector<std::vector<double>>{y.to_vector(), in.base.grad().to_vector(), in.gamma.grad().to_vector(),
                                            in.beta.grad().to_vector()};
  };
  auto one = run(1), two = run(2), four = run(4);
  set_num_threads(before);
  CHECK(one == two);  // bitwise
  CHECK(one == four);
}

TEST_CASE("gates: bad inputs are errors that name the op, shapes and dtypes", "[gates]") {
  Tensor x = Tensor::zeros({2, 3, 10}, DType::Float64), gm = Tensor::zeros({2, 4}, DType::Float64);
  REQUIRE_NOTHROW(input_gates(x, gm, gm, 3));
  REQUIRE_THROWS_WITH(input_gates(Tensor::zeros({6, 10}, DType::Float64), gm, gm, 3),
                      Catch::Contains("[input_gates]") && Catch::Contains("(6,10)"));
  REQUIRE_THROWS_WITH(input_gates(x, Tensor::zeros({3, 4}, DType::Float64), gm, 3),
                      Catch::Contains("[input_gates]") && Catch::Contains("(3,4)"));
  REQUIRE_THROWS_WITH(input_gates(x, gm, Tensor::zeros({2, 5}, DType::Float64), 3),
                      Catch::Contains("[input_gates]") && Catch::Contains("(2,5)"));
  REQUIRE_THROWS_WITH(input_gates(x, gm.to(DType::Float32), gm, 3),
                      Catch::Contains("[input_gates]") && Catch::Contains("float32") && Catch::Contains("float64"));
  REQUIRE_THROWS_WITH(input_gates(x, gm, gm, 6),  // no column left for H
                      Catch::Contains("[input_gates]") && Catch::Contains("D = 6") && Catch::Contains("Z = 4"));
  REQUIRE_THROWS_WITH(input_gates(Tensor::zeros({2, 3, 10}, DType::Int64), gm, gm, 3),
                      Catch::Contains("[input_gates]") && Catch::Contains("int64"));

  Tensor a = Tensor::zeros({2, 3, 4}, DType::Float32);
  REQUIRE_NOTHROW(output_gate(a, a, a, a));
  REQUIRE_THROWS_WITH(output_gate(a, Tensor::zeros({2, 3, 5}, DType::Float32), a, a),
                      Catch::Contains("[output_gate]") && Catch::Contains("(2,3,5)") && Catch::Contains("(2,3,4)"));
  REQUIRE_THROWS_WITH(output_gate(a, a, a.to(DType::Float64), a),
                      Catch::Contains("[output_gate]") && Catch::Contains("float64") && Catch::Contains("float32"));
  REQUIRE_THROWS_WITH(output_gate(Tensor::zeros({12}, DType::Float32), a, a, a),
                      Catch::Contains("[output_gate]") && Catch::Contains("(12)"));
  REQUIRE_THROWS_WITH(output_gate(a, a, Tensor(), a), Catch::Contains("[output_gate]") && Catch::Contains("undefined"));
}

TEST_CASE("gates: the layer runs the fused ops where they pay, with the composed ones' values", "[gates]") {
  MegaLayerConfig c;
  c.embed_dim = 6, c.hidden_dim = 8, c.z_dim = 4, c.n_dim = 2, c.ffn_hidden_dim = 0;
  c.dropout = 0.1;
  Generator init(3);
  MovingAverageGatedAttention layer(c, init);
  Generator g(4);
  Tensor x = randn({2, 5, 6}, DType::Float32, &g);
  auto ops_of = [](const Tensor& y) {
    std::vector<std::string> ops;
    std::vector<std::shared_ptr<Node>> stack{y.grad_fn()};
    std::vector<Node*> seen;
    while (!stack.empty()) {
      auto n = stack.back();
      stack.pop_back();
      if (!n || std::find(seen.begin(), seen.end(), n.get()) != seen.end()) continue;
      seen.push_back(n.get());
      ops.emplace_back(n->op);
      for (auto& e : n->next) stack.push_back(e);
    }
    return ops;
  };
  auto has = [](const std::vector<std::string>& ops, const char* op) {
    return std::find(ops.begin(), ops.end(), op) != ops.end();
  };
  layer.eval();
  Tensor with_graph = layer.forward(x, Tensor());
  auto ops = ops_of(with_graph);
  CHECK_FALSE(has(ops, "input_gates"));  // with a graph: the composed input gates (see layers.cpp)
  CHECK(has(ops, "output_gate"));
  {
    no_grad ng;  // without one: both fused; the same values to ~1 ulp (an fma in q, k)
    Tensor fused = layer.forward(x, Tensor());
    CHECK(max_rel_diff(fused, with_graph) < 1e-6);
  }
  layer.train();
  ops = ops_of(layer.forward(x, Tensor()));
  CHECK_FALSE(has(ops, "output_gate"));  // silu -> dropout -> gate, composed
  CHECK(has(ops, "dropout"));
}

TEST_CASE("cuda gates: the ops on a device equal the cpu's", "[cuda][gates]") {
  if (test::skip_without_cuda()) return;
  // The device runs the composed ops, whose kernels use the same sigmoid_fast: a few ulps.
  for (DType dt : {DType::Float32, DType::Float64}) {
    const double tol = dt == DType::Float32 ? 1e-5 : 1e-13;
    INFO("dtype " << dtype_name(dt));
    GateInputs in(dt, 41);
    OutputInputs oin(dt, 42);
    Generator g(43);
    const Tensor G = randn({in.B, in.L, in.D + 2 * in.Z + in.H}, dt, &g),
                 Go = randn({oin.B, oin.L, oin.D}, dt, &g);
    auto run = [&](Device dev) {
      std::vector<Tensor> leaves{in.base.detach().to(dev).requires_grad_(), in.gamma.detach().to(dev).requires_grad_(),
                                 in.beta.detach().to(dev).requires_grad_(),
                                 oin.hx_src.detach().to(dev).requires_grad_(), oin.hp.detach().to(dev).requires_grad_(),
                                 oin.u_src.detach().to(dev).requires_grad_(), oin.res.detach().to(dev).requires_grad_()};
      InputGates ig = input_gates(leaves[0].narrow(2, 0, in.D + in.Z + in.H), leaves[1], leaves[2], in.D);
      Tensor gates = cat({ig.u, ig.r, ig.q, ig.k}, -1);
      Tensor og = output_gate(leaves[3].narrow(2, 4, oin.D), leaves[4], leaves[5].narrow(2, 1, oin.D),
                              leaves[6].permute({1, 0, 2}));
      add(sum(mul(gates, G.to(dev))), sum(mul(og, Go.to(dev)))).backward();
      std::vector<Tensor> out{gates.to(Device::cpu()), og.to(Device::cpu())};
      for (Tensor& l : leaves) out.push_back(l.grad().to(Device::cpu()));
      return out;
    };
    std::vector<Tensor> cpu = run(Device::cpu()), gpu = run(Device::cuda(0));
    for (size_t i = 0; i < cpu.size(); ++i) {
      INFO("result " << i << " (gates, output gate, then the gradients of the 7 inputs)");
      CHECK(max_rel_diff(gpu[i], cpu[i]) < tol);
    }
  }
}
