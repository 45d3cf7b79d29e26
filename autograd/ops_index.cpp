// Indexing and joining: cat, split, index_select, gather, where, masked_fill. The kernels are in
// backends/cpu/index_kernels.h (on a GPU: the launchers of backends/cuda/kernels.h). The forwards
// of cat, index_select and gather take any dtype (an int64 or bool tensor can be joined or
// indexed); gradients flow to float inputs only.
#include "autograd/checks.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "backends/cpu/elementwise.h"
#include "backends/cpu/index_kernels.h"
#include "core/dispatch.h"
#include "core/pointwise.h"

namespace megagrad {

namespace {

// An operand on the device of `like` (the op's data tensor).
void check_device(std::string_view op, const Tensor& t, std::string_view what, const Tensor& like) {
  check_defined(op, t, what);
  MG_CHECK(t.device() == like.device(), op, "devices differ: {} {} and {}", what, t.desc(), like.desc());
}

// An int64 index tensor, on x's device, whose values all lie in [0, n). Returns the index the
// kernels read: `index` itself on the CPU, where the check is eager. On a GPU the check runs on
// the device without synchronising: a bad value is reported at the next synchronisation
// (backends/cuda/deferred_check.h), and the kernels read a copy in which it is replaced by 0.
Tensor check_index(std::string_view op, const Tensor& index, int64_t n, int64_t dim, const Tensor& x) {
  check_device(op, index, "index", x);
  MG_CHECK(index.dtype() == DType::Int64, op, "index must be int64, got {}", index.desc());
  if (on_cuda(index)) {
    // With n = 0 every index is out of range (no value to name: reading it would synchronise).
    MG_CHECK(n > 0 || index.numel() == 0, op, "index {} out of range for dim {} of size 0 (x {})", index.desc(), dim,
             x.desc());
    Tensor safe = Tensor::empty(index.shape(), DType::Int64, index.device());
    MG_CUDA(op, const cuda::DeferredCheck chk = cuda::defer_check(
                    index.device().index, op,
                    [n, dim, xd = x.desc()](int64_t, int64_t bad) {
                      return fmt::format("index {} out of range for dim {} of size {} (x {})", bad, dim, n, xd);
                    });
            cuda::cuda_index_check_deferred(cuda::make_view(index), n, false, 0, safe.device_data_ptr<int64_t>(),
                                            nullptr, chk, cuda::stream_of(index)));
    return safe;
  }
  int64_t bad = 0;
  bool found = false;
  const int64_t* p = index.data_ptr<int64_t>();
  for_each_row<1>(index.shape(), {index.strides()}, [&](auto off, int64_t len, auto in) {
    for (int64_t i = 0; i < len && !found; ++i) {
      int64_t v = p[off[0] + i * in[0]];
      if (v < 0 || v >= n) bad = v, found = true;
    }
  }, INT64_MAX);  // serial: reports the first bad value
  MG_CHECK(!found, op, "index {} out of range for dim {} of size {} (x {})", bad, dim, n, x.desc());
  return index;
}

// Whether `from` broadcasts to exactly `to` (numpy rules, `to` unchanged).
bool broadcasts_to(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  size_t lead = to.size() - from.size();
  for (size_t i = 0; i < from.size(); ++i)
    if (from[i] != 1 && from[i] != to[lead + i]) return false;
  return true;
}


}  // namespace

// ---------------------------------------------------------------- cat

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  MG_CHECK(!tensors.empty(), "cat", "expects a non-empty list of tensors");
  for (size_t k = 0; k < tensors.size(); ++k) check_defined("cat", tensors[k], fmt::format("tensor {}", k));
  const Tensor& t0 = tensors[0];
  MG_CHECK(t0.dim() > 0, "cat", "cannot concatenate 0-dim tensors (tensor 0 is {})", t0.desc());
  int64_t d = wrap_dim("cat", dim, t0.dim());
  std::vector<std::string> bad;
  for (size_t k = 1; k < tensors.size(); ++k) {
    const Tensor& t = tensors[k];
    MG_CHECK(t.dtype() == t0.dtype() && t.device() == t0.device(), "cat",
             "tensor 0 is {} but tensor {} is {}: dtypes and devices must match", t0.desc(), k, t.desc());
    bool ok = t.dim() == t0.dim();
    for (int64_t i = 0; ok && i < t.dim(); ++i) ok = i == d || t.shape()[(size_t)i] == t0.shape()[(size_t)i];
    if (!ok) bad.push_back(fmt::format("tensor {} is {}", k, shape_str(t.shape())));
  }
  MG_CHECK(bad.empty(), "cat", "shapes must match except in dim {}: tensor 0 is {}, but {}", d,
           shape_str(t0.shape()), fmt::join(bad, ", "));

