// Counter-based random numbers on the device: Philox4x32-10 exactly as core/rng.cpp, so that a
// (seed, offset) gives the same dropout mask and the same uniforms as the CPU.
//
// Legend: L elements; element l draws from counter (hi = 0, lo = first + l) under key = seed.
// Only integer operations and exact conversions decide a dropout mask (uint_to_unit is exact),
// so masks are bit-identical to the CPU's by construction.
#include "backends/cuda/common.cuh"

namespace megagrad::cuda {

namespace {

struct Words {
  uint32_t w[4];
};

// philox4x32(key, counter_hi, counter_lo) of core/rng.cpp, with the 32x32 -> 64 products as
// (mul.lo, mul.hi) pairs.
__device__ __forceinline__ Words philox(uint64_t key, uint64_t counter_hi, uint64_t counter_lo) {
  constexpr uint32_t M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;
  uint32_t c0 = (uint32_t)counter_lo, c1 = (uint32_t)(counter_lo >> 32);
  uint32_t c2 = (uint32_t)counter_hi, c3 = (uint32_t)(counter_hi >> 32);
  uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint32_t lo0 = M0 * c0, hi0 = __umulhi(M0, c0);
    const uint32_t lo1 = M1 * c2, hi1 = __umulhi(M1, c2);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c1 = lo1;
    c3 = lo0;
    c0 = n0;
    c2 = n2;
    k0 += W0;
    k1 += W1;
  }
  return {{c0, c1, c2, c3}};
}

// uint_to_unit of core/rng.h: 53 bits to [0, 1), exact.
__device__ __forceinline__ double to_unit(uint32_t hi, uint32_t lo) {
  const uint64_t bits = ((uint64_t)hi << 21) ^ (uint64_t)lo;
  return (double)(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
dropout_forward_kernel(const T* __restrict__ x, T* __restrict__ y, bool* __restrict__ mask, int64_t L, double p,
                       T scale, uint64_t seed, uint64_t first) {
  for (int64_t l = (int64_t)blockIdx.x * kThreads + threadIdx.x; l < L; l += (int64_t)gridDim.x * kThreads) {
    const Words r = philox(seed, 0, first + (uint64_t)l);
    const bool keep = to_unit(r.w[0], r.w[1]) >= p;
    mask[l] = keep;
    y[l] = keep ? x[l] * scale : T(0);
  }
}

// dx = dy * (mask * scale), the CPU's expression (bit-identical).
template <typename T>
__global__ void __launch_bounds__(kThreads)
dropout_backward_kernel(const T* __restrict__ dy, const bool* __restrict__ mask, T* __restrict__ dx, int64_t L,
                        T scale) {
  for (int64_t l = (int64_t)blockIdx.x * kThreads + threadIdx.x; l < L; l += (int64_t)gridDim.x * kThreads)
    dx[l] = dy[l] * ((T)mask[l] * scale);
}

// lo + (hi - lo) u as one FMA: what the CPU build computes when it contracts (-march=native).
template <typename T>
__global__ void __launch_bounds__(kThreads)
uniform_kernel(T* __restrict__ out, int64_t n, double lo, double hi, uint64_t seed, uint64_t first) {
  for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += (int64_t)gridDim.x * kThreads) {
    const Words r = philox(seed, 0, first + (uint64_t)i);
    out[i] = (T)fma(hi - lo, to_unit(r.w[0], r.w[1]), lo);
  }
}

// Box-Muller as normal_at: mean + std sqrt(-2 log u1) cos(2 pi u2), u1 >= 1e-300.
template <typename T>
__global__ void __launch_bounds__(kThreads)
normal_kernel(T* __restrict__ out, int64_t n, double mean, double std, uint64_t seed, uint64_t first) {
  constexpr double kTwoPi = 6.283185307179586476925;
  for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += (int64_t)gridDim.x * kThreads) {
    const Words r = philox(seed, 0, first + (uint64_t)i);
    const double u1 = fmax(to_unit(r.w[0], r.w[1]), 1e-300), u2 = to_unit(r.w[2], r.w[3]);
    out[i] = (T)fma(std * sqrt(-2.0 * log(u1)), cos(kTwoPi * u2), mean);
  }
}

__global__ void __launch_bounds__(kThreads)
philox_kernel(uint64_t seed, uint64_t hi, uint64_t first, int64_t n, uint32_t* __restrict__ out) {
  for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += (int64_t)gridDim.x * kThreads) {
    const Words r = philox(seed, hi, first + (uint64_t)i);
#pragma unroll
    for (int j = 0; j < 4; ++j) out[4 * i + j] = r.w[j];
  }
}

}  // namespace

void cuda_dropout_forward(DType dtype, const void* x, void* y, bool* mask, int64_t L, double p, uint64_t seed,
                          uint64_t first, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_dropout_forward";
  MG_CHECK(p >= 0.0 && p < 1.0, name, "p must be in [0, 1), got {}", p);
  MG_CHECK(L >= 0, name, "negative length {}", L);
  if (L == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dropout_forward_kernel<T><<<grid_for(L, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), mask, L, p, (T)(1.0 / (1.0 - p)), seed, first);
    check_launch();
  });
}

void cuda_dropout_backward(DType dtype, const void* dy, const bool* mask, void* dx, int64_t L, double p,
                           cudaStream_t stream) {
  constexpr std::string_view name = "cuda_dropout_backward";
  MG_CHECK(p >= 0.0 && p < 1.0, name, "p must be in [0, 1), got {}", p);
  MG_CHECK(L >= 0, name, "negative length {}", L);
  if (L == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dropout_backward_kernel<T><<<grid_for(L, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(dy), mask, static_cast<T*>(dx), L, (T)(1.0 / (1.0 - p)));
    check_launch();
  });
}

void cuda_uniform(DType dtype, void* out, int64_t n, double lo, double hi, uint64_t seed, uint64_t first,
                  cudaStream_t stream) {
  constexpr std::string_view name = "cuda_uniform";
  MG_CHECK(n >= 0, name, "negative length {}", n);
  if (n == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    uniform_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<T*>(out), n, lo, hi, seed, first);
    check_launch();
  });
}

void cuda_normal(DType dtype, void* out, int64_t n, double mean, double std, uint64_t seed, uint64_t first,
                 cudaStream_t stream) {
  constexpr std::string_view name = "cuda_normal";
  MG_CHECK(n >= 0, name, "negative length {}", n);
  if (n == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    normal_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<T*>(out), n, mean, std, seed, first);
    check_launch();
  });
}

void cuda_philox(uint64_t seed, uint64_t counter_hi, uint64_t first, int64_t n, uint32_t* out, cudaStream_t stream) {
  MG_CHECK(n >= 0, "cuda_philox", "negative length {}", n);
  if (n == 0) return;
  philox_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(seed, counter_hi, first, n, out);
  check_launch();
}

}  // namespace megagrad::cuda
