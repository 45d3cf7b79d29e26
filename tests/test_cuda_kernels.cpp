// The CUDA primitive kernels (backends/cuda/kernels.h) against the CPU ops. Each check runs the
// CPU op on CPU tensors (the Tensor API; gradients through autograd) as the reference, copies the
// raw data to cudaMalloc'ed buffers, runs the launcher, copies back and compares: relative to the
// largest reference value, with the tolerance written next to the case (0: the same bits).
// Inputs include non-contiguous and broadcast (stride 0) views, lengths that are not a multiple
// of the vector width, and views starting one element into their buffer (the unaligned fallback
// of the vectorised path).
//
// Without a device every case is a visible skip; "bad arguments" runs anyway (its checks fail
// before any CUDA call).
#include <catch2/catch.hpp>
#include "tests/cuda_test_util.h"
#include <cmath>
#include <functional>
#include <memory>
#include <vector>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "backends/cuda/cuda.h"
#include "core/rng.h"
#include "mega/optim.h"
#include "tests/test_util.h"
#if MEGAGRAD_HAS_CUDA
#include <cuda_runtime.h>
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernels.h"
#include "core/pointwise.h"
#endif

using namespace megagrad;

#define SKIP_WITHOUT_CUDA() \
  if (test::skip_without_cuda()) return

#if MEGAGRAD_HAS_CUDA

using namespace megagrad::cuda;
using test::max_rel_diff;
namespace pw = megagrad::pointwise;

namespace {

// A launch of cuda_map with one functor of core/pointwise.h (a test case holds it type-erased).
using Launch1 = std::function<void(DType, const CudaView&, const CudaView&)>;
using Launch2 = std::function<void(DType, const CudaView&, const CudaView&, const CudaView&)>;
template <typename F> Launch1 launch1(F f) {
  return [f](DType dt, const CudaView& x, const CudaView& out) { cuda_map(f, dt, x, out); };
}
template <typename F> Launch2 launch2(F f) {
  return [f](DType dt, const CudaView& a, const CudaView& b, const CudaView& out) { cuda_map(f, dt, a, b, out); };
}

const DType kFloats[] = {DType::Float32, DType::Float64};

Tensor rnd(const Shape& s, uint64_t seed, DType dt, double lo = -1, double hi = 1) {
  Generator g(seed);
  return uniform(s, lo, hi, dt, &g);
}

// Random int64 values in [0, n).
Tensor rnd_index(const Shape& s, int64_t n, uint64_t seed) {
  std::vector<double> u = rnd(s, seed, DType::Float64, 0, 1).to_vector();
  std::vector<int64_t> v;
  for (double x : u) v.push_back(std::min<int64_t>(n - 1, (int64_t)(x * (double)n)));
  return Tensor::from_vector(v, s);
}

struct DeviceMem {
  void* p = nullptr;
  explicit DeviceMem(size_t bytes) { MG_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 16))); }
  ~DeviceMem() { cudaFree(p); }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
};

// A tensor on the device: its CPU tensor's whole storage is copied, so a view keeps its strides
// and offset (a view one element into its buffer is misaligned for 16-byte accesses).
struct Dev {
  std::shared_ptr<DeviceMem> mem;
  CudaView view;
  DType dtype = DType::Float32;
  Shape shape;
  void* ptr() const { return view.data; }
  template <typename T> T* as() const { return static_cast<T*>(view.data); }
};

Dev to_device(const Tensor& t) {
  const size_t bytes = t.storage()->nbytes();
  auto mem = std::make_shared<DeviceMem>(bytes);
  MG_CUDA_CHECK(cudaMemcpy(mem->p, t.storage()->data(), bytes, cudaMemcpyHostToDevice));
  char* base = static_cast<char*>(mem->p) + t.offset() * (int64_t)dtype_size(t.dtype());
  return {mem, make_view(base, t.shape(), t.strides()), t.dtype(), t.shape()};
}

// A contiguous device tensor filled with NaN-like garbage (0xFF bytes), so that an element a
// kernel forgets to write shows up.
Dev device_empty(const Shape& s, DType dt) {
  const size_t bytes = (size_t)numel_of(s) * dtype_size(dt);
  auto mem = std::make_shared<DeviceMem>(bytes);
  MG_CUDA_CHECK(cudaMemset(mem->p, 0xFF, std::max<size_t>(bytes, 16)));
  return {mem, make_contiguous_view(mem->p, s), dt, s};
}

Tensor to_host(const void* p, const Shape& s, DType dt) {
  MG_CUDA_CHECK(cudaDeviceSynchronize());
  Tensor t = Tensor::empty(s, dt);
  MG_CUDA_CHECK(cudaMemcpy(t.raw_data(), p, (size_t)t.numel() * dtype_size(dt), cudaMemcpyDeviceToHost));
  return t;
}
Tensor to_host(const Dev& d) { return to_host(d.ptr(), d.shape, d.dtype); }  // d contiguous

// d's view broadcast to `to`.
CudaView bview(const Dev& d, const Shape& to) {
  return make_view_broadcast(d.ptr(), d.shape, Strides(d.view.strides, d.view.strides + d.view.ndim), to);
}

// nf: NonFinite::MustMatch where NaN outputs are expected (max over NaNs); else any fails.
void check_close(const Tensor& got, const Tensor& want, double tol, const std::string& what,
                 test::NonFinite nf = test::NonFinite::Fail) {
  const double diff = max_rel_diff(got, want, nf);
  INFO(what << ": max |gpu - cpu| / max |cpu| = " << diff << ", tolerance " << tol);
  REQUIRE(got.shape() == want.shape());
  REQUIRE(diff <= tol);
}

// x.grad after y = f(x), y.backward(g).
Tensor grad_of(const std::function<Tensor(const Tensor&)>& f, const Tensor& x0, const Tensor& g) {
  Tensor x = x0.detach().clone();
  x.requires_grad_();
  f(x).backward(g);
  return x.grad();
}

// The layouts each elementwise case runs on: contiguous with a length that is not a multiple of
// 4, transposed, and one element into its buffer.
struct ElemLayout {
  const char* name;
  std::function<Tensor(uint64_t seed, DType dt, double lo, double hi)> make;
};
const std::vector<ElemLayout>& layouts() {
  static const std::vector<ElemLayout> l = {
      {"contiguous (4099)", [](uint64_t s, DType dt, double lo, double hi) { return rnd({4099}, s, dt, lo, hi); }},
      {"transposed (53,37)", [](uint64_t s, DType dt, double lo, double hi) { return rnd({37, 53}, s, dt, lo, hi).t(); }},
      {"unaligned (offset 1)",
       [](uint64_t s, DType dt, double lo, double hi) { return rnd({4100}, s, dt, lo, hi).narrow(0, 1, 4099); }},
  };
  return l;
}

}  // namespace

