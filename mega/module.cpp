#include "mega/module.h"
#include <set>
#include "autograd/grad_mode.h"

namespace megagrad {

Tensor& Module::register_parameter(const std::string& name, Tensor value) {
  value.requires_grad_(true);
  params_.emplace_back(name, std::make_unique<Tensor>(std::move(value)));
  return *params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor value) {
  buffers_.emplace_back(name, std::make_unique<Tensor>(std::move(value)));
  return *buffers_.back().second;
}

void Module::collect(const std::string& prefix, bool with_buffers,
                     std::vector<std::pair<std::string, Tensor*>>& out) const {
  for (auto& [n, t] : params_) out.emplace_back(prefix + n, t.get());
  if (with_buffers)
    for (auto& [n, t] : buffers_) out.emplace_back(prefix + n, t.get());
  for (auto& [n, m] : children_) m->collect(prefix + n + ".", with_buffers, out);
}

NamedTensors Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor*>> ps;
  collect("", false, ps);
  NamedTensors out;
  for (auto& [n, t] : ps) out.emplace_back(n, *t);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor*>> ps;
  collect("", true, ps);
  NamedTensors out;
  for (auto& [n, t] : ps) out.emplace_back(n, *t);
  return out;
}

std::string Module::scope_path() const {
  std::string path = local_name_;
  for (const Module* m = parent_; m && m->parent_; m = m->parent_) path = m->local_name_ + "." + path;
  return path;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::load_state_dict(const NamedTensors& values, bool strict) {
  std::vector<std::pair<std::string, Tensor*>> mine;
  collect("", true, mine);
  std::set<std::string> given;
  for (auto& [n, t] : values) {
    MG_CHECK(given.insert(n).second, "load_state_dict", "name '{}' given twice", n);
  }
  std::set<std::string> used;
  no_grad guard;
  for (auto& [name, dst] : mine) {
    const Tensor* src = nullptr;
    for (auto& [n, t] : values)
      if (n == name) src = &t;
    if (!src) {
      MG_CHECK(!strict, "load_state_dict", "missing '{}' ({})", name, dst->desc());
      continue;
    }
    MG_CHECK(src->shape() == dst->shape(), "load_state_dict", "'{}' has shape {}, the model expects {}", name,
             shape_str(src->shape()), shape_str(dst->shape()));
    dst->copy_(src->to(dst->device()));  // values from any device into the module's
    used.insert(name);
  }
  if (strict)
    for (auto& [n, t] : values)
      MG_CHECK(used.count(n), "load_state_dict", "unexpected '{}' ({}): the model has no such parameter", n, t.desc());
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

// Converted in place: the TensorImpl keeps its identity and takes the new storage, so handles
// taken earlier (an optimizer's parameter list, a test's copy) stay valid.
void Module::replace_storage_of_all(const std::function<Tensor(const Tensor&)>& convert) {
  no_grad guard;
  auto replace = [&](Tensor& t) {
    Tensor c = convert(t);
    if (c.same(t)) return;
    TensorImpl& impl = t.impl();
    impl.storage = c.storage();
    impl.strides = c.strides();
    impl.offset = c.offset();
    impl.dtype = c.dtype();
    impl.grad = nullptr;
  };
  for (auto& [n, t] : params_) replace(*t);
  for (auto& [n, t] : buffers_) replace(*t);
  for (auto& [n, m] : children_) m->replace_storage_of_all(convert);
}

void Module::to(DType dtype) {
  replace_storage_of_all([&](const Tensor& t) { return t.to(dtype); });
}

void Module::to(Device device) {
  replace_storage_of_all([&](const Tensor& t) { return t.to(device); });
}

}  // namespace megagrad
