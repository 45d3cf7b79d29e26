#pragma once
#include <vector>
#include "autograd/registry.h"

namespace megagrad {
// Float64 gradchecks of the fused EMA: every parameter, uni- and bidirectional, truncation, padding.
void add_ema_cases(std::vector<GradcheckCase>& cases);
// Random EMA parameters with the official shapes (E = 2D if bidirectional), float64 leaves.
struct EmaParams;
EmaParams random_ema_params(int64_t D, int64_t N, bool bidirectional, uint64_t seed, DType dtype = DType::Float64);
}  // namespace megagrad
