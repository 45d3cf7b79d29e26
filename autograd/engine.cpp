// The reverse-mode engine: Tensor::backward() walks the recorded graph from the output back to
// the leaves, in topological order, summing the gradients that reach a node along several paths.
#include <algorithm>
#include <chrono>
#include <deque>
#include <unordered_map>
#include "autograd/anomaly.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/profile.h"
#include "autograd/ops.h"
#include "autograd/registry.h"

namespace megagrad {

namespace {
// The accumulator of a leaf: one per leaf, shared by every op that uses it, so that the engine
// sums all of the leaf's gradients before adding them to .grad.
std::shared_ptr<Node> accumulator_of(const Tensor& leaf) {
  TensorImpl& impl = leaf.impl();
  if (!impl.grad_accumulator) {
    auto node = std::make_shared<Node>();
    node->op = "accumulate_grad";
    node->leaf = leaf.impl_ptr();
    node->output_shape = impl.shape;
    impl.grad_accumulator = node;
  }
  return impl.grad_accumulator;
}

// Adds g into leaf.grad. The first gradient becomes .grad as it is when nothing else can see it
// (no other owner of its TensorImpl or its Storage, a whole contiguous tensor: as PyTorch's
// AccumulateGrad steals it), else a copy, so that .grad never aliases a tensor the graph or the
// user still holds.
void accumulate_into_leaf(TensorImpl& leaf, Tensor g) {
  no_grad guard;
  if (g.dtype() != leaf.dtype) g = g.to(leaf.dtype);
  if (leaf.grad) {
    Tensor(leaf.grad).add_(g);
    return;
  }
  const bool sole_owner = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 && !g.requires_grad() &&
                          g.is_contiguous() && g.impl().offset == 0;
  leaf.grad = sole_owner ? g.impl_ptr() : g.clone().impl_ptr();
}

// A node's gradient as its parts arrive. `owned`: g is a buffer of the engine's own (not a tensor
// an op returned, which may alias one that something else holds), so later parts are added into
// it in place. `written`: while only slices (Node::slice) along `dim` have reached an owned
// buffer, the intervals of that dim they wrote, sorted and disjoint; the rest is uninitialised.
struct Incoming {
  Tensor g;
  bool owned = false;
  bool partial = false;
  int64_t dim = -1;
  std::vector<std::pair<int64_t, int64_t>> written;  // [begin, end) along dim
};

// Zeroes what no slice wrote: the buffer is then the whole gradient.
void complete(Incoming& in) {
  if (!in.partial) return;
  int64_t pos = 0;
  auto zero = [&](int64_t end) {
    if (end > pos) in.g.narrow(in.dim, pos, end - pos).zero_();
  };
  for (auto [b, e] : in.written) zero(b), pos = e;
  zero(in.g.size(in.dim));
  in.partial = false;
  in.written.clear();
}

// The buffer that later parts are added into in place: whole (no unwritten parts), and the
// engine's own (a part that an op returned is copied the first time).
Tensor& owned_sum(Incoming& in) {
  complete(in);
  if (!in.owned) in.g = in.g.clone();
  in.owned = true;
  return in.g;
}

// Writes a slice's gradient g into its part of the owned buffer: copied where no slice has
// written yet, added where one has.
void write_slice(Incoming& in, const Node::Slice& sl, const Tensor& g_in) {
  const Tensor g = g_in.dtype() == in.g.dtype() ? g_in : g_in.to(in.g.dtype());
  if (in.partial && in.dim != sl.dim) complete(in);  // slices along another dim: sum as usual
  if (!in.partial) {
    in.g.narrow(sl.dim, sl.start, sl.length).add_(g);
    return;
  }
  const int64_t end = sl.start + sl.length;
  int64_t pos = sl.start;
  auto part = [&](int64_t b, int64_t e, bool add) {
    if (b >= e) return;
    Tensor dst = in.g.narrow(sl.dim, b, e - b), src = g.narrow(sl.dim, b - sl.start, e - b);
    add ? dst.add_(src) : dst.copy_(src);
  };
  for (auto [b, e] : in.written) {
    if (e <= pos || b >= end) continue;
    part(pos, b, false);
    part(std::max(pos, b), std::min(e, end), true);
    pos = std::min(e, end);
  }
  part(pos, end, false);
  // Record [start, end) and merge the intervals that now touch.
  in.written.emplace_back(sl.start, end);
  std::sort(in.written.begin(), in.written.end());
  std::vector<std::pair<int64_t, int64_t>> merged;
  for (auto iv : in.written) {
    if (!merged.empty() && iv.first <= merged.back().second)
      merged.back().second = std::max(merged.back().second, iv.second);
    else
      merged.push_back(iv);
  }
  in.written = std::move(merged);
}
}  // namespace

Node::~Node() {
  std::vector<std::shared_ptr<Node>> stack;
  auto take_unique = [&](std::vector<std::shared_ptr<Node>>& edges) {
    for (auto& e : edges)
      if (e && e.use_count() == 1) stack.push_back(std::move(e));
  };
  take_unique(next);
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    take_unique(n->next);
    // n dies here with its unique children already moved out: no recursion.
  }
}

