// Gradcheck cases for matmul and linear: plain, batched, broadcast batches, and operands that
// BLAS reads transposed in place (gc_input_transposed) or that must be copied first (a slice
// with both strides > 1).
#include <algorithm>
#include "autograd/gradcheck_cases.h"
#include "autograd/ops.h"

namespace megagrad {

namespace {
using In = std::vector<Tensor>;

// A float64 leaf whose last dim takes every other element of a wider buffer: no unit stride,
// so BLAS cannot read it in place.
Tensor gc_input_strided(const Shape& shape, uint64_t seed) {
  Shape pairs(shape.size() + 1, 2);
  std::copy(shape.begin(), shape.end(), pairs.begin());
  Generator g(seed);
  Tensor t = uniform(pairs, -1.0, 1.0, DType::Float64, &g).select(-1, 0);
  return t.requires_grad_();
}
}  // namespace

void add_linalg_cases(std::vector<GradcheckCase>& cases) {
  auto mm = [](const In& in) { return matmul(in[0], in[1]); };
  // ---- matmul ----
  cases.push_back({"matmul", "2D (3,4)@(4,5)",
                   [] { return In{gc_input({3, 4}, 1), gc_input({4, 5}, 2)}; }, mm, 1e-6});
  cases.push_back({"matmul", "2D, left operand transposed (stride[0]==1: BLAS Trans)",
                   [] { return In{gc_input_transposed({3, 4}, 3), gc_input({4, 5}, 4)}; }, mm, 1e-6});
  cases.push_back({"matmul", "2D, both operands transposed",
                   [] { return In{gc_input_transposed({3, 4}, 5), gc_input_transposed({4, 2}, 6)}; }, mm, 1e-6});
  cases.push_back({"matmul", "2D, right operand with column stride 2 (copied for BLAS)",
                   [] { return In{gc_input({3, 4}, 7), gc_input_strided({4, 3}, 8)}; }, mm, 1e-6});
  cases.push_back({"matmul", "batched (2,3,4)@(2,4,5)",
                   [] { return In{gc_input({2, 3, 4}, 9), gc_input({2, 4, 5}, 10)}; }, mm, 1e-6});
  cases.push_back({"matmul", "batched @ shared 2D (2,3,4)@(4,5)",
                   [] { return In{gc_input({2, 3, 4}, 11), gc_input({4, 5}, 12)}; }, mm, 1e-6});
  cases.push_back({"matmul", "shared 2D @ batched (3,4)@(2,4,5)",
                   [] { return In{gc_input({3, 4}, 13), gc_input({2, 4, 5}, 14)}; }, mm, 1e-6});
  cases.push_back({"matmul", "batch broadcast (2,1,3,4)@(3,4,2)",
                   [] { return In{gc_input({2, 1, 3, 4}, 15), gc_input({3, 4, 2}, 16)}; }, mm, 1e-6});
  cases.push_back({"matmul", "batched, batch and row dims swapped (3,2,4)^T01 @ (2,4,5)",
                   [] { return In{gc_input_transposed({2, 3, 4}, 17), gc_input({2, 4, 5}, 18)}; }, mm, 1e-6});
  cases.push_back({"matmul", "batched, last two dims transposed (2,4,3)^T @ (2,4,5)",
                   [] {
                     Tensor a = gc_input({2, 4, 3}, 19);
                     return In{a, gc_input({2, 4, 5}, 20)};
                   },
                   [](const In& in) { return matmul(in[0].transpose(1, 2), in[1]); }, 1e-6});

  // ---- linear ----
  auto lin = [](const In& in) { return linear(in[0], in[1], in.size() > 2 ? in[2] : Tensor()); };
  cases.push_back({"linear", "2D with bias",
                   [] { return In{gc_input({4, 3}, 21), gc_input({5, 3}, 22), gc_input({5}, 23)}; }, lin, 1e-6});
  cases.push_back({"linear", "2D without bias",
                   [] { return In{gc_input({4, 3}, 24), gc_input({5, 3}, 25)}; }, lin, 1e-6});
  cases.push_back({"linear", "3D input (2,3,4) with bias",
                   [] { return In{gc_input({2, 3, 4}, 26), gc_input({5, 4}, 27), gc_input({5}, 28)}; }, lin, 1e-6});
  cases.push_back({"linear", "1D input (4)",
                   [] { return In{gc_input({4}, 29), gc_input({3, 4}, 30), gc_input({3}, 31)}; }, lin, 1e-6});
  cases.push_back({"linear", "transposed input and weight",
                   [] { return In{gc_input_transposed({4, 3}, 32), gc_input_transposed({5, 3}, 33), gc_input({5}, 34)}; },
                   lin, 1e-6});
  cases.push_back({"linear", "3D input, batch and row dims swapped",
                   [] { return In{gc_input_transposed({3, 2, 4}, 35), gc_input({2, 4}, 36)}; }, lin, 1e-6});
}

}  // namespace megagrad
