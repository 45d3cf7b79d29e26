// Module: a named tree of parameters, as torch.nn.Module. Names join with '.', so a parameter's
// full name is its official state_dict name, e.g. "mega_layer.move.alpha".
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>
#include "autograd/anomaly.h"
#include "core/tensor.h"

namespace megagrad {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module : public NamedScope {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter, depth first in registration order, with full dotted names.
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  // Parameters and buffers (e.g. batchnorm's running statistics), as torch's state_dict.
  NamedTensors state_dict() const;
  // Copies values into the parameters and buffers (no autograd). strict: every name must be
  // present in both, with equal shapes; errors name the first problem.
  void load_state_dict(const NamedTensors& values, bool strict = true);
  int64_t num_parameters() const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Where this module sits in its model: "layers.2.mega_layer.move" ("" for the root). Each
  // forward opens a ForwardScope(this), so anomaly mode can name the module an op ran in.
  std::string scope_path() const override;
  void zero_grad();
  // Converts every parameter and buffer to dtype (float32 <-> float64) in place, keeping values
  // and the tensors' identity (earlier handles see the new dtype).
  void to(DType dtype);
  // Moves every parameter and buffer to the device in place (gradients are dropped).
  void to(Device device);

 protected:
  // A leaf that requires grad, owned by this module.
  Tensor& register_parameter(const std::string& name, Tensor value);
  // State that is saved and loaded but not trained.
  Tensor& register_buffer(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    module->parent_ = this;
    module->local_name_ = name;
    return module;
  }

 private:
  void replace_storage_of_all(const std::function<Tensor(const Tensor&)>& convert);
  void collect(const std::string& prefix, bool with_buffers, std::vector<std::pair<std::string, Tensor*>>& out) const;
  std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  const Module* parent_ = nullptr;  // set when registered as a child
  std::string local_name_;
};

// A Module assembled by its owner: parameters and children added from outside. Used for the
// wrappers that only exist to give parameters their official dotted names
// (e.g. "encoder.encoder.embed_tokens.embed.weight") and for numbered lists ("layers.0").
class Container : public Module {
 public:
  Tensor& add_parameter(const std::string& name, Tensor value) { return register_parameter(name, std::move(value)); }
  template <typename M>
  std::shared_ptr<M> add_module(const std::string& name, std::shared_ptr<M> m) {
    return register_module(name, std::move(m));
  }
};

}  // namespace megagrad
