#pragma once
#include <vector>
#include "autograd/registry.h"

namespace megagrad {
// Float64 gradchecks of the fused attention: each activation, both biases, chunked, causal,
// padding, and a chunk whose keys are all padding.
void add_attention_cases(std::vector<GradcheckCase>& cases);
}  // namespace megagrad
