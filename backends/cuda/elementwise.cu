// Elementwise kernels: unary and binary maps (forward ops and the unary ops' backward maps),
// where, masked_fill, dtype-converting copies and fill, over strided views.
//
// Legend: n elements of the output's shape; K operands (the output first). Every operand is a
// CudaView with the output's sizes (broadcast dims have stride 0).
//
// Two paths:
//   contiguous  every operand contiguous after merging dims: each thread moves U vectors of N
//               elements (16-byte loads/stores: float4, double2) per step when every pointer is
//               aligned to its vector; otherwise the same loop with N = 1 (e.g. a view that
//               starts one element into its buffer).
//   strided     any other layout: one element per thread step, offsets from the linear index by
//               32-bit multiply-high division (64-bit division when offsets do not fit).
#include "backends/cuda/common.cuh"
#include "core/pointwise.h"

namespace megagrad::cuda {

namespace {

// The math of the maps is core/pointwise.h, shared with the CPU. Here: the selects, conversions and
// fill of the backend's own launchers.
template <typename T> struct MaskedFillF { T v; __host__ __device__ T operator()(T x, bool m) const { return m ? v : x; } };
template <typename S, typename D> struct ConvertF { __host__ __device__ D operator()(S x) const { return (D)x; } };
template <typename T> struct FillF { T v; __host__ __device__ T operator()() const { return v; } };

// ---------------------------------------------------------------- kernels
struct Unused {};  // the type of an operand slot an arity leaves empty

template <int Arity, typename F, typename A, typename B, typename C>
__device__ __forceinline__ auto apply(const F& f, const A& a, const B& b, const C& c) {
  if constexpr (Arity == 0) return f();
  else if constexpr (Arity == 1) return f(a);
  else if constexpr (Arity == 2) return f(a, b);
  else return f(a, b, c);
}

// A slot's element type for loads: Unused slots load nothing (a 1-byte placeholder).
template <typename T> using Slot = std::conditional_t<std::is_same_v<T, Unused>, unsigned char, T>;

constexpr int kUnroll = 4;  // vectors in flight per thread per step

// Contiguous operands: vectors of N elements, U per thread per step, then the n % N tail.
template <int Arity, int N, typename O, typename A, typename B, typename C, typename F>
__global__ void __launch_bounds__(kThreads)
map_contiguous_kernel(int64_t n, F f, O* out, const Slot<A>* a, const Slot<B>* b, const Slot<C>* c) {
  const int64_t nvec = n / N;
  const int64_t step = (int64_t)gridDim.x * kThreads * kUnroll;
  for (int64_t base = (int64_t)blockIdx.x * kThreads * kUnroll + threadIdx.x; base < nvec; base += step) {
    Vec<Slot<A>, N> va[kUnroll];
    Vec<Slot<B>, N> vb[kUnroll];
    Vec<Slot<C>, N> vc[kUnroll];
    // All loads first, then all stores: U independent loads in flight per operand.
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = base + (int64_t)u * kThreads;
      if (j < nvec) {
        if constexpr (Arity >= 1) va[u] = reinterpret_cast<const Vec<Slot<A>, N>*>(a)[j];
        if constexpr (Arity >= 2) vb[u] = reinterpret_cast<const Vec<Slot<B>, N>*>(b)[j];
        if constexpr (Arity >= 3) vc[u] = reinterpret_cast<const Vec<Slot<C>, N>*>(c)[j];
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = base + (int64_t)u * kThreads;
      if (j < nvec) {
        Vec<O, N> vo;
#pragma unroll
        for (int e = 0; e < N; ++e) vo.v[e] = apply<Arity>(f, va[u].v[e], vb[u].v[e], vc[u].v[e]);
        reinterpret_cast<Vec<O, N>*>(out)[j] = vo;
      }
    }
  }
  if constexpr (N > 1) {
    const int64_t t = nvec * N + threadIdx.x;  // at most N - 1 < kThreads tail elements
    if (blockIdx.x == 0 && t < n) {
      Slot<A> x{};
      Slot<B> y{};
      Slot<C> z{};
      if constexpr (Arity >= 1) x = a[t];
      if constexpr (Arity >= 2) y = b[t];
      if constexpr (Arity >= 3) z = c[t];
      out[t] = apply<Arity>(f, x, y, z);
    }
  }
}

// Any strides: offsets of the 4 slots (out, a, b, c) from the linear index.
template <int Arity, typename Idx, typename O, typename A, typename B, typename C, typename F>
__global__ void __launch_bounds__(kThreads)
map_strided_kernel(Idx n, OffsetCalc<4, Idx> calc, F f, O* out, const Slot<A>* a, const Slot<B>* b,
                   const Slot<C>* c) {
  for (Idx i = (Idx)blockIdx.x * kThreads + threadIdx.x; i < n; i += (Idx)gridDim.x * kThreads) {
    Idx off[4];
    calc.get(i, off);
    Slot<A> x{};
    Slot<B> y{};
    Slot<C> z{};
    if constexpr (Arity >= 1) x = a[off[1]];
    if constexpr (Arity >= 2) y = b[off[2]];
    if constexpr (Arity >= 3) z = c[off[3]];
    out[off[0]] = apply<Arity>(f, x, y, z);
  }
}

// ---------------------------------------------------------------- host side
template <typename T> constexpr size_t slot_size() {
  if constexpr (std::is_same_v<T, Unused>) return 1;
  else return sizeof(T);
}

// Runs out = f(a, b, c) over the views (the first Arity inputs are used).
template <typename O, typename A, typename B, typename C, int Arity, typename F>
void launch_map(std::string_view op, F f, const CudaView& out, const CudaView* a, const CudaView* b,
                const CudaView* c, cudaStream_t stream) {
  const CudaView empty_like_out = out;  // stands in for unused slots (never read)
  const CudaView* views[4] = {&out, Arity >= 1 ? a : &empty_like_out, Arity >= 2 ? b : &empty_like_out,
                              Arity >= 3 ? c : &empty_like_out};
  const Layout<4> L = merge_views<4>(op, views);
  if (L.numel == 0) return;
  O* po = static_cast<O*>(out.data);
  const Slot<A>* pa = Arity >= 1 ? static_cast<const Slot<A>*>(a->data) : nullptr;
  const Slot<B>* pb = Arity >= 2 ? static_cast<const Slot<B>*>(b->data) : nullptr;
  const Slot<C>* pc = Arity >= 3 ? static_cast<const Slot<C>*>(c->data) : nullptr;
  MG_CHECK(po && (Arity < 1 || pa) && (Arity < 2 || pb) && (Arity < 3 || pc), op, "null data pointer");

  if (is_contiguous(L)) {
    const int64_t n = L.numel;
    constexpr size_t widest = std::max({sizeof(O), slot_size<A>(), slot_size<B>(), slot_size<C>()});
    constexpr int N = (int)(16 / widest);
    const bool vec = aligned_to(po, sizeof(O) * N) && (Arity < 1 || aligned_to(pa, slot_size<A>() * N)) &&
                     (Arity < 2 || aligned_to(pb, slot_size<B>() * N)) &&
                     (Arity < 3 || aligned_to(pc, slot_size<C>() * N));
    if (vec) {
      const unsigned grid = grid_for(std::max<int64_t>(n / N, 1), (int64_t)kThreads * kUnroll);
      map_contiguous_kernel<Arity, N, O, A, B, C><<<grid, kThreads, 0, stream>>>(n, f, po, pa, pb, pc);
    } else {
      const unsigned grid = grid_for(n, (int64_t)kThreads * kUnroll);
      map_contiguous_kernel<Arity, 1, O, A, B, C><<<grid, kThreads, 0, stream>>>(n, f, po, pa, pb, pc);
    }
  } else if (fits_32bit(L)) {
    const unsigned grid = grid_for(L.numel, kThreads, 64);
    map_strided_kernel<Arity, uint32_t, O, A, B, C><<<grid, kThreads, 0, stream>>>(
        (uint32_t)L.numel, OffsetCalc<4, uint32_t>(L), f, po, pa, pb, pc);
  } else {
    const unsigned grid = grid_for(L.numel, kThreads, 64);
    map_strided_kernel<Arity, int64_t, O, A, B, C><<<grid, kThreads, 0, stream>>>(
        L.numel, OffsetCalc<4, int64_t>(L), f, po, pa, pb, pc);
  }
  check_launch();
}

template <typename T, typename F>
void unary_map(std::string_view op, F f, const CudaView& x, const CudaView& out, cudaStream_t s) {
  launch_map<T, T, Unused, Unused, 1>(op, f, out, &x, nullptr, nullptr, s);
}

template <typename T, typename F, typename O = T>
void binary_map(std::string_view op, F f, const CudaView& a, const CudaView& b, const CudaView& out,
                cudaStream_t s) {
  launch_map<O, T, T, Unused, 2>(op, f, out, &a, &b, nullptr, s);
}

}  // namespace

template <typename F>
void cuda_map(const F& f, DType dtype, const CudaView& x, const CudaView& out, cudaStream_t stream) {
  dispatch_float_cu("cuda_map", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_map<T>("cuda_map", f, x, out, stream);
  });
}

