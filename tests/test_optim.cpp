// Optimizers, clipping and schedules (mega/optim.h): AdamW and SGD against trajectories computed
// here with plain double loops from the torch (and fairseq) formulas, in float32 and float64;
// checkpoint round trips that continue bit-identically; strict load errors; clip_grad_norm; the
// schedules at their key steps; AdamW fitting a linear regression through autograd.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "mega/optim.h"
#include "tests/test_util.h"

using namespace megagrad;
using Catch::Contains;

namespace {

// The gradient fed at step k (0-based) to element i of parameter j: varied signs and sizes.
double grad_value(int k, int j, int64_t i) { return std::sin(0.37 * (double)i + 1.3 * k + j) * (1 + 0.25 * k) + 0.05 * j; }

double round_to(DType dt, double x) { return dt == DType::Float32 ? (double)(float)x : x; }

struct Param {
  std::string name;
  Shape shape;
  std::vector<double> init;
};

std::vector<Param> test_params(DType dt) {
  std::vector<Param> ps{{"layer.weight", {3, 4}, {}}, {"layer.bias", {5}, {}}};
  for (size_t j = 0; j < ps.size(); ++j)
    for (int64_t i = 0; i < numel_of(ps[j].shape); ++i)
      ps[j].init.push_back(round_to(dt, std::cos(0.9 * (double)i + (double)j) * 1.5));
  return ps;
}

NamedTensors make_tensors(const std::vector<Param>& ps, DType dt) {
  NamedTensors out;
  for (auto& p : ps) out.emplace_back(p.name, Tensor::from_vector(p.init, p.shape, dt).requires_grad_());
  return out;
}

// Parameter j gets no gradient at step `skip_step` (if j == skip_param): it must be skipped.
constexpr int kSkipParam = 1, kSkipStep = 2;

void set_grads(const NamedTensors& ts, int k, DType dt) {
  for (size_t j = 0; j < ts.size(); ++j) {
    Tensor p = ts[j].second;
    if ((int)j == kSkipParam && k == kSkipStep) {
      p.zero_grad();
      continue;
    }
    std::vector<double> g((size_t)p.numel());
    for (int64_t i = 0; i < p.numel(); ++i) g[(size_t)i] = round_to(dt, grad_value(k, (int)j, i));
    p.set_grad(Tensor::from_vector(g, p.shape(), dt));
  }
}

// ---- references: double loops over the formulas of torch.optim.AdamW / SGD and fairseq's Adam ----

struct AdamRef {
  double lr, b1, b2, eps;
  std::vector<double> wd;  // per parameter
  bool fairseq;
};

std::vector<std::vector<double>> adamw_reference(const std::vector<Param>& ps, const AdamRef& o, int steps, DType dt) {
  std::vector<std::vector<double>> p, m, v;
  std::vector<int> t(ps.size(), 0);
  for (auto& q : ps) {
    p.push_back(q.init);
    m.emplace_back(q.init.size(), 0.0);
    v.emplace_back(q.init.size(), 0.0);
  }
  for (int k = 0; k < steps; ++k)
    for (size_t j = 0; j < ps.size(); ++j) {
      if ((int)j == kSkipParam && k == kSkipStep) continue;
      ++t[j];
      const double bc1 = 1 - std::pow(o.b1, t[j]), bc2 = 1 - std::pow(o.b2, t[j]);
      for (size_t i = 0; i < p[j].size(); ++i) {
        const double g = round_to(dt, grad_value(k, (int)j, (int64_t)i));
        p[j][i] -= o.lr * o.wd[j] * p[j][i];
        m[j][i] = o.b1 * m[j][i] + (1 - o.b1) * g;
        v[j][i] = o.b2 * v[j][i] + (1 - o.b2) * g * g;
        if (o.fairseq)
          p[j][i] -= o.lr * std::sqrt(bc2) / bc1 * m[j][i] / (std::sqrt(v[j][i]) + o.eps);
        else
          p[j][i] -= (o.lr / bc1) * m[j][i] / (std::sqrt(v[j][i]) / std::sqrt(bc2) + o.eps);
      }
    }
  return p;
}

std::vector<std::vector<double>> sgd_reference(const std::vector<Param>& ps, const SGDOptions& o, int steps, DType dt) {
  std::vector<std::vector<double>> p, buf;
  std::vector<bool> has_buf(ps.size(), false);
  for (auto& q : ps) {
    p.push_back(q.init);
    buf.emplace_back(q.init.size(), 0.0);
  }
  for (int k = 0; k < steps; ++k)
    for (size_t j = 0; j < ps.size(); ++j) {
      if ((int)j == kSkipParam && k == kSkipStep) continue;
      for (size_t i = 0; i < p[j].size(); ++i) {
        double d = round_to(dt, grad_value(k, (int)j, (int64_t)i)) + o.weight_decay * p[j][i];
        if (o.momentum != 0) {
          buf[j][i] = has_buf[j] ? o.momentum * buf[j][i] + (1 - o.dampening) * d : d;
          d = o.nesterov ? d + o.momentum * buf[j][i] : buf[j][i];
        }
        p[j][i] -= o.lr * d;
      }
      has_buf[j] = true;
    }
  return p;
}

// The worst max |got - ref| over the parameters; INFINITY on a NaN or Inf (test_util.h).
double max_abs_diff(const NamedTensors& ts, const std::vector<std::vector<double>>& ref) {
  if (ts.size() != ref.size()) return INFINITY;
  double worst = 0;
  for (size_t j = 0; j < ts.size(); ++j) worst = std::max(worst, test::max_abs_diff(ts[j].second.to_vector(), ref[j]));
  return worst;
}

double tolerance(DType dt) { return dt == DType::Float32 ? 2e-6 : 1e-13; }

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.raw_data(), bc.raw_data(), (size_t)a.numel() * dtype_size(a.dtype())) == 0;
}

