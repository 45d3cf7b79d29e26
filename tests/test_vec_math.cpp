// core/vec_math.h: the vectorisable exp_fast and erf_fast against libm (std::exp, std::erf) over
// sweeps of millions of points covering every binade they use, plus the special values; and the
// erf and gelu ops, which use erf_fast, against formulas written with std::erf. Also the attention's
// vectorised dropout rows (an inline Philox) against the library's uniform_at draws.
// Errors are in ulps of the result type at the reference value (for float, the reference is the
// double-precision libm result, exact at float's resolution).
#include <catch2/catch.hpp>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>
#include "autograd/ops.h"
#include "core/tensor.h"
#include "core/vec_math.h"
#include "mega/attention/attention_cpu.h"
#include "tests/test_util.h"

using namespace megagrad;

namespace {

// The spacing of T's numbers at |r| (denorm_min below the normal range).
template <typename T> double ulp_of(double r) {
  r = std::fabs(r);
  if (r < (double)std::numeric_limits<T>::min()) return (double)std::numeric_limits<T>::denorm_min();
  int e;
  std::frexp(r, &e);  // r = m 2^e, m in [0.5, 1)
  return std::ldexp(1.0, e - std::numeric_limits<T>::digits);
}

struct Worst {
  double ulps = 0, abs = 0, at_ulps = 0;  // abs: the largest |error| (meaningful for erf only)
  long n = 0;
  template <typename T> void add(T x, T got, double ref) {
    ++n;
    const double d = std::fabs((double)got - ref);
    abs = test::max_or_inf(abs, d);
    const double u = d / ulp_of<T>(ref);
    if (!(u <= ulps)) ulps = std::isfinite(u) ? u : INFINITY, at_ulps = (double)x;  // NaN: worst
  }
  void print(const char* what, bool with_abs = true) const {
    std::printf("%-40s %9ld points: worst %.3f ulp (at x = %.17g)", what, n, ulps, at_ulps);
    if (with_abs) std::printf(", worst |error| %.3g", abs);
    std::printf("\n");
  }
};

// Every `stride`-th float bit pattern in [lo, hi] (lo, hi >= 0): all binades between them.
template <typename F> void float_sweep(float lo, float hi, uint32_t stride, F&& f) {
  const uint32_t a = std::bit_cast<uint32_t>(lo), b = std::bit_cast<uint32_t>(hi);
  std::vector<float> xs;
  xs.reserve(4096);
  for (uint64_t u = a; u <= b; u += stride) {
    xs.push_back(std::bit_cast<float>((uint32_t)u));
    if (xs.size() == 4096) f(xs), xs.clear();
  }
  xs.push_back(hi);
  f(xs);
}

// n doubles: uniform in [lo, hi] when log_scale is false, else with log-uniform magnitude in
// [lo, hi] (lo > 0) and a random sign. A fixed LCG: the points are the same on every run.
std::vector<double> double_points(size_t n, double lo, double hi, bool log_scale, uint64_t seed) {
  std::vector<double> xs(n);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    const double u = (double)(seed >> 11) * 0x1.0p-53;
    if (!log_scale) {
      xs[i] = lo + (hi - lo) * u;
    } else {
      const double m = std::exp(std::log(lo) + (std::log(hi) - std::log(lo)) * u);
      xs[i] = (seed >> 10) & 1 ? -m : m;
    }
  }
  return xs;
}

// Points packed around the given places: the 64 representable neighbours on each side.
template <typename T> std::vector<T> neighbours(std::initializer_list<T> places) {
  std::vector<T> xs;
  for (T p : places) {
    T lo = p, hi = p;
    for (int i = 0; i < 64; ++i) {
      xs.push_back(lo), xs.push_back(hi);
      lo = std::nextafter(lo, -std::numeric_limits<T>::infinity());
      hi = std::nextafter(hi, std::numeric_limits<T>::infinity());
    }
  }
  return xs;
}

}  // namespace

// ---------------------------------------------------------------- erf_fast

TEST_CASE("the ulp tally fails on a NaN or an infinite result", "[vec_math][compare]") {
  // A NaN result used to be skipped: NaN > ulps is false, std::max(abs, NaN) is abs.
  Worst w;
  w.add(1.0, 1.0, 1.0);
  w.add(2.0, std::nan(""), 4.0);
  w.add(3.0, 9.0, 9.0);
  CHECK_FALSE(w.ulps <= 2.0);
  CHECK_FALSE(w.abs <= 1.0);
  CHECK(w.at_ulps == 2.0);
  Worst v;
  v.add(1.0f, INFINITY, 2.0);
  CHECK_FALSE(v.ulps <= 2.0);
}

