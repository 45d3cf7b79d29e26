// Matrix products through OpenBLAS gemm (backends/cpu/blas.h), or cuBLAS (backends/cuda/blas.h) for
// tensors on a GPU, with the same plan.
//
// An operand goes to BLAS as it lies in memory. A (rows, cols) matrix with unit column stride is
// row-major: NoTrans, ld = row stride. One with unit row stride is a row-major matrix transposed
// (a .t() view): Trans, ld = column stride. Only operands that are neither (stride-0 expands,
// slices with both strides > 1) are copied first.
//
// Batched products run one gemm per batch matrix, one after another: OpenBLAS threads each call
// itself, and megagrad never calls BLAS inside parallel_for. Two layouts fold the whole batch into
// one gemm: a right operand shared by every batch with the left operand's rows back to back
// ((B,M,K)@(K,N) as (B*M,K)@(K,N): linear, and matmul's dA), and a product summed over the batch
// whose operands lie back to back along K (the weight gradient A^T dC of a shared right operand).
#include <atomic>
#include <climits>
#include <optional>
#include <utility>
#include "autograd/checks.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "backends/cpu/blas.h"
#include "core/strided.h"
#include "backends/cuda/blas.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace megagrad {

namespace detail {
// How many operands matmul/linear had to copy before BLAS could read them. Tests use it to
// prove that contiguous and transposed operands are read in place.
std::atomic<int64_t> linalg_copies{0};
int64_t linalg_operand_copies() { return linalg_copies.load(); }
}  // namespace detail

namespace {

// How BLAS reads a (rows, cols) matrix whose elements are rs and cs apart.
struct BlasMat {
  bool trans;  // stored as the row-major transpose (cols, rows)
  int64_t ld;
};

std::optional<BlasMat> blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  // A dim of size 1 never moves its pointer, so its stride is free; ld must be >= max(1, width).
  if ((cols == 1 || cs == 1) && (rows == 1 || rs >= std::max<int64_t>(1, cols)))
    return BlasMat{false, rows == 1 ? std::max<int64_t>(1, cols) : rs};
  if ((rows == 1 || rs == 1) && (cols == 1 || cs >= std::max<int64_t>(1, rows)))
    return BlasMat{true, cols == 1 ? std::max<int64_t>(1, rows) : cs};
  return std::nullopt;
}

// Dims given as (size, stride), outer to inner, merged into one: the stride of the merged dim
// when each dim steps over the whole extent of the dims inside it; nullopt otherwise. Size-1
// dims are skipped; when every dim has size 1 the stride does not matter (returns 1).
std::optional<int64_t> merged_stride(const std::vector<std::pair<int64_t, int64_t>>& dims) {
  int64_t stride = -1, extent = 0;
  for (size_t i = dims.size(); i-- > 0;) {
    auto [size, st] = dims[i];
    if (size == 1) continue;
    if (stride < 0) {
      stride = st;
      extent = st * size;
    } else {
      if (st != extent) return std::nullopt;
      extent *= size;
    }
  }
  return stride < 0 ? 1 : stride;
}

Shape batch_of(const Shape& s) { return Shape(s.begin(), s.end() - 2); }
// Stride of dim d, counted from the end when negative.
int64_t stride_at(const Tensor& t, int64_t d) { return t.strides()[(size_t)(d < 0 ? t.dim() + d : d)]; }

void check_blas_size(int64_t v, const Tensor& a, const Tensor& b) {
  MG_CHECK(v <= INT_MAX, "matmul", "operands {} and {} exceed BLAS's 32-bit sizes", a.desc(), b.desc());
}

