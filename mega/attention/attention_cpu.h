// CPU kernels of Mega's fused single-head attention inside chunks (derivation:
// mega/attention/attention.md).
//
// Legend
//   B  batch                 L  sequence length         C  chunk length (L when not chunking)
//   NC chunks (L / C)        Z  query/key width         H  value width
//   i  query row in its chunk, j key column in its chunk (both 0..C-1)
//   BQ rows of a query block, BK columns of a key block (kBlockQ or kBlockQCausal, kBlockK,
//      clipped to C)
//   nq, nk the rows / columns of the block at hand (smaller at the chunk's end)
//
// Buffers: q, k (B,L,Z) and v (B,L,H) may be strided views with unit stride along Z / H
// (AttentionRows<T>); out, dout, dq, dk, dv are contiguous (B,L,.); lse is (B,L); rel is (2C-1).
// The argument structs are those of attention_types.h, shared with the CUDA launchers.
//
// Work: for each (b, chunk, query block), loop over the key blocks: S = Qs K^T (one gemm,
// Qs = the query rows times their score factor), one elementwise pass over the BQ x BK block
// (bias, masks, activation, dropout), then O += P V (one gemm). The backward computes dP~ = dO V^T
// before its pass, so that one pass makes both P~ and dS. Nothing of size C x C is stored, in the
// forward or in the backward: the largest buffers are BQ x BK, so memory stays linear in L with or
// without chunking. The softmax saves only its per-row logsumexp for the backward.
//
// Speed: the passes are written so that GCC vectorises every loop of them (checked with
// -fopt-info-vec): no libm calls (exp_fast, erf_fast: core/vec_math.h, one exp for every op), row
// maxima as integer maxima, sums with one accumulator per SIMD lane, the dropout draws inline
// (dropout_row), the activation a template parameter rather than a switch per element. What
// remains is mostly OpenBLAS (the profile is in attention.md, "Cost and threads").
//
// Threads (for_pieces): with at least as many (batch, chunk) pairs as threads, each pair runs whole
// on one thread; else the pairs run in turn, the gemms (backends/cpu/blas.cpp) split their blocks
// over the threads and the elementwise passes split the rows of a block (for_rows). Every element
// is computed in a fixed order, and the bias gradient is summed per pair, then over the pairs in
// order, so results do not depend on the thread count.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include "backends/cpu/blas.h"
#include "backends/cpu/nn_kernels.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/vec_math.h"
#include "mega/attention/activation.h"
#include "mega/attention/attention_types.h"

namespace megagrad::attention_cpu {

// Block sizes: large enough that the gemms run near peak, small enough that a block (256 KiB in
// float32) stays in L2. Causal: the blocks on the diagonal compute their masked upper triangle
// too, and query blocks of 128 rows waste less of that (at L = 512, 128 x 256 blocks compute 1.25
// times the visible triangle, 256 x 256 blocks 1.5 times). The timings behind these choices are in
// attention.md, "Cost and threads".
inline constexpr int64_t kBlockQ = 256;        // query rows per block
inline constexpr int64_t kBlockQCausal = 128;  // query rows per block, causal
inline constexpr int64_t kBlockK = 256;        // key columns per block
inline constexpr int64_t kRowGrainElems = 8192;  // elements per task of an elementwise pass

using Act = AttentionActivation;  // the one enum, attention_types.h

// act_f, act_f_df (laplace, relu2): activation.h, shared with the CUDA kernels.

// A row of a (B, L, W) operand.
template <typename T>
inline const T* row_of(const AttentionRows<T>& r, int64_t b, int64_t t) {
  return r.p + b * r.sb + t * r.ld;
}

// The dropout multiplier of score (b, chunk, i, j): 1/(1-p) when kept, else 0. A counter-based
// draw, so the backward regenerates the forward's mask and no thread split changes it.
inline double dropout_keep(double p, uint64_t seed, uint64_t first, int64_t b, int64_t c, int64_t i,
                           int64_t j, int64_t NC, int64_t C) {
  uint64_t counter = first + (uint64_t)((((b * NC + c) * C + i) * C) + j);
  return uniform_at(seed, counter, 0.0, 1.0) >= p ? 1.0 / (1.0 - p) : 0.0;
}

// The same multipliers for one row of a block: keep[jj] = dropout_keep(.., i, j0 + jj, ..) for
// jj < n, exactly, in a loop that vectorises (uniform_at is a call per element: ~10 ns, and
// dropout made the passes 4 times slower). Philox4x32-10 as core/rng.cpp's philox4x32 with
// counter_hi = 0, inline; and u >= p is compared in integers: uniform_at's u is k 2^-53 for the
// 53 bits k = ((r0 << 21) ^ r1) mod 2^53 (uint_to_unit), so u >= p iff k >= ceil(p 2^53).
template <typename T>
void dropout_row(double p, uint64_t seed, uint64_t first, int64_t b, int64_t c, int64_t i, int64_t j0, int64_t NC,
                 int64_t C, T* __restrict keep, int64_t n) {
  const uint64_t counter0 = first + (uint64_t)((((b * NC + c) * C + i) * C) + j0);
  const uint64_t threshold = (uint64_t)std::ceil(p * 9007199254740992.0);  // p 2^53
  const T scale = (T)(1.0 / (1.0 - p));
  const uint32_t key0 = (uint32_t)seed, key1 = (uint32_t)(seed >> 32);
  for (int64_t jj = 0; jj < n; ++jj) {
    const uint64_t counter = counter0 + (uint64_t)jj;
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0, k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
      const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
      c1 = (uint32_t)p1, c3 = (uint32_t)p0, c0 = n0, c2 = n2;
      k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    }
    const uint64_t bits = (((uint64_t)c0 << 21) ^ (uint64_t)c1) & ((1ull << 53) - 1);
    keep[jj] = bits >= threshold ? scale : T(0);
  }
}

