// Neural-network kernels (the CUDA side of autograd/ops_nn.cpp): softmax / log_softmax,
// cross_entropy, layer_norm, each forward and backward.
//
// Legend (as backends/cpu/nn_kernels.h):
//   O outer (independent problems), N the normalised dim, I inner (1 when N is the last dim)
//   B rows, C classes (cross_entropy), D features (layer_norm)
// Buffers are contiguous in the order of their letters: x (O,N,I) means x[(o*N + n)*I + i].
//
// Row kernels (I == 1, cross_entropy, layer_norm): a group of G threads per row, G = 32 (one
// warp, several rows per block) for rows up to 1024 elements, else G = 256 (the block). Row
// statistics are butterfly reductions over the group (common.cuh): every thread of the group gets
// the same bits, in a fixed order. When I > 1 one thread owns one (o, i) column and walks N
// (reads coalesced over i).
#include "backends/cuda/common.cuh"
#include "core/vec_math.h"  // exp_fast: the CPU kernels' exp (backends/cpu/nn_kernels.h)

namespace megagrad::cuda {

namespace {

__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return log(x); }

template <typename T> __device__ __forceinline__ T neg_inf() { return -std::numeric_limits<T>::infinity(); }

constexpr int64_t kWarpRowMax = 1024;  // rows up to this length get a warp, longer ones a block

inline int group_for(int64_t n) { return n <= kWarpRowMax ? 32 : kThreads; }
inline unsigned row_grid(std::string_view op, int64_t rows, int G) {
  const int64_t per_block = kThreads / G;
  return exact_grid(op, (rows + per_block - 1) / per_block);
}

// Row index of this thread's group, its lane, and whether the row exists.
template <int G>
struct RowSlot {
  int64_t row;
  int lane;
  __device__ RowSlot() : row((int64_t)blockIdx.x * (kThreads / G) + threadIdx.x / G), lane(threadIdx.x % G) {}
};

// ---------------------------------------------------------------- softmax / log_softmax
// y = exp(x - m) / sum exp(x - m), m = max (NaNs ignored, as the CPU's row_max);
// log_softmax: y = x - (m + log sum exp(x - m)).

template <typename T, bool Log, int G>
__global__ void __launch_bounds__(kThreads)
softmax_rows_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t O, int64_t N) {
  __shared__ T sh[kThreads / 32];
  const RowSlot<G> rs;
  // A block-wide group must reach the reductions together: clamp instead of returning.
  const bool active = rs.row < O;
  const T* xr = x + (active ? rs.row : 0) * N;
  T m = neg_inf<T>();
  for (int64_t n = rs.lane; n < N && active; n += G) m = fmax(m, xr[n]);
  m = group_allreduce<G>(m, MaxOp{}, sh);
  T s = 0;
  for (int64_t n = rs.lane; n < N && active; n += G) s += exp_fast(xr[n] - m);
  s = group_allreduce<G>(s, SumOp{}, sh);
  if (!active) return;
  T* yr = y + rs.row * N;
  if constexpr (Log) {
    const T lse = m + d_log(s);
    for (int64_t n = rs.lane; n < N; n += G) yr[n] = xr[n] - lse;
  } else {
    const T inv = T(1) / s;
    for (int64_t n = rs.lane; n < N; n += G) yr[n] = exp_fast(xr[n] - m) * inv;
  }
}

// I > 1: a thread per (o, i) column, grid-stride.
template <typename T, bool Log>
__global__ void __launch_bounds__(kThreads)
softmax_cols_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t O, int64_t N, int64_t I) {
  for (int64_t c = (int64_t)blockIdx.x * kThreads + threadIdx.x; c < O * I; c += (int64_t)gridDim.x * kThreads) {
    const int64_t o = c / I, i = c - o * I;
    const T* xc = x + o * N * I + i;
    T* yc = y + o * N * I + i;
    T m = neg_inf<T>();
    for (int64_t n = 0; n < N; ++n) m = fmax(m, xc[n * I]);
    T s = 0;
    for (int64_t n = 0; n < N; ++n) s += exp_fast(xc[n * I] - m);
    if constexpr (Log) {
      const T lse = m + d_log(s);
      for (int64_t n = 0; n < N; ++n) yc[n * I] = xc[n * I] - lse;
    } else {
      const T inv = T(1) / s;
      for (int64_t n = 0; n < N; ++n) yc[n * I] = exp_fast(xc[n * I] - m) * inv;
    }
  }
}

