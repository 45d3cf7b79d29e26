// CPU kernels for the neural-network ops (autograd/ops_nn.cpp), in the style of llm.c: plain
// loops over contiguous buffers, forward and backward side by side.
//
// Dimension letters:
//   O  outer: the dims before the normalised dim, flattened (independent problems)
//   N  the normalised dim (softmax / log_softmax)
//   I  inner: the dims after the normalised dim, flattened (1 when it is the last dim)
//   B  rows: (B, C) logits for cross_entropy, (B, D) input of layer_norm
//   C  classes
//   D  features (layer_norm's normalised dim, an embedding row)
//   V  vocabulary: rows of an embedding table
//   L  lookups (embedding indices) or elements (dropout)
//
// Every buffer is contiguous in the order of its letters, e.g. x (O,N,I) means x[o*N*I + n*I + i].
// Threads split rows (or column blocks) with parallel_for; each output element is written by one
// thread with a fixed summation order, so results do not depend on the thread count.
//
// Sums over a row use kLanes independent accumulators: the compiler keeps them in SIMD
// registers (a single accumulator is a serial dependency chain that strict IEEE math may not
// reorder, so it would not vectorise). Exponentials use exp_fast (core/vec_math.h), not std::exp,
// which is one libm call per element and keeps the loops scalar.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include "core/parallel.h"
#include "core/rng.h"
#include "core/vec_math.h"

namespace megagrad::cpu {

template <typename T> inline constexpr int kLanes = 64 / sizeof(T);  // one 512-bit register

// Parallel grain in rows for rows of n elements.
inline int64_t row_grain(int64_t n) { return std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(n, 1)); }

// ---------------------------------------------------------------- row reductions

template <typename T> T row_max(const T* x, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L];
  for (int k = 0; k < L; ++k) acc[k] = -std::numeric_limits<T>::infinity();
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int k = 0; k < L; ++k) acc[k] = x[i + k] > acc[k] ? x[i + k] : acc[k];
  T m = -std::numeric_limits<T>::infinity();
  for (int k = 0; k < L; ++k) m = acc[k] > m ? acc[k] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

template <typename T> T row_sum(const T* x, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int k = 0; k < L; ++k) acc[k] += x[i + k];
  T s = 0;
  for (int k = 0; k < L; ++k) s += acc[k];
  for (; i < n; ++i) s += x[i];
  return s;
}

template <typename T> T row_dot(const T* x, const T* y, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int k = 0; k < L; ++k) acc[k] += x[i + k] * y[i + k];
  T s = 0;
  for (int k = 0; k < L; ++k) s += acc[k];
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

// sum (x[i] - c)^2: the second pass of a two-pass variance (no cancellation, unlike E[x^2]-E[x]^2).
template <typename T> T row_sq_dev(const T* x, T c, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int k = 0; k < L; ++k) {
      T d = x[i + k] - c;
      acc[k] += d * d;
    }
  T s = 0;
  for (int k = 0; k < L; ++k) s += acc[k];
  for (; i < n; ++i) s += (x[i] - c) * (x[i] - c);
  return s;
}

// sum exp(x[i] - c)
template <typename T> T row_sum_exp(const T* x, T c, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int k = 0; k < L; ++k) acc[k] += exp_fast(x[i + k] - c);
  T s = 0;
  for (int k = 0; k < L; ++k) s += acc[k];
  for (; i < n; ++i) s += exp_fast(x[i] - c);
  return s;
}

// ---------------------------------------------------------------- softmax / log_softmax
// y = softmax(x) = exp(x - m) / sum exp(x - m) along N, m = max along N (stable: exp <= 1).
// log_softmax: y = x - (m + log sum exp(x - m)).
// When I == 1 each (o) is one contiguous row. When I > 1 the N values of one problem are I
// apart, so we sweep whole (N, i-block) tiles: the inner loop runs over i, contiguous, and
// keeps a running max / sum per i.

inline constexpr int64_t kColumnBlock = 256;  // i-values per tile when I > 1

