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

namespace megagrad::cuda {

namespace {

// ---------------------------------------------------------------- math
// One overload per type so that float math stays in float on the device (expf, not exp).
__host__ __device__ __forceinline__ float m_exp(float x) { return expf(x); }
__host__ __device__ __forceinline__ double m_exp(double x) { return exp(x); }
__host__ __device__ __forceinline__ float m_log(float x) { return logf(x); }
__host__ __device__ __forceinline__ double m_log(double x) { return log(x); }
__host__ __device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__host__ __device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__host__ __device__ __forceinline__ float m_pow(float x, float p) { return powf(x, p); }
__host__ __device__ __forceinline__ double m_pow(double x, double p) { return pow(x, p); }
__host__ __device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__host__ __device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__host__ __device__ __forceinline__ float m_erf(float x) { return erff(x); }
__host__ __device__ __forceinline__ double m_erf(double x) { return erf(x); }
__host__ __device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__host__ __device__ __forceinline__ double m_abs(double x) { return fabs(x); }

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kTwoOverSqrtPi = 1.12837916709551257390;

template <typename T> __host__ __device__ __forceinline__ T sigmoid_of(T x) { return T(1) / (T(1) + m_exp(-x)); }

// ---------------------------------------------------------------- functors
// Each holds the op's scalar (converted to T once on the host), as the CPU lambdas do.
// Unary: out = f(x).
template <typename T> struct NegF { __host__ __device__ T operator()(T x) const { return -x; } };
template <typename T> struct AddScalarF { T s; __host__ __device__ T operator()(T x) const { return x + s; } };
template <typename T> struct MulScalarF { T s; __host__ __device__ T operator()(T x) const { return x * s; } };
template <typename T> struct PowF { T s; __host__ __device__ T operator()(T x) const { return m_pow(x, s); } };
template <typename T> struct ExpF { __host__ __device__ T operator()(T x) const { return m_exp(x); } };
template <typename T> struct LogF { __host__ __device__ T operator()(T x) const { return m_log(x); } };
template <typename T> struct SqrtF { __host__ __device__ T operator()(T x) const { return m_sqrt(x); } };
template <typename T> struct RsqrtF { __host__ __device__ T operator()(T x) const { return T(1) / m_sqrt(x); } };
template <typename T> struct SquareF { __host__ __device__ T operator()(T x) const { return x * x; } };
template <typename T> struct AbsF { __host__ __device__ T operator()(T x) const { return m_abs(x); } };
template <typename T> struct TanhF { __host__ __device__ T operator()(T x) const { return m_tanh(x); } };
template <typename T> struct SigmoidF { __host__ __device__ T operator()(T x) const { return sigmoid_of(x); } };
template <typename T> struct SiluF { __host__ __device__ T operator()(T x) const { return x * sigmoid_of(x); } };
template <typename T> struct ReluF { __host__ __device__ T operator()(T x) const { return x > T(0) ? x : T(0); } };
template <typename T> struct GeluF {
  __host__ __device__ T operator()(T x) const { return T(0.5) * x * (T(1) + m_erf(x * T(kInvSqrt2))); }
};
template <typename T> struct ErfF { __host__ __device__ T operator()(T x) const { return m_erf(x); } };

// Binary: out = f(a, b).
template <typename T> struct AddF { __host__ __device__ T operator()(T a, T b) const { return a + b; } };
template <typename T> struct SubF { __host__ __device__ T operator()(T a, T b) const { return a - b; } };
template <typename T> struct MulF { __host__ __device__ T operator()(T a, T b) const { return a * b; } };
template <typename T> struct DivF { __host__ __device__ T operator()(T a, T b) const { return a / b; } };
template <typename T> struct AxpyF { T s; __host__ __device__ T operator()(T a, T b) const { return a + s * b; } };
template <typename T> struct GtF { __host__ __device__ bool operator()(T a, T b) const { return a > b; } };
template <typename T> struct LtF { __host__ __device__ bool operator()(T a, T b) const { return a < b; } };
template <typename T> struct EqF { __host__ __device__ bool operator()(T a, T b) const { return a == b; } };

// Backward maps: (g, saved) -> g * f'(saved), f' written as in autograd/ops_elementwise.cpp.
template <typename T> struct PowBackF {
  T p, pm1;  // p and p - 1
  __host__ __device__ T operator()(T g, T x) const { return g * (p == T(0) ? T(0) : p * m_pow(x, pm1)); }
};
template <typename T> struct SqrtBackF { __host__ __device__ T operator()(T g, T y) const { return g * (T(0.5) / y); } };
template <typename T> struct RsqrtBackF {
  __host__ __device__ T operator()(T g, T y) const { return g * (T(-0.5) * y * y * y); }
};
template <typename T> struct SquareBackF { __host__ __device__ T operator()(T g, T x) const { return g * (T(2) * x); } };
template <typename T> struct AbsBackF {
  __host__ __device__ T operator()(T g, T x) const { return g * (x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0))); }
};
template <typename T> struct TanhBackF { __host__ __device__ T operator()(T g, T y) const { return g * (T(1) - y * y); } };
template <typename T> struct SigmoidBackF {
  __host__ __device__ T operator()(T g, T y) const { return g * (y * (T(1) - y)); }
};
template <typename T> struct SiluBackF {
  __host__ __device__ T operator()(T g, T x) const {
    const T s = sigmoid_of(x);
    return g * (s * (T(1) + x * (T(1) - s)));
  }
};
template <typename T> struct ReluBackF { __host__ __device__ T operator()(T g, T x) const { return g * T(x > T(0) ? 1 : 0); } };
template <typename T> struct GeluBackF {
  // Phi(x) + x phi(x); phi's exp(-x^2/2) = exp(-u^2), u = x / sqrt 2
  __host__ __device__ T operator()(T g, T x) const {
    const T u = x * T(kInvSqrt2);
    const T e = m_exp(-(u * u));
    const T cdf = T(0.5) * (T(1) + m_erf(u));
    return g * (cdf + x * T(kInvSqrt2Pi) * e);
  }
};
template <typename T> struct ErfBackF {
  __host__ __device__ T operator()(T g, T x) const { return g * (T(kTwoOverSqrtPi) * m_exp(-(x * x))); }
};