// Backward from the saved output y:
//   softmax:      dx = y (dy - sum_N dy y)
//   log_softmax:  dx = dy - exp(y) sum_N dy
template <typename T, bool Log, int G>
__global__ void __launch_bounds__(kThreads)
softmax_backward_rows_kernel(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, int64_t O,
                             int64_t N) {
  __shared__ T sh[kThreads / 32];
  const RowSlot<G> rs;
  const bool active = rs.row < O;
  const int64_t base = (active ? rs.row : 0) * N;
  T s = 0;
  for (int64_t n = rs.lane; n < N && active; n += G) s += Log ? dy[base + n] : dy[base + n] * y[base + n];
  s = group_allreduce<G>(s, SumOp{}, sh);
  if (!active) return;
  for (int64_t n = rs.lane; n < N; n += G) {
    const int64_t k = base + n;
    if constexpr (Log) dx[k] = dy[k] - exp_fast(y[k]) * s;
    else dx[k] = y[k] * (dy[k] - s);
  }
}

template <typename T, bool Log>
__global__ void __launch_bounds__(kThreads)
softmax_backward_cols_kernel(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, int64_t O,
                             int64_t N, int64_t I) {
  for (int64_t c = (int64_t)blockIdx.x * kThreads + threadIdx.x; c < O * I; c += (int64_t)gridDim.x * kThreads) {
    const int64_t o = c / I, i = c - o * I;
    const int64_t base = o * N * I + i;
    T s = 0;
    for (int64_t n = 0; n < N; ++n) s += Log ? dy[base + n * I] : dy[base + n * I] * y[base + n * I];
    for (int64_t n = 0; n < N; ++n) {
      const int64_t k = base + n * I;
      if constexpr (Log) dx[k] = dy[k] - exp_fast(y[k]) * s;
      else dx[k] = y[k] * (dy[k] - s);
    }
  }
}

// ---------------------------------------------------------------- cross_entropy
// Row b, target t: lse = m + log sum_c exp(x[c] - m);
// loss = lse - (1-e) x[t] - e mean_c x[c] (in double), 0 when t == ignore_index.
template <typename T, int G>
__global__ void __launch_bounds__(kThreads)
cross_entropy_forward_kernel(const T* __restrict__ x, const int64_t* __restrict__ target, int64_t B, int64_t C,
                             int64_t ignore_index, double e, double* __restrict__ losses, T* __restrict__ lse) {
  __shared__ T sh[kThreads / 32];
  const RowSlot<G> rs;
  const bool active = rs.row < B;
  const T* xr = x + (active ? rs.row : 0) * C;
  T m = neg_inf<T>();
  for (int64_t c = rs.lane; c < C && active; c += G) m = fmax(m, xr[c]);
  m = group_allreduce<G>(m, MaxOp{}, sh);
  T s = 0;
  for (int64_t c = rs.lane; c < C && active; c += G) s += exp_fast(xr[c] - m);
  s = group_allreduce<G>(s, SumOp{}, sh);
  T sx = 0;
  if (e != 0) {  // uniform over the grid
    for (int64_t c = rs.lane; c < C && active; c += G) sx += xr[c];
    sx = group_allreduce<G>(sx, SumOp{}, sh);
  }
  if (!active || rs.lane != 0) return;
  const T l = m + d_log(s);
  lse[rs.row] = l;
  const int64_t t = target[rs.row];
  losses[rs.row] = t == ignore_index ? 0.0 : (double)l - (1 - e) * (double)xr[t] - e * ((double)sx / (double)C);
}

