// Strided iteration on the host, over raw element offsets: it needs only core (shapes and the
// thread pool), so the CPU backend's kernels, core's own host loops (to_vector) and the ops
// share it. An op hands over the output shape and, for each operand, its strides over that
// shape (0 along broadcast dims); for_each_row walks the elements row by row (the innermost dim
// after merging dims that are laid out back to back) and calls
//     row(offsets, n, inner_strides)
// where offsets[k] is operand k's element offset at the row's start. The inner loop a kernel
// writes over n elements is plain and vectorises when the inner strides are 1.
//
// StridedView is the same description with a data pointer: how core hands a strided operand to a
// device backend (core/backend.h).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <vector>
#include "core/parallel.h"
#include "core/shape.h"

namespace megagrad {

// Sizes or strides, borrowed (from a Shape, a Strides, or any int64 array) for one call.
using Dims = std::span<const int64_t>;

// One operand of a strided loop: element [0,...,0] (the tensor's offset applied) and its strides
// (in elements) over `shape`, the shape of the whole loop (stride 0 along broadcast dims). The
// spans are borrowed: a view lives no longer than the Shape and Strides it was made from.
struct StridedView {
  void* data = nullptr;
  Dims shape;
  Dims strides;
};

template <size_t K>
struct RowLayout {
  Shape shape;                   // merged dims, innermost last; may be empty (scalar)
  std::array<Strides, K> strides;
};

// Drops size-1 dims and merges dims i, i+1 whenever every operand has them back to back.
template <size_t K>
RowLayout<K> merge_dims(Dims shape, const std::array<Dims, K>& strides) {
  RowLayout<K> out;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    bool merge = !out.shape.empty();
    for (size_t k = 0; k < K && merge; ++k)
      merge = out.strides[k].back() == strides[k][i] * shape[i];
    if (merge) {
      out.shape.back() *= shape[i];
      for (size_t k = 0; k < K; ++k) out.strides[k].back() = strides[k][i];
    } else {
      out.shape.push_back(shape[i]);
      for (size_t k = 0; k < K; ++k) out.strides[k].push_back(strides[k][i]);
    }
  }
  return out;
}

// Strides of a tensor (shape `from`, strides `st`) broadcast to `to` (right-aligned; 0 on
// broadcast dims). The shapes must already be broadcast-compatible.
inline Strides broadcast_strides(const Shape& from, const Strides& st, const Shape& to) {
  Strides out(to.size(), 0);
  size_t lead = to.size() - from.size();
  for (size_t i = 0; i < from.size(); ++i) out[lead + i] = from[i] == 1 ? 0 : st[i];
  return out;
}

// Rows longer than `grain` are cut into segments of at most `grain` elements, so that a tensor that
// merges into one long row (every contiguous one) still spreads over the threads. A caller whose
// row must stay on one thread (its elements write to the same slot) passes split_rows = false.
template <size_t K, typename Row>
void for_each_row(Dims shape, const std::array<Dims, K>& strides, Row&& row, int64_t grain = kElementwiseGrain,
                  bool split_rows = true) {
  RowLayout<K> L = merge_dims<K>(shape, strides);
  for (int64_t d : shape)
    if (d == 0) return;  // no elements
  if (L.shape.empty()) {  // a single element
    std::array<int64_t, K> off{};
    std::array<int64_t, K> inner{};
    row(off, int64_t{1}, inner);
    return;
  }
  grain = std::max<int64_t>(grain, 1);
  const int64_t nd = (int64_t)L.shape.size();
  const int64_t n = L.shape.back();
  std::array<int64_t, K> inner;
  for (size_t k = 0; k < K; ++k) inner[k] = L.strides[k].back();
  const int64_t rows = numel_of(L.shape) / n;
  // Work item = one segment of one row: `pieces` equal segments of `seg` elements per row.
  const int64_t pieces = split_rows && n > grain ? (n - 1) / grain + 1 : 1;  // no overflow at INT64_MAX
  const int64_t seg = (n + pieces - 1) / pieces;
  parallel_for(rows * pieces, std::max<int64_t>(1, grain / seg), [&](int64_t ib, int64_t ie) {
    // Multi-index of the first item's row over the outer dims, then step it like an odometer.
    std::vector<int64_t> idx(nd > 1 ? nd - 1 : 0);
    std::array<int64_t, K> off{};
    int64_t r = ib / pieces;
    for (int64_t d = nd - 2; d >= 0; --d) {
      idx[d] = r % L.shape[d];
      r /= L.shape[d];
      for (size_t k = 0; k < K; ++k) off[k] += idx[d] * L.strides[k][d];
    }
    for (int64_t i = ib; i < ie; ++i) {
      const int64_t p = i % pieces, s0 = p * seg;
      std::array<int64_t, K> so = off;  // one call site of row(), so that it inlines as before
      for (size_t k = 0; k < K; ++k) so[k] += s0 * inner[k];
      row(so, std::min(seg, n - s0), inner);
      if (p + 1 < pieces) continue;  // the next item is the same row's next segment
      for (int64_t d = nd - 2; d >= 0; --d) {
        for (size_t k = 0; k < K; ++k) off[k] += L.strides[k][d];
        if (++idx[d] < L.shape[d]) break;
        for (size_t k = 0; k < K; ++k) off[k] -= L.strides[k][d] * L.shape[d];
        idx[d] = 0;
      }
    }
  });
}

}  // namespace megagrad