template <typename T, bool Log>
void softmax_forward(T* y, const T* x, int64_t O, int64_t N, int64_t I) {
  if (I == 1) {
    parallel_for(O, row_grain(N), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* xr = x + o * N;
        T* yr = y + o * N;
        T m = row_max(xr, N);
        if constexpr (Log) {
          T lse = m + std::log(row_sum_exp(xr, m, N));
          for (int64_t n = 0; n < N; ++n) yr[n] = xr[n] - lse;
        } else {
          for (int64_t n = 0; n < N; ++n) yr[n] = exp_fast(xr[n] - m);
          T inv = T(1) / row_sum(yr, N);
          for (int64_t n = 0; n < N; ++n) yr[n] *= inv;
        }
      }
    });
    return;
  }
  const int64_t nblk = (I + kColumnBlock - 1) / kColumnBlock;
  parallel_for(O * nblk, row_grain(N * kColumnBlock), [&](int64_t b, int64_t e) {
    std::vector<T> m((size_t)kColumnBlock), s((size_t)kColumnBlock);
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / nblk, i0 = (t % nblk) * kColumnBlock;
      const int64_t w = std::min(kColumnBlock, I - i0);
      const T* xo = x + o * N * I + i0;
      T* yo = y + o * N * I + i0;
      std::fill(m.begin(), m.begin() + w, -std::numeric_limits<T>::infinity());
      std::fill(s.begin(), s.begin() + w, T(0));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < w; ++i) m[i] = xo[n * I + i] > m[i] ? xo[n * I + i] : m[i];
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < w; ++i) {
          T v = exp_fast(xo[n * I + i] - m[i]);
          if constexpr (!Log) yo[n * I + i] = v;
          s[i] += v;
        }
      if constexpr (Log) {
        for (int64_t i = 0; i < w; ++i) s[i] = m[i] + std::log(s[i]);  // s now holds lse
        for (int64_t n = 0; n < N; ++n)
          for (int64_t i = 0; i < w; ++i) yo[n * I + i] = xo[n * I + i] - s[i];
      } else {
        for (int64_t i = 0; i < w; ++i) s[i] = T(1) / s[i];
        for (int64_t n = 0; n < N; ++n)
          for (int64_t i = 0; i < w; ++i) yo[n * I + i] *= s[i];
      }
    }
  });
}

// Backward, from the saved output y and the output gradient dy:
//   softmax:      dx = y * (dy - sum_N(dy * y))     (the Jacobian diag(y) - y y^T applied to dy)
//   log_softmax:  dx = dy - exp(y) * sum_N(dy)      (exp(y) is the softmax)
template <typename T, bool Log>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t O, int64_t N, int64_t I) {
  if (I == 1) {
    parallel_for(O, row_grain(N), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* dyr = dy + o * N;
        const T* yr = y + o * N;
        T* dxr = dx + o * N;
        if constexpr (Log) {
          T s = row_sum(dyr, N);
          for (int64_t n = 0; n < N; ++n) dxr[n] = dyr[n] - exp_fast(yr[n]) * s;
        } else {
          T s = row_dot(dyr, yr, N);
          for (int64_t n = 0; n < N; ++n) dxr[n] = yr[n] * (dyr[n] - s);
        }
      }
    });
    return;
  }
  const int64_t nblk = (I + kColumnBlock - 1) / kColumnBlock;
  parallel_for(O * nblk, row_grain(N * kColumnBlock), [&](int64_t b, int64_t e) {
    std::vector<T> s((size_t)kColumnBlock);
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / nblk, i0 = (t % nblk) * kColumnBlock;
      const int64_t w = std::min(kColumnBlock, I - i0);
      const int64_t base = o * N * I + i0;
      std::fill(s.begin(), s.begin() + w, T(0));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < w; ++i) s[i] += Log ? dy[base + n * I + i] : dy[base + n * I + i] * y[base + n * I + i];
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < w; ++i) {
          const int64_t k = base + n * I + i;
          if constexpr (Log) dx[k] = dy[k] - exp_fast(y[k]) * s[i];
          else dx[k] = y[k] * (dy[k] - s[i]);
        }
    }
  });
}

// ---------------------------------------------------------------- cross_entropy
// Fused log_softmax + NLL with label smoothing e, per row b with target t = target[b]:
//   logp[c] = x[c] - lse,  lse = m + log sum_c exp(x[c] - m)
//   loss_b  = (1-e) (-logp[t]) + e mean_c(-logp[c]) = lse - (1-e) x[t] - e mean_c x[c]
// Rows whose target is ignore_index get loss 0 and no gradient.