const Tensor& entry(const NamedTensors& sd, const std::string& name) {
  for (auto& [n, t] : sd)
    if (n == name) return t;
  FAIL("no entry " << name);
  throw;
}

}  // namespace

TEST_CASE("optim: the trajectory comparison fails on NaN and Inf", "[optim][compare]") {
  // It used to fold with std::max, which skips NaN: a NaN parameter matched any reference.
  NamedTensors ts{{"p", Tensor::from_vector({1.0, std::nan("")}, {2}, DType::Float64)}};
  CHECK_FALSE(max_abs_diff(ts, {{1.0, 2.0}}) <= 1e-3);
  CHECK_FALSE(max_abs_diff({{"p", Tensor::from_vector({1.0, 2.0}, {2}, DType::Float64)}}, {{1.0, INFINITY}}) <= 1e-3);
  CHECK(max_abs_diff({{"p", Tensor::from_vector({1.0, 2.0}, {2}, DType::Float64)}}, {{1.0, 2.5}}) == 0.5);
}

TEST_CASE("optim: AdamW follows the torch formulas (weight decay, bias correction, skipped grads)", "[optim]") {
  for (DType dt : {DType::Float64, DType::Float32})
    for (bool fairseq : {false, true}) {
      INFO(dtype_name(dt) << (fairseq ? " fairseq eps" : " torch eps"));
      std::vector<Param> ps = test_params(dt);
      NamedTensors ts = make_tensors(ps, dt);
      // A large eps so that its placement (before/after the bias correction) matters.
      AdamWOptions o{.lr = 0.1, .beta1 = 0.8, .beta2 = 0.95, .eps = 0.05, .weight_decay = 0.2, .fairseq_eps = fairseq};
      AdamW opt(ts, o);
      opt.set_weight_decay("layer.bias", 0.0);  // per-parameter weight decay
      CHECK(opt.weight_decay("layer.bias") == 0.0);
      CHECK(opt.weight_decay("layer.weight") == 0.2);
      const int steps = 6;
      for (int k = 0; k < steps; ++k) {
        set_grads(ts, k, dt);
        opt.step();
      }
      auto ref = adamw_reference(ps, {0.1, 0.8, 0.95, 0.05, {0.2, 0.0}, fairseq}, steps, dt);
      CHECK(max_abs_diff(ts, ref) < tolerance(dt));
      // The two eps forms really differ here, so the check above tells them apart.
      auto other = adamw_reference(ps, {0.1, 0.8, 0.95, 0.05, {0.2, 0.0}, !fairseq}, steps, dt);
      CHECK(max_abs_diff(ts, other) > 1e-4);
      // Step counts: the bias skipped one step.
      NamedTensors sd = opt.state_dict();
      CHECK(entry(sd, "step").to_int_vector()[0] == steps);
      CHECK(entry(sd, "step.layer.weight").to_int_vector()[0] == steps);
      CHECK(entry(sd, "step.layer.bias").to_int_vector()[0] == steps - 1);
    }
}

