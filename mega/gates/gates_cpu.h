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
inline constexpr int64_t kSumBlock = kRowSumBlock;

// The per-row loops, with restrict-qualified arguments: the compiler then vectorises each without
// run-time overlap checks (several outputs and inputs per loop defeat its versioning).
template <typename T>
inline void silu_row(const T* __restrict x, T* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid_fast(x[i]);
}
// dx = dy silu'(x)
template <typename T>
inline void silu_grad_row(const T* __restrict x, const T* __restrict dy, T* __restrict dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T sg = sigmoid_fast(x[i]);
    dx[i] = dy[i] * (sg * (T(1) + x[i] * (T(1) - sg)));
  }
}
// d = d silu'(x), in place
template <typename T>
inline void silu_grad_inplace_row(const T* __restrict x, T* __restrict d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T sg = sigmoid_fast(x[i]);
    d[i] = d[i] * (sg * (T(1) + x[i] * (T(1) - sg)));
  }
}
// q = z g0 + b0, k = z g1 + b1
template <typename T>
inline void affine_pair_row(const T* __restrict z, const T* __restrict g0, const T* __restrict b0,
                            const T* __restrict g1, const T* __restrict b1, T* __restrict q, T* __restrict k,
                            int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T zi = z[i];
    q[i] = zi * g0[i] + b0[i];
    k[i] = zi * g1[i] + b1[i];
  }
}

// ---------------------------------------------------------------- input gates

// acc += [gq z | gk z | gq | gk] in double, acc (4, n)
template <typename T>
inline void param_sums_row(const T* __restrict gq, const T* __restrict gk, const T* __restrict z,
                           double* __restrict acc, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    acc[i] += (double)(gq[i] * z[i]);
    acc[n + i] += (double)(gk[i] * z[i]);
    acc[2 * n + i] += (double)gq[i];
    acc[3 * n + i] += (double)gk[i];
  }
}

// out[r] = [sigmoid(u~) | silu(r~) | silu(z~) gamma0 + beta0 | silu(z~) gamma1 + beta1]
template <typename T>
void input_gates_forward(const Dims& s, Rows<T> x, const T* gamma, const T* beta, T* out) {
  const int64_t D = s.D, Z = s.Z, H = s.H, P = s.P();
  const T *g0 = gamma, *g1 = gamma + Z, *b0 = beta, *b1 = beta + Z;
  parallel_for(s.R(), row_grain(P), [&](int64_t r0, int64_t r1) {
    std::vector<T> z((size_t)Z);
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x.row(r, s.L);
      const T *xu = xr, *xz = xr + D, *xh = xr + D + Z;
      T* o = out + r * P;
      T *u = o, *rr = o + D, *q = o + D + H, *k = q + Z;
      for (int64_t d = 0; d < D; ++d) u[d] = sigmoid_fast(xu[d]);
      silu_row(xh, rr, H);
      silu_row(xz, z.data(), Z);
      affine_pair_row(z.data(), g0, b0, g1, b1, q, k, Z);
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
        for (int64_t j = 0; j < Z; ++j) dz[j] = gq[j] * g0[j] + gk[j] * g1[j];  // dz, then dz~ in place
        silu_grad_inplace_row(xz, dz, Z);
        silu_grad_row(xh, gh, dh, H);
      }
    });
  if (!dparams) return;
  // dgamma_i = sum_rows g{q,k} z, dbeta_i = sum_rows g{q,k}: per block of kSumBlock rows, in double
  blocked_row_sums(R, 4 * Z, kSumBlock, row_grain(Z), dparams, [&](int64_t r, double* acc) {
    thread_local std::vector<T> zt;
    zt.resize((size_t)Z);
    const T* xz = x.row(r, s.L) + D;
    const T *gq = g + r * P + D + H, *gk = gq + Z;
    for (int64_t j = 0; j < Z; ++j) zt[(size_t)j] = xz[j] * sigmoid_fast(xz[j]);
    param_sums_row(gq, gk, zt.data(), acc, Z);
  });
}

// ---------------------------------------------------------------- output gate

template <typename T>
inline void output_gate_row(const T* __restrict hx, const T* __restrict hp, const T* __restrict u,
                            const T* __restrict res, T* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T a = hx[i] + hp[i];
    const T h = a * sigmoid_fast(a);
    out[i] = res[i] + u[i] * (h - res[i]);
  }
}

// out = res + u (silu(hx + hp) - res)
template <typename T>
void output_gate_forward(const Dims& s, Rows<T> hx, Rows<T> hp, Rows<T> u, Rows<T> res, T* out) {
  const int64_t D = s.D;
  parallel_for(s.R(), row_grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      output_gate_row(hx.row(r, s.L), hp.row(r, s.L), u.row(r, s.L), res.row(r, s.L), out + r * D, D);
  });
}

// da = g u silu'(a), silu'(a) = s (1 + a (1 - s)), s = sigmoid(a), a = hx + hp
template <typename T>
inline void output_gate_da_row(const T* __restrict hx, const T* __restrict hp, const T* __restrict u,
                               const T* __restrict g, T* __restrict da, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T a = hx[i] + hp[i], sg = sigmoid_fast(a);
    da[i] = (g[i] * u[i]) * (sg * (T(1) + a * (T(1) - sg)));
  }
}
// du = g (silu(a) - res)
template <typename T>
inline void output_gate_du_row(const T* __restrict hx, const T* __restrict hp, const T* __restrict res,
                               const T* __restrict g, T* __restrict du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T a = hx[i] + hp[i];
    du[i] = g[i] * (a * sigmoid_fast(a) - res[i]);
  }
}
// dres = g - g u (the add's path minus the sub's, as the composed ops sum them)
template <typename T>
inline void output_gate_dres_row(const T* __restrict u, const T* __restrict g, T* __restrict dres, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dres[i] = g[i] - g[i] * u[i];
}

// All three in one pass (the layer's case): one sigmoid per element.
template <typename T>
inline void output_gate_grad_row(const T* __restrict hx, const T* __restrict hp, const T* __restrict u,
                                 const T* __restrict res, const T* __restrict g, T* __restrict da,
                                 T* __restrict du, T* __restrict dres, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T a = hx[i] + hp[i], sg = sigmoid_fast(a);
    da[i] = (g[i] * u[i]) * (sg * (T(1) + a * (T(1) - sg)));
    du[i] = g[i] * (a * sg - res[i]);
    dres[i] = g[i] - g[i] * u[i];
  }
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
      if (da && du && dres) {
        output_gate_grad_row(a1, a2, ur, rr, gr, da + r * D, du + r * D, dres + r * D, D);
        continue;
      }
      if (da) output_gate_da_row(a1, a2, ur, gr, da + r * D, D);
      if (du) output_gate_du_row(a1, a2, rr, gr, du + r * D, D);
      if (dres) output_gate_dres_row(ur, gr, dres + r * D, D);
    }
  });
}

}  // namespace megagrad::gates_cpu
