// Reductions over one extent of a contiguous tensor seen as x (O,R,I) -> out (O,I).
//
// Legend: O outer (independent), R reduced, I inner (independent, contiguous); S splits of R.
//
// Deterministic, without atomics: R is cut into fixed chunks (the sizes below, never the
// device's SM count), each chunk is reduced by a fixed tree, and the partials (O,S,I) are a new
// (O, R' = S, I) problem for the next pass, until one chunk covers R. The same shapes always give
// the same bits.
//   rows    (I == 1): a group of G threads per (o, chunk): G = 32 (a warp, R <= 512) or 256 (the
//           block); thread t sums r = t, t + G, ... (at most 16 values) in order, then a
//           butterfly over the group.
//   columns (I > 1):  a 32 x 8 block per (o, chunk, 32 columns): x reads are coalesced over i;
//           thread (i, y) sums r = y, y + 8, ... (at most 32 values), then a tree over y.
// Accumulation is in the element type (float32 in float: the tree keeps the error near
// log2(R) ulp rather than R ulp). Var runs Sum for the mean, then the sum of squared deviations
// from it (no E[x^2] - E[x]^2 cancellation).
// Max / Min carry (value, index); the order "a NaN wins only at index 0, ties go to the lower
// index" is a total preorder, so any tree gives what the CPU's left-to-right loop gives.
#include <memory>
#include "backends/cuda/common.cuh"

namespace megagrad::cuda {

namespace {

enum class RK { Sum, SqDev, Max, Min };

constexpr int64_t kNoIndex = std::numeric_limits<int64_t>::max();  // an empty (max/min) accumulator
constexpr int kRowPerThread = 16;
constexpr int kColX = 32, kColY = 8, kColPerThread = 32;

template <typename T>
struct ValIdx {
  T v;
  int64_t i;
};

template <typename T, RK K, bool Best = (K == RK::Max || K == RK::Min)>
struct Ops;

// Sum and SqDev: plain sums (SqDev maps x to (x - c)^2 on the first pass).
template <typename T, RK K>
struct Ops<T, K, false> {
  using Acc = T;
  __device__ static Acc identity() { return T(0); }
  __device__ static Acc from(T x, int64_t, T c) {
    if constexpr (K == RK::SqDev) {
      const T d = x - c;
      return d * d;
    } else {
      return x;
    }
  }
  __device__ static Acc combine(Acc a, Acc b) { return a + b; }
  __device__ static Acc shfl_xor(Acc a, int off) { return __shfl_xor_sync(0xffffffffu, a, off); }
  __device__ static void write(Acc a, T* out, int64_t*, int64_t k, T scale) { out[k] = a * scale; }
};

// Max and Min: (value, index) under the CPU's order.
template <typename T, RK K>
struct Ops<T, K, true> {
  using Acc = ValIdx<T>;
  __device__ static Acc identity() { return {T(0), kNoIndex}; }
  __device__ static Acc from(T x, int64_t r, T) { return {x, r}; }
  // -1 empty, 0 a NaN after index 0 (never chosen), 1 a number, 2 a NaN at index 0 (always wins:
  // the CPU loop starts from element 0 and nothing compares greater than NaN).
  __device__ static int rank(const Acc& a) {
    if (a.i == kNoIndex) return -1;
    if (a.v != a.v) return a.i == 0 ? 2 : 0;
    return 1;
  }
  __device__ static Acc combine(Acc a, Acc b) {
    const int ra = rank(a), rb = rank(b);
    if (ra != rb) return ra > rb ? a : b;
    if (ra == 1 && a.v != b.v) {
      const bool b_better = K == RK::Max ? b.v > a.v : b.v < a.v;
      return b_better ? b : a;
    }
    return a.i <= b.i ? a : b;  // equal values (or both NaN, both empty): the first index
  }
  __device__ static Acc shfl_xor(Acc a, int off) {
    return {__shfl_xor_sync(0xffffffffu, a.v, off), (int64_t)__shfl_xor_sync(0xffffffffu, (long long)a.i, off)};
  }
  __device__ static void write(Acc a, T* out, int64_t* idx, int64_t k, T) {
    if (out) out[k] = a.v;
    if (idx) idx[k] = a.i;
  }
};

// Reduces acc over a group of G threads (a warp, or the whole block); the result is valid in
// every lane of the group. G == kThreads must be called by the whole block.
template <int G, typename Op, typename Acc>
__device__ __forceinline__ Acc group_reduce(Acc acc, Acc* sh) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc = Op::combine(acc, Op::shfl_xor(acc, off));
  if constexpr (G > 32) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) sh[warp] = acc;
    __syncthreads();
    acc = sh[0];
#pragma unroll
    for (int w = 1; w < G / 32; ++w) acc = Op::combine(acc, sh[w]);
  }
  return acc;
}

