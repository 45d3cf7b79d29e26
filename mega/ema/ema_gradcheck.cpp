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

void add_ema_cases(std::vector<GradcheckCase>& cases) {
  struct Cfg { const char* label; bool bidir; std::optional<int64_t> trunc; bool pad; };
  for (Cfg cfg : {Cfg{"unidirectional", false, {}, false}, Cfg{"bidirectional", true, {}, false},
                  Cfg{"unidirectional, truncation 3", false, 3, false},
                  Cfg{"bidirectional, truncation 4, padding", true, 4, true},
                  Cfg{"unidirectional, padding", false, {}, true}}) {
    const int64_t B = 2, L = 7, D = 3, N = 2;
    cases.push_back({"ema", cfg.label,
                     [=] {
                       EmaParams p = random_ema_params(D, N, cfg.bidir, 77);
                       return std::vector<Tensor>{gc_input({B, L, D}, 78), p.delta, p.alpha, p.beta, p.gamma, p.omega};
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
