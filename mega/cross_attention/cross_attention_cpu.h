// CPU kernels of the fused cross-attention of Mega's decoder (derivation:
// mega/cross_attention/cross_attention.md).
//
// Legend
//   B  batch                 L  target length (query rows)     S  source length (keys, values)
//   Z  query/key width       H  value width
//   i  query row (0..L-1), j source key (0..S-1)
//   BQ rows of a query block (kBlockQ), BK columns of a key block (kBlockK), both clipped to L / S
//   nq, nk the rows / columns of the block at hand (smaller at the end)
//
// Buffers: q (B,L,Z), k (B,S,Z), v (B,S,H) may be strided views with unit stride along Z / H
// (AttentionRows<T>, mega/attention/attention_types.h); out, dout, dq, dk, dv are contiguous;
// lse is (B,L); rel is (L+S-1): bias[i, j] = rel[L-1 + j - i]; mask is (B,S), 1 = pad.
//
// The work is the self-attention kernel's (mega/attention/attention_cpu.h) without chunks and
// without the causal mask, over a rectangle of L x S scores: per (b, query block), loop over the
// key blocks: Sblk = Qs K^T (gemm), one elementwise pass (bias, key mask, activation, dropout), then
// O += P V (gemm). The row passes, the dropout draws and the activations are that kernel's
// (add_bias_max, exp_shift_sum, act_row, softmax_back_row, act_back_row, dropout_row; activation.h).
// Nothing of size L x S is stored; the softmax keeps its per-row logsumexp for the backward.
//
// Threads: as the self-attention (attention_cpu::for_pieces): with at least as many batch elements
// as threads, each runs whole on one thread; else they run in turn and the gemms and the row passes
// use the threads. The bias gradient is summed per batch element, then over them in order, so
// results do not depend on the thread count.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include "mega/attention/attention_cpu.h"

namespace megagrad::cross_attention_cpu {

using Act = AttentionActivation;
using attention_cpu::kBlockK;
using attention_cpu::kBlockQ;
using attention_cpu::row_of;

struct CrossAttentionShape {
  int64_t B, L, S, Z, H;
};

// One call of the kernels.
template <typename T>
struct CrossAttentionProblem {
  CrossAttentionShape d;
  Act act;
  AttentionRows<T> q, k, v;
  const T* mask = nullptr;  // (B, S) with strides msb, msl; 1 = pad; null: no padding
  int64_t msb = 0, msl = 0;
  const T* rel = nullptr;    // (L+S-1): bias[i, j] = rel[L-1 + j - i] (simple and rotary alike)
  double softmax_scale = 1;  // Z^-0.5
  double p = 0;              // attention dropout; 0: none
  uint64_t seed = 0, first = 0;  // dropout counters: first + (b L + i) S + j
};

// The dropout multipliers of row i of batch element b, keys [j0, j0+n): the self-attention's
// draw with one "chunk" of S columns and row b L + i, i.e. counter first + (b L + i) S + j.
template <typename T>
inline void dropout_row(const CrossAttentionProblem<T>& pr, int64_t b, int64_t i, int64_t j0, T* keep, int64_t n) {
  attention_cpu::dropout_row(pr.p, pr.seed, pr.first, 0, 0, b * pr.d.L + i, j0, 1, pr.d.S, keep, n);
}
inline double dropout_keep(double p, uint64_t seed, uint64_t first, int64_t b, int64_t i, int64_t j, int64_t L,
                           int64_t S) {
  return attention_cpu::dropout_keep(p, seed, first, 0, 0, b * L + i, j, 1, S);
}

// The key masks of one batch element, in the form the passes use.
template <typename T>
struct SourceInfo {
  std::vector<T> key_add;        // (S) softmax: 0, or -inf for a padded key
  std::vector<T> key_keep;       // (S) laplace/relu2: 1, or 0 for a padded key
  std::vector<int64_t> visible;  // (S+1) prefix counts of unpadded keys
  T scale = 1;                   // the factor of q_i . k_j (the same for every row)

  explicit SourceInfo(int64_t S) : key_add((size_t)S), key_keep((size_t)S), visible((size_t)S + 1) {}