TEST_CASE("erf_fast<float> is within 1.5 ulp of erf over the real line", "[vec_math]") {
  Worst w;
  long not_odd = 0;
  std::vector<float> ys, ns;
  auto check = [&](const std::vector<float>& xs) {
    ys.resize(xs.size()), ns.resize(xs.size());
    for (size_t i = 0; i < xs.size(); ++i) ys[i] = erf_fast(xs[i]), ns[i] = erf_fast(-xs[i]);  // vectorised
    for (size_t i = 0; i < xs.size(); ++i) {
      w.add(xs[i], ys[i], std::erf((double)xs[i]));
      not_odd += ns[i] != -ys[i];  // odd, exactly
    }
  };
  // Every 61st float from 0 to 5 (erf is 1 in float from 3.92 on): 17.8 million points, with the
  // subnormals and every binade; then the pieces' seams (1 and the clamp at 4) densely.
  float_sweep(0.0f, 5.0f, 61, check);
  check(neighbours<float>({1.0f, 4.0f, 3.9192059f}));
  w.print("erf_fast<float> vs std::erf (double)");
  CHECK(not_odd == 0);
  CHECK(w.ulps <= 1.5);  // 0.94 with FMA (-march=native), 1.32 without
  CHECK(w.abs <= 6e-8);
  CHECK(w.n > 17'000'000);
}

TEST_CASE("erf_fast<double> is within 2 ulp of std::erf over the real line", "[vec_math]") {
  Worst w;
  long not_odd = 0;
  auto check = [&](const std::vector<double>& xs) {
    std::vector<double> ys(xs.size()), ns(xs.size());
    for (size_t i = 0; i < xs.size(); ++i) ys[i] = erf_fast(xs[i]), ns[i] = erf_fast(-xs[i]);
    for (size_t i = 0; i < xs.size(); ++i) {
      w.add(xs[i], ys[i], std::erf(xs[i]));
      not_odd += ns[i] != -ys[i];
    }
  };
  check(double_points(3'000'000, -7.0, 7.0, false, 1));          // where erf is not +-1
  check(double_points(1'000'000, -1.2, 1.2, false, 2));          // the polynomial piece and its seam
  check(double_points(1'000'000, 1e-310, 1e3, true, 3));         // every binade, subnormals too
  check(neighbours<double>({1.0, -1.0, 6.0, 5.9215871957945, 0x1p-1022}));
  w.print("erf_fast<double> vs std::erf");
  CHECK(not_odd == 0);
  CHECK(w.ulps <= 2.0);
  CHECK(w.abs <= 2.3e-16);
}

TEST_CASE("erf_fast: special values", "[vec_math]") {
  for (float x : {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f}) {
    INFO(x);
    CHECK(erf_fast(x) == (float)std::erf((double)x));
    CHECK(std::signbit(erf_fast(x)) == std::signbit(x));  // erf(-0) = -0
  }
  for (double x : {0.0, -0.0, 5e-324, -5e-324, 1e-300}) {
    INFO(x);
    CHECK(erf_fast(x) == std::erf(x));
    CHECK(std::signbit(erf_fast(x)) == std::signbit(x));
  }
  // Exactly +-1 where erfc is well below half an ulp of 1 (from 3.9192 on in float, 5.9216 in
  // double), up to infinity.
  for (float x : {3.95f, 4.0f, 4.5f, 10.0f, 1e30f, INFINITY}) {
    CHECK(erf_fast(x) == 1.0f);
    CHECK(erf_fast(-x) == -1.0f);
  }
  for (double x : {5.95, 6.0, 7.0, 27.0, 1e300, (double)INFINITY}) {
    CHECK(erf_fast(x) == 1.0);
    CHECK(erf_fast(-x) == -1.0);
  }
  CHECK(std::isnan(erf_fast(NAN)));
  CHECK(std::isnan(erf_fast((double)NAN)));
  // erf_fast_with_exp takes exp(-x^2) from the caller: any e >= 0 below exp(-clamp^2) gives 1.
  CHECK(erf_fast_with_exp(30.0, 0.0) == 1.0);
  CHECK(erf_fast_with_exp(-30.0f, 0.0f) == -1.0f);
}

TEST_CASE("erf_fast: monotone across the seams of its pieces", "[vec_math]") {
  // Finite differences (gradchecks) step across the seams at |x| = 1: no step down there.
  auto check = [](auto seam) {
    using T = decltype(seam);
    T x = seam;
    for (int i = 0; i < 256; ++i) x = std::nextafter(x, T(0));
    T prev = erf_fast(x);
    for (int i = 0; i < 512; ++i) {
      x = std::nextafter(x, std::numeric_limits<T>::infinity());
      const T y = erf_fast(x);
      INFO(x);
      REQUIRE(y >= prev);
      prev = y;
    }
  };
  check(1.0f), check(-1.0f), check(1.0), check(-1.0);
}

// ---------------------------------------------------------------- exp_fast

TEST_CASE("exp_fast<float> is within 2 ulp of exp over its whole range", "[vec_math]") {
  Worst w;
  bool positive = true;
  auto check = [&](const std::vector<float>& xs) {
    std::vector<float> ys(xs.size()), ns(xs.size());
    for (size_t i = 0; i < xs.size(); ++i) ys[i] = exp_fast(xs[i]), ns[i] = exp_fast(-xs[i]);
    for (size_t i = 0; i < xs.size(); ++i) {
      if (positive) w.add(xs[i], ys[i], std::exp((double)xs[i]));
      w.add(-xs[i], ns[i], std::exp(-(double)xs[i]));
    }
  };
  // Every 97th float x in [0, 88.72] (exp(88.72) is just below FLT_MAX) and -x; then every float
  // in [-103.97, -88.72], where the results are subnormal.
  float_sweep(0.0f, 88.72f, 97, check);
  positive = false;
  float_sweep(88.72f, 103.97f, 1, check);
  w.print("exp_fast<float> vs std::exp (double)", false);
  CHECK(w.ulps <= 2.0);
  CHECK(w.n > 20'000'000);
  // Past the ends: +inf above log(FLT_MAX), 0 below the smallest subnormal's log.
  CHECK(exp_fast(88.8f) == INFINITY);
  CHECK(exp_fast(-104.0f) == 0.0f);
}