// One pass over rows (I == 1). in: x (O,R) on the first pass, else partials (O,R) of Acc.
// Writes partials (O,S) or, on the final pass (S == 1), out (O) and idx (O).
template <typename T, RK K, bool First, bool Final, int G>
__global__ void __launch_bounds__(kThreads)
reduce_rows_kernel(const void* in, int64_t O, int64_t R, int64_t S, int64_t chunk, const T* center, void* dst,
                   int64_t* idx, T scale) {
  using Op = Ops<T, K>;
  using Acc = typename Op::Acc;
  constexpr int kGroups = kThreads / G;
  __shared__ Acc sh[kThreads / 32];
  const int lane = threadIdx.x % G;
  const int64_t w = (int64_t)blockIdx.x * kGroups + threadIdx.x / G;  // work item (o, s)
  const bool active = w < O * S;  // uniform over the block when G == kThreads
  Acc acc = Op::identity();
  if (active) {
    const int64_t o = w / S, s = w - o * S;
    const int64_t r0 = s * chunk, r1 = min(R, r0 + chunk);
    if constexpr (First) {
      const T* row = static_cast<const T*>(in) + o * R;
      const T c = K == RK::SqDev ? center[o] : T(0);
#pragma unroll 4
      for (int64_t r = r0 + lane; r < r1; r += G) acc = Op::combine(acc, Op::from(row[r], r, c));
    } else {
      const Acc* row = static_cast<const Acc*>(in) + o * R;
#pragma unroll 4
      for (int64_t r = r0 + lane; r < r1; r += G) acc = Op::combine(acc, row[r]);
    }
  }
  acc = group_reduce<G, Op>(acc, sh);
  if (active && lane == 0) {
    if constexpr (Final) Op::write(acc, static_cast<T*>(dst), idx, w, scale);  // S == 1: w == o
    else static_cast<Acc*>(dst)[w] = acc;
  }
}

// One pass over columns (I > 1), block (kColX, kColY). Work item (o, s, tile of kColX columns).
template <typename T, RK K, bool First, bool Final>
__global__ void __launch_bounds__(kThreads)
reduce_cols_kernel(const void* in, int64_t O, int64_t R, int64_t I, int64_t S, int64_t chunk, int64_t tiles,
                   const T* center, void* dst, int64_t* idx, T scale) {
  using Op = Ops<T, K>;
  using Acc = typename Op::Acc;
  __shared__ Acc sh[kColY][kColX];
  const int tx = threadIdx.x, ty = threadIdx.y;
  int64_t w = blockIdx.x;
  const int64_t tile = w % tiles;
  w /= tiles;
  const int64_t s = w % S, o = w / S;
  const int64_t i = tile * kColX + tx;
  const bool active = i < I;
  Acc acc = Op::identity();
  if (active) {
    const int64_t r0 = s * chunk, r1 = min(R, r0 + chunk);
    if constexpr (First) {
      const T* base = static_cast<const T*>(in) + o * R * I + i;
      const T c = K == RK::SqDev ? center[o * I + i] : T(0);
#pragma unroll 4
      for (int64_t r = r0 + ty; r < r1; r += kColY) acc = Op::combine(acc, Op::from(base[r * I], r, c));
    } else {
      const Acc* base = static_cast<const Acc*>(in) + o * R * I + i;
#pragma unroll 4
      for (int64_t r = r0 + ty; r < r1; r += kColY) acc = Op::combine(acc, base[r * I]);
    }
  }
  sh[ty][tx] = acc;
  __syncthreads();
#pragma unroll
  for (int h = kColY / 2; h > 0; h >>= 1) {
    if (ty < h) sh[ty][tx] = Op::combine(sh[ty][tx], sh[ty + h][tx]);
    __syncthreads();
  }
  if (ty == 0 && active) {
    if constexpr (Final) Op::write(sh[0][tx], static_cast<T*>(dst), idx, o * I + i, scale);
    else static_cast<Acc*>(dst)[(o * S + s) * I + i] = sh[0][tx];
  }
}