#endif  // MEGAGRAD_HAS_CUDA

// ================================================================ elementwise

TEST_CASE("cuda kernels: unary ops match the CPU on contiguous, strided and unaligned views", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  using F = std::function<Tensor(const Tensor&)>;
  struct Case {
    const char* name;
    Launch1 run;  // cuda_map with the op's functor
    F cpu;
    double lo, hi;      // input range (the op's domain)
    double tol32, tol64;  // 0: exact (IEEE-exact ops); else libm (pow, log, tanh) or the shared
                          // polynomials of core/vec_math.h, whose FMA contraction may differ
  };
  const std::vector<Case> cases = {
      {"neg", launch1(pw::Neg{}), [](const Tensor& x) { return neg(x); }, -3, 3, 0, 0},
      {"add_scalar", launch1(pw::AddScalar{1.25}), [](const Tensor& x) { return add_scalar(x, 1.25); }, -3, 3, 0, 0},
      {"mul_scalar", launch1(pw::MulScalar{-0.75}), [](const Tensor& x) { return mul_scalar(x, -0.75); }, -3, 3, 0, 0},
      {"pow 2.5", launch1(pw::Pow{2.5}), [](const Tensor& x) { return pow(x, 2.5); }, 0.1, 3, 2e-6, 1e-14},
      {"pow 3", launch1(pw::Pow{3}), [](const Tensor& x) { return pow(x, 3.0); }, -3, 3, 2e-6, 1e-14},
      {"exp", launch1(pw::Exp{}), [](const Tensor& x) { return exp(x); }, -3, 3, 2e-6, 1e-14},
      {"log", launch1(pw::Log{}), [](const Tensor& x) { return log(x); }, 0.1, 3, 2e-6, 1e-14},
      {"sqrt", launch1(pw::Sqrt{}), [](const Tensor& x) { return sqrt(x); }, 0.1, 3, 0, 0},
      {"rsqrt", launch1(pw::Rsqrt{}), [](const Tensor& x) { return rsqrt(x); }, 0.1, 3, 0, 0},
      {"square", launch1(pw::Square{}), [](const Tensor& x) { return square(x); }, -3, 3, 0, 0},
      {"abs", launch1(pw::Abs{}), [](const Tensor& x) { return abs(x); }, -3, 3, 0, 0},
      {"tanh", launch1(pw::Tanh{}), [](const Tensor& x) { return tanh(x); }, -3, 3, 2e-6, 1e-14},
      {"sigmoid", launch1(pw::Sigmoid{}), [](const Tensor& x) { return sigmoid(x); }, -6, 6, 2e-6, 1e-14},
      {"silu", launch1(pw::Silu{}), [](const Tensor& x) { return silu(x); }, -6, 6, 2e-6, 1e-14},
      {"relu", launch1(pw::Relu{}), [](const Tensor& x) { return relu(x); }, -3, 3, 0, 0},
      {"gelu", launch1(pw::Gelu{}), [](const Tensor& x) { return gelu(x); }, -5, 5, 2e-6, 1e-14},
      {"erf", launch1(pw::Erf{}), [](const Tensor& x) { return erf(x); }, -3, 3, 2e-6, 1e-14},
  };
  uint64_t seed = 100;
  for (const Case& c : cases)
    for (DType dt : kFloats)
      for (const ElemLayout& l : layouts()) {
        Tensor x = l.make(++seed, dt, c.lo, c.hi);
        Dev dx = to_device(x);
        Dev out = device_empty(x.shape(), dt);
        c.run(dt, dx.view, out.view);
        check_close(to_host(out), c.cpu(x), dt == DType::Float32 ? c.tol32 : c.tol64,
                    fmt::format("{} {} {}", c.name, dtype_name(dt), l.name));
      }
  // In place: the input view is the output.
  for (DType dt : kFloats) {
    Tensor x = rnd({1001}, 7, dt);
    Dev dx = to_device(x);
    cuda_map(pw::MulScalar{3.0}, dt, dx.view, dx.view);
    check_close(to_host(dx), mul_scalar(x, 3.0), 0, "in-place mul_scalar");  // exact
  }
#endif
}

TEST_CASE("cuda kernels: the unary ops' backward maps match the CPU autograd", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  using F = std::function<Tensor(const Tensor&)>;
  struct Case {
    const char* name;
    Launch2 run;  // cuda_map with the functor
    F forward;
    bool saves_output;  // b = y (else b = x)
    double lo, hi;
    double tol32, tol64;
  };
  const std::vector<Case> cases = {
      {"pow 2.5", launch2(pw::Grad<pw::Pow>{pw::Pow{2.5}}), [](const Tensor& x) { return pow(x, 2.5); }, false, 0.1, 3, 2e-6, 1e-14},
      {"pow 0", launch2(pw::Grad<pw::Pow>{pw::Pow{0}}), [](const Tensor& x) { return pow(x, 0.0); }, false, 0.1, 3, 0, 0},
      {"sqrt", launch2(pw::Grad<pw::Sqrt>{}), [](const Tensor& x) { return sqrt(x); }, true, 0.1, 3, 0, 0},
      {"rsqrt", launch2(pw::Grad<pw::Rsqrt>{}), [](const Tensor& x) { return rsqrt(x); }, true, 0.1, 3, 0, 0},
      {"square", launch2(pw::Grad<pw::Square>{}), [](const Tensor& x) { return square(x); }, false, -3, 3, 0, 0},
      {"abs", launch2(pw::Grad<pw::Abs>{}), [](const Tensor& x) { return abs(x); }, false, -3, 3, 0, 0},
      {"tanh", launch2(pw::Grad<pw::Tanh>{}), [](const Tensor& x) { return tanh(x); }, true, -3, 3, 2e-6, 1e-14},
      {"sigmoid", launch2(pw::Grad<pw::Sigmoid>{}), [](const Tensor& x) { return sigmoid(x); }, true, -6, 6, 0, 0},
      {"silu", launch2(pw::Grad<pw::Silu>{}), [](const Tensor& x) { return silu(x); }, false, -6, 6, 2e-6, 1e-14},
      {"relu", launch2(pw::Grad<pw::Relu>{}), [](const Tensor& x) { return relu(x); }, false, -3, 3, 0, 0},
      {"gelu", launch2(pw::Grad<pw::Gelu>{}), [](const Tensor& x) { return gelu(x); }, false, -5, 5, 2e-6, 1e-14},
      {"erf", launch2(pw::Grad<pw::Erf>{}), [](const Tensor& x) { return erf(x); }, false, -3, 3, 2e-6, 1e-14},
  };
  uint64_t seed = 300;
  for (const Case& c : cases)
    for (DType dt : kFloats) {
      Tensor x = rnd({4099}, ++seed, dt, c.lo, c.hi), g = rnd({4099}, ++seed, dt);
      Tensor want = grad_of(c.forward, x, g);
      Tensor saved;
      {
        no_grad ng;
        saved = c.saves_output ? c.forward(x) : x;
      }
      Dev dg = to_device(g), ds = to_device(saved), out = device_empty(x.shape(), dt);
      c.run(dt, dg.view, ds.view, out.view);
      check_close(to_host(out), want, dt == DType::Float32 ? c.tol32 : c.tol64,
                  fmt::format("{} backward {}", c.name, dtype_name(dt)));
    }
#endif
}

