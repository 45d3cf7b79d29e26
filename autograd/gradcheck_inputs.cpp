// The inputs of the gradcheck cases: seeded float64 leaves (declared in gradcheck_cases.h). The
// cases themselves are in gradcheck_cases_*.cpp; mega/gradcheck_cases.cpp gathers them all.
#include "autograd/gradcheck_cases.h"
#include "autograd/grad_mode.h"

namespace megagrad {

Tensor gc_input(const Shape& shape, uint64_t seed, double lo, double hi) {
  Generator g(seed);
  Tensor t = uniform(shape, lo, hi, DType::Float64, &g);
  t.requires_grad_();
  return t;
}

Tensor gc_input_transposed(const Shape& s, uint64_t seed) {
  MG_CHECK(s.size() >= 2, "gc_input_transposed", "needs 2+ dims, got {}", shape_str(s));
  Shape before = s;
  std::swap(before[0], before[1]);
  Generator g(seed);
  Tensor t = uniform(before, -1.0, 1.0, DType::Float64, &g).transpose(0, 1);
  t.requires_grad_();
  return t;
}

}  // namespace megagrad
