#include "mega/attention/attention_gradcheck.h"
#include "autograd/gradcheck_cases.h"
#include "mega/attention/attention.h"

namespace megagrad {

void add_attention_cases(std::vector<GradcheckCase>& cases) {
  using Act = AttentionActivation;
  // Inputs: q, k (B,L,Z), v (B,L,H), then the bias parameters (simple weight, or rotary alpha
  // and beta). Padding is right padding: the second sequence has `pad` pads; with chunk 4 and 5
  // pads its last chunk is all padding (softmax must then mask nothing there).
  struct Cfg {
    const char* label;
    Act act;
    bool rotary;
    int64_t chunk;
    bool causal;
    int64_t pad;
    double dropout;
    bool transposed_q;
  };
  const Cfg cfgs[] = {
      {"softmax, simple, one chunk", Act::Softmax, false, -1, false, 0, 0.0, false},
      {"laplace, simple, one chunk", Act::Laplace, false, -1, false, 0, 0.0, false},
      {"relu2, simple, one chunk", Act::Relu2, false, -1, false, 0, 0.0, false},
      {"softmax, rotary, chunk 4", Act::Softmax, true, 4, false, 0, 0.0, false},
      {"laplace, rotary, chunk 4", Act::Laplace, true, 4, false, 0, 0.0, false},
      {"relu2, rotary, one chunk", Act::Relu2, true, -1, false, 0, 0.0, false},
      {"softmax, simple, causal", Act::Softmax, false, -1, true, 0, 0.0, false},
      {"laplace, rotary, causal, chunk 4", Act::Laplace, true, 4, true, 0, 0.0, false},
      {"softmax, simple, padding 3", Act::Softmax, false, -1, false, 3, 0.0, false},
      {"laplace, simple, padding 3", Act::Laplace, false, -1, false, 3, 0.0, false},
      {"softmax, simple, chunk 4, padding 5 (an all-padding chunk)", Act::Softmax, false, 4, false, 5, 0.0, false},
      {"relu2, rotary, chunk 4, padding 5 (an all-padding chunk)", Act::Relu2, true, 4, false, 5, 0.0, false},
      {"softmax, rotary, chunk 4, causal, padding 5", Act::Softmax, true, 4, true, 5, 0.0, false},
      {"relu2, simple, causal, padding 3", Act::Relu2, false, -1, true, 3, 0.0, false},
      {"softmax, simple, chunk 4, dropout 0.3", Act::Softmax, false, 4, false, 0, 0.3, false},
      {"laplace, rotary, dropout 0.3, padding 3", Act::Laplace, true, -1, false, 3, 0.3, false},
      {"softmax, simple, transposed (non-contiguous) q", Act::Softmax, false, -1, false, 0, 0.0, true},
  };
  const int64_t B = 2, L = 8, Z = 4, H = 3, maxpos = 10;
  for (const Cfg& cfg : cfgs) {
    cases.push_back(
        {"attention", cfg.label,
         [=] {
           std::vector<Tensor> in{cfg.transposed_q ? gc_input_transposed({B, L, Z}, 91) : gc_input({B, L, Z}, 91),
                                  gc_input({B, L, Z}, 92), gc_input({B, L, H}, 93)};
           if (cfg.rotary) {
             // laplace/relu2: alpha, beta of one sign make the bias near the diagonal positive,
             // so that the scores reach the laplace's slope (around 0.7) and pass the relu (with
             // these seeds, [-1, 1] gives all weights ~0 and all gradients ~1e-8: no check).
             const double lo = cfg.act == Act::Relu2 ? 0.3 : cfg.act == Act::Laplace ? 0.1 : -1.0;
             const double hi = cfg.act == Act::Laplace ? 0.7 : 1.0;
             in.push_back(gc_input({1, Z}, 94, lo, hi));
             in.push_back(gc_input({1, Z}, 95, lo, hi));
           } else {
             int64_t M = cfg.chunk > 0 ? cfg.chunk : maxpos;
             in.push_back(gc_input({2 * M - 1}, 96));
           }
           return in;
         },
         [=](const std::vector<Tensor>& in) {
           Tensor mask;
           if (cfg.pad > 0) {
             std::vector<double> m((size_t)(B * L), 0.0);
             for (int64_t t = L - cfg.pad; t < L; ++t) m[(size_t)(L + t)] = 1.0;
             mask = Tensor::from_vector(m, {B, L}, DType::Float64);
           }
           RelPosBias bias;
           if (cfg.rotary) bias.kind = RelPosBias::Kind::Rotary, bias.alpha = in[3], bias.beta = in[4];
           else bias.weight = in[3];
           // A fresh generator per call: every evaluation draws the same dropout mask.
           Generator gen(2024);
           AttentionOptions o;
           o.activation = cfg.act, o.chunk_size = cfg.chunk, o.causal = cfg.causal, o.max_positions = maxpos;
           o.dropout = cfg.dropout, o.training = cfg.dropout > 0, o.generator = &gen;
           return attention(in[0], in[1], in[2], mask, bias, o);
         },
         1e-6});
  }
}

}  // namespace megagrad
