// Device-side helpers shared by the kernel files (backends/cuda/*.cu): launch sizes, dtype
// dispatch (C++17: the .cu files cannot use core/dispatch.h's templated lambdas), aligned vector
// types, 32-bit fast division, strided offset calculation, warp/group reductions, workspace.
#pragma once
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernels.h"
#include "core/dtype.h"

namespace megagrad::cuda {

inline constexpr int kThreads = 256;  // threads per block of the 1-D kernels

// ---------------------------------------------------------------- launch sizes

// Multiprocessors of the current device (cached per device; only caps grid sizes, never
// changes a result).
inline int sm_count() {
  static int cached[64] = {};
  int dev = 0;
  MG_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64) dev = 0;
  if (cached[dev] == 0) {
    int n = 0;
    MG_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    cached[dev] = std::max(n, 1);
  }
  return cached[dev];
}

// Blocks for `work` items of `per_block` each, capped for grid-stride loops.
inline unsigned grid_for(int64_t work, int64_t per_block, int waves = 32) {
  int64_t b = (work + per_block - 1) / per_block;
  b = std::min<int64_t>(b, (int64_t)sm_count() * waves);
  return (unsigned)std::max<int64_t>(b, 1);
}

// Blocks for exactly `blocks` work items without a grid-stride loop.
inline unsigned exact_grid(std::string_view op, int64_t blocks) {
  MG_CHECK(blocks <= (int64_t)std::numeric_limits<int32_t>::max(), op, "{} blocks do not fit one grid", blocks);
  return (unsigned)std::max<int64_t>(blocks, 1);
}

// ---------------------------------------------------------------- dtype dispatch
template <typename T> struct Tag { using type = T; };

template <typename F>
decltype(auto) dispatch_float_cu(std::string_view op, DType t, F&& f) {
  switch (t) {
    case DType::Float32: return f(Tag<float>{});
    case DType::Float64: return f(Tag<double>{});
    default: fail(op, "expected float32 or float64, got {}", dtype_name(t));
  }
}

template <typename F>
decltype(auto) dispatch_all_cu(std::string_view op, DType t, F&& f) {
  switch (t) {
    case DType::Float32: return f(Tag<float>{});
    case DType::Float64: return f(Tag<double>{});
    case DType::Int64: return f(Tag<int64_t>{});
    case DType::Bool: return f(Tag<bool>{});
  }
  fail(op, "unknown dtype");
}

// ---------------------------------------------------------------- vectors
// N elements loaded or stored as one access (up to 16 bytes: LDG.128 / STG.128).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

inline bool aligned_to(const void* p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

// ---------------------------------------------------------------- division
// 32-bit quotient and remainder by a runtime divisor with a multiply-high (Granlund-Montgomery,
// as PyTorch's IntDivider): valid for n, d < 2^31, which the 32-bit index path guarantees.
template <typename Idx> struct Divider;

template <> struct Divider<uint32_t> {
  uint32_t d = 1, m = 1, s = 0;
  Divider() = default;
  explicit Divider(uint32_t divisor) : d(divisor) {
    s = 0;
    while (s < 32 && (uint32_t(1) << s) < divisor) ++s;
    const uint64_t one = 1;
    m = (uint32_t)(((one << 32) * ((one << s) - divisor)) / divisor + 1);
  }
  __host__ __device__ __forceinline__ uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    return (__umulhi(n, m) + n) >> s;
#else
    return (uint32_t)((((uint64_t)n * m) >> 32) + n) >> s;  // host: for tests of the index math
#endif
  }
};

template <> struct Divider<int64_t> {
  int64_t d = 1;
  Divider() = default;
  explicit Divider(int64_t divisor) : d(divisor) {}
  __host__ __device__ __forceinline__ int64_t div(int64_t n) const { return n / d; }
};

// ---------------------------------------------------------------- strided layouts
// K operands over one shape, dims merged as merge_dims (core/strided.h) does (size-1 dims
// dropped, dims laid out back to back joined), stored innermost first.
template <int K>
struct Layout {
  int ndim = 0;  // 0: a single element
  int64_t sizes[kMaxDims] = {};
  int64_t strides[K][kMaxDims] = {};
  int64_t numel = 1;
};

template <int K>
Layout<K> merge_views(std::string_view op, const CudaView* const (&views)[K]) {
  const CudaView& ref = *views[0];
  for (int k = 1; k < K; ++k) {
    bool same = views[k]->ndim == ref.ndim;
    for (int d = 0; same && d < ref.ndim; ++d) same = views[k]->sizes[d] == ref.sizes[d];
    MG_CHECK(same, op, "operand {} has {} dims / sizes that differ from the output's ({} dims): views must be "
             "broadcast to the output's shape", k, views[k]->ndim, ref.ndim);
  }
  MG_CHECK(ref.ndim >= 0 && ref.ndim <= kMaxDims, op, "{} dims (at most {})", ref.ndim, kMaxDims);
  // Outer to inner, as merge_dims, into a temporary; then reversed.
  int n = 0;
  int64_t sz[kMaxDims];
  int64_t st[K][kMaxDims];
  int64_t numel = 1;
  for (int d = 0; d < ref.ndim; ++d) {
    const int64_t s = ref.sizes[d];
    numel *= s;
    if (s == 1) continue;
    bool merge = n > 0;
    for (int k = 0; k < K && merge; ++k) merge = st[k][n - 1] == views[k]->strides[d] * s;
    if (merge) {
      sz[n - 1] *= s;
      for (int k = 0; k < K; ++k) st[k][n - 1] = views[k]->strides[d];
    } else {
      sz[n] = s;
      for (int k = 0; k < K; ++k) st[k][n] = views[k]->strides[d];
      ++n;
    }
  }
  Layout<K> L;
  L.numel = numel;
  if (numel == 0) return L;
  for (int k = 0; k < K; ++k)
    for (int d = 0; d < ref.ndim; ++d)
      MG_CHECK(views[k]->strides[d] >= 0, op, "operand {} has a negative stride {}", k, views[k]->strides[d]);
  L.ndim = n;
  for (int i = 0; i < n; ++i) {
    L.sizes[i] = sz[n - 1 - i];
    for (int k = 0; k < K; ++k) L.strides[k][i] = st[k][n - 1 - i];
  }
  return L;
}

