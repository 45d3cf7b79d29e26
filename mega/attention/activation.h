// The attention's elementwise activations (laplace, relu2) and their derivatives, written once for
// both devices: the CPU passes (attention_cpu.h) and the CUDA kernels (attention_cuda.cu) call
// these. Branch-free and built on exp_fast/erf_fast (core/vec_math.h), so the CPU passes vectorise
// and both devices compute the same polynomials. C++17, so that nvcc reads it.
//
// laplace f(x) = 0.5 (1 + erf(u)), f'(x) = e^{-u^2} / (sigma sqrt(2 pi)), u = (x - mu) / (sigma sqrt 2);
// relu2   f(x) = max(x, 0)^2,      f'(x) = 2 max(x, 0).
// softmax is not elementwise: the kernels' row passes handle it.
#pragma once
#include "core/host_device.h"
#include "core/vec_math.h"
#include "mega/attention/attention_types.h"

namespace megagrad {

// The official laplace (fairseq utils.laplace): rounded constants mu = 0.707107 ~ sqrt(1/2),
// sigma = 0.282095 ~ sqrt(1/(4 pi)). The rounded values are what the reference outputs use.
inline constexpr double kLaplaceMu = 0.707107;
inline constexpr double kLaplaceSigma = 0.282095;

template <AttentionActivation A, typename T> MG_HD T act_f(T x) {
  if constexpr (A == AttentionActivation::Relu2) {
    const T r = x > T(0) ? x : T(0);
    return r * r;
  } else {
    const T u = (x - T(kLaplaceMu)) * T(1.0 / (kLaplaceSigma * 1.4142135623730951));
    return T(0.5) * (T(1) + erf_fast(u));
  }
}

// f(x) and f'(x) together (laplace: one exp serves both).
template <AttentionActivation A, typename T> MG_HD T act_f_df(T x, T& df) {
  if constexpr (A == AttentionActivation::Relu2) {
    const T r = x > T(0) ? x : T(0);
    df = T(2) * r;
    return r * r;
  } else {
    const T u = (x - T(kLaplaceMu)) * T(1.0 / (kLaplaceSigma * 1.4142135623730951));
    const T e = exp_fast(-(u * u));
    df = T(1.0 / (kLaplaceSigma * 2.5066282746310002)) * e;  // 1 / (sigma sqrt(2 pi))
    return T(0.5) * (T(1) + erf_fast_with_exp(u, e));
  }
}

}  // namespace megagrad
