// Issue 11, part 4: no host round trips inside an op on a GPU tensor.
//  - The CPU keeps its eager checks: a bad index, target or padding mask fails at the op itself
//    (these run everywhere).
//  - On a GPU the same checks run on the device and are reported at the next synchronisation
//    (backends/cuda/deferred_check.h, README "Errors reported late"): the op returns, and the
//    error, with the op's name and the CPU's wording, comes at .item() / .to_vector() /
//    cuda_synchronize; the device stays usable afterwards.
//  - The EMA coefficient and chain tables and the rotary bias table and its backward, built on
//    the device by kernels sharing the host's formulas, agree with the host's (to a stated ulp
//    tolerance: CUDA's exp/pow/cos/sin are not glibc's), and the ops agree across devices.
// Without a device the [cuda] cases are visible skips.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>
#include "autograd/ops.h"
#include "core/rng.h"
#include "mega/attention/attention.h"
#include "tests/cuda_test_util.h"

using namespace megagrad;
using Catch::Matchers::Contains;

namespace {

Tensor idx(std::vector<int64_t> v, Shape s) { return Tensor::from_vector(v, s); }

}  // namespace

TEST_CASE("sync: bad indices, targets and masks of CPU tensors still fail at the op", "[sync]") {
  Tensor w = Tensor::ones({5, 2});
  REQUIRE_THROWS_WITH(embedding(w, idx({0, 7}, {2})), Contains("[embedding]") && Contains("index 7 at position 1") &&
                                                          Contains("5 rows"));
  REQUIRE_THROWS_WITH(cross_entropy(w, idx({1, 0, 9, 0, 0}, {5})),
                      Contains("[cross_entropy]") && Contains("target 9 at position 2"));
  REQUIRE_THROWS_WITH(gather(w, 1, idx({0, 2}, {1, 2})),
                      Contains("[gather]") && Contains("index 2 out of range for dim 1 of size 2"));
  REQUIRE_THROWS_WITH(index_select(w, 0, idx({4, 5}, {2})),
                      Contains("[index_select]") && Contains("index 5 out of range for dim 0 of size 5"));
  Tensor q = Tensor::ones({2, 4, 2}, DType::Float64);
  Tensor mask = Tensor::zeros({2, 4}, DType::Float64);
  mask.narrow(0, 1, 1).narrow(1, 2, 1).fill_(0.5);
  RelPosBias bias;
  bias.weight = Tensor::zeros({7}, DType::Float64);
  AttentionOptions o;
  o.max_positions = 4;
  REQUIRE_THROWS_WITH(attention(q, q, q, mask, bias, o), Contains("[attention]") &&
                                                            Contains("padding_mask must hold 0 or 1") &&
                                                            Contains("found 0.5 at (1,2)"));
}

#if MEGAGRAD_HAS_CUDA
#include "backends/cuda/allocator.h"
#include "backends/cuda/deferred_check.h"
#include "backends/cuda/stream.h"
#include "mega/attention/rotary_bias.h"
#include "mega/attention/rotary_bias_cuda.h"
#include "mega/ema/ema.h"
#include "mega/ema/ema_coeffs.h"
#include "mega/ema/ema_cuda.h"

namespace {

// Relative error (to the largest entry) allowed between a device table and the host's. float64:
// the device's exp/pow/cos/sin are within 1-2 ulp of glibc's, amplified at most by q^K (K ulp)
// or summed over Z/2 terms; 1e-12 still means "the same formula", not "close enough". float32:
// both round the same double to float, so they differ by at most 1 ulp of float, when the two
// doubles straddle a rounding point.
double table_tol(DType dt) { return dt == DType::Float64 ? 1e-12 : 2.5e-7; }

}  // namespace