TEST_CASE("optim: AdamW's first step is lr * sign(g) (bias correction), decay is decoupled", "[optim]") {
  // t = 1: m_hat = g, v_hat = g^2, so p1 = p0 (1 - lr wd) - lr g / (|g| + eps).
  for (DType dt : {DType::Float64, DType::Float32}) {
    Tensor p = Tensor::from_vector({1.0, -2.0, 0.5, 3.0}, {4}, dt).requires_grad_();
    std::vector<double> g{0.001, -100.0, 7.0, 0.0};
    p.set_grad(Tensor::from_vector(g, {4}, dt));
    AdamW opt({{"p", p}}, {.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.5});
    opt.step();
    std::vector<double> got = p.to_vector(), p0{1.0, -2.0, 0.5, 3.0};
    for (size_t i = 0; i < 4; ++i) {
      double want = p0[i] * (1 - 0.01 * 0.5) - 0.01 * g[i] / (std::abs(g[i]) + 1e-8);
      CHECK(got[i] == Approx(want).epsilon(dt == DType::Float32 ? 1e-6 : 1e-12));
    }
  }
}

TEST_CASE("optim: SGD follows torch.optim.SGD (momentum, dampening, nesterov, weight decay)", "[optim]") {
  std::vector<SGDOptions> configs{
      {.lr = 0.1},
      {.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.1},
      {.lr = 0.05, .momentum = 0.8, .weight_decay = 0.01, .nesterov = true},
  };
  for (DType dt : {DType::Float64, DType::Float32})
    for (size_t c = 0; c < configs.size(); ++c) {
      INFO(dtype_name(dt) << " config " << c);
      std::vector<Param> ps = test_params(dt);
      NamedTensors ts = make_tensors(ps, dt);
      SGD opt(ts, configs[c]);
      const int steps = 5;
      for (int k = 0; k < steps; ++k) {
        set_grads(ts, k, dt);
        opt.step();
      }
      CHECK(max_abs_diff(ts, sgd_reference(ps, configs[c], steps, dt)) < tolerance(dt));
    }
}

TEST_CASE("optim: a parameter without a gradient is untouched; zero_grad drops every grad", "[optim]") {
  Tensor a = Tensor::from_vector({1.0, 2.0}, {2}, DType::Float32).requires_grad_();
  Tensor b = Tensor::from_vector({3.0, 4.0}, {2}, DType::Float32).requires_grad_();
  AdamW opt({{"a", a}, {"b", b}}, {.lr = 0.1, .weight_decay = 0.1});
  a.set_grad(Tensor::from_vector({1.0, 1.0}, {2}, DType::Float32));
  opt.step();
  CHECK(b.to_vector() == std::vector<double>{3.0, 4.0});  // not even weight decay
  CHECK(a.to_vector() != std::vector<double>{1.0, 2.0});
  CHECK(opt.num_steps() == 1);
  opt.zero_grad();
  CHECK(!a.grad().defined());
  CHECK(!b.grad().defined());
  opt.step();  // no gradients: nothing moves
  CHECK(b.to_vector() == std::vector<double>{3.0, 4.0});
  CHECK(opt.num_steps() == 2);
}

