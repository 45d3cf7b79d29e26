// The fused EMA op, once for both devices: input checks, coefficient setup, the forward kernel,
// then the backward closure (the elementwise silu/omega part here, the recurrences in ema_cpu.h
// or ema_cuda.cu, which take the same argument structs, ema_types.h).
#include "mega/ema/ema.h"
#include <array>
#include <cmath>
#include <utility>
#include "autograd/checks.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/dispatch.h"
#include "core/vec_math.h"
#include "mega/ema/ema_coeffs.h"
#include "mega/ema/ema_cpu.h"
#if MEGAGRAD_HAS_CUDA
#include "backends/cuda/stream.h"
#include "mega/ema/ema_cuda.h"
#endif

namespace megagrad {

namespace {

EmaShape check_ema(const Tensor& x, const Tensor& mask, const EmaParams& p, const EmaOptions& o) {
  constexpr std::string_view op = "ema";
  check_float(op, x);
  MG_CHECK(x.dim() == 3, op, "x must be (B, L, D), got {}", x.desc());
  EmaShape s;
  s.B = x.size(0), s.L = x.size(1), s.D = x.size(2);
  s.ndirs = o.bidirectional ? 2 : 1;
  for (const Tensor* t : {&p.delta, &p.alpha, &p.beta, &p.gamma, &p.omega}) {
    check_defined(op, *t, "an EMA parameter");
    MG_CHECK(t->dtype() == x.dtype() && t->device() == x.device(), op,
             "parameter {} does not match x {} (dtype and device must agree)", t->desc(), x.desc());
  }
  MG_CHECK(p.gamma.dim() == 2 && p.gamma.size(0) == s.E(), op,
           "gamma must be (E, N) with E = {} for D = {}{}, got {}", s.E(), s.D,
           o.bidirectional ? " (bidirectional)" : "", p.gamma.desc());
  s.N = p.gamma.size(1);
  MG_CHECK(s.N >= 1, op, "N must be at least 1, got gamma {}", p.gamma.desc());
  for (const Tensor* t : {&p.delta, &p.alpha, &p.beta})
    MG_CHECK(t->shape() == (Shape{s.E(), s.N, 1}), op, "delta/alpha/beta must be ({},{},1), got {}", s.E(), s.N,
             t->desc());
  MG_CHECK(p.omega.shape() == Shape{s.D}, op, "omega must be ({}), got {}", s.D, p.omega.desc());
  if (mask.defined()) {
    MG_CHECK(mask.dtype() == x.dtype() && mask.device() == x.device(), op,
             "padding_mask {} must have x's dtype and device ({})", mask.desc(), x.desc());
    MG_CHECK(mask.shape() == (Shape{s.B, s.L}), op, "padding_mask must be ({},{}), got {}", s.B, s.L,
             mask.desc());
  }
  if (o.truncation) MG_CHECK(*o.truncation >= 1, op, "truncation must be >= 1, got {}", *o.truncation);
  s.kernel_len = o.truncation ? std::min(*o.truncation, s.L) : s.L;
  return s;
}

// Per direction q, a, c, Q laid out (N, Dp), from the official (E, N) parameters in double
// (ema_coeffs.h), as one tensor (R, 4, N * Dp) of x's dtype on the parameters' device: on the host
// for CPU tensors, by a kernel on the device for GPU tensors (no round trip).
Tensor make_coeffs(const EmaParams& p, const EmaShape& s) {
  const int64_t Dp = s.Dp(), NDp = s.N * Dp;
  const double scale = std::sqrt(1.0 / (double)s.N);
  if (!p.gamma.device().is_cpu()) {
#if MEGAGRAD_HAS_CUDA
    Tensor all = Tensor::empty({s.ndirs, 4, NDp}, p.gamma.dtype(), p.gamma.device());  // every entry written
    Tensor delta = p.delta.detach().contiguous(), alpha = p.alpha.detach().contiguous(),
           beta = p.beta.detach().contiguous(), gamma = p.gamma.detach().contiguous();
    dispatch_float("ema", all.dtype(), [&]<typename T>() {
      ema_cuda::make_coeffs<T>(delta.device_data_ptr<T>(), alpha.device_data_ptr<T>(), beta.device_data_ptr<T>(),
                               gamma.device_data_ptr<T>(), s, scale, all.device_data_ptr<T>(),
                               cuda_stream(all.device().index));
    });
    return all;
#endif
  }
  std::vector<double> delta = p.delta.to_vector(), alpha = p.alpha.to_vector(), beta = p.beta.to_vector(),
                      gamma = p.gamma.to_vector();
  Tensor all = Tensor::zeros({s.ndirs, 4, NDp}, p.gamma.dtype());
  dispatch_float("ema", all.dtype(), [&]<typename T>() {
    for (int dir = 0; dir < s.ndirs; ++dir) {
      T* q_ = all.data_ptr<T>() + dir * 4 * NDp;
      T *a_ = q_ + NDp, *c_ = q_ + 2 * NDp, *Q_ = q_ + 3 * NDp;
      for (int64_t d = 0; d < s.D; ++d)
        for (int64_t n = 0; n < s.N; ++n) {
          size_t e = (size_t)((dir * s.D + d) * s.N + n), j = (size_t)(n * Dp + d);
          const EmaCoeffValue v = ema_coeff(delta[e], alpha[e], beta[e], gamma[e], scale, s.truncated(), s.kernel_len);
          q_[j] = (T)v.q;
          a_[j] = (T)v.a;
          c_[j] = (T)v.c;
          Q_[j] = (T)v.Q;
        }
    }
  });
  return all;
}

// Pointers on the tensors' device (host or device alike) to what the kernels take.
template <typename T>
std::vector<EmaCoeffs<T>> coeff_pointers(const Tensor& c) {
  const int64_t ndirs = c.size(0), NDp = c.size(2);
  const T* base = c.device_data_ptr<T>();
  std::vector<EmaCoeffs<T>> out;
  for (int64_t d = 0; d < ndirs; ++d) {
    const T* q = base + d * 4 * NDp;
    out.push_back({q, q + NDp, q + 2 * NDp, q + 3 * NDp});
  }
  return out;
}

template <typename T>
EmaInput<T> make_input(const Tensor& x, const Tensor& mask) {
  EmaInput<T> in{x.device_data_ptr<T>(), x.strides()[0], x.strides()[1], nullptr, 0, 0};
  if (mask.defined()) in.mask = mask.device_data_ptr<T>(), in.mb = mask.strides()[0], in.ml = mask.strides()[1];
  return in;
}

#if MEGAGRAD_HAS_CUDA
// Device scratch of at least `bytes`, from the caching allocator.
Tensor device_workspace(size_t bytes, Device dev) {
  return Tensor::empty({(int64_t)((bytes + 7) / 8)}, DType::Float64, dev);
}
#endif

// The scan and the epilogue: y = EMA(x~) and out = silu(y + omega x), on x's device (CUDA fuses
// the epilogue into the scan).
template <typename T>
void run_forward(const EmaShape& s, const Tensor& x, const Tensor& mask, const Tensor& coeffs, const Tensor& omega,
                 Tensor& y, Tensor& out) {
  const auto dirs = coeff_pointers<T>(coeffs);
  const EmaInput<T> in = make_input<T>(x, mask);
  if (!x.device().is_cpu()) {
#if MEGAGRAD_HAS_CUDA
    const size_t bytes = ema_cuda::forward_workspace_bytes<T>(s);
    Tensor ws = device_workspace(bytes, x.device());
    ema_cuda::forward<T>(in, dirs.data(), s, y.device_data_ptr<T>(), omega.device_data_ptr<T>(),
                         out.device_data_ptr<T>(), ws.raw_device_data(), bytes, cuda_stream(x.device().index));
#endif
    return;
  }
  ema_cpu::forward<T>(in, dirs.data(), s, y.data_ptr<T>());
  const T* om = omega.data_ptr<T>();
  const T* yp = y.data_ptr<T>();
  T* op = out.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  parallel_for(s.B * s.L, std::max<int64_t>(1, kElementwiseGrain / s.D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / s.L, t = r % s.L;
      const T* xr = xp + b * x.strides()[0] + t * x.strides()[1];
      for (int64_t d = 0; d < s.D; ++d) {
        T v = yp[r * s.D + d] + om[d] * xr[d];
        op[r * s.D + d] = v * sigmoid_fast(v);
      }
    }
  });
}

// The epilogue's backward: gy = g_out * silu'(pre), pre = y + omega x, (B, L, D) contiguous; and
// domega = sum_{b,t} gy x (computed only if want_domega on a CUDA device; always on the CPU, where
// it comes with the loop).
template <typename T>
std::pair<Tensor, Tensor> silu_backward(const EmaShape& s, const Tensor& g_out, const Tensor& x, const Tensor& y,
                                        const Tensor& omega, bool want_domega) {
  if (!x.device().is_cpu()) {  // ops on the device
    Tensor pre = add(y, mul(x, omega));
    Tensor sg = sigmoid(pre);
    Tensor gy = mul(mul(g_out, sg), add_scalar(mul(pre, add_scalar(neg(sg), 1.0)), 1.0)).contiguous();
    return {gy, want_domega ? sum(mul(gy, x), {0, 1}) : Tensor()};
  }
  Tensor gc = g_out.contiguous();
  Tensor gy = Tensor::empty({s.B, s.L, s.D}, x.dtype());
  const T* om = omega.data_ptr<T>();
  const T *yp = y.data_ptr<T>(), *gp = gc.data_ptr<T>(), *xp = x.data_ptr<T>();
  T* gyp = gy.data_ptr<T>();
  std::vector<double> domega((size_t)s.D, 0.0);
  // gy row by row on the threads; domega in fixed blocks of rows (thread-count independent)
  blocked_row_sums(s.B * s.L, s.D, kRowSumBlock, std::max<int64_t>(1, kElementwiseGrain / s.D), domega.data(),
                   [&](int64_t r, double* acc) {
    const T* xr = xp + (r / s.L) * x.strides()[0] + (r % s.L) * x.strides()[1];
    for (int64_t d = 0; d < s.D; ++d) {
      T v = yp[r * s.D + d] + om[d] * xr[d];
      T sg = sigmoid_fast(v);
      T gv = gp[r * s.D + d] * sg * (T(1) + v * (T(1) - sg));
      gyp[r * s.D + d] = gv;
      acc[d] += (double)(gv * xr[d]);
    }
  });
  return {gy, Tensor::from_vector(domega, {s.D}, x.dtype())};
}

// The recurrences' backward on x's device: dxt (the gradient of x~, if defined) and the parameter
// sums (4, R, N, Dp) doubles (if defined), both allocated by the caller.
template <typename T>
void run_backward(const EmaShape& s, const Tensor& x, const Tensor& mask, const Tensor& coeffs, const Tensor& gy,
                  const Tensor& dxt, const Tensor& sums) {
  const auto dirs = coeff_pointers<T>(coeffs);
  const EmaInput<T> in = make_input<T>(x, mask);
  T* dxp = dxt.defined() ? dxt.device_data_ptr<T>() : nullptr;
  double* sp = sums.defined() ? sums.device_data_ptr<double>() : nullptr;
  if (!x.device().is_cpu()) {
#if MEGAGRAD_HAS_CUDA
    const size_t bytes = ema_cuda::backward_workspace_bytes<T>(s);
    Tensor ws = device_workspace(bytes, x.device());
    ema_cuda::backward<T>(in, dirs.data(), s, gy.device_data_ptr<T>(), dxp, sp, ws.raw_device_data(), bytes,
                          cuda_stream(x.device().index));
#endif
    return;
  }
  const bool scratch_needed = sp && !ema_cpu::backward_sums_in_place();
  Tensor scratch = scratch_needed ? Tensor::empty({ema_cpu::backward_scratch_doubles(s)}, DType::Float64) : Tensor();
  ema_cpu::backward<T>(in, dirs.data(), s, gy.data_ptr<T>(), dxp, sp,
                       scratch_needed ? scratch.data_ptr<double>() : nullptr);
}

// dx = (1 - mask) dx~ + omega gy.
template <typename T>
Tensor input_grad(const EmaShape& s, const Tensor& dxt, const Tensor& mask, const Tensor& gy, const Tensor& omega) {
  if (!dxt.device().is_cpu()) {  // ops on the device
    Tensor kept = mask.defined() ? mul(dxt, add_scalar(neg(mask), 1.0).unsqueeze(2)) : dxt;
    return add(kept, mul(gy, omega));
  }
  Tensor dx = Tensor::empty({s.B, s.L, s.D}, dxt.dtype());
  T* dp = dx.data_ptr<T>();
  const T *dtp = dxt.data_ptr<T>(), *gyp = gy.data_ptr<T>(), *om = omega.data_ptr<T>();
  const T* mp = mask.defined() ? mask.data_ptr<T>() : nullptr;
  parallel_for(s.B * s.L, std::max<int64_t>(1, kElementwiseGrain / s.D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T keep = mp ? T(1) - mp[(r / s.L) * mask.strides()[0] + (r % s.L) * mask.strides()[1]] : T(1);
      for (int64_t d = 0; d < s.D; ++d) dp[r * s.D + d] = keep * dtp[r * s.D + d] + om[d] * gyp[r * s.D + d];
    }
  });
  return dx;
}

