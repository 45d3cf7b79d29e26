// Incremental EMA for decoding: the recurrence of ema.md, one token at a time, with the state
// carried between calls. Truncation keeps a ring of the last K inputs so that the modified input
// z[t] = x~[t] - q^K x~[t-K] is exact at every position (the official code ignores truncation
// here; spec section 7).
//
// Legend: B batch, m tokens in this call, D channels, N EMA dims, K truncation.
#include <cmath>
#include "autograd/checks.h"
#include "core/dispatch.h"
#include "mega/ema/ema.h"

namespace megagrad {

Tensor ema_step(const Tensor& x, const Tensor& mask, const EmaParams& p, const EmaOptions& o, EmaState& st) {
  constexpr std::string_view op = "ema_step";
  check_float(op, x);
  check_cpu_kernel(op, x, "x");  // incremental decoding runs on the cpu
  MG_CHECK(!o.bidirectional, op, "incremental decoding needs a unidirectional EMA");
  MG_CHECK(x.dim() == 3 && x.size(1) >= 1, op, "x must be (B, m, D) with m >= 1, got {}", x.desc());
  const int64_t B = x.size(0), m = x.size(1), D = x.size(2), N = p.gamma.size(1);
  MG_CHECK(p.gamma.shape() == (Shape{D, N}) && p.omega.shape() == Shape{D}, op,
           "parameters gamma {} / omega {} do not fit D = {}", p.gamma.desc(), p.omega.desc(), D);
  MG_CHECK(!mask.defined() || mask.shape() == (Shape{B, m}), op, "padding_mask must be ({},{}), got {}", B, m,
           mask.desc());
  const int64_t K = o.truncation.value_or(0);  // 0: no truncation
  if (!st.h.defined()) {
    st.h = Tensor::zeros({B, N, D}, DType::Float64);
    if (K > 0) st.ring = Tensor::zeros({B, K, D}, DType::Float64);
  }
  MG_CHECK(st.h.size(0) == B, op, "batch size {} differs from the state's {}", B, st.h.size(0));

  // Coefficients in double: q, a, c (D, N) and Q = q^K.
  std::vector<double> delta = p.delta.to_vector(), alpha = p.alpha.to_vector(), beta = p.beta.to_vector(),
                      gamma = p.gamma.to_vector(), omega = p.omega.to_vector();
  std::vector<double> q((size_t)(D * N)), a(q.size()), c(q.size()), Q(q.size());
  for (size_t e = 0; e < q.size(); ++e) {
    double pp = 1 / (1 + std::exp(-delta[e])), ap = 1 / (1 + std::exp(-alpha[e]));
    q[e] = 1 - pp * ap, a[e] = pp * beta[e], c[e] = gamma[e] * std::sqrt(1.0 / (double)N);
    Q[e] = K > 0 ? std::pow(q[e], (double)K) : 0.0;
  }
  std::vector<double> xv = x.to_vector(), mv = mask.defined() ? mask.to_vector() : std::vector<double>();
  double* h = st.h.data_ptr<double>();
  double* ring = K > 0 ? st.ring.data_ptr<double>() : nullptr;
  std::vector<double> out((size_t)(B * m * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < m; ++i) {
      const int64_t t = st.pos + i;
      const double keep = mv.empty() ? 1.0 : 1.0 - mv[(size_t)(b * m + i)];
      for (int64_t d = 0; d < D; ++d) {
        const double xr = xv[(size_t)((b * m + i) * D + d)], xt = xr * keep;
        double lag = 0;  // x~[t-K], from the ring slot that t overwrites
        if (K > 0) {
          double& slot = ring[(b * K + t % K) * D + d];
          lag = t >= K ? slot : 0.0;
          slot = xt;
        }
        double y = 0;
        for (int64_t n = 0; n < N; ++n) {
          size_t e = (size_t)(d * N + n);
          double& hn = h[(b * N + n) * D + d];
          hn = q[e] * hn + a[e] * (xt - Q[e] * lag);
          y += c[e] * hn;
        }
        double v = y + omega[(size_t)d] * xr;
        out[(size_t)((b * m + i) * D + d)] = v / (1 + std::exp(-v));
      }
    }
  st.pos += m;
  return Tensor::from_vector(out, {B, m, D}, x.dtype());
}

}  // namespace megagrad