// C (c_batch..., M, N) = A (a_batch..., M, K) @ B (b_batch..., K, N) [+ bias (N) on every row].
// The batch dims broadcast to `full`; c_batch is either `full` or a reduction of it (dims of
// size 1, or missing on the left), and then the products of the batches it merges are summed
// (the gradient of a broadcast operand). Callers have checked shapes, dtypes and devices.
Tensor bmm(Tensor a, Tensor b, const Shape& c_batch, const Tensor& bias = Tensor()) {
  no_grad guard;  // the copies below are internal; the op records one node
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const Shape full = broadcast_shapes("matmul", batch_of(a.shape()), batch_of(b.shape()));
  MG_CHECK(c_batch.size() <= full.size() && broadcast_shapes("matmul", c_batch, full) == full,
           "matmul", "internal: output batch {} is not a reduction of {}", shape_str(c_batch),
           shape_str(full));
  const int64_t nb = numel_of(full);
  const bool reduce = numel_of(c_batch) != nb;
  Shape c_shape = c_batch;
  c_shape.push_back(M);
  c_shape.push_back(N);
  Tensor bias_c = bias.defined() ? bias.contiguous() : Tensor();

  if (numel_of(c_shape) == 0) return Tensor::empty(c_shape, a.dtype(), a.device());
  if (K == 0 || nb == 0) {  // empty sums: zeros (+ bias)
    Tensor c = Tensor::zeros(c_shape, a.dtype(), a.device());
    if (bias_c.defined()) c.add_(bias_c);
    return c;
  }
  for (Tensor* t : {&a, &b})
    if (!blas_layout(t->size(-2), t->size(-1), stride_at(*t, -2), stride_at(*t, -1))) {
      *t = t->contiguous();
      ++detail::linalg_copies;
    }
  const BlasMat la = *blas_layout(M, K, stride_at(a, -2), stride_at(a, -1));
  const BlasMat lb = *blas_layout(K, N, stride_at(b, -2), stride_at(b, -1));
  for (int64_t v : {M, N, K, la.ld, lb.ld, nb * M, nb * K}) check_blas_size(v, a, b);

  // Batch strides of A, B and C over `full` (0 where broadcast or reduced).
  const Strides as = broadcast_strides(batch_of(a.shape()), batch_of(a.strides()), full);
  const Strides bs = broadcast_strides(batch_of(b.shape()), batch_of(b.strides()), full);
  const Strides cs = broadcast_strides(c_batch, contiguous_strides(c_batch), full);
  Tensor c = (reduce && !bias_c.defined()) ? Tensor::zeros(c_shape, a.dtype(), a.device())
                                           : Tensor::empty(c_shape, a.dtype(), a.device());

  // On a GPU the same plan runs on cuBLAS (backends/cuda/blas.h, queued on the device's stream).
  const bool dev = !a.device().is_cpu();
  if (dev && bias_c.defined()) c.copy_(bias_c);  // C starts as the bias on every row
  dispatch_float("matmul", a.dtype(), [&]<typename T>() {
    const T* ap = dev ? a.device_data_ptr<T>() : a.data_ptr<T>();
    const T* bp = dev ? b.device_data_ptr<T>() : b.data_ptr<T>();
    T* cp = dev ? c.device_data_ptr<T>() : c.data_ptr<T>();
    auto mm = [&](bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* x, int64_t ldx, const T* y,
                  int64_t ldy, T beta_, T* z) {
      if (dev) cuda_gemm(ta, tb, m, n, k, T(1), x, ldx, y, ldy, beta_, z, N, a.device().index);
      else gemm(ta, tb, m, n, k, T(1), x, ldx, y, ldy, beta_, z, N);
    };
    const int64_t c_rows = numel_of(c_shape) / N;
    T beta = 0;
    if (bias_c.defined()) {  // C starts as the bias on every row; gemm adds onto it
      if (!dev) {
        const T* bi = bias_c.data_ptr<T>();
        parallel_for(c_rows, std::max<int64_t>(1, kElementwiseGrain / N), [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) std::copy(bi, bi + N, cp + r * N);
        });
      }
      beta = 1;
    }

    // Fold 1: B shared by all batches, C full: (full..., M) rows of A as one (nb*M, K) matrix.
    bool b_shared = true;
    for (int64_t s : bs) b_shared = b_shared && s == 0;
    if (!reduce && b_shared) {
      std::vector<std::pair<int64_t, int64_t>> rows;
      for (size_t d = 0; d < full.size(); ++d) rows.push_back({full[d], as[d]});
      rows.push_back({M, stride_at(a, -2)});
      if (auto rs = merged_stride(rows))
        if (auto l = blas_layout(nb * M, K, *rs, stride_at(a, -1))) {
          mm(l->trans, lb.trans, nb * M, N, K, ap, l->ld, bp, lb.ld, beta, cp);
          return;
        }
    }
    // Fold 2: everything summed into one C: sum_b A_b B_b = [A_1 .. A_nb] (M, nb*K) @ [B_1; ..; B_nb].
    if (numel_of(c_batch) == 1 && nb > 1) {
      std::vector<std::pair<int64_t, int64_t>> acols, brows;
      for (size_t d = 0; d < full.size(); ++d) {
        acols.push_back({full[d], as[d]});
        brows.push_back({full[d], bs[d]});
      }
      acols.push_back({K, stride_at(a, -1)});
      brows.push_back({K, stride_at(b, -2)});
      auto acs = merged_stride(acols), brs = merged_stride(brows);
      if (acs && brs) {
        auto l1 = blas_layout(M, nb * K, stride_at(a, -2), *acs);
        auto l2 = blas_layout(nb * K, N, *brs, stride_at(b, -1));
        if (l1 && l2) {
          mm(l1->trans, l2->trans, M, N, nb * K, ap, l1->ld, bp, l2->ld, beta, cp);
          return;
        }
      }
    }
    // GPU, C full: one strided-batched call when each operand's batch dims merge into one stride
    // (0 for an operand shared by every batch).
    if (dev && !reduce) {
      auto batch_stride = [&](const Strides& st, int64_t scale) {
        std::vector<std::pair<int64_t, int64_t>> dims;
        for (size_t d = 0; d < full.size(); ++d) dims.push_back({full[d], st[d] * scale});
        return merged_stride(dims);
      };
      auto sa = batch_stride(as, 1), sb = batch_stride(bs, 1), sc = batch_stride(cs, M * N);
      if (sa && sb && sc) {
        cuda_gemm_strided_batched(la.trans, lb.trans, M, N, K, T(1), ap, la.ld, *sa, bp, lb.ld, *sb, beta, cp,
                                  N, nb == 1 ? M * N : *sc, nb, a.device().index);
        return;
      }
    }
    // One gemm per batch matrix, walking `full` like an odometer.
    if (reduce) beta = 1;  // C was zeroed (or holds the bias): every product adds onto it
    std::vector<int64_t> idx(full.size(), 0);
    int64_t oa = 0, ob = 0, oc = 0;
    for (int64_t i = 0; i < nb; ++i) {
      mm(la.trans, lb.trans, M, N, K, ap + oa, la.ld, bp + ob, lb.ld, beta, cp + oc);
      for (size_t d = full.size(); d-- > 0;) {
        oa += as[d], ob += bs[d], oc += cs[d] * M * N;
        if (++idx[d] < full[d]) break;
        oa -= as[d] * full[d], ob -= bs[d] * full[d], oc -= cs[d] * M * N * full[d];
        idx[d] = 0;
      }
    }
  });
  return c;
}

}  // namespace

