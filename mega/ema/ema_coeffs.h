// The EMA's per-(direction, channel, dim) formulas between the official parameters and what the
// kernels read (the coefficients of ema_types.h; ema.md, "Chain to the official parameters"),
// written once for the CPU op (ema.cpp) and the CUDA kernels that build the same tables on the
// device (ema_cuda.cu), so that a GPU step reads no parameter back to the host. In double,
// whatever the parameters' dtype. C++17.
//
// Device vs host: the same expression, but CUDA's exp and pow may differ from glibc's in the last
// bit (CUDA: exp within 1 ulp, pow within 2), so the device tables agree with the host's to a few
// ulp of double, not bit for bit (tests/test_cuda_sync.cpp states the tolerance).
#pragma once
#include <cmath>
#include <cstdint>
#include "core/host_device.h"

namespace megagrad {

// q = 1 - p a', a = p beta, c = gamma scale, Q = q^K (0 if not truncated), with p = sigmoid(delta),
// a' = sigmoid(alpha), scale = sqrt(1 / N).
struct EmaCoeffValue {
  double q, a, c, Q;
};
MG_HD EmaCoeffValue ema_coeff(double delta, double alpha, double beta, double gamma, double scale,
                                     bool truncated, int64_t K) {
  const double pp = 1 / (1 + ::exp(-delta)), ap = 1 / (1 + ::exp(-alpha));
  const double q = 1 - pp * ap;
  return {q, pp * beta, gamma * scale, truncated ? ::pow(q, (double)K) : 0.0};
}

// The parameters' gradients from the recurrences' batch sums of one (direction, channel, dim):
// dc = sum gy h, da = sum gy u, dq = sum gy s, dQ = sum gy w (ema.md, "Parameter gradients").
struct EmaParamGrads {
  double delta, alpha, beta, gamma;
};
MG_HD EmaParamGrads ema_chain(double delta, double alpha, double beta, double gamma, double scale,
                                     bool truncated, int64_t K, double dc, double da, double dq, double dQ) {
  const double pp = 1 / (1 + ::exp(-delta)), ap = 1 / (1 + ::exp(-alpha));
  const double q = 1 - pp * ap, c = gamma * scale;
  da *= c;  // the kernel summed gy u; da = c sum gy u
  dq *= c;
  if (truncated) dq += c * dQ * (double)K * ::pow(q, (double)(K - 1));
  const double dp = da * beta - dq * ap, dap = -dq * pp;
  EmaParamGrads g;
  g.gamma = dc * scale;
  g.beta = da * pp;
  g.delta = dp * pp * (1 - pp);
  g.alpha = dap * ap * (1 - ap);
  return g;
}

}  // namespace megagrad