TEST_CASE("cuda kernels: binary ops with broadcasting, comparisons, where and masked_fill", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  using F = std::function<Tensor(const Tensor&, const Tensor&)>;
  struct Case {
    const char* name;
    Launch2 run;  // cuda_map with the functor
    F cpu;
    double tol32, tol64;
  };
  const std::vector<Case> cases = {
      {"add", launch2(pw::Add{}), [](const Tensor& a, const Tensor& b) { return add(a, b); }, 0, 0},
      {"sub", launch2(pw::Sub{}), [](const Tensor& a, const Tensor& b) { return sub(a, b); }, 0, 0},
      {"mul", launch2(pw::Mul{}), [](const Tensor& a, const Tensor& b) { return mul(a, b); }, 0, 0},
      {"div", launch2(pw::Div{}), [](const Tensor& a, const Tensor& b) { return div(a, b); }, 0, 0},
      // a + s b is one FMA on the device, two roundings on the CPU reference
      {"axpy", launch2(pw::Axpy{-0.3}), [](const Tensor& a, const Tensor& b) { return add(a, mul_scalar(b, -0.3)); },
       1e-6, 1e-15},
      {"gt", launch2(pw::Gt{}), [](const Tensor& a, const Tensor& b) { return gt(a, b); }, 0, 0},
      {"lt", launch2(pw::Lt{}), [](const Tensor& a, const Tensor& b) { return lt(a, b); }, 0, 0},
      {"eq", launch2(pw::Eq{}), [](const Tensor& a, const Tensor& b) { return eq(a, b); }, 0, 0},
  };
  // Operand pairs: same-shape contiguous, broadcast (7,1,33) x (5,33), a scalar b, a transposed a,
  // and unaligned operands. Values are multiples of 1/4 in [1, 3] so that eq has hits and div is
  // well away from 0.
  auto quarter = [](const Tensor& t) {
    std::vector<double> d = t.to_vector();
    for (double& e : d) e = 1.0 + std::round((e + 1.0) * 4.0) / 4.0;
    return Tensor::from_vector(d, t.shape(), t.dtype());
  };
  struct Pair {
    const char* name;
    std::function<std::pair<Tensor, Tensor>(DType, uint64_t)> make;
  };
  const std::vector<Pair> pairs = {
      {"same shape (4099)", [&](DType dt, uint64_t s) { return std::pair{quarter(rnd({4099}, s, dt)), quarter(rnd({4099}, s + 1, dt))}; }},
      {"broadcast (7,1,33) (5,33)",
       [&](DType dt, uint64_t s) { return std::pair{quarter(rnd({7, 1, 33}, s, dt)), quarter(rnd({5, 33}, s + 1, dt))}; }},
      {"scalar b", [&](DType dt, uint64_t s) { return std::pair{quarter(rnd({3, 1001}, s, dt)), quarter(rnd({}, s + 1, dt))}; }},
      {"transposed a", [&](DType dt, uint64_t s) {
         return std::pair{quarter(rnd({33, 17}, s, dt)).t(), quarter(rnd({17, 33}, s + 1, dt))};
       }},
      {"unaligned", [&](DType dt, uint64_t s) {
         return std::pair{quarter(rnd({2002}, s, dt)).narrow(0, 1, 2001), quarter(rnd({2003}, s + 1, dt)).narrow(0, 2, 2001)};
       }},
  };
  uint64_t seed = 500;
  for (const Case& c : cases)
    for (DType dt : kFloats)
      for (const Pair& p : pairs) {
        seed += 2;
        auto [a, b] = p.make(dt, seed);
        Tensor want = c.cpu(a, b);
        Dev da = to_device(a), db = to_device(b), out = device_empty(want.shape(), want.dtype());
        c.run(dt, bview(da, want.shape()), bview(db, want.shape()), out.view);
        check_close(to_host(out), want, dt == DType::Float32 ? c.tol32 : c.tol64,
                    fmt::format("{} {} {}", c.name, dtype_name(dt), p.name));
      }

  for (DType dt : kFloats) {
    // where: cond (5,1) broadcast over (5,7), b a scalar.
    Tensor cond = gt(rnd({5, 1}, 1, dt), Tensor::zeros({}, dt));
    Tensor a = rnd({5, 7}, 2, dt), b = rnd({}, 3, dt);
    Tensor want = where(cond, a, b);
    Dev dc = to_device(cond), da = to_device(a), db = to_device(b), out = device_empty({5, 7}, dt);
    cuda_where(dt, bview(dc, {5, 7}), da.view, bview(db, {5, 7}), out.view);
    check_close(to_host(out), want, 0, "where");  // a selection: exact
    // masked_fill: mask (33) over x (9,33) transposed from (33,9).
    Tensor x = rnd({33, 9}, 4, dt).t();
    Tensor mask = gt(rnd({33}, 5, dt), Tensor::zeros({}, dt));
    Tensor want_m = masked_fill(x, mask, -1e9);
    Dev dx = to_device(x), dm = to_device(mask), out_m = device_empty({9, 33}, dt);
    cuda_masked_fill(dt, dx.view, bview(dm, {9, 33}), -1e9, out_m.view);
    check_close(to_host(out_m), want_m, 0, "masked_fill");  // exact
  }
#endif
}