// ---------------------------------------------------------------- vectorisable helpers
// Row passes. Sums use kLanes independent accumulators (one SIMD register): a single accumulator
// is a serial chain that strict IEEE math may not reorder, so it would not vectorise. The
// pointers of one pass never alias (__restrict lets the compiler see it).
template <typename T> inline constexpr int64_t kLanes = 64 / sizeof(T);

// A float's bits as a signed integer whose order is the float's (flip the magnitude bits of the
// negatives), and back (the map is its own inverse). Row maxima are integer max reductions of
// these: GCC vectorises those, but not a float max under strict IEEE math (it must keep the
// order of NaN and signed-zero comparisons), not even with one accumulator per lane.
template <typename T> using OrderedInt = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
template <typename T> inline OrderedInt<T> to_ordered(T x) {
  using I = OrderedInt<T>;
  const I b = std::bit_cast<I>(x);
  return b ^ ((b >> (8 * sizeof(T) - 1)) & std::numeric_limits<I>::max());
}
template <typename T> inline T from_ordered(OrderedInt<T> k) {
  return std::bit_cast<T>(k ^ ((k >> (8 * sizeof(T) - 1)) & std::numeric_limits<OrderedInt<T>>::max()));
}

// Softmax, forward: s[j] += rel[j] + add[j] (add: the key mask, 0 or -inf; null when no key of
// the block is masked, which adds nothing) for j < n, in the same pass as the row's max (-inf
// for n = 0).
template <typename T> T add_bias_max(T* __restrict s, const T* __restrict rel, const T* __restrict add, int64_t n) {
  OrderedInt<T> km = to_ordered(-std::numeric_limits<T>::infinity());
  if (add)
    for (int64_t j = 0; j < n; ++j) {
      const T x = s[j] + (rel[j] + add[j]);
      s[j] = x;
      const OrderedInt<T> k = to_ordered(x);
      km = k > km ? k : km;
    }
  else
    for (int64_t j = 0; j < n; ++j) {
      const T x = s[j] + rel[j];
      s[j] = x;
      const OrderedInt<T> k = to_ordered(x);
      km = k > km ? k : km;
    }
  return from_ordered<T>(km);
}

// x[j] = exp(x[j] - shift) for j < n; returns the sum.
template <typename T> T exp_shift_sum(T* __restrict x, int64_t n, T shift) {
  constexpr int64_t W = kLanes<T>;
  T acc[W] = {};
  int64_t j = 0;
  for (; j + W <= n; j += W)
    for (int64_t w = 0; w < W; ++w) {
      T e = exp_fast(x[j + w] - shift);
      x[j + w] = e;
      acc[w] += e;
    }
  T sum = 0;
  for (int64_t w = 0; w < W; ++w) sum += acc[w];
  if (j == n) return sum;
  // The tail (n not a multiple of W, e.g. rows of 100) as one more vector through a padded copy:
  // the exps there were scalar calls (the running sum keeps that loop serial), ~40% of the pass.
  // The sum still adds the tail's terms one by one, in order.
  T t[W];
  const int64_t r = n - j;
  for (int64_t w = 0; w < W; ++w) t[w] = w < r ? x[j + w] - shift : T(0);
  for (int64_t w = 0; w < W; ++w) t[w] = exp_fast(t[w]);
  for (int64_t w = 0; w < r; ++w) sum += (x[j + w] = t[w]);
  return sum;
}