// Chains the recurrences' sums (4, R, N, Dp), summed over the batch, to the gradients of delta,
// alpha, beta, gamma (ema.md, "Chain"; ema_coeffs.h): on the host for CPU tensors, by a kernel on
// the device for GPU tensors.
std::array<Tensor, 4> chain_param_grads(const EmaParams& saved, const EmaShape& s, const Tensor& sums) {
  const int64_t E = s.E(), N = s.N, Dp = s.Dp();
  const double scale = std::sqrt(1.0 / (double)N);
  const DType dt = saved.gamma.dtype();
  const Device dev = saved.delta.device();
  if (!dev.is_cpu()) {
#if MEGAGRAD_HAS_CUDA
    std::array<Tensor, 4> g{Tensor::empty({E, N, 1}, dt, dev), Tensor::empty({E, N, 1}, dt, dev),
                            Tensor::empty({E, N, 1}, dt, dev), Tensor::empty({E, N}, dt, dev)};
    Tensor delta = saved.delta.contiguous(), alpha = saved.alpha.contiguous(), beta = saved.beta.contiguous(),
           gamma = saved.gamma.contiguous();
    dispatch_float("ema", dt, [&]<typename T>() {
      ema_cuda::chain_param_grads<T>(delta.device_data_ptr<T>(), alpha.device_data_ptr<T>(),
                                     beta.device_data_ptr<T>(), gamma.device_data_ptr<T>(),
                                     sums.device_data_ptr<double>(), s, scale, g[0].device_data_ptr<T>(),
                                     g[1].device_data_ptr<T>(), g[2].device_data_ptr<T>(), g[3].device_data_ptr<T>(),
                                     cuda_stream(dev.index));
    });
    return g;
#endif
  }
  std::vector<double> delta = saved.delta.to_vector(), alpha = saved.alpha.to_vector(),
                      beta = saved.beta.to_vector(), gamma = saved.gamma.to_vector();
  const std::vector<double> h = sums.to_vector();
  auto sum = [&](int kind, int dir, int64_t n, int64_t d) {
    return h[(size_t)(((kind * s.ndirs + dir) * N + n) * Dp + d)];
  };
  std::vector<double> gdelta((size_t)(E * N)), galpha((size_t)(E * N)), gbeta((size_t)(E * N)), ggamma((size_t)(E * N));
  for (int dir = 0; dir < s.ndirs; ++dir)
    for (int64_t d = 0; d < s.D; ++d)
      for (int64_t n = 0; n < N; ++n) {
        size_t e = (size_t)((dir * s.D + d) * N + n);
        const EmaParamGrads g = ema_chain(delta[e], alpha[e], beta[e], gamma[e], scale, s.truncated(), s.kernel_len,
                                          sum(0, dir, n, d), sum(1, dir, n, d), sum(2, dir, n, d), sum(3, dir, n, d));
        ggamma[e] = g.gamma;
        gbeta[e] = g.beta;
        gdelta[e] = g.delta;
        galpha[e] = g.alpha;
      }
  return {Tensor::from_vector(gdelta, {E, N, 1}, dt), Tensor::from_vector(galpha, {E, N, 1}, dt),
          Tensor::from_vector(gbeta, {E, N, 1}, dt), Tensor::from_vector(ggamma, {E, N}, dt)};
}

}  // namespace

