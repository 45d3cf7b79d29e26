// Gradcheck cases for the elementwise ops. Inputs are drawn inside each op's smooth domain
// (e.g. log and sqrt on [0.5, 2]; abs and relu away from their kink at 0, where central
// differences straddle the kink).
#include "autograd/gradcheck_cases.h"
#include "autograd/ops.h"

namespace megagrad {

namespace {
// Uniform in [lo, hi] with a random sign: |x| >= lo keeps x off a kink at 0.
Tensor away_from_zero(const Shape& s, uint64_t seed, double lo = 0.1, double hi = 1.0) {
  Generator g(seed);
  Tensor mag = uniform(s, lo, hi, DType::Float64, &g);
  Tensor sign = uniform(s, -1, 1, DType::Float64, &g);
  std::vector<double> m = mag.to_vector(), sg = sign.to_vector();
  for (size_t i = 0; i < m.size(); ++i) m[i] *= sg[i] < 0 ? -1 : 1;
  Tensor t = Tensor::from_vector(m, s, DType::Float64);
  t.requires_grad_();
  return t;
}
}  // namespace

void add_elementwise_cases(std::vector<GradcheckCase>& cases) {
  using V = const std::vector<Tensor>&;
  // Binary ops: same shape, broadcasting both ways, and a non-contiguous operand.
  struct Bin { const char* op; Tensor (*f)(const Tensor&, const Tensor&); };
  for (Bin b : {Bin{"add", add}, Bin{"sub", sub}, Bin{"mul", mul}, Bin{"div", div}}) {
    auto f = b.f;
    bool is_div = std::string(b.op) == "div";
    double lo = is_div ? 0.5 : -1.0;  // keep divisors away from 0
    cases.push_back({b.op, "same shape (3,4)",
                     [lo] { return std::vector{gc_input({3, 4}, 21), gc_input({3, 4}, 22, lo, 2.0)}; },
                     [f](V in) { return f(in[0], in[1]); }});
    cases.push_back({b.op, "broadcast (3,1) with (4)",
                     [lo] { return std::vector{gc_input({3, 1}, 23), gc_input({4}, 24, lo, 2.0)}; },
                     [f](V in) { return f(in[0], in[1]); }});
    cases.push_back({b.op, "broadcast (2,3,4) with (3,1), transposed first operand",
                     [lo] {
                       Tensor a = gc_input({4, 3, 2}, 25);
                       Tensor at = a.detach().permute({2, 1, 0});
                       at.requires_grad_();
                       return std::vector{at, gc_input({3, 1}, 26, lo, 2.0)};
                     },
                     [f](V in) { return f(in[0], in[1]); }});
  }
  cases.push_back({"add_scalar", "(3,4) + 2.5", [] { return std::vector{gc_input({3, 4}, 31)}; },
                   [](V in) { return add_scalar(in[0], 2.5); }});
  cases.push_back({"mul_scalar", "(3,4) * -1.5", [] { return std::vector{gc_input({3, 4}, 32)}; },
                   [](V in) { return mul_scalar(in[0], -1.5); }});
  cases.push_back({"pow", "x^3 on [-1,1]", [] { return std::vector{gc_input({3, 4}, 33)}; },
                   [](V in) { return pow(in[0], 3.0); }});
  cases.push_back({"pow", "x^-1.5 on [0.5,2]", [] { return std::vector{gc_input({3, 4}, 34, 0.5, 2.0)}; },
                   [](V in) { return pow(in[0], -1.5); }});

  struct Un { const char* op; Tensor (*f)(const Tensor&); double lo, hi; bool kink; };
  for (Un u : {Un{"neg", neg, -1, 1, false}, Un{"exp", exp, -1, 1, false},
               Un{"log", log, 0.5, 2, false}, Un{"sqrt", sqrt, 0.5, 2, false},
               Un{"rsqrt", rsqrt, 0.5, 2, false}, Un{"square", square, -1, 1, false},
               Un{"abs", abs, 0.1, 1, true}, Un{"tanh", tanh, -2, 2, false},
               Un{"sigmoid", sigmoid, -3, 3, false}, Un{"silu", silu, -3, 3, false},
               Un{"relu", relu, 0.1, 1, true}, Un{"gelu", gelu, -3, 3, false},
               Un{"erf", erf, -2, 2, false}}) {
    auto f = u.f;
    double lo = u.lo, hi = u.hi;
    bool kink = u.kink;
    cases.push_back({u.op, "(3,4)", [=] {
                       return std::vector{kink ? away_from_zero({3, 4}, 41, lo, hi) : gc_input({3, 4}, 41, lo, hi)};
                     },
                     [f](V in) { return f(in[0]); }});
    cases.push_back({u.op, "transposed (5,3)", [=] {
                       Tensor t = kink ? away_from_zero({3, 5}, 42, lo, hi) : gc_input({3, 5}, 42, lo, hi);
                       Tensor tt = t.detach().transpose(0, 1);
                       tt.requires_grad_();
                       return std::vector{tt};
                     },
                     [f](V in) { return f(in[0]); }});
  }
}

}  // namespace megagrad
