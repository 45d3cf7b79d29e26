// How the engine sums the gradient parts that reach a tensor along several paths: in place into a
// buffer of its own (never into a part that an op returned, which may alias another tensor's
// gradient), slices of one tensor written into their parts of one buffer (Node::slice: copied
// where no slice wrote yet, added where one did, zeros only where none did),
// and the per-op timers (autograd/profile.h).
#include <catch2/catch.hpp>
#include <cmath>
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/profile.h"

using namespace megagrad;
using Catch::Contains;

namespace {
Tensor leaf(std::vector<double> v) {
  const int64_t n = (int64_t)v.size();
  return Tensor::from_vector(std::move(v), {n}, DType::Float64).requires_grad_();
}
}  // namespace

TEST_CASE("engine: a gradient part shared by two tensors is never summed into in place", "[autograd]") {
  // add's backward hands the same tensor g to x1 and x2. x1 gets a second part (v); summing it
  // into g in place would give x2 the gradient w + v instead of w.
  Tensor x1 = leaf({1, 2, 3}), x2 = leaf({4, 5, 6});
  Tensor w = Tensor::from_vector({0.5, -1, 2}, {3}, DType::Float64);
  Tensor v = Tensor::from_vector({10, 20, 30}, {3}, DType::Float64);
  add(sum(mul(add(x1, x2), w)), sum(mul(x1, v))).backward();
  CHECK(x1.grad().to_vector() == std::vector<double>{10.5, 19, 32});
  CHECK(x2.grad().to_vector() == std::vector<double>{0.5, -1, 2});
  // Three parts and more, through one tensor used four times.
  Tensor y = leaf({1, -2});
  add(add(sum(y), sum(mul_scalar(y, 2))), add(sum(mul(y, y)), sum(mul_scalar(y, -1)))).backward();
  CHECK(y.grad().to_vector() == std::vector<double>{1 + 2 + 2 * 1 - 1, 1 + 2 + 2 * -2 - 1});
}

TEST_CASE("engine: slices of one tensor add into one gradient, with other uses of it", "[autograd]") {
  // x (4, 3) split into overlapping row slices, used whole as well, and a slice of a slice.
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {4, 3}, DType::Float64).requires_grad_();
  auto f = [](const std::vector<Tensor>& in) {
    const Tensor& t = in[0];
    Tensor a = t.narrow(0, 0, 2), b = t.narrow(0, 1, 3), c = t.narrow(1, 2, 1);
    return add(add(sum(mul(a, a)), sum(mul_scalar(b, 3.0))), add(sum(mul(t, c)), sum(b.narrow(0, 1, 1))));
  };
  f({x}).backward();
  // By hand: d/dx of sum(a^2) = 2x on rows 0-1; of 3 sum(b) = 3 on rows 1-3; of sum(x * c) =
  // c (broadcast over columns) plus, on column 2, the sum of its row; of the slice of b: 1 on row 2.
  std::vector<double> want(12, 0.0);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) {
      const double xij = 1 + 3 * i + j, ci = 3 + 3 * i;
      double g = (i < 2 ? 2 * xij : 0) + (i >= 1 ? 3 : 0) + ci + (i == 2 ? 1 : 0);
      if (j == 2) g += (1 + 3 * i) + (2 + 3 * i) + ci;  // sum over the row of x, column 2 included
      want[(size_t)(3 * i + j)] = g;
    }
  CHECK(x.grad().to_vector() == want);
  // And against finite differences, in float64.
  Tensor x2 = Tensor::from_vector(x.detach().to_vector(), {4, 3}, DType::Float64).requires_grad_();
  GradcheckResult r = gradcheck(f, {x2});  // default tolerance 1e-6 relative, float64
  INFO(r.report());
  CHECK(r.passed);
}