TEST_CASE("cuda kernels: copies between every pair of dtypes and fill, on strided views", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  const DType all[] = {DType::Float32, DType::Float64, DType::Int64, DType::Bool};
  // Values in {-4, -3.5, ..., 4}: every conversion is exact (float -> int64 truncates -3.5 to -3
  // on both sides; float -> bool is != 0).
  Tensor base;
  {
    std::vector<double> v = rnd({23, 31}, 9, DType::Float64).to_vector();
    for (double& e : v) e = std::round(e * 8.0) / 2.0;
    base = Tensor::from_vector(v, {23, 31}, DType::Float64);
  }
  for (DType from : all)
    for (DType to : all) {
      Tensor src_full = base.to(from);
      // transposed, broadcast (expand of a column), and unaligned sources
      const std::vector<std::pair<const char*, Tensor>> sources = {
          {"transposed", src_full.t()},
          {"broadcast", src_full.narrow(1, 0, 1).expand({23, 31})},
          {"unaligned", src_full.flatten().narrow(0, 1, 700)},
      };
      for (const auto& [name, src] : sources) {
        Tensor want = Tensor::empty(src.shape(), to);
        want.copy_(src);
        Dev ds = to_device(src), out = device_empty(src.shape(), to);
        cuda_copy(to, out.view, from, ds.view);
        check_close(to_host(out), want, 0, fmt::format("copy {} -> {} {}", dtype_name(from), dtype_name(to), name));
      }
    }
  // Large copies: several grid-stride steps on both paths (the grids are capped at 32 / 64
  // blocks per multiprocessor).
  {
    Tensor big = rnd({20 * 1000 * 1000 + 3}, 11, DType::Float32);
    Dev d = to_device(big), out = device_empty(big.shape(), DType::Float32);
    cuda_copy(DType::Float32, out.view, DType::Float32, d.view);
    check_close(to_host(out), big, 0, "copy of 20M floats");
    Tensor tr = rnd({1001, 3001}, 12, DType::Float32).t();
    Dev dt = to_device(tr), out_t = device_empty(tr.shape(), DType::Float64);
    cuda_copy(DType::Float64, out_t.view, DType::Float32, dt.view);
    check_close(to_host(out_t), tr.to(DType::Float64), 0, "strided copy of 3M floats to double");
  }
  // fill into a strided view: every other column of a (6,8) buffer; the rest must be untouched.
  for (DType dt : all) {
    Tensor host = Tensor::zeros({6, 8}, dt);
    Dev d = to_device(host);
    CudaView cols = make_view(d.ptr(), {6, 4}, {8, 2});
    cuda_fill(dt, cols, 1.0);
    Tensor want = Tensor::zeros({6, 8}, dt);
    for (int64_t i = 0; i < 6; ++i)
      for (int64_t j = 0; j < 8; j += 2) want.set({i, j}, 1.0);
    check_close(to_host(d), want, 0, fmt::format("fill {}", dtype_name(dt)));
  }
#endif
}

// ================================================================ reductions

TEST_CASE("cuda kernels: sum, mean, max, min and var over (O,R,I) layouts", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  // (O, R, I): a single element; warp rows (R <= 512); block rows; a long full reduction (three
  // passes); columns with I not a multiple of 32; long columns (two passes).
  const std::vector<Shape> shapes = {{1, 1, 1},    {100, 77, 1}, {37, 513, 1}, {2, 5000, 1},
                                     {1, 1000003, 1}, {3, 300, 65}, {1, 70000, 3}, {4, 1, 5}};
  uint64_t seed = 700;
  for (const Shape& s : shapes)
    for (DType dt : kFloats) {
      const int64_t O = s[0], R = s[1], I = s[2];
      const std::string where = fmt::format("(O,R,I) = ({},{},{}) {}", O, R, I, dtype_name(dt));
      // Mostly positive values: a sum's reference is then not a cancellation (the float tree's
      // error is relative to sum |x|).
      Tensor x = rnd(s, ++seed, dt, -0.5, 1.5);
      Dev dx = to_device(x);
      Dev out = device_empty({O, I}, dt);
      Dev idx = device_empty({O, I}, DType::Int64);
      const double tol = dt == DType::Float32 ? 2e-5 : 1e-12;  // float: tree in float vs CPU double
      cuda_reduce(ReduceOp::Sum, dt, dx.ptr(), O, R, I, out.ptr());
      check_close(to_host(out), sum(x, {1}), tol, "sum " + where);
      cuda_reduce(ReduceOp::Mean, dt, dx.ptr(), O, R, I, out.ptr());
      check_close(to_host(out), mean(x, {1}), tol, "mean " + where);
      if (R > 1) {
        cuda_reduce(ReduceOp::Var, dt, dx.ptr(), O, R, I, out.ptr(), nullptr, 1);
        check_close(to_host(out), var(x, {1}, false, 1), dt == DType::Float32 ? 1e-4 : 1e-11, "var " + where);
        cuda_reduce(ReduceOp::Var, dt, dx.ptr(), O, R, I, out.ptr(), nullptr, 0);
        check_close(to_host(out), var(x, {1}, false, 0), dt == DType::Float32 ? 1e-4 : 1e-11, "var(0) " + where);
      }
      // max / min on values with ties (multiples of 1/8): the first index wins.
      Tensor xt;
      {
        std::vector<double> v = x.to_vector();
        for (double& e : v) e = std::round(e * 8.0) / 8.0;
        xt = Tensor::from_vector(v, s, dt);
      }
      Dev dxt = to_device(xt);
      cuda_reduce(ReduceOp::Max, dt, dxt.ptr(), O, R, I, out.ptr(), idx.as<int64_t>());
      check_close(to_host(out), max(xt, {1}), 0, "max " + where);
      check_close(to_host(idx), argmax(xt, 1), 0, "argmax " + where);
      cuda_reduce(ReduceOp::Min, dt, dxt.ptr(), O, R, I, out.ptr(), idx.as<int64_t>());
      check_close(to_host(out), min(xt, {1}), 0, "min " + where);
      check_close(to_host(idx), argmax(neg(xt), 1), 0, "argmin " + where);  // first minimum
    }
  // NaNs: the CPU loop keeps the first element when it is NaN and never picks a later NaN.
  for (DType dt : kFloats) {
    const double nan = std::nan("");
    Tensor x = Tensor::from_vector({nan, 1, 2,   1, nan, 3,   nan, nan, nan,   5, 5, nan}, {4, 3}, dt);
    Dev dx = to_device(x), out = device_empty({4}, dt), idx = device_empty({4}, DType::Int64);
    cuda_reduce(ReduceOp::Max, dt, dx.ptr(), 4, 3, 1, out.ptr(), idx.as<int64_t>());
    check_close(to_host(out), max(x, {1}), 0, "max with NaNs", test::NonFinite::MustMatch);
    check_close(to_host(idx), argmax(x, 1), 0, "argmax with NaNs");
    cuda_reduce(ReduceOp::Max, dt, dx.ptr(), 4, 3, 1, nullptr, idx.as<int64_t>());  // indices only
    check_close(to_host(idx), argmax(x, 1), 0, "argmax without values");
  }
  // Determinism: the same input twice gives the same bits.
  {
    Tensor x = rnd({1, 3000017, 1}, 77, DType::Float32);
    Dev dx = to_device(x), a = device_empty({1}, DType::Float32), b = device_empty({1}, DType::Float32);
    cuda_reduce(ReduceOp::Sum, DType::Float32, dx.ptr(), 1, 3000017, 1, a.ptr());
    cuda_reduce(ReduceOp::Sum, DType::Float32, dx.ptr(), 1, 3000017, 1, b.ptr());
    check_close(to_host(a), to_host(b), 0, "repeated sum");
  }
#endif
}

