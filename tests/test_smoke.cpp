#include <catch2/catch.hpp>
#include "autograd/gradcheck.h"
#include "autograd/ops.h"

using namespace megagrad;

TEST_CASE("smoke: exp(x) * y backward", "[smoke]") {
  Tensor x = Tensor::from_vector({0.5, -1.0, 2.0}, {3}, DType::Float64).requires_grad_();
  Tensor y = Tensor::from_vector({1.0, 2.0, 3.0}, {3}, DType::Float64).requires_grad_();
  Tensor l = sum(exp(x) * y);
  l.backward();
  REQUIRE(x.grad().at({1}) == Approx(std::exp(-1.0) * 2.0));
  REQUIRE(y.grad().at({2}) == Approx(std::exp(2.0)));
  auto r = gradcheck([](const std::vector<Tensor>& in) { return exp(in[0]) * in[1]; }, {x, y});
  INFO(r.report());
  REQUIRE(r.passed);
}
