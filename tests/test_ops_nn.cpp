// The neural-network ops against naive computations: softmax / log_softmax along any dim,
// cross_entropy with ignore_index and label smoothing, layer_norm, embedding, dropout (mask
// statistics, determinism across seeds and thread counts), float32, gradients and errors.
#include <catch2/catch.hpp>
#include <cmath>
#include "autograd/gradcheck.h"
#include "autograd/gradcheck_cases.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/parallel.h"
#include "core/vec_math.h"
#include "tests/test_util.h"

using namespace megagrad;

namespace {

Tensor rnd(const Shape& s, uint64_t seed, DType dt = DType::Float64, double lo = -3, double hi = 3) {
  Generator g(seed);
  return uniform(s, lo, hi, dt, &g);
}

void require_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    REQUIRE(got[i] == Approx(want[i]).margin(tol).epsilon(tol));
  }
}

// Softmax of a row-major buffer of shape s along dim d, in double.
std::vector<double> naive_softmax(const std::vector<double>& x, const Shape& s, int64_t d, bool log) {
  int64_t O = 1, N = s[(size_t)d], I = 1;
  for (int64_t i = 0; i < d; ++i) O *= s[(size_t)i];
  for (size_t i = (size_t)d + 1; i < s.size(); ++i) I *= s[i];
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i) {
      double m = -INFINITY, z = 0;
      for (int64_t n = 0; n < N; ++n) m = std::max(m, x[(size_t)((o * N + n) * I + i)]);
      for (int64_t n = 0; n < N; ++n) z += std::exp(x[(size_t)((o * N + n) * I + i)] - m);
      for (int64_t n = 0; n < N; ++n) {
        double v = x[(size_t)((o * N + n) * I + i)] - m;
        y[(size_t)((o * N + n) * I + i)] = log ? v - std::log(z) : std::exp(v) / z;
      }
    }
  return y;
}

// torch's cross_entropy (mean over kept rows, label smoothing e) from its definition.
double naive_cross_entropy(const Tensor& logits, const std::vector<int64_t>& t, int64_t ignore, double e) {
  int64_t B = logits.size(0), C = logits.size(1);
  double total = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < B; ++b) {
    if (t[(size_t)b] == ignore) continue;
    double z = 0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(logits.at({b, c}));
    auto logp = [&](int64_t c) { return logits.at({b, c}) - std::log(z); };
    double smooth = 0;
    for (int64_t c = 0; c < C; ++c) smooth += -logp(c);
    total += (1 - e) * -logp(t[(size_t)b]) + e * smooth / (double)C;
    ++count;
  }
  return total / (double)count;
}

}  // namespace

// ---------------------------------------------------------------- exp_fast

TEST_CASE("exp_fast (the nn kernels' vectorisable exp) is within 2 ulp of exp", "[nn]") {
  auto sweep = [](auto zero, double lo, double hi) {
    using T = decltype(zero);
    double worst = 0;
    for (int i = 0; i <= 200000; ++i) {
      T x = (T)(lo + (hi - lo) * i / 200000.0);
      long double ref = std::exp((long double)x);
      double rel = (double)(std::fabs((long double)exp_fast(x) - ref) / ref);
      worst = test::max_or_inf(worst, rel / (double)std::numeric_limits<T>::epsilon());
    }
    return worst;
  };
  CHECK(sweep(0.0f, -87.3, 88.72) < 2.0);  // normal results
  CHECK(sweep(0.0f, -1.0, 1.0) < 2.0);
  CHECK(sweep(0.0, -708.3, 709.78) < 2.0);
  CHECK(sweep(0.0, -1.0, 1.0) < 2.0);
  REQUIRE(exp_fast(0.0f) == 1.0f);
  REQUIRE(exp_fast(0.0) == 1.0);
  REQUIRE(exp_fast(-INFINITY) == 0.0f);
  REQUIRE(exp_fast(-(double)INFINITY) == 0.0);
  REQUIRE(exp_fast(-200.0f) == 0.0f);
  REQUIRE(std::isinf(exp_fast(100.0f)));
  REQUIRE(std::isinf(exp_fast(1000.0)));
  REQUIRE(std::isnan(exp_fast(NAN)));
  REQUIRE(std::isnan(exp_fast((double)NAN)));
}

