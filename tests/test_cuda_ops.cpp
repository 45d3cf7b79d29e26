// The ops on CUDA tensors against the same ops on the CPU: every wired op's forward output and
// the gradients of sum(out * w) (w random) w.r.t. each float input, in float32, each case with
// its own tolerance (relative to the largest magnitude of the CPU result). The CPU results are
// the reference: the CPU ops have their own tests (gradcheck, naive loops). On a machine without
// a GPU (this one, CI) every test here is a visible skip.
#include <catch2/catch.hpp>
#include <functional>
#include <string>
#include <vector>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "backends/cuda/cuda.h"
#include "core/rng.h"
#include "cuda_test_util.h"
#include "test_util.h"

using namespace megagrad;
using Catch::Matchers::Contains;

namespace {

using Inputs = std::vector<Tensor>;

struct OpCase {
  std::string name;
  double tol;                                // float32, relative (forward and gradients)
  std::function<Inputs(Generator&)> inputs;  // on the CPU; float inputs get gradients
  std::function<Tensor(const Inputs&)> op;
};

Tensor U(Generator& g, const Shape& s, double lo = -1, double hi = 1) { return uniform(s, lo, hi, DType::Float32, &g); }
Tensor I64(std::vector<int64_t> v, const Shape& s) { return Tensor::from_vector(v, s); }

// The forward output and the gradients of sum(out * w) w.r.t. the float inputs, on `device`.
struct Run {
  Tensor out;
  std::vector<Tensor> grads;  // per input; undefined for int64/bool inputs
};
Run run_case(const OpCase& c, const Inputs& src, const Tensor& w, Device device) {
  Inputs in;
  for (const Tensor& s : src) {
    // A fresh leaf on the device: .to() of a tensor that does not require grad, then requires_grad_.
    Tensor t = device.is_cpu() ? s.clone() : s.to(device);
    if (is_floating(t.dtype())) t.requires_grad_();
    in.push_back(t);
  }
  Run r;
  r.out = c.op(in);
  REQUIRE(r.out.device() == device);
  if (w.defined() && r.out.requires_grad()) {
    Tensor loss = sum(mul(r.out, w.to(device)));
    loss.backward();
  }
  for (const Tensor& t : in) r.grads.push_back(t.requires_grad() && t.grad().defined() ? t.grad() : Tensor());
  return r;
}

void compare(const std::string& what, const Tensor& cpu, const Tensor& gpu, double tol) {
  INFO(what << ": cpu " << cpu.desc() << ", gpu " << gpu.desc());
  REQUIRE(gpu.defined() == cpu.defined());
  if (!cpu.defined()) return;
  REQUIRE(gpu.shape() == cpu.shape());
  REQUIRE(gpu.dtype() == cpu.dtype());
  if (!is_floating(cpu.dtype())) {
    REQUIRE(gpu.to_vector() == cpu.to_vector());  // int64 / bool: exact
    return;
  }
  const double d = test::max_rel_diff(gpu, cpu);
  INFO("max |gpu - cpu| / max |cpu| = " << d << " (tolerance " << tol << ")");
  CHECK(d <= tol);
}

constexpr double kElem = 1e-5, kRed = 1e-4;

std::vector<OpCase> op_cases() {
  std::vector<OpCase> v;
  auto unary = [&](std::string name, std::function<Tensor(const Tensor&)> f, double lo = -2, double hi = 2) {
    v.push_back({name, kElem, [lo, hi](Generator& g) { return Inputs{U(g, {3, 5}, lo, hi)}; },
                 [f](const Inputs& x) { return f(x[0]); }});
    // The same op on a transposed (non-contiguous) view.
    v.push_back({name + " (transposed)", kElem, [lo, hi](Generator& g) { return Inputs{U(g, {5, 3}, lo, hi)}; },
                 [f](const Inputs& x) { return f(x[0].t()); }});
  };
  unary("neg", [](const Tensor& x) { return neg(x); });
  unary("exp", [](const Tensor& x) { return exp(x); });
  unary("log", [](const Tensor& x) { return log(x); }, 0.2, 3);
  unary("sqrt", [](const Tensor& x) { return sqrt(x); }, 0.2, 3);
  unary("rsqrt", [](const Tensor& x) { return rsqrt(x); }, 0.2, 3);
  unary("square", [](const Tensor& x) { return square(x); });
  unary("abs", [](const Tensor& x) { return abs(x); });
  unary("tanh", [](const Tensor& x) { return tanh(x); });
  unary("sigmoid", [](const Tensor& x) { return sigmoid(x); });
  unary("silu", [](const Tensor& x) { return silu(x); });
  unary("relu", [](const Tensor& x) { return relu(x); });
  unary("gelu", [](const Tensor& x) { return gelu(x); });
  unary("erf", [](const Tensor& x) { return erf(x); });
  unary("add_scalar", [](const Tensor& x) { return add_scalar(x, 0.75); });
  unary("mul_scalar", [](const Tensor& x) { return mul_scalar(x, -1.5); });
  unary("pow 2.5", [](const Tensor& x) { return pow(x, 2.5); }, 0.2, 3);
  unary("pow 3", [](const Tensor& x) { return pow(x, 3.0); });
  unary("pow 0", [](const Tensor& x) { return pow(x, 0.0); });

  auto two = [](Shape a, Shape b, double blo = -1, double bhi = 1) {
    return [a, b, blo, bhi](Generator& g) { return Inputs{U(g, a), U(g, b, blo, bhi)}; };
  };
  v.push_back({"add", kElem, two({3, 4}, {3, 4}), [](const Inputs& x) { return add(x[0], x[1]); }});
  v.push_back({"add (broadcast (3,4)+(4))", kElem, two({3, 4}, {4}), [](const Inputs& x) { return add(x[0], x[1]); }});
  v.push_back({"sub (broadcast (2,3,4)-(3,1))", kElem, two({2, 3, 4}, {3, 1}),
               [](const Inputs& x) { return sub(x[0], x[1]); }});
  v.push_back({"mul (transposed a)", kElem, two({4, 3}, {3, 4}), [](const Inputs& x) { return mul(x[0].t(), x[1]); }});
  v.push_back({"mul (broadcast (2,1,4)*(3,1))", kElem, two({2, 1, 4}, {3, 1}),
               [](const Inputs& x) { return mul(x[0], x[1]); }});
  v.push_back({"div (broadcast)", kElem, two({3, 4}, {1, 4}, 0.5, 2), [](const Inputs& x) { return div(x[0], x[1]); }});
  v.push_back({"gt", 0, two({3, 4}, {4}), [](const Inputs& x) { return gt(x[0], x[1]); }});
  v.push_back({"lt", 0, two({3, 4}, {3, 1}), [](const Inputs& x) { return lt(x[0], x[1]); }});
  v.push_back({"eq", 0, [](Generator& g) { Tensor a = U(g, {3, 4}); return Inputs{a, a.narrow(0, 0, 1)}; },
               [](const Inputs& x) { return eq(x[0], x[1]); }});

  // Off-centre values, so that sums and means are not near 0 (where a relative tolerance fails).
  auto one = [](Shape s) { return [s](Generator& g) { return Inputs{U(g, s, -0.5, 1.5)}; }; };
  v.push_back({"sum all", kRed, one({37, 29}), [](const Inputs& x) { return sum(x[0]); }});
  v.push_back({"sum dim 0", kRed, one({37, 5}), [](const Inputs& x) { return sum(x[0], {0}); }});
  v.push_back({"sum dim 1 keepdim", kRed, one({4, 37, 5}), [](const Inputs& x) { return sum(x[0], {1}, true); }});
  v.push_back({"sum dims 0,2 (not adjacent)", kRed, one({4, 3, 5}), [](const Inputs& x) { return sum(x[0], {0, 2}); }});
  v.push_back({"sum (transposed)", kRed, one({6, 7}), [](const Inputs& x) { return sum(x[0].t(), {1}); }});
  v.push_back({"mean dim -1", kRed, one({4, 33}), [](const Inputs& x) { return mean(x[0], {-1}); }});
  v.push_back({"mean all (transposed)", kRed, one({6, 7}), [](const Inputs& x) { return mean(x[0].t()); }});
  v.push_back({"max dim 1", kRed, one({4, 9, 3}), [](const Inputs& x) { return max(x[0], {1}); }});
  v.push_back({"max all", kRed, one({5, 6}), [](const Inputs& x) { return max(x[0]); }});
  v.push_back({"min dims 0,2 keepdim", kRed, one({4, 3, 5}), [](const Inputs& x) { return min(x[0], {0, 2}, true); }});
  v.push_back({"var dim 1", kRed, one({4, 17}), [](const Inputs& x) { return var(x[0], {1}); }});
  v.push_back({"var all (transposed)", kRed, one({6, 5}), [](const Inputs& x) { return var(x[0].t()); }});
  v.push_back({"argmax dim 0", 0, one({7, 5}), [](const Inputs& x) { return argmax(x[0], 0); }});
  v.push_back({"sum_to (via expand)", kRed, one({1, 4}), [](const Inputs& x) { return mul(x[0].expand({6, 4}), x[0]); }});

  v.push_back({"matmul", kRed, two({5, 4}, {4, 3}), [](const Inputs& x) { return matmul(x[0], x[1]); }});
  v.push_back({"matmul (transposed a and b)", kRed, two({4, 5}, {3, 4}),
               [](const Inputs& x) { return matmul(x[0].t(), x[1].t()); }});
  v.push_back({"matmul batched", kRed, two({2, 5, 4}, {2, 4, 3}), [](const Inputs& x) { return matmul(x[0], x[1]); }});
  v.push_back({"matmul (B,M,K)@(K,N)", kRed, two({2, 5, 4}, {4, 3}), [](const Inputs& x) { return matmul(x[0], x[1]); }});
  v.push_back({"matmul (K,M)^T @ (B,K,N)", kRed, two({4, 5}, {3, 4, 2}),
               [](const Inputs& x) { return matmul(x[0].t(), x[1]); }});
  v.push_back({"matmul broadcast (2,1,M,K)@(3,K,N)", kRed, two({2, 1, 5, 4}, {3, 4, 3}),
               [](const Inputs& x) { return matmul(x[0], x[1]); }});
  v.push_back({"matmul batch-transposed (B,K,M)^T", kRed, two({3, 4, 5}, {3, 4, 2}),
               [](const Inputs& x) { return matmul(x[0].transpose(1, 2), x[1]); }});
  v.push_back({"linear with bias", kRed, [](Generator& g) { return Inputs{U(g, {2, 5, 4}), U(g, {3, 4}), U(g, {3})}; },
               [](const Inputs& x) { return linear(x[0], x[1], x[2]); }});
  v.push_back({"linear 1-d, no bias", kRed, two({4}, {3, 4}), [](const Inputs& x) { return linear(x[0], x[1]); }});
  v.push_back({"linear (transposed x)", kRed, [](Generator& g) { return Inputs{U(g, {4, 6}), U(g, {3, 4}), U(g, {3})}; },
               [](const Inputs& x) { return linear(x[0].t(), x[1], x[2]); }});

  v.push_back({"softmax dim -1", kRed, one({4, 9}), [](const Inputs& x) { return softmax(x[0], -1); }});
  v.push_back({"softmax dim 0 (I > 1)", kRed, one({6, 5}), [](const Inputs& x) { return softmax(x[0], 0); }});
  v.push_back({"log_softmax (transposed)", kRed, one({6, 5}), [](const Inputs& x) { return log_softmax(x[0].t(), 1); }});
  v.push_back({"cross_entropy", kRed, [](Generator& g) { return Inputs{U(g, {5, 7}, -3, 3), I64({0, 6, 3, 3, 1}, {5})}; },
               [](const Inputs& x) { return cross_entropy(x[0], x[1]); }});
  v.push_back({"cross_entropy ignore_index, smoothing", kRed,
               [](Generator& g) { return Inputs{U(g, {5, 7}, -3, 3), I64({0, -1, 3, -1, 6}, {5})}; },
               [](const Inputs& x) { return cross_entropy(x[0], x[1], -1, 0.1); }});
  v.push_back({"layer_norm", kRed, [](Generator& g) { return Inputs{U(g, {2, 3, 16}), U(g, {16}), U(g, {16})}; },
               [](const Inputs& x) { return layer_norm(x[0], x[1], x[2]); }});
  v.push_back({"layer_norm no affine (transposed)", kRed, one({16, 4}),
               [](const Inputs& x) { return layer_norm(x[0].t(), Tensor(), Tensor()); }});
  v.push_back({"embedding", kElem, [](Generator& g) { return Inputs{U(g, {6, 4}), I64({5, 0, 5, 2, 2, 2}, {2, 3})}; },
               [](const Inputs& x) { return embedding(x[0], x[1]); }});
  v.push_back({"dropout (same generator state)", kElem, one({7, 9}), [](const Inputs& x) {
                 Generator g(42);
                 g.advance(3);
                 return dropout(x[0], 0.3, true, &g);
               }});

  v.push_back({"cat dim 1 (one transposed)", kElem, two({2, 3}, {4, 2}),
               [](const Inputs& x) { return cat({x[0], x[1].t(), x[0]}, 1); }});
  v.push_back({"cat dim 0", kElem, two({2, 3}, {1, 3}), [](const Inputs& x) { return cat({x[0], x[1]}, 0); }});
  v.push_back({"split", kElem, one({3, 5}), [](const Inputs& x) {
                 auto p = split(x[0], {2, 3}, 1);
                 return mul(p[1].narrow(1, 0, 2), p[0]);
               }});
  v.push_back({"index_select dim 0 (repeats)", kElem, [](Generator& g) { return Inputs{U(g, {4, 3}), I64({3, 0, 3, 1}, {4})}; },
               [](const Inputs& x) { return index_select(x[0], 0, x[1]); }});
  v.push_back({"index_select dim 1 (transposed)", kElem,
               [](Generator& g) { return Inputs{U(g, {5, 3}), I64({4, 4, 0}, {3})}; },
               [](const Inputs& x) { return index_select(x[0].t(), 1, x[1]); }});
  v.push_back({"gather dim 1", kElem,
               [](Generator& g) { return Inputs{U(g, {3, 4}), I64({0, 3, 3, 1, 1, 1, 2, 0, 3}, {3, 3})}; },
               [](const Inputs& x) { return gather(x[0], 1, x[1]); }});
  v.push_back({"where (broadcast)", kElem,
               [](Generator& g) {
                 Tensor c = gt(U(g, {3, 4}), Tensor::zeros({}));
                 return Inputs{c, U(g, {3, 4}), U(g, {4})};
               },
               [](const Inputs& x) { return where(x[0], x[1], x[2]); }});
  v.push_back({"masked_fill (broadcast mask)", kElem,
               [](Generator& g) {
                 Tensor m = gt(U(g, {4}), Tensor::zeros({}));
                 return Inputs{U(g, {3, 4}), m};
               },
               [](const Inputs& x) { return masked_fill(x[0], x[1], -7.5); }});

  v.push_back({"contiguous (transposed)", 0, one({3, 4}), [](const Inputs& x) { return x[0].t().contiguous(); }});
  v.push_back({"reshape (copy)", 0, one({3, 4}), [](const Inputs& x) { return x[0].t().reshape({12}); }});
  v.push_back({"narrow + clone", 0, one({5, 4}), [](const Inputs& x) { return x[0].narrow(0, 1, 3).clone(); }});
  v.push_back({"permute + unsqueeze + squeeze", 0, one({2, 3, 4}),
               [](const Inputs& x) { return x[0].permute({2, 0, 1}).unsqueeze(1).squeeze(1).contiguous(); }});
  v.push_back({"to float64 and back", kElem, one({3, 4}), [](const Inputs& x) { return mul(x[0].to(DType::Float64).to(DType::Float32), x[0]); }});
  v.push_back({"to int64 (not differentiable)", 0, [](Generator& g) { return Inputs{U(g, {3, 4}, -5, 5)}; },
               [](const Inputs& x) {
                 no_grad ng;
                 return x[0].to(DType::Int64);
               }});
  return v;
}

}  // namespace