// losses (B) in double (the op sums them in a fixed order), lse (B) saved for backward;
// x (B,C), target (B), all targets already checked to be in [0,C) or ignore_index.
template <typename T>
void cross_entropy_forward(double* losses, T* lse, const T* x, const int64_t* target, int64_t B,
                           int64_t C, int64_t ignore_index, double e) {
  parallel_for(B, row_grain(C), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* xr = x + b * C;
      T m = row_max(xr, C);
      lse[b] = m + std::log(row_sum_exp(xr, m, C));
      const int64_t t = target[b];
      if (t == ignore_index) {
        losses[b] = 0;
        continue;
      }
      double mean_x = e == 0 ? 0.0 : (double)row_sum(xr, C) / (double)C;
      losses[b] = (double)lse[b] - (1 - e) * (double)xr[t] - e * mean_x;
    }
  });
}

// dx (B,C) = scale * (softmax(x) - (1-e) onehot(t) - e/C) on kept rows, 0 on ignored rows;
// scale = dloss / (number of kept rows), the mean's factor.
template <typename T>
void cross_entropy_backward(T* dx, const T* x, const T* lse, const int64_t* target, int64_t B,
                            int64_t C, int64_t ignore_index, double e, double scale) {
  const T sc = (T)scale, smooth = (T)(scale * e / (double)C), hit = (T)(scale * (1 - e));
  parallel_for(B, row_grain(C), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* dr = dx + b * C;
      const int64_t t = target[b];
      if (t == ignore_index) {
        std::fill(dr, dr + C, T(0));
        continue;
      }
      const T* xr = x + b * C;
      const T l = lse[b];
      for (int64_t c = 0; c < C; ++c) dr[c] = sc * exp_fast(xr[c] - l) - smooth;
      dr[t] -= hit;
    }
  });
}

// ---------------------------------------------------------------- layer_norm
// Per row of D features: mean, rstd = 1 / sqrt(var + eps) (biased var), xhat = (x - mean) rstd,
// y = xhat * weight + bias (weight, bias optional: null pointers).

// y (B,D), mean (B), rstd (B) from x (B,D), weight (D), bias (D).
template <typename T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                        int64_t B, int64_t D, double eps) {
  parallel_for(B, row_grain(D), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* xr = x + b * D;
      T* yr = y + b * D;
      T m = row_sum(xr, D) / (T)D;
      T r = (T)(1.0 / std::sqrt((double)(row_sq_dev(xr, m, D) / (T)D) + eps));
      mean[b] = m;
      rstd[b] = r;
      if (weight && bias)
        for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] - m) * r * weight[d] + bias[d];
      else if (weight)
        for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] - m) * r * weight[d];
      else if (bias)
        for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] - m) * r + bias[d];
      else
        for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] - m) * r;
    }
  });
}

// dx (B,D) from dy (B,D), x, weight (D, or null), mean, rstd. With dn = dy * weight (the
// gradient of xhat), mean and rstd depending on every x of the row give
//   dx = rstd * (dn - mean_D(dn) - xhat * mean_D(dn * xhat)).
template <typename T>
void layer_norm_backward_input(T* dx, const T* dy, const T* x, const T* weight, const T* mean,
                               const T* rstd, int64_t B, int64_t D) {
  constexpr int L = kLanes<T>;
  parallel_for(B, row_grain(D), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* dyr = dy + b * D;
      const T* xr = x + b * D;
      T* dxr = dx + b * D;
      const T m = mean[b], r = rstd[b];
      // One pass for both means, lane-wise.
      T acc_dn[L] = {}, acc_dnx[L] = {};
      int64_t d = 0;
      for (; d + L <= D; d += L)
        for (int k = 0; k < L; ++k) {
          T dn = weight ? dyr[d + k] * weight[d + k] : dyr[d + k];
          acc_dn[k] += dn;
          acc_dnx[k] += dn * (xr[d + k] - m) * r;
        }
      T s_dn = 0, s_dnx = 0;
      for (int k = 0; k < L; ++k) s_dn += acc_dn[k], s_dnx += acc_dnx[k];
      for (; d < D; ++d) {
        T dn = weight ? dyr[d] * weight[d] : dyr[d];
        s_dn += dn;
        s_dnx += dn * (xr[d] - m) * r;
      }
      const T mean_dn = s_dn / (T)D, mean_dnx = s_dnx / (T)D;
      if (weight)
        for (int64_t j = 0; j < D; ++j) dxr[j] = r * (dyr[j] * weight[j] - mean_dn - (xr[j] - m) * r * mean_dnx);
      else
        for (int64_t j = 0; j < D; ++j) dxr[j] = r * (dyr[j] - mean_dn - (xr[j] - m) * r * mean_dnx);
    }
  });
}