// ---------------------------------------------------------------- softmax

TEST_CASE("softmax and log_softmax match naive loops along every dim", "[nn]") {
  Shape s{3, 4, 5};
  for (DType dt : {DType::Float64, DType::Float32}) {
    double tol = dt == DType::Float32 ? 1e-5 : 1e-12;
    Tensor x = rnd(s, 1, dt);
    for (int64_t d : {0, 1, 2, -1}) {
      INFO("dim " << d << " " << dtype_name(dt));
      int64_t w = d < 0 ? d + 3 : d;
      Tensor y = softmax(x, d);
      REQUIRE(y.shape() == s);
      REQUIRE(y.dtype() == dt);
      require_close(y.to_vector(), naive_softmax(x.to_vector(), s, w, false), tol);
      require_close(log_softmax(x, d).to_vector(), naive_softmax(x.to_vector(), s, w, true), tol);
      // Sums to 1 along the dim.
      for (double v : sum(y, {d}).to_vector()) REQUIRE(v == Approx(1.0).epsilon(tol));
    }
  }
  // A wide inner dim (more than one column tile) and a non-contiguous input.
  Tensor big = rnd({3, 600}, 2);
  require_close(softmax(big, 0).to_vector(), naive_softmax(big.to_vector(), {3, 600}, 0, false), 1e-12);
  Tensor xt = rnd({5, 4}, 3).t();
  require_close(softmax(xt, -1).to_vector(), naive_softmax(xt.contiguous().to_vector(), {4, 5}, 1, false), 1e-12);
}

TEST_CASE("softmax is stable for large logits", "[nn]") {
  Tensor x = Tensor::from_vector({1000, 1001, 1002, -1000}, {1, 4}, DType::Float32);
  auto y = softmax(x, 1).to_vector();
  auto want = naive_softmax({0, 1, 2, -2000}, {1, 4}, 1, false);
  require_close(y, want, 1e-6);
  auto ly = log_softmax(x, 1).to_vector();
  for (double v : ly) REQUIRE(std::isfinite(v));
}

TEST_CASE("softmax and log_softmax gradients match their closed forms", "[nn]") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    double tol = dt == DType::Float32 ? 1e-5 : 1e-12;
    for (int64_t d : {0, 1}) {
      Tensor x = rnd({3, 4}, 4, dt).requires_grad_();
      Tensor g = rnd({3, 4}, 5, dt);
      softmax(x, d).backward(g);
      auto y = naive_softmax(x.detach().to_vector(), {3, 4}, d, false);
      auto gv = g.to_vector();
      // dx_j = y_j (g_j - sum_k g_k y_k), sums along d.
      std::vector<double> want(12);
      for (int64_t r = 0; r < 3; ++r)
        for (int64_t c = 0; c < 4; ++c) {
          double s = 0;
          for (int64_t k = 0; k < (d == 0 ? 3 : 4); ++k) {
            size_t j = d == 0 ? (size_t)(k * 4 + c) : (size_t)(r * 4 + k);
            s += gv[j] * y[j];
          }
          size_t i = (size_t)(r * 4 + c);
          want[i] = y[i] * (gv[i] - s);
        }
      require_close(x.grad().to_vector(), want, tol);

      Tensor x2 = rnd({3, 4}, 6, dt).requires_grad_();
      log_softmax(x2, d).backward(g);
      auto p = naive_softmax(x2.detach().to_vector(), {3, 4}, d, false);
      for (int64_t r = 0; r < 3; ++r)
        for (int64_t c = 0; c < 4; ++c) {
          double s = 0;
          for (int64_t k = 0; k < (d == 0 ? 3 : 4); ++k) s += gv[d == 0 ? (size_t)(k * 4 + c) : (size_t)(r * 4 + k)];
          size_t i = (size_t)(r * 4 + c);
          want[i] = gv[i] - p[i] * s;
        }
      require_close(x2.grad().to_vector(), want, tol);
    }
  }
}

