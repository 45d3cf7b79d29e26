// Gradcheck cases for the index ops (autograd/ops_index.cpp). The ops are linear in their float
// inputs, so central differences are exact up to rounding: 1e-6 leaves a wide margin.
#include "autograd/gradcheck_cases.h"
#include "autograd/ops.h"

namespace megagrad {

namespace {
Tensor bools(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s, DType::Bool); }
}  // namespace

void add_index_cases(std::vector<GradcheckCase>& cases) {
  // ---- cat
  cases.push_back({"cat", "dim 0: (2,3) ++ (4,3)",
                   [] { return std::vector<Tensor>{gc_input({2, 3}, 501), gc_input({4, 3}, 502)}; },
                   [](const std::vector<Tensor>& in) { return cat({in[0], in[1]}, 0); }, 1e-6});
  cases.push_back({"cat", "dim 1, transposed middle input: (3,2) ++ (3,4)^T-view ++ (3,1)",
                   [] {
                     return std::vector<Tensor>{gc_input({3, 2}, 503), gc_input_transposed({3, 4}, 504),
                                                gc_input({3, 1}, 505)};
                   },
                   [](const std::vector<Tensor>& in) { return cat({in[0], in[1], in[2]}, 1); }, 1e-6});
  cases.push_back({"cat", "dim -1 of 3-dim, same input twice: (2,3,2) ++ (2,3,2)",
                   [] { return std::vector<Tensor>{gc_input({2, 3, 2}, 506)}; },
                   [](const std::vector<Tensor>& in) { return cat({in[0], in[0]}, -1); }, 1e-6});

  // ---- index_select
  cases.push_back({"index_select", "dim 0, repeated indices [2,0,2,2,3] of (4,3)",
                   [] { return std::vector<Tensor>{gc_input({4, 3}, 511)}; },
                   [](const std::vector<Tensor>& in) {
                     return index_select(in[0], 0, Tensor::from_vector(std::vector<int64_t>{2, 0, 2, 2, 3}, {5}));
                   }, 1e-6});
  cases.push_back({"index_select", "dim 1 of a transposed (3,4), repeated indices [3,3,1]",
                   [] { return std::vector<Tensor>{gc_input_transposed({3, 4}, 512)}; },
                   [](const std::vector<Tensor>& in) {
                     return index_select(in[0], 1, Tensor::from_vector(std::vector<int64_t>{3, 3, 1}, {3}));
                   }, 1e-6});

  // ---- gather
  cases.push_back({"gather", "dim 0: x (3,4), index (2,4) with repeats",
                   [] { return std::vector<Tensor>{gc_input({3, 4}, 521)}; },
                   [](const std::vector<Tensor>& in) {
                     Tensor idx = Tensor::from_vector(std::vector<int64_t>{0, 2, 2, 1, 0, 2, 1, 1}, {2, 4});
                     return gather(in[0], 0, idx);
                   }, 1e-6});
  cases.push_back({"gather", "dim 1: x (3,4), index (2,6) with repeats, smaller in dim 0",
                   [] { return std::vector<Tensor>{gc_input({3, 4}, 522)}; },
                   [](const std::vector<Tensor>& in) {
                     Tensor idx = Tensor::from_vector(
                         std::vector<int64_t>{3, 3, 0, 1, 3, 2, 0, 0, 0, 2, 1, 1}, {2, 6});
                     return gather(in[0], 1, idx);
                   }, 1e-6});
  cases.push_back({"gather", "dim 1 of a transposed (4,3), index (4,2)",
                   [] { return std::vector<Tensor>{gc_input_transposed({4, 3}, 523)}; },
                   [](const std::vector<Tensor>& in) {
                     Tensor idx = Tensor::from_vector(std::vector<int64_t>{2, 2, 0, 1, 1, 1, 2, 0}, {4, 2});
                     return gather(in[0], 1, idx);
                   }, 1e-6});

  // ---- where
  cases.push_back({"where", "broadcast: cond (3,1), a (3,4), b (4)",
                   [] { return std::vector<Tensor>{gc_input({3, 4}, 531), gc_input({4}, 532)}; },
                   [](const std::vector<Tensor>& in) { return where(bools({1, 0, 1}, {3, 1}), in[0], in[1]); },
                   1e-6});
  cases.push_back({"where", "cond (2,3) selects from a transposed (2,3) and b (2,1)",
                   [] { return std::vector<Tensor>{gc_input_transposed({2, 3}, 533), gc_input({2, 1}, 534)}; },
                   [](const std::vector<Tensor>& in) {
                     return where(bools({1, 0, 0, 1, 1, 0}, {2, 3}), in[0], in[1]);
                   }, 1e-6});

  // ---- masked_fill
  cases.push_back({"masked_fill", "x (3,4), broadcast mask (4)",
                   [] { return std::vector<Tensor>{gc_input({3, 4}, 541)}; },
                   [](const std::vector<Tensor>& in) { return masked_fill(in[0], bools({0, 1, 1, 0}, {4}), -2.5); },
                   1e-6});
  cases.push_back({"masked_fill", "transposed x (3,4), broadcast mask (3,1)",
                   [] { return std::vector<Tensor>{gc_input_transposed({3, 4}, 542)}; },
                   [](const std::vector<Tensor>& in) { return masked_fill(in[0], bools({1, 0, 1}, {3, 1}), 7.0); },
                   1e-6});
}

}  // namespace megagrad
