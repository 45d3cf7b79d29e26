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
bool is_registered_op(std::string_view op);  // the library's ops and the custom ones

// An op of the user's own, written outside the library (examples/autodiff_tour.cpp shows one):
// record() accepts its name once it is registered here. It has no case in all_gradcheck_cases(),
// so checking its backward is its author's job (gradcheck()). Registering a name again is a
// no-op; an empty name, a name of the library's ops or "accumulate_grad" (the engine's leaf
// node) is an error, since the engine, graphs, profiles and anomaly messages tell ops apart by
// name. Thread-safe.
void register_custom_op(std::string_view name);
// The registry's own copy of `op`, valid for the life of the program (record() stores it in
// Node::op, so the caller's string may die); empty when op is not registered.
std::string_view registered_op_name(std::string_view op);

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