// dx = sc exp(x - lse) - sc e / C, minus sc (1-e) at the target; 0 on ignored rows.
// sc = scale * dloss[0] (or scale), where scale = 1 / *kept (0 if *kept is 0) when kept is given.
template <typename T, int G>
__global__ void __launch_bounds__(kThreads)
cross_entropy_backward_kernel(const T* __restrict__ x, const T* __restrict__ lse, const int64_t* __restrict__ target,
                              int64_t B, int64_t C, int64_t ignore_index, double e, double scale,
                              const int64_t* __restrict__ kept, const T* __restrict__ dloss, T* __restrict__ dx) {
  const RowSlot<G> rs;
  if (rs.row >= B) return;
  T* dr = dx + rs.row * C;
  const int64_t t = target[rs.row];
  if (t == ignore_index) {
    for (int64_t c = rs.lane; c < C; c += G) dr[c] = T(0);
    return;
  }
  if (kept) scale = *kept > 0 ? 1.0 / (double)*kept : 0.0;  // as the op computed it on the host before
  const double total = dloss ? scale * (double)dloss[0] : scale;
  const T sc = (T)total, smooth = (T)(total * e / (double)C), hit = (T)(total * (1 - e));
  const T* xr = x + rs.row * C;
  const T l = lse[rs.row];
  for (int64_t c = rs.lane; c < C; c += G) {
    T v = sc * exp_fast(xr[c] - l) - smooth;
    if (c == t) v -= hit;
    dr[c] = v;
  }
}

// ---------------------------------------------------------------- layer_norm
// Row b: mean, rstd = 1 / sqrt(biased var + eps) (two passes: no cancellation),
// y = (x - mean) rstd weight + bias.
template <typename T, int G>
__global__ void __launch_bounds__(kThreads)
layer_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ weight, const T* __restrict__ bias,
                          int64_t B, int64_t D, double eps, T* __restrict__ y, T* __restrict__ mean,
                          T* __restrict__ rstd) {
  __shared__ T sh[kThreads / 32];
  const RowSlot<G> rs;
  const bool active = rs.row < B;
  const T* xr = x + (active ? rs.row : 0) * D;
  T s = 0;
  for (int64_t d = rs.lane; d < D && active; d += G) s += xr[d];
  const T m = group_allreduce<G>(s, SumOp{}, sh) / (T)D;
  T q = 0;
  for (int64_t d = rs.lane; d < D && active; d += G) q += (xr[d] - m) * (xr[d] - m);
  q = group_allreduce<G>(q, SumOp{}, sh);
  if (!active) return;
  const T r = (T)(1.0 / sqrt((double)(q / (T)D) + eps));
  if (rs.lane == 0) {
    mean[rs.row] = m;
    rstd[rs.row] = r;
  }
  T* yr = y + rs.row * D;
  for (int64_t d = rs.lane; d < D; d += G) {
    T v = (xr[d] - m) * r;
    if (weight) v = v * weight[d];
    if (bias) v = v + bias[d];
    yr[d] = v;
  }
}

// dx = rstd (dn - mean_D dn - xhat mean_D(dn xhat)), dn = dy * weight, xhat = (x - mean) rstd.
template <typename T, int G>
__global__ void __launch_bounds__(kThreads)
layer_norm_backward_input_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ weight,
                                 const T* __restrict__ mean, const T* __restrict__ rstd, int64_t B, int64_t D,
                                 T* __restrict__ dx) {
  __shared__ T sh[kThreads / 32];
  const RowSlot<G> rs;
  const bool active = rs.row < B;
  const int64_t base = (active ? rs.row : 0) * D;
  const T m = mean[active ? rs.row : 0], r = rstd[active ? rs.row : 0];
  T s_dn = 0, s_dnx = 0;
  for (int64_t d = rs.lane; d < D && active; d += G) {
    const T dn = weight ? dy[base + d] * weight[d] : dy[base + d];
    s_dn += dn;
    s_dnx += dn * (x[base + d] - m) * r;
  }
  s_dn = group_allreduce<G>(s_dn, SumOp{}, sh);
  s_dnx = group_allreduce<G>(s_dnx, SumOp{}, sh);
  if (!active) return;
  const T mean_dn = s_dn / (T)D, mean_dnx = s_dnx / (T)D;
  for (int64_t d = rs.lane; d < D; d += G) {
    const T dn = weight ? dy[base + d] * weight[d] : dy[base + d];
    dx[base + d] = r * (dn - mean_dn - (x[base + d] - m) * r * mean_dnx);
  }
}

