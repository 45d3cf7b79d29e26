#include "mega/ema/ema_gradcheck.h"
#include "autograd/gradcheck_cases.h"
#include "mega/ema/ema.h"

namespace megagrad {

EmaParams random_ema_params(int64_t D, int64_t N, bool bidirectional, uint64_t seed, DType dt) {
  // Wider than the official init (delta, alpha ~ N(0, 0.2)) so that q spreads over (0, 1) and
  // both short and long memories are checked.
  int64_t E = bidirectional ? 2 * D : D;
  Generator g(seed);
  EmaParams p{normal({E, N, 1}, 0, 1.0, dt, &g), normal({E, N, 1}, 0, 1.0, dt, &g),
              normal({E, N, 1}, 0, 0.5, dt, &g), normal({E, N}, 0, 1.0, dt, &g), normal({D}, 0, 1.0, dt, &g)};
  for (Tensor* t : {&p.delta, &p.alpha, &p.beta, &p.gamma, &p.omega}) t->requires_grad_();
  return p;
}

namespace {
// How the (B, L, D) input x is laid out in memory.
enum class Layout {
  Contiguous,
  Permuted,    // stored (L, B, D), as the official code's time-major input: B and L strides swapped
  Narrowed,    // channels 2 .. D+1 of a (B, L, D + 5) tensor: offset 2, row stride D + 5
  Transposed,  // stored (B, D, L): channel stride L, which the op first copies to unit stride
};

// A float64 leaf x of shape (B, L, D) in the given layout (a view, like gc_input_transposed).
Tensor ema_input(Layout layout, int64_t B, int64_t L, int64_t D, uint64_t seed) {
  if (layout == Layout::Contiguous) return gc_input({B, L, D}, seed);
  Generator g(seed);
  Tensor x;
  if (layout == Layout::Permuted) x = uniform({L, B, D}, -1.0, 1.0, DType::Float64, &g).permute({1, 0, 2});
  if (layout == Layout::Narrowed) x = uniform({B, L, D + 5}, -1.0, 1.0, DType::Float64, &g).narrow(2, 2, D);
  if (layout == Layout::Transposed) x = uniform({B, D, L}, -1.0, 1.0, DType::Float64, &g).transpose(1, 2);
  x.requires_grad_();
  return x;
}
}  // namespace

void add_ema_cases(std::vector<GradcheckCase>& cases) {
  // The CPU kernels work on blocks of W = 8 doubles of channels (ema_cpu.h): D = 3 is a tail
  // only; D = 17 is two full blocks plus a tail of 1. Small B and L keep the checks quick.
  struct Cfg { const char* label; bool bidir; std::optional<int64_t> trunc; bool pad; int64_t D; Layout layout; };
  for (Cfg cfg : {Cfg{"unidirectional", false, {}, false, 3, Layout::Contiguous},
                  Cfg{"bidirectional", true, {}, false, 3, Layout::Contiguous},
                  Cfg{"unidirectional, truncation 3", false, 3, false, 3, Layout::Contiguous},
                  Cfg{"bidirectional, truncation 4, padding", true, 4, true, 3, Layout::Contiguous},
                  Cfg{"unidirectional, padding", false, {}, true, 3, Layout::Contiguous},
                  Cfg{"bidirectional, padding, D 17 (two vector blocks and a tail)", true, {}, true, 17,
                      Layout::Contiguous},
                  Cfg{"unidirectional, truncation 3, D 17", false, 3, false, 17, Layout::Contiguous},
                  Cfg{"bidirectional, D 17, x permuted from (L, B, D)", true, {}, false, 17, Layout::Permuted},
                  Cfg{"unidirectional, truncation 4, padding, D 17, x narrowed from (B, L, D + 5)", false, 4, true,
                      17, Layout::Narrowed},
                  Cfg{"bidirectional, D 9, x transposed from (B, D, L)", true, {}, false, 9, Layout::Transposed}}) {
    const int64_t B = 2, L = 7, D = cfg.D, N = 2;
    cases.push_back({"ema", cfg.label,
                     [=] {
                       EmaParams p = random_ema_params(D, N, cfg.bidir, 77);
                       return std::vector<Tensor>{ema_input(cfg.layout, B, L, D, 78), p.delta, p.alpha, p.beta,
                                                  p.gamma, p.omega};
                     },
                     [=](const std::vector<Tensor>& in) {
                       Tensor mask;
                       if (cfg.pad) {  // right padding: the second sequence has 3 pads
                         std::vector<double> m((size_t)(B * L), 0.0);
                         for (int64_t t = L - 3; t < L; ++t) m[(size_t)(L + t)] = 1.0;
                         mask = Tensor::from_vector(m, {B, L}, DType::Float64);
                       }
                       EmaOptions o{cfg.bidir, cfg.trunc};
                       return ema(in[0], mask, EmaParams{in[1], in[2], in[3], in[4], in[5]}, o);
                     }});
  }
}

}  // namespace megagrad
