// The gradcheck cases, one file per op group (gradcheck_cases_*.cpp). Each add_*_cases appends
// GradcheckCases (see registry.h); all_gradcheck_cases() in mega/gradcheck_cases.cpp gathers
// them, and gradcheck_inputs.cpp makes their inputs (gc_input).
#pragma once
#include <vector>
#include "autograd/registry.h"
#include "core/rng.h"

namespace megagrad {

void add_view_cases(std::vector<GradcheckCase>& cases);
void add_elementwise_cases(std::vector<GradcheckCase>& cases);
void add_reduce_cases(std::vector<GradcheckCase>& cases);
void add_linalg_cases(std::vector<GradcheckCase>& cases);
void add_nn_cases(std::vector<GradcheckCase>& cases);
void add_index_cases(std::vector<GradcheckCase>& cases);

// A float64 leaf that requires grad, filled from a fixed seed: a case's inputs are the same on
// every run and every machine.
Tensor gc_input(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0);
// The same, then transposed (dims 0 and 1) so that the op sees a non-contiguous input.
Tensor gc_input_transposed(const Shape& shape_after_transpose, uint64_t seed);

}  // namespace megagrad