TEST_CASE("sync: a bad index on a GPU is reported at the next synchronisation", "[cuda][sync]") {
  if (test::skip_without_cuda()) return;
  Generator g(3);
  Tensor w = uniform({5, 3}, -1, 1, DType::Float32, &g).cuda();
  // The op returns; the error comes with the first read, worded as on the CPU.
  Tensor y;
  REQUIRE_NOTHROW(y = embedding(w, idx({0, 7, 1}, {3}).cuda()));
  REQUIRE_THROWS_WITH(y.to_vector(), Contains("[embedding]") && Contains("index 7 at position 1") &&
                                         Contains("5 rows") && Contains("next synchronisation"));
  // Raised once, and the device stays usable: a good lookup afterwards is exact.
  REQUIRE_NOTHROW(y.to_vector());
  Tensor good = embedding(w, idx({4, 0}, {2}).cuda());
  REQUIRE(test::max_abs_diff(good, embedding(w.cpu(), idx({4, 0}, {2}))) == 0);

  Tensor x = uniform({4, 5}, -1, 1, DType::Float64, &g).cuda();
  Tensor loss = cross_entropy(x, idx({1, -1, 9, 0}, {4}).cuda(), -1);
  REQUIRE_THROWS_WITH(loss.item(), Contains("[cross_entropy]") && Contains("target 9 at position 2") &&
                                       Contains("5 classes"));
  Tensor gth = gather(x, 1, idx({0, 5, 1, 2}, {2, 2}).cuda());
  REQUIRE_THROWS_WITH(gth.cpu(), Contains("[gather]") && Contains("index 5 out of range for dim 1 of size 5"));
  Tensor sel = index_select(x, 0, idx({3, -2}, {2}).cuda());
  REQUIRE_THROWS_WITH(cuda_synchronize(0),
                      Contains("[index_select]") && Contains("index -2 out of range for dim 0 of size 4"));
  (void)sel;

  // Two bad ops before one synchronisation: the first in stream order is reported.
  Tensor a = embedding(w, idx({6}, {1}).cuda());
  Tensor b = gather(x, 1, idx({0, 9, 1, 2}, {2, 2}).cuda());
  REQUIRE_THROWS_WITH(b.to_vector(), Contains("[embedding]") && Contains("index 6 at position 0"));
  REQUIRE_NOTHROW(a.to_vector());
}

TEST_CASE("sync: checks never synchronised are flushed once their record is full", "[cuda][sync]") {
  if (test::skip_without_cuda()) return;
  Tensor w = Tensor::ones({5, 3}, DType::Float32, Device::cuda(0));
  Tensor good = idx({1, 2}, {2}).cuda();
  // A failure, then only good checks and no synchronisation: the check that finds the record
  // full synchronises and raises the pending failure from inside that op.
  embedding(w, idx({9}, {1}).cuda());
  auto queue = [&] {
    for (size_t i = 0; i < cuda::kMaxPendingChecks + 1; ++i) embedding(w, good);
  };
  REQUIRE_THROWS_WITH(queue(), Contains("[embedding]") && Contains("index 9 at position 0"));
  // Without failures it only bounds the record: nothing is raised.
  REQUIRE_NOTHROW(queue());
  REQUIRE_NOTHROW(cuda_synchronize(0));
}

TEST_CASE("sync: cross_entropy keeps its count on the device (ignore_index, all ignored)", "[cuda][sync]") {
  if (test::skip_without_cuda()) return;
  Generator g(4);
  for (DType dt : {DType::Float32, DType::Float64}) {
    Tensor x = uniform({6, 5}, -2, 2, dt, &g);
    Tensor t = idx({1, -1, 4, -1, 0, 2}, {6});
    Tensor xg = x.cuda().requires_grad_();
    Tensor xc = x.clone().requires_grad_();
    Tensor lg = cross_entropy(xg, t.cuda(), -1, 0.1), lc = cross_entropy(xc, t, -1, 0.1);
    REQUIRE(std::abs(lg.item() - lc.item()) <= (dt == DType::Float64 ? 1e-12 : 1e-5));
    lg.backward();
    lc.backward();
    REQUIRE(test::max_abs_diff(xg.grad(), xc.grad()) <= (dt == DType::Float64 ? 1e-13 : 1e-6));
    // Every row ignored: NaN, as on the CPU, and a zero gradient.
    Tensor all = idx({-1, -1, -1, -1, -1, -1}, {6});
    Tensor xg2 = x.cuda().requires_grad_();
    Tensor ln = cross_entropy(xg2, all.cuda(), -1);
    REQUIRE(std::isnan(ln.item()));
    ln.backward();
    REQUIRE(test::max_abs_diff(xg2.grad(), Tensor::zeros({6, 5}, dt)) == 0);
  }
}