// Column sums over B: dweight (D) = sum_b dy xhat, dbias (D) = sum_b dy. Block (32, 8) per
// (chunk of kLnRows rows, 32 columns); each thread sums its rows in order, then a tree over y.
// With one chunk the sums go straight to dweight / dbias, else to partials (S,D) that
// cuda_reduce finishes.
constexpr int kLnX = 32, kLnY = 8, kLnRows = kLnY * 32;

template <typename T>
__global__ void __launch_bounds__(kThreads)
layer_norm_backward_params_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ mean,
                                  const T* __restrict__ rstd, int64_t B, int64_t D, int64_t tiles,
                                  T* __restrict__ pw, T* __restrict__ pb) {
  __shared__ T shw[kLnY][kLnX], shb[kLnY][kLnX];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t tile = blockIdx.x % tiles, s = blockIdx.x / tiles;
  const int64_t d = tile * kLnX + tx;
  T aw = 0, ab = 0;
  if (d < D) {
    const int64_t b1 = min(B, (s + 1) * kLnRows);
    for (int64_t b = s * kLnRows + ty; b < b1; b += kLnY) {
      const T g = dy[b * D + d];
      aw += g * (x[b * D + d] - mean[b]) * rstd[b];
      ab += g;
    }
  }
  shw[ty][tx] = aw;
  shb[ty][tx] = ab;
  __syncthreads();
#pragma unroll
  for (int h = kLnY / 2; h > 0; h >>= 1) {
    if (ty < h) {
      shw[ty][tx] += shw[ty + h][tx];
      shb[ty][tx] += shb[ty + h][tx];
    }
    __syncthreads();
  }
  if (ty == 0 && d < D) {
    if (pw) pw[s * D + d] = shw[0][tx];
    if (pb) pb[s * D + d] = shb[0][tx];
  }
}

}  // namespace

// ---------------------------------------------------------------- launchers

void cuda_softmax_forward(DType dtype, bool log, const void* x, void* y, int64_t O, int64_t N, int64_t I,
                          cudaStream_t stream) {
  constexpr std::string_view name = "cuda_softmax_forward";
  MG_CHECK(O >= 0 && N >= 0 && I >= 0, name, "negative extent in (O,N,I) = ({},{},{})", O, N, I);
  if (O * N * I == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = static_cast<const T*>(x);
    T* yp = static_cast<T*>(y);
    auto go = [&](auto log_c) {
      constexpr bool Log = decltype(log_c)::value;
      if (I == 1) {
        if (group_for(N) == 32)
          softmax_rows_kernel<T, Log, 32><<<row_grid(name, O, 32), kThreads, 0, stream>>>(xp, yp, O, N);
        else
          softmax_rows_kernel<T, Log, kThreads><<<row_grid(name, O, kThreads), kThreads, 0, stream>>>(xp, yp, O, N);
      } else {
        softmax_cols_kernel<T, Log><<<grid_for(O * I, kThreads), kThreads, 0, stream>>>(xp, yp, O, N, I);
      }
      check_launch();
    };
    log ? go(std::true_type{}) : go(std::false_type{});
  });
}

void cuda_softmax_backward(DType dtype, bool log, const void* dy, const void* y, void* dx, int64_t O, int64_t N,
                           int64_t I, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_softmax_backward";
  MG_CHECK(O >= 0 && N >= 0 && I >= 0, name, "negative extent in (O,N,I) = ({},{},{})", O, N, I);
  if (O * N * I == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* gp = static_cast<const T*>(dy);
    const T* yp = static_cast<const T*>(y);
    T* dp = static_cast<T*>(dx);
    auto go = [&](auto log_c) {
      constexpr bool Log = decltype(log_c)::value;
      if (I == 1) {
        if (group_for(N) == 32)
          softmax_backward_rows_kernel<T, Log, 32><<<row_grid(name, O, 32), kThreads, 0, stream>>>(gp, yp, dp, O, N);
        else
          softmax_backward_rows_kernel<T, Log, kThreads>
              <<<row_grid(name, O, kThreads), kThreads, 0, stream>>>(gp, yp, dp, O, N);
      } else {
        softmax_backward_cols_kernel<T, Log><<<grid_for(O * I, kThreads), kThreads, 0, stream>>>(gp, yp, dp, O, N, I);
      }
      check_launch();
    };
    log ? go(std::true_type{}) : go(std::false_type{});
  });
}