namespace {
// A tiny "training run" whose gradients depend on the parameters, so that any difference in the
// state shows up in later steps: g = (p - target) * scale_k + noise_k. Large enough (70,000
// elements) that the kernels run in parallel pieces.
struct Run {
  NamedTensors params;
  explicit Run(DType dt) {
    Generator gen(7);
    params.emplace_back("big", randn({70000}, dt, &gen).requires_grad_());
    params.emplace_back("small.weight", randn({3, 5}, dt, &gen).requires_grad_());
    params.emplace_back("small.bias", randn({5}, dt, &gen).requires_grad_());
  }
  void grads(int k) {
    no_grad guard;
    for (size_t j = 0; j < params.size(); ++j) {
      Tensor& p = params[j].second;
      if (j == 2 && k % 3 == 1) {  // some steps without a gradient for the bias
        p.zero_grad();
        continue;
      }
      Generator gen(1000 + 10 * (uint64_t)k + j);
      Tensor g = add(mul_scalar(add_scalar(p.detach(), -0.5), 1.0 + 0.1 * k), mul_scalar(randn(p.shape(), p.dtype(), &gen), 0.3));
      p.set_grad(g);
    }
  }
  void copy_from(const Run& o) {
    no_grad guard;
    for (size_t j = 0; j < params.size(); ++j) params[j].second.copy_(o.params[j].second);
  }
};

// Runs `first` steps, checkpoints (through safetensors bytes), resumes in a fresh run and
// optimizer for `second` steps, and compares with an uninterrupted run, bit for bit.
template <typename MakeOpt>
void check_resume(DType dt, MakeOpt make_opt) {
  const int first = 5, second = 5;
  LinearWarmupDecay sched(0.05, 3, 20);
  Run straight(dt);
  auto opt = make_opt(straight.params);
  for (int k = 0; k < first + second; ++k) {
    straight.grads(k);
    opt->set_lr(sched.lr(opt->num_steps()));
    opt->step();
  }

  Run a(dt);
  auto opt_a = make_opt(a.params);
  for (int k = 0; k < first; ++k) {
    a.grads(k);
    opt_a->set_lr(sched.lr(opt_a->num_steps()));
    opt_a->step();
  }
  std::string model_bytes = serialize_safetensors(a.params);
  std::string opt_bytes = serialize_safetensors(opt_a->state_dict());
  // Steps after the snapshot must not change it (state_dict holds copies).
  a.grads(first);
  opt_a->step();

  Run b(dt);  // fresh, then loaded
  SafeTensors model_ck = parse_safetensors(model_bytes, "model"), opt_ck = parse_safetensors(opt_bytes, "opt");
  {
    no_grad guard;
    for (size_t j = 0; j < b.params.size(); ++j) b.params[j].second.copy_(model_ck.at(b.params[j].first));
  }
  auto opt_b = make_opt(b.params);
  opt_b->load_state_dict(opt_ck.tensors);
  // Resume on another number of threads: the results must not depend on it.
  const int threads = get_num_threads();
  set_num_threads(threads > 1 ? 1 : 2);
  CHECK(opt_b->num_steps() == first);
  for (int k = first; k < first + second; ++k) {
    b.grads(k);
    opt_b->set_lr(sched.lr(opt_b->num_steps()));
    opt_b->step();
  }
  set_num_threads(threads);
  for (size_t j = 0; j < b.params.size(); ++j) {
    INFO(b.params[j].first);
    CHECK(same_bits(b.params[j].second, straight.params[j].second));
  }
  NamedTensors s1 = opt->state_dict(), s2 = opt_b->state_dict();
  REQUIRE(s1.size() == s2.size());
  for (size_t i = 0; i < s1.size(); ++i) {
    INFO(s1[i].first);
    CHECK(s1[i].first == s2[i].first);
    CHECK(same_bits(s1[i].second, s2[i].second));
  }
  // The resumed run really moved (the check above is not comparing untouched tensors).
  CHECK(!same_bits(b.params[0].second, model_ck.at("big")));
}
}  // namespace

TEST_CASE("optim: a checkpoint resumes bit-identically (AdamW, SGD with momentum)", "[optim]") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    INFO(dtype_name(dt));
    check_resume(dt, [](const NamedTensors& ps) {
      return std::make_unique<AdamW>(ps, AdamWOptions{.beta2 = 0.98, .weight_decay = 0.01});
    });
    check_resume(dt, [](const NamedTensors& ps) {
      return std::make_unique<SGD>(ps, SGDOptions{.momentum = 0.9, .weight_decay = 1e-3, .nesterov = true});
    });
  }
}