// laplace/relu2, forward: s[j] = f(s[j] + rel[j]) * keep[j] (keep: the key mask, 0 or 1; null
// when no key of the block is masked) for j < n.
template <Act A, typename T> void act_row(T* __restrict s, const T* __restrict rel, const T* __restrict keep, int64_t n) {
  if (keep)
    for (int64_t j = 0; j < n; ++j) s[j] = act_f<A>(s[j] + rel[j]) * keep[j];
  else
    for (int64_t j = 0; j < n; ++j) s[j] = act_f<A>(s[j] + rel[j]);
}

// Softmax, backward: s[j] = P = exp(s[j] + rel[j] + add[j] - shift) for j < n (add as in
// add_bias_max); with ds = dP~ = dO V^T given, also ds[j] = P (dP - D) (no dropout: P~ = P).
template <typename T> void softmax_back_row(T* __restrict s, const T* __restrict rel, const T* __restrict add, T shift,
                                            T* __restrict ds, T D, int64_t n) {
  if (add)
    for (int64_t j = 0; j < n; ++j) s[j] = exp_fast(s[j] + (rel[j] + add[j]) - shift);
  else
    for (int64_t j = 0; j < n; ++j) s[j] = exp_fast(s[j] + rel[j] - shift);
  if (ds)
    for (int64_t j = 0; j < n; ++j) ds[j] = s[j] * (ds[j] - D);
}

// laplace/relu2, backward: pt[j] = P = f(x) * keep[j] and, with ds = dP~ given,
// ds[j] = f'(x) * keep[j] * dP~, where x = s[j] + rel[j], for j < n (no dropout).
template <Act A, typename T> void act_back_row(const T* __restrict s, const T* __restrict rel, const T* __restrict keep,
                                               T* __restrict pt, T* __restrict ds, int64_t n) {
  if (!ds && keep)
    for (int64_t j = 0; j < n; ++j) pt[j] = act_f<A>(s[j] + rel[j]) * keep[j];
  else if (!ds)
    for (int64_t j = 0; j < n; ++j) pt[j] = act_f<A>(s[j] + rel[j]);
  else if (keep)
    for (int64_t j = 0; j < n; ++j) {
      T df;
      pt[j] = act_f_df<A>(s[j] + rel[j], df) * keep[j];
      ds[j] *= df * keep[j];
    }
  else
    for (int64_t j = 0; j < n; ++j) {
      T df;
      pt[j] = act_f_df<A>(s[j] + rel[j], df);
      ds[j] *= df;
    }
}

// ---------------------------------------------------------------- per-chunk masks

// A key block's mask as the row passes take it: key_add (softmax: 0, or -inf for a hidden key) and
// key_keep (laplace/relu2: 1, or 0), both null when no key of the block is hidden.
template <typename T>
struct KeyMask {
  const T* add = nullptr;
  const T* keep = nullptr;
};

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
  void fill(const AttentionProblem<T>& pr, int64_t b, int64_t c) {
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
  int64_t key_extent(const AttentionProblem<T>& pr, int64_t i0, int64_t nq, int64_t j0, int64_t nk) const {
    if (pr.causal) nk = std::min(nk, i0 + nq - j0);
    if (nk <= 0 || visible[(size_t)(j0 + nk)] == visible[(size_t)j0]) return 0;
    return nk;
  }
  // The mask of keys [j0, j0+nk), null when none of them is masked (the passes then skip it).
  KeyMask<T> key_mask(int64_t j0, int64_t nk) const {
    if (visible[(size_t)(j0 + nk)] - visible[(size_t)j0] == nk) return {};
    return {&key_add[(size_t)j0], &key_keep[(size_t)j0]};
  }
};

// Row i sees keys j0 + jj for jj < causal_end (the causal diagonal; nk without causal).
inline int64_t causal_end(bool causal, int64_t i, int64_t j0, int64_t nk) {
  return causal ? std::clamp<int64_t>(i - j0 + 1, 0, nk) : nk;
}

