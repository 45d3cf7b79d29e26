#include "autograd/gradcheck.h"
#include <cmath>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/rng.h"

namespace megagrad {

namespace {
// sum(out * R) in double, without recording.
double weighted_sum(const Tensor& out, const std::vector<double>& r) {
  std::vector<double> v = out.to_vector();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * r[i];
  return s;
}

}  // namespace

std::string GradcheckResult::report() const {
  if (worst_input < 0) return fmt::format("{} ({} elements)", passed ? "ok" : "FAILED", elements_checked);
  return fmt::format("{}: max error {:.3g} at input {} index ({}): analytic {:.10g}, numeric {:.10g} ({} elements)",
                     passed ? "ok" : "FAILED", max_error, worst_input, fmt::join(worst_index, ","),
                     worst_analytic, worst_numeric, elements_checked);
}

GradcheckResult gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opt) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    MG_CHECK(x.dtype() == DType::Float64, "gradcheck", "input {} is {}; gradcheck needs float64", i, x.desc());
    MG_CHECK(x.is_leaf(), "gradcheck", "input {} ({}) is not a leaf", i, x.desc());
    for (size_t d = 0; d < x.strides().size(); ++d)
      MG_CHECK(x.strides()[d] != 0 || x.shape()[d] == 1, "gradcheck",
               "input {} ({}) is expanded (stride 0); pass a copy", i, x.desc());
  }
  GradcheckResult res;

  // Analytic: one backward of sum(out * R).
  Tensor out;
  {
    enable_grad g;
    for (const Tensor& x : inputs)
      if (x.defined() && x.requires_grad()) Tensor(x).zero_grad();
    out = f(inputs);
    MG_CHECK(out.dtype() == DType::Float64, "gradcheck", "f returned {}; expected float64", out.desc());
    Generator gen(opt.seed);
    Tensor R = randn(out.shape(), DType::Float64, &gen);
    out.backward(R);
  }
  Generator gen(opt.seed);
  std::vector<double> r = randn(out.shape(), DType::Float64, &gen).to_vector();

  // Numeric: central differences, one element at a time, perturbing the input's memory.
  no_grad ng;
  res.passed = true;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor ga = x.grad();
    double* base = x.data_ptr<double>();
    for (int64_t e = 0; e < x.numel(); ++e) {
      std::vector<int64_t> idx = unravel_index(e, x.shape());
      int64_t off = 0;
      for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * x.strides()[d];
      double orig = base[off];
      base[off] = orig + opt.eps;
      double fp = weighted_sum(f(inputs), r);
      base[off] = orig - opt.eps;
      double fm = weighted_sum(f(inputs), r);
      base[off] = orig;
      double numeric = (fp - fm) / (2 * opt.eps);
      double analytic = ga.defined() ? ga.at(idx) : 0.0;
      double err = std::abs(analytic - numeric) / std::max(1.0, std::abs(numeric));
      if (!(err <= opt.tolerance)) res.passed = false;  // NaN fails too
      if (res.worst_input < 0 || err > res.max_error || std::isnan(err)) {
        res.max_error = std::isnan(err) ? INFINITY : err;
        res.worst_input = (int64_t)i;
        res.worst_index = idx;
        res.worst_analytic = analytic;
        res.worst_numeric = numeric;
      }
      ++res.elements_checked;
    }
  }
  if (res.elements_checked == 0) res.passed = false;  // nothing checked proves nothing
  return res;
}

}  // namespace megagrad
