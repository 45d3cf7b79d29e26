// Neural-network ops: softmax, log_softmax, cross_entropy, layer_norm, embedding, dropout. Each
// forward and backward is one kernel from backends/cpu/nn_kernels.h over contiguous buffers
// (a non-contiguous input is copied once); backward closures save what the kernels need
// (outputs, per-row statistics, masks) rather than recomputing the forward.
#include <cmath>
#include <limits>
#include "autograd/checks.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "backends/cpu/nn_kernels.h"
#include "core/dispatch.h"

namespace megagrad {

namespace {


// `t` itself when contiguous, else a copy; never recorded (the op records its own node).
Tensor contiguous_nograd(const Tensor& t) {
  no_grad guard;
  return t.contiguous();
}

void check_int64_cpu(std::string_view op, const Tensor& t, std::string_view what) {
  check_defined(op, t, what);
  MG_CHECK(t.dtype() == DType::Int64, op, "{} must be int64, got {}", what, t.desc());
  MG_CHECK(t.device().is_cpu(), op, "{} {} is not on the cpu", what, t.desc());
}

template <bool Log>
Tensor softmax_impl(std::string_view op, const Tensor& x, int64_t dim) {
  check_float(op, x);
  const int64_t d = wrap_dim(op, dim, x.dim());
  const OuterInner s = outer_inner(x.shape(), d);
  Tensor xc = contiguous_nograd(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(op, x.dtype(), [&]<typename T>() {
    cpu::softmax_forward<T, Log>(y.data_ptr<T>(), xc.data_ptr<T>(), s.O, s.N, s.I);
  });
  if (needs_grad(x)) {
    // Both gradients need only the output y (see softmax_backward).
    record(op, {x}, y, [s, yd = y.detach()](const Tensor& g) {
      Tensor gc = contiguous_nograd(g);
      Tensor dx = Tensor::empty(yd.shape(), yd.dtype(), yd.device());
      dispatch_float("softmax", yd.dtype(), [&]<typename T>() {
        cpu::softmax_backward<T, Log>(dx.data_ptr<T>(), gc.data_ptr<T>(), yd.data_ptr<T>(), s.O, s.N, s.I);
      });
      return std::vector<Tensor>{dx};
    });
  }
  return y;
}

}  // namespace

// ---------------------------------------------------------------- softmax, log_softmax

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl<false>("softmax", x, dim); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl<true>("log_softmax", x, dim); }

// ---------------------------------------------------------------- cross_entropy

// Mean over the rows whose target is not ignore_index, as torch. When every row is ignored (or
// there are none) the mean is 0/0: the result is NaN, as in torch, and the gradient is zero.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                     double label_smoothing) {
  constexpr std::string_view op = "cross_entropy";
  check_float(op, logits);
  check_int64_cpu(op, target, "target");
  MG_CHECK(logits.dim() == 2, op, "logits must be (N,C), got {}", logits.desc());
  const int64_t B = logits.size(0), C = logits.size(1);
  MG_CHECK(target.dim() == 1 && target.size(0) == B, op,
           "target {} does not match logits {}: expected ({})", target.desc(), logits.desc(), B);
  MG_CHECK(C > 0, op, "logits {} have no classes", logits.desc());
  MG_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, op,
           "label_smoothing must be in [0, 1], got {}", label_smoothing);
  Tensor tc = contiguous_nograd(target);
  const int64_t* tp = tc.data_ptr<int64_t>();
  int64_t count = 0;
  for (int64_t b = 0; b < B; ++b) {
    if (tp[b] == ignore_index) continue;
    MG_CHECK(tp[b] >= 0 && tp[b] < C, op,
             "target {} at position {} is out of range for {} classes (valid: 0..{}, or "
             "ignore_index {})", tp[b], b, C, C - 1, ignore_index);
    ++count;
  }

  Tensor xc = contiguous_nograd(logits);
  Tensor lse = Tensor::empty({B}, logits.dtype());
  std::vector<double> losses((size_t)B);
  dispatch_float(op, logits.dtype(), [&]<typename T>() {
    cpu::cross_entropy_forward<T>(losses.data(), lse.data_ptr<T>(), xc.data_ptr<T>(), tp, B, C,
                                  ignore_index, label_smoothing);
  });
  double total = 0;  // in row order: the same on any thread count
  for (double l : losses) total += l;
  Tensor out = Tensor::scalar(count > 0 ? total / (double)count : std::numeric_limits<double>::quiet_NaN(),
                              logits.dtype());
  if (needs_grad(logits)) {
    // d loss / d logits = (softmax - target distribution) / count on kept rows (see the kernel).
    record(op, {logits}, out, [xd = xc.detach(), lse, tc, ignore_index, label_smoothing, count, B,
                               C](const Tensor& g) {
      Tensor dx = Tensor::empty({B, C}, xd.dtype());
      double scale = count > 0 ? g.item() / (double)count : 0.0;
      dispatch_float("cross_entropy", xd.dtype(), [&]<typename T>() {
        cpu::cross_entropy_backward<T>(dx.data_ptr<T>(), xd.data_ptr<T>(), lse.data_ptr<T>(),
                                       tc.data_ptr<int64_t>(), B, C, ignore_index, label_smoothing, scale);
      });
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

// ---------------------------------------------------------------- layer_norm

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  constexpr std::string_view op = "layer_norm";
  check_float(op, x);
  MG_CHECK(x.dim() >= 1, op, "input must have at least 1 dim, got {}", x.desc());
  const int64_t D = x.size(-1);
  for (const Tensor* p : {&weight, &bias}) {
    if (!p->defined()) continue;
    check_same_float(op, x, *p);
    MG_CHECK(p->dim() == 1 && p->size(0) == D, op, "{} {} does not match the last dim of input {}",
             p == &weight ? "weight" : "bias", p->desc(), x.desc());
  }
  MG_CHECK(eps >= 0, op, "eps must be >= 0, got {}", eps);
  const int64_t B = D == 0 ? numel_of(Shape(x.shape().begin(), x.shape().end() - 1)) : x.numel() / D;

  Tensor xc = contiguous_nograd(x);
  Tensor wc = weight.defined() ? contiguous_nograd(weight) : Tensor();
  Tensor bc = bias.defined() ? contiguous_nograd(bias) : Tensor();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({B}, x.dtype()), rstd = Tensor::empty({B}, x.dtype());
  dispatch_float(op, x.dtype(), [&]<typename T>() {
    cpu::layer_norm_forward<T>(y.data_ptr<T>(), mean.data_ptr<T>(), rstd.data_ptr<T>(), xc.data_ptr<T>(),
                               wc.defined() ? wc.data_ptr<T>() : nullptr,
                               bc.defined() ? bc.data_ptr<T>() : nullptr, B, D, eps);
  });
  if (needs_grad(x, weight, bias)) {
    // From the saved mean and rstd: dx (needs weight), dweight and dbias (column sums).
    const bool nx = wants_grad(x), nw = wants_grad(weight), nb = wants_grad(bias);
    record(op, {x, weight, bias}, y, [nx, nw, nb, xd = xc.detach(), wd = nx && wc.defined() ? wc.detach() : Tensor(),
                                      mean, rstd, B, D](const Tensor& g) {
      Tensor gc = contiguous_nograd(g);
      Tensor dx = nx ? Tensor::empty(xd.shape(), xd.dtype()) : Tensor();
      Tensor dw = nw ? Tensor::empty({D}, xd.dtype()) : Tensor();
      Tensor db = nb ? Tensor::empty({D}, xd.dtype()) : Tensor();
      dispatch_float("layer_norm", xd.dtype(), [&]<typename T>() {
        if (nx)
          cpu::layer_norm_backward_input<T>(dx.data_ptr<T>(), gc.data_ptr<T>(), xd.data_ptr<T>(),
                                            wd.defined() ? wd.data_ptr<T>() : nullptr,
                                            mean.data_ptr<T>(), rstd.data_ptr<T>(), B, D);
        if (nw || nb)
          cpu::layer_norm_backward_params<T>(nw ? dw.data_ptr<T>() : nullptr, nb ? db.data_ptr<T>() : nullptr,
                                             gc.data_ptr<T>(), xd.data_ptr<T>(), mean.data_ptr<T>(),
                                             rstd.data_ptr<T>(), B, D);
      });
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  return y;
}

// ---------------------------------------------------------------- embedding

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  constexpr std::string_view op = "embedding";
  check_float(op, weight);
  MG_CHECK(weight.dim() == 2, op, "weight must be (V,D), got {}", weight.desc());
  check_int64_cpu(op, indices, "indices");
  const int64_t V = weight.size(0), D = weight.size(1), L = indices.numel();
  Tensor ic = contiguous_nograd(indices);
  const int64_t* ip = ic.data_ptr<int64_t>();
  for (int64_t l = 0; l < L; ++l)
    MG_CHECK(ip[l] >= 0 && ip[l] < V, op,
             "index {} at position {} is out of range for weight {} ({} rows)", ip[l], l,
             weight.desc(), V);
  Shape y_shape = indices.shape();
  y_shape.push_back(D);
  Tensor y = Tensor::empty(y_shape, weight.dtype(), weight.device());
  dispatch_float(op, weight.dtype(), [&]<typename T>() {
    cpu::embedding_forward<T>(y.data_ptr<T>(), weight.data_ptr<T>(), weight.strides()[0],
                              weight.strides()[1], ip, L, D);
  });
  if (needs_grad(weight)) {
    // Each looked-up row's gradient adds into that row of a zero (V,D) table.
    record(op, {weight}, y, [ic, V, D, L](const Tensor& g) {
      Tensor gc = contiguous_nograd(g);
      Tensor dw = Tensor::zeros({V, D}, g.dtype());
      dispatch_float("embedding", g.dtype(), [&]<typename T>() {
        cpu::embedding_backward<T>(dw.data_ptr<T>(), gc.data_ptr<T>(), ic.data_ptr<int64_t>(), L, D);
      });
      return std::vector<Tensor>{dw};
    });
  }
  return y;
}

// ---------------------------------------------------------------- dropout

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  constexpr std::string_view op = "dropout";
  check_float(op, x);
  MG_CHECK(p >= 0.0 && p < 1.0, op, "p must be in [0, 1), got {}", p);
  if (!training || p == 0.0) return x;  // identity: no copy, no node
  Generator& g = gen ? *gen : default_generator();
  const uint64_t seed = g.seed(), first = g.advance((uint64_t)x.numel());
  Tensor xc = contiguous_nograd(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mask = Tensor::empty(x.shape(), DType::Bool, x.device());
  dispatch_float(op, x.dtype(), [&]<typename T>() {
    cpu::dropout_forward<T>(y.data_ptr<T>(), mask.data_ptr<bool>(), xc.data_ptr<T>(), x.numel(), p, seed, first);
  });
  if (needs_grad(x)) {
    // The saved mask (1 byte per element) and the same 1/(1-p) scale.
    record(op, {x}, y, [mask, p](const Tensor& gr) {
      Tensor gc = contiguous_nograd(gr);
      Tensor dx = Tensor::empty(mask.shape(), gr.dtype());
      dispatch_float("dropout", gr.dtype(), [&]<typename T>() {
        cpu::dropout_backward<T>(dx.data_ptr<T>(), gc.data_ptr<T>(), mask.data_ptr<bool>(), mask.numel(), p);
      });
      return std::vector<Tensor>{dx};
    });
  }
  return y;
}

}  // namespace megagrad