TEST_CASE("exp_fast<double> is within 2 ulp of std::exp over its whole range", "[vec_math]") {
  Worst w;
  auto check = [&](const std::vector<double>& xs) {
    std::vector<double> ys(xs.size());
    for (size_t i = 0; i < xs.size(); ++i) ys[i] = exp_fast(xs[i]);
    for (size_t i = 0; i < xs.size(); ++i) w.add(xs[i], ys[i], std::exp(xs[i]));
  };
  check(double_points(3'000'000, -745.0, 709.7, false, 4));   // normal and subnormal results
  check(double_points(1'000'000, 1e-300, 700.0, true, 5));    // every binade of |x|
  check(double_points(500'000, -745.13, -708.0, false, 6));   // subnormal results, densely
  check(neighbours<double>({0.0, 709.78, -708.39, -745.13}));
  w.print("exp_fast<double> vs std::exp", false);
  CHECK(w.ulps <= 2.0);
  CHECK(exp_fast(709.8) == INFINITY);
  CHECK(exp_fast(-745.2) == 0.0);
  CHECK(exp_fast(-(double)INFINITY) == 0.0);
  CHECK(std::isnan(exp_fast((double)NAN)));
}

// ---------------------------------------------------------------- the ops that use erf_fast

TEST_CASE("erf and gelu ops (erf_fast inside) agree with std::erf, forward and backward", "[vec_math]") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    INFO(dtype_name(dt));
    const double tol = dt == DType::Float32 ? 3e-7 : 1e-15;  // relative to max(1, |value|)
    std::vector<double> xs;
    for (int i = -4000; i <= 4000; ++i) xs.push_back(i * 0.002);  // [-8, 8]
    Tensor x = Tensor::from_vector(xs, {(int64_t)xs.size()}, dt).requires_grad_();
    Tensor e = erf(x), g = gelu(x);
    sum(add(e, g)).backward();
    std::vector<double> ev = e.to_vector(), gv = g.to_vector(), dx = x.grad().to_vector();
    double worst = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      const double v = dt == DType::Float32 ? (double)(float)xs[i] : xs[i];
      const double cdf = 0.5 * (1 + std::erf(v / std::sqrt(2.0)));
      const double de = 2 / std::sqrt(M_PI) * std::exp(-v * v);
      const double dg = cdf + v * std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI);
      worst = test::max_or_inf(worst, std::fabs(ev[i] - std::erf(v)));
      worst = test::max_or_inf(worst, std::fabs(gv[i] - v * cdf) / std::max(1.0, std::fabs(v)));
      worst = test::max_or_inf(worst, std::fabs(dx[i] - (de + dg)) / std::max(1.0, std::fabs(de + dg)));
    }
    INFO("worst relative difference " << worst);
    CHECK(worst < tol);
  }
}

// ---------------------------------------------------------------- attention dropout rows

TEST_CASE("attention's vectorised dropout rows equal dropout_keep (uniform_at) exactly", "[vec_math]") {
  using attention_cpu::dropout_keep;
  using attention_cpu::dropout_row;
  // Counters below and across 2^32 (the high word enters Philox's second counter word), seeds
  // with both halves set, and several p (the threshold is compared in integers).
  const int64_t NC = 3, C = 70000, n = 1000;
  std::vector<float> kf((size_t)n);
  std::vector<double> kd((size_t)n);
  long mismatches = 0, kept = 0, total = 0;
  for (double p : {0.1, 0.5, 1.0 / 3.0, 0.999})
    for (uint64_t seed : {0ull, 12345ull, 0x9E3779B97F4A7C15ull})
      for (uint64_t first : {0ull, (1ull << 32) - 500ull, 1ull << 40})
        for (int64_t b : {0, 2}) {
          const int64_t c = 1, i = 61234, j0 = 300;
          dropout_row(p, seed, first, b, c, i, j0, NC, C, kf.data(), n);
          dropout_row(p, seed, first, b, c, i, j0, NC, C, kd.data(), n);
          for (int64_t jj = 0; jj < n; ++jj) {
            const double ref = dropout_keep(p, seed, first, b, c, i, j0 + jj, NC, C);
            mismatches += kd[(size_t)jj] != ref || kf[(size_t)jj] != (float)ref;
            kept += ref != 0;
            ++total;
          }
        }
  INFO(kept << " of " << total << " kept");
  CHECK(mismatches == 0);
  CHECK(kept > total / 5);  // the draws are not degenerate (p = 0.999 keeps almost none)
}