template <typename F>
void cuda_map(const F& f, DType dtype, const CudaView& a, const CudaView& b, const CudaView& out,
              cudaStream_t stream) {
  dispatch_float_cu("cuda_map", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using O = std::conditional_t<std::is_same_v<decltype(f(T(), T())), bool>, bool, T>;  // comparisons: Bool
    binary_map<T, F, O>("cuda_map", f, a, b, out, stream);
  });
}

// One launcher per functor of core/pointwise.h's lists (their names unqualified there).
using namespace pointwise;
#define MG_INSTANTIATE_UNARY(F) \
  template void cuda_map<F>(const F&, DType, const CudaView&, const CudaView&, cudaStream_t);
#define MG_INSTANTIATE_BINARY(F) \
  template void cuda_map<F>(const F&, DType, const CudaView&, const CudaView&, const CudaView&, cudaStream_t);
MG_POINTWISE_UNARY(MG_INSTANTIATE_UNARY)
MG_POINTWISE_BINARY(MG_INSTANTIATE_BINARY)
#undef MG_INSTANTIATE_UNARY
#undef MG_INSTANTIATE_BINARY

void cuda_where(DType dtype, const CudaView& cond, const CudaView& a, const CudaView& b, const CudaView& out,
                cudaStream_t stream) {
  dispatch_float_cu("cuda_where", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_map<T, bool, T, T, 3>("cuda_where", pointwise::Where{}, out, &cond, &a, &b, stream);
  });
}

