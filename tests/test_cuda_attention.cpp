// The CUDA attention kernels (mega/attention/attention_cuda.cu) against the CPU kernels
// (attention_cpu.h) on the same random inputs: the output, the logsumexp and every gradient
// (q, k, v, the bias table), float32 and float64, for each activation, causal or not, chunked or
// not, with padding masks (right padding, left padding with rows that see no key, a chunk that is
// all padding, random), chunk lengths that are not multiples of the 64-row tiles, strided and
// time-major inputs, widths that need several column slices, H = 1536, dropout (the device draws
// the CPU's bits: compared with the same tolerance as without dropout, plus an exact check of the
// dropped pattern), and gradient subsets. On a machine without a GPU each test is a visible skip.
#include <catch2/catch.hpp>
#include "backends/cuda/cuda.h"

#if MEGAGRAD_HAS_CUDA
#include <cuda_runtime.h>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>
#include <fmt/format.h>
#include "backends/cuda/cuda_check.h"
#include "core/rng.h"
#include "mega/attention/attention_cpu.h"
#include "mega/attention/attention_cuda.h"
#include "tests/cuda_test_util.h"

using namespace megagrad;
namespace cpu_k = megagrad::attention_cpu;
namespace gpu_k = megagrad::attention_cuda;

namespace {

enum class MaskKind { None, Right, Left, AllPadChunk, Random };

struct Case {
  std::string name;
  AttentionActivation act;
  bool causal;
  int64_t B, L, Z, H, C;  // C = L: one chunk
  MaskKind mask = MaskKind::None;
  double p = 0.0;         // attention dropout
  bool strided = false;   // q, k, v time-major views (sb = width+pad, ld = B*(width+pad)), strided mask
};

// A device copy of a host vector, freed on every path.
template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t n_) : n(n_) {
    MG_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
    MG_CUDA_CHECK(cudaMemset(p, 0xFF, std::max<size_t>(n, 1) * sizeof(T)));  // NaN: unwritten entries show
  }
  explicit DeviceBuffer(const std::vector<T>& h) : DeviceBuffer(h.size()) {
    MG_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> get() const {
    std::vector<T> h(n);
    MG_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Worst |gpu - cpu| / (|cpu| + mean |cpu|) over the elements (equal infinities count as equal; a
// NaN or an infinity on one side only fails). The mean keeps entries near 0 from dominating.
template <typename T, typename U>
double rel_err(const std::vector<T>& gpu, const std::vector<U>& cpu, std::string& where) {
  if (gpu.size() != cpu.size()) return INFINITY;
  double mean = 0;
  size_t nf = 0;
  for (U x : cpu)
    if (std::isfinite((double)x)) mean += std::fabs((double)x), ++nf;
  mean = nf ? mean / (double)nf : 0.0;
  double worst = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double g = (double)gpu[i], c = (double)cpu[i];
    double e;
    if (std::isinf(c) && g == c) e = 0;
    else if (!std::isfinite(g) || !std::isfinite(c)) e = INFINITY;
    else e = std::fabs(g - c) / (std::fabs(c) + mean + 1e-300);
    if (!(e <= worst)) worst = e, where = fmt::format("at {}: gpu {} cpu {}", i, g, c);
  }
  return worst;
}

#define CHECK_CLOSE(what, gpu, cpu, tol)                                              \
  do {                                                                                \
    std::string where_;                                                               \
    const double err_ = rel_err(gpu, cpu, where_);                                    \
    INFO(what << ": worst relative error " << err_ << " (tolerance " << (tol) << ") " \
              << where_);                                                             \
    CHECK(err_ <= (tol));                                                             \
  } while (0)

// The inputs of one case on the host, in the layout both kernels read.
template <typename T>
struct Host {
  AttentionShape d;
  int64_t qsb, qld, ksb, kld, vsb, vld, msb, msl;
  std::vector<T> q, k, v, mask, rel, dout;
};

double draw(uint64_t& counter, double lo, double hi) { return uniform_at(2024, counter++, lo, hi); }

template <typename T>
Host<T> make_host(const Case& cs) {
  Host<T> h;
  const int64_t B = cs.B, L = cs.L, Z = cs.Z, H = cs.H, C = cs.C;
  h.d = {B, L, Z, H, C, L / C};
  uint64_t ctr = 1;
  // Strided: time-major (L, B, width + 3) buffers read as (B, L, width) views.
  auto layout = [&](int64_t W, int64_t& sb, int64_t& ld) {
    if (cs.strided) sb = W + 3, ld = B * (W + 3);
    else sb = L * W, ld = W;
    return (size_t)(cs.strided ? L * B * (W + 3) : B * L * W);
  };
  const size_t nq = layout(Z, h.qsb, h.qld), nk = layout(Z, h.ksb, h.kld), nv = layout(H, h.vsb, h.vld);
  // laplace/relu2 divide q . k by the key count n (up to C): wider q keeps their scores spread
  // around the laplace's centre (0.707) and on both sides of relu2's kink; softmax: peaked rows.
  const double qa = cs.act == AttentionActivation::Softmax ? 2.5 : 1.5 * (double)C / std::sqrt((double)Z);
  h.q.resize(nq), h.k.resize(nk), h.v.resize(nv);
  for (auto& x : h.q) x = (T)draw(ctr, -qa, qa);
  for (auto& x : h.k) x = (T)draw(ctr, -1, 1);
  for (auto& x : h.v) x = (T)draw(ctr, -1, 1);
  h.rel.resize((size_t)(2 * C - 1));
  for (auto& x : h.rel) x = (T)draw(ctr, -0.5, 0.5);
  h.dout.resize((size_t)(B * L * H));
  for (auto& x : h.dout) x = (T)draw(ctr, -1, 1);
  if (cs.mask != MaskKind::None) {
    // Strided: a (L, B) time-major mask.
    h.msb = cs.strided ? 1 : L, h.msl = cs.strided ? B : 1;
    h.mask.assign((size_t)(B * L), T(0));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < L; ++t) {
        bool pad = false;
        switch (cs.mask) {
          case MaskKind::Right: pad = t >= L - (b * L) / 3; break;      // batch b: the last b/3 of L
          case MaskKind::Left: pad = b > 0 && t < 3 + 5 * b; break;     // the first 3 + 5b positions
          case MaskKind::AllPadChunk: pad = b == B - 1 && t >= L - C - 2; break;  // the last chunk and 2 more
          case MaskKind::Random: pad = draw(ctr, 0, 1) < 0.3; break;
          default: break;
        }
        h.mask[(size_t)(b * h.msb + t * h.msl)] = pad ? T(1) : T(0);
      }
  } else {
    h.msb = h.msl = 0;
  }
  return h;
}

constexpr uint64_t kSeed = 0x5EED5EEDull, kFirst = 12345;

template <typename T>
AttentionProblem<T> cpu_problem(const Case& cs, const Host<T>& h) {
  AttentionProblem<T> pr;
  pr.d = h.d;
  pr.act = cs.act;
  pr.causal = cs.causal;
  pr.q = {h.q.data(), h.qsb, h.qld}, pr.k = {h.k.data(), h.ksb, h.kld}, pr.v = {h.v.data(), h.vsb, h.vld};
  if (!h.mask.empty()) pr.mask = h.mask.data(), pr.msb = h.msb, pr.msl = h.msl;
  pr.rel = h.rel.data();
  pr.softmax_scale = std::pow((double)h.d.Z, -0.5);
  pr.p = cs.p, pr.seed = kSeed, pr.first = kFirst;
  return pr;
}

// The device copies of one case's inputs, and the GPU problem on them.
template <typename T>
struct OnDevice {
  DeviceBuffer<T> q, k, v, mask, rel, dout;
  AttentionProblem<T> pr;
  OnDevice(const Case& cs, const Host<T>& h) : q(h.q), k(h.k), v(h.v), mask(h.mask), rel(h.rel), dout(h.dout) {
    pr.d = h.d;
    pr.act = cs.act;
    pr.causal = cs.causal;
    pr.q = {q.p, h.qsb, h.qld}, pr.k = {k.p, h.ksb, h.kld}, pr.v = {v.p, h.vsb, h.vld};
    if (!h.mask.empty()) pr.mask = mask.p, pr.msb = h.msb, pr.msl = h.msl;
    pr.rel = rel.p;
    pr.softmax_scale = std::pow((double)h.d.Z, -0.5);
    pr.p = cs.p, pr.seed = kSeed, pr.first = kFirst;
  }
};

struct Tol {
  double out, grad;
};

// Runs both kernels on one case and compares everything. `subsets`: also run the GPU backward
// with only some gradients asked for (each must equal the full run's).
template <typename T>
void compare_case(const Case& cs, Tol tol, bool subsets = false) {
  const Host<T> h = make_host<T>(cs);
  const AttentionShape& d = h.d;
  const bool softmax = cs.act == AttentionActivation::Softmax;
  INFO(fmt::format("{} ({}): B={} L={} C={} Z={} H={} causal={} p={}", cs.name, sizeof(T) == 4 ? "float32" : "float64",
                   d.B, d.L, d.C, d.Z, d.H, cs.causal, cs.p));
  // CPU
  const AttentionProblem<T> cp = cpu_problem(cs, h);
  std::vector<T> out_c((size_t)(d.B * d.L * d.H)), lse_c(softmax ? (size_t)(d.B * d.L) : 0);
  cpu_k::forward(cp, out_c.data(), softmax ? lse_c.data() : nullptr);
  std::vector<T> dq_c((size_t)(d.B * d.L * d.Z)), dk_c(dq_c.size()), dv_c(out_c.size());
  std::vector<double> drel_c((size_t)(2 * d.C - 1), 0.0);
  AttentionGrads<T> gc;
  gc.dq = dq_c.data(), gc.dk = dk_c.data(), gc.dv = dv_c.data(), gc.drel = drel_c.data();
  cpu_k::backward(cp, out_c.data(), softmax ? lse_c.data() : nullptr, h.dout.data(), gc);

  // GPU
  OnDevice<T> dev(cs, h);
  DeviceBuffer<T> out(out_c.size()), lse(softmax ? (size_t)(d.B * d.L) : 0);
  gpu_k::forward(dev.pr, out.p, softmax ? lse.p : nullptr, nullptr);
  MG_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK_CLOSE("out", out.get(), out_c, tol.out);
  if (softmax) CHECK_CLOSE("lse", lse.get(), lse_c, tol.out);

  DeviceBuffer<T> dq(dq_c.size()), dk(dk_c.size()), dv(dv_c.size());
  DeviceBuffer<double> drel(drel_c.size());
  auto run_backward = [&](bool wq, bool wk, bool wv, bool wrel) {
    AttentionGrads<T> g;
    if (wq) g.dq = dq.p;
    if (wk) g.dk = dk.p;
    if (wv) g.dv = dv.p;
    if (wrel) g.drel = drel.p;
    const size_t ws = gpu_k::backward_workspace_bytes(dev.pr, g);
    DeviceBuffer<unsigned char> work(ws);
    gpu_k::backward(dev.pr, out.p, softmax ? lse.p : nullptr, dev.dout.p, g, ws ? work.p : nullptr, ws, nullptr);
    MG_CUDA_CHECK(cudaDeviceSynchronize());
  };
  run_backward(true, true, true, true);
  const std::vector<T> dq_g = dq.get(), dk_g = dk.get(), dv_g = dv.get();
  const std::vector<double> drel_g = drel.get();
  CHECK_CLOSE("dq", dq_g, dq_c, tol.grad);
  CHECK_CLOSE("dk", dk_g, dk_c, tol.grad);
  CHECK_CLOSE("dv", dv_g, dv_c, tol.grad);
  CHECK_CLOSE("drel", drel_g, drel_c, tol.grad);
  if (!subsets) return;
  // Each subset must reproduce the full run's bits for what it computes (same kernels, same order).
  // The bias gradient alone runs another instantiation of the dq kernel (64 output columns, no dQ
  // product): the same sums, compared with a tolerance in case the compiler contracts differently.
  const std::vector<std::vector<bool>> sets = {{false, false, true, false}, {false, false, false, true},
                                               {true, false, false, false}, {false, true, false, false}};
  for (const auto& s : sets) {
    MG_CUDA_CHECK(cudaMemset(dq.p, 0xFF, dq.n * sizeof(T)));
    MG_CUDA_CHECK(cudaMemset(dk.p, 0xFF, dk.n * sizeof(T)));
    MG_CUDA_CHECK(cudaMemset(dv.p, 0xFF, dv.n * sizeof(T)));
    MG_CUDA_CHECK(cudaMemset(drel.p, 0xFF, drel.n * sizeof(double)));
    run_backward(s[0], s[1], s[2], s[3]);
    INFO("subset dq=" << s[0] << " dk=" << s[1] << " dv=" << s[2] << " drel=" << s[3]);
    if (s[0]) CHECK(dq.get() == dq_g);
    if (s[1]) CHECK(dk.get() == dk_g);
    if (s[2]) CHECK(dv.get() == dv_g);
    if (s[3]) CHECK_CLOSE("drel alone", drel.get(), drel_g, 1e-12);
  }
}

using A = AttentionActivation;

// The cases. Widths: Z = 40 (one 64-column slice), 72, 96 (one 128-column slice), 200 (two);
// H = 20, 70, 130 (two 128-column slices), 1536 (twelve). Chunk lengths 1, 5, 50, 64, 70, 96, 100,
// 129, 150: only 64 a multiple of the tile.
std::vector<Case> cases() {
  return {
      {"softmax plain", A::Softmax, false, 2, 150, 40, 70, 150},
      {"softmax causal chunked right-padded", A::Softmax, true, 3, 200, 72, 20, 100, MaskKind::Right},
      {"softmax causal left-padded (rows that see no key)", A::Softmax, true, 3, 130, 40, 33, 130, MaskKind::Left},
      {"softmax chunked, one chunk all padding, dropout", A::Softmax, false, 2, 150, 40, 20, 50,
       MaskKind::AllPadChunk, 0.1},
      {"softmax strided time-major, random mask, dropout", A::Softmax, false, 2, 96, 24, 40, 96, MaskKind::Random,
       0.25, true},
      {"softmax H=1536 right-padded dropout", A::Softmax, false, 2, 96, 64, 1536, 96, MaskKind::Right, 0.1},
      {"softmax causal chunked 64 dropout", A::Softmax, true, 2, 192, 200, 130, 64, MaskKind::None, 0.2},
      {"laplace chunked random mask", A::Laplace, false, 2, 192, 40, 70, 96, MaskKind::Random},
      {"laplace causal dropout", A::Laplace, true, 2, 129, 96, 20, 129, MaskKind::None, 0.2},
      {"laplace chunked, one chunk all padding", A::Laplace, false, 2, 150, 40, 20, 50, MaskKind::AllPadChunk},
      {"laplace causal left-padded", A::Laplace, true, 3, 100, 40, 40, 100, MaskKind::Left},
      {"relu2 right-padded, two Z and H slices", A::Relu2, false, 3, 100, 200, 130, 100, MaskKind::Right},
      {"relu2 causal chunked strided dropout", A::Relu2, true, 2, 140, 40, 70, 70, MaskKind::Random, 0.1, true},
      {"relu2 chunks of 5, random mask", A::Relu2, false, 2, 20, 8, 3, 5, MaskKind::Random},
      // (laplace: with one key per chunk the softmax's dq, dk are exactly 0, rounding noise on the GPU)
      {"laplace causal chunks of 1, dropout", A::Laplace, true, 2, 7, 4, 2, 1, MaskKind::None, 0.3},
  };
}

}  // namespace

