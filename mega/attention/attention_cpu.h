// CPU kernels of Mega's fused single-head attention inside chunks (derivation:
// mega/attention/attention.md).
//
// Legend
//   B  batch                 L  sequence length         C  chunk length (L when not chunking)
//   NC chunks (L / C)        Z  query/key width         H  value width
//   i  query row in its chunk, j key column in its chunk (both 0..C-1)
//   BQ rows of a query block, BK columns of a key block (kBlockQ, kBlockK, clipped to C)
//   nq, nk the rows / columns of the block at hand (smaller at the chunk's end)
//
// Buffers: q, k (B,L,Z) and v (B,L,H) may be strided views with unit stride along Z / H
// (Rows<T>); out, dout, dq, dk, dv are contiguous (B,L,.); lse is (B,L); rel is (2C-1).
//
// Work: for each (b, chunk, query block), loop over the key blocks: S = Qs K^T (one gemm,
// Qs = the query rows times their score factor), one elementwise pass over the BQ x BK block
// (bias, masks, activation, dropout), then O += P V (one gemm). Nothing of size C x C is stored,
// in the forward or in the backward: the largest buffers are BQ x BK, so memory stays linear in
// L with or without chunking. The softmax saves only its per-row logsumexp for the backward.
//
// Threads: the block loops run sequentially and OpenBLAS threads each gemm; the elementwise
// passes split the rows of a block with parallel_for (never around a gemm: the pools must not
// nest). Every element is computed by one thread in a fixed order, and the bias-gradient sums
// run sequentially, so results do not depend on the thread count.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include "backends/cpu/blas.h"
#include "core/parallel.h"
#include "core/rng.h"