// Every operand contiguous over the merged layout (one dim of stride 1, or a single element)?
template <int K>
bool is_contiguous(const Layout<K>& L) {
  if (L.ndim == 0) return true;
  if (L.ndim > 1) return false;
  for (int k = 0; k < K; ++k)
    if (L.strides[k][0] != 1) return false;
  return true;
}

// Do all element offsets (and the element count) fit the 32-bit index path?
template <int K>
bool fits_32bit(const Layout<K>& L) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  if (L.numel > kMax) return false;
  for (int k = 0; k < K; ++k) {
    int64_t last = 0;
    for (int d = 0; d < L.ndim; ++d) last += (L.sizes[d] - 1) * L.strides[k][d];
    if (last > kMax) return false;
  }
  return true;
}

// Offsets of the K operands at linear (row-major) position i: the innermost dims by division,
// the outermost takes what is left (so a 1-dim layout divides nothing).
template <int K, typename Idx>
struct OffsetCalc {
  int ndim = 0;
  Divider<Idx> div[kMaxDims];
  Idx strides[kMaxDims][K];

  OffsetCalc() = default;
  explicit OffsetCalc(const Layout<K>& L) : ndim(L.ndim) {
    for (int d = 0; d < kMaxDims; ++d)
      for (int k = 0; k < K; ++k) strides[d][k] = 0;
    for (int d = 0; d < L.ndim; ++d) {
      div[d] = Divider<Idx>((Idx)L.sizes[d]);
      for (int k = 0; k < K; ++k) strides[d][k] = (Idx)L.strides[k][d];
    }
  }

  __host__ __device__ __forceinline__ void get(Idx i, Idx (&off)[K]) const {
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] = 0;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d == ndim) break;
      Idx c = i;
      if (d + 1 < ndim) {
        const Idx q = div[d].div(i);
        c = i - q * div[d].d;
        i = q;
      }
#pragma unroll
      for (int k = 0; k < K; ++k) off[k] += c * strides[d][k];
    }
  }
};

// ---------------------------------------------------------------- reductions in a warp / group
// Butterfly (xor) reductions: with a commutative op every lane ends with the same bits, in a
// fixed order: deterministic.
template <typename T, typename Op>
__device__ __forceinline__ T warp_allreduce(T v, Op op) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Allreduce over a group of G threads (G = 32: one warp; G = kThreads: the whole block, which
// must then call it uniformly). `sh` is kThreads/32 slots of shared memory.
template <int G, typename T, typename Op>
__device__ __forceinline__ T group_allreduce(T v, Op op, T* sh) {
  v = warp_allreduce(v, op);
  if constexpr (G > 32) {
    constexpr int W = G / 32;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();  // sh may still be read by an earlier call
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = sh[0];
#pragma unroll
    for (int w = 1; w < W; ++w) v = op(v, sh[w]);
  }
  return v;
}

struct SumOp {
  template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
// max ignoring NaN (as the CPU's row_max `x > m ? x : m`), symmetric so that lanes agree.
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
  __device__ __forceinline__ double operator()(double a, double b) const { return fmax(a, b); }
};

// ---------------------------------------------------------------- workspace
// A temporary device buffer, stream-ordered (freed after the work queued before its end).
// The device's default pool keeps up to kPoolKeepBytes of freed blocks: with the default
// threshold (0) every synchronisation hands them back to the driver and the next step pays for
// them again; the cap bounds what the pool holds back from other allocators.
inline constexpr uint64_t kPoolKeepBytes = uint64_t(256) << 20;

inline void configure_mempool_once() {
  static bool done[64] = {};
  int dev = 0;
  MG_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64 || done[dev]) return;
  cudaMemPool_t pool;
  MG_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
  uint64_t threshold = kPoolKeepBytes;
  MG_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  done[dev] = true;
}

class Workspace {
 public:
  Workspace(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes == 0) return;
    configure_mempool_once();
    MG_CUDA_CHECK(cudaMallocAsync(&p_, bytes, stream));
  }
  ~Workspace() {
    if (p_) cudaFreeAsync(p_, stream_);  // errors here would surface at the next checked call
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  cudaStream_t stream_;
};

inline void check_launch() { MG_CUDA_CHECK(cudaGetLastError()); }

}  // namespace megagrad::cuda
