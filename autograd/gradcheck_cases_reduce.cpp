// Gradcheck cases for the reductions: all dims, one dim, several dims, keepdim, and the three
// memory layouts the kernels take ((kept, reduced), (reduced, kept), and a permuted copy).
#include "autograd/gradcheck_cases.h"
#include "autograd/ops.h"

namespace megagrad {

namespace {
// Distinct values (a shuffled ramp plus noise) so max/min have a unique winner with a margin
// far larger than eps: central differences never flip the argmax.
Tensor distinct_input(const Shape& s, uint64_t seed) {
  int64_t n = numel_of(s);
  std::vector<double> v((size_t)n);
  for (int64_t i = 0; i < n; ++i) v[(size_t)i] = (double)((i * 7919 + (int64_t)seed) % n) / (double)n;
  Tensor t = Tensor::from_vector(v, s, DType::Float64);
  t.requires_grad_();
  return t;
}
}  // namespace

void add_reduce_cases(std::vector<GradcheckCase>& cases) {
  using V = const std::vector<Tensor>&;
  struct Red { const char* op; Tensor (*f)(const Tensor&, const std::vector<int64_t>&, bool); };
  auto var1 = [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return var(x, d, k, 1); };
  for (Red r : {Red{"sum", sum}, Red{"mean", mean}, Red{"max", max}, Red{"min", min}, Red{"var", +var1}}) {
    auto f = r.f;
    bool best = std::string(r.op) == "max" || std::string(r.op) == "min";
    auto in = [best](const Shape& s, uint64_t seed) { return best ? distinct_input(s, seed) : gc_input(s, seed); };
    cases.push_back({r.op, "all dims of (3,4)", [=] { return std::vector{in({3, 4}, 51)}; },
                     [f](V x) { return f(x[0], {}, false); }});
    cases.push_back({r.op, "last dim of (2,3,4), keepdim", [=] { return std::vector{in({2, 3, 4}, 52)}; },
                     [f](V x) { return f(x[0], {-1}, true); }});
    cases.push_back({r.op, "dim 0 of (5,3) (reduced dims outermost)", [=] { return std::vector{in({5, 3}, 53)}; },
                     [f](V x) { return f(x[0], {0}, false); }});
    cases.push_back({r.op, "dims {0,2} of (2,3,4) (needs a permuted copy)",
                     [=] { return std::vector{in({2, 3, 4}, 54)}; },
                     [f](V x) { return f(x[0], {0, 2}, false); }});
    cases.push_back({r.op, "dim 1 of a transposed (4,3)", [=] {
                       Tensor t = in({3, 4}, 55).detach().transpose(0, 1);
                       t.requires_grad_();
                       return std::vector{t};
                     },
                     [f](V x) { return f(x[0], {1}, false); }});
  }
}

}  // namespace megagrad