namespace megagrad::attention_cpu {

// Block sizes: large enough that the gemms run near peak (at Z = 64, H = 160, one thread,
// 256 x 256 was 5-8% faster than 128 x 256 in float32 and within 5% of 512-wide blocks), small
// enough that a block (256 KiB in float32) stays in L2.
inline constexpr int64_t kBlockQ = 256;  // query rows per block
inline constexpr int64_t kBlockK = 256;  // key columns per block
inline constexpr int64_t kRowGrainElems = 8192;  // elements per task of an elementwise pass

enum class Act { Softmax, Laplace, Relu2 };

// The official laplace (fairseq utils.laplace): rounded constants mu = 0.707107 ~ sqrt(1/2),
// sigma = 0.282095 ~ sqrt(1/(4 pi)). The rounded values are what the reference outputs use.
inline constexpr double kLaplaceMu = 0.707107;
inline constexpr double kLaplaceSigma = 0.282095;

template <typename T> inline T act_f(Act a, T x) {
  if (a == Act::Relu2) { T r = x > T(0) ? x : T(0); return r * r; }
  const T inv = T(1.0 / (kLaplaceSigma * 1.4142135623730951));
  return T(0.5) * (T(1) + std::erf((x - T(kLaplaceMu)) * inv));
}
template <typename T> inline T act_df(Act a, T x) {
  if (a == Act::Relu2) return x > T(0) ? T(2) * x : T(0);
  const T inv = T(1.0 / (kLaplaceSigma * 1.4142135623730951));
  const T norm = T(1.0 / (kLaplaceSigma * 2.5066282746310002));  // 1 / (sigma sqrt(2 pi))
  T u = (x - T(kLaplaceMu)) * inv;
  return norm * std::exp(-u * u);
}

struct Dims {
  int64_t B, L, Z, H, C, NC;
};

// A (B, L, W) operand with unit stride along W: row t of batch b starts at p + b*sb + t*ld.
template <typename T>
struct Rows {
  const T* p;
  int64_t sb, ld;
  const T* row(int64_t b, int64_t t) const { return p + b * sb + t * ld; }
};

template <typename T>
struct Problem {
  Dims d;
  Act act;
  bool causal;
  Rows<T> q, k, v;
  const T* mask = nullptr;  // (B, L) with strides msb, msl; 1 = pad; null: no padding
  int64_t msb = 0, msl = 0;
  const T* rel = nullptr;   // (2C-1): bias[i, j] = rel[C-1 + j - i] (simple and rotary alike)
  double softmax_scale = 1;  // Z^-0.5
  double p = 0;             // attention dropout; 0: none
  uint64_t seed = 0, first = 0;
};

// The dropout multiplier of score (b, chunk, i, j): 1/(1-p) when kept, else 0. A counter-based
// draw, so the backward regenerates the forward's mask and no thread split changes it.
inline double dropout_keep(double p, uint64_t seed, uint64_t first, int64_t b, int64_t c, int64_t i,
                           int64_t j, int64_t NC, int64_t C) {
  uint64_t counter = first + (uint64_t)((((b * NC + c) * C + i) * C) + j);
  return uniform_at(seed, counter, 0.0, 1.0) >= p ? 1.0 / (1.0 - p) : 0.0;
}

// ---------------------------------------------------------------- vectorisable helpers
// std::exp is a library call per element; the softmax passes exponentiate every score, so they
// use this form, which the compiler vectorises: x = n ln2 + r with |r| <= ln2/2, exp(r) by a
// polynomial (float: Cephes expf's; double: Taylor to r^13, truncation < 1e-17), and 2^n through
// the exponent bits (n read off the rounding constant's mantissa). Within 2 ulp of std::exp;
// exactly 0 below the smallest normal (so exp(-inf) = 0 for masked scores). For x <= ~88 (float)
// / 709 (double): the passes only exponentiate x - max <= 0.
template <typename T> inline T fast_exp(T x);
template <> inline float fast_exp<float>(float x) {
  const bool under = x < -87.3f;
  x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(magic);
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 in two parts (Cody-Waite)
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  return under ? 0.0f : p * std::bit_cast<float>((ni + 127) << 23);
}
template <> inline double fast_exp<double>(double x) {
  const bool under = x < -708.3;
  x = x < -708.3 ? -708.3 : (x > 709.0 ? 709.0 : x);
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  const double t = x * 1.4426950408889634 + magic;
  const double n = t - magic;
  const int64_t ni = std::bit_cast<int64_t>(t) - std::bit_cast<int64_t>(magic);
  const double r = (x - n * 6.93145751953125E-1) - n * 1.42860682030941723212E-6;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r + 1.0;
  return under ? 0.0 : p * std::bit_cast<double>((ni + 1023) << 52);
}

// Row reductions with kLanes independent accumulators (one SIMD register): a single
// accumulator is a serial chain that strict IEEE math may not reorder, so it would not vectorise.
template <typename T> inline constexpr int64_t kLanes = 64 / sizeof(T);

template <typename T> T row_max(const T* x, int64_t n) {
  constexpr int64_t W = kLanes<T>;
  T acc[W];
  for (int64_t w = 0; w < W; ++w) acc[w] = -std::numeric_limits<T>::infinity();
  int64_t j = 0;
  for (; j + W <= n; j += W)
    for (int64_t w = 0; w < W; ++w) acc[w] = x[j + w] > acc[w] ? x[j + w] : acc[w];
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t w = 0; w < W; ++w) m = acc[w] > m ? acc[w] : m;
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// x[j] = exp(x[j] - shift) for j < n; returns the sum.
template <typename T> T exp_shift_sum(T* x, int64_t n, T shift) {
  constexpr int64_t W = kLanes<T>;
  T acc[W] = {};
  int64_t j = 0;
  for (; j + W <= n; j += W)
    for (int64_t w = 0; w < W; ++w) {
      T e = fast_exp(x[j + w] - shift);
      x[j + w] = e;
      acc[w] += e;
    }
  T sum = 0;
  for (int64_t w = 0; w < W; ++w) sum += acc[w];
  for (; j < n; ++j) sum += (x[j] = fast_exp(x[j] - shift));
  return sum;
}

// ---------------------------------------------------------------- per-chunk masks

// The masks of one (b, chunk), in the form the block passes use.
template <typename T>
struct ChunkInfo {
  std::vector<T> key_add;          // (C) softmax: 0, or -inf for a masked key
  std::vector<T> key_keep;         // (C) laplace/relu2: 1, or 0 for a masked key
  std::vector<int64_t> visible;    // (C+1) prefix counts of keys that are not masked
  std::vector<T> scale;            // (C) the factor of q_i . k_j in row i's scores

