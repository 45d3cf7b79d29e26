// The fused EMA op: input checks, coefficient setup, the forward kernel, then the backward
// closure (the elementwise silu/omega part here, the recurrences in ema_cpu.h).
#include "mega/ema/ema.h"
#include <cmath>
#include "autograd/checks.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/dispatch.h"
#include "core/vec_math.h"
#include "mega/ema/ema_cpu.h"

namespace megagrad {

namespace {

struct Checked {
  int64_t B, L, D, E, N, K;
  int ndirs;
};

Checked check_ema(const Tensor& x, const Tensor& mask, const EmaParams& p, const EmaOptions& o) {
  constexpr std::string_view op = "ema";
  check_float(op, x);
  MG_CHECK(x.dim() == 3, op, "x must be (B, L, D), got {}", x.desc());
  Checked c;
  c.B = x.size(0), c.L = x.size(1), c.D = x.size(2);
  c.ndirs = o.bidirectional ? 2 : 1;
  c.E = c.D * c.ndirs;
  for (const Tensor* t : {&p.delta, &p.alpha, &p.beta, &p.gamma, &p.omega}) {
    check_defined(op, *t, "an EMA parameter");
    MG_CHECK(t->dtype() == x.dtype() && t->device() == x.device(), op,
             "parameter {} does not match x {} (dtype and device must agree)", t->desc(), x.desc());
  }
  MG_CHECK(p.gamma.dim() == 2 && p.gamma.size(0) == c.E, op,
           "gamma must be (E, N) with E = {} for D = {}{}, got {}", c.E, c.D,
           o.bidirectional ? " (bidirectional)" : "", p.gamma.desc());
  c.N = p.gamma.size(1);
  MG_CHECK(c.N >= 1, op, "N must be at least 1, got gamma {}", p.gamma.desc());
  for (const Tensor* t : {&p.delta, &p.alpha, &p.beta})
    MG_CHECK(t->shape() == (Shape{c.E, c.N, 1}), op, "delta/alpha/beta must be ({},{},1), got {}", c.E, c.N,
             t->desc());
  MG_CHECK(p.omega.shape() == Shape{c.D}, op, "omega must be ({}), got {}", c.D, p.omega.desc());
  if (mask.defined()) {
    MG_CHECK(mask.dtype() == x.dtype(), op, "padding_mask {} must have x's dtype ({})", mask.desc(),
             dtype_name(x.dtype()));
    MG_CHECK(mask.shape() == (Shape{c.B, c.L}), op, "padding_mask must be ({},{}), got {}", c.B, c.L,
             mask.desc());
  }
  if (o.truncation) MG_CHECK(*o.truncation >= 1, op, "truncation must be >= 1, got {}", *o.truncation);
  c.K = o.truncation ? std::min(*o.truncation, c.L) : c.L;
  return c;
}

// Per direction: q, a, c, Q laid out (N, Dp), from the official (E, N) parameters, in double.
template <typename T>
std::vector<ema_cpu::Coeffs<T>> make_coeffs(const EmaParams& p, const Checked& k, const ema_cpu::Dims& dims) {
  std::vector<double> delta = p.delta.to_vector(), alpha = p.alpha.to_vector(), beta = p.beta.to_vector(),
                      gamma = p.gamma.to_vector();
  const int64_t Dp = dims.Dp();
  const double scale = std::sqrt(1.0 / (double)k.N);
  std::vector<ema_cpu::Coeffs<T>> dirs((size_t)k.ndirs);
  for (int dir = 0; dir < k.ndirs; ++dir) {
    auto& cf = dirs[(size_t)dir];
    for (auto* v : {&cf.q, &cf.a, &cf.c, &cf.Q}) v->assign((size_t)(k.N * Dp), T(0));
    for (int64_t d = 0; d < k.D; ++d)
      for (int64_t n = 0; n < k.N; ++n) {
        size_t e = (size_t)((dir * k.D + d) * k.N + n), j = (size_t)(n * Dp + d);
        double pp = 1 / (1 + std::exp(-delta[e])), ap = 1 / (1 + std::exp(-alpha[e]));
        double q = 1 - pp * ap;
        cf.q[j] = (T)q;
        cf.a[j] = (T)(pp * beta[e]);
        cf.c[j] = (T)(gamma[e] * scale);
        cf.Q[j] = dims.truncated() ? (T)std::pow(q, (double)k.K) : T(0);
      }
  }
  return dirs;
}

template <typename T>
ema_cpu::Input<T> make_input(const Tensor& x, const Tensor& mask) {
  ema_cpu::Input<T> in{x.data_ptr<T>(), x.strides()[0], x.strides()[1], nullptr, 0, 0};
  if (mask.defined()) in.mask = mask.data_ptr<T>(), in.mb = mask.strides()[0], in.ml = mask.strides()[1];
  return in;
}

}  // namespace

Tensor ema(const Tensor& x_in, const Tensor& mask, const EmaParams& p, const EmaOptions& o) {
  Checked k = check_ema(x_in, mask, p, o);
  // The kernel reads channels with unit stride; B and L may have any strides.
  Tensor x = x_in.strides()[2] == 1 ? x_in : x_in.contiguous();
  ema_cpu::Dims dims{k.B, k.L, k.D, k.N, k.K};
  Tensor y = Tensor::empty({k.B, k.L, k.D}, x.dtype());
  Tensor out = Tensor::empty({k.B, k.L, k.D}, x.dtype());
  dispatch_float("ema", x.dtype(), [&]<typename T>() {
    auto dirs = make_coeffs<T>(p, k, dims);
    ema_cpu::forward<T>(make_input<T>(x, mask), dirs.data(), k.ndirs, dims, y.data_ptr<T>());
    // out = silu(y + omega x)
    const T* om = p.omega.contiguous().template data_ptr<T>();
    const T* yp = y.data_ptr<T>();
    T* op = out.data_ptr<T>();
    const T* xp = x.data_ptr<T>();
    parallel_for(k.B * k.L, std::max<int64_t>(1, kElementwiseGrain / k.D), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / k.L, t = r % k.L;
        const T* xr = xp + b * x.strides()[0] + t * x.strides()[1];
        for (int64_t d = 0; d < k.D; ++d) {
          T v = yp[r * k.D + d] + om[d] * xr[d];
          op[r * k.D + d] = v * sigmoid_fast(v);
        }
      }
    });
  });

  if (needs_grad({&x_in, &p.delta, &p.alpha, &p.beta, &p.gamma, &p.omega})) {
    bool need_x = wants_grad(x_in);
    bool need_params = wants_grad(p.delta) || wants_grad(p.alpha) || wants_grad(p.beta) ||
                       wants_grad(p.gamma) || wants_grad(p.omega);
    EmaParams saved{p.delta.detach(), p.alpha.detach(), p.beta.detach(), p.gamma.detach(), p.omega.detach()};
    record("ema", {x_in, p.delta, p.alpha, p.beta, p.gamma, p.omega}, out,
           [k, dims, need_x, need_params, saved, x = x.detach(), mask = mask.defined() ? mask.detach() : Tensor(),
            y](const Tensor& g_out) {
      std::vector<Tensor> grads(6);
      dispatch_float("ema", x.dtype(), [&]<typename T>() {
        // 1. Elementwise: gy = g_out * silu'(pre), pre = y + omega x; domega = sum gy x.
        Tensor gc = g_out.contiguous();
        Tensor gy = Tensor::empty({k.B, k.L, k.D}, x.dtype());
        const T* om = saved.omega.contiguous().template data_ptr<T>();
        const T *yp = y.data_ptr<T>(), *gp = gc.data_ptr<T>(), *xp = x.data_ptr<T>();
        T* gyp = gy.data_ptr<T>();
        std::vector<double> domega((size_t)k.D, 0.0);
        for (int64_t r = 0; r < k.B * k.L; ++r) {
          const T* xr = xp + (r / k.L) * x.strides()[0] + (r % k.L) * x.strides()[1];
          for (int64_t d = 0; d < k.D; ++d) {
            T v = yp[r * k.D + d] + om[d] * xr[d];
            T s = sigmoid_fast(v);
            T gv = gp[r * k.D + d] * s * (T(1) + v * (T(1) - s));
            gyp[r * k.D + d] = gv;
            domega[(size_t)d] += (double)(gv * xr[d]);
          }
        }
        // 2. The recurrences: dx~ by the reverse sweep, parameter sums by the forward sweep.
        auto dirs = make_coeffs<T>(saved, k, dims);
        Tensor dxt = need_x ? Tensor::empty({k.B, k.L, k.D}, x.dtype()) : Tensor();
        ema_cpu::ParamSums sums;
        ema_cpu::backward<T>(make_input<T>(x, mask), dirs.data(), k.ndirs, dims, gyp,
                             need_x ? dxt.data_ptr<T>() : nullptr, need_params ? &sums : nullptr);
        // 3. dx = (1 - mask) dx~ + omega gy.
        if (need_x) {
          Tensor dx = Tensor::empty({k.B, k.L, k.D}, x.dtype());
          T* dp = dx.data_ptr<T>();
          const T* dtp = dxt.data_ptr<T>();
          const T* mp = mask.defined() ? mask.data_ptr<T>() : nullptr;
          for (int64_t r = 0; r < k.B * k.L; ++r) {
            T keep = mp ? T(1) - mp[(r / k.L) * mask.strides()[0] + (r % k.L) * mask.strides()[1]] : T(1);
            for (int64_t d = 0; d < k.D; ++d) dp[r * k.D + d] = keep * dtp[r * k.D + d] + om[d] * gyp[r * k.D + d];
          }
          grads[0] = dx;
        }
        // 4. Chain the per-(e, n) sums to delta, alpha, beta, gamma (ema.md, "Chain").
        if (need_params) {
          std::vector<double> delta = saved.delta.to_vector(), alpha = saved.alpha.to_vector(),
                              beta = saved.beta.to_vector(), gamma = saved.gamma.to_vector();
          const int64_t E = k.E, N = k.N, Dp = dims.Dp();
          const double scale = std::sqrt(1.0 / (double)N);
          std::vector<double> gdelta((size_t)(E * N)), galpha((size_t)(E * N)), gbeta((size_t)(E * N)),
              ggamma((size_t)(E * N));
          for (int dir = 0; dir < k.ndirs; ++dir)
            for (int64_t d = 0; d < k.D; ++d)
              for (int64_t n = 0; n < N; ++n) {
                size_t e = (size_t)((dir * k.D + d) * N + n);
                double dc = 0, da = 0, dq = 0, dQ = 0;
                for (int64_t b = 0; b < k.B; ++b) {  // fixed order: thread-count independent
                  size_t j = (size_t)(((b * k.ndirs + dir) * N + n) * Dp + d);
                  dc += sums.dc[j], da += sums.da[j], dq += sums.dq[j], dQ += sums.dQ[j];
                }
                double pp = 1 / (1 + std::exp(-delta[e])), ap = 1 / (1 + std::exp(-alpha[e]));
                double q = 1 - pp * ap, c = gamma[e] * scale;
                da *= c;  // the kernel summed gy u; da = c sum gy u
                dq *= c;
                if (dims.truncated()) dq += c * dQ * (double)k.K * std::pow(q, (double)(k.K - 1));
                double dp = da * beta[e] - dq * ap, dap = -dq * pp;
                ggamma[e] = dc * scale;
                gbeta[e] = da * pp;
                gdelta[e] = dp * pp * (1 - pp);
                galpha[e] = dap * ap * (1 - ap);
              }
          DType dt = x.dtype();
          grads[1] = Tensor::from_vector(gdelta, {E, N, 1}, dt);
          grads[2] = Tensor::from_vector(galpha, {E, N, 1}, dt);
          grads[3] = Tensor::from_vector(gbeta, {E, N, 1}, dt);
          grads[4] = Tensor::from_vector(ggamma, {E, N}, dt);
          grads[5] = Tensor::from_vector(domega, {k.D}, dt);
        }
      });
      return grads;
    });
  }
  return out;
}

