#include "mega/cross_attention/cross_attention_gradcheck.h"
#include "autograd/gradcheck_cases.h"
#include "mega/cross_attention/cross_attention.h"

namespace megagrad {

void add_cross_attention_cases(std::vector<GradcheckCase>& cases) {
  using Act = AttentionActivation;
  // Inputs: q (B,L,Z), k (B,S,Z), v (B,S,H), then the bias parameters (the simple weight, or
  // rotary alpha and beta). pads: right padding of the source per batch element (empty: no mask).
  struct Cfg {
    const char* label;
    Act act;
    bool rotary;
    int64_t L, S;
    std::vector<int64_t> pads;
    double dropout;
    bool transposed_q;
  };
  const Cfg cfgs[] = {
      {"softmax, simple, L=5 < S=7", Act::Softmax, false, 5, 7, {}, 0.0, false},
      {"laplace, simple, L=5 < S=7", Act::Laplace, false, 5, 7, {}, 0.0, false},
      {"relu2, simple, L=5 < S=7", Act::Relu2, false, 5, 7, {}, 0.0, false},
      {"softmax, rotary, L=7 > S=4", Act::Softmax, true, 7, 4, {}, 0.0, false},
      {"laplace, rotary, L=7 > S=4", Act::Laplace, true, 7, 4, {}, 0.0, false},
      {"relu2, rotary, L=7 > S=4", Act::Relu2, true, 7, 4, {}, 0.0, false},
      {"softmax, simple, source padding {0,3}, L=6 > S=5", Act::Softmax, false, 6, 5, {0, 3}, 0.0, false},
      {"laplace, simple, source padding {2,0}, L=4 < S=6", Act::Laplace, false, 4, 6, {2, 0}, 0.0, false},
      {"relu2, rotary, source padding {1,4}, L=5 < S=7", Act::Relu2, true, 5, 7, {1, 4}, 0.0, false},
      {"softmax, rotary, source padding {0,2}, L=S=6", Act::Softmax, true, 6, 6, {0, 2}, 0.0, false},
      {"softmax, simple, a source all padding {0,5}", Act::Softmax, false, 4, 5, {0, 5}, 0.0, false},
      {"laplace, rotary, a source all padding {5,1}", Act::Laplace, true, 4, 5, {5, 1}, 0.0, false},
      {"softmax, simple, dropout 0.3, padding {0,2}", Act::Softmax, false, 5, 7, {0, 2}, 0.3, false},
      {"relu2, rotary, dropout 0.3", Act::Relu2, true, 6, 4, {}, 0.3, false},
      {"softmax, simple, transposed (non-contiguous) q", Act::Softmax, false, 5, 7, {}, 0.0, true},
  };
  const int64_t B = 2, Z = 4, H = 3, maxpos = 9;
  for (const Cfg& cfg : cfgs) {
    cases.push_back(
        {"cross_attention", cfg.label,
         [=] {
           const int64_t L = cfg.L, S = cfg.S;
           // laplace/relu2 divide q . k by the key count: a wider q reaches the laplace's slope
           // (around 0.7) and both sides of relu2's kink.
           const double qs = cfg.act == Act::Softmax ? 1.0 : 3.0;
           std::vector<Tensor> in{cfg.transposed_q ? gc_input_transposed({B, L, Z}, 81) : gc_input({B, L, Z}, 81, -qs, qs),
                                  gc_input({B, S, Z}, 82), gc_input({B, S, H}, 83)};
           if (cfg.rotary) {
             const double lo = cfg.act == Act::Relu2 ? 0.3 : cfg.act == Act::Laplace ? 0.1 : -1.0;
             const double hi = cfg.act == Act::Laplace ? 0.7 : 1.0;
             in.push_back(gc_input({1, Z}, 84, lo, hi));
             in.push_back(gc_input({1, Z}, 85, lo, hi));
           } else {
             in.push_back(gc_input({2 * maxpos - 1}, 86, cfg.act == Act::Softmax ? -1.0 : -0.2, 1.0));
           }
           return in;
         },
         [=](const std::vector<Tensor>& in) {
           const int64_t S = cfg.S;
           Tensor mask;
           if (!cfg.pads.empty()) {
             std::vector<double> m((size_t)(B * S), 0.0);
             for (int64_t b = 0; b < B; ++b)
               for (int64_t t = S - cfg.pads[(size_t)b]; t < S; ++t) m[(size_t)(b * S + t)] = 1.0;
             mask = Tensor::from_vector(m, {B, S}, DType::Float64);
           }
           RelPosBias bias;
           if (cfg.rotary) bias.kind = RelPosBias::Kind::Rotary, bias.alpha = in[3], bias.beta = in[4];
           else bias.weight = in[3];
           Generator gen(2025);  // a fresh generator per call: every evaluation draws the same mask
           CrossAttentionOptions o;
           o.activation = cfg.act, o.max_positions = maxpos;
           o.dropout = cfg.dropout, o.training = cfg.dropout > 0, o.generator = &gen;
           return cross_attention(in[0], in[1], in[2], mask, bias, o);
         },
         1e-6});
  }
}

}  // namespace megagrad
