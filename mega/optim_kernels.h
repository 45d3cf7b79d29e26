// The optimizers' CPU update loops (mega/optim.cpp runs them; the CUDA twins are in
// backends/cuda/optim.cu).
//
// Legend: N = elements of one parameter. Every kernel takes contiguous (N) arrays: the parameter
// p, its gradient g and its state slots, and makes one pass over them. Large parameters are cut
// into fixed pieces of kPiece elements run by the pool; the pieces do not depend on the thread
// count, so neither do the results (a resumed run may use another --threads).
//
// The updates are memory-bound (AdamW streams 7 arrays, about as fast as a plain copy).
// AdamW's loop vectorises only under -fno-math-errno (sqrt otherwise keeps an errno branch
// per element), which saves little for that reason; SGD's and the norm's loops always vectorise.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>
#include "backends/cpu/reduce.h"
#include "backends/optimizer_update.h"
#include "core/parallel.h"

namespace megagrad::optim_kernels {

constexpr int64_t kPiece = 1 << 14;

// f(begin, end) over [0, n) in fixed pieces; one call for a small n.
template <typename F>
void for_pieces(int64_t n, F&& f) {
  if (n < 2 * kElementwiseGrain) {
    f(int64_t(0), n);
    return;
  }
  const int64_t pieces = (n + kPiece - 1) / kPiece;
  parallel_for(pieces, std::max<int64_t>(1, kElementwiseGrain / kPiece), [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) f(q * kPiece, std::min(n, (q + 1) * kPiece));
  });
}

// ---- AdamW: p (N), g (N), m = exp_avg (N), v = exp_avg_sq (N) ----
// The update of one element: adamw_update (backends/optimizer_update.h, shared with CUDA).
template <typename T>
void adamw_piece(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t n,
                 const AdamWScalars& s) {
  const AdamWConsts<T> c(s);
  for (int64_t i = 0; i < n; ++i) adamw_update(p[i], g[i], m[i], v[i], c);
}

template <typename T>
void adamw_kernel(T* p, const T* g, T* m, T* v, int64_t n, const AdamWScalars& s) {
  for_pieces(n, [&](int64_t b, int64_t e) { adamw_piece(p + b, g + b, m + b, v + b, e - b, s); });
}

// ---- SGD: p (N), g (N), buf = momentum_buffer (N, or null without momentum) ----
// The update of one element: sgd_update (backends/optimizer_update.h, shared with CUDA).
template <typename T>
void sgd_piece(T* __restrict p, const T* __restrict g, T* __restrict buf, int64_t n, const SGDScalars& s) {
  const SGDConsts<T> c(s);
  if (buf)
    for (int64_t i = 0; i < n; ++i) sgd_update<true>(p[i], g[i], &buf[i], c);
  else
    for (int64_t i = 0; i < n; ++i) sgd_update<false>(p[i], g[i], (T*)nullptr, c);
}

template <typename T>
void sgd_kernel(T* p, const T* g, T* buf, int64_t n, const SGDScalars& s) {
  for_pieces(n, [&](int64_t b, int64_t e) { sgd_piece(p + b, g + b, buf ? buf + b : nullptr, e - b, s); });
}

// ---- gradient norm: g (N) ----
// Sum of squares in double (8 accumulators, as the reductions: a single chain would not vectorise).
template <typename T>
double sum_squares_piece(const T* g, int64_t n) {
  return cpu::row_sum_double(g, n, [](double x) { return x * x; });
}

// Pieces summed in parallel, then added in order: the same bits for any thread count.
template <typename T>
double sum_squares(const T* g, int64_t n) {
  const int64_t pieces = (n + kPiece - 1) / kPiece;
  std::vector<double> part((size_t)pieces, 0.0);
  parallel_for(pieces, std::max<int64_t>(1, kElementwiseGrain / kPiece), [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) part[(size_t)q] = sum_squares_piece(g + q * kPiece, std::min(kPiece, n - q * kPiece));
  });
  double s = 0;
  for (double x : part) s += x;
  return s;
}

template <typename T>
void scale_piece(T* __restrict g, int64_t n, T f) {
  for (int64_t i = 0; i < n; ++i) g[i] *= f;
}

template <typename T>
void scale_kernel(T* g, int64_t n, double factor) {
  for_pieces(n, [&](int64_t b, int64_t e) { scale_piece(g + b, e - b, (T)factor); });
}

}  // namespace megagrad::optim_kernels
