#include "autograd/registry.h"
#include <algorithm>
#include <deque>
#include <mutex>
#include <string>
#include "core/error.h"

namespace megagrad {

const std::vector<std::string_view>& differentiable_ops() {
  static const std::vector<std::string_view> ops = {
      // views and copies (autograd/views.cpp)
      "view", "transpose", "permute", "narrow", "expand", "unsqueeze", "squeeze", "contiguous",
      "clone", "to",
      // elementwise (autograd/ops_elementwise.cpp)
      "add", "sub", "mul", "div", "add_scalar", "mul_scalar", "pow", "neg", "exp", "log", "sqrt",
      "rsqrt", "square", "abs", "tanh", "sigmoid", "silu", "relu", "gelu", "erf",
      // reductions (autograd/ops_reduce.cpp)
      "sum", "mean", "max", "min", "var",
      // linear algebra (autograd/ops_linalg.cpp)
      "matmul", "linear",
      // neural-network ops (autograd/ops_nn.cpp)
      "softmax", "log_softmax", "cross_entropy", "layer_norm", "embedding", "dropout",
      // indexing and joining (autograd/ops_index.cpp)
      "cat", "index_select", "gather", "where", "masked_fill",
      // Mega's fused ops (mega/ema/, mega/attention/, mega/cross_attention/, mega/gates/)
      "ema", "attention", "cross_attention", "input_gates", "output_gate",
  };
  return ops;
}

GradcheckResult run_gradcheck_case(const GradcheckCase& c) {
  GradcheckOptions o;
  o.tolerance = c.tolerance;
  o.eps = c.eps;
  return gradcheck(c.f, c.make_inputs(), o);
}

namespace {
// Custom op names. A deque never moves its elements, so views into them stay valid.
struct CustomOps {
  std::mutex mutex;
  std::deque<std::string> names;
};
CustomOps& custom_ops() {
  static CustomOps c;
  return c;
}
}  // namespace

std::string_view registered_op_name(std::string_view op) {
  const auto& ops = differentiable_ops();
  auto it = std::find(ops.begin(), ops.end(), op);
  if (it != ops.end()) return *it;
  CustomOps& c = custom_ops();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (const std::string& name : c.names)
    if (name == op) return name;
  return {};
}

bool is_registered_op(std::string_view op) { return !registered_op_name(op).empty(); }

void register_custom_op(std::string_view name) {
  MG_CHECK(!name.empty(), "register_custom_op", "empty op name");
  const auto& ops = differentiable_ops();
  // accumulate_grad is no op but the engine's leaf node (Node::is_accumulator): never a user's.
  MG_CHECK(std::find(ops.begin(), ops.end(), name) == ops.end() && name != "accumulate_grad",
           "register_custom_op", "'{}' is a name of the library; give the custom op a name of its own",
           name);
  CustomOps& c = custom_ops();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (const std::string& n : c.names)
    if (n == name) return;
  c.names.emplace_back(name);
}

}  // namespace megagrad