TEST_CASE("cuda attention: float64 kernels match the CPU kernels", "[cuda][attention]") {
  if (test::skip_without_cuda()) return;
  // Both sides compute in double; they differ in summation order and in exp/erf (the CPU's
  // polynomials are within 2 ulp): a few 1e-15, more where a gradient cancels (softmax dS).
  // (A host emulation of the kernels measured 4e-15 and 4e-14.)
  const Tol tol{1e-13, 1e-12};
  for (const Case& cs : cases()) compare_case<double>(cs, tol, cs.name == "softmax plain");
}

TEST_CASE("cuda attention: float32 kernels match the CPU kernels", "[cuda][attention]") {
  if (test::skip_without_cuda()) return;
  // float32 sums of up to Z or H products and C scores in another order, and scores of size ~5
  // through exp (softmax) or erf (laplace): relative errors ~1e-6 for the output, more for
  // gradients that cancel (dS = P (dP - D)). (The host emulation measured 2e-6 and 1.5e-5.)
  const Tol tol{1e-5, 2e-4};
  for (const Case& cs : cases()) compare_case<float>(cs, tol, cs.name == "relu2 causal chunked strided dropout");
}

TEST_CASE("cuda attention: dropout drops the same scores as the CPU", "[cuda][attention]") {
  if (test::skip_without_cuda()) return;
  // v = the identity (H = C = L), softmax with scores of size ~1 (P > 0 everywhere): out = P~ / l,
  // so out == 0 exactly where the score was dropped. The device Philox must draw the CPU's bits:
  // the same pattern.
  const int64_t B = 2, L = 80, Z = 16;
  Case cs{"identity v", A::Softmax, false, B, L, Z, L, L, MaskKind::None, 0.5};
  Host<float> h = make_host<float>(cs);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < L; ++c) h.v[(size_t)((b * L + t) * L + c)] = t == c ? 1.0f : 0.0f;
  const AttentionProblem<float> cp = cpu_problem(cs, h);
  std::vector<float> out_c((size_t)(B * L * L)), lse_c((size_t)(B * L));
  cpu_k::forward(cp, out_c.data(), lse_c.data());
  OnDevice<float> dev(cs, h);
  DeviceBuffer<float> out(out_c.size()), lse(lse_c.size());
  gpu_k::forward(dev.pr, out.p, lse.p, nullptr);
  MG_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> out_g = out.get();
  int64_t dropped = 0, differ = 0;
  for (size_t e = 0; e < out_c.size(); ++e) {
    dropped += out_c[e] == 0.0f;
    differ += (out_c[e] == 0.0f) != (out_g[e] == 0.0f);
  }
  INFO("dropped " << dropped << " of " << out_c.size() << " scores on the CPU; patterns differ at " << differ);
  CHECK(differ == 0);
  // p = 0.5: about half dropped (binomial, n = 12800: 5 sigma is ~280).
  CHECK(std::abs((double)dropped - 0.5 * (double)out_c.size()) < 300);
  CHECK_CLOSE("out", out_g, out_c, 2e-6);
}