TEST_CASE("optim: state_dict names and load errors", "[optim]") {
  Tensor w = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float32).requires_grad_();
  Tensor b = Tensor::from_vector({0.5, -0.5}, {2}, DType::Float32).requires_grad_();
  NamedTensors ps{{"fc.weight", w}, {"fc.bias", b}};
  AdamW opt(ps, {.lr = 0.01});
  w.set_grad(Tensor::ones({2, 3}));
  b.set_grad(Tensor::ones({2}));
  opt.step();
  NamedTensors sd = opt.state_dict();
  std::vector<std::string> names;
  for (auto& [n, t] : sd) names.push_back(n);
  CHECK(names == std::vector<std::string>{"step", "lr", "step.fc.weight", "exp_avg.fc.weight", "exp_avg_sq.fc.weight",
                                          "step.fc.bias", "exp_avg.fc.bias", "exp_avg_sq.fc.bias"});
  CHECK(entry(sd, "exp_avg.fc.weight").shape() == Shape{2, 3});
  CHECK(entry(sd, "lr").item() == 0.01);

  auto without = [&](const std::string& name) {
    NamedTensors out;
    for (auto& e : sd)
      if (e.first != name) out.push_back(e);
    return out;
  };
  auto replaced = [&](const std::string& name, Tensor t) {
    NamedTensors out = sd;
    for (auto& e : out)
      if (e.first == name) e.second = t;
    return out;
  };
  AdamW fresh(ps, {.lr = 0.01});
  NamedTensors before = fresh.state_dict();
  REQUIRE_THROWS_WITH(fresh.load_state_dict(without("exp_avg_sq.fc.bias")),
                      Contains("[adamw.load_state_dict] missing 'exp_avg_sq.fc.bias'"));
  REQUIRE_THROWS_WITH(fresh.load_state_dict(without("step")), Contains("missing 'step'"));
  NamedTensors extra = sd;
  extra.emplace_back("exp_avg.fc.gate", Tensor::zeros({2}));
  REQUIRE_THROWS_WITH(fresh.load_state_dict(extra), Contains("unexpected 'exp_avg.fc.gate'"));
  REQUIRE_THROWS_WITH(fresh.load_state_dict(replaced("exp_avg.fc.weight", Tensor::zeros({3, 2}))),
                      Contains("'exp_avg.fc.weight' has shape (3,2), the parameter 'fc.weight' has (2,3)"));
  REQUIRE_THROWS_WITH(fresh.load_state_dict(replaced("step.fc.bias", Tensor::scalar(1.0))),
                      Contains("'step.fc.bias' is () float32 cpu; expected an int64 scalar"));
  REQUIRE_THROWS_WITH(fresh.load_state_dict(replaced("step.fc.bias", Tensor::from_vector(std::vector<int64_t>{5}, Shape{}))),
                      Contains("'step.fc.bias' is 5, more than 'step' (1)"));
  REQUIRE_THROWS_WITH(fresh.load_state_dict(replaced("lr", Tensor::scalar(-1.0, DType::Float64))),
                      Contains("'lr' is -1"));
  NamedTensors twice = sd;
  twice.push_back(sd[3]);
  REQUIRE_THROWS_WITH(fresh.load_state_dict(twice), Contains("'exp_avg.fc.weight' given twice"));
  // An SGD state is not an AdamW state, and the other way round.
  SGD sgd(ps, {.lr = 0.1, .momentum = 0.9});
  REQUIRE_THROWS_WITH(fresh.load_state_dict(sgd.state_dict()), Contains("missing 'exp_avg.fc.weight'"));
  REQUIRE_THROWS_WITH(sgd.load_state_dict(sd), Contains("[sgd.load_state_dict] missing 'momentum_buffer.fc.weight'"));
  // A different model: a parameter name the state does not have.
  Tensor w2 = Tensor::zeros({2, 3}).requires_grad_();
  AdamW other({{"encoder.weight", w2}});
  REQUIRE_THROWS_WITH(other.load_state_dict(sd), Contains("missing 'step.encoder.weight'"));
  // Failed loads changed nothing.
  NamedTensors after = fresh.state_dict();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) CHECK(same_bits(after[i].second, before[i].second));
  // A valid load works and reproduces the state.
  fresh.load_state_dict(sd);
  NamedTensors loaded = fresh.state_dict();
  for (size_t i = 0; i < sd.size(); ++i) CHECK(same_bits(loaded[i].second, sd[i].second));
}