TEST_CASE("softmax errors", "[nn]") {
  REQUIRE_THROWS_WITH(softmax(rnd({3, 4}, 1), 2), Catch::Contains("[softmax]") && Catch::Contains("dim 2"));
  REQUIRE_THROWS_WITH(log_softmax(Tensor::zeros({3}, DType::Int64), 0),
                      Catch::Contains("[log_softmax]") && Catch::Contains("int64"));
}

// ---------------------------------------------------------------- cross_entropy

TEST_CASE("cross_entropy matches torch's definition", "[nn]") {
  struct Case { std::vector<int64_t> t; int64_t ignore; double e; };
  for (auto [t, ignore, e] : {Case{{0, 4, 2, 2, 1}, -100, 0.0}, Case{{0, -100, 2, -100, 1}, -100, 0.0},
                              Case{{3, 1, 0, 4, 4}, -100, 0.1}, Case{{3, 1, 3, 4, 3}, 3, 0.25},
                              Case{{1, 2, 0, 4, 3}, -1, 1.0}}) {
    for (DType dt : {DType::Float64, DType::Float32}) {
      INFO("ignore " << ignore << " smoothing " << e << " " << dtype_name(dt));
      Tensor logits = rnd({5, 5}, 7, dt);
      Tensor target = Tensor::from_vector(t, {5});
      Tensor loss = cross_entropy(logits, target, ignore, e);
      REQUIRE(loss.dim() == 0);
      REQUIRE(loss.dtype() == dt);
      REQUIRE(loss.item() == Approx(naive_cross_entropy(logits, t, ignore, e)).epsilon(dt == DType::Float32 ? 1e-5 : 1e-12));
    }
  }
  // Large logits stay finite.
  Tensor big = Tensor::from_vector({1000, -1000, 500, 0, 0, 2000}, {2, 3}, DType::Float32);
  double l = cross_entropy(big, Tensor::from_vector(std::vector<int64_t>{0, 2}, {2})).item();
  REQUIRE(l == Approx(0.0).margin(1e-6));
}

TEST_CASE("cross_entropy gradient: (softmax - smoothed one-hot) / kept rows", "[nn]") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    double tol = dt == DType::Float32 ? 1e-6 : 1e-12;
    Tensor logits = rnd({4, 3}, 8, dt).requires_grad_();
    std::vector<int64_t> t{2, -100, 0, 1};
    double e = 0.3;
    Tensor loss = cross_entropy(logits, Tensor::from_vector(t, {4}), -100, e);
    mul_scalar(loss, 2.0).backward();
    auto x = logits.detach().to_vector();
    std::vector<double> want(12, 0.0);
    for (int64_t b = 0; b < 4; ++b) {
      if (t[(size_t)b] == -100) continue;
      auto p = naive_softmax(std::vector<double>(x.begin() + b * 3, x.begin() + b * 3 + 3), {3}, 0, false);
      for (int64_t c = 0; c < 3; ++c)
        want[(size_t)(b * 3 + c)] = 2.0 / 3.0 * (p[(size_t)c] - (1 - e) * (c == t[(size_t)b]) - e / 3);
    }
    require_close(logits.grad().to_vector(), want, tol);
  }
}

TEST_CASE("cross_entropy with every target ignored is NaN with a zero gradient, as torch", "[nn]") {
  Tensor logits = rnd({2, 3}, 9).requires_grad_();
  Tensor loss = cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{-100, -100}, {2}));
  REQUIRE(std::isnan(loss.item()));
  loss.backward();
  for (double v : logits.grad().to_vector()) REQUIRE(v == 0.0);
}