TEST_CASE("sync: a padding mask that is not 0/1 on a GPU is reported at the next synchronisation", "[cuda][sync]") {
  if (test::skip_without_cuda()) return;
  Generator g(5);
  Tensor q = uniform({2, 4, 2}, -1, 1, DType::Float32, &g).cuda();
  Tensor mask = Tensor::zeros({2, 4}, DType::Float32);
  mask.narrow(0, 1, 1).narrow(1, 2, 1).fill_(0.5);
  RelPosBias bias;
  bias.weight = Tensor::zeros({7}, DType::Float32).cuda();
  AttentionOptions o;
  o.max_positions = 4;
  Tensor out;
  REQUIRE_NOTHROW(out = attention(q, q, q, mask.cuda(), bias, o));
  REQUIRE_THROWS_WITH(out.to_vector(), Contains("[attention]") && Contains("padding_mask must hold 0 or 1") &&
                                           Contains("found 0.5 at (1,2)"));
  mask.narrow(0, 1, 1).narrow(1, 2, 1).fill_(1.0);
  REQUIRE_NOTHROW(attention(q, q, q, mask.cuda(), bias, o).to_vector());
}

TEST_CASE("sync: the EMA tables built on the device equal the host's", "[cuda][sync]") {
  if (test::skip_without_cuda()) return;
  Generator g(6);
  for (DType dt : {DType::Float32, DType::Float64})
    for (bool bidir : {false, true})
      for (int64_t K : {int64_t(7), int64_t(16)}) {  // L = 16: K = 7 truncated, K = 16 not
        EmaShape s{2, 16, 70, 3, K, bidir ? 2 : 1};  // D = 70: Dp = 128, padded columns
        const int64_t E = s.E(), N = s.N, Dp = s.Dp(), NDp = N * Dp;
        const double scale = std::sqrt(1.0 / (double)N);
        Tensor delta = uniform({E, N, 1}, -2, 2, dt, &g), alpha = uniform({E, N, 1}, -2, 2, dt, &g);
        Tensor beta = uniform({E, N, 1}, -1, 1, dt, &g), gamma = uniform({E, N}, -1, 1, dt, &g);
        Tensor sums = uniform({4, s.ndirs, N, Dp}, -3, 3, DType::Float64, &g);
        Tensor dg = delta.cuda(), ag = alpha.cuda(), bg = beta.cuda(), gg = gamma.cuda(), sg = sums.cuda();
        Tensor coeffs = Tensor::empty({s.ndirs, 4, NDp}, dt, Device::cuda(0));
        Tensor gd = Tensor::empty({E, N, 1}, dt, Device::cuda(0)), ga = Tensor::empty({E, N, 1}, dt, Device::cuda(0)),
               gb = Tensor::empty({E, N, 1}, dt, Device::cuda(0)), gc = Tensor::empty({E, N}, dt, Device::cuda(0));
        auto launch = [&]<typename T>() {
          cudaStream_t st = cuda_stream(0);
          ema_cuda::make_coeffs<T>(dg.device_data_ptr<T>(), ag.device_data_ptr<T>(), bg.device_data_ptr<T>(),
                                   gg.device_data_ptr<T>(), s, scale, coeffs.device_data_ptr<T>(), st);
          ema_cuda::chain_param_grads<T>(dg.device_data_ptr<T>(), ag.device_data_ptr<T>(), bg.device_data_ptr<T>(),
                                         gg.device_data_ptr<T>(), sg.device_data_ptr<double>(), s, scale,
                                         gd.device_data_ptr<T>(), ga.device_data_ptr<T>(), gb.device_data_ptr<T>(),
                                         gc.device_data_ptr<T>(), st);
        };
        if (dt == DType::Float32) launch.template operator()<float>();
        else launch.template operator()<double>();
        // The host's tables, with the same formulas, rounded to dt as ema.cpp does.
        const auto d = delta.to_vector(), a = alpha.to_vector(), b = beta.to_vector(), c = gamma.to_vector(),
                   h = sums.to_vector();
        std::vector<double> want((size_t)(s.ndirs * 4 * NDp), 0.0), wd(d.size()), wa(d.size()), wb(d.size()),
            wc(d.size());
        auto round = [&](double v) { return dt == DType::Float32 ? (double)(float)v : v; };
        for (int dir = 0; dir < s.ndirs; ++dir)
          for (int64_t ch = 0; ch < s.D; ++ch)
            for (int64_t n = 0; n < N; ++n) {
              const size_t e = (size_t)((dir * s.D + ch) * N + n), j = (size_t)(dir * 4 * NDp + n * Dp + ch);
              const EmaCoeffValue v = ema_coeff(d[e], a[e], b[e], c[e], scale, s.truncated(), K);
              want[j] = round(v.q), want[j + NDp] = round(v.a), want[j + 2 * NDp] = round(v.c),
              want[j + 3 * NDp] = round(v.Q);
              auto sum = [&](int kind) { return h[(size_t)(((kind * s.ndirs + dir) * N + n) * Dp + ch)]; };
              const EmaParamGrads pg = ema_chain(d[e], a[e], b[e], c[e], scale, s.truncated(), K, sum(0), sum(1),
                                                 sum(2), sum(3));
              wd[e] = round(pg.delta), wa[e] = round(pg.alpha), wb[e] = round(pg.beta), wc[e] = round(pg.gamma);
            }
        INFO(dtype_name(dt) << (bidir ? " bidirectional" : "") << " K = " << K);
        REQUIRE(test::max_rel_diff(coeffs.to_vector(), want) <= table_tol(dt));
        REQUIRE(test::max_rel_diff(gd.to_vector(), wd) <= table_tol(dt));
        REQUIRE(test::max_rel_diff(ga.to_vector(), wa) <= table_tol(dt));
        REQUIRE(test::max_rel_diff(gb.to_vector(), wb) <= table_tol(dt));
        REQUIRE(test::max_rel_diff(gc.to_vector(), wc) <= table_tol(dt));
      }
}