// ---------------------------------------------------------------- matmul

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_same_float("matmul", a, b);
  MG_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul",
           "shapes {} and {}: both operands need 2 or more dims (matrices, or batches of them)",
           shape_str(a.shape()), shape_str(b.shape()));
  MG_CHECK(a.size(-1) == b.size(-2), "matmul",
           "shapes {} and {} do not match: {} columns on the left, {} rows on the right",
           shape_str(a.shape()), shape_str(b.shape()), a.size(-1), b.size(-2));
  const Shape ab = batch_of(a.shape()), bb = batch_of(b.shape());
  for (size_t i = 1; i <= std::min(ab.size(), bb.size()); ++i) {
    int64_t da = ab[ab.size() - i], db = bb[bb.size() - i];
    MG_CHECK(da == db || da == 1 || db == 1, "matmul",
             "shapes {} and {} do not match: batch dims ({}) and ({}) do not broadcast",
             shape_str(a.shape()), shape_str(b.shape()), fmt::join(ab, ","), fmt::join(bb, ","));
  }
  Tensor c = bmm(a, b, broadcast_shapes("matmul", ab, bb));
  if (needs_grad(a, b)) {
    // dA = dC B^T, dB = A^T dC through transposed views (BLAS reads them in place), each summed
    // over the batches its operand was broadcast across.
    const bool na = wants_grad(a), nb = wants_grad(b);
    record("matmul", {a, b}, c, [na, nb, ab, bb, ad = nb ? a.detach() : Tensor(),
                                 bd = na ? b.detach() : Tensor()](const Tensor& g) {
      Tensor ga, gb;
      if (na) ga = bmm(g, bd.transpose(-1, -2), ab);
      if (nb) gb = bmm(ad.transpose(-1, -2), g, bb);
      return std::vector<Tensor>{ga, gb};
    });
  }
  return c;
}

// ---------------------------------------------------------------- linear

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_same_float("linear", x, weight);
  MG_CHECK(weight.dim() == 2, "linear", "weight must be (out, in), got {}", weight.desc());
  MG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear",
           "input {} does not match weight {}: expected a last dim of {}", x.desc(), weight.desc(),
           weight.size(1));
  if (bias.defined()) {
    check_same_float("linear", weight, bias);
    MG_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear",
             "bias {} does not match weight {}: expected ({})", bias.desc(), weight.desc(),
             weight.size(0));
  }
  Shape y_shape = x.shape();
  y_shape.back() = weight.size(0);
  Tensor y;
  {
    // x (..., in) @ W^T: the leading dims fold into the rows of one gemm, W^T is read in place
    // (trans_b), and the bias pre-fills the output.
    no_grad guard;
    Tensor x2 = x.dim() == 1 ? x.unsqueeze(0) : x;
    y = bmm(x2, weight.t(), batch_of(x2.shape()), bias);
    if (x.dim() == 1) y = y.view(y_shape);
  }
  if (needs_grad({&x, &weight, &bias})) {
    // dx = dy W (rows fold into one gemm); dW = dy^T x summed over every row (one gemm over the
    // rows, folded); db = dy summed over rows.
    const bool nx = wants_grad(x), nw = wants_grad(weight), nbias = wants_grad(bias);
    record("linear", {x, weight, bias}, y,
           [nx, nw, nbias, xd = nw ? x.detach() : Tensor(), wd = nx ? weight.detach() : Tensor(),
            x_shape = x.shape(), b_shape = bias.defined() ? bias.shape() : Shape{}](const Tensor& g) {
             Tensor gx, gw, gb;
             Tensor g2 = g.dim() == 1 ? g.unsqueeze(0) : g;
             if (nx) gx = bmm(g2, wd, batch_of(g2.shape())).reshape(x_shape);
             if (nw) {
               Tensor x2 = xd.dim() == 1 ? xd.unsqueeze(0) : xd;
               gw = bmm(g2.transpose(-1, -2), x2, {});
             }
             if (nbias) gb = sum_to(g, b_shape);
             return std::vector<Tensor>{gx, gw, gb};
           });
  }
  return y;
}

}  // namespace megagrad
