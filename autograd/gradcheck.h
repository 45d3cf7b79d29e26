// Finite-difference gradient check, public API (as torch.autograd.gradcheck).
//
// For a function f of float64 inputs, compares the analytic gradient of sum(f(x) * R), R a fixed
// random tensor, with central differences (f(x + eps) - f(x - eps)) / 2 eps, element by element
// of every input that requires grad. Inputs may be non-contiguous views (transposed, narrowed),
// but not expanded ones (one memory slot for many elements).
#pragma once
#include <functional>
#include <string>
#include <vector>
#include "core/tensor.h"

namespace megagrad {

struct GradcheckOptions {
  double eps = 1e-6;
  double tolerance = 1e-6;  // on |analytic - numeric| / max(1, |numeric|)
  uint64_t seed = 1234;     // for R
};

struct GradcheckResult {
  bool passed = false;   // false also on a NaN or Inf (either gradient) and when no element was checked
  double max_error = 0;  // the worst |analytic - numeric| / max(1, |numeric|)
  // Where the worst element is: input index, element index, and both values.
  int64_t worst_input = -1;
  std::vector<int64_t> worst_index;
  double worst_analytic = 0, worst_numeric = 0;
  int64_t elements_checked = 0;
  std::string report() const;  // one line
};

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace megagrad
