// Neural-network ops: softmax, log_softmax, cross_entropy, layer_norm, embedding, dropout. Each
// forward and backward is one kernel from backends/cpu/nn_kernels.h (on a GPU: the launcher of
// the same name in backends/cuda/kernels.h) over contiguous buffers
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

// An int64 operand (targets, indices) on the device of the float operand `like`.
void check_int64(std::string_view op, const Tensor& t, std::string_view what, const Tensor& like) {
  check_defined(op, t, what);
  MG_CHECK(t.dtype() == DType::Int64, op, "{} must be int64, got {}", what, t.desc());
  MG_CHECK(t.device() == like.device(), op, "devices differ: {} {} and {}", what, t.desc(), like.desc());
}

template <bool Log>
Tensor softmax_impl(std::string_view op, const Tensor& x, int64_t dim) {
  check_float(op, x);
  const int64_t d = wrap_dim(op, dim, x.dim());
  const OuterInner s = outer_inner(x.shape(), d);
  Tensor xc = contiguous_nograd(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (on_cuda(x))
    MG_CUDA(op, cuda::cuda_softmax_forward(x.dtype(), Log, xc.raw_device_data(), y.raw_device_data(), s.O, s.N,
                                           s.I, cuda::stream_of(y)));
  else
    dispatch_float(op, x.dtype(), [&]<typename T>() {
      cpu::softmax_forward<T, Log>(y.data_ptr<T>(), xc.data_ptr<T>(), s.O, s.N, s.I);
    });
  if (needs_grad(x)) {
    // Both gradients need only the output y (see softmax_backward).
    record(op, {x}, y, [s, yd = y.detach()](const Tensor& g) {
      Tensor gc = contiguous_nograd(g);
      Tensor dx = Tensor::empty(yd.shape(), yd.dtype(), yd.device());
      if (on_cuda(yd))
        MG_CUDA("softmax", cuda::cuda_softmax_backward(yd.dtype(), Log, gc.raw_device_data(), yd.raw_device_data(),
                                                       dx.raw_device_data(), s.O, s.N, s.I, cuda::stream_of(dx)));
      else
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
  check_int64(op, target, "target", logits);
  MG_CHECK(logits.dim() == 2, op, "logits must be (N,C), got {}", logits.desc());
  const int64_t B = logits.size(0), C = logits.size(1);
  MG_CHECK(target.dim() == 1 && target.size(0) == B, op,
           "target {} does not match logits {}: expected ({})", target.desc(), logits.desc(), B);
  MG_CHECK(C > 0, op, "logits {} have no classes", logits.desc());
  MG_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, op,
           "label_smoothing must be in [0, 1], got {}", label_smoothing);
  auto bad_target = [&](int64_t value, int64_t b) {
    fail(op, "target {} at position {} is out of range for {} classes (valid: 0..{}, or ignore_index {})", value,
         b, C, C - 1, ignore_index);
  };
  Tensor tc = contiguous_nograd(target);
  Tensor xc = contiguous_nograd(logits);
  int64_t count = 0;
  Tensor kept;  // on a GPU: the count, a device int64 that the host never reads
  Tensor out, lse;
  if (on_cuda(logits)) {
    // The targets are checked on the device without synchronising (a bad one is reported at the
    // next synchronisation, e.g. the loss's .item(): backends/cuda/deferred_check.h), and the
    // kernels read a copy in which it is ignore_index. The count of kept rows and the mean stay
    // on the device too, so the loss is a device scalar.
    MG_CUDA(op, cudaStream_t stream = cuda::stream_of(xc);
            const cuda::DeferredCheck chk = cuda::defer_check(
                logits.device().index, op,
                [C, ignore_index](int64_t b, int64_t value) {
                  return fmt::format("target {} at position {} is out of range for {} classes (valid: 0..{}, or "
                                     "ignore_index {})", value, b, C, C - 1, ignore_index);
                });
            Tensor safe = Tensor::empty({B}, DType::Int64, logits.device());
            kept = Tensor::empty({}, DType::Int64, logits.device());
            cuda::cuda_index_check_deferred(cuda::make_view(tc), C, true, ignore_index,
                                            safe.device_data_ptr<int64_t>(), kept.device_data_ptr<int64_t>(), chk,
                                            stream);
            tc = safe;
            lse = Tensor::empty({B}, logits.dtype(), logits.device());
            Tensor losses = Tensor::empty({B}, DType::Float64, logits.device());
            Tensor total = Tensor::empty({}, DType::Float64, logits.device());
            cuda::cuda_cross_entropy_forward(logits.dtype(), xc.raw_device_data(), tc.device_data_ptr<int64_t>(), B,
                                             C, ignore_index, label_smoothing, losses.device_data_ptr<double>(),
                                             lse.raw_device_data(), stream);
            cuda::cuda_reduce(cuda::ReduceOp::Sum, DType::Float64, losses.raw_device_data(), 1, B, 1,
                              total.raw_device_data(), nullptr, 0, stream);
            out = Tensor::empty({}, logits.dtype(), logits.device());
            cuda::cuda_cross_entropy_mean(logits.dtype(), total.device_data_ptr<double>(),
                                          kept.device_data_ptr<int64_t>(), out.raw_device_data(), stream));
  } else {
    const int64_t* tp = tc.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      if (tp[b] == ignore_index) continue;
      if (tp[b] < 0 || tp[b] >= C) bad_target(tp[b], b);
      ++count;
    }
    lse = Tensor::empty({B}, logits.dtype());
    std::vector<double> losses((size_t)B);
    dispatch_float(op, logits.dtype(), [&]<typename T>() {
      cpu::cross_entropy_forward<T>(losses.data(), lse.data_ptr<T>(), xc.data_ptr<T>(), tp, B, C,
                                    ignore_index, label_smoothing);
    });
    double total = 0;  // in row order: the same on any thread count
    for (double l : losses) total += l;
    out = Tensor::scalar(count > 0 ? total / (double)count : std::numeric_limits<double>::quiet_NaN(),
                         logits.dtype());
  }
  if (needs_grad(logits)) {
    // d loss / d logits = (softmax - target distribution) / count on kept rows (see the kernel).
    record(op, {logits}, out, [xd = xc.detach(), lse, tc, kept, ignore_index, label_smoothing, count, B,
                               C](const Tensor& g) {
      Tensor dx = Tensor::empty({B, C}, xd.dtype(), xd.device());
      if (on_cuda(xd)) {
        // The loss's gradient and the count stay on the device: the kernel reads them.
        MG_CUDA("cross_entropy", Tensor gc = contiguous_nograd(g);
                cuda::cuda_cross_entropy_backward_kept(xd.dtype(), xd.raw_device_data(), lse.raw_device_data(),
                                                       tc.device_data_ptr<int64_t>(), B, C, ignore_index,
                                                       label_smoothing, kept.device_data_ptr<int64_t>(),
                                                       gc.raw_device_data(), dx.raw_device_data(),
                                                       cuda::stream_of(dx)));
        return std::vector<Tensor>{dx};
      }
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
  Tensor mean = Tensor::empty({B}, x.dtype(), x.device()), rstd = Tensor::empty({B}, x.dtype(), x.device());
  if (on_cuda(x))
    MG_CUDA(op, cuda::cuda_layer_norm_forward(x.dtype(), xc.raw_device_data(),
                                              wc.defined() ? wc.raw_device_data() : nullptr,
                                              bc.defined() ? bc.raw_device_data() : nullptr, B, D, eps,
                                              y.raw_device_data(), mean.raw_device_data(), rstd.raw_device_data(),
                                              cuda::stream_of(y)));
  else
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
      Tensor dx = nx ? Tensor::empty(xd.shape(), xd.dtype(), xd.device()) : Tensor();
      Tensor dw = nw ? Tensor::empty({D}, xd.dtype(), xd.device()) : Tensor();
      Tensor db = nb ? Tensor::empty({D}, xd.dtype(), xd.device()) : Tensor();
      if (on_cuda(xd)) {
        MG_CUDA("layer_norm", cudaStream_t stream = cuda::stream_of(xd);
                if (nx) cuda::cuda_layer_norm_backward_input(
                    xd.dtype(), gc.raw_device_data(), xd.raw_device_data(),
                    wd.defined() ? wd.raw_device_data() : nullptr, mean.raw_device_data(), rstd.raw_device_data(), B,
                    D, dx.raw_device_data(), stream);
                if (nw || nb) cuda::cuda_layer_norm_backward_params(
                    xd.dtype(), gc.raw_device_data(), xd.raw_device_data(), mean.raw_device_data(),
                    rstd.raw_device_data(), B, D, nw ? dw.raw_device_data() : nullptr,
                    nb ? db.raw_device_data() : nullptr, stream));
        return std::vector<Tensor>{dx, dw, db};
      }
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
  check_int64(op, indices, "indices", weight);
  const int64_t V = weight.size(0), D = weight.size(1), L = indices.numel();
  Tensor ic = contiguous_nograd(indices);
  auto bad_index = [&](int64_t value, int64_t l) {
    fail(op, "index {} at position {} is out of range for weight {} ({} rows)", value, l, weight.desc(), V);
  };
  Shape y_shape = indices.shape();
  y_shape.push_back(D);
  Tensor y = Tensor::empty(y_shape, weight.dtype(), weight.device());
  if (on_cuda(weight)) {
    // Checked on the device without synchronising: a bad index is reported at the next
    // synchronisation (backends/cuda/deferred_check.h); the kernels read a copy where it is 0.
    MG_CHECK(V > 0 || L == 0, op, "indices {} index into weight {}, which has no rows", indices.desc(),
             weight.desc());
    MG_CUDA(op, cudaStream_t stream = cuda::stream_of(y);
            const cuda::DeferredCheck chk = cuda::defer_check(
                weight.device().index, op,
                [wd = weight.desc(), V](int64_t l, int64_t value) {
                  return fmt::format("index {} at position {} is out of range for weight {} ({} rows)", value, l,
                                     wd, V);
                });
            Tensor safe = Tensor::empty(ic.shape(), DType::Int64, ic.device());
            cuda::cuda_index_check_deferred(cuda::make_view(ic), V, false, 0, safe.device_data_ptr<int64_t>(),
                                            nullptr, chk, stream);
            ic = safe;
            cuda::cuda_embedding_forward(weight.dtype(), weight.raw_device_data(), weight.strides()[0],
                                         weight.strides()[1], ic.device_data_ptr<int64_t>(), L, D,
                                         y.raw_device_data(), stream));
  } else {
    const int64_t* ip = ic.data_ptr<int64_t>();
    for (int64_t l = 0; l < L; ++l)
      if (ip[l] < 0 || ip[l] >= V) bad_index(ip[l], l);
    dispatch_float(op, weight.dtype(), [&]<typename T>() {
      cpu::embedding_forward<T>(y.data_ptr<T>(), weight.data_ptr<T>(), weight.strides()[0],
                                weight.strides()[1], ip, L, D);
    });
  }
  if (needs_grad(weight)) {
    // Each looked-up row's gradient adds into that row of a zero (V,D) table.
    record(op, {weight}, y, [ic, V, D, L](const Tensor& g) {
      Tensor gc = contiguous_nograd(g);
      if (on_cuda(gc)) {  // every row of dw is written (zeros where no index points)
        Tensor dw = Tensor::empty({V, D}, g.dtype(), g.device());
        MG_CUDA("embedding", cuda::cuda_embedding_backward(g.dtype(), gc.raw_device_data(), ic.device_data_ptr<int64_t>(),
                                                           V, L, D, dw.raw_device_data(), cuda::stream_of(dw)));
        return std::vector<Tensor>{dw};
      }
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
  const uint64_t seed = g.seed(), first = g.advance_batch((uint64_t)x.numel(), op);
  Tensor xc = contiguous_nograd(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mask = Tensor::empty(x.shape(), DType::Bool, x.device());
  if (on_cuda(x))  // the same Philox stream as the CPU: the same mask for the same generator state
    MG_CUDA(op, cuda::cuda_dropout_forward(x.dtype(), xc.raw_device_data(), y.raw_device_data(),
                                           mask.device_data_ptr<bool>(), x.numel(), p, seed, first, cuda::stream_of(y)));
  else
    dispatch_float(op, x.dtype(), [&]<typename T>() {
      cpu::dropout_forward<T>(y.data_ptr<T>(), mask.data_ptr<bool>(), xc.data_ptr<T>(), x.numel(), p, seed, first);
    });
  if (needs_grad(x)) {
    // The saved mask (1 byte per element) and the same 1/(1-p) scale.
    record(op, {x}, y, [mask, p](const Tensor& gr) {
      Tensor gc = contiguous_nograd(gr);
      Tensor dx = Tensor::empty(mask.shape(), gr.dtype(), gr.device());
      if (on_cuda(dx))
        MG_CUDA("dropout", cuda::cuda_dropout_backward(gr.dtype(), gc.raw_device_data(), mask.device_data_ptr<bool>(),
                                                       dx.raw_device_data(), mask.numel(), p, cuda::stream_of(dx)));
      else
        dispatch_float("dropout", gr.dtype(), [&]<typename T>() {
          cpu::dropout_backward<T>(dx.data_ptr<T>(), gc.data_ptr<T>(), mask.data_ptr<bool>(), mask.numel(), p);
        });
      return std::vector<Tensor>{dx};
    });
  }
  return y;
}

}  // namespace megagrad
