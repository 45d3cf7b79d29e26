// Fused optimizer updates (the CUDA side of mega/optim.cpp) on flat contiguous arrays, and the
// sum of squares for the global gradient norm.
//
// Legend: n elements. p (n) parameters, g (n) gradients, m = exp_avg (n), v = exp_avg_sq (n),
// buf = momentum_buffer (n). One pass, one thread per N-element vector (16-byte accesses when
// every array is aligned; N = 1 otherwise). Each element's update is the CPU's function (backends/optimizer_update.h).
#include "backends/cuda/common.cuh"
#include "backends/optimizer_update.h"

namespace megagrad::cuda {

namespace {

// The update of one element: adamw_update, sgd_update (backends/optimizer_update.h, the CPU's too).

template <typename T, int N>
__global__ void __launch_bounds__(kThreads)
adamw_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v, int64_t n,
             AdamWConsts<T> c) {
  using V = Vec<T, N>;
  const int64_t nvec = n / N;
  for (int64_t j = (int64_t)blockIdx.x * kThreads + threadIdx.x; j < nvec; j += (int64_t)gridDim.x * kThreads) {
    V vp = reinterpret_cast<V*>(p)[j], vm = reinterpret_cast<V*>(m)[j], vv = reinterpret_cast<V*>(v)[j];
    const V vg = reinterpret_cast<const V*>(g)[j];
#pragma unroll
    for (int e = 0; e < N; ++e) adamw_update(vp.v[e], vg.v[e], vm.v[e], vv.v[e], c);
    reinterpret_cast<V*>(p)[j] = vp;
    reinterpret_cast<V*>(m)[j] = vm;
    reinterpret_cast<V*>(v)[j] = vv;
  }
  if constexpr (N > 1) {
    const int64_t t = nvec * N + threadIdx.x;
    if (blockIdx.x == 0 && t < n) adamw_update(p[t], g[t], m[t], v[t], c);
  }
}

template <typename T, int N, bool Mom>
__global__ void __launch_bounds__(kThreads)
sgd_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ buf, int64_t n, SGDConsts<T> c) {
  using V = Vec<T, N>;
  const int64_t nvec = n / N;
  for (int64_t j = (int64_t)blockIdx.x * kThreads + threadIdx.x; j < nvec; j += (int64_t)gridDim.x * kThreads) {
    V vp = reinterpret_cast<V*>(p)[j];
    const V vg = reinterpret_cast<const V*>(g)[j];
    V vb;
    if constexpr (Mom) vb = reinterpret_cast<V*>(buf)[j];
#pragma unroll
    for (int e = 0; e < N; ++e) sgd_update<Mom>(vp.v[e], vg.v[e], &vb.v[e], c);
    reinterpret_cast<V*>(p)[j] = vp;
    if constexpr (Mom) reinterpret_cast<V*>(buf)[j] = vb;
  }
  if constexpr (N > 1) {
    const int64_t t = nvec * N + threadIdx.x;
    if (blockIdx.x == 0 && t < n) sgd_update<Mom>(p[t], g[t], Mom ? buf + t : nullptr, c);
  }
}

// Sum of squares in double: a block per fixed chunk of kSqChunk elements -> partials (S), then
// one block adds the partials (each thread in order, then the block's butterfly).
constexpr int64_t kSqChunk = (int64_t)kThreads * 16;