void cuda_masked_fill(DType dtype, const CudaView& x, const CudaView& mask, double value, const CudaView& out,
                      cudaStream_t stream) {
  dispatch_float_cu("cuda_masked_fill", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_map<T, T, bool, Unused, 2>("cuda_masked_fill", MaskedFillF<T>{(T)value}, out, &x, &mask, nullptr,
                                      stream);
  });
}

void cuda_copy(DType dst_dtype, const CudaView& dst, DType src_dtype, const CudaView& src, cudaStream_t stream) {
  if (dst_dtype == src_dtype) {  // moves bits: unsigned words of the element's size
    auto raw = [&](auto tag) {
      using U = typename decltype(tag)::type;
      launch_map<U, U, Unused, Unused, 1>("cuda_copy", ConvertF<U, U>{}, dst, &src, nullptr, nullptr, stream);
    };
    switch (dtype_size(dst_dtype)) {
      case 1: return raw(Tag<uint8_t>{});
      case 4: return raw(Tag<uint32_t>{});
      case 8: return raw(Tag<uint64_t>{});
      default: fail("cuda_copy", "unexpected element size of {}", dtype_name(dst_dtype));
    }
  }
  dispatch_all_cu("cuda_copy", dst_dtype, [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    dispatch_all_cu("cuda_copy", src_dtype, [&](auto stag) {
      using S = typename decltype(stag)::type;
      launch_map<D, S, Unused, Unused, 1>("cuda_copy", ConvertF<S, D>{}, dst, &src, nullptr, nullptr, stream);
    });
  });
}

void cuda_fill(DType dtype, const CudaView& out, double value, cudaStream_t stream) {
  dispatch_all_cu("cuda_fill", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_map<T, Unused, Unused, Unused, 0>("cuda_fill", FillF<T>{(T)value}, out, nullptr, nullptr, nullptr,
                                             stream);
  });
}

}  // namespace megagrad::cuda
