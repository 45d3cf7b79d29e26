// Gradcheck cases for the neural-network ops. Integer inputs (targets, indices) and generators
// are built inside f: gradcheck perturbs only the float64 leaves.
#include "autograd/gradcheck_cases.h"
#include "autograd/ops.h"

namespace megagrad {

namespace {
using In = std::vector<Tensor>;
}  // namespace

void add_nn_cases(std::vector<GradcheckCase>& cases) {
  // ---- softmax, log_softmax ----
  for (const char* op : {"softmax", "log_softmax"}) {
    auto sm = [op](int64_t dim) {
      return [op, dim](const In& in) {
        return std::string_view(op) == "softmax" ? softmax(in[0], dim) : log_softmax(in[0], dim);
      };
    };
    std::string o = op;
    cases.push_back({o, "last dim of (3,5)", [] { return In{gc_input({3, 5}, 101, -3, 3)}; }, sm(-1), 1e-6});
    cases.push_back({o, "dim 0 of (4,3)", [] { return In{gc_input({4, 3}, 102, -3, 3)}; }, sm(0), 1e-6});
    cases.push_back({o, "middle dim of (2,3,4)", [] { return In{gc_input({2, 3, 4}, 103, -3, 3)}; }, sm(1), 1e-6});
    cases.push_back({o, "last dim of a transposed (4,3)", [] { return In{gc_input_transposed({4, 3}, 104)}; }, sm(-1), 1e-6});
  }

  // ---- cross_entropy: logits (4,5), targets fixed inside f ----
  auto ce = [](std::vector<int64_t> t, int64_t ignore, double eps) {
    return [t, ignore, eps](const In& in) {
      return cross_entropy(in[0], Tensor::from_vector(t, {(int64_t)t.size()}), ignore, eps);
    };
  };
  cases.push_back({"cross_entropy", "plain (4,5)", [] { return In{gc_input({4, 5}, 111, -2, 2)}; },
                   ce({0, 4, 2, 2}, -100, 0.0), 1e-6});
  cases.push_back({"cross_entropy", "ignore_index -1 on two rows", [] { return In{gc_input({4, 5}, 112, -2, 2)}; },
                   ce({-1, 3, -1, 1}, -1, 0.0), 1e-6});
  cases.push_back({"cross_entropy", "label smoothing 0.2", [] { return In{gc_input({4, 5}, 113, -2, 2)}; },
                   ce({1, 0, 4, 3}, -100, 0.2), 1e-6});
  cases.push_back({"cross_entropy", "ignore_index 2 with label smoothing 0.1",
                   [] { return In{gc_input({4, 5}, 114, -2, 2)}; }, ce({2, 0, 2, 4}, 2, 0.1), 1e-6});
  cases.push_back({"cross_entropy", "transposed logits", [] { return In{gc_input_transposed({4, 5}, 115)}; },
                   ce({1, 1, 0, 3}, -100, 0.0), 1e-6});

  // ---- layer_norm over the last dim ----
  auto ln = [](const In& in) {
    return layer_norm(in[0], in.size() > 1 ? in[1] : Tensor(), in.size() > 2 ? in[2] : Tensor(), 1e-5);
  };
  cases.push_back({"layer_norm", "(3,6) with weight and bias",
                   [] { return In{gc_input({3, 6}, 121), gc_input({6}, 122), gc_input({6}, 123)}; }, ln, 1e-6});
  cases.push_back({"layer_norm", "(3,6) without affine", [] { return In{gc_input({3, 6}, 124)}; }, ln, 1e-6});
  cases.push_back({"layer_norm", "(2,3,5) weight only",
                   [] { return In{gc_input({2, 3, 5}, 125), gc_input({5}, 126)}; }, ln, 1e-6});
  cases.push_back({"layer_norm", "bias only", [] { return In{gc_input({4, 5}, 127), Tensor(), gc_input({5}, 128)}; },
                   ln, 1e-6});
  cases.push_back({"layer_norm", "transposed input (5,4)",
                   [] { return In{gc_input_transposed({5, 4}, 129), gc_input({4}, 130), gc_input({4}, 131)}; }, ln, 1e-6});

  // ---- embedding: repeated indices sum their gradients into one row ----
  cases.push_back({"embedding", "(6,3) table, (2,4) indices with repeats", [] { return In{gc_input({6, 3}, 141)}; },
                   [](const In& in) {
                     return embedding(in[0], Tensor::from_vector(std::vector<int64_t>{1, 5, 1, 0, 5, 5, 2, 1}, {2, 4}));
                   },
                   1e-6});
  cases.push_back({"embedding", "transposed table", [] { return In{gc_input_transposed({5, 3}, 142)}; },
                   [](const In& in) { return embedding(in[0], Tensor::from_vector(std::vector<int64_t>{4, 0, 4}, {3})); },
                   1e-6});

  // ---- dropout: a fresh Generator(seed) per call, so every evaluation uses the same mask ----
  cases.push_back({"dropout", "p=0.4, fixed seed", [] { return In{gc_input({4, 6}, 151)}; },
                   [](const In& in) {
                     Generator g(77);
                     return dropout(in[0], 0.4, true, &g);
                   },
                   1e-6});
  cases.push_back({"dropout", "transposed input, p=0.5", [] { return In{gc_input_transposed({5, 3}, 152)}; },
                   [](const In& in) {
                     Generator g(78);
                     return dropout(in[0], 0.5, true, &g);
                   },
                   1e-6});
}

}  // namespace megagrad