TEST_CASE("optim: construction and argument errors", "[optim]") {
  Tensor w = Tensor::zeros({2, 2}).requires_grad_();
  REQUIRE_THROWS_WITH(AdamW(NamedTensors{}), Contains("[adamw] got an empty parameter list"));
  REQUIRE_THROWS_WITH(AdamW({{"w", w}, {"w", Tensor::zeros({1}).requires_grad_()}}), Contains("'w' given twice"));
  REQUIRE_THROWS_WITH(AdamW({{"a", w}, {"b", w}}), Contains("parameters 'a' and 'b' share memory"));
  REQUIRE_THROWS_WITH(AdamW({{"a", w}, {"b", w.detach().narrow(0, 1, 1)}}), Contains("share memory"));
  Tensor nonleaf = mul_scalar(w, 2.0);
  REQUIRE_THROWS_WITH(AdamW({{"x", nonleaf}}), Contains("parameter 'x'") && Contains("is not a leaf"));
  REQUIRE_THROWS_WITH(SGD({{"i", Tensor::zeros({2}, DType::Int64)}}), Contains("[sgd] parameter 'i' is (2) int64"));
  REQUIRE_THROWS_WITH(AdamW({{"t", Tensor::zeros({3, 2}).t()}}), Contains("is not contiguous"));
  REQUIRE_THROWS_WITH(AdamW({{"w", w}}, {.beta2 = 1.0}), Contains("beta2 must be in [0, 1)"));
  REQUIRE_THROWS_WITH(AdamW({{"w", w}}, {.lr = -1}), Contains("learning rate must be finite and >= 0, got -1"));
  REQUIRE_THROWS_WITH(SGD({{"w", w}}, {.lr = 0.1, .nesterov = true}), Contains("nesterov needs momentum > 0"));
  AdamW opt({{"w", w}});
  REQUIRE_THROWS_WITH(opt.set_lr(std::nan("")), Contains("learning rate must be finite"));
  REQUIRE_THROWS_WITH(opt.set_weight_decay("v", 0.1), Contains("[adamw.set_weight_decay] no parameter named 'v'"));
  // A gradient of the wrong dtype is refused before anything changes.
  w.set_grad(Tensor::ones({2, 2}, DType::Float64));
  REQUIRE_THROWS_WITH(opt.step(), Contains("[adamw] gradient of 'w' is (2,2) float64 cpu, the parameter is (2,2) float32 cpu"));
  CHECK(opt.num_steps() == 0);
}

TEST_CASE("optim: clip_grad_norm (norm, scaling, no-op below max, non-finite norms)", "[optim]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dt));
    Generator gen(3);
    NamedTensors ps{{"big", randn({150000}, dt, &gen).requires_grad_()},
                    {"small", randn({4, 3}, dt, &gen).requires_grad_()},
                    {"nograd", randn({7}, dt, &gen).requires_grad_()}};
    ps[0].second.set_grad(randn({150000}, dt, &gen));
    ps[1].second.set_grad(mul_scalar(randn({4, 3}, dt, &gen), 10.0).t().contiguous().t());  // a strided grad
    double want = 0;
    for (int j = 0; j < 2; ++j)
      for (double g : ps[(size_t)j].second.grad().to_vector()) want += g * g;
    want = std::sqrt(want);
    CHECK(global_grad_norm(ps) == Approx(want).epsilon(1e-12));

    // Below the max: returns the norm and changes no bit.
    Tensor g0 = ps[0].second.grad().clone(), g1 = ps[1].second.grad().clone();
    CHECK(clip_grad_norm(ps, want * 2) == Approx(want).epsilon(1e-12));
    CHECK(same_bits(ps[0].second.grad(), g0));
    CHECK(same_bits(ps[1].second.grad(), g1));

    // Above: every gradient scaled by max / (norm + 1e-6), the new norm is max_norm.
    const double max_norm = want / 4;
    CHECK(clip_grad_norm(ps, max_norm) == Approx(want).epsilon(1e-12));
    const double f = max_norm / (want + 1e-6);
    std::vector<double> a = ps[1].second.grad().to_vector(), b = g1.to_vector();
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i] * f).epsilon(1e-6));
    CHECK(global_grad_norm(ps) == Approx(want * f).epsilon(dt == DType::Float32 ? 1e-5 : 1e-10));

    // NaN and inf: reported, gradients untouched.
    for (double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
      ps[1].second.grad().set({2, 1}, bad);
      Tensor before0 = ps[0].second.grad().clone(), before1 = ps[1].second.grad().clone();
      double n = clip_grad_norm(ps, 1.0);
      CHECK(!std::isfinite(n));
      CHECK(std::isnan(bad) == std::isnan(n));
      CHECK(same_bits(ps[0].second.grad(), before0));
      CHECK(same_bits(ps[1].second.grad(), before1));
    }
  }
  Tensor w = Tensor::zeros({2}).requires_grad_();
  REQUIRE_THROWS_WITH(clip_grad_norm({{"w", w}}, 0.0), Contains("[clip_grad_norm] max_norm must be finite and > 0"));
  CHECK(clip_grad_norm({{"w", w}}, 1.0) == 0.0);  // no gradients at all
}