void cuda_cross_entropy_forward(DType dtype, const void* x, const int64_t* target, int64_t B, int64_t C,
                                int64_t ignore_index, double smoothing, double* losses, void* lse,
                                cudaStream_t stream) {
  constexpr std::string_view name = "cuda_cross_entropy_forward";
  MG_CHECK(B >= 0 && C > 0, name, "logits ({},{}): need C > 0", B, C);
  MG_CHECK(smoothing >= 0 && smoothing <= 1, name, "label_smoothing must be in [0, 1], got {}", smoothing);
  if (B == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = static_cast<const T*>(x);
    T* lp = static_cast<T*>(lse);
    if (group_for(C) == 32)
      cross_entropy_forward_kernel<T, 32>
          <<<row_grid(name, B, 32), kThreads, 0, stream>>>(xp, target, B, C, ignore_index, smoothing, losses, lp);
    else
      cross_entropy_forward_kernel<T, kThreads>
          <<<row_grid(name, B, kThreads), kThreads, 0, stream>>>(xp, target, B, C, ignore_index, smoothing, losses, lp);
    check_launch();
  });
}

namespace {
void cross_entropy_backward(std::string_view name, DType dtype, const void* x, const void* lse,
                            const int64_t* target, int64_t B, int64_t C, int64_t ignore_index, double smoothing,
                            double scale, const int64_t* kept, const void* dloss, void* dx, cudaStream_t stream) {
  MG_CHECK(B >= 0 && C > 0, name, "logits ({},{}): need C > 0", B, C);
  if (B == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = static_cast<const T*>(x);
    const T* lp = static_cast<const T*>(lse);
    const T* gp = static_cast<const T*>(dloss);
    T* dp = static_cast<T*>(dx);
    if (group_for(C) == 32)
      cross_entropy_backward_kernel<T, 32><<<row_grid(name, B, 32), kThreads, 0, stream>>>(
          xp, lp, target, B, C, ignore_index, smoothing, scale, kept, gp, dp);
    else
      cross_entropy_backward_kernel<T, kThreads><<<row_grid(name, B, kThreads), kThreads, 0, stream>>>(
          xp, lp, target, B, C, ignore_index, smoothing, scale, kept, gp, dp);
    check_launch();
  });
}

template <typename T>
__global__ void cross_entropy_mean_kernel(const double* __restrict__ total, const int64_t* __restrict__ kept,
                                          T* __restrict__ out) {
  const int64_t n = *kept;
  out[0] = n > 0 ? (T)(*total * (1.0 / (double)n)) : std::numeric_limits<T>::quiet_NaN();
}
}  // namespace

void cuda_cross_entropy_backward(DType dtype, const void* x, const void* lse, const int64_t* target, int64_t B,
                                 int64_t C, int64_t ignore_index, double smoothing, double scale,
                                 const void* dloss, void* dx, cudaStream_t stream) {
  cross_entropy_backward("cuda_cross_entropy_backward", dtype, x, lse, target, B, C, ignore_index, smoothing, scale,
                         nullptr, dloss, dx, stream);
}

void cuda_cross_entropy_backward_kept(DType dtype, const void* x, const void* lse, const int64_t* target, int64_t B,
                                      int64_t C, int64_t ignore_index, double smoothing, const int64_t* kept,
                                      const void* dloss, void* dx, cudaStream_t stream) {
  MG_CHECK(kept, "cuda_cross_entropy_backward_kept", "null count");
  cross_entropy_backward("cuda_cross_entropy_backward_kept", dtype, x, lse, target, B, C, ignore_index, smoothing, 0.0,
                         kept, dloss, dx, stream);
}

