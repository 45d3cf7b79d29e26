// Bad input: every op throws an error that starts with its name and names the shapes, dtypes
// and devices involved.
#include <catch2/catch.hpp>
#include "autograd/ops.h"

using namespace megagrad;
using Catch::Contains;

TEST_CASE("errors: binary ops name both shapes", "[errors]") {
  Tensor a = Tensor::zeros({3, 4}), b = Tensor::zeros({5, 6});
  REQUIRE_THROWS_WITH(add(a, b), Contains("[add]") && Contains("(3,4)") && Contains("(5,6)"));
  REQUIRE_THROWS_WITH(mul(a, b), Contains("[mul]"));
  REQUIRE_THROWS_WITH(div(a, b), Contains("[div]"));
  REQUIRE_THROWS_WITH(sub(a, b), Contains("[sub]"));
}

TEST_CASE("errors: dtype mismatches and non-float inputs", "[errors]") {
  Tensor f = Tensor::zeros({3}), d = Tensor::zeros({3}, DType::Float64);
  REQUIRE_THROWS_WITH(add(f, d), Contains("[add]") && Contains("float32") && Contains("float64"));
  Tensor i = Tensor::zeros({3}, DType::Int64);
  REQUIRE_THROWS_WITH(exp(i), Contains("[exp]") && Contains("int64"));
  REQUIRE_THROWS_WITH(sum(i), Contains("[sum]") && Contains("int64"));
}

TEST_CASE("errors: dims out of range and bad views", "[errors]") {
  Tensor a = Tensor::zeros({2, 3});
  REQUIRE_THROWS_WITH(sum(a, {2}), Contains("[sum]") && Contains("dim 2"));
  REQUIRE_THROWS_WITH(sum(a, {0, 0}), Contains("[sum]") && Contains("repeated"));
  REQUIRE_THROWS_WITH(a.transpose(0, 5), Contains("[transpose]"));
  REQUIRE_THROWS_WITH(a.permute({0, 0}), Contains("[permute]"));
  REQUIRE_THROWS_WITH(a.narrow(1, 2, 2), Contains("[narrow]") && Contains("(2,3)"));
  REQUIRE_THROWS_WITH(a.squeeze(0), Contains("[squeeze]"));
  REQUIRE_THROWS_WITH(a.expand({4, 3}), Contains("[expand]") && Contains("(4,3)"));
  REQUIRE_THROWS_WITH(var(Tensor::zeros({1}), {0}), Contains("[var]"));
  REQUIRE_THROWS_WITH(Tensor().shape(), Contains("undefined"));
}
