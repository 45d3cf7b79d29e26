// Views: new shape/strides/offset over the same Storage, no copy. Each records a node whose
// backward maps the gradient back to the input's shape (reshape back, transpose back, pad the
// narrowed slice with zeros, sum over the expanded dims ...). Views work on any device; the
// copies (clone, contiguous, to(dtype)) go through copy_, which runs cuda_copy on a GPU.
#include <algorithm>
#include "autograd/checks.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace megagrad {

namespace {
Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset) {
  auto v = std::make_shared<TensorImpl>();
  v->storage = base.storage();
  v->shape = std::move(shape);
  v->strides = std::move(strides);
  v->offset = offset;
  v->dtype = base.dtype();
  return Tensor(v);
}

// Strides for viewing `t` as `shape` without a copy, if its layout allows (as torch's
// computeStride): each run of merged input dims must be contiguous within itself.
std::optional<Strides> view_strides(const Tensor& t, const Shape& shape) {
  const Shape& os = t.shape();
  const Strides& ost = t.strides();
  Strides ns(shape.size());
  if (numel_of(os) == 0 || os.empty()) return contiguous_strides(shape);
  int64_t view_d = (int64_t)shape.size() - 1;
  int64_t chunk_base_stride = ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = (int64_t)os.size() - 1; d >= 0; --d) {
    tensor_numel *= os[(size_t)d];
    if (d == 0 || (os[(size_t)d - 1] != 1 && ost[(size_t)d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[(size_t)view_d] == 1)) {
        ns[(size_t)view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[(size_t)view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = ost[(size_t)d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return ns;
}

// Resolves one -1 in a requested shape.
Shape infer_shape(std::string_view op, const Tensor& t, Shape shape) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MG_CHECK(infer < 0, op, "only one dim may be -1 in {}", shape_str(shape));
      infer = (int64_t)i;
    } else {
      MG_CHECK(shape[i] >= 0, op, "invalid shape {}", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    MG_CHECK(known != 0 && t.numel() % known == 0, op, "cannot view {} as {}", t.desc(), shape_str(shape));
    shape[(size_t)infer] = t.numel() / known;
  }
  MG_CHECK(numel_of(shape) == t.numel(), op, "cannot view {} ({} elements) as {}", t.desc(),
           t.numel(), shape_str(shape));
  return shape;
}
}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  Shape shape = infer_shape("view", *this, requested);
  auto st = view_strides(*this, shape);
  MG_CHECK(st.has_value(), "view", "cannot view {} with strides ({}) as {} without a copy; use reshape",
           desc(), fmt::join(strides(), ","), shape_str(shape));
  Tensor v = make_view(*this, shape, *st, offset());
  if (needs_grad(*this))
    record("view", {*this}, v, [in = this->shape()](const Tensor& g) { return std::vector<Tensor>{g.reshape(in)}; });
  return v;
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape shape = infer_shape("reshape", *this, requested);
  if (view_strides(*this, shape)) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  d0 = wrap_dim("transpose", d0, dim());
  d1 = wrap_dim("transpose", d1, dim());
  Shape s = shape();
  Strides st = strides();
  std::swap(s[(size_t)d0], s[(size_t)d1]);
  std::swap(st[(size_t)d0], st[(size_t)d1]);
  Tensor v = make_view(*this, s, st, offset());
  if (needs_grad(*this))
    record("transpose", {*this}, v, [d0, d1](const Tensor& g) { return std::vector<Tensor>{g.transpose(d0, d1)}; });
  return v;
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  MG_CHECK((int64_t)dims.size() == dim(), "permute", "{} dims given for {}", dims.size(), desc());
  std::vector<int64_t> inverse(dims.size(), -1);
  Shape s(dims.size());
  Strides st(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim("permute", dims[i], dim());
    MG_CHECK(inverse[(size_t)d] < 0, "permute", "dim {} repeated in ({})", d, fmt::join(dims, ","));
    inverse[(size_t)d] = (int64_t)i;
    s[i] = shape()[(size_t)d];
    st[i] = strides()[(size_t)d];
  }
  Tensor v = make_view(*this, s, st, offset());
  if (needs_grad(*this))
    record("permute", {*this}, v, [inverse](const Tensor& g) { return std::vector<Tensor>{g.permute(inverse)}; });
  return v;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim("narrow", d, dim());
  int64_t n = shape()[(size_t)d];
  if (start < 0) start += n;
  MG_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow",
           "range [{}, {}) out of bounds for dim {} of {}", start, start + length, d, desc());
  Shape s = shape();
  s[(size_t)d] = length;
  Tensor v = make_view(*this, s, strides(), offset() + start * strides()[(size_t)d]);
  if (needs_grad(*this)) {
    // The slice's gradient, zero elsewhere. The engine uses `slice` instead: the slices of one
    // tensor (the parts of a packed projection) write into one buffer (node.h). A slice of a
    // slice along the same dim is recorded as one slice of the first one's input, so that its
    // gradient is written into that input's buffer once, not once per level.
    const std::shared_ptr<Node> parent = grad_fn();
    const bool nested = parent && parent->slice && parent->slice->dim == d && parent->next[0];
    const Shape in = nested ? parent->input_shapes[0] : shape();
    const int64_t in_start = nested ? parent->slice->start + start : start;
    record("narrow", {*this}, v, [in, d, in_start, length](const Tensor& g) {
      Tensor gx = Tensor::zeros(in, g.dtype(), g.device());
      gx.narrow(d, in_start, length).copy_(g);
      return std::vector<Tensor>{gx};
    });
    Node& node = *v.grad_fn();
    if (nested) {
      node.next[0] = parent->next[0];
      node.input_shapes[0] = in;
      node.input_dtypes[0] = parent->input_dtypes[0];
    }
    node.slice = Node::Slice{d, in_start, length};
  }
  return v;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim("select", d, dim());
  int64_t n = shape()[(size_t)d];
  MG_CHECK(index >= -n && index < n, "select", "index {} out of range for dim {} of {}", index, d, desc());
  return narrow(d, index < 0 ? index + n : index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& target) const {
  MG_CHECK(target.size() >= shape().size(), "expand", "cannot expand {} to {}", desc(), shape_str(target));
  size_t lead = target.size() - shape().size();
  Shape s = target;
  Strides st(target.size(), 0);
  for (size_t i = 0; i < shape().size(); ++i) {
    int64_t want = target[lead + i], have = shape()[i];
    if (want == -1) want = have;
    MG_CHECK(have == want || have == 1, "expand", "cannot expand {} to {}", desc(), shape_str(target));
    s[lead + i] = want;
    st[lead + i] = have == want ? strides()[i] : 0;
  }
  Tensor v = make_view(*this, s, st, offset());
  if (needs_grad(*this))
    record("expand", {*this}, v, [in = shape()](const Tensor& g) { return std::vector<Tensor>{sum_to(g, in)}; });
  return v;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim("unsqueeze", d, dim() + 1);
  Shape s = shape();
  Strides st = strides();
  int64_t stride = d < dim() ? st[(size_t)d] * s[(size_t)d] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  Tensor v = make_view(*this, s, st, offset());
  if (needs_grad(*this))
    record("unsqueeze", {*this}, v, [d](const Tensor& g) { return std::vector<Tensor>{g.squeeze(d)}; });
  return v;
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim("squeeze", d, dim());
  MG_CHECK(shape()[(size_t)d] == 1, "squeeze", "dim {} of {} has size {}, not 1", d, desc(), shape()[(size_t)d]);
  Shape s = shape();
  Strides st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  Tensor v = make_view(*this, s, st, offset());
  if (needs_grad(*this))
    record("squeeze", {*this}, v, [d](const Tensor& g) { return std::vector<Tensor>{g.unsqueeze(d)}; });
  return v;
}

// ---- copies ----

Tensor Tensor::clone() const {
  Tensor c = Tensor::empty(shape(), dtype(), device());
  {
    no_grad g;
    c.copy_(*this);
  }
  if (needs_grad(*this))
    record("clone", {*this}, c, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return c;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor c = Tensor::empty(shape(), dtype(), device());
  {
    no_grad g;
    c.copy_(*this);
  }
  if (needs_grad(*this))
    record("contiguous", {*this}, c, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return c;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  MG_CHECK(!requires_grad() || !GradMode::is_enabled() || is_floating(target), "to",
           "converting {} to {} would cut the graph", desc(), dtype_name(target));
  Tensor c = Tensor::empty(shape(), target, device());
  {
    no_grad g;
    c.copy_(*this);
  }
  if (needs_grad(*this))
    record("to", {*this}, c, [from = dtype()](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
  return c;
}

}  // namespace megagrad