TEST_CASE("cross_entropy errors", "[nn]") {
  Tensor logits = rnd({3, 5}, 10);
  REQUIRE_THROWS_WITH(cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{0, 7, 1}, {3})),
                      Catch::Contains("[cross_entropy]") && Catch::Contains("target 7") &&
                          Catch::Contains("position 1") && Catch::Contains("5 classes"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{0, -1, 1}, {3})),
                      Catch::Contains("target -1") && Catch::Contains("5 classes"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{0, 1}, {2})),
                      Catch::Contains("[cross_entropy]") && Catch::Contains("(2)") && Catch::Contains("(3,5)"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, Tensor::from_vector(std::vector<double>{0.0, 1.0, 2.0}, {3})),
                      Catch::Contains("[cross_entropy]") && Catch::Contains("int64"));
  REQUIRE_THROWS_WITH(cross_entropy(rnd({3}, 1), Tensor::from_vector(std::vector<int64_t>{0, 1, 2}, {3})),
                      Catch::Contains("[cross_entropy]") && Catch::Contains("(N,C)"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{0, 1, 2}, {3}), -100, 1.5),
                      Catch::Contains("label_smoothing"));
}

// ---------------------------------------------------------------- layer_norm

TEST_CASE("layer_norm matches a naive mean / biased variance", "[nn]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    double tol = dt == DType::Float32 ? 2e-5 : 1e-10;
    Tensor x = rnd({2, 3, 7}, 11, dt), w = rnd({7}, 12, dt), b = rnd({7}, 13, dt);
    for (int affine = 0; affine < 4; ++affine) {
      Tensor wt = affine & 1 ? w : Tensor(), bt = affine & 2 ? b : Tensor();
      INFO("affine " << affine << " " << dtype_name(dt));
      Tensor y = layer_norm(x, wt, bt, 1e-5);
      REQUIRE(y.shape() == x.shape());
      auto xv = x.to_vector();
      std::vector<double> want(xv.size());
      for (int64_t r = 0; r < 6; ++r) {
        double m = 0, v = 0;
        for (int64_t d = 0; d < 7; ++d) m += xv[(size_t)(r * 7 + d)] / 7;
        for (int64_t d = 0; d < 7; ++d) v += std::pow(xv[(size_t)(r * 7 + d)] - m, 2) / 7;
        for (int64_t d = 0; d < 7; ++d) {
          double h = (xv[(size_t)(r * 7 + d)] - m) / std::sqrt(v + 1e-5);
          if (wt.defined()) h *= w.at({d});
          if (bt.defined()) h += b.at({d});
          want[(size_t)(r * 7 + d)] = h;
        }
      }
      require_close(y.to_vector(), want, tol);
    }
  }
  // Long rows of large offset in float32: the two-pass variance keeps them accurate.
  Tensor x = add_scalar(rnd({2, 4096}, 14, DType::Float32), 1000.0);
  Tensor y = layer_norm(x, Tensor(), Tensor());
  for (double v : mean(y, {1}).to_vector()) REQUIRE(v == Approx(0.0).margin(1e-4));
  for (double v : var(y, {1}, false, 0).to_vector()) REQUIRE(v == Approx(1.0).epsilon(1e-3));
}

TEST_CASE("layer_norm weight and bias gradients are column sums", "[nn]") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    double tol = dt == DType::Float32 ? 1e-4 : 1e-10;
    Tensor x = rnd({5, 6}, 15, dt).requires_grad_();
    Tensor w = rnd({6}, 16, dt).requires_grad_(), b = rnd({6}, 17, dt).requires_grad_();
    Tensor g = rnd({5, 6}, 18, dt);
    // eps = 0 so that mean(xhat^2) == 1 exactly, which the dx check below relies on.
    layer_norm(x, w, b, 0.0).backward(g);
    Tensor xhat = layer_norm(x.detach(), Tensor(), Tensor(), 0.0);
    std::vector<double> dw(6, 0.0), db(6, 0.0);
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t d = 0; d < 6; ++d) {
        dw[(size_t)d] += g.at({r, d}) * xhat.at({r, d});
        db[(size_t)d] += g.at({r, d});
      }
    require_close(w.grad().to_vector(), dw, tol);
    require_close(b.grad().to_vector(), db, tol);
    // dx: the gradient of the row-wise normalisation is orthogonal to 1 and to xhat per row.
    for (int64_t r = 0; r < 5; ++r) {
      double s1 = 0, s2 = 0;
      for (int64_t d = 0; d < 6; ++d) {
        s1 += x.grad().at({r, d});
        s2 += x.grad().at({r, d}) * xhat.at({r, d});
      }
      REQUIRE(s1 == Approx(0.0).margin(tol));
      REQUIRE(s2 == Approx(0.0).margin(tol));
    }
  }
}

