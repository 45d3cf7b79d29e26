// Reductions over any set of dims. The input is viewed as a matrix (kept dims, reduced dims):
// without a copy when the reduced dims are innermost or outermost, else through one
// contiguous copy. Backward expands the output gradient back over the reduced dims.
#include <algorithm>
#include <functional>
#include <numeric>
#include "autograd/checks.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "backends/cpu/reduce.h"
#include "core/dispatch.h"

namespace megagrad {

namespace {

struct ReducePlan {
  std::vector<bool> reduced;  // per dim of x
  Shape out_shape;            // with keepdim
  Shape keep_shape;           // out_shape with reduced dims as 1 (always keepdim)
  int64_t O = 1, R = 1;       // output count, reduced count
  std::vector<int64_t> perm;  // kept dims then reduced dims
};

ReducePlan plan_reduce(std::string_view op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan p;
  int64_t nd = x.dim();
  p.reduced.assign((size_t)nd, dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(op, d, nd);
    MG_CHECK(!p.reduced[(size_t)w], op, "dim {} repeated for {}", d, x.desc());
    p.reduced[(size_t)w] = true;
  }
  for (int64_t d = 0; d < nd; ++d) {
    int64_t s = x.shape()[(size_t)d];
    if (p.reduced[(size_t)d]) {
      p.R *= s;
      p.keep_shape.push_back(1);
      if (keepdim) p.out_shape.push_back(1);
    } else {
      p.O *= s;
      p.keep_shape.push_back(s);
      p.out_shape.push_back(s);
    }
  }
  for (int64_t d = 0; d < nd; ++d) if (!p.reduced[(size_t)d]) p.perm.push_back(d);
  for (int64_t d = 0; d < nd; ++d) if (p.reduced[(size_t)d]) p.perm.push_back(d);
  return p;
}

// x permuted to (kept, reduced); is it one contiguous block in that order?
bool permuted_is_contiguous(const Tensor& x, const std::vector<int64_t>& perm) {
  Shape s; Strides st;
  for (int64_t d : perm) { s.push_back(x.shape()[(size_t)d]); st.push_back(x.strides()[(size_t)d]); }
  int64_t expected = 1;
  for (size_t i = s.size(); i-- > 0;) {
    if (s[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= s[i];
  }
  return true;
}

// Runs a row kernel over x as (O, R), or a column kernel over (R, O) when that needs no copy.
template <typename T, typename Rows, typename Cols>
void reduce_layout(const Tensor& x, const ReducePlan& p, Rows rows, Cols cols) {
  std::vector<int64_t> kept(p.perm.begin(), p.perm.begin() + (int64_t)(p.perm.size()) -
                            std::count(p.reduced.begin(), p.reduced.end(), true));
  std::vector<int64_t> red(p.perm.begin() + (int64_t)kept.size(), p.perm.end());
  std::vector<int64_t> rk = red; rk.insert(rk.end(), kept.begin(), kept.end());
  if (permuted_is_contiguous(x, p.perm)) {
    rows(x.data_ptr<T>());
  } else if (permuted_is_contiguous(x, rk)) {
    cols(x.data_ptr<T>());
  } else {
    no_grad g;
    Tensor c = x.permute(p.perm).contiguous();
    rows(c.data_ptr<T>());
  }
}

// Gradient of a reduction that broadcasts g over the reduced dims (sum, mean).
Tensor expand_back(const Tensor& g, const Shape& keep_shape, const Shape& x_shape) {
  return g.reshape(keep_shape).expand(x_shape);
}

// On a GPU: x as one contiguous (O, R, I) block, the reduced dims being R. Read in place when x
// is contiguous and its reduced dims (of size > 1) are adjacent (sum_to's leading or broadcast
// dims, a mean over the last dim ...); otherwise permuted to (kept, reduced) and copied once.
struct DeviceORI {
  Tensor x;  // x itself, or the permuted copy
  int64_t O = 1, R = 1, I = 1;
};
[[maybe_unused]] DeviceORI device_ori(const Tensor& x, const ReducePlan& p) {
  if (x.is_contiguous()) {
    DeviceORI r{x};
    int phase = 0;  // 0: before the reduced run, 1: in it, 2: after it
    bool adjacent = true;
    for (int64_t d = 0; d < x.dim() && adjacent; ++d) {
      const int64_t s = x.shape()[(size_t)d];
      if (s == 1) continue;
      if (p.reduced[(size_t)d]) {
        if (phase == 2) adjacent = false;
        phase = 1;
        r.R *= s;
      } else {
        if (phase == 1) phase = 2;
        (phase == 0 ? r.O : r.I) *= s;
      }
    }
    if (adjacent) return r;
  }
  no_grad g;
  return DeviceORI{x.permute(p.perm).contiguous(), p.O, p.R, 1};
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_float("sum", x);
  ReducePlan p = plan_reduce("sum", x, dims, keepdim);
  Tensor y = Tensor::empty(p.out_shape, x.dtype(), x.device());
  if (on_cuda(x))
    MG_CUDA("sum", DeviceORI v = device_ori(x, p);
            cuda::cuda_reduce(cuda::ReduceOp::Sum, x.dtype(), v.x.raw_device_data(), v.O, v.R, v.I,
                              y.raw_device_data(), nullptr, 0, cuda::stream_of(y)));
  else
    dispatch_float("sum", x.dtype(), [&]<typename T>() {
      reduce_layout<T>(x, p, [&](const T* xp) { cpu::sum_rows(xp, p.O, p.R, y.data_ptr<T>(), 1.0); },
                       [&](const T* xp) { cpu::sum_cols(xp, p.R, p.O, y.data_ptr<T>(), 1.0); });
    });
  if (needs_grad(x)) {
    // d sum / dx = 1 everywhere: the gradient is g broadcast over the reduced dims.
    record("sum", {x}, y, [ks = p.keep_shape, xs = x.shape()](const Tensor& g) {
      return std::vector<Tensor>{expand_back(g, ks, xs)};
    });
  }
  return y;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_float("mean", x);
  ReducePlan p = plan_reduce("mean", x, dims, keepdim);
  MG_CHECK(p.R > 0, "mean", "mean over an empty set of elements of {}", x.desc());
  Tensor y = Tensor::empty(p.out_shape, x.dtype(), x.device());
  double inv = 1.0 / (double)p.R;
  if (on_cuda(x))
    MG_CUDA("mean", DeviceORI v = device_ori(x, p);
            cuda::cuda_reduce(cuda::ReduceOp::Mean, x.dtype(), v.x.raw_device_data(), v.O, v.R, v.I,
                              y.raw_device_data(), nullptr, 0, cuda::stream_of(y)));
  else
    dispatch_float("mean", x.dtype(), [&]<typename T>() {
      reduce_layout<T>(x, p, [&](const T* xp) { cpu::sum_rows(xp, p.O, p.R, y.data_ptr<T>(), inv); },
                       [&](const T* xp) { cpu::sum_cols(xp, p.R, p.O, y.data_ptr<T>(), inv); });
    });
  if (needs_grad(x)) {
    // d mean / dx = 1/R everywhere.
    record("mean", {x}, y, [ks = p.keep_shape, xs = x.shape(), inv](const Tensor& g) {
      return std::vector<Tensor>{expand_back(mul_scalar(g, inv), ks, xs)};
    });
  }
  return y;
}

namespace {
// max/min: values, plus the first index of the best element in each (O, R) row for backward.
template <bool IsMax>
Tensor reduce_best(std::string_view op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_float(op, x);
  ReducePlan p = plan_reduce(op, x, dims, keepdim);
  MG_CHECK(p.R > 0, op, "reduction over an empty set of elements of {}", x.desc());
  Tensor y = Tensor::empty(p.out_shape, x.dtype(), x.device());
  Tensor idx = Tensor::empty({p.O}, DType::Int64, x.device());
  if (on_cuda(x))
    MG_CUDA(op, DeviceORI v = device_ori(x, p);  // (O, R, I) with O*I = p.O: idx is (O, I) = (p.O)
            cuda::cuda_reduce(IsMax ? cuda::ReduceOp::Max : cuda::ReduceOp::Min, x.dtype(), v.x.raw_device_data(),
                              v.O, v.R, v.I, y.raw_device_data(), idx.device_data_ptr<int64_t>(), 0,
                              cuda::stream_of(y)));
  else
    dispatch_float(op, x.dtype(), [&]<typename T>() {
      no_grad g;
      Tensor c = x.permute(p.perm).contiguous();
      auto better = [](T a, T b) { return IsMax ? a > b : a < b; };
      cpu::argbest_rows(c.data_ptr<T>(), p.O, p.R, y.data_ptr<T>(), idx.data_ptr<int64_t>(), better);
    });
  if (needs_grad(x)) {
    // The gradient goes to the chosen element of each row: scatter g into a zero (O, R) matrix,
    // then undo the permutation.
    record(op, {x}, y, [p, idx, xs = x.shape()](const Tensor& g) {
      Tensor gm = Tensor::zeros({p.O, p.R}, g.dtype(), g.device());
      Tensor gc = g.contiguous();
      if (on_cuda(gc))  // gm[o, idx[o]] += g[o]: a scatter-add along dim 1 of (O, 1) views
        MG_CUDA("max", cuda::cuda_scatter_add(
                           g.dtype(), cuda::make_contiguous_view(gc.raw_device_data(), {p.O, 1}),
                           cuda::make_contiguous_view(idx.raw_device_data(), {p.O, 1}),
                           cuda::make_view(gm.raw_device_data(), {p.O, 1}, {p.R, 0}), 1, 1, cuda::stream_of(gm)));
      else
        dispatch_float("max", g.dtype(), [&]<typename T>() {
          const T* gp = gc.data_ptr<T>();
          const int64_t* ip = idx.data_ptr<int64_t>();
          T* out = gm.data_ptr<T>();
          for (int64_t o = 0; o < p.O; ++o) out[o * p.R + ip[o]] = gp[o];
        });
      Shape permuted;
      for (int64_t d : p.perm) permuted.push_back(xs[(size_t)d]);
      std::vector<int64_t> inverse(p.perm.size());
      for (size_t i = 0; i < p.perm.size(); ++i) inverse[(size_t)p.perm[i]] = (int64_t)i;
      return std::vector<Tensor>{gm.reshape(permuted).permute(inverse)};
    });
  }
  return y;
}
}  // namespace

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_best<true>("max", x, dims, keepdim);
}
Tensor min(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_best<false>("min", x, dims, keepdim);
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, int64_t correction) {
  check_float("var", x);
  ReducePlan p = plan_reduce("var", x, dims, keepdim);
  MG_CHECK(p.R - correction > 0, "var", "{} elements with correction {} for {}", p.R, correction,
           x.desc());
  Tensor y, centered;
  {
    no_grad g;  // the forward is composed, the backward is one closed-form step
    centered = sub(x, mean(x, dims, true));
    y = mul_scalar(sum(square(centered), dims, keepdim), 1.0 / (double)(p.R - correction));
  }
  if (needs_grad(x)) {
    // d var / dx = 2 (x - mean) / (R - correction)
    double k = 2.0 / (double)(p.R - correction);
    record("var", {x}, y, [ks = p.keep_shape, centered, k](const Tensor& g) {
      return std::vector<Tensor>{mul(centered, mul_scalar(g.reshape(ks), k))};
    });
  }
  return y;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  no_grad guard;
  // Sum the leading dims g has in excess, then the dims where `shape` has size 1.
  int64_t lead = g.dim() - (int64_t)shape.size();
  MG_CHECK(lead >= 0, "sum_to", "cannot sum {} down to {}", g.desc(), shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < lead; ++d) dims.push_back(d);
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t gd = g.shape()[(size_t)lead + i];
    if (shape[i] == 1 && gd != 1) dims.push_back(lead + (int64_t)i);
    else MG_CHECK(shape[i] == gd, "sum_to", "cannot sum {} down to {}", g.desc(), shape_str(shape));
  }
  if (dims.empty()) return g.reshape(shape);
  return sum(g, dims, true).reshape(shape);
}

Tensor argmax(const Tensor& x, int64_t dim) {
  check_float("argmax", x);
  ReducePlan p = plan_reduce("argmax", x, {dim}, false);
  Tensor idx = Tensor::empty(p.out_shape, DType::Int64, x.device());
  if (on_cuda(x)) {
    MG_CUDA("argmax", DeviceORI v = device_ori(x, p);
            cuda::cuda_reduce(cuda::ReduceOp::Max, x.dtype(), v.x.raw_device_data(), v.O, v.R, v.I, nullptr,
                              idx.device_data_ptr<int64_t>(), 0, cuda::stream_of(idx)));
    return idx;
  }
  dispatch_float("argmax", x.dtype(), [&]<typename T>() {
    no_grad g;
    Tensor c = x.permute(p.perm).contiguous();
    Tensor vals = Tensor::empty({p.O}, x.dtype());
    cpu::argbest_rows(c.data_ptr<T>(), p.O, p.R, vals.data_ptr<T>(), idx.data_ptr<int64_t>(),
                      [](T a, T b) { return a > b; });
  });
  return idx;
}

}  // namespace megagrad