// ================================================================ nn

TEST_CASE("cuda kernels: softmax and log_softmax forward and backward", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  // (O, N, I): warp rows, block rows (N > 1024), columns (I > 1), a single element.
  const std::vector<Shape> shapes = {{64, 1000, 1}, {8, 5000, 1}, {4, 37, 50}, {1, 1, 1}};
  uint64_t seed = 900;
  for (const Shape& s : shapes)
    for (DType dt : kFloats)
      for (bool lg : {false, true}) {
        const std::string what = fmt::format("{} ({},{},{}) {}", lg ? "log_softmax" : "softmax", s[0], s[1], s[2],
                                             dtype_name(dt));
        auto f = [lg](const Tensor& t) { return lg ? log_softmax(t, 1) : softmax(t, 1); };
        Tensor x = rnd(s, ++seed, dt, -5, 5), g = rnd(s, ++seed, dt);
        Tensor y;
        {
          no_grad ng;
          y = f(x);
        }
        Dev dx = to_device(x), dy = device_empty(s, dt);
        cuda_softmax_forward(dt, lg, dx.ptr(), dy.ptr(), s[0], s[1], s[2]);
        check_close(to_host(dy), y, dt == DType::Float32 ? 5e-6 : 1e-13, what + " forward");
        Dev dg = to_device(g), dyc = to_device(y), dgx = device_empty(s, dt);
        cuda_softmax_backward(dt, lg, dg.ptr(), dyc.ptr(), dgx.ptr(), s[0], s[1], s[2]);
        check_close(to_host(dgx), grad_of(f, x, g), dt == DType::Float32 ? 5e-6 : 1e-13, what + " backward");
      }
#endif
}

TEST_CASE("cuda kernels: cross_entropy with ignore_index and label smoothing, index checks", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  const int64_t kIgnore = -100;
  uint64_t seed = 1100;
  for (auto [B, C] : std::vector<std::pair<int64_t, int64_t>>{{300, 10}, {17, 3000}})
    for (DType dt : kFloats)
      for (double e : {0.0, 0.1}) {
        const std::string what = fmt::format("B={} C={} e={} {}", B, C, e, dtype_name(dt));
        Tensor x = rnd({B, C}, ++seed, dt, -4, 4);
        std::vector<int64_t> tv = rnd_index({B}, C, ++seed).to_int_vector();
        for (int64_t b = 0; b < B; b += 4) tv[(size_t)b] = kIgnore;  // a quarter ignored
        Tensor t = Tensor::from_vector(tv, {B});
        Dev dx = to_device(x), dtg = to_device(t);
        const int64_t kept = B - (B + 3) / 4;

        Tensor loss = cross_entropy(x, t, kIgnore, e);
        Dev losses = device_empty({B}, DType::Float64), lse = device_empty({B}, dt);
        cuda_cross_entropy_forward(dt, dx.ptr(), dtg.as<int64_t>(), B, C, kIgnore, e, losses.as<double>(), lse.ptr());
        std::vector<double> lv = to_host(losses).to_vector();
        double total = 0;
        for (int64_t b = 0; b < B; ++b) {
          if (tv[(size_t)b] == kIgnore) REQUIRE(lv[(size_t)b] == 0.0);
          total += lv[(size_t)b];
        }
        const double got = total / (double)kept;
        INFO(what << ": loss gpu " << got << " cpu " << loss.item());
        REQUIRE(std::abs(got - loss.item()) <= (dt == DType::Float32 ? 1e-5 : 1e-12) * std::abs(loss.item()));
        // lse against an independent log-sum-exp of the CPU
        Tensor lse_cpu;
        {
          no_grad ng;
          Tensor m = max(x, {1}, true);
          lse_cpu = add(log(sum(exp(sub(x, m)), {1})), m.reshape({B}));
        }
        check_close(to_host(lse), lse_cpu, dt == DType::Float32 ? 2e-6 : 1e-13, what + " lse");

        // backward with dloss = 2.5 on the device
        Tensor xg = x.detach().clone();
        xg.requires_grad_();
        cross_entropy(xg, t, kIgnore, e).backward(Tensor::scalar(2.5, dt));
        Dev dloss = to_device(Tensor::scalar(2.5, dt)), dgx = device_empty({B, C}, dt);
        cuda_cross_entropy_backward(dt, dx.ptr(), lse.ptr(), dtg.as<int64_t>(), B, C, kIgnore, e,
                                    1.0 / (double)kept, dloss.ptr(), dgx.ptr());
        check_close(to_host(dgx), xg.grad(), dt == DType::Float32 ? 5e-6 : 1e-13, what + " backward");
      }
#endif
}

