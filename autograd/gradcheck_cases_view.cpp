// Gradcheck cases for views and copies (autograd/views.cpp). Views only move data around, so
// their gradients must be exact: the tolerance is the default 1e-6 of float64 central differences.
#include "autograd/gradcheck_cases.h"
#include "autograd/ops.h"

namespace megagrad {

void add_view_cases(std::vector<GradcheckCase>& cases) {
  using V = const std::vector<Tensor>&;
  // The multiply by a fixed ramp makes every output element's weight distinct, so a gradient
  // routed to the wrong element cannot pass.
  auto ramp = [](const Tensor& t) {
    return mul(t, Tensor::arange(1, (double)t.numel() + 1, 1, DType::Float64).reshape(t.shape()));
  };
  cases.push_back({"view", "(2,3,4) as (6,4)", [] { return std::vector{gc_input({2, 3, 4}, 1)}; },
                   [ramp](V in) { return ramp(in[0].view({6, 4})); }});
  cases.push_back({"view", "reshape of a transposed input (copy then view)",
                   [] { return std::vector{gc_input_transposed({4, 3}, 2)}; },
                   [ramp](V in) { return ramp(in[0].reshape({12})); }});
  cases.push_back({"transpose", "(3,4,2) dims 0,2", [] { return std::vector{gc_input({3, 4, 2}, 3)}; },
                   [ramp](V in) { return ramp(in[0].transpose(0, 2)); }});
  cases.push_back({"permute", "(2,3,4) -> (2,0,1)", [] { return std::vector{gc_input({2, 3, 4}, 4)}; },
                   [ramp](V in) { return ramp(in[0].permute({2, 0, 1})); }});
  cases.push_back({"narrow", "dim 1 [1,3) of a transposed input",
                   [] { return std::vector{gc_input_transposed({4, 5}, 5)}; },
                   [ramp](V in) { return ramp(in[0].narrow(1, 1, 2)); }});
  cases.push_back({"expand", "(3,1) -> (2,3,4)", [] { return std::vector{gc_input({3, 1}, 6)}; },
                   [ramp](V in) { return ramp(in[0].expand({2, 3, 4})); }});
  cases.push_back({"unsqueeze", "(3,4) at dim 1", [] { return std::vector{gc_input({3, 4}, 7)}; },
                   [ramp](V in) { return ramp(in[0].unsqueeze(1)); }});
  cases.push_back({"squeeze", "(3,1,4) at dim 1", [] { return std::vector{gc_input({3, 1, 4}, 8)}; },
                   [ramp](V in) { return ramp(in[0].squeeze(1)); }});
  cases.push_back({"contiguous", "of a transposed input",
                   [] { return std::vector{gc_input_transposed({3, 5}, 9)}; },
                   [ramp](V in) { return ramp(in[0].contiguous()); }});
  cases.push_back({"clone", "(4,3)", [] { return std::vector{gc_input({4, 3}, 10)}; },
                   [ramp](V in) { return ramp(in[0].clone()); }});
  // float64 -> float32 -> float64 rounds to float32 (relative step 6e-8). The function is linear,
  // so a large eps (1e-2) costs no truncation error and shrinks the rounding error of the
  // difference quotient to about 6e-8 / 1e-2 = 6e-6: tolerance 1e-4.
  cases.push_back({"to", "float64 -> float32 -> float64", [] { return std::vector{gc_input({3, 4}, 11)}; },
                   [ramp](V in) { return ramp(in[0].to(DType::Float32).to(DType::Float64)); }, 1e-4, 1e-2});
}

}  // namespace megagrad