  Shape out_shape = t0.shape();
  out_shape[(size_t)d] = 0;
  for (const Tensor& t : tensors) out_shape[(size_t)d] += t.shape()[(size_t)d];
  Tensor out = Tensor::empty(out_shape, t0.dtype(), t0.device());

  // Each input fills the columns [start, start + n) of dim d. A contiguous input is O rows of
  // n * I elements, copied with one memcpy per row; any other goes through the strided copy_.
  const int64_t es = (int64_t)dtype_size(t0.dtype());
  const OuterInner oi = outer_inner(out_shape, d);
  std::vector<int64_t> starts, lengths;
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    int64_t n = t.shape()[(size_t)d];
    starts.push_back(start);
    lengths.push_back(n);
    if (t.numel() > 0) {
      if (t.is_contiguous() && on_cuda(t)) {
        MG_CUDA("cat", char* dst = static_cast<char*>(out.raw_device_data()) + start * oi.I * es;
                cuda::cuda_copy_rows(t.raw_device_data(), dst, oi.O, n * oi.I * es, oi.N * oi.I * es,
                                     cuda::stream_of(out)));
      } else if (t.is_contiguous()) {
        cpu::copy_rows(static_cast<const char*>(t.raw_data()),
                       static_cast<char*>(out.raw_data()) + start * oi.I * es, oi.O, n * oi.I * es,
                       oi.N * oi.I * es);
      } else {
        no_grad g;
        out.narrow(d, start, n).copy_(t);
      }
    }
    start += n;
  }

  if (needs_grad(tensors)) {
    // Each input's gradient is its slice of g.
    std::vector<bool> wants;
    for (const Tensor& t : tensors) wants.push_back(wants_grad(t));
    record("cat", tensors, out, [d, starts, lengths, wants](const Tensor& g) {
      std::vector<Tensor> grads(wants.size());
      for (size_t k = 0; k < wants.size(); ++k)
        if (wants[k]) grads[k] = g.narrow(d, starts[k], lengths[k]);
      return grads;
    });
  }
  return out;
}

// ---------------------------------------------------------------- split

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  check_defined("split", x);
  MG_CHECK(x.dim() > 0, "split", "cannot split a 0-dim tensor {}", x.desc());
  int64_t d = wrap_dim("split", dim, x.dim());
  int64_t total = 0;
  for (int64_t s : sizes) {
    MG_CHECK(s >= 0, "split", "negative size in ({}) for {}", fmt::join(sizes, ","), x.desc());
    total += s;
  }
  MG_CHECK(total == x.shape()[(size_t)d], "split",
           "sizes ({}) sum to {} but dim {} of {} has size {}", fmt::join(sizes, ","), total, d,
           x.desc(), x.shape()[(size_t)d]);
  // Views: narrow is differentiable, so the pieces need no node of their own.
  std::vector<Tensor> out;
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(d, start, s));
    start += s;
  }
  return out;
}

