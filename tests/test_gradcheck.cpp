// Runs every registered gradcheck case (float64 central differences against the analytic
// backward), and proves that every differentiable op has at least one case that exercises it.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <set>
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/registry.h"

using namespace megagrad;

namespace {
// Names of the ops recorded in the graph that produced t.
std::set<std::string> ops_in_graph(const Tensor& t) {
  std::set<std::string> names;
  std::vector<Node*> stack;
  std::set<Node*> seen;
  if (t.grad_fn()) stack.push_back(t.grad_fn().get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    names.insert(std::string(n->op));
    for (auto& e : n->next)
      if (e) stack.push_back(e.get());
  }
  return names;
}
}  // namespace

TEST_CASE("gradcheck: every case passes in float64", "[gradcheck]") {
  auto cases = all_gradcheck_cases();
  REQUIRE(!cases.empty());
  for (const GradcheckCase& c : cases) {
    GradcheckResult r = run_gradcheck_case(c);
    INFO(c.op << " [" << c.label << "]: " << r.report());
    CHECK(r.passed);
    CHECK(r.elements_checked > 0);
  }
}

TEST_CASE("gradcheck: every registered op has a case, and each case runs its op", "[gradcheck][registry]") {
  std::set<std::string> covered;
  for (const GradcheckCase& c : all_gradcheck_cases()) {
    INFO("case " << c.op << " [" << c.label << "]");
    CHECK(is_registered_op(c.op));
    std::set<std::string> ran = ops_in_graph(c.f(c.make_inputs()));
    CHECK(ran.count(c.op) == 1);
    if (ran.count(c.op)) covered.insert(c.op);
  }
  for (std::string_view op : differentiable_ops()) {
    INFO("registered op without a gradcheck case: " << op);
    CHECK(covered.count(std::string(op)) == 1);
  }
}

TEST_CASE("gradcheck: finds a wrong gradient and names the worst element", "[gradcheck]") {
  // A function whose recorded backward is deliberately wrong: y = x * 3 forward, but built as
  // x * 2 + stop_gradient(x): the gradient through detach is lost, so the analytic d/dx is 2.
  Tensor x = Tensor::from_vector({0.5, -1.0, 2.0}, {3}, DType::Float64).requires_grad_();
  auto f = [](const std::vector<Tensor>& in) { return add(mul_scalar(in[0], 2.0), in[0].detach()); };
  GradcheckResult r = gradcheck(f, {x});
  INFO(r.report());
  REQUIRE_FALSE(r.passed);
  REQUIRE(r.max_error > 0.1);
  REQUIRE(r.worst_input == 0);
  // The check weighs the output with a random R, so both values carry the same factor R[i].
  REQUIRE(r.worst_numeric / r.worst_analytic == Approx(1.5).epsilon(1e-6));
}

TEST_CASE("gradcheck: refuses float32 inputs and expanded inputs", "[gradcheck]") {
  Tensor x32 = Tensor::ones({3}, DType::Float32).requires_grad_();
  auto id = [](const std::vector<Tensor>& in) { return mul_scalar(in[0], 1.0); };
  REQUIRE_THROWS_WITH(gradcheck(id, {x32}), Catch::Contains("[gradcheck]") && Catch::Contains("float64"));
  Tensor e = Tensor::ones({1}, DType::Float64).expand({4});
  e.requires_grad_();
  REQUIRE_THROWS_WITH(gradcheck(id, {e}), Catch::Contains("expanded"));
}

TEST_CASE("gradcheck: a NaN gradient (analytic or numeric) fails; so does checking nothing", "[gradcheck]") {
  const double nan = std::nan("");
  // Analytic NaN, numeric finite: where() picks x everywhere, so the forward is x, but the
  // unpicked branch x * NaN sends 0 * NaN = NaN back into x's gradient.
  Tensor x = Tensor::from_vector({0.5, -1.0, 2.0}, {3}, DType::Float64).requires_grad_();
  auto nan_backward = [nan](const std::vector<Tensor>& in) {
    Tensor all = gt(Tensor::ones({3}, DType::Float64), Tensor::zeros({3}, DType::Float64));
    return where(all, in[0], mul(in[0], Tensor::full({3}, nan, DType::Float64)));
  };
  GradcheckResult r = gradcheck(nan_backward, {x});
  INFO(r.report());
  CHECK_FALSE(r.passed);
  CHECK(std::isnan(r.worst_analytic));
  CHECK(std::isfinite(r.worst_numeric));
  CHECK(r.max_error == INFINITY);
  // Numeric NaN, analytic finite: sqrt(x - eps) at x = 0 is NaN, but it is detached, so the
  // analytic gradient of x + sqrt(x).detach() is 1 (times R).
  Tensor z = Tensor::from_vector({0.5, 0.0, 2.0}, {3}, DType::Float64).requires_grad_();
  auto nan_numeric = [](const std::vector<Tensor>& in) { return add(in[0], sqrt(in[0]).detach()); };
  GradcheckResult r2 = gradcheck(nan_numeric, {z});
  INFO(r2.report());
  CHECK_FALSE(r2.passed);
  CHECK(r2.worst_index == std::vector<int64_t>{1});
  CHECK(std::isnan(r2.worst_numeric));
  CHECK(std::isfinite(r2.worst_analytic));
  // The only input that requires grad is empty: nothing is checked, which must not read as a pass.
  Tensor empty = Tensor::zeros({0}, DType::Float64).requires_grad_();
  Tensor c = Tensor::from_vector({0.5, 1.0}, {2}, DType::Float64);
  auto f3 = [](const std::vector<Tensor>& in) { return add(mul_scalar(in[1], 2.0), sum(in[0])); };
  GradcheckResult r3 = gradcheck(f3, {empty, c});
  INFO(r3.report());
  CHECK(r3.elements_checked == 0);
  CHECK_FALSE(r3.passed);
}

TEST_CASE("registry: a custom op is refused until registered, then recorded under its name", "[registry]") {
  using Catch::Matchers::Contains;
  Tensor x = Tensor::full({2}, 1.5, DType::Float64).requires_grad_();
  // y = 2x with a hand-written backward, recorded under `name`.
  auto twice = [&x](const std::string& name) {
    Tensor y = Tensor::full({2}, 3.0, DType::Float64);
    record(name, {x}, y, [](const Tensor& g) { return std::vector<Tensor>{g * 2.0}; });
    return y;
  };
  CHECK_THROWS_WITH(twice("test_twice"), Contains("not in the op registry") && Contains("register_custom_op"));
  register_custom_op("test_twice");
  register_custom_op("test_twice");  // again: no-op
  CHECK(is_registered_op("test_twice"));
  Tensor y = twice(std::string("test_twice"));  // the caller's string dies; the node keeps the registry's copy
  CHECK(y.grad_fn()->op == "test_twice");
  sum(y).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{2.0, 2.0});
  CHECK_THROWS_WITH(register_custom_op("mul"), Contains("'mul' is a name of the library"));
  CHECK_THROWS_WITH(register_custom_op("accumulate_grad"), Contains("a name of the library"));
  CHECK_THROWS_WITH(register_custom_op(""), Contains("empty op name"));
  // Custom ops never join the library's list, whose every op must have a gradcheck case.
  const auto& ops = differentiable_ops();
  CHECK(std::find(ops.begin(), ops.end(), "test_twice") == ops.end());
}