TEST_CASE("sync: the rotary bias table and its backward built on the device equal the host's", "[cuda][sync]") {
  if (test::skip_without_cuda()) return;
  Generator g(7);
  for (DType dt : {DType::Float32, DType::Float64})
    for (int64_t C : {int64_t(1), int64_t(5), int64_t(64)}) {
      const int64_t Z = 16;
      Tensor alpha = uniform({1, Z}, -1, 1, dt, &g), beta = uniform({1, Z}, -1, 1, dt, &g);
      std::vector<double> drel = uniform({2 * C - 1}, -1, 1, DType::Float64, &g).to_vector();
      Tensor ag = alpha.cuda(), bg = beta.cuda(), drg = Tensor::from_vector(drel, {2 * C - 1}, DType::Float64).cuda();
      Tensor rel = Tensor::empty({2 * C - 1}, dt, Device::cuda(0));
      Tensor da = Tensor::empty({1, Z}, dt, Device::cuda(0)), db = Tensor::empty({1, Z}, dt, Device::cuda(0));
      auto launch = [&]<typename T>() {
        rotary_cuda::bias_table<T>(ag.device_data_ptr<T>(), bg.device_data_ptr<T>(), Z, C, rel.device_data_ptr<T>(),
                                   cuda_stream(0));
        rotary_cuda::bias_table_backward<T>(ag.device_data_ptr<T>(), bg.device_data_ptr<T>(),
                                            drg.device_data_ptr<double>(), Z, C, da.device_data_ptr<T>(),
                                            db.device_data_ptr<T>(), cuda_stream(0));
      };
      if (dt == DType::Float32) launch.template operator()<float>();
      else launch.template operator()<double>();
      auto rounded = [&](std::vector<double> v) {
        if (dt == DType::Float32)
          for (double& x : v) x = (double)(float)x;
        return v;
      };
      auto [wa, wb] = rotary_bias_table_backward(alpha, beta, drel, C);
      INFO(dtype_name(dt) << " C = " << C);
      REQUIRE(test::max_rel_diff(rel.to_vector(), rounded(rotary_bias_table(alpha, beta, C))) <= table_tol(dt));
      REQUIRE(test::max_rel_diff(da.to_vector(), rounded(wa)) <= table_tol(dt));
      REQUIRE(test::max_rel_diff(db.to_vector(), rounded(wb)) <= table_tol(dt));
    }
}