TEST_CASE("cuda kernels: layer_norm forward and backward", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  uint64_t seed = 1300;
  // (B, D): warp rows with two partial chunks for the parameter sums (B = 300 > 256), block rows.
  for (auto [B, D] : std::vector<std::pair<int64_t, int64_t>>{{300, 64}, {5, 1500}, {1, 1}})
    for (DType dt : kFloats)
      for (int affine = 0; affine < 3; ++affine) {  // 0: weight and bias, 1: weight only, 2: neither
        const std::string what = fmt::format("B={} D={} affine={} {}", B, D, affine, dtype_name(dt));
        const double eps = 1e-5;
        Tensor x = rnd({B, D}, ++seed, dt, -2, 3), g = rnd({B, D}, ++seed, dt);
        Tensor w = affine <= 1 ? rnd({D}, ++seed, dt, 0.5, 1.5) : Tensor();
        Tensor b = affine == 0 ? rnd({D}, ++seed, dt) : Tensor();
        Tensor xr = x.detach().clone(), wr = w.defined() ? w.detach().clone() : Tensor(),
               br = b.defined() ? b.detach().clone() : Tensor();
        xr.requires_grad_();
        if (wr.defined()) wr.requires_grad_();
        if (br.defined()) br.requires_grad_();
        Tensor y = layer_norm(xr, wr, br, eps);
        y.backward(g);

        Dev dx = to_device(x), dg = to_device(g);
        Dev dw = w.defined() ? to_device(w) : Dev{}, db = b.defined() ? to_device(b) : Dev{};
        Dev dy = device_empty({B, D}, dt), dmean = device_empty({B}, dt), drstd = device_empty({B}, dt);
        cuda_layer_norm_forward(dt, dx.ptr(), dw.ptr(), db.ptr(), B, D, eps, dy.ptr(), dmean.ptr(), drstd.ptr());
        const double tol = dt == DType::Float32 ? 1e-5 : 1e-12;
        check_close(to_host(dy), y.detach(), tol, what + " y");
        Tensor mean_cpu, rstd_cpu;
        {
          no_grad ng;
          mean_cpu = mean(x, {1});
          rstd_cpu = rsqrt(add_scalar(var(x, {1}, false, 0), eps));
        }
        check_close(to_host(dmean), mean_cpu, tol, what + " mean");
        check_close(to_host(drstd), rstd_cpu, tol, what + " rstd");
        Dev dgx = device_empty({B, D}, dt);
        cuda_layer_norm_backward_input(dt, dg.ptr(), dx.ptr(), dw.ptr(), dmean.ptr(), drstd.ptr(), B, D, dgx.ptr());
        check_close(to_host(dgx), xr.grad(), dt == DType::Float32 ? 2e-5 : 1e-11, what + " dx");
        if (affine <= 1) {
          Dev dgw = device_empty({D}, dt), dgb = device_empty({D}, dt);
          cuda_layer_norm_backward_params(dt, dg.ptr(), dx.ptr(), dmean.ptr(), drstd.ptr(), B, D, dgw.ptr(),
                                          affine == 0 ? dgb.ptr() : nullptr);
          check_close(to_host(dgw), wr.grad(), tol, what + " dweight");
          if (affine == 0) check_close(to_host(dgb), br.grad(), tol, what + " dbias");
        }
      }
#endif
}

// ================================================================ indexing

TEST_CASE("cuda kernels: embedding, index_add, gather, scatter_add and cat rows", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  uint64_t seed = 1500;
  for (DType dt : kFloats) {
    // embedding: a plain and a transposed (column-major) table; repeated indices.
    const int64_t V = 50, D = 33, L = 1000;
    Tensor idx = rnd_index({L}, V, ++seed);
    Dev di = to_device(idx);
    for (bool transposed : {false, true}) {
      Tensor w = transposed ? rnd({D, V}, ++seed, dt).t() : rnd({V, D}, ++seed, dt);
      Tensor g = rnd({L, D}, ++seed, dt);
      Dev dw = to_device(w), dy = device_empty({L, D}, dt);
      cuda_embedding_forward(dt, dw.ptr(), w.strides()[0], w.strides()[1], di.as<int64_t>(), L, D, dy.ptr());
      check_close(to_host(dy), embedding(w, idx), 0, "embedding forward");  // a copy: exact
      Tensor want = grad_of([&](const Tensor& t) { return embedding(t, idx); }, w.contiguous(), g);
      Dev dg = to_device(g), dgw = device_empty({V, D}, dt);
      cuda_embedding_backward(dt, dg.ptr(), di.as<int64_t>(), V, L, D, dgw.ptr());
      // The same additions in the same order as the CPU (sorted groups, increasing l): exact.
      check_close(to_host(dgw), want, 0, fmt::format("embedding backward {}", dtype_name(dt)));
    }
    // index_add over (O,N,I) through index_select's backward; some rows never selected.
    {
      const int64_t O = 3, N = 20, K = 50, I = 7;
      Tensor x = rnd({O, N, I}, ++seed, dt), sel = rnd_index({K}, N - 3, ++seed), g = rnd({O, K, I}, ++seed, dt);
      Tensor want = grad_of([&](const Tensor& t) { return index_select(t, 1, sel); }, x, g);
      Dev ds = to_device(sel), dg = to_device(g), dgx = device_empty({O, N, I}, dt);
      cuda_index_add_rows(dt, dg.ptr(), ds.as<int64_t>(), O, N, K, I, dgx.ptr());
      check_close(to_host(dgx), want, 0, "index_add_rows");  // exact, as above
    }
    // gather along dim 1 of a transposed x, and its scatter-add backward.
    {
      Tensor x = rnd({5, 6, 4}, ++seed, dt).permute({2, 1, 0});  // (4,6,5), strided
      Tensor index = rnd_index({3, 9, 5}, 6, ++seed);
      Tensor want = gather(x, 1, index);
      Dev dx = to_device(x), dix = to_device(index), out = device_empty(index.shape(), dt);
      Strides xs = x.strides();
      const int64_t sd = xs[1];
      xs[1] = 0;
      cuda_gather(dt, make_view(dx.ptr(), index.shape(), xs), sd, dix.view, out.view);
      check_close(to_host(out), want, 0, "gather");
      Tensor g = rnd(index.shape(), ++seed, dt);
      Tensor want_g = grad_of([&](const Tensor& t) { return gather(t, 1, index); }, x.contiguous(), g);
      Dev dg = to_device(g), dgx = to_device(Tensor::zeros({4, 6, 5}, dt));
      const Strides gxs{30, 0, 1};  // (4,6,5) contiguous, 0 along dim 1
      cuda_scatter_add(dt, dg.view, dix.view, make_view(dgx.ptr(), index.shape(), gxs), 5, 1);
      check_close(to_host(dgx), want_g, 0, "scatter_add");  // each column adds in k order: exact
    }
  }
  // gather and index_select of int64 and bool tensors (elements moved as raw words).
  for (DType dt : {DType::Int64, DType::Bool}) {
    Tensor x = rnd({6, 7}, 31, DType::Float64, -3, 3).to(dt);
    Tensor index = rnd_index({6, 11}, 7, 32);
    Dev dx = to_device(x), dix = to_device(index), out = device_empty({6, 11}, dt);
    cuda_gather(dt, make_view(dx.ptr(), {6, 11}, {7, 0}), 1, dix.view, out.view);
    check_close(to_host(out), gather(x, 1, index), 0, fmt::format("gather {}", dtype_name(dt)));
    Tensor sel = rnd_index({4}, 6, 33);
    Dev dsel = to_device(sel), out_s = device_empty({4, 7}, dt);
    cuda_gather(dt, make_view(dx.ptr(), {4, 7}, {0, 1}), 7, make_view(dsel.ptr(), {4, 7}, {1, 0}), out_s.view);
    check_close(to_host(out_s), index_select(x, 0, sel), 0, fmt::format("index_select {}", dtype_name(dt)));
  }
  // cat of two contiguous inputs along dim 1 as row copies.
  {
    Tensor a = rnd({3, 2, 5}, 41, DType::Float32), b = rnd({3, 4, 5}, 42, DType::Float32);
    Dev da = to_device(a), db = to_device(b), out = device_empty({3, 6, 5}, DType::Float32);
    cuda_copy_rows(da.ptr(), out.ptr(), 3, 2 * 5 * 4, 6 * 5 * 4);
    cuda_copy_rows(db.ptr(), static_cast<char*>(out.ptr()) + 2 * 5 * 4, 3, 4 * 5 * 4, 6 * 5 * 4);
    check_close(to_host(out), cat({a, b}, 1), 0, "cat rows");
  }
#endif
}

