#include "mega/gates/gates_gradcheck.h"
#include "autograd/gradcheck_cases.h"
#include "autograd/ops.h"
#include "mega/gates/gates.h"

namespace megagrad {

namespace {
// A float64 leaf (B, L, n): contiguous, or columns 2 .. n+1 of a (B, L, n + 5) tensor (a row
// stride that is not the width, as the layer's views of mx_proj's output), or stored (L, B, n).
enum class Layout { Contiguous, Narrowed, Permuted };
Tensor gates_input(Layout layout, int64_t B, int64_t L, int64_t n, uint64_t seed) {
  if (layout == Layout::Contiguous) return gc_input({B, L, n}, seed, -2.0, 2.0);
  Generator g(seed);
  Tensor x = layout == Layout::Narrowed
                 ? uniform({B, L, n + 5}, -2.0, 2.0, DType::Float64, &g).narrow(2, 2, n)
                 : uniform({L, B, n}, -2.0, 2.0, DType::Float64, &g).permute({1, 0, 2});
  x.requires_grad_();
  return x;
}
}  // namespace

void add_gates_cases(std::vector<GradcheckCase>& cases) {
  const int64_t B = 2, L = 3, D = 3, Z = 2, H = 4;
  // f is the four gates side by side, so that every output's gradient reaches the op.
  // The lambdas capture a copy of each layout: clang before 16 cannot capture a structured binding.
  for (auto [label, layout_] : {std::pair{"contiguous", Layout::Contiguous},
                                std::pair{"x narrowed from (B, L, D+Z+H+5)", Layout::Narrowed},
                                std::pair{"x permuted from (L, B, D+Z+H)", Layout::Permuted}}) {
    const Layout layout = layout_;
    cases.push_back({"input_gates", label,
                     [=] {
                       return std::vector<Tensor>{gates_input(layout, B, L, D + Z + H, 31), gc_input({2, Z}, 32),
                                                  gc_input({2, Z}, 33)};
                     },
                     [=](const std::vector<Tensor>& in) {
                       InputGates g = input_gates(in[0], in[1], in[2], D);
                       return cat({g.u, g.r, g.q, g.k}, -1);
                     }});
  }
  for (auto [label, layout_] : {std::pair{"contiguous", Layout::Contiguous},
                                std::pair{"hx and u narrowed, residual permuted", Layout::Narrowed}}) {
    const Layout layout = layout_;
    cases.push_back({"output_gate", label,
                     [=] {
                       const Layout other = layout == Layout::Narrowed ? Layout::Permuted : Layout::Contiguous;
                       return std::vector<Tensor>{gates_input(layout, B, L, D, 41), gates_input(Layout::Contiguous, B, L, D, 42),
                                                  gates_input(layout, B, L, D, 43), gates_input(other, B, L, D, 44)};
                     },
                     [](const std::vector<Tensor>& in) { return output_gate(in[0], in[1], in[2], in[3]); }});
  }
}

}  // namespace megagrad