TEST_CASE("cuda ops: forward and gradients match the cpu", "[cuda]") {
  if (test::skip_without_cuda()) return;
  for (const OpCase& c : op_cases()) {
    SECTION(c.name) {
      INFO("op case: " << c.name);
      Generator g(1234);
      Inputs src = c.inputs(g);
      Tensor probe;  // the output's shape and dtype, for the weights
      {
        no_grad ng;
        probe = c.op(src);
      }
      Tensor w = is_floating(probe.dtype()) ? uniform(probe.shape(), -1, 1, probe.dtype(), &g) : Tensor();
      Run cpu = run_case(c, src, w, Device::cpu());
      Run gpu = run_case(c, src, w, Device::cuda(0));
      compare("forward", cpu.out.detach(), gpu.out.detach().cpu(), c.tol);
      for (size_t i = 0; i < src.size(); ++i)
        compare(fmt::format("gradient of input {}", i), cpu.grads[i],
                gpu.grads[i].defined() ? gpu.grads[i].cpu() : Tensor(), c.tol);
    }
  }
}

TEST_CASE("cuda ops: dropout draws the cpu's mask", "[cuda]") {
  if (test::skip_without_cuda()) return;
  Generator g0(9);
  Tensor x = uniform({1000, 3}, 0.5, 1.5, DType::Float32, &g0);
  Generator a(77), b(77);
  Tensor yc = dropout(x, 0.4, true, &a);
  Tensor yg = dropout(x.cuda(), 0.4, true, &b).cpu();
  REQUIRE(a.offset() == b.offset());
  std::vector<double> vc = yc.to_vector(), vg = yg.to_vector();
  for (size_t i = 0; i < vc.size(); ++i) REQUIRE((vc[i] == 0) == (vg[i] == 0));
}

