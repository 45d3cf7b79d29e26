// Optimizers and gradient clipping (see optim.h for the formulas): the state (moments, step
// counts, state_dict) and the device dispatch. The CPU loops are in optim_kernels.h.
#include "mega/optim.h"
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include "autograd/grad_mode.h"
#include "core/dispatch.h"
#include "core/parallel.h"
#include "mega/optim_kernels.h"
#if MEGAGRAD_HAS_CUDA
#include "backends/cuda/kernels.h"
#include "backends/cuda/stream.h"
#endif

namespace megagrad {

using namespace optim_kernels;

namespace {

bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.storage() != b.storage()) return false;
  const int64_t a0 = a.offset(), a1 = a0 + a.numel(), b0 = b.offset(), b1 = b0 + b.numel();
  return a0 < b1 && b0 < a1;
}

// The gradient of `name` as a contiguous tensor of the parameter's dtype and shape (a copy only
// for a strided gradient), or undefined.
Tensor checked_grad(std::string_view op, const std::string& name, const Tensor& p) {
  Tensor g = p.grad();
  if (!g.defined()) return g;
  MG_CHECK(g.dtype() == p.dtype() && g.shape() == p.shape(), op, "gradient of '{}' is {}, the parameter is {}",
           name, g.desc(), p.desc());
  MG_CHECK(g.device() == p.device(), op, "gradient of '{}' is {}, the parameter is {}", name, g.desc(), p.desc());
  return g.is_contiguous() ? g : g.contiguous();
}

Tensor int64_scalar(int64_t v) { return Tensor::from_vector(std::vector<int64_t>{v}, Shape{}); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Optimizer

Optimizer::Optimizer(std::string kind, NamedTensors params, double lr, double weight_decay,
                     std::vector<std::string> slots)
    : kind_(std::move(kind)), params_(std::move(params)), slot_names_(std::move(slots)) {
  const std::string& op = kind_;
  MG_CHECK(!params_.empty(), op, "got an empty parameter list");
  set_lr(lr);
  MG_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, op, "weight_decay must be >= 0, got {}", weight_decay);
  std::set<std::string> names;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    MG_CHECK(!name.empty(), op, "parameter {} has an empty name", i);
    MG_CHECK(names.insert(name).second, op, "parameter name '{}' given twice", name);
    MG_CHECK(p.defined(), op, "parameter '{}' is undefined", name);
    MG_CHECK(is_floating(p.dtype()), op, "parameter '{}' is {}; expected float32 or float64", name, p.desc());
    MG_CHECK(p.device() == params_[0].second.device(), op, "parameter '{}' is {}, but '{}' is {}: one optimizer, one device",
             name, p.desc(), params_[0].first, params_[0].second.desc());
    MG_CHECK(p.is_leaf(), op, "parameter '{}' ({}) is not a leaf; optimize the leaf it was computed from", name,
             p.desc());
    MG_CHECK(p.is_contiguous(), op, "parameter '{}' ({}) is not contiguous", name, p.desc());
    for (size_t j = 0; j < i; ++j)
      MG_CHECK(!overlaps(p, params_[j].second), op, "parameters '{}' and '{}' share memory (a tied weight must be given once)",
               params_[j].first, name);
  }
  param_steps_.assign(params_.size(), 0);
  weight_decay_.assign(params_.size(), weight_decay);
  slots_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t s = 0; s < slot_names_.size(); ++s)
      slots_[i].push_back(Tensor::zeros(params_[i].second.shape(), params_[i].second.dtype(), params_[i].second.device()));
}

void Optimizer::set_lr(double lr) {
  MG_CHECK(std::isfinite(lr) && lr >= 0, kind_, "learning rate must be finite and >= 0, got {}", lr);
  lr_ = lr;
}

size_t Optimizer::index_of(const std::string& param_name, const char* op) const {
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].first == param_name) return i;
  fail(kind_ + "." + op, "no parameter named '{}' (among {} parameters)", param_name, params_.size());
}

void Optimizer::set_weight_decay(const std::string& param_name, double weight_decay) {
  MG_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, kind_ + ".set_weight_decay",
           "weight decay of '{}' must be >= 0, got {}", param_name, weight_decay);
  weight_decay_[index_of(param_name, "set_weight_decay")] = weight_decay;
}

double Optimizer::weight_decay(const std::string& param_name) const {
  return weight_decay_[index_of(param_name, "weight_decay")];
}