// dweight (D) = sum_B dy * xhat, dbias (D) = sum_B dy; either may be null. Column sums: threads
// take blocks of columns and walk all rows (contiguous inside the block), accumulating in double.
template <typename T>
void layer_norm_backward_params(T* dweight, T* dbias, const T* dy, const T* x, const T* mean,
                                const T* rstd, int64_t B, int64_t D) {
  parallel_for(D, std::max<int64_t>(16, kElementwiseGrain / std::max<int64_t>(B, 1)), [&](int64_t d0, int64_t d1) {
    const int64_t w = d1 - d0;
    std::vector<double> aw(dweight ? (size_t)w : 0, 0.0), ab(dbias ? (size_t)w : 0, 0.0);
    for (int64_t b = 0; b < B; ++b) {
      const T* dyr = dy + b * D + d0;
      const T* xr = x + b * D + d0;
      const T m = mean[b], r = rstd[b];
      if (dweight)
        for (int64_t j = 0; j < w; ++j) aw[(size_t)j] += (double)(dyr[j] * (xr[j] - m) * r);
      if (dbias)
        for (int64_t j = 0; j < w; ++j) ab[(size_t)j] += (double)dyr[j];
    }
    for (int64_t j = 0; j < w; ++j) {
      if (dweight) dweight[d0 + j] = (T)aw[(size_t)j];
      if (dbias) dbias[d0 + j] = (T)ab[(size_t)j];
    }
  });
}

// ---------------------------------------------------------------- embedding

// y (L,D) = weight[idx[l], :]; weight (V,D) read at row stride rs and column stride cs (a
// transposed or sliced table is read in place). idx already checked to be in [0,V).
template <typename T>
void embedding_forward(T* y, const T* weight, int64_t rs, int64_t cs, const int64_t* idx,
                       int64_t L, int64_t D) {
  parallel_for(L, row_grain(D), [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0; l < l1; ++l) {
      const T* w = weight + idx[l] * rs;
      T* yr = y + l * D;
      if (cs == 1) std::copy(w, w + D, yr);
      else for (int64_t d = 0; d < D; ++d) yr[d] = w[d * cs];
    }
  });
}

// dweight (V,D), zero on entry, += dy (L,D) scattered to rows idx[l]. A row may be hit by many
// lookups, so threads split the D columns, never the lookups: no two threads write one element,
// and each element sums its lookups in index order.
template <typename T>
void embedding_backward(T* dweight, const T* dy, const int64_t* idx, int64_t L, int64_t D) {
  parallel_for(D, std::max<int64_t>(16, kElementwiseGrain / std::max<int64_t>(L, 1)), [&](int64_t d0, int64_t d1) {
    for (int64_t l = 0; l < L; ++l) {
      T* dw = dweight + idx[l] * D;
      const T* g = dy + l * D;
      for (int64_t d = d0; d < d1; ++d) dw[d] += g[d];
    }
  });
}

// ---------------------------------------------------------------- dropout
// Element l is kept iff uniform(seed, first + l) >= p: a counter-based draw, so the mask depends
// only on (seed, first, l), never on how the loop is split.

// y (L) = x * keep / (1-p), mask (L) = keep.
template <typename T>
void dropout_forward(T* y, bool* mask, const T* x, int64_t L, double p, uint64_t seed, uint64_t first) {
  const T scale = (T)(1.0 / (1.0 - p));
  parallel_for(L, 4096, [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0; l < l1; ++l) {
      bool keep = uniform_at(seed, first + (uint64_t)l, 0.0, 1.0) >= p;
      mask[l] = keep;
      y[l] = keep ? x[l] * scale : T(0);
    }
  });
}

// dx (L) = dy * mask / (1-p): the same mask and scale as the forward.
template <typename T>
void dropout_backward(T* dx, const T* dy, const bool* mask, int64_t L, double p) {
  const T scale = (T)(1.0 / (1.0 - p));
  parallel_for(L, kElementwiseGrain, [&](int64_t l0, int64_t l1) {
    // The mask read as bytes (bool has no vector type for the compiler; a bool's byte is 0 or 1).
    const unsigned char* m = reinterpret_cast<const unsigned char*>(mask);
    for (int64_t l = l0; l < l1; ++l) dx[l] = dy[l] * ((T)m[l] * scale);
  });
}

}  // namespace megagrad::cpu