// Qs (nq, Z) = the query rows [i0, i0+nq) of (b, chunk c) times their score factor.
template <typename T>
void scaled_queries(const AttentionProblem<T>& pr, const ChunkInfo<T>& ci, int64_t b, int64_t c, int64_t i0, int64_t nq,
                    T* Qs) {
  const int64_t Z = pr.d.Z;
  for (int64_t r = 0; r < nq; ++r) {
    const T* qr = row_of(pr.q, b, c * pr.d.C + i0 + r);
    const T s = ci.scale[(size_t)(i0 + r)];
    for (int64_t z = 0; z < Z; ++z) Qs[r * Z + z] = qr[z] * s;
  }
}

// S (nq, ldS) = Qs K^T for the keys [j0, j0+nk) of (b, chunk c).
template <typename T>
void scores(const AttentionProblem<T>& pr, int64_t b, int64_t c, const T* Qs, int64_t nq, int64_t j0, int64_t nk, T* S,
            int64_t ldS) {
  gemm(false, true, nq, nk, pr.d.Z, T(1), Qs, pr.d.Z, row_of(pr.k, b, c * pr.d.C + j0), pr.k.ld, T(0), S, ldS);
}

// Runs f(r) for the rows r of a block of nq rows and nk columns, split over threads.
template <typename F> void for_rows(int64_t nq, int64_t nk, F&& f) {
  parallel_for(nq, std::max<int64_t>(1, kRowGrainElems / std::max<int64_t>(nk, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) f(r);
  });
}

// Runs f(p0, p1) over n independent pieces (the (batch, chunk) pairs [0, B NC) here; the batch
// elements in the cross-attention). With at least as many pieces as threads, they are split over
// the threads and each runs on one thread, its gemms and row passes inline; else one call runs them
// in turn, and its gemms and row passes use the threads. Either way every element is computed in
// the same order: results do not depend on the thread count.
template <typename F> void for_pieces(int64_t n, F&& f) {
  if (get_num_threads() > 1 && n >= get_num_threads())
    parallel_for(n, 1, f);
  else
    f(0, n);
}

// One score row of the forward pass (shared with the cross-attention): turns the row's scores s
// (its first ve visible: the causal diagonal) into P: the bias rel, the key mask km, the
// activation; columns ve..nk end as 0. The softmax runs online (FlashAttention): m and l carry
// the row's max and its sum of exp(s - m) over the key blocks so far, and the row's output o (H)
// is rescaled when the max grows (not in the first visited block, which overwrites o). Returns
// false when no key of the row is visible yet (softmax; s is then all 0).
template <typename T>
inline bool score_row_forward(Act act, T* s, const T* rel, KeyMask<T> km, int64_t ve, int64_t nk, T& m, T& l,
                              T* o, int64_t H, bool first) {
  if (act == Act::Softmax) {
    const T mnew = std::max(m, add_bias_max(s, rel, km.add, ve));
    if (mnew == -std::numeric_limits<T>::infinity()) {
      std::fill(s, s + nk, T(0));
      return false;
    }
    const T sum = exp_shift_sum(s, ve, mnew);
    const T corr = exp_fast(m - mnew);
    l = l * corr + sum;
    m = mnew;
    if (corr != T(1) && !first)
      for (int64_t h = 0; h < H; ++h) o[h] *= corr;
  } else if (act == Act::Laplace) {
    act_row<Act::Laplace>(s, rel, km.keep, ve);
  } else {
    act_row<Act::Relu2>(s, rel, km.keep, ve);
  }
  std::fill(s + ve, s + nk, T(0));  // right of the causal diagonal
  return true;
}

