// One element of each optimizer's update, written once for both devices: the CPU loops
// (mega/optim_kernels.h) and the CUDA kernels (backends/cuda/optim.cu) call these. The scalars of
// one step come from mega/optim.cpp in double and are converted to the element type once per call.
// C++17, so that nvcc reads it.
#pragma once
#include "core/host_device.h"
#include "core/pointwise.h"

namespace megagrad {

// ---- AdamW: p <- p * decay - step_size * m / (sqrt(v) * denom_scale + eps), after the moments
//   m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2.
//   torch:   step_size = lr / bc1,             denom_scale = 1 / sqrt(bc2)
//   fairseq: step_size = lr sqrt(bc2) / bc1,   denom_scale = 1
struct AdamWScalars {
  double decay, beta1, beta2, step_size, denom_scale, eps;
};

template <typename T> struct AdamWConsts {
  T decay, b1, c1, b2, c2, step_size, denom_scale, eps;
  explicit AdamWConsts(const AdamWScalars& s)
      : decay((T)s.decay), b1((T)s.beta1), c1((T)(1 - s.beta1)), b2((T)s.beta2), c2((T)(1 - s.beta2)),
        step_size((T)s.step_size), denom_scale((T)s.denom_scale), eps((T)s.eps) {}
};

template <typename T> MG_HD void adamw_update(T& p, T g, T& m, T& v, const AdamWConsts<T>& c) {
  const T mi = c.b1 * m + c.c1 * g;
  const T vi = c.b2 * v + c.c2 * g * g;
  m = mi;
  v = vi;
  p = p * c.decay - c.step_size * (mi / (pointwise::m_sqrt(vi) * c.denom_scale + c.eps));
}

// ---- SGD: d = g + wd p; with momentum (Mom), buf <- d (first step) or momentum buf + (1 - dampening) d,
// and d <- buf (or d + momentum buf with nesterov); p <- p - lr d.
struct SGDScalars {
  double lr, weight_decay, momentum, dampening;
  bool nesterov, first;
};

template <typename T> struct SGDConsts {
  T lr, wd, mom, damp1;
  bool has_wd, nesterov, first;
  explicit SGDConsts(const SGDScalars& s)
      : lr((T)s.lr), wd((T)s.weight_decay), mom((T)s.momentum), damp1((T)(1 - s.dampening)),
        has_wd(s.weight_decay != 0), nesterov(s.nesterov), first(s.first) {}
};

template <bool Mom, typename T> MG_HD void sgd_update(T& p, T g, T* buf, const SGDConsts<T>& c) {
  T d = g;
  if (c.has_wd) d += c.wd * p;
  if constexpr (Mom) {
    const T bi = c.first ? d : c.mom * *buf + c.damp1 * d;
    *buf = bi;
    d = c.nesterov ? d + c.mom * bi : bi;
  }
  p = p - c.lr * d;
}

}  // namespace megagrad
