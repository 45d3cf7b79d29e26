// CPU kernels of the fused gate chains of MovingAverageGatedAttention (derivation: mega/gates/gates.md).
//
// Legend
//   B  batch          L  time steps        R  rows = B L (one row = one (b, t))
//   D  embed dim      Z  shared q/k dim    H  hidden (value) dim
//   C  = D + Z + H    the input gates' columns of mx_proj's output: [u~ | z~ | r~]
//   P  = D + H + 2Z   the packed gate outputs:                        [u | r | q | k]
//
// Shapes (a "rows" argument is read through its b and t strides, channels at unit stride; the
// outputs and the gradients the kernels write are contiguous):
//   input gates   x (B, L, C) rows, gamma (2, Z), beta (2, Z)  ->  out (R, P)
//   output gate   hx, hp, u, res (B, L, D) rows                ->  out (R, D)
//
// Every loop over channels is a plain indexed loop with no branches, so it vectorises; the
// sigmoid is sigmoid_fast (core/vec_math.h), which the primitive sigmoid/silu ops use too.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>
#include "core/parallel.h"
#include "core/vec_math.h"

namespace megagrad::gates_cpu {

// A (B, L, n) operand: row (b, t) starts at p + b sb + t sl, its channels at unit stride.
template <typename T>
struct Rows {
  const T* p;
  int64_t sb, sl;
  const T* row(int64_t r, int64_t L) const { return p + (r / L) * sb + (r % L) * sl; }
};

struct Dims {
  int64_t B, L, D, Z, H;
  int64_t R() const { return B * L; }
  int64_t C() const { return D + Z + H; }
  int64_t P() const { return D + H + 2 * Z; }
};

// Rows per parallel work item, from the elementwise grain and the row width.
inline int64_t row_grain(int64_t width) { return std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, width)); }

// The parameter gradients are sums over all R rows. They are summed in double per block of
// kSumBlock rows (a fixed size: the blocks, and so the rounding, do not depend on the thread
// count), then the blocks are added in order.
inline constexpr int64_t kSumBlock = 64;

// ---------------------------------------------------------------- input gates

// out[r] = [sigmoid(u~) | silu(r~) | silu(z~) gamma0 + beta0 | silu(z~) gamma1 + beta1]
template <typename T>
void input_gates_forward(const Dims& s, Rows<T> x, const T* gamma, const T* beta, T* out) {
  const int64_t D = s.D, Z = s.Z, H = s.H, P = s.P();
  const T *g0 = gamma, *g1 = gamma + Z, *b0 = beta, *b1 = beta + Z;
  parallel_for(s.R(), row_grain(P), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x.row(r, s.L);
      const T *xu = xr, *xz = xr + D, *xh = xr + D + Z;
      T* o = out + r * P;
      T *u = o, *rr = o + D, *q = o + D + H, *k = q + Z;
      for (int64_t d = 0; d < D; ++d) u[d] = sigmoid_fast(xu[d]);
      for (int64_t h = 0; h < H; ++h) rr[h] = xh[h] * sigmoid_fast(xh[h]);
      for (int64_t j = 0; j < Z; ++j) {
        const T z = xz[j] * sigmoid_fast(xz[j]);
        q[j] = z * g0[j] + b0[j];
        k[j] = z * g1[j] + b1[j];
      }
    }
  });
}

