// The CUDA backend's primitive kernels: raw-pointer launchers that the ops (autograd/ops_*.cpp)
// call when a tensor lives on the GPU. Plain C++17 (cuda_runtime.h only for cudaStream_t), so
// .cpp files can include it under `#if MEGAGRAD_HAS_CUDA`.
//
// Conventions
//   - Every pointer is a device pointer to element [0,...,0] of its operand (offset applied).
//   - Strides and sizes are in elements. Strides must be >= 0.
//   - Launchers are asynchronous on `stream` (default: the legacy default stream); none
//     synchronises. Checks of values in device memory are deferred (cuda_*_deferred, below).
//   - float32 math runs in float, float64 in double; reductions are deterministic (fixed trees,
//     no floating-point atomics): the same inputs give the same bits on every run of one device.
//   - Bad arguments (mismatched views, unsupported dtype, sizes that do not fit) raise
//     megagrad::Error "[cuda_<launcher>] ..."; launch failures raise "[cuda] ...".
//   - Temporary buffers (reduction partials, sort scratch) come from the stream-ordered allocator
//     (cudaMallocAsync / cudaFreeAsync on `stream`), so they are safe on any stream; the device's
//     default memory pool is told to keep up to 256 MiB of freed blocks (backends/cuda/common.cuh)
//     so that training steps do not hand them back to the driver at every synchronisation.
//
// Dimension letters (the CPU kernels' legend, backends/cpu/nn_kernels.h, index_kernels.h):
//   O  outer: product of the dims before the op's dim       N  the op's dim (softmax: normalised)
//   R  the reduced extent (reductions)                       I  inner: product of the dims after
//   B  rows (cross_entropy, layer_norm)    C  classes        D  features
//   V  vocabulary rows   L  lookups / elements   K  index length
// Every raw buffer is contiguous in the order of its letters: x (O,R,I) means x[(o*R + r)*I + i].
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <vector>
#include "backends/optimizer_update.h"
#include "core/dtype.h"
#include "core/error.h"

