// The rotary bias's formulas (rotary_bias.h; attention.md, "The bias is a Toeplitz table"),
// written once for the host (rotary_bias.cpp) and the CUDA kernels that build the table and its
// backward on the device (rotary_bias_cuda.cu), so that a GPU step reads no parameter back to the
// host. In double. C++17.
//
// Device vs host: the same expressions and summation order, but CUDA's exp, cos and sin may
// differ from glibc's in the last bit, so device tables agree with the host's to a few ulp of
// double times the number of terms, not bit for bit (tests/test_cuda_sync.cpp states the tolerance).
#pragma once
#include <cmath>
#include <cstdint>
#include "core/host_device.h"

namespace megagrad {

// theta_k = 10000^(-k/half).
MG_HD double rotary_theta_at(int64_t k, int64_t half) {
  return ::exp((double)k * -(::log(10000.0) / (double)half));
}

// Per frequency k, from the halves (a1, a2) of alpha and (b1, b2) of beta:
// P = a1 b1 + a2 b2, Q = a1 b2 - a2 b1, and rel(e) = sum_k P cos(theta_k e) - Q sin(theta_k e).
struct RotaryPQ {
  double P, Q;
};
MG_HD RotaryPQ rotary_pq(double a1, double a2, double b1, double b2) {
  return {a1 * b1 + a2 * b2, a1 * b2 - a2 * b1};
}

// One term k of rel(e) and rel(-e): pc += P cos(theta_k e), qs += Q sin(theta_k e); then
// rel(e) = pc - qs, rel(-e) = pc + qs.
MG_HD void rotary_rel_term(RotaryPQ pq, double theta, int64_t e, double& pc, double& qs) {
  const double x = theta * (double)e;
  pc += pq.P * ::cos(x);
  qs += pq.Q * ::sin(x);
}

// The backward of frequency k: with Gc = sum_e drel(e) cos(theta e), Gs = sum_e drel(e) sin(theta e)
// (e from -(C-1) to C-1; drel has 2C-1 entries, drel[C-1 + e]), dP = Gc, dQ = -Gs, then through P
// and Q to the halves of alpha and beta.
struct RotaryGrads {
  double da1, da2, db1, db2;
};
MG_HD RotaryGrads rotary_grads(const double* drel, int64_t C, double theta, double a1, double a2, double b1,
                                      double b2) {
  // Entries e and -e together: cos is even, sin odd.
  double gc = drel[C - 1], gs = 0;
  for (int64_t e = 1; e < C; ++e) {
    const double x = theta * (double)e, up = drel[C - 1 + e], dn = drel[C - 1 - e];
    gc += (up + dn) * ::cos(x);
    gs += (up - dn) * ::sin(x);
  }
  return {b1 * gc - b2 * gs, b2 * gc + b1 * gs, a1 * gc + a2 * gs, a2 * gc - a1 * gs};
}

}  // namespace megagrad