// g (R, P) the gradient of the packed output, out (R, P) the forward's output (u is read from it).
// dx (R, C) or null; dparams (4, Z) doubles [dgamma0 | dgamma1 | dbeta0 | dbeta1] or null.
template <typename T>
void input_gates_backward(const Dims& s, Rows<T> x, const T* gamma, const T* out, const T* g, T* dx,
                          double* dparams) {
  const int64_t D = s.D, Z = s.Z, H = s.H, P = s.P(), C = s.C(), R = s.R();
  const T *g0 = gamma, *g1 = gamma + Z;
  // dx: du~ = gu u (1 - u); dr~ = gr silu'(r~); dz~ = (gq gamma0 + gk gamma1) silu'(z~)
  if (dx)
    parallel_for(R, row_grain(P), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x.row(r, s.L);
        const T *xz = xr + D, *xh = xr + D + Z;
        const T *u = out + r * P, *gr = g + r * P;
        const T *gu = gr, *gh = gr + D, *gq = gr + D + H, *gk = gq + Z;
        T *du = dx + r * C, *dz = du + D, *dh = du + D + Z;
        for (int64_t d = 0; d < D; ++d) du[d] = gu[d] * (u[d] * (T(1) - u[d]));
        for (int64_t j = 0; j < Z; ++j) {
          const T sg = sigmoid_fast(xz[j]);
          dz[j] = (gq[j] * g0[j] + gk[j] * g1[j]) * (sg * (T(1) + xz[j] * (T(1) - sg)));
        }
        for (int64_t h = 0; h < H; ++h) {
          const T sg = sigmoid_fast(xh[h]);
          dh[h] = gh[h] * (sg * (T(1) + xh[h] * (T(1) - sg)));
        }
      }
    });
  if (!dparams) return;
  // dgamma_i = sum_rows g{q,k} z, dbeta_i = sum_rows g{q,k}: per block of kSumBlock rows, in double
  const int64_t nblocks = (R + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial((size_t)(nblocks * 4 * Z), 0.0);
  parallel_for(nblocks, std::max<int64_t>(1, row_grain(Z) / kSumBlock), [&](int64_t b0, int64_t b1) {
    std::vector<T> z((size_t)Z);
    for (int64_t blk = b0; blk < b1; ++blk) {
      double* acc = partial.data() + blk * 4 * Z;
      for (int64_t r = blk * kSumBlock; r < std::min(R, (blk + 1) * kSumBlock); ++r) {
        const T* xz = x.row(r, s.L) + D;
        const T *gq = g + r * P + D + H, *gk = gq + Z;
        for (int64_t j = 0; j < Z; ++j) z[(size_t)j] = xz[j] * sigmoid_fast(xz[j]);
        for (int64_t j = 0; j < Z; ++j) {
          acc[j] += (double)(gq[j] * z[(size_t)j]);
          acc[Z + j] += (double)(gk[j] * z[(size_t)j]);
          acc[2 * Z + j] += (double)gq[j];
          acc[3 * Z + j] += (double)gk[j];
        }
      }
    }
  });
  std::fill(dparams, dparams + 4 * Z, 0.0);
  for (int64_t blk = 0; blk < nblocks; ++blk)  // in block order: thread-count independent
    for (int64_t j = 0; j < 4 * Z; ++j) dparams[j] += partial[(size_t)(blk * 4 * Z + j)];
}

// ---------------------------------------------------------------- output gate

// out = res + u (silu(hx + hp) - res)
template <typename T>
void output_gate_forward(const Dims& s, Rows<T> hx, Rows<T> hp, Rows<T> u, Rows<T> res, T* out) {
  const int64_t D = s.D;
  parallel_for(s.R(), row_grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T *a1 = hx.row(r, s.L), *a2 = hp.row(r, s.L), *ur = u.row(r, s.L), *rr = res.row(r, s.L);
      T* o = out + r * D;
      for (int64_t d = 0; d < D; ++d) {
        const T a = a1[d] + a2[d];
        const T h = a * sigmoid_fast(a);
        o[d] = rr[d] + ur[d] * (h - rr[d]);
      }
    }
  });
}

// g (R, D) -> da (the gradient of hx and of hp alike), du, dres, each (R, D) or null.
template <typename T>
void output_gate_backward(const Dims& s, Rows<T> hx, Rows<T> hp, Rows<T> u, Rows<T> res, const T* g, T* da,
                          T* du, T* dres) {
  const int64_t D = s.D;
  parallel_for(s.R(), row_grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T *a1 = hx.row(r, s.L), *a2 = hp.row(r, s.L), *ur = u.row(r, s.L), *rr = res.row(r, s.L);
      const T* gr = g + r * D;
      // da = g u silu'(a), silu'(a) = s (1 + a (1 - s)), s = sigmoid(a)
      if (da)
        for (int64_t d = 0; d < D; ++d) {
          const T a = a1[d] + a2[d], sg = sigmoid_fast(a);
          da[r * D + d] = (gr[d] * ur[d]) * (sg * (T(1) + a * (T(1) - sg)));
        }
      // du = g (silu(a) - res)
      if (du)
        for (int64_t d = 0; d < D; ++d) {
          const T a = a1[d] + a2[d];
          du[r * D + d] = gr[d] * (a * sigmoid_fast(a) - rr[d]);
        }
      // dres = g - g u (the add's path minus the sub's, as the composed ops sum them)
      if (dres)
        for (int64_t d = 0; d < D; ++d) dres[r * D + d] = gr[d] - gr[d] * ur[d];
    }
  });
}

}  // namespace megagrad::gates_cpu