TEST_CASE("cuda attention: bad arguments are errors", "[cuda][attention]") {
  if (test::skip_without_cuda()) return;
  Case cs{"errors", A::Softmax, false, 1, 64, 8, 8, 64};
  Host<float> h = make_host<float>(cs);
  OnDevice<float> dev(cs, h);
  DeviceBuffer<float> out(64 * 8), lse(64);
  AttentionProblem<float> pr = dev.pr;
  pr.d.C = 48;  // L = 64 is not NC chunks of 48
  CHECK_THROWS_WITH(gpu_k::forward(pr, out.p, lse.p, nullptr), Catch::Contains("[attention_cuda]"));
  CHECK_THROWS_WITH(gpu_k::forward(dev.pr, out.p, static_cast<float*>(nullptr), nullptr), Catch::Contains("lse"));
  AttentionGrads<float> g;
  DeviceBuffer<float> dq(64 * 8);
  g.dq = dq.p;
  const size_t ws = gpu_k::backward_workspace_bytes(dev.pr, g);
  REQUIRE(ws > 0);  // the softmax's D
  CHECK_THROWS_WITH(gpu_k::backward(dev.pr, out.p, lse.p, dev.dout.p, g, nullptr, 0, nullptr),
                    Catch::Contains("workspace"));
}

#endif  // MEGAGRAD_HAS_CUDA