// ---------------------------------------------------------------- composed reference

Tensor ema_kernel_reference(const EmaParams& p, int64_t K) {
  const int64_t N = p.gamma.size(1);
  DType dt = p.gamma.dtype();
  Tensor pp = sigmoid(p.delta), ap = sigmoid(p.alpha);          // (E,N,1)
  Tensor q = add_scalar(neg(mul(pp, ap)), 1.0);                  // 1 - p a'
  Tensor a = mul(pp, p.beta);                                    // (E,N,1)
  Tensor c = mul_scalar(p.gamma, std::sqrt(1.0 / (double)N)).unsqueeze(2);  // (E,N,1)
  Tensor j = Tensor::arange(0, (double)K, 1, dt).reshape({1, 1, K});
  Tensor qj = exp(mul(j, log(q)));                               // q^j, (E,N,K)
  return sum(mul(mul(c, a), qj), {1});                           // (E,K)
}

Tensor ema_reference(const Tensor& x, const Tensor& mask, const EmaParams& p, const EmaOptions& o) {
  Checked k = check_ema(x, mask, p, o);
  DType dt = x.dtype();
  Tensor xt = mask.defined() ? mul(x, add_scalar(neg(mask), 1.0).unsqueeze(2)) : x;  // (B,L,D)
  Tensor kern = ema_kernel_reference(p, k.K);                                       // (E,K)
  // Toeplitz matrices T[d, t, s] = k[d, t - s] for 0 <= t - s < K (causal); the anti-causal half
  // uses k2[d, s - t]. Built by index_select of a zero-padded kernel: index K means "zero".
  Tensor kpad = cat({kern, Tensor::zeros({k.E, 1}, dt)}, 1);                       // (E,K+1)
  auto toeplitz = [&](const Tensor& kk, bool causal) {
    std::vector<int64_t> idx((size_t)(k.L * k.L));
    for (int64_t t = 0; t < k.L; ++t)
      for (int64_t s = 0; s < k.L; ++s) {
        int64_t lag = causal ? t - s : s - t;
        idx[(size_t)(t * k.L + s)] = lag >= 0 && lag < k.K ? lag : k.K;
      }
    return index_select(kk, 1, Tensor::from_vector(idx, {k.L * k.L})).reshape({kk.size(0), k.L, k.L});
  };
  // y[b, t, d] = sum_s T[d, t, s] x~[b, s, d]: batched over d as (D, L, L) @ (D, L, B).
  Tensor xd = xt.permute({2, 1, 0});                                                // (D,L,B)
  Tensor y = matmul(toeplitz(kpad.narrow(0, 0, k.D), true), xd);
  if (o.bidirectional) y = add(y, matmul(toeplitz(kpad.narrow(0, k.D, k.D), false), xd));
  y = y.permute({2, 1, 0});                                                          // (B,L,D)
  return silu(add(y, mul(x, p.omega)));
}

}  // namespace megagrad
