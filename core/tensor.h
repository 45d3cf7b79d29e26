// Tensor: a view (shape, strides, offset, dtype) into a shared Storage, plus the autograd
// metadata (requires_grad, grad, grad_fn). The data layer (Storage) knows nothing of graphs; the
// autograd fields are opaque here and are used by autograd/.
//
// A Tensor is a cheap handle (one shared_ptr): copying it aliases the same data, as in PyTorch.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include "core/dtype.h"
#include "core/shape.h"
#include "core/storage.h"

namespace megagrad {

class Node;  // autograd/node.h
class Tensor;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;

  // --- autograd metadata (see autograd/) ---
  bool requires_grad = false;          // a leaf that wants .grad, or an output of such
  std::shared_ptr<TensorImpl> grad;    // accumulated gradient (leaves, or retain_grad)
  std::shared_ptr<Node> grad_fn;       // the op that made this tensor; null for leaves
  std::shared_ptr<Node> grad_accumulator;  // leaves only: the node that adds into .grad
  // Leaves only: called by backward() right after this leaf's gradient of that pass has been
  // added into .grad (once per pass, after every path's share is summed). Data-parallel training
  // uses it to start reducing a gradient while the rest of the backward runs.
  std::function<void(const Tensor&)> post_accumulate_grad_hook;
  std::string name;                    // optional, shown by dump_graph and anomaly messages
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation (autograd-free leaves) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::Float32,
                     Device device = Device::cpu());
  // [start, end) with step, as float or int64.
  static Tensor arange(double start, double end, double step = 1, DType dtype = DType::Float32);
  // Copies values (converted to dtype) into a new tensor of the given shape.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            DType dtype = DType::Float32);
  static Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape);
  static Tensor scalar(double value, DType dtype = DType::Float32);

  // ---- properties ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  int64_t dim() const { return (int64_t)impl().shape.size(); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return numel_of(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // Typed host pointer to element [0,...,0] (offset applied). Checks the dtype, and that the
  // tensor is on the CPU: host code must never dereference device memory.
  template <typename T> T* data_ptr() const;
  void* raw_data() const;  // element [0,...,0] as bytes (CPU only)
  // The same on any device, for code that hands the pointer to a device kernel or copy.
  template <typename T> T* device_data_ptr() const;
  void* raw_device_data() const;

  // ---- element access (for tests and small programs; slow, CPU only) ----
  double item() const;  // one-element tensor
  double at(const std::vector<int64_t>& index) const;
  void set(const std::vector<int64_t>& index, double value);  // no autograd; writes through views
  std::vector<double> to_vector() const;  // row-major copy as double
  std::vector<int64_t> to_int_vector() const;

  // ---- views (differentiable; share storage) ----
  Tensor view(const Shape& shape) const;     // requires compatible strides
  Tensor reshape(const Shape& shape) const;  // view when possible, else a copy
  Tensor flatten() const { return reshape({numel()}); }
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // narrow + squeeze
  Tensor expand(const Shape& shape) const;           // broadcast view (stride 0)
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor contiguous() const;  // itself when contiguous, else a copy
  Tensor clone() const;       // always a copy (differentiable)
  Tensor to(DType dtype) const;  // dtype conversion (differentiable between float types)
  // A copy on another device (itself when already there). Not recorded in the graph yet: move
  // leaves (module.to(device)) and data, not intermediate results.
  Tensor to(Device device) const;
  Tensor cpu() const { return to(Device::cpu()); }
  Tensor cuda(int index = 0) const { return to(Device::cuda(index)); }

  // ---- in-place, never recorded (optimizers, init). Refused on a tensor that needs grad
  // while grad mode is on, because the graph may have saved its old value. ----
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);               // same shape; converts dtype
  Tensor& add_(const Tensor& other, double alpha = 1.0);  // this += alpha * other (broadcast other)
  Tensor& mul_(double s);

  // ---- autograd (implemented in autograd/) ----
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& requires_grad_(bool value = true);  // leaves only
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const;  // undefined when none yet
  void set_grad(const Tensor& g);
  void zero_grad();     // drops .grad, as PyTorch's set_to_none
  // As PyTorch's register_post_accumulate_grad_hook, with one hook per leaf: `hook(leaf)` runs
  // after each backward pass has accumulated into leaf.grad. An empty function removes it.
  void set_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook);
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  // Gradient of this tensor w.r.t. every leaf that requires grad; `grad` defaults to 1 for a
  // one-element tensor. The graph's saved tensors are freed unless retain_graph.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;  // same data, no graph
  Tensor& set_name(std::string name);
  const std::string& name() const { return impl().name; }

  // ---- printing ----
  std::string str() const;  // "tensor([[1, 2], [3, 4]], dtype=float32)"
  std::string desc() const;  // "(3,4) float32 cpu", for error messages

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// The one-line description used by error messages: "(3,4) float32 cpu".
inline std::string desc(const Tensor& t) { return t.desc(); }

template <typename T> T* Tensor::device_data_ptr() const {
  if (dtype() != dtype_of_v<T>)
    fail("data_ptr", "tensor {} accessed as {}", desc(), dtype_name(dtype_of_v<T>));
  return static_cast<T*>(impl().storage->data()) + impl().offset;
}

template <typename T> T* Tensor::data_ptr() const {
  if (!device().is_cpu())
    fail("data_ptr", "tensor {} is not on the cpu: host code cannot read it (copy it with .cpu())", desc());
  return device_data_ptr<T>();
}

}  // namespace megagrad

template <> struct fmt::formatter<megagrad::Tensor> : fmt::formatter<std::string> {
  auto format(const megagrad::Tensor& t, format_context& ctx) const {
    return fmt::formatter<std::string>::format(t.str(), ctx);
  }
};