  explicit ChunkInfo(int64_t C)
      : key_add((size_t)C), key_keep((size_t)C), visible((size_t)C + 1), scale((size_t)C) {}

  // softmax: padded keys get -inf unless every key of the chunk is padding; factor Z^-0.5.
  // laplace/relu2: padded keys get weight 0 (all of them in an all-padding chunk); factor 1/n_i
  // with n_i = i+1 when causal (wins over padding), else the count of non-padding keys (>= 1),
  // else C.
  void fill(const Problem<T>& pr, int64_t b, int64_t c) {
    const int64_t C = pr.d.C;
    int64_t npad = 0;
    for (int64_t j = 0; j < C; ++j) npad += pr.mask && pr.mask[b * pr.msb + (c * C + j) * pr.msl] != T(0);
    const bool mask_pads = !(pr.act == Act::Softmax && npad == C);
    visible[0] = 0;
    for (int64_t j = 0; j < C; ++j) {
      const bool hidden = mask_pads && pr.mask && pr.mask[b * pr.msb + (c * C + j) * pr.msl] != T(0);
      key_add[(size_t)j] = hidden ? -std::numeric_limits<T>::infinity() : T(0);
      key_keep[(size_t)j] = hidden ? T(0) : T(1);
      visible[(size_t)j + 1] = visible[(size_t)j] + !hidden;
    }
    for (int64_t i = 0; i < C; ++i) {
      double n = pr.causal ? (double)(i + 1) : pr.mask ? (double)std::max<int64_t>(1, C - npad) : (double)C;
      scale[(size_t)i] = pr.act == Act::Softmax ? (T)pr.softmax_scale : (T)(1.0 / n);
    }
  }
  // Keys [j0, j0+nk) worth visiting for query rows [i0, i0+nq): clipped at the causal
  // diagonal; 0 when none is visible.
  int64_t key_extent(const Problem<T>& pr, int64_t i0, int64_t nq, int64_t j0, int64_t nk) const {
    if (pr.causal) nk = std::min(nk, i0 + nq - j0);
    if (nk <= 0 || visible[(size_t)(j0 + nk)] == visible[(size_t)j0]) return 0;
    return nk;
  }
};

// Row i sees keys j0 + jj for jj < causal_end (the causal diagonal; nk without causal).
inline int64_t causal_end(bool causal, int64_t i, int64_t j0, int64_t nk) {
  return causal ? std::clamp<int64_t>(i - j0 + 1, 0, nk) : nk;
}

// Qs (nq, Z) = the query rows [i0, i0+nq) of (b, chunk c) times their score factor.
template <typename T>
void scaled_queries(const Problem<T>& pr, const ChunkInfo<T>& ci, int64_t b, int64_t c, int64_t i0, int64_t nq,
                    T* Qs) {
  const int64_t Z = pr.d.Z;
  for (int64_t r = 0; r < nq; ++r) {
    const T* qr = pr.q.row(b, c * pr.d.C + i0 + r);
    const T s = ci.scale[(size_t)(i0 + r)];
    for (int64_t z = 0; z < Z; ++z) Qs[r * Z + z] = qr[z] * s;
  }
}

// S (nq, ldS) = Qs K^T for the keys [j0, j0+nk) of (b, chunk c).
template <typename T>
void scores(const Problem<T>& pr, int64_t b, int64_t c, const T* Qs, int64_t nq, int64_t j0, int64_t nk, T* S,
            int64_t ldS) {
  gemm(false, true, nq, nk, pr.d.Z, T(1), Qs, pr.d.Z, pr.k.row(b, c * pr.d.C + j0), pr.k.ld, T(0), S, ldS);
}

// Runs f(r) for the rows r of a block of nq rows and nk columns, split over threads.
template <typename F> void for_rows(int64_t nq, int64_t nk, F&& f) {
  parallel_for(nq, std::max<int64_t>(1, kRowGrainElems / std::max<int64_t>(nk, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) f(r);
  });
}

// ---------------------------------------------------------------- forward
// out (B, L, H) = P V per chunk; lse (B, L): softmax only (else null), the logsumexp of each
// row's scores, +inf for a row where every key is masked (its output is 0).
template <typename T>
void forward(const Problem<T>& pr, T* out, T* lse) {
  const Dims& d = pr.d;
  const int64_t C = d.C, H = d.H, BQ = std::min(kBlockQ, C), BK = std::min(kBlockK, C);
  const bool softmax = pr.act == Act::Softmax, drop = pr.p > 0;
  const T ninf = -std::numeric_limits<T>::infinity();
  std::vector<T> S((size_t)(BQ * BK)), Qs((size_t)(BQ * d.Z)), m((size_t)BQ), l((size_t)BQ);
  ChunkInfo<T> ci(C);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t c = 0; c < d.NC; ++c) {
      ci.fill(pr, b, c);
      for (int64_t i0 = 0; i0 < C; i0 += BQ) {
        const int64_t nq = std::min(BQ, C - i0);
        T* O = out + (b * d.L + c * C + i0) * H;  // (nq, H)
        std::fill(O, O + nq * H, T(0));
        std::fill(m.begin(), m.end(), ninf);
        std::fill(l.begin(), l.end(), T(0));
        scaled_queries(pr, ci, b, c, i0, nq, Qs.data());
        for (int64_t j0 = 0; j0 < C; j0 += BK) {
          const int64_t nk = ci.key_extent(pr, i0, nq, j0, std::min(BK, C - j0));
          if (nk == 0) continue;
          scores(pr, b, c, Qs.data(), nq, j0, nk, S.data(), nk);
          // S -> P (dropped): add the bias, mask, apply the activation. The softmax runs online
          // (FlashAttention): m and l carry the row max and the sum of exp(s - m) over the key
          // blocks so far, and O is rescaled when the max grows. l sums P before dropout; O sums
          // the dropped P, so O / l is the dropped attention applied to V.
          for_rows(nq, nk, [&](int64_t r) {
            const int64_t i = i0 + r, ve = causal_end(pr.causal, i, j0, nk);
            T* s = &S[(size_t)(r * nk)];
            const T* rel = pr.rel + (C - 1 + j0 - i);  // rel[jj] = bias(i, j0 + jj)
            if (softmax) {
              const T* ka = &ci.key_add[(size_t)j0];
              for (int64_t jj = 0; jj < ve; ++jj) s[jj] += rel[jj] + ka[jj];
              std::fill(s + ve, s + nk, ninf);
              const T mnew = std::max(m[(size_t)r], row_max(s, ve));
              if (mnew == ninf) {  // nothing visible in this row yet
                std::fill(s, s + nk, T(0));
                return;
              }
              const T sum = exp_shift_sum(s, nk, mnew);
              const T corr = fast_exp(m[(size_t)r] - mnew);
              l[(size_t)r] = l[(size_t)r] * corr + sum;
              m[(size_t)r] = mnew;
              if (corr != T(1))
                for (int64_t h = 0; h < H; ++h) O[r * H + h] *= corr;
            } else {
              const T* kk = &ci.key_keep[(size_t)j0];
              for (int64_t jj = 0; jj < ve; ++jj) s[jj] = act_f(pr.act, s[jj] + rel[jj]) * kk[jj];
              std::fill(s + ve, s + nk, T(0));
            }
            if (drop)
              for (int64_t jj = 0; jj < ve; ++jj)
                s[jj] *= (T)dropout_keep(pr.p, pr.seed, pr.first, b, c, i, j0 + jj, d.NC, C);
          });
          // O += P V
          gemm(false, false, nq, H, nk, T(1), S.data(), nk, pr.v.row(b, c * C + j0), pr.v.ld, T(1), O, H);
        }
        if (softmax)
          for (int64_t r = 0; r < nq; ++r) {
            const T lr = l[(size_t)r];
            const T inv = lr > T(0) ? T(1) / lr : T(0);
            for (int64_t h = 0; h < H; ++h) O[r * H + h] *= inv;
            lse[b * d.L + c * C + i0 + r] =
                lr > T(0) ? m[(size_t)r] + std::log(lr) : std::numeric_limits<T>::infinity();
          }
      }
    }
}

