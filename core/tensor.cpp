// Tensor creation, properties, element access, in-place updates and printing. The
// differentiable views (reshape, transpose, ...) live in autograd/views.cpp.
#include "core/tensor.h"
#include <cmath>
#include "core/backend.h"
#include "core/dispatch.h"
#include "core/grad_mode.h"
#include "core/strided.h"

namespace megagrad {

namespace {
std::shared_ptr<TensorImpl> new_impl(const Shape& shape, DType dtype, Device device, bool zero) {
  // The byte count must fit in int64: a shape like (2^40, 2^40) is an error, not an overflow.
  int64_t bytes = dtype_size(dtype);
  for (int64_t d : shape) {
    MG_CHECK(d >= 0, "empty", "negative dimension in shape {}", shape_str(shape));
    MG_CHECK(!__builtin_mul_overflow(bytes, d, &bytes), "empty", "shape {} of {} needs more than 2^63 bytes",
             shape_str(shape), dtype_name(dtype));
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>((size_t)bytes, device, zero);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return impl;
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return Tensor(new_impl(shape, dtype, device, false));
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return Tensor(new_impl(shape, dtype, device, true));
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}
Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::arange(double start, double end, double step, DType dtype) {
  MG_CHECK(step != 0, "arange", "step must be non-zero");
  int64_t n = std::max<int64_t>(0, (int64_t)std::ceil((end - start) / step));
  Tensor t = empty({n}, dtype);
  dispatch_all("arange", dtype, [&]<typename T>() {
    T* p = t.data_ptr<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = (T)(start + (double)i * step);
  });
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  MG_CHECK((int64_t)values.size() == numel_of(shape), "from_vector",
           "{} values do not fill shape {}", values.size(), shape_str(shape));
  Tensor t = empty(shape, dtype);
  dispatch_all("from_vector", dtype, [&]<typename T>() {
    T* p = t.data_ptr<T>();
    for (size_t i = 0; i < values.size(); ++i) p[i] = (T)values[i];
  });
  return t;
}

Tensor Tensor::from_vector(const std::vector<int64_t>& values, const Shape& shape) {
  MG_CHECK((int64_t)values.size() == numel_of(shape), "from_vector",
           "{} values do not fill shape {}", values.size(), shape_str(shape));
  Tensor t = empty(shape, DType::Int64);
  std::copy(values.begin(), values.end(), t.data_ptr<int64_t>());
  return t;
}

TensorImpl& Tensor::impl() const {
  if (!impl_) throw Error("[tensor] use of an undefined tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim("size", d, dim())]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape().size(); i-- > 0;) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

void* Tensor::raw_device_data() const {
  return static_cast<char*>(impl().storage->data()) + impl().offset * (int64_t)dtype_size(dtype());
}

void* Tensor::raw_data() const {
  if (!device().is_cpu())
    fail("data_ptr", "tensor {} is not on the cpu: host code cannot read it (copy it with .cpu())", desc());
  return raw_device_data();
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  MG_CHECK(!(requires_grad() && GradMode::is_enabled()), "to",
           "moving {} to {} is not recorded in the graph yet: move the leaf itself (module.to(device)) "
           "or detach() it",
           desc(), target);
  MG_CHECK(device().is_cpu() || target.is_cpu() || device().index == target.index, "to",
           "copies between two GPUs go through the cpu: {} to {}", desc(), target);
  // A contiguous copy on the source device, then one transfer of its bytes.
  Tensor src = contiguous();
  Tensor dst = Tensor::empty(shape(), dtype(), target);
  const size_t bytes = (size_t)numel() * dtype_size(dtype());
  if (bytes == 0) return dst;
  // The device that is not the cpu runs the transfer.
  backend(device().is_cpu() ? target : device())
      .copy(dst.raw_device_data(), target, src.raw_device_data(), device(), bytes);
  return dst;
}

namespace {
int64_t element_offset(const Tensor& t, const std::vector<int64_t>& index) {
  MG_CHECK((int64_t)index.size() == t.dim(), "at", "index of {} dims for tensor {}", index.size(),
           t.desc());
  int64_t off = 0;
  for (size_t i = 0; i < index.size(); ++i) {
    int64_t k = index[i] < 0 ? index[i] + t.shape()[i] : index[i];
    MG_CHECK(k >= 0 && k < t.shape()[i], "at", "index {} out of range for dim {} of {}", index[i], i,
             t.desc());
    off += k * t.strides()[i];
  }
  return off;
}
}  // namespace

double Tensor::at(const std::vector<int64_t>& index) const {
  if (!device().is_cpu()) return detach().cpu().at(index);  // slow: copies the whole tensor
  int64_t off = element_offset(*this, index);
  return dispatch_all("at", dtype(), [&]<typename T>() { return (double)data_ptr<T>()[off]; });
}

void Tensor::set(const std::vector<int64_t>& index, double value) {
  MG_CHECK(device().is_cpu(), "set", "element access needs a cpu tensor, got {}", desc());
  int64_t off = element_offset(*this, index);
  dispatch_all("set", dtype(), [&]<typename T>() { data_ptr<T>()[off] = (T)value; });
}

double Tensor::item() const {
  MG_CHECK(numel() == 1, "item", "needs a one-element tensor, got {}", desc());
  return at(std::vector<int64_t>(dim(), 0));
}

std::vector<double> Tensor::to_vector() const {
  if (!device().is_cpu()) return detach().cpu().to_vector();
  std::vector<double> out((size_t)numel());
  dispatch_all("to_vector", dtype(), [&]<typename T>() {
    const T* p = data_ptr<T>();
    double* o = out.data();
    for_each_row<1>(shape(), {strides()}, [&](auto off, int64_t n, auto inner) {
      for (int64_t i = 0; i < n; ++i) *o++ = (double)p[off[0] + i * inner[0]];
    }, INT64_MAX);  // serial: the output pointer walks in order
  });
  return out;
}

std::vector<int64_t> Tensor::to_int_vector() const {
  if (dtype() != DType::Int64) {
    std::vector<double> v = to_vector();
    return std::vector<int64_t>(v.begin(), v.end());
  }
  if (!device().is_cpu()) return detach().cpu().to_int_vector();
  std::vector<int64_t> out((size_t)numel());
  const int64_t* p = data_ptr<int64_t>();
  int64_t* o = out.data();
  for_each_row<1>(shape(), {strides()}, [&](auto off, int64_t n, auto inner) {
    for (int64_t i = 0; i < n; ++i) *o++ = p[off[0] + i * inner[0]];  // exact beyond 2^53
  }, INT64_MAX);
  return out;
}

// ---- in-place ----
// Each checks its arguments here, then makes one call to the device's backend (core/backend.h),
// which runs the loop on the CPU or queues one kernel on the GPU's stream.

namespace {
void check_inplace_allowed(std::string_view op, const Tensor& t) {
  MG_CHECK(!(t.requires_grad() && GradMode::is_enabled()), op,
           "in-place update of {} which requires grad; wrap it in no_grad (the graph may have saved "
           "its old value)", t.desc());
}

// The tensor as a backend operand: its own sizes and strides.
StridedView view_of(const Tensor& t) { return {t.raw_device_data(), t.shape(), t.strides()}; }
}  // namespace

Tensor& Tensor::fill_(double value) {
  check_inplace_allowed("fill_", *this);
  backend(device()).fill(device().index, dtype(), view_of(*this), value);
  return *this;
}

Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace_allowed("copy_", *this);
  MG_CHECK(src.shape() == shape() || broadcast_shapes("copy_", src.shape(), shape()) == shape(),
           "copy_", "cannot copy {} into {}", src.desc(), desc());
  // From another device: one transfer of src first (a data move, never recorded).
  if (src.device() != device()) return copy_(src.detach().to(device()));
  const Strides ss = broadcast_strides(src.shape(), src.strides(), shape());
  backend(device()).convert(device().index, dtype(), view_of(*this), src.dtype(),
                            {src.raw_device_data(), shape(), ss});
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace_allowed("add_", *this);
  MG_CHECK(other.dtype() == dtype(), "add_", "dtype mismatch: {} += {}", desc(), other.desc());
  MG_CHECK(other.device() == device(), "add_", "devices differ: {} += {}", desc(), other.desc());
  MG_CHECK(broadcast_shapes("add_", other.shape(), shape()) == shape(), "add_",
           "cannot add {} into {}", other.desc(), desc());
  MG_CHECK(is_floating(dtype()), "add_", "expected a float32 or float64 tensor, got {}", dtype_name(dtype()));
  const Strides os = broadcast_strides(other.shape(), other.strides(), shape());
  backend(device()).add_scaled(device().index, dtype(), view_of(*this), {other.raw_device_data(), shape(), os},
                               alpha);
  return *this;
}

Tensor& Tensor::mul_(double s) {
  check_inplace_allowed("mul_", *this);
  MG_CHECK(is_floating(dtype()), "mul_", "expected a float32 or float64 tensor, got {}", dtype_name(dtype()));
  backend(device()).scale(device().index, dtype(), view_of(*this), s);
  return *this;
}

Tensor& Tensor::set_name(std::string name) {
  impl().name = std::move(name);
  return *this;
}

// ---- printing ----

std::string Tensor::desc() const {
  if (!defined()) return "(undefined)";
  return fmt::format("{} {} {}", shape_str(shape()), dtype_name(dtype()), device().str());
}

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> v = to_vector();
  const Shape& s = shape();
  bool is_int = dtype() == DType::Int64 || dtype() == DType::Bool;
  auto num = [&](double x) { return is_int ? fmt::format("{}", (int64_t)x) : fmt::format("{:.6g}", x); };
  // Nested brackets, eliding the middle of dims longer than 6.
  std::string out;
  std::vector<int64_t> st = contiguous_strides(s);
  auto rec = [&](auto&& self, size_t d, int64_t base) -> void {
    if (d == s.size()) {
      out += num(v[(size_t)base]);
      return;
    }
    out += "[";
    for (int64_t i = 0; i < s[d]; ++i) {
      if (s[d] > 6 && i == 3) {
        out += "..., ";
        i = s[d] - 3;
      }
      self(self, d + 1, base + i * st[d]);
      if (i + 1 < s[d]) out += d + 1 == s.size() ? ", " : ",\n" + std::string(8 + d, ' ');
    }
    out += "]";
  };
  rec(rec, 0, 0);
  std::string extra = requires_grad() ? (grad_fn() ? ", grad_fn" : ", requires_grad=True") : "";
  return fmt::format("tensor({}, dtype={}{})", out, dtype_name(dtype()), extra);
}

}  // namespace megagrad