void Optimizer::step() {
  no_grad guard;
  // All gradients are checked before any parameter changes.
  std::vector<Tensor> grads;
  grads.reserve(params_.size());
  for (const auto& [name, p] : params_) grads.push_back(checked_grad(kind_, name, p));
  for (size_t i = 0; i < params_.size(); ++i)
    if (grads[i].defined()) update(i, params_[i].second, grads[i], ++param_steps_[i]);
  ++num_steps_;
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

NamedTensors Optimizer::state_dict() const {
  no_grad guard;
  NamedTensors out;
  out.emplace_back("step", int64_scalar(num_steps_));
  out.emplace_back("lr", Tensor::scalar(lr_, DType::Float64));
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("step." + params_[i].first, int64_scalar(param_steps_[i]));
    for (size_t s = 0; s < slot_names_.size(); ++s)
      out.emplace_back(slot_names_[s] + "." + params_[i].first, slots_[i][s].clone());
  }
  return out;
}

void Optimizer::load_state_dict(const NamedTensors& state) {
  const std::string op = kind_ + ".load_state_dict";
  std::map<std::string, const Tensor*> given;
  for (auto& [n, t] : state) {
    MG_CHECK(given.emplace(n, &t).second, op, "entry '{}' given twice", n);
    MG_CHECK(t.defined(), op, "entry '{}' is undefined", n);
  }
  std::set<std::string> used;
  auto take = [&](const std::string& name, const std::string& expected) -> const Tensor& {
    auto it = given.find(name);
    MG_CHECK(it != given.end(), op, "missing '{}' (expected {}); is this a state_dict of a {} optimizer over the "
             "same parameters?", name, expected, kind_);
    used.insert(name);
    return *it->second;
  };
  auto take_count = [&](const std::string& name) {
    const Tensor& t = take(name, "an int64 scalar");
    MG_CHECK(t.dtype() == DType::Int64 && t.dim() == 0, op, "'{}' is {}; expected an int64 scalar", name, t.desc());
    const int64_t v = t.to_int_vector()[0];
    MG_CHECK(v >= 0, op, "'{}' is {}; expected a count >= 0", name, v);
    return v;
  };

  // 1. Validate everything before changing anything.
  const int64_t num_steps = take_count("step");
  const Tensor& lr_t = take("lr", "a float64 scalar");
  MG_CHECK(lr_t.dtype() == DType::Float64 && lr_t.dim() == 0, op, "'lr' is {}; expected a float64 scalar",
           lr_t.desc());
  const double lr = lr_t.item();
  MG_CHECK(std::isfinite(lr) && lr >= 0, op, "'lr' is {}; expected a finite value >= 0", lr);
  std::vector<int64_t> steps(params_.size());
  std::vector<std::vector<const Tensor*>> slots(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [pname, p] = params_[i];
    steps[i] = take_count("step." + pname);
    MG_CHECK(steps[i] <= num_steps, op, "'step.{}' is {}, more than 'step' ({})", pname, steps[i], num_steps);
    for (const std::string& slot : slot_names_) {
      const std::string name = slot + "." + pname;
      const Tensor& t = take(name, p.desc());
      MG_CHECK(t.shape() == p.shape(), op, "'{}' has shape {}, the parameter '{}' has {}", name, shape_str(t.shape()),
               pname, shape_str(p.shape()));
      MG_CHECK(is_floating(t.dtype()), op, "'{}' is {}; expected a float tensor", name, t.desc());
      slots[i].push_back(&t);
    }
  }
  for (auto& [n, t] : state)
    MG_CHECK(used.count(n), op, "unexpected '{}' ({}): a {} optimizer over these parameters has no such state", n,
             t.desc(), kind_);

  // 2. Copy.
  no_grad guard;
  num_steps_ = num_steps;
  lr_ = lr;
  for (size_t i = 0; i < params_.size(); ++i) {
    param_steps_[i] = steps[i];
    for (size_t s = 0; s < slot_names_.size(); ++s)  // from any device to the parameter's
      slots_[i][s].copy_(slots[i][s]->to(slots_[i][s].device()));
  }
}

// ---------------------------------------------------------------------------------------------
// AdamW

AdamW::AdamW(NamedTensors params, const AdamWOptions& options)
    : Optimizer("adamw", std::move(params), options.lr, options.weight_decay, {"exp_avg", "exp_avg_sq"}),
      opt_(options) {
  MG_CHECK(options.beta1 >= 0 && options.beta1 < 1, "adamw", "beta1 must be in [0, 1), got {}", options.beta1);
  MG_CHECK(options.beta2 >= 0 && options.beta2 < 1, "adamw", "beta2 must be in [0, 1), got {}", options.beta2);
  MG_CHECK(std::isfinite(options.eps) && options.eps >= 0, "adamw", "eps must be >= 0, got {}", options.eps);
}