TEST_CASE("cuda ops: in-place updates, creation and random fills on the device", "[cuda]") {
  if (test::skip_without_cuda()) return;
  const Device d = Device::cuda(0);
  Generator g(3);
  Tensor a = uniform({3, 4}, -1, 1, DType::Float32, &g), b = uniform({4}, -1, 1, DType::Float32, &g);

  REQUIRE(Tensor::ones({2, 3}, DType::Float32, d).to_vector() == std::vector<double>(6, 1.0));
  REQUIRE(Tensor::full({5}, -2.5, DType::Float64, d).to_vector() == std::vector<double>(5, -2.5));
  REQUIRE(Tensor::full({4}, 3, DType::Int64, d).to_int_vector() == std::vector<int64_t>(4, 3));
  REQUIRE(Tensor::zeros({7}, DType::Float32, d).to_vector() == std::vector<double>(7, 0.0));

  Tensor ac = a.clone(), ag = a.cuda();
  ac.add_(b, -0.5);
  ag.add_(b.cuda(), -0.5);
  REQUIRE(test::max_rel_diff(ag, ac) <= 1e-6);
  ac.mul_(3.0);
  ag.mul_(3.0);
  REQUIRE(test::max_rel_diff(ag, ac) <= 1e-6);
  // A strided destination (a transposed view) and a broadcast source.
  ac.t().copy_(b.narrow(0, 0, 3));
  ag.t().copy_(b.narrow(0, 0, 3).cuda());
  REQUIRE(ag.to_vector() == ac.to_vector());
  // copy_ across devices and dtypes.
  Tensor i64 = Tensor::zeros({3, 4}, DType::Int64, d);
  i64.copy_(mul_scalar(a, 10));
  REQUIRE(i64.to_int_vector() == mul_scalar(a, 10).to(DType::Int64).to_int_vector());
  ag.fill_(0.25);
  REQUIRE(ag.to_vector() == std::vector<double>(12, 0.25));
  ag.zero_();
  REQUIRE(ag.to_vector() == std::vector<double>(12, 0.0));

  // Random fills draw the cpu's Philox stream: rand exactly, normal within float64 ulps.
  Generator g1(11), g2(11);
  Tensor rc = rand({1000}, DType::Float64, &g1);
  Tensor rg = Tensor::empty({1000}, DType::Float64, d);
  uniform_(rg, 0, 1, &g2);
  REQUIRE(rg.to_vector() == rc.to_vector());
  Tensor nc = randn({1000}, DType::Float64, &g1);
  Tensor ng = Tensor::empty({1000}, DType::Float64, d);
  normal_(ng, 0, 1, &g2);
  REQUIRE(test::max_rel_diff(ng, nc) <= 1e-12);
  REQUIRE(g1.offset() == g2.offset());
}