// ---------------------------------------------------------------- index_select

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index_in) {
  check_defined("index_select", x, "x");
  MG_CHECK(x.dim() > 0, "index_select", "x must have at least 1 dim, got {}", x.desc());
  int64_t d = wrap_dim("index_select", dim, x.dim());
  check_defined("index_select", index_in, "index");
  MG_CHECK(index_in.dim() == 1, "index_select", "index must be 1-dim (K), got {}", index_in.desc());
  const Tensor index = check_index("index_select", index_in, x.shape()[(size_t)d], d, x);

  // A gather whose index is the same along every dim but d: index strides 0 elsewhere.
  Shape out_shape = x.shape();
  out_shape[(size_t)d] = index.numel();
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  Strides xs = x.strides(), is(out_shape.size(), 0);
  int64_t sd = xs[(size_t)d];
  xs[(size_t)d] = 0;
  is[(size_t)d] = index.strides()[0];
  if (on_cuda(x))
    MG_CUDA("index_select", cuda::cuda_gather(x.dtype(), cuda::make_view(x.raw_device_data(), out_shape, xs), sd,
                                              cuda::make_view(index.raw_device_data(), out_shape, is),
                                              cuda::make_view(out), cuda::stream_of(out)));
  else
    dispatch_all("index_select", x.dtype(), [&]<typename T>() {
      cpu::gather<T>(x.data_ptr<T>(), xs, sd, index.data_ptr<int64_t>(), is, out.data_ptr<T>(),
                     out_shape, out.strides());
    });

  if (needs_grad(x)) {
    // index_add of g into zeros: a row chosen k times gets k contributions.
    record("index_select", {x, index_in}, out, [d, xshape = x.shape(), idx = index.contiguous().detach()](const Tensor& g) {
      Tensor gc = g.contiguous();
      OuterInner oi = outer_inner(xshape, d);
      if (on_cuda(gc)) {  // every element of gx is written (0 where no index points)
        Tensor gx = Tensor::empty(xshape, g.dtype(), g.device());
        MG_CUDA("index_select", cuda::cuda_index_add_rows(g.dtype(), gc.raw_device_data(), idx.device_data_ptr<int64_t>(),
                                                          oi.O, oi.N, idx.numel(), oi.I, gx.raw_device_data(),
                                                          cuda::stream_of(gx)));
        return std::vector<Tensor>{gx, Tensor()};
      }
      Tensor gx = Tensor::zeros(xshape, g.dtype(), g.device());
      dispatch_float("index_select", g.dtype(), [&]<typename T>() {
        cpu::index_add_rows<T>(gc.data_ptr<T>(), idx.data_ptr<int64_t>(), gx.data_ptr<T>(), oi.O, oi.N,
                               idx.numel(), oi.I);
      });
      return std::vector<Tensor>{gx, Tensor()};
    });
  }
  return out;
}

// ---------------------------------------------------------------- gather

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index_in) {
  check_defined("gather", x, "x");
  check_device("gather", index_in, "index", x);
  MG_CHECK(x.dim() > 0, "gather", "x must have at least 1 dim, got {}", x.desc());
  int64_t d = wrap_dim("gather", dim, x.dim());
  MG_CHECK(index_in.dim() == x.dim(), "gather", "index {} and x {} must have the same number of dims",
           index_in.desc(), x.desc());
  for (int64_t i = 0; i < x.dim(); ++i)
    MG_CHECK(i == d || index_in.shape()[(size_t)i] <= x.shape()[(size_t)i], "gather",
             "index {} is larger than x {} in dim {} (only dim {} may be larger)", index_in.desc(), x.desc(),
             i, d);
  const Tensor index = check_index("gather", index_in, x.shape()[(size_t)d], d, x);

  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  Strides xs = x.strides();  // valid over index's shape: every coordinate but d is within x
  int64_t sd = xs[(size_t)d];
  xs[(size_t)d] = 0;
  if (on_cuda(x))
    MG_CUDA("gather", cuda::cuda_gather(x.dtype(), cuda::make_view(x.raw_device_data(), index.shape(), xs), sd,
                                        cuda::make_view(index), cuda::make_view(out), cuda::stream_of(out)));
  else
    dispatch_all("gather", x.dtype(), [&]<typename T>() {
      cpu::gather<T>(x.data_ptr<T>(), xs, sd, index.data_ptr<int64_t>(), index.strides(), out.data_ptr<T>(),
                     out.shape(), out.strides());
    });

  if (needs_grad(x)) {
    // Scatter-add g back into zeros of x's shape. Dim d goes innermost so that the rows the
    // kernel runs in parallel never write the same element (see cpu::scatter_add).
    record("gather", {x, index_in}, out, [d, xshape = x.shape(), idx = index.detach()](const Tensor& g) {
      Tensor gx = Tensor::zeros(xshape, g.dtype(), g.device());
      if (on_cuda(gx)) {  // one thread per column of dim d adds its values in order
        MG_CUDA("gather", Strides gxs = gx.strides(); const int64_t sd = gxs[(size_t)d]; gxs[(size_t)d] = 0;
                cuda::cuda_scatter_add(g.dtype(), cuda::make_view(g), cuda::make_view(idx),
                                       cuda::make_view(gx.raw_device_data(), idx.shape(), gxs), sd, (int)d,
                                       cuda::stream_of(gx)));
        return std::vector<Tensor>{gx, Tensor()};
      }
      std::vector<int64_t> perm;
      for (int64_t i = 0; i < (int64_t)xshape.size(); ++i) if (i != d) perm.push_back(i);
      perm.push_back(d);
      auto permuted = [&](const Strides& s) {
        Strides r;
        for (int64_t i : perm) r.push_back(s[(size_t)i]);
        return r;
      };
      Shape shape;
      for (int64_t i : perm) shape.push_back(idx.shape()[(size_t)i]);
      Strides gxs = gx.strides();
      int64_t sd = gxs[(size_t)d];
      gxs[(size_t)d] = 0;
      dispatch_float("gather", g.dtype(), [&]<typename T>() {
        cpu::scatter_add<T>(g.data_ptr<T>(), permuted(g.strides()), idx.data_ptr<int64_t>(),
                            permuted(idx.strides()), gx.data_ptr<T>(), permuted(gxs), sd, shape);
      });
      return std::vector<Tensor>{gx, Tensor()};
    });
  }
  return out;
}