namespace megagrad::cuda {

inline constexpr int kMaxDims = 8;

// A strided operand of an elementwise launcher. Every operand of one call has the output's
// sizes: an input broadcast along a dim has stride 0 there (make_view_broadcast), so kernels
// need no broadcasting logic. Dims of size 1 and dims laid out back to back are merged by the
// launchers; when every operand ends up contiguous the vectorised path runs.
struct CudaView {
  void* data = nullptr;
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
};

inline CudaView make_view(const void* data, const std::vector<int64_t>& sizes,
                          const std::vector<int64_t>& strides) {
  MG_CHECK(sizes.size() == strides.size(), "cuda_view", "{} sizes but {} strides", sizes.size(),
           strides.size());
  MG_CHECK(sizes.size() <= (size_t)kMaxDims, "cuda_view", "{} dims; the CUDA kernels take at most {}",
           sizes.size(), kMaxDims);
  CudaView v;
  v.data = const_cast<void*>(data);
  v.ndim = (int)sizes.size();
  for (int d = 0; d < v.ndim; ++d) {
    MG_CHECK(sizes[(size_t)d] >= 0 && strides[(size_t)d] >= 0, "cuda_view",
             "dim {} has size {} and stride {}; both must be >= 0", d, sizes[(size_t)d], strides[(size_t)d]);
    v.sizes[d] = sizes[(size_t)d];
    v.strides[d] = strides[(size_t)d];
  }
  return v;
}

inline CudaView make_contiguous_view(const void* data, const std::vector<int64_t>& sizes) {
  std::vector<int64_t> st(sizes.size(), 1);
  for (size_t d = sizes.size(); d-- > 1;) st[d - 1] = st[d] * sizes[d];
  return make_view(data, sizes, st);
}

// An operand of shape `sizes` / `strides` broadcast (numpy rules, right-aligned) to `to`.
inline CudaView make_view_broadcast(const void* data, const std::vector<int64_t>& sizes,
                                    const std::vector<int64_t>& strides, const std::vector<int64_t>& to) {
  MG_CHECK(sizes.size() == strides.size() && sizes.size() <= to.size(), "cuda_view",
           "cannot broadcast {} dims to {}", sizes.size(), to.size());
  std::vector<int64_t> st(to.size(), 0);
  const size_t lead = to.size() - sizes.size();
  for (size_t i = 0; i < sizes.size(); ++i) {
    MG_CHECK(sizes[i] == to[lead + i] || sizes[i] == 1, "cuda_view", "size {} in dim {} does not broadcast to {}",
             sizes[i], i, to[lead + i]);
    st[lead + i] = sizes[i] == 1 ? 0 : strides[i];
  }
  return make_view(data, to, st);
}

// ================================================================ elementwise (elementwise.cu)

// out = f(x) and out = f(a, b) for a functor f of core/pointwise.h (the math both devices share).
// x, a, b of `dtype` (float32/64); out of `dtype`, or Bool where f returns bool (the comparisons).
// Defined in elementwise.cu for every functor of MG_POINTWISE_UNARY / MG_POINTWISE_BINARY.
template <typename F>
void cuda_map(const F& f, DType dtype, const CudaView& x, const CudaView& out, cudaStream_t stream = 0);
template <typename F>
void cuda_map(const F& f, DType dtype, const CudaView& a, const CudaView& b, const CudaView& out,
              cudaStream_t stream = 0);
// out = cond ? a : b; cond Bool, a, b, out of `dtype` (float32/64).
void cuda_where(DType dtype, const CudaView& cond, const CudaView& a, const CudaView& b, const CudaView& out,
                cudaStream_t stream = 0);
// out = mask ? value : x; mask Bool; x, out of `dtype` (float32/64).
void cuda_masked_fill(DType dtype, const CudaView& x, const CudaView& mask, double value, const CudaView& out,
                      cudaStream_t stream = 0);
// dst = (dst_dtype) src, any of float32/float64/int64/bool to any (C++ conversions: float ->
// bool is x != 0, float -> int64 truncates). How .contiguous(), .to(dtype), copy_ and
// broadcasting copies run. src and dst must not overlap (unless they are the same view).
void cuda_copy(DType dst_dtype, const CudaView& dst, DType src_dtype, const CudaView& src,
               cudaStream_t stream = 0);
// out = (dtype) value, any dtype.
void cuda_fill(DType dtype, const CudaView& out, double value, cudaStream_t stream = 0);

// ================================================================ reductions (reduce.cu)

// x (O,R,I) contiguous -> out (O,I):
//   Sum   sum_r x              Mean  sum_r x / R
//   Max / Min  the best value and, when index_out is given, its index r (int64, O*I): the first
//         one; a NaN is never chosen except at r = 0 (as the CPU loop); out may be null then.
//   Var   sum_r (x - mean)^2 / (R - correction)  (two passes: the mean first)
// A full reduction is O = I = 1. Accumulation in the element type, over a fixed tree (each
// thread sums at most 32 elements in order, then pairwise), in as many passes as R needs.
enum class ReduceOp { Sum, Mean, Max, Min, Var };
void cuda_reduce(ReduceOp op, DType dtype, const void* x, int64_t O, int64_t R, int64_t I, void* out,
                 int64_t* index_out = nullptr, int64_t correction = 1, cudaStream_t stream = 0);

// ================================================================ nn (nn.cu)

// softmax (log = false) or log_softmax (log = true) along N: x, y (O,N,I).
void cuda_softmax_forward(DType dtype, bool log, const void* x, void* y, int64_t O, int64_t N, int64_t I,
                          cudaStream_t stream = 0);
// dx (O,N,I) from dy and the saved output y:  softmax: y (dy - sum_N dy y);
// log_softmax: dy - exp(y) sum_N dy.
void cuda_softmax_backward(DType dtype, bool log, const void* dy, const void* y, void* dx, int64_t O, int64_t N,
                           int64_t I, cudaStream_t stream = 0);

// Fused log_softmax + NLL with label smoothing e (see cpu::cross_entropy_forward):
// x (B,C), target (B) int64 in [0,C) or ignore_index (checked beforehand: cuda_index_check_deferred);
// losses (B) float64 (0 on ignored rows), lse (B) of dtype (saved for backward).
void cuda_cross_entropy_forward(DType dtype, const void* x, const int64_t* target, int64_t B, int64_t C,
                                int64_t ignore_index, double smoothing, double* losses, void* lse,
                                cudaStream_t stream = 0);
// dx (B,C) = s (softmax(x) - (1-e) onehot(t) - e/C) on kept rows, 0 on ignored rows, where
// s = scale * dloss[0] when dloss (a device scalar of dtype: the loss's gradient) is given,
// else s = scale. The op passes scale = 1 / (number of kept rows).
void cuda_cross_entropy_backward(DType dtype, const void* x, const void* lse, const int64_t* target, int64_t B,
                                 int64_t C, int64_t ignore_index, double smoothing, double scale,
                                 const void* dloss, void* dx, cudaStream_t stream = 0);

// layer_norm over the last dim D: y (B,D), mean (B), rstd (B) from x (B,D), weight (D) and
// bias (D), each optional (null). rstd = 1 / sqrt(biased var + eps).
void cuda_layer_norm_forward(DType dtype, const void* x, const void* weight, const void* bias, int64_t B,
                             int64_t D, double eps, void* y, void* mean, void* rstd, cudaStream_t stream = 0);
// dx (B,D) = rstd (dn - mean_D dn - xhat mean_D(dn xhat)), dn = dy * weight (weight optional).
void cuda_layer_norm_backward_input(DType dtype, const void* dy, const void* x, const void* weight,
                                    const void* mean, const void* rstd, int64_t B, int64_t D, void* dx,
                                    cudaStream_t stream = 0);
// dweight (D) = sum_B dy xhat, dbias (D) = sum_B dy; either may be null. Written, not added.
void cuda_layer_norm_backward_params(DType dtype, const void* dy, const void* x, const void* mean,
                                     const void* rstd, int64_t B, int64_t D, void* dweight, void* dbias,
                                     cudaStream_t stream = 0);
// (RMS norm and scale norm are composed from square/mean/add_scalar/rsqrt/mul on the CPU:
// mega/layers.cpp; they have no dedicated kernels.)

// ================================================================ indexing (index.cu)

// y (L,D) = weight[idx[l], :], weight (V,D) read at row stride rs and column stride cs.
void cuda_embedding_forward(DType dtype, const void* weight, int64_t rs, int64_t cs, const int64_t* idx,
                            int64_t L, int64_t D, void* y, cudaStream_t stream = 0);
// gx (O,N,I) = index_add over K: gx[o, n, i] = sum over k with idx[k] == n, in increasing k, of
// g[o, k, i]. Every element of gx is written (0 where no index points): no zeroing needed.
// Deterministic without atomics: a stable radix sort of the indices (CUB) groups the k of each n,
// then one thread per gx element sums its group in order (the CPU's order, so the same bits).
void cuda_index_add_rows(DType dtype, const void* g, const int64_t* idx, int64_t O, int64_t N, int64_t K,
                         int64_t I, void* gx, cudaStream_t stream = 0);
// embedding backward: dweight (V,D) = index_add of dy (L,D) at rows idx (L).
inline void cuda_embedding_backward(DType dtype, const void* dy, const int64_t* idx, int64_t V, int64_t L,
                                    int64_t D, void* dweight, cudaStream_t stream = 0) {
  cuda_index_add_rows(dtype, dy, idx, 1, V, L, D, dweight, stream);
}
// gather / index_select forward, any dtype: out[p] = x[p with coordinate d replaced by idx[p]].
// All three views have out's sizes: x_base is x with stride 0 at d (sd: x's stride along d),
// idx int64 (index_select: stride 0 everywhere but d).
void cuda_gather(DType dtype, const CudaView& x_base, int64_t sd, const CudaView& idx, const CudaView& out,
                 cudaStream_t stream = 0);
// gather backward: gx[p with d replaced by idx[p]] += g[p] over the index's shape. All views
// have the index's sizes; gx_base is gx with stride 0 at `dim` (sd: gx's stride along dim), and
// must hold zeros (or values to add to). One thread per column (all coordinates but dim) adds
// its K values in order: deterministic, and no two threads write one element.
void cuda_scatter_add(DType dtype, const CudaView& g, const CudaView& idx, const CudaView& gx_base, int64_t sd,
                      int dim, cudaStream_t stream = 0);
// cat of a contiguous input: O rows of row_bytes into rows dst_row_bytes apart (one 2-D copy).
void cuda_copy_rows(const void* src, void* dst, int64_t O, int64_t row_bytes, int64_t dst_row_bytes,
                    cudaStream_t stream = 0);

// ================================================================ optimizers (optim.cu)

// AdamW on flat arrays p, g, m = exp_avg, v = exp_avg_sq (n each, contiguous), and SGD with an
// optional momentum buffer buf (null: none). The update of each element, and the scalars of a step:
// backends/optimizer_update.h, the same functions the CPU loops call.
void cuda_adamw(DType dtype, void* p, const void* g, void* m, void* v, int64_t n, const AdamWScalars& s,
                cudaStream_t stream = 0);
void cuda_sgd(DType dtype, void* p, const void* g, void* buf, int64_t n, const SGDScalars& s,
              cudaStream_t stream = 0);
// *out (a device double) = sum g^2 over n elements, accumulated in double (global grad norm).
// `accumulate`: add to *out instead of overwriting it (one norm over many parameters).
void cuda_sum_squares(DType dtype, const void* g, int64_t n, double* out, bool accumulate = false,
                      cudaStream_t stream = 0);

// ================================================================ random (random.cu)
// Philox4x32-10 exactly as core/rng.cpp: element i draws from (seed, counter = first + i), so the
// masks and uniforms are bit-identical to the CPU's for the same generator state.

// y (L) = keep ? x / (1-p) : 0, mask (L, Bool) = keep, keep = uniform(seed, first + l) >= p.
void cuda_dropout_forward(DType dtype, const void* x, void* y, bool* mask, int64_t L, double p, uint64_t seed,
                          uint64_t first, cudaStream_t stream = 0);
// dx (L) = dy * mask / (1-p).
void cuda_dropout_backward(DType dtype, const void* dy, const bool* mask, void* dx, int64_t L, double p,
                           cudaStream_t stream = 0);
// out (n) = uniform_at(seed, first + i, lo, hi) (bit-identical to uniform_ on a CPU build that
// contracts lo + (hi-lo) u into one FMA, as -march=native on an FMA machine does; exact in any
// case for lo = 0, hi = 1); normal: Box-Muller as normal_at (device log/cos: within a few ulp).
void cuda_uniform(DType dtype, void* out, int64_t n, double lo, double hi, uint64_t seed, uint64_t first,
                  cudaStream_t stream = 0);
void cuda_normal(DType dtype, void* out, int64_t n, double mean, double std, uint64_t seed, uint64_t first,
                 cudaStream_t stream = 0);
// out (n,4): the raw words philox4x32(seed, counter_hi, first + i) (tests compare them with the CPU).
void cuda_philox(uint64_t seed, uint64_t counter_hi, uint64_t first, int64_t n, uint32_t* out,
                 cudaStream_t stream = 0);

// ================================================================ checks without a synchronisation
// (checks.cu; nn.cu for cross_entropy's). The ops' device-side input checks: a failure is written
// to the check's slot and raised at the next synchronisation (backends/cuda/deferred_check.h).
struct DeferredCheck;

// idx int64 values must lie in [0, limit), or equal ignore_index when has_ignore. Writes `safe`
// (contiguous, idx's row-major order, numel values): each value, or in place of a bad one
// ignore_index (has_ignore) or 0, so that the kernels reading `safe` next stay in bounds
// (limit >= 1). `kept` (a device int64, optional): the count of values != ignore_index.
void cuda_index_check_deferred(const CudaView& idx, int64_t limit, bool has_ignore, int64_t ignore_index,
                               int64_t* safe, int64_t* kept, const DeferredCheck& check, cudaStream_t stream = 0);
// Every value of x (float32/64) must be 0 or 1 (a padding mask); the slot gets the bad value's bits
// as a double.
void cuda_binary_values_check_deferred(DType dtype, const CudaView& x, const DeferredCheck& check,
                                       cudaStream_t stream = 0);
// cross_entropy's mean without reading the count on the host: out (a device scalar of dtype) =
// (dtype)(total * (1 / kept)), NaN when kept is 0 (total: a device double, kept: a device int64).
void cuda_cross_entropy_mean(DType dtype, const double* total, const int64_t* kept, void* out,
                             cudaStream_t stream = 0);
// cuda_cross_entropy_backward with scale = 1 / *kept (0 when *kept is 0), read on the device.
void cuda_cross_entropy_backward_kept(DType dtype, const void* x, const void* lse, const int64_t* target, int64_t B,
                                      int64_t C, int64_t ignore_index, double smoothing, const int64_t* kept,
                                      const void* dloss, void* dx, cudaStream_t stream = 0);

}  // namespace megagrad::cuda
