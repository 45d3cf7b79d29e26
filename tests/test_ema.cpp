// The fused EMA (mega/ema/): gradcheck (in test_gradcheck.cpp through the registered cases),
// agreement with the composed reference in float64 and float32, and error messages.
#include <catch2/catch.hpp>
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/parallel.h"
#include "mega/ema/ema.h"
#include "mega/ema/ema_gradcheck.h"
#include "tests/test_util.h"

using namespace megagrad;

namespace {
using test::max_rel_diff;

// Runs fused and composed EMA with the same inputs, compares out and every gradient.
void compare_with_reference(DType dt, bool bidir, std::optional<int64_t> trunc, bool pad, double tol) {
  const int64_t B = 3, L = 23, D = 5, N = 4;
  EmaParams p = random_ema_params(D, N, bidir, 5, dt);
  Generator g(6);
  Tensor x = randn({B, L, D}, dt, &g).requires_grad_();
  Tensor G = randn({B, L, D}, dt, &g);
  Tensor mask = pad ? test::right_padding(L, {0, 4, 9}, dt) : Tensor();
  EmaOptions o{bidir, trunc};
  std::vector<Tensor*> leaves{&x, &p.delta, &p.alpha, &p.beta, &p.gamma, &p.omega};

  Tensor fused = ema(x, mask, p, o);
  sum(mul(fused, G)).backward();
  std::vector<Tensor> fused_grads;
  for (Tensor* t : leaves) fused_grads.push_back(t->grad()), t->zero_grad();

  Tensor ref = ema_reference(x, mask, p, o);
  sum(mul(ref, G)).backward();
  INFO("dtype " << dtype_name(dt) << (bidir ? " bidirectional" : " unidirectional") << " truncation "
                << (trunc ? *trunc : -1) << (pad ? " padding" : ""));
  CHECK(max_rel_diff(fused, ref) < tol);
  const char* names[] = {"x", "delta", "alpha", "beta", "gamma", "omega"};
  for (size_t i = 0; i < leaves.size(); ++i) {
    INFO("grad of " << names[i]);
    CHECK(max_rel_diff(fused_grads[i], leaves[i]->grad()) < tol);
  }
}
}  // namespace

TEST_CASE("ema: fused kernel equals the composed reference (float64)", "[ema]") {
  // Same math, different order of operations: agreement to float64 rounding.
  const double tol = 1e-11;
  compare_with_reference(DType::Float64, false, {}, false, tol);
  compare_with_reference(DType::Float64, true, {}, false, tol);
  compare_with_reference(DType::Float64, false, 5, false, tol);
  compare_with_reference(DType::Float64, true, 6, true, tol);
  compare_with_reference(DType::Float64, false, {}, true, tol);
  compare_with_reference(DType::Float64, true, 100, false, tol);  // truncation >= L: none
}

TEST_CASE("ema: fused kernel equals the composed reference (float32)", "[ema]") {
  // float32 recurrences over 23 steps against a float32 Toeplitz product: a few ulps of the
  // largest value.
  const double tol = 2e-5;
  compare_with_reference(DType::Float32, false, {}, false, tol);
  compare_with_reference(DType::Float32, true, 6, true, tol);
}

TEST_CASE("ema: results do not depend on the thread count", "[ema]") {
  EmaParams p = random_ema_params(40, 8, true, 9, DType::Float32);
  Generator g(10);
  Tensor x = randn({3, 200, 40}, DType::Float32, &g).requires_grad_();
  auto run = [&](int threads) {
    set_num_threads(threads);
    for (Tensor* t : {&x, &p.delta, &p.gamma}) t->zero_grad();
    Tensor out = ema(x, Tensor(), p, EmaOptions{true, 50});
    sum(square(out)).backward();
    return std::vector<std::vector<double>>{out.to_vector(), x.grad().to_vector(), p.delta.grad().to_vector(),
                                            p.gamma.grad().to_vector()};
  };
  int before = get_num_threads();
  auto one = run(1), two = run(2);
  set_num_threads(before);
  CHECK(one == two);
}

TEST_CASE("ema: bad shapes give clear errors", "[ema][errors]") {
  EmaParams p = random_ema_params(4, 2, true, 1);
  Tensor x = Tensor::zeros({2, 5, 4}, DType::Float64);
  REQUIRE_THROWS_WITH(ema(Tensor::zeros({2, 5, 3}, DType::Float64), Tensor(), p, {true, {}}),
                      Catch::Contains("[ema]") && Catch::Contains("(8,2)"));
  REQUIRE_THROWS_WITH(ema(x, Tensor(), p, {false, {}}), Catch::Contains("[ema]") && Catch::Contains("E = 4"));
  REQUIRE_THROWS_WITH(ema(x.to(DType::Float32), Tensor(), p, {true, {}}),
                      Catch::Contains("[ema]") && Catch::Contains("float32"));
  REQUIRE_THROWS_WITH(ema(x, Tensor::zeros({2, 4}, DType::Float64), p, {true, {}}),
                      Catch::Contains("padding_mask") && Catch::Contains("(2,5)"));
  REQUIRE_THROWS_WITH(ema(x, Tensor(), p, {true, 0}), Catch::Contains("truncation"));
}