TEST_CASE("layer_norm errors", "[nn]") {
  REQUIRE_THROWS_WITH(layer_norm(rnd({3, 4}, 1), rnd({5}, 2), Tensor()),
                      Catch::Contains("[layer_norm]") && Catch::Contains("weight (5)") && Catch::Contains("(3,4)"));
  REQUIRE_THROWS_WITH(layer_norm(rnd({3, 4}, 1), Tensor(), rnd({4}, 2, DType::Float32)),
                      Catch::Contains("[layer_norm]") && Catch::Contains("float32"));
}

// ---------------------------------------------------------------- embedding

TEST_CASE("embedding gathers rows and scatter-adds gradients", "[nn]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    Tensor w = rnd({6, 4}, 19, dt).requires_grad_();
    std::vector<int64_t> idx{5, 1, 5, 0, 5, 2};
    Tensor y = embedding(w, Tensor::from_vector(idx, {2, 3}));
    REQUIRE(y.shape() == Shape{2, 3, 4});
    for (int64_t l = 0; l < 6; ++l)
      for (int64_t d = 0; d < 4; ++d) REQUIRE(y.at({l / 3, l % 3, d}) == w.at({idx[(size_t)l], d}));
    Tensor g = rnd({2, 3, 4}, 20, dt);
    y.backward(g);
    std::vector<double> want(24, 0.0);
    for (int64_t l = 0; l < 6; ++l)
      for (int64_t d = 0; d < 4; ++d) want[(size_t)(idx[(size_t)l] * 4 + d)] += g.at({l / 3, l % 3, d});
    require_close(w.grad().to_vector(), want, 1e-6);
  }
  // A transposed table is read in place.
  Tensor wt = rnd({4, 6}, 21).t();
  Tensor y = embedding(wt, Tensor::from_vector(std::vector<int64_t>{3}, {1}));
  for (int64_t d = 0; d < 4; ++d) REQUIRE(y.at({0, d}) == wt.at({3, d}));
}

TEST_CASE("embedding errors", "[nn]") {
  Tensor w = rnd({10, 4}, 22);
  REQUIRE_THROWS_WITH(embedding(w, Tensor::from_vector(std::vector<int64_t>{1, 12}, {2})),
                      Catch::Contains("[embedding]") && Catch::Contains("index 12") && Catch::Contains("(10,4)"));
  REQUIRE_THROWS_WITH(embedding(w, Tensor::from_vector(std::vector<int64_t>{-1}, {1})),
                      Catch::Contains("[embedding]") && Catch::Contains("index -1"));
  REQUIRE_THROWS_WITH(embedding(w, Tensor::from_vector(std::vector<double>{1.0}, {1})),
                      Catch::Contains("[embedding]") && Catch::Contains("int64"));
}

// ---------------------------------------------------------------- dropout

TEST_CASE("dropout keeps about 1-p of the elements, scaled by 1/(1-p)", "[nn]") {
  for (double p : {0.1, 0.5, 0.9}) {
    Generator gen(42);
    Tensor x = Tensor::ones({200, 500}, DType::Float32);
    auto y = dropout(x, p, true, &gen).to_vector();
    int64_t kept = 0;
    for (double v : y) {
      if (v != 0) {
        REQUIRE(v == Approx(1.0 / (1.0 - p)).epsilon(1e-6));
        ++kept;
      }
    }
    double frac = (double)kept / (double)y.size();
    // 100k Bernoulli draws: the standard deviation of the fraction is < 0.0016.
    REQUIRE(frac == Approx(1.0 - p).margin(0.01));
    REQUIRE(gen.offset() == 100000);
  }
}