// ================================================================ optimizers

TEST_CASE("cuda kernels: AdamW and SGD updates and the sum of squares match mega/optim", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  const int64_t n = 1001;  // not a multiple of the vector width
  for (DType dt : kFloats)
    for (bool unaligned : {false, true}) {
      const double tol = dt == DType::Float32 ? 2e-6 : 1e-14;
      const std::string what = fmt::format("{}{}", dtype_name(dt), unaligned ? " unaligned" : "");
      const int64_t sh = unaligned ? 1 : 0;  // element offset of every device array
      // AdamW: 3 steps, torch form and fairseq form.
      for (bool fairseq : {false, true}) {
        AdamWOptions o;
        o.lr = 0.01, o.beta1 = 0.8, o.beta2 = 0.95, o.eps = 1e-6, o.weight_decay = 0.1, o.fairseq_eps = fairseq;
        Tensor p = rnd({n}, 51, dt);
        Tensor dp_host = Tensor::zeros({n + sh}, dt), zeros = Tensor::zeros({n + sh}, dt);
        dp_host.narrow(0, sh, n).copy_(p);
        Dev dp = to_device(dp_host), dm = to_device(zeros), dv = to_device(zeros);
        const int64_t es = (int64_t)dtype_size(dt);
        auto at = [&](const Dev& d) { return static_cast<char*>(d.ptr()) + sh * es; };
        p.requires_grad_();
        AdamW opt({{"p", p}}, o);
        for (int64_t step = 1; step <= 3; ++step) {
          Tensor g = rnd({n}, 60 + (uint64_t)step, dt);
          p.set_grad(g);
          opt.step();
          Dev dg = to_device(Tensor::zeros({n + sh}, dt));
          MG_CUDA_CHECK(cudaMemcpy(at(dg), g.raw_data(), (size_t)(n * es), cudaMemcpyHostToDevice));
          const double bc1 = 1 - std::pow(o.beta1, (double)step), bc2 = 1 - std::pow(o.beta2, (double)step);
          AdamWScalars s{1 - o.lr * o.weight_decay, o.beta1, o.beta2,
                      fairseq ? o.lr * std::sqrt(bc2) / bc1 : o.lr / bc1, fairseq ? 1.0 : 1.0 / std::sqrt(bc2), o.eps};
          cuda_adamw(dt, at(dp), at(dg), at(dm), at(dv), n, s);
        }
        NamedTensors st = opt.state_dict();
        auto state = [&](const std::string& k) {
          for (auto& [name, t] : st)
            if (name == k) return t;
          FAIL("no state " << k);
          return Tensor();
        };
        check_close(to_host(at(dp), {n}, dt), p.detach(), tol, "adamw p " + what);
        check_close(to_host(at(dm), {n}, dt), state("exp_avg.p"), tol, "adamw m " + what);
        check_close(to_host(at(dv), {n}, dt), state("exp_avg_sq.p"), tol, "adamw v " + what);
      }
      // SGD: plain, momentum with dampening and weight decay, nesterov.
      struct SgdCase {
        double momentum, dampening, wd;
        bool nesterov;
      };
      for (SgdCase c : {SgdCase{0, 0, 0.01, false}, SgdCase{0.9, 0.1, 0.01, false}, SgdCase{0.9, 0, 0, true}}) {
        SGDOptions o;
        o.lr = 0.05, o.momentum = c.momentum, o.dampening = c.dampening, o.weight_decay = c.wd, o.nesterov = c.nesterov;
        Tensor p = rnd({n}, 71, dt);
        Tensor dp_host = Tensor::zeros({n + sh}, dt);
        dp_host.narrow(0, sh, n).copy_(p);
        Dev dp = to_device(dp_host), db = to_device(Tensor::zeros({n + sh}, dt));
        const int64_t es = (int64_t)dtype_size(dt);
        auto at = [&](const Dev& d) { return static_cast<char*>(d.ptr()) + sh * es; };
        p.requires_grad_();
        SGD opt({{"p", p}}, o);
        for (int64_t step = 1; step <= 3; ++step) {
          Tensor g = rnd({n}, 80 + (uint64_t)step, dt);
          p.set_grad(g);
          opt.step();
          Dev dg = to_device(Tensor::zeros({n + sh}, dt));
          MG_CUDA_CHECK(cudaMemcpy(at(dg), g.raw_data(), (size_t)(n * es), cudaMemcpyHostToDevice));
          SGDScalars s{o.lr, o.weight_decay, o.momentum, o.dampening, o.nesterov, step == 1};
          cuda_sgd(dt, at(dp), at(dg), c.momentum != 0 ? at(db) : nullptr, n, s);
        }
        check_close(to_host(at(dp), {n}, dt), p.detach(), tol,
                    fmt::format("sgd momentum {} nesterov {} {}", c.momentum, c.nesterov, what));
      }
    }
  // Sum of squares in double, and accumulation over two arrays.
  for (DType dt : kFloats)
    for (int64_t len : {int64_t(0), int64_t(1), int64_t(5000), int64_t(3000017)}) {
      Tensor g = rnd({len}, 91, dt), h = rnd({123}, 92, dt);
      double want = 0;
      for (double v : g.to_vector()) want += v * v;
      double want2 = want;
      for (double v : h.to_vector()) want2 += v * v;
      Dev dg = to_device(g), dh = to_device(h), out = device_empty({2}, DType::Float64);
      cuda_sum_squares(dt, dg.ptr(), len, out.as<double>());
      cuda_sum_squares(dt, dg.ptr(), len, out.as<double>() + 1);
      cuda_sum_squares(dt, dh.ptr(), 123, out.as<double>() + 1, true);
      std::vector<double> got = to_host(out).to_vector();
      INFO("n = " << len << " " << dtype_name(dt) << ": " << got[0] << " vs " << want);
      REQUIRE(std::abs(got[0] - want) <= 1e-12 * want);  // double accumulation both sides
      REQUIRE(std::abs(got[1] - want2) <= 1e-12 * want2);
    }
#endif
}