template <typename T>
__global__ void __launch_bounds__(kThreads) sum_squares_kernel(const T* __restrict__ g, int64_t n, double* part) {
  __shared__ double sh[kThreads / 32];
  const int64_t b0 = (int64_t)blockIdx.x * kSqChunk, b1 = min(n, b0 + kSqChunk);
  double acc = 0;
#pragma unroll 4
  for (int64_t i = b0 + threadIdx.x; i < b1; i += kThreads) acc += (double)g[i] * (double)g[i];
  acc = group_allreduce<kThreads>(acc, SumOp{}, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

__global__ void __launch_bounds__(kThreads) sum_partials_kernel(const double* part, int64_t S, double* out,
                                                                bool accumulate) {
  __shared__ double sh[kThreads / 32];
  double acc = 0;
  for (int64_t i = threadIdx.x; i < S; i += kThreads) acc += part[i];
  acc = group_allreduce<kThreads>(acc, SumOp{}, sh);
  if (threadIdx.x == 0) *out = accumulate ? *out + acc : acc;
}

template <typename T> bool all_aligned(std::initializer_list<const void*> ps, int N) {
  for (const void* p : ps)
    if (p && !aligned_to(p, sizeof(T) * N)) return false;
  return true;
}

}  // namespace

void cuda_adamw(DType dtype, void* p, const void* g, void* m, void* v, int64_t n, const AdamWScalars& s,
                cudaStream_t stream) {
  constexpr std::string_view name = "cuda_adamw";
  MG_CHECK(n >= 0, name, "negative length {}", n);
  if (n == 0) return;
  MG_CHECK(p && g && m && v, name, "null pointer");
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const AdamWConsts<T> c(s);
    T* pp = static_cast<T*>(p);
    const T* gp = static_cast<const T*>(g);
    T* mp = static_cast<T*>(m);
    T* vp = static_cast<T*>(v);
    constexpr int N = 16 / sizeof(T);
    if (all_aligned<T>({p, g, m, v}, N))
      adamw_kernel<T, N><<<grid_for(std::max<int64_t>(n / N, 1), kThreads), kThreads, 0, stream>>>(pp, gp, mp, vp, n, c);
    else
      adamw_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(pp, gp, mp, vp, n, c);
    check_launch();
  });
}

void cuda_sgd(DType dtype, void* p, const void* g, void* buf, int64_t n, const SGDScalars& s, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_sgd";
  MG_CHECK(n >= 0, name, "negative length {}", n);
  if (n == 0) return;
  MG_CHECK(p && g, name, "null pointer");
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const SGDConsts<T> c(s);
    T* pp = static_cast<T*>(p);
    const T* gp = static_cast<const T*>(g);
    T* bp = static_cast<T*>(buf);
    constexpr int N = 16 / sizeof(T);
    const bool vec = all_aligned<T>({p, g, buf}, N);
    const unsigned grid = grid_for(vec ? std::max<int64_t>(n / N, 1) : n, kThreads);
    if (bp) {
      if (vec) sgd_kernel<T, N, true><<<grid, kThreads, 0, stream>>>(pp, gp, bp, n, c);
      else sgd_kernel<T, 1, true><<<grid, kThreads, 0, stream>>>(pp, gp, bp, n, c);
    } else {
      if (vec) sgd_kernel<T, N, false><<<grid, kThreads, 0, stream>>>(pp, gp, bp, n, c);
      else sgd_kernel<T, 1, false><<<grid, kThreads, 0, stream>>>(pp, gp, bp, n, c);
    }
    check_launch();
  });
}

void cuda_sum_squares(DType dtype, const void* g, int64_t n, double* out, bool accumulate, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_sum_squares";
  MG_CHECK(n >= 0 && out, name, "n = {}, out {}", n, (const void*)out);
  const int64_t S = std::max<int64_t>((n + kSqChunk - 1) / kSqChunk, 1);
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    Workspace part((size_t)S * sizeof(double), stream);
    if (n == 0) {
      MG_CUDA_CHECK(cudaMemsetAsync(part.as<double>(), 0, sizeof(double), stream));
    } else {
      sum_squares_kernel<T><<<exact_grid(name, S), kThreads, 0, stream>>>(static_cast<const T*>(g), n,
                                                                          part.as<double>());
      check_launch();
    }
    sum_partials_kernel<<<1, kThreads, 0, stream>>>(part.as<double>(), S, out, accumulate);
    check_launch();
  });
}

}  // namespace megagrad::cuda