TEST_CASE("dropout mask follows (seed, offset), not the thread count", "[nn]") {
  Tensor x = rnd({300, 400}, 23, DType::Float32);
  auto run = [&](uint64_t seed) {
    Generator gen(seed);
    return dropout(x, 0.3, true, &gen).to_vector();
  };
  REQUIRE(run(5) == run(5));
  REQUIRE(run(5) != run(6));
  int prev = get_num_threads();
  set_num_threads(1);
  auto one = run(7);
  set_num_threads(2);
  auto two = run(7);
  set_num_threads(prev);
  REQUIRE(one == two);
  // Element i is kept iff uniform_at(seed, first + i) >= p, with first from the generator.
  Generator gen(9);
  gen.advance(1000);
  auto y = dropout(x, 0.3, true, &gen).to_vector();
  auto xv = x.to_vector();
  for (size_t i = 0; i < 2000; ++i) {
    bool keep = uniform_at(9, 1000 + i, 0.0, 1.0) >= 0.3;
    REQUIRE((y[i] != 0 || xv[i] == 0) == keep);
  }
  // Consecutive calls advance the generator: different masks.
  Generator g2(11);
  REQUIRE(dropout(x, 0.3, true, &g2).to_vector() != dropout(x, 0.3, true, &g2).to_vector());
}

TEST_CASE("dropout backward uses the forward's mask; identity when off", "[nn]") {
  Tensor x = rnd({50, 40}, 24).requires_grad_();
  Generator gen(3);
  Tensor y = dropout(x, 0.25, true, &gen);
  Tensor g = rnd({50, 40}, 25);
  y.backward(g);
  auto yv = y.to_vector(), xv = x.detach().to_vector(), gv = g.to_vector(), dx = x.grad().to_vector();
  for (size_t i = 0; i < yv.size(); ++i) {
    bool kept = yv[i] != 0;
    REQUIRE(dx[i] == Approx(kept ? gv[i] / 0.75 : 0.0));
    if (kept) REQUIRE(yv[i] == Approx(xv[i] / 0.75));
  }
  // Identity (the same tensor, no node) when not training or p == 0; the generator is untouched.
  Generator g3(4);
  REQUIRE(dropout(x, 0.5, false, &g3).same(x));
  REQUIRE(dropout(x, 0.0, true, &g3).same(x));
  REQUIRE(g3.offset() == 0);
}

TEST_CASE("dropout errors", "[nn]") {
  Tensor x = rnd({3}, 1);
  REQUIRE_THROWS_WITH(dropout(x, 1.0), Catch::Contains("[dropout]") && Catch::Contains("[0, 1)") && Catch::Contains("1"));
  REQUIRE_THROWS_WITH(dropout(x, -0.1), Catch::Contains("[dropout]") && Catch::Contains("-0.1"));
  REQUIRE_THROWS_WITH(dropout(Tensor::zeros({3}, DType::Int64), 0.5), Catch::Contains("[dropout]") && Catch::Contains("int64"));
}

// ---------------------------------------------------------------- gradcheck

TEST_CASE("nn gradcheck cases pass", "[nn]") {
  std::vector<GradcheckCase> cases;
  add_nn_cases(cases);
  for (const char* op : {"softmax", "log_softmax", "cross_entropy", "layer_norm", "embedding", "dropout"}) {
    bool found = false;
    for (const auto& c : cases) found = found || c.op == op;
    INFO(op);
    REQUIRE(found);
  }
  for (const auto& c : cases) {
    auto r = run_gradcheck_case(c);
    INFO(c.op << " / " << c.label << ": " << r.report());
    CHECK(r.passed);
  }
}