Tensor ema(const Tensor& x_in, const Tensor& mask, const EmaParams& p, const EmaOptions& o) {
  const EmaShape s = check_ema(x_in, mask, p, o);
#if !MEGAGRAD_HAS_CUDA
  if (!x_in.device().is_cpu()) fail("ema", "{} is not on the cpu, and megagrad was built without CUDA", x_in.desc());
#endif
  // The kernels read channels with unit stride; B and L may have any strides (the mask's too).
  Tensor x = x_in.strides()[2] == 1 ? x_in : x_in.contiguous();
  const Device dev = x.device();
  Tensor y = Tensor::empty({s.B, s.L, s.D}, x.dtype(), dev);
  Tensor out = Tensor::empty({s.B, s.L, s.D}, x.dtype(), dev);
  Tensor omega = p.omega.contiguous();
  Tensor coeffs = make_coeffs(p, s);  // the backward reuses it (the parameters do not change in between)
  dispatch_float("ema", x.dtype(), [&]<typename T>() { run_forward<T>(s, x, mask, coeffs, omega, y, out); });
  if (!needs_grad({&x_in, &p.delta, &p.alpha, &p.beta, &p.gamma, &p.omega})) return out;

  const bool need_x = wants_grad(x_in);
  const bool need_params = wants_grad(p.delta) || wants_grad(p.alpha) || wants_grad(p.beta) || wants_grad(p.gamma) ||
                           wants_grad(p.omega);
  EmaParams saved{p.delta.detach(), p.alpha.detach(), p.beta.detach(), p.gamma.detach(), omega.detach()};
  record("ema", {x_in, p.delta, p.alpha, p.beta, p.gamma, p.omega}, out,
         [s, need_x, need_params, saved, coeffs, x = x.detach(), mask = mask.defined() ? mask.detach() : Tensor(),
          y](const Tensor& g_out) {
    std::vector<Tensor> grads(6);
    dispatch_float("ema", x.dtype(), [&]<typename T>() {
      // 1. Elementwise: gy = g_out * silu'(y + omega x); domega = sum gy x.
      auto [gy, domega] = silu_backward<T>(s, g_out, x, y, saved.omega, need_params);
      // 2. The recurrences: dx~ by the reverse sweep, the parameter sums by the forward sweep.
      Tensor dxt = need_x ? Tensor::empty({s.B, s.L, s.D}, x.dtype(), x.device()) : Tensor();
      Tensor sums = need_params ? Tensor::empty({4, s.ndirs, s.N, s.Dp()}, DType::Float64, x.device()) : Tensor();
      run_backward<T>(s, x, mask, coeffs, gy, dxt, sums);
      // 3. dx = (1 - mask) dx~ + omega gy.
      if (need_x) grads[0] = input_grad<T>(s, dxt, mask, gy, saved.omega);
      // 4. Chain the sums to delta, alpha, beta, gamma (ema.md, "Chain").
      if (need_params) {
        auto g = chain_param_grads(saved, s, sums);
        for (int i = 0; i < 4; ++i) grads[(size_t)i + 1] = g[(size_t)i];
        grads[5] = domega;
      }
    });
    return grads;
  });
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
  const EmaShape s = check_ema(x, mask, p, o);
  DType dt = x.dtype();
  Tensor xt = mask.defined() ? mul(x, add_scalar(neg(mask), 1.0).unsqueeze(2)) : x;  // (B,L,D)
  Tensor kern = ema_kernel_reference(p, s.kernel_len);                              // (E,K)
  // Toeplitz matrices T[d, t, s] = k[d, t - s] for 0 <= t - s < K (causal); the anti-causal half
  // uses k2[d, s - t]. Built by index_select of a zero-padded kernel: index K means "zero".
  Tensor kpad = cat({kern, Tensor::zeros({s.E(), 1}, dt)}, 1);                     // (E,K+1)
  auto toeplitz = [&](const Tensor& kk, bool causal) {
    std::vector<int64_t> idx((size_t)(s.L * s.L));
    for (int64_t t = 0; t < s.L; ++t)
      for (int64_t u = 0; u < s.L; ++u) {
        int64_t lag = causal ? t - u : u - t;
        idx[(size_t)(t * s.L + u)] = lag >= 0 && lag < s.kernel_len ? lag : s.kernel_len;
      }
    return index_select(kk, 1, Tensor::from_vector(idx, {s.L * s.L})).reshape({kk.size(0), s.L, s.L});
  };
  // y[b, t, d] = sum_s T[d, t, s] x~[b, s, d]: batched over d as (D, L, L) @ (D, L, B).
  Tensor xd = xt.permute({2, 1, 0});                                                // (D,L,B)
  Tensor y = matmul(toeplitz(kpad.narrow(0, 0, s.D), true), xd);
  if (o.bidirectional) y = add(y, matmul(toeplitz(kpad.narrow(0, s.D, s.D), false), xd));
  y = y.permute({2, 1, 0});                                                          // (B,L,D)
  return silu(add(y, mul(x, p.omega)));
}

}  // namespace megagrad