// ================================================================ random

TEST_CASE("cuda kernels: Philox, dropout and uniform draws are bit-identical to the CPU", "[cuda]") {
  SKIP_WITHOUT_CUDA();
#if MEGAGRAD_HAS_CUDA
  // Raw words, across the 2^32 boundary of the low counter word and with a high word.
  {
    const int64_t n = 4096;
    const uint64_t seed = 0x123456789abcdefULL, first = (1ULL << 32) - 100;
    Dev out = device_empty({4 * n}, DType::Float32);  // 4n 32-bit words
    cuda_philox(seed, 7, first, n, out.as<uint32_t>());
    MG_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<uint32_t> got((size_t)(4 * n));
    MG_CUDA_CHECK(cudaMemcpy(got.data(), out.ptr(), got.size() * 4, cudaMemcpyDeviceToHost));
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      auto w = philox4x32(seed, 7, first + (uint64_t)i);
      for (int j = 0; j < 4; ++j) bad += got[(size_t)(4 * i + j)] != w[(size_t)j];
    }
    REQUIRE(bad == 0);
  }
  for (DType dt : kFloats) {
    // dropout from a generator already advanced (offset 12345): same y, same mask, same dx.
    const int64_t L = 100003;
    const double p = 0.3;
    Tensor x = rnd({L}, 5, dt, 0.5, 1.5), g = rnd({L}, 6, dt);
    Generator gen(2024);
    gen.set_state(2024, 12345);
    Tensor xr = x.detach().clone();
    xr.requires_grad_();
    Tensor y = dropout(xr, p, true, &gen);
    y.backward(g);
    Dev dx = to_device(x), dy = device_empty({L}, dt), mask = device_empty({L}, DType::Bool);
    cuda_dropout_forward(dt, dx.ptr(), dy.ptr(), mask.as<bool>(), L, p, 2024, 12345);
    check_close(to_host(dy), y.detach(), 0, "dropout y");
    check_close(to_host(mask), gt(y.detach(), Tensor::zeros({}, dt)), 0, "dropout mask");  // x > 0: kept <=> y > 0
    Dev dg = to_device(g), dgx = device_empty({L}, dt);
    cuda_dropout_backward(dt, dg.ptr(), mask.as<bool>(), dgx.ptr(), L, p);
    check_close(to_host(dgx), xr.grad(), 0, "dropout backward");

    // uniform: exact on [0, 1); elsewhere within an ulp (the CPU may or may not contract to FMA).
    Generator ug(99);
    ug.set_state(99, 777);
    Tensor u01 = uniform({5000}, 0, 1, dt, &ug);
    Dev du = device_empty({5000}, dt);
    cuda_uniform(dt, du.ptr(), 5000, 0, 1, 99, 777);
    check_close(to_host(du), u01, 0, "uniform [0,1)");
    Tensor u = uniform({5000}, -2, 3, dt, &ug);  // offsets 5777...
    cuda_uniform(dt, du.ptr(), 5000, -2, 3, 99, 5777);
    check_close(to_host(du), u, dt == DType::Float32 ? 2.4e-7 : 4.5e-16, "uniform [-2,3)");
    Tensor nrm = normal({5000}, 0.5, 2, dt, &ug);  // offsets 10777...
    cuda_normal(dt, du.ptr(), 5000, 0.5, 2, 99, 10777);
    check_close(to_host(du), nrm, dt == DType::Float32 ? 1e-6 : 1e-13, "normal");  // device log/cos
  }
#endif
}

TEST_CASE("cuda kernels: bad arguments raise errors before any launch", "[cuda]") {
#if MEGAGRAD_HAS_CUDA
  // These checks run on the host before any CUDA call, so they run without a device too.
  float dummy[4] = {};
  CudaView a = make_view(dummy, {2, 2}, {2, 1}), b = make_view(dummy, {2, 3}, {3, 1});
  REQUIRE_THROWS_WITH(cuda_map(pw::Add{}, DType::Float32, a, b, a),
                      Catch::Contains("[cuda_map]") && Catch::Contains("sizes"));
  REQUIRE_THROWS_WITH(cuda_map(pw::Exp{}, DType::Int64, a, a), Catch::Contains("expected float32 or float64"));
  REQUIRE_THROWS_WITH(make_view(dummy, std::vector<int64_t>(9, 1), std::vector<int64_t>(9, 1)),
                      Catch::Contains("at most 8"));
  REQUIRE_THROWS_WITH(make_view(dummy, {2}, {-1}), Catch::Contains("must be >= 0"));
  REQUIRE_THROWS_WITH(make_view_broadcast(dummy, {3}, {1}, {2, 2}), Catch::Contains("does not broadcast"));
  REQUIRE_THROWS_WITH(cuda_reduce(ReduceOp::Mean, DType::Float32, dummy, 2, 0, 1, dummy),
                      Catch::Contains("empty extent"));
  REQUIRE_THROWS_WITH(cuda_reduce(ReduceOp::Var, DType::Float32, dummy, 1, 1, 1, dummy, nullptr, 1),
                      Catch::Contains("correction"));
  REQUIRE_THROWS_WITH(cuda_dropout_forward(DType::Float32, dummy, dummy, nullptr, 4, 1.0, 0, 0),
                      Catch::Contains("[0, 1)"));
  REQUIRE_THROWS_WITH(cuda_index_add_rows(DType::Float32, dummy, nullptr, 1, int64_t(1) << 32, 1, 1, dummy),
                      Catch::Contains("32 bits"));
  REQUIRE_THROWS_WITH(cuda_scatter_add(DType::Float32, a, a, a, 1, 2), Catch::Contains("out of range"));
#else
  test::skip("CPU-only build: the CUDA launchers are not built");
#endif
}
