// The fused EMA op: input checks, coefficient setup, the forward kernel, then the backward
// closure (the elementwise silu/omega part here, the recurrences in ema_cpu.h).
#include "mega/ema/ema.h"
#include <array>
#include <cmath>
#include "autograd/checks.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/dispatch.h"
#include "core/vec_math.h"
#include "mega/ema/ema_cpu.h"
#if MEGAGRAD_HAS_CUDA
#include "backends/cuda/stream.h"
#include "mega/ema/ema_cuda.h"
#endif

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
    MG_CHECK(mask.dtype() == x.dtype() && mask.device() == x.device(), op,
             "padding_mask {} must have x's dtype and device ({})", mask.desc(), x.desc());
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

// Chains the recurrences' sums to the gradients of delta, alpha, beta, gamma (ema.md, "Chain").
// sum(kind, dir, n, d) is the batch total of dc, da, dq or dQ (kind 0..3) for channel d.
template <typename Sum>
std::array<Tensor, 4> chain_param_grads(const EmaParams& saved, const Checked& k, const ema_cpu::Dims& dims, DType dt,
                                        Sum sum) {
  std::vector<double> delta = saved.delta.to_vector(), alpha = saved.alpha.to_vector(),
                      beta = saved.beta.to_vector(), gamma = saved.gamma.to_vector();
  const int64_t E = k.E, N = k.N;
  const double scale = std::sqrt(1.0 / (double)N);
  std::vector<double> gdelta((size_t)(E * N)), galpha((size_t)(E * N)), gbeta((size_t)(E * N)), ggamma((size_t)(E * N));
  for (int dir = 0; dir < k.ndirs; ++dir)
    for (int64_t d = 0; d < k.D; ++d)
      for (int64_t n = 0; n < N; ++n) {
        size_t e = (size_t)((dir * k.D + d) * N + n);
        double dc = sum(0, dir, n, d), da = sum(1, dir, n, d), dq = sum(2, dir, n, d), dQ = sum(3, dir, n, d);
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
  Device dev = saved.delta.device();
  return {Tensor::from_vector(gdelta, {E, N, 1}, dt).to(dev), Tensor::from_vector(galpha, {E, N, 1}, dt).to(dev),
          Tensor::from_vector(gbeta, {E, N, 1}, dt).to(dev), Tensor::from_vector(ggamma, {E, N}, dt).to(dev)};
}

template <typename T>
ema_cpu::Input<T> make_input(const Tensor& x, const Tensor& mask) {
  ema_cpu::Input<T> in{x.data_ptr<T>(), x.strides()[0], x.strides()[1], nullptr, 0, 0};
  if (mask.defined()) in.mask = mask.data_ptr<T>(), in.mb = mask.strides()[0], in.ml = mask.strides()[1];
  return in;
}

#if MEGAGRAD_HAS_CUDA
// ---------------------------------------------------------------- the op on a CUDA device
// The same op with the kernels of ema_cuda.cu: the coefficients are computed on the host (E x N
// numbers) and copied over; the forward fuses out = silu(y + omega x) into the scan; the
// backward's elementwise parts are composed from ops (which run on the device), the recurrences
// run in ema_cuda::backward, and the parameter chain runs on the host on its (4, R, N, Dp) sums.

// Per direction the q, a, c, Q arrays of make_coeffs, as one device tensor (ndirs, 4, N * Dp).
template <typename T>
Tensor device_coeffs(const EmaParams& p, const Checked& k, const ema_cpu::Dims& dims) {
  auto dirs = make_coeffs<T>(p, k, dims);
  std::vector<double> all;
  for (auto& cf : dirs)
    for (auto* v : {&cf.q, &cf.a, &cf.c, &cf.Q}) all.insert(all.end(), v->begin(), v->end());
  const int64_t NDp = k.N * dims.Dp();
  return Tensor::from_vector(all, {(int64_t)dirs.size(), 4, NDp}, dtype_of_v<T>).to(p.delta.device());
}

template <typename T>
std::vector<ema_cuda::Coeffs<T>> coeff_pointers(const Tensor& c) {
  const int64_t ndirs = c.size(0), NDp = c.size(2);
  const T* base = c.device_data_ptr<T>();
  std::vector<ema_cuda::Coeffs<T>> out;
  for (int64_t d = 0; d < ndirs; ++d) {
    const T* q = base + d * 4 * NDp;
    out.push_back({q, q + NDp, q + 2 * NDp, q + 3 * NDp});
  }
  return out;
}

template <typename T>
ema_cuda::Input<T> device_input(const Tensor& x, const Tensor& mask) {
  ema_cuda::Input<T> in{x.device_data_ptr<T>(), x.strides()[0], x.strides()[1], nullptr, 0, 0};
  if (mask.defined()) in.mask = mask.device_data_ptr<T>(), in.mb = mask.strides()[0], in.ml = mask.strides()[1];
  return in;
}

// Device scratch of at least `bytes`, from the caching allocator.
Tensor device_workspace(size_t bytes, Device dev) {
  return Tensor::empty({(int64_t)((bytes + 7) / 8)}, DType::Float64, dev);
}

Tensor ema_on_device(const Tensor& x_in, const Tensor& x, const Tensor& mask_in, const EmaParams& p, const Checked& k,
                     const ema_cpu::Dims& dims) {
  const Device dev = x.device();
  const ema_cuda::Dims cd{dims.B, dims.L, dims.D, dims.N, dims.K};
  const Tensor& mask = mask_in;  // any strides: the kernels take them
  Tensor y = Tensor::empty({k.B, k.L, k.D}, x.dtype(), dev);
  Tensor out = Tensor::empty({k.B, k.L, k.D}, x.dtype(), dev);
  Tensor omega = p.omega.contiguous();
  Tensor coeffs;  // on the device; the backward reuses it (the parameters do not change in between)
  dispatch_float("ema", x.dtype(), [&]<typename T>() {
    coeffs = device_coeffs<T>(p, k, dims);
    auto dirs = coeff_pointers<T>(coeffs);
    const size_t bytes = ema_cuda::forward_workspace_bytes<T>(cd, k.ndirs);
    Tensor ws = device_workspace(bytes, dev);
    ema_cuda::forward<T>(device_input<T>(x, mask), dirs.data(), k.ndirs, cd, y.device_data_ptr<T>(),
                         omega.device_data_ptr<T>(), out.device_data_ptr<T>(), ws.raw_device_data(), bytes,
                         cuda_stream(dev.index));
  });
  if (!needs_grad({&x_in, &p.delta, &p.alpha, &p.beta, &p.gamma, &p.omega})) return out;

  const bool need_x = wants_grad(x_in);
  const bool need_params = wants_grad(p.delta) || wants_grad(p.alpha) || wants_grad(p.beta) || wants_grad(p.gamma) ||
                           wants_grad(p.omega);
  EmaParams saved{p.delta.detach(), p.alpha.detach(), p.beta.detach(), p.gamma.detach(), p.omega.detach()};
  record("ema", {x_in, p.delta, p.alpha, p.beta, p.gamma, p.omega}, out,
         [k, dims, cd, need_x, need_params, saved, coeffs, x = x.detach(), mask = mask.defined() ? mask.detach() : Tensor(),
          y](const Tensor& g_out) {
    std::vector<Tensor> grads(6);
    // 1. gy = g_out * silu'(pre), pre = y + omega x; domega = sum_{b,t} gy x (ops on the device).
    Tensor pre = add(y, mul(x, saved.omega));
    Tensor s = sigmoid(pre);
    Tensor gy = mul(mul(g_out, s), add_scalar(mul(pre, add_scalar(neg(s), 1.0)), 1.0)).contiguous();
    dispatch_float("ema", x.dtype(), [&]<typename T>() {
      // 2. The recurrences: dx~ and the parameter sums (4, R, N, Dp), already summed over b.
      auto dirs = coeff_pointers<T>(coeffs);
      Tensor dxt = need_x ? Tensor::empty({k.B, k.L, k.D}, x.dtype(), x.device()) : Tensor();
      Tensor sums = need_params ? Tensor::empty({4, k.ndirs, k.N, dims.Dp()}, DType::Float64, x.device()) : Tensor();
      const size_t bytes = ema_cuda::backward_workspace_bytes<T>(cd, k.ndirs);
      Tensor ws = device_workspace(bytes, x.device());
      ema_cuda::backward<T>(device_input<T>(x, mask), dirs.data(), k.ndirs, cd, gy.device_data_ptr<T>(),
                            need_x ? dxt.device_data_ptr<T>() : nullptr,
                            need_params ? sums.device_data_ptr<double>() : nullptr, ws.raw_device_data(), bytes,
                            cuda_stream(x.device().index));
      // 3. dx = (1 - mask) dx~ + omega gy.
      if (need_x) {
        Tensor kept = mask.defined() ? mul(dxt, add_scalar(neg(mask), 1.0).unsqueeze(2)) : dxt;
        grads[0] = add(kept, mul(gy, saved.omega));
      }
      // 4. The chain, on the host.
      if (need_params) {
        std::vector<double> h = sums.to_vector();
        const int64_t Dp = dims.Dp();
        auto g = chain_param_grads(saved, k, dims, x.dtype(), [&](int kind, int dir, int64_t n, int64_t d) {
          return h[(size_t)(((kind * k.ndirs + dir) * k.N + n) * Dp + d)];
        });
        for (int i = 0; i < 4; ++i) grads[(size_t)i + 1] = g[(size_t)i];
        grads[5] = sum(mul(gy, x), {0, 1});
      }
    });
    return grads;
  });
  return out;
}
#endif

}  // namespace