TEST_CASE("cuda ops: a gradient accumulates on the device over two backward passes", "[cuda]") {
  if (test::skip_without_cuda()) return;
  Generator g(5);
  Tensor x0 = uniform({4, 3}, -1, 1, DType::Float32, &g);
  Tensor x = x0.cuda();
  x.requires_grad_();
  for (int i = 0; i < 2; ++i) sum(mul(x, x)).backward();
  REQUIRE(x.grad().device() == Device::cuda(0));
  REQUIRE(test::max_rel_diff(x.grad(), mul_scalar(x0, 4.0)) <= 1e-6);
}

TEST_CASE("cuda ops: mixing a cpu and a cuda tensor names both devices", "[cuda]") {
  if (test::skip_without_cuda()) return;
  Tensor c = Tensor::ones({2, 3});
  Tensor g = Tensor::ones({2, 3}, DType::Float32, Device::cuda(0));
  REQUIRE_THROWS_WITH(add(c, g), Contains("[add]") && Contains("devices differ") && Contains("(2,3) float32 cpu") &&
                                     Contains("(2,3) float32 cuda:0"));
  REQUIRE_THROWS_WITH(matmul(g, c.t()), Contains("[matmul]") && Contains("devices differ") && Contains("cpu") &&
                                            Contains("cuda:0"));
  REQUIRE_THROWS_WITH(where(gt(c, c), g, g), Contains("[where]") && Contains("devices differ"));
  REQUIRE_THROWS_WITH(embedding(g, Tensor::from_vector(std::vector<int64_t>{0, 1}, {2})),
                      Contains("[embedding]") && Contains("devices differ") && Contains("cpu") && Contains("cuda:0"));
  REQUIRE_THROWS_WITH(g.add_(c), Contains("[add_]") && Contains("devices differ"));
  // Index checks on the device report the bad value as the cpu does, at the next
  // synchronisation (backends/cuda/deferred_check.h; more in test_cuda_sync.cpp).
  Tensor w = Tensor::ones({3, 2}, DType::Float32, Device::cuda(0));
  REQUIRE_THROWS_WITH(embedding(w, Tensor::from_vector(std::vector<int64_t>{0, 3}, {2}).cuda()).to_vector(),
                      Contains("[embedding]") && Contains("index 3 at position 1"));
  REQUIRE_THROWS_WITH(cross_entropy(w, Tensor::from_vector(std::vector<int64_t>{1, 2, 0}, {3}).cuda()).item(),
                      Contains("[cross_entropy]") && Contains("target 2 at position 1"));
}