// ---------------------------------------------------------------- forward
// out (B, L, H) = P V per chunk; lse (B, L): softmax only (else null), the logsumexp of each
// row's scores, +inf for a row where every key is masked (its output is 0).
template <typename T>
void forward(const AttentionProblem<T>& pr, T* out, T* lse) {
  const AttentionShape& d = pr.d;
  const int64_t C = d.C, H = d.H, BQ = std::min(pr.causal ? kBlockQCausal : kBlockQ, C), BK = std::min(kBlockK, C);
  const bool softmax = pr.act == Act::Softmax, drop = pr.p > 0;
  const T ninf = -std::numeric_limits<T>::infinity();
  for_pieces(d.B * d.NC, [&](int64_t p0, int64_t p1) {
  std::vector<T> S((size_t)(BQ * BK)), Qs((size_t)(BQ * d.Z)), m((size_t)BQ), l((size_t)BQ);
  std::vector<T> Kd(drop ? (size_t)(BQ * BK) : 0);  // dropout multipliers of the block
  ChunkInfo<T> ci(C);
  for (int64_t pair = p0; pair < p1; ++pair) {
      const int64_t b = pair / d.NC, c = pair % d.NC;
      ci.fill(pr, b, c);
      for (int64_t i0 = 0; i0 < C; i0 += BQ) {
        const int64_t nq = std::min(BQ, C - i0);
        T* O = out + (b * d.L + c * C + i0) * H;  // (nq, H)
        std::fill(m.begin(), m.end(), ninf);
        std::fill(l.begin(), l.end(), T(0));
        scaled_queries(pr, ci, b, c, i0, nq, Qs.data());
        bool first = true;  // the first visited key block writes O (beta = 0), the others add
        for (int64_t j0 = 0; j0 < C; j0 += BK) {
          const int64_t nk = ci.key_extent(pr, i0, nq, j0, std::min(BK, C - j0));
          if (nk == 0) continue;
          scores(pr, b, c, Qs.data(), nq, j0, nk, S.data(), nk);
          const KeyMask<T> km = ci.key_mask(j0, nk);
          // S -> P (dropped): bias, key mask and activation (score_row_forward, the softmax
          // online), then dropout. l sums P before dropout; O sums the dropped P, so O / l is the
          // dropped attention applied to V.
          for_rows(nq, nk, [&](int64_t r) {
            const int64_t i = i0 + r, ve = causal_end(pr.causal, i, j0, nk);
            T* s = &S[(size_t)(r * nk)];
            const T* rel = pr.rel + (C - 1 + j0 - i);  // rel[jj] = bias(i, j0 + jj)
            if (!score_row_forward(pr.act, s, rel, km, ve, nk, m[(size_t)r], l[(size_t)r], O + r * H, H, first))
              return;  // nothing visible in this row yet
            if (drop) {
              T* keep = &Kd[(size_t)(r * nk)];
              dropout_row(pr.p, pr.seed, pr.first, b, c, i, j0, d.NC, C, keep, ve);
              for (int64_t jj = 0; jj < ve; ++jj) s[jj] *= keep[jj];
            }
          });
          // O (+)= P V
          gemm(false, false, nq, H, nk, T(1), S.data(), nk, row_of(pr.v, b, c * C + j0), pr.v.ld, first ? T(0) : T(1), O,
               H);
          first = false;
        }
        if (first) std::fill(O, O + nq * H, T(0));  // no key visible to any row of the block
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
  });
}

// One score row of the backward pass (shared with the cross-attention): from the row's scores s
// (its first ve visible: the causal diagonal), recomputes Pt = P~, the dropped weights as the
// forward used them (softmax: P = exp(s - lse) from the saved logsumexp; laplace/relu2: P = f(s)
// times the key mask), and turns ds = dP~ (when not null) into dS, the gradient of the scores:
//   softmax: dS = P~ dP~ - P D with D = dO . O; laplace/relu2: dS = f'(s) mask keep dP~.
// keep: the row's dropout multipliers, or null. Columns ve..nk of s, Pt and ds end as 0. Pt may be
// s itself (softmax without dropout).
template <typename T>
inline void score_row_backward(Act act, T* s, const T* rel, KeyMask<T> km, T lse, T D, const T* keep, T* pt,
                               T* ds, int64_t ve, int64_t nk) {
  if (act == Act::Softmax) {
    softmax_back_row(s, rel, km.add, lse, keep ? nullptr : ds, D, ve);
    std::fill(s + ve, s + nk, T(0));
    if (keep && ds)
      for (int64_t jj = 0; jj < ve; ++jj) {
        pt[jj] = s[jj] * keep[jj];
        ds[jj] = pt[jj] * ds[jj] - s[jj] * D;
      }
    else if (keep)
      for (int64_t jj = 0; jj < ve; ++jj) pt[jj] = s[jj] * keep[jj];
  } else {
    if (act == Act::Laplace)
      act_back_row<Act::Laplace>(s, rel, km.keep, pt, ds, ve);
    else
      act_back_row<Act::Relu2>(s, rel, km.keep, pt, ds, ve);
    if (keep && ds)
      for (int64_t jj = 0; jj < ve; ++jj) pt[jj] *= keep[jj], ds[jj] *= keep[jj];
    else if (keep)
      for (int64_t jj = 0; jj < ve; ++jj) pt[jj] *= keep[jj];
  }
  if (pt != s) std::fill(pt + ve, pt + nk, T(0));  // (softmax without dropout: pt is s, done)
  if (ds) std::fill(ds + ve, ds + nk, T(0));
}

// ---------------------------------------------------------------- backward
// out (B,L,H) the forward's output, lse (B,L) its logsumexp (softmax), dout (B,L,H) = dLoss/dout.
template <typename T>
void backward(const AttentionProblem<T>& pr, const T* out, const T* lse, const T* dout, const AttentionGrads<T>& g) {
  const AttentionShape& d = pr.d;
  const int64_t C = d.C, H = d.H, Z = d.Z, BK = std::min(kBlockK, C);
  const int64_t BQ = std::min(pr.causal ? kBlockQCausal : kBlockQ, C);
  const bool softmax = pr.act == Act::Softmax, drop = pr.p > 0;
  const bool need_ds = g.dq || g.dk || g.drel;
  if (!need_ds && !g.dv) return;
  // drel: each (batch, chunk) pair sums into its own row, and the rows are added in order at the end.
  const int64_t R = 2 * C - 1;
  std::vector<double> drel_pairs(g.drel && need_ds ? (size_t)(d.B * d.NC * R) : 0, 0.0);
  for_pieces(d.B * d.NC, [&](int64_t p0, int64_t p1) {
  std::vector<T> S((size_t)(BQ * BK)), Pd((size_t)(BQ * BK)), dP((size_t)(BQ * BK));
  std::vector<T> Qs((size_t)(BQ * Z)), D((size_t)BQ), Kd(drop ? (size_t)(BQ * BK) : 0);
  // The dropped weights P~: their own buffer, except for the softmax without dropout (P~ = P).
  T* Pt = drop || !softmax ? Pd.data() : S.data();
  // dq, dk, dv accumulate over blocks. Rather than zeroing the whole tensors first (a pass through
  // memory, and their rows would leave the cache before use), each block of rows is zeroed just
  // before its first gemm: dq's at the start of its query block; dk's and dv's as key blocks are
  // first reached, kinit[kb] = the rows of key block kb zeroed so far (causal clipping reaches a
  // key block's rows in growing prefixes); rows no block reaches are zeroed at the chunk's end.
  std::vector<int64_t> kinit((size_t)((C + BK - 1) / BK));
  auto zero_rows = [](T* x, int64_t r0, int64_t r1, int64_t w) {
    if (x && r1 > r0) std::fill(x + r0 * w, x + r1 * w, T(0));
  };
  ChunkInfo<T> ci(C);
  for (int64_t pair = p0; pair < p1; ++pair) {
      const int64_t b = pair / d.NC, c = pair % d.NC;
      double* drel = drel_pairs.empty() ? nullptr : drel_pairs.data() + pair * R;
      ci.fill(pr, b, c);
      std::fill(kinit.begin(), kinit.end(), 0);
      const int64_t key0 = b * d.L + c * C;  // first (b, t) row of the chunk
      for (int64_t i0 = 0; i0 < C; i0 += BQ) {
        const int64_t nq = std::min(BQ, C - i0);
        const int64_t row0 = b * d.L + c * C + i0;  // first (b, t) row of the block
        const T* dO = dout + row0 * H;               // (nq, H)
        zero_rows(g.dq, row0, row0 + nq, Z);
        scaled_queries(pr, ci, b, c, i0, nq, Qs.data());
        // Softmax: D_i = sum_j P~_ij dP~_ij = dO_i . O_i, the row term of the softmax Jacobian
        // (with dropout, P~ is the dropped P: O = P~ V).
        if (softmax && need_ds)
          for (int64_t r = 0; r < nq; ++r) D[(size_t)r] = cpu::row_dot(dO + r * H, out + (row0 + r) * H, H);
        for (int64_t j0 = 0; j0 < C; j0 += BK) {
          const int64_t nk = ci.key_extent(pr, i0, nq, j0, std::min(BK, C - j0));
          if (nk == 0) continue;
          const T* Vb = row_of(pr.v, b, c * C + j0);
          const KeyMask<T> km = ci.key_mask(j0, nk);
          int64_t& ki = kinit[(size_t)(j0 / BK)];
          if (ki < nk) {
            zero_rows(g.dk, key0 + j0 + ki, key0 + j0 + nk, Z);
            zero_rows(g.dv, key0 + j0 + ki, key0 + j0 + nk, H);
            ki = nk;
          }
          scores(pr, b, c, Qs.data(), nq, j0, nk, S.data(), nk);
          // dP~ = dO V^T: the gradient of the dropped weights.
          if (need_ds) gemm(false, true, nq, nk, H, T(1), dO, H, Vb, pr.v.ld, T(0), dP.data(), nk);
          // One pass recomputes the block as the forward did and, when needed, turns dP~ into dS,
          // the gradient of the scores (after the bias, before the activation):
          //   Pt = P~ = P * dropout, the dropped weights as the forward used them (softmax:
          //        P = exp(s - lse_i) from the saved logsumexp; laplace/relu2: P = f(s) * masks);
          //   dS = softmax: P * (dP - D_i) with dP = dP~ * dropout, i.e. P~ dP~ - P D_i;
          //        laplace/relu2: f'(s) * masks * dropout * dP~.
          for_rows(nq, nk, [&](int64_t r) {
            const int64_t i = i0 + r, ve = causal_end(pr.causal, i, j0, nk);
            T* s = &S[(size_t)(r * nk)];
            T* pt = Pt + r * nk;
            T* ds = need_ds ? &dP[(size_t)(r * nk)] : nullptr;
            const T* rel = pr.rel + (C - 1 + j0 - i);
            T* keep = drop ? &Kd[(size_t)(r * nk)] : nullptr;  // the dropout multipliers
            if (drop) dropout_row(pr.p, pr.seed, pr.first, b, c, i, j0, d.NC, C, keep, ve);
            score_row_backward(pr.act, s, rel, km, softmax ? lse[row0 + r] : T(0),
                               need_ds && softmax ? D[(size_t)r] : T(0), keep, pt, ds, ve, nk);
          });
          // dV_j += sum_i P~_ij dO_i   (dv = P~^T dO)
          if (g.dv)
            gemm(true, false, nk, H, nq, T(1), Pt, nk, dO, H, T(1), g.dv + (key0 + j0) * H, H);
          if (!need_ds) continue;
          // The bias enters every score with weight 1: drel[C-1 + j - i] += dS_ij (sequential:
          // rows of one block share entries of drel).
          if (drel)
            for (int64_t r = 0; r < nq; ++r) {
              double* dr = drel + (C - 1 + j0 - (i0 + r));
              const T* ds = &dP[(size_t)(r * nk)];
              for (int64_t jj = 0; jj < nk; ++jj) dr[jj] += (double)ds[jj];
            }
          // s_ij = scale_i q_i . k_j: dK_j += sum_i dS_ij (scale_i q_i) = dS^T Qs, and
          // dQ_i += sum_j dS_ij k_j, times scale_i once the row is complete (below).
          if (g.dk)
            gemm(true, false, nk, Z, nq, T(1), dP.data(), nk, Qs.data(), Z, T(1), g.dk + (key0 + j0) * Z, Z);
          if (g.dq)
            gemm(false, false, nq, Z, nk, T(1), dP.data(), nk, row_of(pr.k, b, c * C + j0), pr.k.ld, T(1),
                 g.dq + row0 * Z, Z);
        }
        if (g.dq)
          for (int64_t r = 0; r < nq; ++r) {
            const T sc = ci.scale[(size_t)(i0 + r)];
            T* dqr = g.dq + (row0 + r) * Z;
            for (int64_t z = 0; z < Z; ++z) dqr[z] *= sc;
          }
      }
      for (int64_t j0 = 0; j0 < C; j0 += BK) {  // key rows that no query block reached
        const int64_t ki = kinit[(size_t)(j0 / BK)], nk = std::min(BK, C - j0);
        zero_rows(g.dk, key0 + j0 + ki, key0 + j0 + nk, Z);
        zero_rows(g.dv, key0 + j0 + ki, key0 + j0 + nk, H);
      }
    }
  });
  for (size_t pair = 0; pair * R < drel_pairs.size(); ++pair)  // in pair order: thread-count independent
    for (int64_t j = 0; j < R; ++j) g.drel[j] += drel_pairs[pair * R + (size_t)j];
}

}  // namespace megagrad::attention_cpu