namespace {
// "op 'exp' in layers.2.mega_layer.move", for anomaly messages.
std::string where_of(const Node& n, std::string_view what) {
  std::string s = fmt::format("{} '{}'", what, n.op);
  if (!n.scope.empty()) s += " in " + n.scope;
  return s;
}
}  // namespace

bool wants_grad(const Tensor& t) { return t.defined() && t.requires_grad() && GradMode::is_enabled(); }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(std::string_view op, const std::vector<Tensor>& inputs, Tensor& output,
            BackwardFn backward) {
  std::string_view name = registered_op_name(op);
  if (name.empty())
    fail("record", "op '{}' is not in the op registry (autograd/registry.cpp; ops of your own: "
         "register_custom_op)", op);
  auto node = std::make_shared<Node>();
  node->op = name;
  node->backward = std::move(backward);
  node->output_shape = output.shape();
  for (const Tensor& in : inputs) {
    std::shared_ptr<Node> edge;
    if (in.defined() && in.requires_grad())
      edge = in.grad_fn() ? in.grad_fn() : accumulator_of(in);
    node->next.push_back(std::move(edge));
    node->input_shapes.push_back(in.defined() ? in.shape() : Shape{});
    node->input_dtypes.push_back(in.defined() ? in.dtype() : DType::Float32);
  }
  if (AnomalyMode::is_enabled()) {
    node->scope = current_scope_path();
    check_finite(output, where_of(*node, "op"), "its output");
  }
  TensorImpl& o = output.impl();
  o.requires_grad = true;
  o.grad_fn = std::move(node);
  if (profile_ops* prof = profile_ops::active()) prof->forward_done(op);
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  MG_CHECK(requires_grad(), "backward",
           "tensor {} does not require grad and has no grad_fn", desc());
  Tensor g0 = grad;
  if (!g0.defined()) {
    MG_CHECK(numel() == 1, "backward",
             "grad can be implicit only for a one-element output, got {}; pass a gradient", desc());
    g0 = Tensor::ones(shape(), dtype(), device());
  }
  MG_CHECK(g0.shape() == shape(), "backward", "gradient {} does not match output {}", g0.desc(),
           desc());
  no_grad guard;  // gradients are computed without recording (no double backward)

  std::shared_ptr<Node> root = is_leaf() ? accumulator_of(*this) : grad_fn();

  // 1. Find every node reachable from the root and count its incoming edges (iterative DFS).
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{root.get()};
  deps[root.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next) {
      if (!e) continue;
      auto [it, inserted] = deps.try_emplace(e.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(e.get());
    }
  }

  // 2. Kahn's algorithm: a node runs once all nodes that feed it a gradient have run. A node's
  // gradient is summed as its parts arrive (Incoming).
  std::unordered_map<Node*, Incoming> grads;
  grads[root.get()].g = g0;
  std::deque<Node*> ready{root.get()};
  profile_ops* const prof = profile_ops::active();
  auto timed = [prof](std::string_view op, auto&& fn) {
    if (!prof) return fn();
    const auto t0 = std::chrono::steady_clock::now();
    auto result = fn();
    prof->backward_done(op, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return result;
  };
  while (!ready.empty()) {
    Node* n = ready.front();
    ready.pop_front();
    Tensor g;
    if (auto it = grads.find(n); it != grads.end()) {
      if (it->second.partial) timed("(sum of gradients)", [&] { return complete(it->second), 0; });
      g = std::move(it->second.g);
      grads.erase(it);
    }
    if (n->is_accumulator()) {
      if (auto leaf = n->leaf.lock(); leaf && g.defined()) {
        accumulate_into_leaf(*leaf, std::move(g));
        if (leaf->post_accumulate_grad_hook) leaf->post_accumulate_grad_hook(Tensor(leaf));
      }
      continue;
    }
    if (g.defined() && n->released)
      fail("backward",
           "the graph through '{}' was already freed by an earlier backward(); call "
           "backward(grad, /*retain_graph=*/true) the first time to go through it twice",
           n->op);
    std::vector<Tensor> in_grads;
    if (g.defined() && n->slice && n->next[0]) {
      // A slice's gradient goes into its part of the input's gradient, in place: no zero-padded
      // tensor per slice, and no full-size sum of them.
      Incoming& in = grads[n->next[0].get()];
      if (!in.g.defined()) {
        in.g = Tensor::empty(n->input_shapes[0], g.dtype(), g.device());
        in.owned = in.partial = true;
        in.dim = n->slice->dim;
      } else if (!in.owned) {
        owned_sum(in);
      }
      timed(n->op, [&] { return write_slice(in, *n->slice, g), 0; });
      if (AnomalyMode::is_enabled()) check_finite(g, where_of(*n, "the gradient reaching op"), "its output gradient");
    } else if (g.defined()) {
      in_grads = timed(n->op, [&] { return n->backward(g); });
      MG_CHECK(in_grads.size() == n->next.size(), "backward",
               "op '{}' returned {} gradients for {} inputs", n->op, in_grads.size(), n->next.size());
      if (AnomalyMode::is_enabled())
        for (size_t i = 0; i < in_grads.size(); ++i)
          check_finite(in_grads[i], where_of(*n, "the backward of op"), fmt::format("the gradient of input {}", i));
    }
    if (!retain_graph) {
      n->backward = nullptr;  // frees the saved tensors
      n->released = true;
    }
    for (size_t i = 0; i < n->next.size(); ++i) {
      Node* child = n->next[i].get();
      if (!child) continue;
      if (i < in_grads.size() && in_grads[i].defined()) {
        const Tensor& gi = in_grads[i];
        MG_CHECK(gi.shape() == n->input_shapes[i], "backward",
                 "op '{}' gave a gradient of shape {} for input {} of shape {}", n->op,
                 shape_str(gi.shape()), i, shape_str(n->input_shapes[i]));
        Incoming& in = grads[child];
        if (!in.g.defined()) {
          in.g = gi;  // not owned: an op's result may alias a tensor held elsewhere
        } else if (in.g.dtype() == gi.dtype() && in.g.device() == gi.device()) {
          timed("(sum of gradients)", [&] { return owned_sum(in).add_(gi), 0; });
        } else {
          complete(in);
          in.g = timed("(sum of gradients)", [&] { return add(in.g, gi); });
          in.owned = true;
        }
      }
      if (--deps[child] == 0) ready.push_back(child);
    }
  }
}

Tensor& Tensor::requires_grad_(bool value) {
  MG_CHECK(is_leaf(), "requires_grad_",
           "only leaves can change requires_grad; use detach() on {}", desc());
  MG_CHECK(!value || is_floating(dtype()), "requires_grad_",
           "only float tensors can require grad, got {}", desc());
  impl().requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  MG_CHECK(!g.defined() || g.shape() == shape(), "set_grad", "gradient {} does not match {}",
           g.desc(), desc());
  impl().grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::zero_grad() { impl().grad = nullptr; }

void Tensor::set_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) {
  MG_CHECK(is_leaf() && requires_grad(), "set_post_accumulate_grad_hook",
           "only a leaf that requires grad accumulates a gradient, got {}", desc());
  impl().post_accumulate_grad_hook = std::move(hook);
}

Tensor Tensor::detach() const {
  auto d = std::make_shared<TensorImpl>();
  const TensorImpl& s = impl();
  d->storage = s.storage;
  d->shape = s.shape;
  d->strides = s.strides;
  d->offset = s.offset;
  d->dtype = s.dtype;
  return Tensor(d);
}

}  // namespace megagrad
