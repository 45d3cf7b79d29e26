// A Node is one recorded op: the closure that maps the gradient of its output to the gradients
// of its inputs, and an edge per input to the node that produced that input (another op's Node,
// a leaf's accumulator, or null when that input needs no gradient).
//
// Ops create nodes through record(); the engine (engine.cpp) walks them in reverse.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include "core/tensor.h"

namespace megagrad {

// Gradients of the inputs, one per input, in order; an undefined Tensor where not needed.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

class Node {
 public:
  std::string_view op;                      // a registered op name (autograd/registry.h)
  std::vector<std::shared_ptr<Node>> next;  // per input; null when that input needs no grad
  std::vector<Shape> input_shapes;          // the engine checks each gradient against these
  std::vector<DType> input_dtypes;
  Shape output_shape;
  BackwardFn backward;                      // cleared when the graph is released
  // Single-input ops whose output is a slice of the input along one dim (narrow): the engine
  // writes grad_output into that part of a gradient buffer of the input's shape that it owns,
  // instead of calling `backward`, so slices of one tensor never build zero-padded copies to sum.
  // The first slice to reach a part copies into it, later ones add; only the parts that no slice
  // reached are zeroed, once, when the buffer is complete (slices that tile a tensor: no zeroing).
  struct Slice {
    int64_t dim, start, length;
  };
  std::optional<Slice> slice;
  bool released = false;
  std::string scope;                        // anomaly mode only: the module the forward ran in

  // Leaves only: the tensor whose .grad this node accumulates into (weak: no cycle).
  std::weak_ptr<TensorImpl> leaf;
  bool is_accumulator() const { return op == "accumulate_grad"; }

  bool needs_input_grad(size_t i) const { return i < next.size() && next[i] != nullptr; }

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Tears down long chains iteratively: a 100,000-op graph must not overflow the stack.
  ~Node();
};

// True when grad mode is on and any of the tensors requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
inline bool needs_grad(const Tensor& a) { return needs_grad({&a}); }
inline bool needs_grad(const Tensor& a, const Tensor& b) { return needs_grad({&a, &b}); }
inline bool needs_grad(const Tensor& a, const Tensor& b, const Tensor& c) {
  return needs_grad({&a, &b, &c});
}
bool needs_grad(const std::vector<Tensor>& inputs);

// Whether one input of the op being recorded wants a gradient (grad mode on, requires_grad).
bool wants_grad(const Tensor& input);

// Attaches a backward closure to `output`, which becomes a non-leaf that requires grad. Call only
// when needs_grad(inputs). `op` must be registered (autograd/registry.h; register_custom_op for
// an op of your own). Closures must capture tensors as detach()ed copies: a captured
// output that keeps its own grad_fn would form a reference cycle.
void record(std::string_view op, const std::vector<Tensor>& inputs, Tensor& output,
            BackwardFn backward);

}  // namespace megagrad