TEST_CASE("optim: learning-rate schedules at their key steps", "[optim]") {
  LinearWarmupDecay s(1e-3, 100, 1100);
  CHECK(s.lr(0) == 0.0);
  CHECK(s.lr(1) == Approx(1e-5).epsilon(1e-12));
  CHECK(s.lr(50) == Approx(5e-4).epsilon(1e-12));
  CHECK(s.lr(100) == Approx(1e-3).epsilon(1e-12));
  CHECK(s.lr(101) == Approx(1e-3 * 999.0 / 1000.0).epsilon(1e-12));
  CHECK(s.lr(600) == Approx(5e-4).epsilon(1e-12));
  CHECK(s.lr(1099) == Approx(1e-6).epsilon(1e-9));
  CHECK(s.lr(1100) == 0.0);
  CHECK(s.lr(5000) == 0.0);
  // Monotone up, then down.
  bool up = true, down = true;
  for (int64_t t = 1; t <= 100; ++t) up = up && s.lr(t) > s.lr(t - 1);
  for (int64_t t = 101; t <= 1100; ++t) down = down && s.lr(t) < s.lr(t - 1);
  CHECK(up);
  CHECK(down);

  LinearWarmupDecay with_ends(2.0, 10, 30, /*end_lr=*/0.5, /*init_lr=*/1.0);
  CHECK(with_ends.lr(0) == 1.0);
  CHECK(with_ends.lr(5) == Approx(1.5));
  CHECK(with_ends.lr(10) == Approx(2.0));
  CHECK(with_ends.lr(20) == Approx(1.25));
  CHECK(with_ends.lr(30) == 0.5);
  CHECK(with_ends.lr(31) == 0.5);

  LinearWarmupDecay no_warmup(1.0, 0, 4);
  CHECK(no_warmup.lr(0) == 1.0);
  CHECK(no_warmup.lr(1) == Approx(0.75));
  CHECK(no_warmup.lr(4) == 0.0);

  ConstantLR c(0.3);
  CHECK(c.lr(0) == 0.3);
  CHECK(c.lr(123456) == 0.3);

  REQUIRE_THROWS_WITH(LinearWarmupDecay(1e-3, 100, 100), Contains("total_steps (100) must be greater than warmup_steps (100)"));
  REQUIRE_THROWS_WITH(LinearWarmupDecay(-1, 1, 2), Contains("peak_lr must be finite and >= 0"));
  REQUIRE_THROWS_WITH(s.lr(-1), Contains("[LinearWarmupDecay] step must be >= 0, got -1"));
}

TEST_CASE("optim: AdamW fits a linear regression through autograd", "[optim]") {
  // y = X w* + b* + small noise; loss = mean((X w + b - y)^2) from w = 0, b = 0.
  Generator gen(21);
  const int64_t N = 64, D = 5;
  Tensor X = randn({N, D}, DType::Float64, &gen);
  Tensor w_true = Tensor::from_vector({1.5, -2.0, 0.5, 3.0, -1.0}, {D, 1}, DType::Float64);
  Tensor y = add(add_scalar(matmul(X, w_true), 0.7), mul_scalar(randn({N, 1}, DType::Float64, &gen), 0.01));
  Tensor w = Tensor::zeros({D, 1}, DType::Float64).requires_grad_();
  Tensor b = Tensor::zeros({1}, DType::Float64).requires_grad_();
  NamedTensors ps{{"w", w}, {"b", b}};
  AdamW opt(ps, {.lr = 0.1, .weight_decay = 0.0});
  LinearWarmupDecay sched(0.1, 20, 400);
  auto loss_fn = [&] { return mean(square(sub(add(matmul(X, w), b), y))); };
  const double initial = loss_fn().item();
  double last = initial;
  for (int it = 0; it < 400; ++it) {
    opt.zero_grad();
    Tensor loss = loss_fn();
    last = loss.item();
    loss.backward();
    clip_grad_norm(ps, 10.0);
    opt.set_lr(sched.lr(opt.num_steps()));
    opt.step();
  }
  INFO("initial " << initial << " final " << last);
  CHECK(last < 1e-3);
  CHECK(initial > 1.0);
  std::vector<double> wv = w.to_vector();
  std::vector<double> wt = w_true.to_vector();
  for (size_t i = 0; i < wv.size(); ++i) CHECK(wv[i] == Approx(wt[i]).margin(0.02));
  CHECK(b.item() == Approx(0.7).margin(0.02));
}