Tensor ema(const Tensor& x_in, const Tensor& mask, const EmaParams& p, const EmaOptions& o) {
  Checked k = check_ema(x_in, mask, p, o);
  // The kernel reads channels with unit stride; B and L may have any strides.
  Tensor x = x_in.strides()[2] == 1 ? x_in : x_in.contiguous();
  ema_cpu::Dims dims{k.B, k.L, k.D, k.N, k.K};
  if (!x.device().is_cpu()) {
#if MEGAGRAD_HAS_CUDA
    return ema_on_device(x_in, x, mask, p, k, dims);
#else
    fail("ema", "{} is not on the cpu, and megagrad was built without CUDA", x.desc());
#endif
  }
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
          const int64_t Dp = dims.Dp();
          auto summed = [&](const std::vector<double>& v, int dir, int64_t n, int64_t d) {
            double acc = 0;
            for (int64_t b = 0; b < k.B; ++b)  // fixed order: thread-count independent
              acc += v[(size_t)(((b * k.ndirs + dir) * k.N + n) * Dp + d)];
            return acc;
          };
          auto g = chain_param_grads(saved, k, dims, x.dtype(), [&](int kind, int dir, int64_t n, int64_t d) {
            return summed(kind == 0 ? sums.dc : kind == 1 ? sums.da : kind == 2 ? sums.dq : sums.dQ, dir, n, d);
          });
          for (int i = 0; i < 4; ++i) grads[(size_t)i + 1] = g[(size_t)i];
          grads[5] = Tensor::from_vector(domega, {k.D}, x.dtype());
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
