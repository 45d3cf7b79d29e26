// Autograd semantics: reuse and accumulation, no_grad, detach, retain_graph, a released graph,
// a 100,000-op chain (no recursion), and saved tensors freed after backward.
#include <catch2/catch.hpp>
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

using namespace megagrad;

static Tensor vec64(std::vector<double> v) {
  int64_t n = (int64_t)v.size();
  return Tensor::from_vector(v, {n}, DType::Float64);
}

TEST_CASE("autograd: a tensor used several times gets the sum of its gradients", "[autograd]") {
  Tensor x = vec64({1, 2, 3}).requires_grad_();
  // y = x*x + 3x + exp(x): dy/dx = 2x + 3 + exp(x)
  Tensor y = sum(add(add(mul(x, x), mul_scalar(x, 3)), exp(x)));
  y.backward();
  for (int64_t i = 0; i < 3; ++i) {
    double xv = (double)(i + 1);
    CHECK(x.grad().at({i}) == Approx(2 * xv + 3 + std::exp(xv)));
  }
}

TEST_CASE("autograd: gradients accumulate across backward calls until zero_grad", "[autograd]") {
  Tensor x = vec64({1, 2}).requires_grad_();
  sum(mul_scalar(x, 2)).backward();
  sum(mul_scalar(x, 5)).backward();
  CHECK(x.grad().at({0}) == Approx(7));
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  sum(x).backward();
  CHECK(x.grad().at({1}) == Approx(1));
}

TEST_CASE("autograd: explicit output gradient for a non-scalar output", "[autograd]") {
  Tensor x = vec64({1, 2, 3}).requires_grad_();
  Tensor y = mul_scalar(x, 4);
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("[backward]") && Catch::Contains("(3)"));
  y.backward(vec64({1, 0, 2}));
  CHECK(x.grad().to_vector() == std::vector<double>{4, 0, 8});
}

TEST_CASE("autograd: no_grad records nothing; detach cuts the graph", "[autograd]") {
  Tensor x = vec64({1, 2}).requires_grad_();
  {
    no_grad guard;
    Tensor y = mul(x, x);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
  }
  CHECK(GradMode::is_enabled());
  Tensor z = mul(x.detach(), x);  // d/dx = x.detach() only
  sum(z).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{1, 2});
  CHECK_FALSE(x.detach().requires_grad());
}

TEST_CASE("autograd: only the gradients that are needed are computed", "[autograd]") {
  Tensor a = vec64({1, 2}).requires_grad_();
  Tensor b = vec64({3, 4});  // no grad
  Tensor y = mul(a, b);
  REQUIRE(y.grad_fn()->needs_input_grad(0));
  REQUIRE_FALSE(y.grad_fn()->needs_input_grad(1));
  sum(y).backward();
  CHECK(a.grad().to_vector() == std::vector<double>{3, 4});
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("autograd: retain_graph allows a second backward; a released graph is a clear error", "[autograd]") {
  Tensor x = vec64({1, 2}).requires_grad_();
  Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  CHECK(x.grad().at({0}) == Approx(2 * std::exp(1.0)));
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("[backward]") && Catch::Contains("already freed"));
}

TEST_CASE("autograd: a chain of 100,000 ops runs backward and is freed without recursion", "[autograd]") {
  Tensor x = Tensor::from_vector({0.5}, {1}, DType::Float64).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = add_scalar(y, 1e-5);
  sum(y).backward();
  CHECK(x.grad().at({0}) == Approx(1.0));
  // Rebuild and drop without backward: the destructor must not recurse either.
  Tensor z = x;
  for (int i = 0; i < 100000; ++i) z = mul_scalar(z, 1.0);
  z = Tensor();
  SUCCEED();
}

TEST_CASE("autograd: backward frees the tensors the graph saved", "[autograd]") {
  Tensor x = Tensor::ones({1000}, DType::Float64).requires_grad_();
  int64_t before = Storage::live_count();
  Tensor loss;
  {
    Tensor h = x;
    for (int i = 0; i < 10; ++i) h = exp(mul_scalar(h, 0.1));  // each exp saves its output
    loss = sum(h);
  }
  int64_t with_graph = Storage::live_count();
  CHECK(with_graph - before >= 10);  // the saved intermediates are alive
  loss.backward();
  // Left: loss's own storage and x.grad. The 20 intermediates are gone.
  CHECK(Storage::live_count() - before <= 2);
}

TEST_CASE("autograd: requires_grad rules", "[autograd]") {
  Tensor x = vec64({1, 2}).requires_grad_();
  Tensor y = mul_scalar(x, 2);
  REQUIRE_THROWS_WITH(y.requires_grad_(false), Catch::Contains("[requires_grad_]"));
  REQUIRE_THROWS_WITH(Tensor::zeros({2}, DType::Int64).requires_grad_(), Catch::Contains("float"));
  REQUIRE_THROWS_WITH(vec64({1}).backward(), Catch::Contains("does not require grad"));
  // In-place update of a tensor that requires grad must be in no_grad.
  REQUIRE_THROWS_WITH(x.add_(vec64({1, 1})), Catch::Contains("[add_]") && Catch::Contains("no_grad"));
  {
    no_grad g;
    x.add_(vec64({1, 1}), -0.5);
  }
  CHECK(x.to_vector() == std::vector<double>{0.5, 1.5});
}

TEST_CASE("autograd: a leaf used directly as the output", "[autograd]") {
  Tensor x = Tensor::from_vector({3.0}, {1}, DType::Float64).requires_grad_();
  x.backward();
  CHECK(x.grad().item() == 1.0);
}