// All passes of one reduction; out (O,I) and idx (O,I) written by the last.
template <typename T, RK K>
void run_reduce(const T* x, int64_t O, int64_t R, int64_t I, const T* center, T* out, int64_t* idx, T scale,
                cudaStream_t stream) {
  using Acc = typename Ops<T, K>::Acc;
  constexpr std::string_view op = "cuda_reduce";
  const void* in = x;
  std::unique_ptr<Workspace> held;  // the partials `in` points to after the first pass
  bool first = true;
  int64_t r_now = R;
  for (;;) {
    const bool rows = I == 1;
    const int G = r_now <= 32 * kRowPerThread ? 32 : kThreads;
    const int64_t chunk = rows ? (int64_t)G * kRowPerThread : (int64_t)kColY * kColPerThread;
    const int64_t S = (r_now + chunk - 1) / chunk;
    const bool final = S == 1;
    std::unique_ptr<Workspace> next;
    void* dst = out;
    if (!final) {
      next = std::make_unique<Workspace>((size_t)(O * S * I) * sizeof(Acc), stream);
      dst = next->as<void>();
    }
    auto launch = [&](auto first_c, auto final_c) {
      constexpr bool F = decltype(first_c)::value, L = decltype(final_c)::value;
      if (rows) {
        if (G == 32) {
          const unsigned grid = exact_grid(op, (O * S + kThreads / 32 - 1) / (kThreads / 32));
          reduce_rows_kernel<T, K, F, L, 32><<<grid, kThreads, 0, stream>>>(in, O, r_now, S, chunk, center, dst,
                                                                           idx, scale);
        } else {
          const unsigned grid = exact_grid(op, O * S);
          reduce_rows_kernel<T, K, F, L, kThreads><<<grid, kThreads, 0, stream>>>(in, O, r_now, S, chunk, center,
                                                                                 dst, idx, scale);
        }
      } else {
        const int64_t tiles = (I + kColX - 1) / kColX;
        const unsigned grid = exact_grid(op, O * S * tiles);
        reduce_cols_kernel<T, K, F, L><<<grid, dim3(kColX, kColY), 0, stream>>>(in, O, r_now, I, S, chunk, tiles,
                                                                              center, dst, idx, scale);
      }
      check_launch();
    };
    using True = std::true_type;
    using False = std::false_type;
    if (first && final) launch(True{}, True{});
    else if (first) launch(True{}, False{});
    else if (final) launch(False{}, True{});
    else launch(False{}, False{});
    if (final) return;
    held = std::move(next);  // the old partials are freed after the pass that read them
    in = held->as<void>();
    first = false;
    r_now = S;
  }
}

}  // namespace

void cuda_reduce(ReduceOp op, DType dtype, const void* x, int64_t O, int64_t R, int64_t I, void* out,
                 int64_t* index_out, int64_t correction, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_reduce";
  MG_CHECK(O >= 0 && R >= 0 && I >= 0, name, "negative extent in (O,R,I) = ({},{},{})", O, R, I);
  const bool best = op == ReduceOp::Max || op == ReduceOp::Min;
  MG_CHECK(out || (best && index_out), name, "no output pointer");
  if (O * I == 0) return;
  MG_CHECK(x || R == 0, name, "null input");
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = static_cast<const T*>(x);
    T* op_ = static_cast<T*>(out);
    if (R == 0) {
      MG_CHECK(op == ReduceOp::Sum, name, "reduction over an empty extent (R = 0)");
      MG_CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)(O * I) * sizeof(T), stream));  // all-zero bits: 0.0
      return;
    }
    switch (op) {
      case ReduceOp::Sum: return run_reduce<T, RK::Sum>(xp, O, R, I, nullptr, op_, nullptr, T(1), stream);
      case ReduceOp::Mean:
        return run_reduce<T, RK::Sum>(xp, O, R, I, nullptr, op_, nullptr, (T)(1.0 / (double)R), stream);
      case ReduceOp::Max: return run_reduce<T, RK::Max>(xp, O, R, I, nullptr, op_, index_out, T(1), stream);
      case ReduceOp::Min: return run_reduce<T, RK::Min>(xp, O, R, I, nullptr, op_, index_out, T(1), stream);
      case ReduceOp::Var: {
        MG_CHECK(R - correction > 0, name, "{} elements with correction {}", R, correction);
        Workspace mean((size_t)(O * I) * sizeof(T), stream);
        run_reduce<T, RK::Sum>(xp, O, R, I, nullptr, mean.as<T>(), nullptr, (T)(1.0 / (double)R), stream);
        return run_reduce<T, RK::SqDev>(xp, O, R, I, mean.as<T>(), op_, nullptr,
                                        (T)(1.0 / (double)(R - correction)), stream);
      }
    }
    fail(name, "unknown reduce op {}", (int)op);
  });
}

}  // namespace megagrad::cuda