  // softmax: padded keys get -inf, factor Z^-0.5; laplace/relu2: padded keys get weight 0, factor
  // 1/n with n the count of unpadded keys (at least 1), or S without a mask. A source that is all
  // padding has no visible key: its rows get h = 0.
  void fill(const CrossAttentionProblem<T>& pr, int64_t b) {
    const int64_t S = pr.d.S;
    visible[0] = 0;
    for (int64_t j = 0; j < S; ++j) {
      const bool pad = pr.mask && pr.mask[b * pr.msb + j * pr.msl] != T(0);
      key_add[(size_t)j] = pad ? -std::numeric_limits<T>::infinity() : T(0);
      key_keep[(size_t)j] = pad ? T(0) : T(1);
      visible[(size_t)j + 1] = visible[(size_t)j] + !pad;
    }
    const double n = pr.mask ? (double)std::max<int64_t>(1, visible[(size_t)S]) : (double)S;
    scale = pr.act == Act::Softmax ? (T)pr.softmax_scale : (T)(1.0 / n);
  }
  // Whether keys [j0, j0+nk) hold an unpadded key (else the block is skipped).
  bool any_visible(int64_t j0, int64_t nk) const { return visible[(size_t)(j0 + nk)] != visible[(size_t)j0]; }
  // The mask of keys [j0, j0+nk), null when none of them is padded (the passes then skip it).
  attention_cpu::KeyMask<T> key_mask(int64_t j0, int64_t nk) const {
    if (visible[(size_t)(j0 + nk)] - visible[(size_t)j0] == nk) return {};
    return {&key_add[(size_t)j0], &key_keep[(size_t)j0]};
  }
};

// Qs (nq, Z) = the query rows [i0, i0+nq) of b times the score factor.
template <typename T>
void scaled_queries(const CrossAttentionProblem<T>& pr, T scale, int64_t b, int64_t i0, int64_t nq, T* Qs) {
  const int64_t Z = pr.d.Z;
  for (int64_t r = 0; r < nq; ++r) {
    const T* qr = row_of(pr.q, b, i0 + r);
    for (int64_t z = 0; z < Z; ++z) Qs[r * Z + z] = qr[z] * scale;
  }
}

// ---------------------------------------------------------------- forward
// out (B, L, H) = P~ V; lse (B, L): softmax only (else null), each row's logsumexp, +inf for a row
// with no visible key (its output is 0).
template <typename T>
void forward(const CrossAttentionProblem<T>& pr, T* out, T* lse) {
  const CrossAttentionShape& d = pr.d;
  const int64_t L = d.L, S = d.S, H = d.H, BQ = std::min(kBlockQ, L), BK = std::min(kBlockK, S);
  const bool softmax = pr.act == Act::Softmax, drop = pr.p > 0;
  const T ninf = -std::numeric_limits<T>::infinity();
  attention_cpu::for_pieces(d.B, [&](int64_t b0, int64_t b1) {
  std::vector<T> Sb((size_t)(BQ * BK)), Qs((size_t)(BQ * d.Z)), m((size_t)BQ), l((size_t)BQ);
  std::vector<T> Kd(drop ? (size_t)(BQ * BK) : 0);
  SourceInfo<T> si(S);
  for (int64_t b = b0; b < b1; ++b) {
    si.fill(pr, b);
    for (int64_t i0 = 0; i0 < L; i0 += BQ) {
      const int64_t nq = std::min(BQ, L - i0);
      T* O = out + (b * L + i0) * H;  // (nq, H)
      std::fill(m.begin(), m.end(), ninf);
      std::fill(l.begin(), l.end(), T(0));
      scaled_queries(pr, si.scale, b, i0, nq, Qs.data());
      bool first = true;  // the first visited key block writes O (beta = 0), the others add
      for (int64_t j0 = 0; j0 < S; j0 += BK) {
        const int64_t nk = std::min(BK, S - j0);
        if (!si.any_visible(j0, nk)) continue;
        gemm(false, true, nq, nk, d.Z, T(1), Qs.data(), d.Z, row_of(pr.k, b, j0), pr.k.ld, T(0), Sb.data(), nk);
        const attention_cpu::KeyMask<T> km = si.key_mask(j0, nk);
        // Sblk -> P~: bias, key mask, activation (attention_cpu::score_row_forward, the softmax
        // online: m, l per row, O rescaled when the max grows), then dropout (l sums P before
        // dropout, O the dropped P). The block has a visible key: every row's max is finite.
        attention_cpu::for_rows(nq, nk, [&](int64_t r) {
          const int64_t i = i0 + r;
          T* s = &Sb[(size_t)(r * nk)];
          const T* rel = pr.rel + (L - 1 + j0 - i);  // rel[jj] = bias(i, j0 + jj)
          attention_cpu::score_row_forward(pr.act, s, rel, km, nk, nk, m[(size_t)r], l[(size_t)r], O + r * H, H, first);
          if (drop) {
            T* keep = &Kd[(size_t)(r * nk)];
            dropout_row(pr, b, i, j0, keep, nk);
            for (int64_t jj = 0; jj < nk; ++jj) s[jj] *= keep[jj];
          }
        });
        // O (+)= P~ V
        gemm(false, false, nq, H, nk, T(1), Sb.data(), nk, row_of(pr.v, b, j0), pr.v.ld, first ? T(0) : T(1), O, H);
        first = false;
      }
      if (first) std::fill(O, O + nq * H, T(0));  // no visible key: an all-padding source
      if (softmax)
        for (int64_t r = 0; r < nq; ++r) {
          const T lr = l[(size_t)r];
          const T inv = lr > T(0) ? T(1) / lr : T(0);
          for (int64_t h = 0; h < H; ++h) O[r * H + h] *= inv;
          lse[b * L + i0 + r] = lr > T(0) ? m[(size_t)r] + std::log(lr) : std::numeric_limits<T>::infinity();
        }
    }
  }
  });
}

// ---------------------------------------------------------------- backward
// out (B,L,H) the forward's output, lse (B,L) its logsumexp (softmax), dout (B,L,H) = dLoss/dout.
// g.drel: (L+S-1) doubles, zeroed by the caller (added to).
template <typename T>
void backward(const CrossAttentionProblem<T>& pr, const T* out, const T* lse, const T* dout, const AttentionGrads<T>& g) {
  const CrossAttentionShape& d = pr.d;
  const int64_t L = d.L, S = d.S, H = d.H, Z = d.Z, BQ = std::min(kBlockQ, L), BK = std::min(kBlockK, S);
  const bool softmax = pr.act == Act::Softmax, drop = pr.p > 0;
  const bool need_ds = g.dq || g.dk || g.drel;
  if (!need_ds && !g.dv) return;
  // drel: each batch element sums into its own row; the rows are added in order at the end.
  const int64_t R = L + S - 1;
  std::vector<double> drel_b(g.drel && need_ds ? (size_t)(d.B * R) : 0, 0.0);
  attention_cpu::for_pieces(d.B, [&](int64_t b0, int64_t b1) {
  std::vector<T> Sb((size_t)(BQ * BK)), Pd((size_t)(BQ * BK)), dP((size_t)(BQ * BK));
  std::vector<T> Qs((size_t)(BQ * Z)), D((size_t)BQ), Kd(drop ? (size_t)(BQ * BK) : 0);
  // The dropped weights P~: their own buffer, except for the softmax without dropout (P~ = P).
  T* Pt = drop || !softmax ? Pd.data() : Sb.data();
  SourceInfo<T> si(S);
  for (int64_t b = b0; b < b1; ++b) {
    double* drel = drel_b.empty() ? nullptr : drel_b.data() + b * R;
    si.fill(pr, b);
    // dk, dv rows accumulate over the query blocks of b; rows of padded keys stay 0.
    if (g.dk) std::fill(g.dk + b * S * Z, g.dk + (b + 1) * S * Z, T(0));
    if (g.dv) std::fill(g.dv + b * S * H, g.dv + (b + 1) * S * H, T(0));
    for (int64_t i0 = 0; i0 < L; i0 += BQ) {
      const int64_t nq = std::min(BQ, L - i0);
      const int64_t row0 = b * L + i0;  // first (b, i) row of the block
      const T* dO = dout + row0 * H;    // (nq, H)
      if (g.dq) std::fill(g.dq + row0 * Z, g.dq + (row0 + nq) * Z, T(0));
      scaled_queries(pr, si.scale, b, i0, nq, Qs.data());
      // Softmax: D_i = sum_j P~_ij dP~_ij = dO_i . h_i, the row term of the softmax Jacobian.
      if (softmax && need_ds)
        for (int64_t r = 0; r < nq; ++r) D[(size_t)r] = cpu::row_dot(dO + r * H, out + (row0 + r) * H, H);
      for (int64_t j0 = 0; j0 < S; j0 += BK) {
        const int64_t nk = std::min(BK, S - j0);
        if (!si.any_visible(j0, nk)) continue;
        const T* Vb = row_of(pr.v, b, j0);
        const attention_cpu::KeyMask<T> km = si.key_mask(j0, nk);
        gemm(false, true, nq, nk, Z, T(1), Qs.data(), Z, row_of(pr.k, b, j0), pr.k.ld, T(0), Sb.data(), nk);
        // dP~ = dO V^T: the gradient of the dropped weights.
        if (need_ds) gemm(false, true, nq, nk, H, T(1), dO, H, Vb, pr.v.ld, T(0), dP.data(), nk);
        // One pass: Pt = P~ as the forward used it, and (when needed) dP~ -> dS:
        //   softmax dS = P~ dP~ - P D_i; laplace/relu2 dS = f'(s) mask keep dP~.
        attention_cpu::for_rows(nq, nk, [&](int64_t r) {
          const int64_t i = i0 + r;
          T* s = &Sb[(size_t)(r * nk)];
          T* pt = Pt + r * nk;
          T* ds = need_ds ? &dP[(size_t)(r * nk)] : nullptr;
          const T* rel = pr.rel + (L - 1 + j0 - i);
          T* keep = drop ? &Kd[(size_t)(r * nk)] : nullptr;
          if (drop) dropout_row(pr, b, i, j0, keep, nk);
          attention_cpu::score_row_backward(pr.act, s, rel, km, softmax ? lse[row0 + r] : T(0),
                                            need_ds && softmax ? D[(size_t)r] : T(0), keep, pt, ds, nk, nk);
        });
        // dV_j += sum_i P~_ij dO_i
        if (g.dv) gemm(true, false, nk, H, nq, T(1), Pt, nk, dO, H, T(1), g.dv + (b * S + j0) * H, H);
        if (!need_ds) continue;
        // drel[L-1 + j - i] += dS_ij (sequential: rows of a block share entries of drel).
        if (drel)
          for (int64_t r = 0; r < nq; ++r) {
            double* dr = drel + (L - 1 + j0 - (i0 + r));
            const T* ds = &dP[(size_t)(r * nk)];
            for (int64_t jj = 0; jj < nk; ++jj) dr[jj] += (double)ds[jj];
          }
        // s_ij = scale q_i . k_j: dK += dS^T Qs; dQ += dS K, times scale after the key loop.
        if (g.dk) gemm(true, false, nk, Z, nq, T(1), dP.data(), nk, Qs.data(), Z, T(1), g.dk + (b * S + j0) * Z, Z);
        if (g.dq)
          gemm(false, false, nq, Z, nk, T(1), dP.data(), nk, row_of(pr.k, b, j0), pr.k.ld, T(1), g.dq + row0 * Z, Z);
      }
      if (g.dq)
        for (int64_t x = row0 * Z; x < (row0 + nq) * Z; ++x) g.dq[x] *= si.scale;
    }
  }
  });
  for (size_t b = 0; b * R < drel_b.size(); ++b)  // in batch order: thread-count independent
    for (int64_t j = 0; j < R; ++j) g.drel[j] += drel_b[b * R + (size_t)j];
}

}  // namespace megagrad::cross_attention_cpu