TEST_CASE("sync: the attention and EMA ops with device-built tables match the CPU, gradients too", "[cuda][sync]") {
  if (test::skip_without_cuda()) return;
  Generator g(8);
  const DType dt = DType::Float64;
  const int64_t B = 2, L = 8, Z = 4, H = 3;
  Tensor q = uniform({B, L, Z}, -1, 1, dt, &g), k = uniform({B, L, Z}, -1, 1, dt, &g),
         v = uniform({B, L, H}, -1, 1, dt, &g);
  Tensor mask = Tensor::zeros({B, L}, dt);
  mask.narrow(0, 1, 1).narrow(1, 6, 2).fill_(1.0);
  for (bool rotary : {false, true}) {
    AttentionOptions o;
    o.chunk_size = 4;  // M = 4: the table is the middle slice of the weight
    auto params = [&](Device dev) {
      RelPosBias b;
      Generator pg(9);
      if (rotary) {
        b.kind = RelPosBias::Kind::Rotary;
        b.alpha = uniform({1, Z}, -1, 1, dt, &pg).to(dev).requires_grad_();
        b.beta = uniform({1, Z}, -1, 1, dt, &pg).to(dev).requires_grad_();
      } else {
        b.weight = uniform({7}, -1, 1, dt, &pg).to(dev).requires_grad_();
      }
      return b;
    };
    RelPosBias bc = params(Device::cpu()), bg = params(Device::cuda(0));
    Tensor oc = attention(q, k, v, mask, bc, o), og = attention(q.cuda(), k.cuda(), v.cuda(), mask.cuda(), bg, o);
    INFO((rotary ? "rotary" : "simple"));
    REQUIRE(test::max_rel_diff(og, oc) <= 1e-10);  // as test_cuda_training.cpp
    sum(mul(oc, oc)).backward();
    sum(mul(og, og)).backward();
    if (rotary) {
      REQUIRE(test::max_rel_diff(bg.alpha.grad(), bc.alpha.grad()) <= 1e-9);
      REQUIRE(test::max_rel_diff(bg.beta.grad(), bc.beta.grad()) <= 1e-9);
    } else {
      REQUIRE(test::max_rel_diff(bg.weight.grad(), bc.weight.grad()) <= 1e-9);
    }
  }
  // EMA: bidirectional and truncated, so every table entry and chain term is used.
  const int64_t D = 5, N = 3;
  EmaOptions eo;
  eo.bidirectional = true;
  eo.truncation = 5;
  auto ema_params = [&](Device dev) {
    Generator pg(10);
    EmaParams p{uniform({2 * D, N, 1}, -1, 1, dt, &pg), uniform({2 * D, N, 1}, -1, 1, dt, &pg),
                uniform({2 * D, N, 1}, -1, 1, dt, &pg), uniform({2 * D, N}, -1, 1, dt, &pg),
                uniform({D}, -1, 1, dt, &pg)};
    for (Tensor* t : {&p.delta, &p.alpha, &p.beta, &p.gamma, &p.omega}) *t = t->to(dev).requires_grad_();
    return p;
  };
  Tensor x = uniform({B, L, D}, -1, 1, dt, &g);
  EmaParams pc = ema_params(Device::cpu()), pgpu = ema_params(Device::cuda(0));
  Tensor yc = ema(x, mask, pc, eo), yg = ema(x.cuda(), mask.cuda(), pgpu, eo);
  REQUIRE(test::max_rel_diff(yg, yc) <= 1e-10);
  sum(mul(yc, yc)).backward();
  sum(mul(yg, yg)).backward();
  REQUIRE(test::max_rel_diff(pgpu.delta.grad(), pc.delta.grad()) <= 1e-9);
  REQUIRE(test::max_rel_diff(pgpu.alpha.grad(), pc.alpha.grad()) <= 1e-9);
  REQUIRE(test::max_rel_diff(pgpu.beta.grad(), pc.beta.grad()) <= 1e-9);
  REQUIRE(test::max_rel_diff(pgpu.gamma.grad(), pc.gamma.grad()) <= 1e-9);
}

#else

TEST_CASE("sync: device-side checks and device-built tables", "[cuda][sync]") {
  megagrad::test::skip("megagrad was built without CUDA");
}

#endif