void AdamW::update(size_t i, const Tensor& param, const Tensor& grad, int64_t step) {
  const double bc1 = 1 - std::pow(opt_.beta1, (double)step);
  const double bc2 = 1 - std::pow(opt_.beta2, (double)step);
  AdamWScalars s;
  s.decay = 1 - lr() * weight_decay_[i];
  s.beta1 = opt_.beta1;
  s.beta2 = opt_.beta2;
  s.eps = opt_.eps;
  s.step_size = opt_.fairseq_eps ? lr() * std::sqrt(bc2) / bc1 : lr() / bc1;
  s.denom_scale = opt_.fairseq_eps ? 1.0 : 1.0 / std::sqrt(bc2);
  if (!param.device().is_cpu()) {
#if MEGAGRAD_HAS_CUDA
    cuda::cuda_adamw(param.dtype(), param.raw_device_data(), grad.raw_device_data(), slots_[i][0].raw_device_data(),
                     slots_[i][1].raw_device_data(), param.numel(), s, cuda_stream(param.device().index));
    return;
#endif
  }
  dispatch_float("adamw", param.dtype(), [&]<typename T>() {
    adamw_kernel<T>(param.data_ptr<T>(), grad.data_ptr<T>(), slots_[i][0].data_ptr<T>(), slots_[i][1].data_ptr<T>(),
                    param.numel(), s);
  });
}

// ---------------------------------------------------------------------------------------------
// SGD

SGD::SGD(NamedTensors params, const SGDOptions& options)
    : Optimizer("sgd", std::move(params), options.lr, options.weight_decay,
                options.momentum != 0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{}),
      opt_(options) {
  MG_CHECK(std::isfinite(options.momentum) && options.momentum >= 0, "sgd", "momentum must be >= 0, got {}",
           options.momentum);
  MG_CHECK(std::isfinite(options.dampening), "sgd", "dampening must be finite, got {}", options.dampening);
  MG_CHECK(!options.nesterov || (options.momentum > 0 && options.dampening == 0), "sgd",
           "nesterov needs momentum > 0 and dampening 0, got momentum {} and dampening {}", options.momentum,
           options.dampening);
}

void SGD::update(size_t i, const Tensor& param, const Tensor& grad, int64_t step) {
  SGDScalars s{lr(), weight_decay_[i], opt_.momentum, opt_.dampening, opt_.nesterov, step == 1};
  if (!param.device().is_cpu()) {
#if MEGAGRAD_HAS_CUDA
    cuda::cuda_sgd(param.dtype(), param.raw_device_data(), grad.raw_device_data(),
                   slots_[i].empty() ? nullptr : slots_[i][0].raw_device_data(), param.numel(), s,
                   cuda_stream(param.device().index));
    return;
#endif
  }
  dispatch_float("sgd", param.dtype(), [&]<typename T>() {
    T* buf = slots_[i].empty() ? nullptr : slots_[i][0].data_ptr<T>();
    sgd_kernel<T>(param.data_ptr<T>(), grad.data_ptr<T>(), buf, param.numel(), s);
  });
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping

double global_grad_norm(const NamedTensors& params) {
  double ss = 0;
  Tensor device_ss;  // on a GPU: one device double that every gradient adds into, read once
  for (auto& [name, p] : params) {
    Tensor g = checked_grad("grad_norm", name, p);
    if (!g.defined()) continue;
    if (!g.device().is_cpu()) {
#if MEGAGRAD_HAS_CUDA
      if (!device_ss.defined()) device_ss = Tensor::zeros({1}, DType::Float64, g.device());
      MG_CHECK(device_ss.device() == g.device(), "grad_norm", "gradients on {} and {}", device_ss.device(), g.device());
      cuda::cuda_sum_squares(g.dtype(), g.raw_device_data(), g.numel(), device_ss.device_data_ptr<double>(),
                             /*accumulate=*/true, cuda_stream(g.device().index));
#endif
      continue;
    }
    ss += dispatch_float("grad_norm", g.dtype(), [&]<typename T>() { return sum_squares(g.data_ptr<T>(), g.numel()); });
  }
  if (device_ss.defined()) ss += device_ss.item();
  return std::sqrt(ss);
}

double clip_grad_norm(const NamedTensors& params, double max_norm) {
  MG_CHECK(std::isfinite(max_norm) && max_norm > 0, "clip_grad_norm",
           "max_norm must be finite and > 0, got {} (use global_grad_norm to only measure)", max_norm);
  const double norm = global_grad_norm(params);
  if (!std::isfinite(norm)) return norm;  // scaling by 0 or NaN would hide the problem
  const double factor = max_norm / (norm + 1e-6);
  if (factor >= 1) return norm;
  no_grad guard;
  for (auto& [name, p] : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!g.is_contiguous() || !g.device().is_cpu()) {
      g.mul_(factor);
      continue;
    }
    dispatch_float("clip_grad_norm", g.dtype(), [&]<typename T>() { scale_kernel(g.data_ptr<T>(), g.numel(), factor); });
  }
  return norm;
}

}  // namespace megagrad