// Ternary and the rest.
template <typename T> struct WhereF { __host__ __device__ T operator()(bool c, T a, T b) const { return c ? a : b; } };
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

void cuda_unary(UnaryOp op, DType dtype, const CudaView& x, const CudaView& out, double scalar,
                cudaStream_t stream) {
  constexpr std::string_view name = "cuda_unary";
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T s = (T)scalar;
    switch (op) {
      case UnaryOp::Neg: return unary_map<T>(name, NegF<T>{}, x, out, stream);
      case UnaryOp::AddScalar: return unary_map<T>(name, AddScalarF<T>{s}, x, out, stream);
      case UnaryOp::MulScalar: return unary_map<T>(name, MulScalarF<T>{s}, x, out, stream);
      case UnaryOp::Pow: return unary_map<T>(name, PowF<T>{s}, x, out, stream);
      case UnaryOp::Exp: return unary_map<T>(name, ExpF<T>{}, x, out, stream);
      case UnaryOp::Log: return unary_map<T>(name, LogF<T>{}, x, out, stream);
      case UnaryOp::Sqrt: return unary_map<T>(name, SqrtF<T>{}, x, out, stream);
      case UnaryOp::Rsqrt: return unary_map<T>(name, RsqrtF<T>{}, x, out, stream);
      case UnaryOp::Square: return unary_map<T>(name, SquareF<T>{}, x, out, stream);
      case UnaryOp::Abs: return unary_map<T>(name, AbsF<T>{}, x, out, stream);
      case UnaryOp::Tanh: return unary_map<T>(name, TanhF<T>{}, x, out, stream);
      case UnaryOp::Sigmoid: return unary_map<T>(name, SigmoidF<T>{}, x, out, stream);
      case UnaryOp::Silu: return unary_map<T>(name, SiluF<T>{}, x, out, stream);
      case UnaryOp::Relu: return unary_map<T>(name, ReluF<T>{}, x, out, stream);
      case UnaryOp::Gelu: return unary_map<T>(name, GeluF<T>{}, x, out, stream);
      case UnaryOp::Erf: return unary_map<T>(name, ErfF<T>{}, x, out, stream);
    }
    fail(name, "unknown unary op {}", (int)op);
  });
}

void cuda_binary(BinaryOp op, DType dtype, const CudaView& a, const CudaView& b, const CudaView& out,
                 double scalar, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_binary";
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T s = (T)scalar;
    switch (op) {
      case BinaryOp::Add: return binary_map<T>(name, AddF<T>{}, a, b, out, stream);
      case BinaryOp::Sub: return binary_map<T>(name, SubF<T>{}, a, b, out, stream);
      case BinaryOp::Mul: return binary_map<T>(name, MulF<T>{}, a, b, out, stream);
      case BinaryOp::Div: return binary_map<T>(name, DivF<T>{}, a, b, out, stream);
      case BinaryOp::Axpy: return binary_map<T>(name, AxpyF<T>{s}, a, b, out, stream);
      case BinaryOp::Gt: return binary_map<T, GtF<T>, bool>(name, GtF<T>{}, a, b, out, stream);
      case BinaryOp::Lt: return binary_map<T, LtF<T>, bool>(name, LtF<T>{}, a, b, out, stream);
      case BinaryOp::Eq: return binary_map<T, EqF<T>, bool>(name, EqF<T>{}, a, b, out, stream);
      case BinaryOp::PowBackward:
        return binary_map<T>(name, PowBackF<T>{s, (T)(scalar - 1)}, a, b, out, stream);
      case BinaryOp::SqrtBackward: return binary_map<T>(name, SqrtBackF<T>{}, a, b, out, stream);
      case BinaryOp::RsqrtBackward: return binary_map<T>(name, RsqrtBackF<T>{}, a, b, out, stream);
      case BinaryOp::SquareBackward: return binary_map<T>(name, SquareBackF<T>{}, a, b, out, stream);
      case BinaryOp::AbsBackward: return binary_map<T>(name, AbsBackF<T>{}, a, b, out, stream);
      case BinaryOp::TanhBackward: return binary_map<T>(name, TanhBackF<T>{}, a, b, out, stream);
      case BinaryOp::SigmoidBackward: return binary_map<T>(name, SigmoidBackF<T>{}, a, b, out, stream);
      case BinaryOp::SiluBackward: return binary_map<T>(name, SiluBackF<T>{}, a, b, out, stream);
      case BinaryOp::ReluBackward: return binary_map<T>(name, ReluBackF<T>{}, a, b, out, stream);
      case BinaryOp::GeluBackward: return binary_map<T>(name, GeluBackF<T>{}, a, b, out, stream);
      case BinaryOp::ErfBackward: return binary_map<T>(name, ErfBackF<T>{}, a, b, out, stream);
    }
    fail(name, "unknown binary op {}", (int)op);
  });
}

void cuda_where(DType dtype, const CudaView& cond, const CudaView& a, const CudaView& b, const CudaView& out,
                cudaStream_t stream) {
  dispatch_float_cu("cuda_where", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_map<T, bool, T, T, 3>("cuda_where", WhereF<T>{}, out, &cond, &a, &b, stream);
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
