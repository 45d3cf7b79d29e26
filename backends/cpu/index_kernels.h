// CPU kernels for the indexing and joining ops (autograd/ops_index.cpp).
//
// Dimension letters. The op's dim `d` splits a shape into (outer, d, inner):
//   O  product of the sizes before d          N  size of d in the source x
//   I  product of the sizes after d           K  size of d in the index / output
// so a contiguous x is an (O, N, I) block, and index_select's output an (O, K, I) one.
// Strided kernels take an operand's strides over the *output's* shape ("over out"), with the
// stride of d pulled out as `sd`: the element an index value v selects sits v * sd further on.
// Index values are range-checked by the op before any kernel runs.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include "core/strided.h"

namespace megagrad::cpu {

// ---------------------------------------------------------------- cat
// Copies one contiguous input, seen as O rows of `row_bytes`, into the output, whose rows are
// `out_row_bytes` apart (the rows of all inputs side by side): one memcpy per row.
//   src (O, row_bytes)   dst (O, out_row_bytes), already offset to this input's column
inline void copy_rows(const char* src, char* dst, int64_t O, int64_t row_bytes, int64_t out_row_bytes) {
  if (row_bytes == 0) return;
  int64_t grain = std::max<int64_t>(1, (int64_t)8 * kElementwiseGrain / row_bytes);  // ~256 KiB a piece
  parallel_for(O, grain, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) std::memcpy(dst + o * out_row_bytes, src + o * row_bytes, (size_t)row_bytes);
  });
}

// ---------------------------------------------------------------- gather (and index_select)
// out[p] = x[p with coordinate d replaced by idx[p]], p over out's shape.
//   out  contiguous or strided, out_strides
//   x    xs: x's strides over out, 0 at d; sd: x's stride along d
//   idx  is: the index's strides over out (index_select: 0 everywhere but d)
template <typename T>
void gather(const T* x, const Strides& xs, int64_t sd, const int64_t* idx, const Strides& is, T* out,
            const Shape& out_shape, const Strides& out_strides) {
  for_each_row<3>(out_shape, {out_strides, xs, is}, [&](auto off, int64_t n, auto in) {
    T* o = out + off[0];
    const T* xr = x + off[1];
    const int64_t* ir = idx + off[2];
    if (in[0] == 1 && in[1] == 1 && in[2] == 0) {  // index fixed along the row: a block copy
      const T* src = xr + ir[0] * sd;
      for (int64_t i = 0; i < n; ++i) o[i] = src[i];
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * in[0]] = xr[i * in[1] + ir[i * in[2]] * sd];
    }
  });
}

// ---------------------------------------------------------------- gather backward
// gx[p with d replaced by idx[p]] += g[p]: the scatter-add that undoes gather.
//   gx   contiguous zeros of x's shape; gxs: its strides over g's shape, 0 at d; sd: stride of d
//   g    gs: strides over its shape   idx: is, strides over g's shape
// Two elements of g collide only when they share every coordinate but d. The caller permutes d
// innermost, so that each row of for_each_row (never merged across d: gx's stride there is 0) is
// one fixed set of other coordinates: rows write disjoint slots and run in parallel, and the
// additions into one slot happen in order within a row.
template <typename T>
void scatter_add(const T* g, const Strides& gs, const int64_t* idx, const Strides& is, T* gx,
                 const Strides& gxs, int64_t sd, const Shape& shape) {
  for_each_row<3>(shape, {gxs, gs, is}, [&](auto off, int64_t n, auto in) {
    T* xr = gx + off[0];
    const T* gr = g + off[1];
    const int64_t* ir = idx + off[2];
    for (int64_t i = 0; i < n; ++i) xr[i * in[0] + ir[i * in[2]] * sd] += gr[i * in[1]];
  }, kElementwiseGrain, /*split_rows=*/false);  // a row adds into one set of slots: one thread
}

// ---------------------------------------------------------------- index_select backward
// gx[o, idx[k], i] += g[o, k, i]  (index_add): repeated indices accumulate.
//   g (O, K, I) contiguous   idx (K)   gx (O, N, I) contiguous zeros
// Threads split the (o, i) columns: a column gets all its K contributions from one thread, so
// no two threads add into the same slot, and the innermost loop runs over contiguous i.
template <typename T>
void index_add_rows(const T* g, const int64_t* idx, T* gx, int64_t O, int64_t N, int64_t K, int64_t I) {
  if (O * I == 0) return;
  parallel_for(O * I, std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(K, 1)), [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e;) {
      int64_t o = c / I, i0 = c % I, i1 = std::min(I, i0 + (e - c));  // columns [i0, i1) of row o
      for (int64_t k = 0; k < K; ++k) {
        const T* src = g + (o * K + k) * I;
        T* dst = gx + (o * N + idx[k]) * I;
        for (int64_t i = i0; i < i1; ++i) dst[i] += src[i];
      }
      c += i1 - i0;
    }
  });
}

// ---------------------------------------------------------------- masked_fill
// out[p] = mask[p] ? v : x[p].
//   x (out's shape, strides xs)   mask: ms, its strides broadcast over out   out contiguous
template <typename T>
void masked_fill(const T* x, const Strides& xs, const bool* mask, const Strides& ms, T v, T* out,
                 const Shape& shape, const Strides& out_strides) {
  for_each_row<3>(shape, {out_strides, xs, ms}, [&](auto off, int64_t n, auto in) {
    T* o = out + off[0];
    const T* xr = x + off[1];
    const bool* mr = mask + off[2];
    if (in[0] == 1 && in[1] == 1 && in[2] == 1)
      for (int64_t i = 0; i < n; ++i) o[i] = mr[i] ? v : xr[i];
    else
      for (int64_t i = 0; i < n; ++i) o[i * in[0]] = mr[i * in[2]] ? v : xr[i * in[1]];
  });
}

}  // namespace megagrad::cpu
