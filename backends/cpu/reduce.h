// Reductions over a tensor laid out as a row-major matrix, either
//   (O, R): out[o] = reduce_r x[o*R + r]   (reduced dims innermost: a row per output)
//   (R, O): out[o] = reduce_r x[r*O + o]   (reduced dims outermost, e.g. a bias gradient)
// Sums accumulate in double, so float32 sums of long rows keep their precision.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>
#include "core/parallel.h"

namespace megagrad::cpu {

struct AsIs {
  double operator()(double x) const { return x; }
};

// Sum of f(row[i]) in double with 8 independent accumulators: one accumulator is a serial chain
// that strict IEEE math may not reorder, so it would not vectorise.
template <typename T, typename F = AsIs>
double row_sum_double(const T* row, int64_t n, F f = {}) {
  constexpr int L = 8;
  double acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int k = 0; k < L; ++k) acc[k] += f((double)row[i + k]);
  double s = 0;
  for (int k = 0; k < L; ++k) s += acc[k];
  for (; i < n; ++i) s += f((double)row[i]);
  return s;
}

template <typename T>
void sum_rows(const T* x, int64_t O, int64_t R, T* out, double scale) {
  constexpr int64_t kPiece = 1 << 16;
  if (O < 4 && R >= 4 * kPiece) {
    // Few long rows (e.g. a full sum): split each row into fixed pieces, sum the pieces in
    // parallel, then add the partial sums in order, so the result does not depend on threads.
    const int64_t pieces = (R + kPiece - 1) / kPiece;
    std::vector<double> part((size_t)pieces);
    for (int64_t o = 0; o < O; ++o) {
      const T* row = x + o * R;
      parallel_for(pieces, 1, [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e; ++p)
          part[(size_t)p] = row_sum_double(row + p * kPiece, std::min(kPiece, R - p * kPiece));
      });
      double s = 0;
      for (double v : part) s += v;
      out[o] = (T)(s * scale);
    }
    return;
  }
  parallel_for(O, std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(R, 1)), [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) out[o] = (T)(row_sum_double(x + o * R, R) * scale);
  });
}

template <typename T>
void sum_cols(const T* x, int64_t R, int64_t O, T* out, double scale) {
  parallel_for(O, std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(R, 1)), [&](int64_t b, int64_t e) {
    std::vector<double> acc((size_t)(e - b), 0.0);
    for (int64_t r = 0; r < R; ++r) {
      const T* row = x + r * O + b;
      for (int64_t o = 0; o < e - b; ++o) acc[(size_t)o] += (double)row[o];
    }
    for (int64_t o = b; o < e; ++o) out[o] = (T)(acc[(size_t)(o - b)] * scale);
  });
}

// Max (or min, with Less = std::greater) of each row and the first index where it occurs.
template <typename T, typename Better>
void argbest_rows(const T* x, int64_t O, int64_t R, T* out, int64_t* idx, Better better) {
  parallel_for(O, std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(R, 1)), [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      const T* row = x + o * R;
      int64_t bi = 0;
      for (int64_t r = 1; r < R; ++r)
        if (better(row[r], row[bi])) bi = r;
      out[o] = row[bi];
      idx[o] = bi;
    }
  });
}

}  // namespace megagrad::cpu