// ---------------------------------------------------------------- backward
// Gradients to compute (null: not wanted). dq, dk, dv: contiguous (B,L,.) and zero on entry;
// drel (2C-1): the gradient of the Toeplitz bias table, summed over batch and chunks, zero on
// entry (the op maps it to the simple weight or to the rotary alpha, beta).
template <typename T>
struct Grads {
  T* dq = nullptr;
  T* dk = nullptr;
  T* dv = nullptr;
  double* drel = nullptr;
};

// out (B,L,H) the forward's output, lse (B,L) its logsumexp (softmax), dout (B,L,H) = dLoss/dout.
template <typename T>
void backward(const Problem<T>& pr, const T* out, const T* lse, const T* dout, const Grads<T>& g) {
  const Dims& d = pr.d;
  const int64_t C = d.C, H = d.H, Z = d.Z, BQ = std::min(kBlockQ, C), BK = std::min(kBlockK, C);
  const bool softmax = pr.act == Act::Softmax, drop = pr.p > 0;
  const bool need_ds = g.dq || g.dk || g.drel;
  if (!need_ds && !g.dv) return;
  std::vector<T> S((size_t)(BQ * BK)), Pd((size_t)(BQ * BK)), dP((size_t)(BQ * BK));
  std::vector<T> Qs((size_t)(BQ * Z)), D((size_t)BQ);
  // The dropped weights P~: their own buffer, except for the softmax without dropout (P~ = P).
  T* Pt = drop || !softmax ? Pd.data() : S.data();
  ChunkInfo<T> ci(C);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t c = 0; c < d.NC; ++c) {
      ci.fill(pr, b, c);
      for (int64_t i0 = 0; i0 < C; i0 += BQ) {
        const int64_t nq = std::min(BQ, C - i0);
        const int64_t row0 = b * d.L + c * C + i0;  // first (b, t) row of the block
        const T* dO = dout + row0 * H;               // (nq, H)
        scaled_queries(pr, ci, b, c, i0, nq, Qs.data());
        // Softmax: D_i = sum_j P~_ij dP~_ij = dO_i . O_i, the row term of the softmax Jacobian
        // (with dropout, P~ is the dropped P: O = P~ V).
        if (softmax && need_ds)
          for (int64_t r = 0; r < nq; ++r) {
            T acc = 0;
            for (int64_t h = 0; h < H; ++h) acc += dO[r * H + h] * out[(row0 + r) * H + h];
            D[(size_t)r] = acc;
          }
        for (int64_t j0 = 0; j0 < C; j0 += BK) {
          const int64_t nk = ci.key_extent(pr, i0, nq, j0, std::min(BK, C - j0));
          if (nk == 0) continue;
          const T* Vb = pr.v.row(b, c * C + j0);
          scores(pr, b, c, Qs.data(), nq, j0, nk, S.data(), nk);
          // Recompute the block as the forward did. After this pass S holds
          //   softmax: P (before dropout), from the saved logsumexp: P = exp(s - lse_i);
          //   laplace/relu2: G = f'(s) * masks * dropout, so that dS = G * dP~;
          // and Pt holds the dropped weights P~ = P * dropout, as the forward used them.
          for_rows(nq, nk, [&](int64_t r) {
            const int64_t i = i0 + r, ve = causal_end(pr.causal, i, j0, nk);
            T* s = &S[(size_t)(r * nk)];
            T* pt = Pt + r * nk;
            const T* rel = pr.rel + (C - 1 + j0 - i);
            if (softmax) {
              const T* ka = &ci.key_add[(size_t)j0];
              const T shift = lse[row0 + r];
              for (int64_t jj = 0; jj < ve; ++jj) s[jj] = fast_exp(s[jj] + rel[jj] + ka[jj] - shift);
              std::fill(s + ve, s + nk, T(0));
              if (drop)
                for (int64_t jj = 0; jj < nk; ++jj)
                  pt[jj] = jj < ve ? s[jj] * (T)dropout_keep(pr.p, pr.seed, pr.first, b, c, i, j0 + jj, d.NC, C) : T(0);
            } else {
              const T* kk = &ci.key_keep[(size_t)j0];
              for (int64_t jj = 0; jj < ve; ++jj) {
                const T x = s[jj] + rel[jj];
                pt[jj] = act_f(pr.act, x) * kk[jj];
                s[jj] = act_df(pr.act, x) * kk[jj];
              }
              std::fill(s + ve, s + nk, T(0));
              std::fill(pt + ve, pt + nk, T(0));
              if (drop)
                for (int64_t jj = 0; jj < ve; ++jj) {
                  const T keep = (T)dropout_keep(pr.p, pr.seed, pr.first, b, c, i, j0 + jj, d.NC, C);
                  pt[jj] *= keep;
                  s[jj] *= keep;
                }
            }
          });
          // dV_j += sum_i P~_ij dO_i   (dv = P~^T dO)
          if (g.dv)
            gemm(true, false, nk, H, nq, T(1), Pt, nk, dO, H, T(1), g.dv + (row0 - i0 + j0) * H, H);
          if (!need_ds) continue;
          // dP~ = dO V^T: the gradient of the dropped weights.
          gemm(false, true, nq, nk, H, T(1), dO, H, Vb, pr.v.ld, T(0), dP.data(), nk);
          // dS, the gradient of the scores (after the bias, before the activation):
          //   softmax: dS = P * (dP - D_i) with dP = dP~ * dropout, i.e. P~ dP~ - P D_i;
          //   laplace/relu2: dS = f'(s) * masks * dropout * dP~ = G dP~.
          for_rows(nq, nk, [&](int64_t r) {
            T* ds = &dP[(size_t)(r * nk)];
            const T* s = &S[(size_t)(r * nk)];
            const T* pt = Pt + r * nk;
            if (softmax) {
              const T Dr = D[(size_t)r];
              for (int64_t jj = 0; jj < nk; ++jj) ds[jj] = pt[jj] * ds[jj] - s[jj] * Dr;
            } else {
              for (int64_t jj = 0; jj < nk; ++jj) ds[jj] *= s[jj];
            }
          });
          // The bias enters every score with weight 1: drel[C-1 + j - i] += dS_ij (sequential:
          // rows of one block share entries of drel).
          if (g.drel)
            for (int64_t r = 0; r < nq; ++r) {
              double* dr = g.drel + (C - 1 + j0 - (i0 + r));
              const T* ds = &dP[(size_t)(r * nk)];
              for (int64_t jj = 0; jj < nk; ++jj) dr[jj] += (double)ds[jj];
            }
          // s_ij = scale_i q_i . k_j: dK_j += sum_i dS_ij (scale_i q_i) = dS^T Qs, and
          // dQ_i += sum_j dS_ij k_j, times scale_i once the row is complete (below).
          if (g.dk)
            gemm(true, false, nk, Z, nq, T(1), dP.data(), nk, Qs.data(), Z, T(1), g.dk + (row0 - i0 + j0) * Z, Z);
          if (g.dq)
            gemm(false, false, nq, Z, nk, T(1), dP.data(), nk, pr.k.row(b, c * C + j0), pr.k.ld, T(1),
                 g.dq + row0 * Z, Z);
        }
        if (g.dq)
          for (int64_t r = 0; r < nq; ++r)
            for (int64_t z = 0; z < Z; ++z) g.dq[(row0 + r) * Z + z] *= ci.scale[(size_t)(i0 + r)];
      }
    }
}

}  // namespace megagrad::attention_cpu
