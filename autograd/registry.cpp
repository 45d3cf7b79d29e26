#include "autograd/registry.h"
#include <algorithm>

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

bool is_registered_op(std::string_view op) {
  const auto& ops = differentiable_ops();
  return std::find(ops.begin(), ops.end(), op) != ops.end();
}

}  // namespace megagrad
