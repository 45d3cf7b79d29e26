#pragma once
#include <vector>
#include "autograd/registry.h"

namespace megagrad {
// Float64 gradchecks of the fused cross-attention: each activation, both biases, L < S and L > S,
// source padding (and a source that is all padding), dropout, a transposed q.
void add_cross_attention_cases(std::vector<GradcheckCase>& cases);
}  // namespace megagrad