// ---------------------------------------------------------------- where

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_defined("where", cond, "cond");
  MG_CHECK(cond.dtype() == DType::Bool, "where", "cond must be bool, got {}", cond.desc());
  check_same_float("where", a, b);
  MG_CHECK(cond.device() == a.device(), "where", "devices differ: cond {} and a {}", cond.desc(), a.desc());
  Shape out_shape;
  try {
    out_shape = broadcast_shapes("where", broadcast_shapes("where", a.shape(), b.shape()), cond.shape());
  } catch (const Error&) {
    fail("where", "shapes of cond {}, a {} and b {} cannot be broadcast together", cond.desc(), a.desc(),
         b.desc());
  }
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (on_cuda(a))
    MG_CUDA("where", cuda::cuda_where(a.dtype(), cuda::make_view_broadcast(cond, out_shape),
                                      cuda::make_view_broadcast(a, out_shape), cuda::make_view_broadcast(b, out_shape),
                                      cuda::make_view(out), cuda::stream_of(out)));
  else
    dispatch_float("where", a.dtype(), [&]<typename T>() {
      cpu::ternary_map<bool, T, T, T>(cond, a, b, out, pointwise::Where{});
    });

  if (needs_grad(a, b)) {
    // g goes to a where cond holds and to b elsewhere, summed down over broadcast dims.
    bool na = wants_grad(a), nb = wants_grad(b);
    record("where", {cond, a, b}, out, [na, nb, c = cond.detach(), sa = a.shape(), sb = b.shape()](const Tensor& g) {
      Tensor zero = Tensor::zeros({}, g.dtype(), g.device());
      Tensor ga, gb;
      if (na) ga = sum_to(where(c, g, zero), sa);
      if (nb) gb = sum_to(where(c, zero, g), sb);
      return std::vector<Tensor>{Tensor(), ga, gb};
    });
  }
  return out;
}

// ---------------------------------------------------------------- masked_fill

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_float("masked_fill", x);
  check_device("masked_fill", mask, "mask", x);
  MG_CHECK(mask.dtype() == DType::Bool, "masked_fill", "mask must be bool, got {}", mask.desc());
  MG_CHECK(broadcasts_to(mask.shape(), x.shape()), "masked_fill",
           "mask {} does not broadcast to the shape of x {}", mask.desc(), x.desc());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Strides ms = broadcast_strides(mask.shape(), mask.strides(), x.shape());
  if (on_cuda(x))
    MG_CUDA("masked_fill", const cuda::CudaView mv = cuda::make_view(mask.raw_device_data(), x.shape(), ms);
            cuda::cuda_masked_fill(x.dtype(), cuda::make_view(x), mv, value, cuda::make_view(out), cuda::stream_of(out)));
  else
    dispatch_float("masked_fill", x.dtype(), [&]<typename T>() {
      cpu::masked_fill<T>(x.data_ptr<T>(), x.strides(), mask.data_ptr<bool>(), ms, (T)value,
                          out.data_ptr<T>(), out.shape(), out.strides());
    });

  if (needs_grad(x)) {
    // The filled elements no longer depend on x: their gradient is 0.
    record("masked_fill", {x, mask}, out, [m = mask.detach()](const Tensor& g) {
      return std::vector<Tensor>{masked_fill(g, m, 0.0), Tensor()};
    });
  }
  return out;
}

}  // namespace megagrad
