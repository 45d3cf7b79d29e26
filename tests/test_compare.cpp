// The tests' comparison helpers (test_util.h) must see a failure: a NaN or an infinity on
// either side makes the distance INFINITY, so `d < tol`, `d <= tol` and `!(d > tol)` all fail,
// unless the test asks for matching non-finite values (NonFinite::MustMatch).
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>
#include "core/tensor.h"
#include "tests/test_util.h"

using namespace megagrad;
using test::NonFinite;

namespace {
const double kNaN = std::nan(""), kInf = INFINITY;

Tensor filled(double v, DType dt = DType::Float64) { return Tensor::from_vector({1.0, v, 3.0}, {3}, dt); }

// Both orders of the arguments, both helpers, tensors and vectors, float64 and float32.
void require_all_fail(double bad, double good) {
  INFO("bad " << bad << ", good " << good);
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dt));
    Tensor b = filled(bad, dt), g = filled(good, dt);
    for (double d : {test::max_abs_diff(b, g), test::max_abs_diff(g, b), test::max_rel_diff(b, g),
                     test::max_rel_diff(g, b), test::max_abs_diff(b.to_vector(), g.to_vector()),
                     test::max_rel_diff(g.to_vector(), b.to_vector())}) {
      CHECK(d == INFINITY);  // tolerance-free: no tolerance passes it
      CHECK_FALSE(d <= 1e300);
    }
  }
}
}  // namespace

TEST_CASE("compare: max_abs_diff and max_rel_diff fail on NaN and Inf", "[compare]") {
  require_all_fail(kNaN, 2.0);
  require_all_fail(kInf, 2.0);
  require_all_fail(-kInf, 2.0);
  // NaN against NaN, Inf against Inf: still failures unless asked for.
  require_all_fail(kNaN, kNaN);
  require_all_fail(kInf, kInf);
  // A whole tensor of NaN against zeros (it used to compare equal to anything).
  Tensor nans = Tensor::full({4, 5}, kNaN, DType::Float32), zeros = Tensor::zeros({4, 5}, DType::Float32);
  CHECK_FALSE(test::max_abs_diff(nans, zeros) <= 1e-3);
  CHECK_FALSE(test::max_rel_diff(zeros, nans) <= 1e-3);
  // An infinite reference used to make the relative scale infinite, and every difference 0.
  CHECK_FALSE(test::max_rel_diff(Tensor::from_vector({5.0, kInf}, {2}, DType::Float64),
                                 Tensor::from_vector({1.0, kInf}, {2}, DType::Float64)) <= 1e-3);
  // Finite values that differ by more than the largest double: inf, not a pass.
  CHECK(test::max_abs_diff(std::vector<double>{1.7e308}, std::vector<double>{-1.7e308}) == INFINITY);
  // Different sizes.
  CHECK(test::max_abs_diff(std::vector<double>{1, 2}, std::vector<double>{1}) == INFINITY);
}

TEST_CASE("compare: finite values still give the plain distances", "[compare]") {
  std::vector<double> a{1.0, -2.0, 4.0}, b{1.5, -2.0, 2.0};
  CHECK(test::max_abs_diff(a, b) == 2.0);
  CHECK(test::max_rel_diff(a, b) == 1.0);  // 2 / max |b| = 2 / 2
  CHECK(test::max_abs_diff(a, a) == 0.0);
  CHECK(test::max_rel_diff(std::vector<double>{0, 0}, std::vector<double>{0, 0}) == 0.0);
}

TEST_CASE("compare: NonFinite::MustMatch accepts NaN for NaN and the same infinity only", "[compare]") {
  const NonFinite mm = NonFinite::MustMatch;
  std::vector<double> ref{1.0, kNaN, kInf, -kInf};
  CHECK(test::max_abs_diff(std::vector<double>{1.0, kNaN, kInf, -kInf}, ref, mm) == 0.0);
  CHECK(test::max_rel_diff(std::vector<double>{1.5, kNaN, kInf, -kInf}, ref, mm) == 0.5);  // scale: finite only
  CHECK(test::max_abs_diff(std::vector<double>{1.0, 0.0, kInf, -kInf}, ref, mm) == INFINITY);   // NaN expected
  CHECK(test::max_abs_diff(std::vector<double>{1.0, kNaN, -kInf, -kInf}, ref, mm) == INFINITY);  // sign of inf
  CHECK(test::max_abs_diff(std::vector<double>{1.0, kNaN, kNaN, -kInf}, ref, mm) == INFINITY);   // NaN for inf
  CHECK(test::max_rel_diff(std::vector<double>{1.0, kNaN, 7.0, -kInf}, ref, mm) == INFINITY);
}

TEST_CASE("compare: max_or_inf folds a NaN or Inf into INFINITY", "[compare]") {
  CHECK(test::max_or_inf(0.5, kNaN) == INFINITY);  // std::max(0.5, NaN) is 0.5
  CHECK(test::max_or_inf(0.5, kInf) == INFINITY);
  CHECK(test::max_or_inf(0.5, -kInf) == INFINITY);
  CHECK(test::max_or_inf(INFINITY, 1.0) == INFINITY);  // stays failed
  CHECK(test::max_or_inf(0.5, 0.25) == 0.5);
  CHECK(test::max_or_inf(0.5, 0.75) == 0.75);
}
