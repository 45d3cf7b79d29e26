#pragma once
#include <vector>
#include "autograd/registry.h"

namespace megagrad {
// Float64 gradchecks of the fused gate ops: input_gates (x, gamma, beta) and output_gate (hx, hp,
// u, residual), contiguous and as the strided views the layer passes.
void add_gates_cases(std::vector<GradcheckCase>& cases);
}  // namespace megagrad