void cuda_cross_entropy_mean(DType dtype, const double* total, const int64_t* kept, void* out, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_cross_entropy_mean";
  MG_CHECK(total && kept && out, name, "null pointer");
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_mean_kernel<T><<<1, 1, 0, stream>>>(total, kept, static_cast<T*>(out));
    check_launch();
  });
}

void cuda_layer_norm_forward(DType dtype, const void* x, const void* weight, const void* bias, int64_t B,
                             int64_t D, double eps, void* y, void* mean, void* rstd, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_layer_norm_forward";
  MG_CHECK(B >= 0 && D >= 0 && eps >= 0, name, "B = {}, D = {}, eps = {}", B, D, eps);
  if (B == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto args = [&](auto G_c) {
      constexpr int G = decltype(G_c)::value;
      layer_norm_forward_kernel<T, G><<<row_grid(name, B, G), kThreads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias), B, D, eps,
          static_cast<T*>(y), static_cast<T*>(mean), static_cast<T*>(rstd));
    };
    if (group_for(D) == 32) args(std::integral_constant<int, 32>{});
    else args(std::integral_constant<int, kThreads>{});
    check_launch();
  });
}

void cuda_layer_norm_backward_input(DType dtype, const void* dy, const void* x, const void* weight,
                                    const void* mean, const void* rstd, int64_t B, int64_t D, void* dx,
                                    cudaStream_t stream) {
  constexpr std::string_view name = "cuda_layer_norm_backward_input";
  MG_CHECK(B >= 0 && D >= 0, name, "B = {}, D = {}", B, D);
  if (B == 0 || D == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto args = [&](auto G_c) {
      constexpr int G = decltype(G_c)::value;
      layer_norm_backward_input_kernel<T, G><<<row_grid(name, B, G), kThreads, 0, stream>>>(
          static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(weight),
          static_cast<const T*>(mean), static_cast<const T*>(rstd), B, D, static_cast<T*>(dx));
    };
    if (group_for(D) == 32) args(std::integral_constant<int, 32>{});
    else args(std::integral_constant<int, kThreads>{});
    check_launch();
  });
}

void cuda_layer_norm_backward_params(DType dtype, const void* dy, const void* x, const void* mean,
                                     const void* rstd, int64_t B, int64_t D, void* dweight, void* dbias,
                                     cudaStream_t stream) {
  constexpr std::string_view name = "cuda_layer_norm_backward_params";
  MG_CHECK(B >= 0 && D >= 0, name, "B = {}, D = {}", B, D);
  if (D == 0 || (!dweight && !dbias)) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (B == 0) {  // empty sums
      if (dweight) MG_CUDA_CHECK(cudaMemsetAsync(dweight, 0, (size_t)D * sizeof(T), stream));
      if (dbias) MG_CUDA_CHECK(cudaMemsetAsync(dbias, 0, (size_t)D * sizeof(T), stream));
      return;
    }
    const int64_t S = (B + kLnRows - 1) / kLnRows, tiles = (D + kLnX - 1) / kLnX;
    Workspace ws(S > 1 ? (size_t)(2 * S * D) * sizeof(T) : 0, stream);
    T* pw = static_cast<T*>(dweight);
    T* pb = static_cast<T*>(dbias);
    if (S > 1) {
      pw = dweight ? ws.as<T>() : nullptr;
      pb = dbias ? ws.as<T>() + S * D : nullptr;
    }
    layer_norm_backward_params_kernel<T><<<exact_grid(name, S * tiles), dim3(kLnX, kLnY), 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(mean),
        static_cast<const T*>(rstd), B, D, tiles, pw, pb);
    check_launch();
    if (S > 1) {  // partials (S,D) summed over S
      if (dweight) cuda_reduce(ReduceOp::Sum, dtype, pw, 1, S, D, dweight, nullptr, 0, stream);
      if (dbias) cuda_reduce(ReduceOp::Sum, dtype, pb, 1, S, D, dbias, nullptr, 0, stream);
    }
  });
}

}  // namespace megagrad::cuda