TEST_CASE("engine: slices that leave gaps get zeros there; slices along two dims sum", "[autograd]") {
  // The slices' buffer starts uninitialised; hand it a dirty block first (the CPU allocator
  // caches freed blocks by size), so that a gap left unzeroed would show as NaN.
  {
    Tensor junk = Tensor::empty({4, 3}, DType::Float64);
    junk.fill_(std::nan(""));
  }
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {4, 3}, DType::Float64).requires_grad_();
  // Rows 0 and 3 only: rows 1-2 must be exactly 0.
  add(sum(mul_scalar(x.narrow(0, 0, 1), 2.0)), sum(mul_scalar(x.narrow(0, 3, 1), 3.0))).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{2, 2, 2, 0, 0, 0, 0, 0, 0, 3, 3, 3});
  // Columns that tile x (no zeroing needed), then a row slice that overlaps both (another dim).
  x.zero_grad();
  {
    Tensor junk = Tensor::empty({4, 3}, DType::Float64);
    junk.fill_(std::nan(""));
  }
  auto f = [](const std::vector<Tensor>& in) {
    const Tensor& t = in[0];
    return add(add(sum(mul_scalar(t.narrow(1, 0, 1), 5.0)), sum(mul_scalar(t.narrow(1, 1, 2), 7.0))),
               sum(mul_scalar(t.narrow(0, 1, 2), 11.0)));
  };
  f({x}).backward();
  std::vector<double> want(12);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) want[(size_t)(3 * i + j)] = (j == 0 ? 5 : 7) + (i == 1 || i == 2 ? 11 : 0);
  CHECK(x.grad().to_vector() == want);
  // Two slices that overlap along one dim: the overlap adds, the rest copies.
  x.zero_grad();
  add(sum(mul_scalar(x.narrow(1, 0, 2), 1.0)), sum(mul_scalar(x.narrow(1, 1, 2), 10.0))).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{1, 11, 10, 1, 11, 10, 1, 11, 10, 1, 11, 10});
  Tensor x2 = Tensor::from_vector(x.detach().to_vector(), {4, 3}, DType::Float64).requires_grad_();
  GradcheckResult r = gradcheck(f, {x2});
  INFO(r.report());
  CHECK(r.passed);
}

TEST_CASE("engine: a leaf's first .grad is its own tensor, shared with no other", "[autograd]") {
  // add's backward hands one tensor to both inputs: each leaf must get a .grad of its own.
  Tensor x1 = leaf({1, 2}), x2 = leaf({3, 4});
  Tensor w = Tensor::from_vector({5, 7}, {2}, DType::Float64);
  sum(mul(add(x1, x2), w)).backward();
  Tensor g1 = x1.grad();
  g1.add_(Tensor::from_vector({100, 100}, {2}, DType::Float64));
  CHECK(x2.grad().to_vector() == std::vector<double>{5, 7});
  CHECK(x1.grad().to_vector() == std::vector<double>{105, 107});
  // A gradient the caller passes in is not adopted either.
  Tensor y = leaf({1, 1});
  Tensor gy = Tensor::from_vector({2, 3}, {2}, DType::Float64);
  y.backward(gy);
  y.grad().add_(gy);
  CHECK(gy.to_vector() == std::vector<double>{2, 3});
  CHECK(y.grad().to_vector() == std::vector<double>{4, 6});
  // A summed gradient (the engine's own buffer) may be adopted; later passes add into it.
  Tensor z = leaf({1, 2});
  for (int pass = 0; pass < 2; ++pass) add(sum(mul(z, z)), sum(z)).backward();
  CHECK(z.grad().to_vector() == std::vector<double>{2 * (2 * 1 + 1), 2 * (2 * 2 + 1)});
}

TEST_CASE("engine: a freed graph through a slice is still an error", "[autograd]") {
  Tensor x = leaf({1, 2, 3});
  Tensor s = sum(x.narrow(0, 1, 2));
  s.backward();
  REQUIRE_THROWS_WITH(s.backward(), Contains("already freed"));
}

TEST_CASE("profile_ops: every recorded op is counted, forward and backward", "[autograd]") {
  Tensor x = leaf({1, 2, 3});
  profile_ops prof;
  Tensor loss = sum(mul(exp(x), x.narrow(0, 0, 3)));
  loss.backward();
  const auto& t = prof.times();
  REQUIRE(t.count("exp"));
  CHECK(t.at("exp").forward_calls == 1);
  CHECK(t.at("exp").backward_calls == 1);
  CHECK(t.at("narrow").backward_calls == 1);
  CHECK(t.at("mul").forward_calls == 1);
  CHECK(prof.table().find("total") != std::string::npos);
  CHECK(profile_ops::active() == &prof);
}
