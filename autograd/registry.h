// The list of differentiable ops. record() refuses a name that is not listed here, and a test
// (tests/test_gradcheck.cpp, "every registered op has a case") fails when a listed op has no
// gradcheck case: a new op cannot slip in without a gradient check.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>
#include "autograd/gradcheck.h"
#include "core/tensor.h"

namespace megagrad {

const std::vector<std::string_view>& differentiable_ops();
bool is_registered_op(std::string_view op);

// One float64 gradient check, runnable from the tests and from `megagrad gradcheck`.
struct GradcheckCase {
  std::string op;     // the registered op it checks
  std::string label;  // what this case exercises, e.g. "broadcast (3,1) * (4)"
  std::function<std::vector<Tensor>()> make_inputs;  // float64 leaves that require grad
  std::function<Tensor(const std::vector<Tensor>&)> f;
  double tolerance = 1e-6;  // on |analytic - numeric| / max(1, |numeric|)
  double eps = 1e-6;        // the finite-difference step
};

// Runs one case with its own tolerance and finite-difference step.
GradcheckResult run_gradcheck_case(const GradcheckCase& c);

// Every case: the primitive ops' (autograd/gradcheck_cases_*.cpp) and the fused Mega ops'
// (gathered in mega/gradcheck_cases.cpp, the top of the library).
std::vector<GradcheckCase> all_gradcheck_cases();

}  // namespace megagrad
