// The fused attention op, once for both devices: input checks, the bias table, one kernel problem
// (attention_types.h) for the CPU kernels (attention_cpu.h) or the CUDA launchers, then the
// backward closure (derivation in attention.md). At the end, the same
// function composed of primitive ops, for the tests.
#include "mega/attention/attention.h"
#include <cmath>
#include "autograd/checks.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "mega/attention/attention_rows.h"
#include "core/dispatch.h"
#include "mega/attention/attention_cpu.h"
#include "mega/attention/rotary_bias.h"
#if MEGAGRAD_HAS_CUDA
#include <cstring>
#include "backends/cuda/stream.h"
#include "backends/cuda/views.h"
#include "mega/attention/attention_cuda.h"
#include "mega/attention/rotary_bias_cuda.h"
#endif

namespace megagrad {

namespace {

constexpr std::string_view kOp = "attention";

// The kernels' shape, and the bias's.
struct Checked : AttentionShape {
  int64_t M;  // simple bias: the weight has 2M-1 entries
  bool rotary;
};

Checked check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                        const RelPosBias& bias, const AttentionOptions& o) {
  const std::string_view op = kOp;
  check_float(op, q);
  check_float(op, k);
  check_float(op, v);
  MG_CHECK(q.dim() == 3, op, "q must be (B, L, Z), got {}", q.desc());
  MG_CHECK(k.shape() == q.shape(), op, "k {} must have q's shape {}", k.desc(), shape_str(q.shape()));
  MG_CHECK(v.dim() == 3 && v.size(0) == q.size(0) && v.size(1) == q.size(1), op,
           "v must be (B, L, H) = ({},{},H) as q {}, got {}", q.size(0), q.size(1), q.desc(), v.desc());
  for (const Tensor* t : {&k, &v})
    MG_CHECK(t->dtype() == q.dtype() && t->device() == q.device(), op,
             "q {}, k {} and v {} must have the same dtype and device", q.desc(), k.desc(), v.desc());
  Checked c{};
  c.B = q.size(0), c.L = q.size(1), c.Z = q.size(2), c.H = v.size(2);
  MG_CHECK(c.L >= 1 && c.Z >= 1 && c.H >= 1, op, "empty q {} or v {}", q.desc(), v.desc());
  if (mask.defined()) {
    MG_CHECK(mask.dtype() == q.dtype() && mask.device() == q.device(), op,
             "padding_mask {} must have q's dtype and device ({})", mask.desc(), q.desc());
    MG_CHECK(mask.shape() == (Shape{c.B, c.L}), op, "padding_mask must be ({},{}), got {}", c.B, c.L, mask.desc());
    if (mask.device().is_cpu()) {
      std::vector<double> m = mask.to_vector();
      for (size_t i = 0; i < m.size(); ++i)
        MG_CHECK(m[i] == 0.0 || m[i] == 1.0, op, "padding_mask must hold 0 or 1 (1 = pad), found {} at ({},{})",
                 m[i], (int64_t)i / c.L, (int64_t)i % c.L);
    } else {
#if MEGAGRAD_HAS_CUDA
      // On the device, without synchronising: a bad value is reported at the next synchronisation
      // (backends/cuda/deferred_check.h). The kernels read any value safely (pad = value != 0).
      const int64_t L = c.L;
      const cuda::DeferredCheck chk = cuda::defer_check(mask.device().index, op, [L](int64_t i, int64_t bits) {
        double v;
        std::memcpy(&v, &bits, sizeof v);
        return fmt::format("padding_mask must hold 0 or 1 (1 = pad), found {} at ({},{})", v, i / L, i % L);
      });
      cuda::cuda_binary_values_check_deferred(mask.dtype(), cuda::make_view(mask), chk, cuda::stream_of(mask));
#endif
    }
  }
  MG_CHECK(o.dropout >= 0.0 && o.dropout < 1.0, op, "dropout must be in [0, 1), got {}", o.dropout);
  // Chunks: C = chunk_size when 0 < chunk_size < L, else the whole sequence.
  const bool chunking = o.chunk_size > 0;
  c.C = chunking && o.chunk_size < c.L ? o.chunk_size : c.L;
  MG_CHECK(c.L % c.C == 0, op, "sequence length L={} is not a multiple of the chunk size {}", c.L, c.C);
  c.NC = c.L / c.C;
  c.rotary = bias.kind == RelPosBias::Kind::Rotary;
  if (c.rotary) {
    attention_rows::check_rotary_bias(op, bias, q, c.Z);
    c.M = 0;
  } else {
    // As the official module: M = the chunk size when chunking (even when it exceeds L), else
    // max_positions; a chunk longer than M has no bias entries.
    c.M = chunking ? o.chunk_size : o.max_positions;
    MG_CHECK(c.M >= 1, op, "the simple bias needs max_positions >= 1 when not chunking, got {}", o.max_positions);
    MG_CHECK(c.C <= c.M, op, "sequence length {} exceeds max_positions {}", c.C, c.M);
    check_defined(op, bias.weight, "the simple bias's weight");
    MG_CHECK(bias.weight.dtype() == q.dtype() && bias.weight.device() == q.device(), op,
             "bias weight {} must have q's dtype and device ({})", bias.weight.desc(), q.desc());
    MG_CHECK(bias.weight.shape() == Shape{2 * c.M - 1}, op,
             "the simple bias weight must be ({}) = 2M-1 for M = {}, got {}", 2 * c.M - 1, c.M, bias.weight.desc());
  }
  return c;
}

// The bias of one chunk depends on j - i only (both kinds), so it is a table of 2C-1 values:
// bias[i, j] = rel[C-1 + j - i]. Simple: a slice of the weight. Rotary: rotary_bias.h.
std::vector<double> bias_table(const RelPosBias& bias, const Checked& c) {
  if (c.rotary) return rotary_bias_table(bias.alpha, bias.beta, c.C);
  std::vector<double> w = bias.weight.to_vector(), rel((size_t)(2 * c.C - 1));
  for (int64_t t = 0; t < 2 * c.C - 1; ++t) rel[(size_t)t] = w[(size_t)(c.M - c.C + t)];
  return rel;
}

// bias_table built on the device from the parameters (no round trip through the host): simple, a
// copy of the weight's slice (the same values); rotary, by a kernel with the host's formulas
// (rotary_coeffs.h).
Tensor device_bias_table(const RelPosBias& bias, const Checked& c) {
#if MEGAGRAD_HAS_CUDA
  const Tensor& like = c.rotary ? bias.alpha : bias.weight;
  Tensor rel = Tensor::empty({2 * c.C - 1}, like.dtype(), like.device());
  if (!c.rotary) {
    rel.copy_(bias.weight.detach().narrow(0, c.M - c.C, 2 * c.C - 1));
    return rel;
  }
  Tensor a = bias.alpha.detach().contiguous(), b = bias.beta.detach().contiguous();
  dispatch_float(kOp, rel.dtype(), [&]<typename T>() {
    rotary_cuda::bias_table<T>(a.device_data_ptr<T>(), b.device_data_ptr<T>(), c.Z, c.C, rel.device_data_ptr<T>(),
                               cuda_stream(rel.device().index));
  });
  return rel;
#else
  (void)bias;
  fail(kOp, "the bias of a {} tensor: megagrad was built without CUDA", c.rotary ? "rotary" : "simple");
#endif
}

using attention_rows::Dropout;
using attention_rows::rows_of;
using attention_rows::rows_ready;

// Reserves the counters of one call's dropout mask: one per score.
Dropout draw_dropout(const Checked& c, const AttentionOptions& o) {
  return attention_rows::draw_dropout(o.training, o.dropout, o.generator, (uint64_t)(c.B * c.NC * c.C * c.C), "attention");
}

// The kernels' view of one call, on the tensors' device (host or device pointers alike).
template <typename T>
AttentionProblem<T> make_problem(const Checked& c, const AttentionOptions& o, const Dropout& drop, const Tensor& q,
                                 const Tensor& k, const Tensor& v, const Tensor& mask, const Tensor& rel) {
  AttentionProblem<T> pr;
  pr.d = c;
  pr.act = o.activation;
  pr.causal = o.causal;
  pr.q = rows_of<T>(q), pr.k = rows_of<T>(k), pr.v = rows_of<T>(v);
  if (mask.defined()) pr.mask = mask.device_data_ptr<T>(), pr.msb = mask.strides()[0], pr.msl = mask.strides()[1];
  pr.rel = rel.device_data_ptr<T>();
  pr.softmax_scale = std::pow((double)c.Z, -0.5);
  pr.p = drop.p, pr.seed = drop.seed, pr.first = drop.first;
  return pr;
}

}  // namespace

Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& mask_in,
                 const RelPosBias& bias, const AttentionOptions& o) {
  const Checked c = check_attention(q_in, k_in, v_in, mask_in, bias, o);
  Tensor q = rows_ready(q_in), k = rows_ready(k_in), v = rows_ready(v_in);
  Tensor mask = mask_in.defined() ? mask_in.detach() : Tensor();
  const bool softmax = o.activation == AttentionActivation::Softmax;
  const Dropout drop = draw_dropout(c, o);
  DType dt = q.dtype();
  const Device dev = q.device();
#if !MEGAGRAD_HAS_CUDA
  if (!dev.is_cpu()) fail(kOp, "{} is not on the cpu, and megagrad was built without CUDA", q.desc());
#endif
  // The bias table in the kernels' dtype, on their device; the backward reuses it.
  const Tensor rel = dev.is_cpu() ? Tensor::from_vector(bias_table(bias, c), {2 * c.C - 1}, dt)
                                  : device_bias_table(bias, c);
  Tensor out = Tensor::empty({c.B, c.L, c.H}, dt, dev);
  Tensor lse = softmax ? Tensor::empty({c.B, c.L}, dt, dev) : Tensor();
  dispatch_float(kOp, dt, [&]<typename T>() {
    const AttentionProblem<T> pr = make_problem<T>(c, o, drop, q, k, v, mask, rel);
    T* lse_p = softmax ? lse.device_data_ptr<T>() : nullptr;
    if (dev.is_cpu()) {
      attention_cpu::forward<T>(pr, out.device_data_ptr<T>(), lse_p);
    } else {
#if MEGAGRAD_HAS_CUDA
      attention_cuda::forward<T>(pr, out.device_data_ptr<T>(), lse_p, cuda_stream(dev.index));
#endif
    }
  });

  const Tensor& w = bias.weight;
  const Tensor& alpha = bias.alpha;
  const Tensor& beta = bias.beta;
  if (!needs_grad({&q_in, &k_in, &v_in, &w, &alpha, &beta})) return out;
  const bool need_q = wants_grad(q_in), need_k = wants_grad(k_in), need_v = wants_grad(v_in);
  const bool need_bias = c.rotary ? wants_grad(alpha) || wants_grad(beta) : wants_grad(w);
  RelPosBias saved{bias.kind, c.rotary ? Tensor() : w.detach(), c.rotary ? alpha.detach() : Tensor(),
                   c.rotary ? beta.detach() : Tensor()};
  record("attention", {q_in, k_in, v_in, c.rotary ? Tensor() : w, c.rotary ? alpha : Tensor(),
                       c.rotary ? beta : Tensor()},
         out,
         [c, o, drop, need_q, need_k, need_v, need_bias, saved, rel, q, k, v, mask, lse,
          out = out.detach()](const Tensor& g_out) {
    std::vector<Tensor> grads(6);
    const DType dt = q.dtype();
    const Device dev = q.device();
    Tensor dout = g_out.contiguous();
    // Uninitialised: the kernels write every row. drel: zeroed, (2C-1) doubles.
    Tensor dq = need_q ? Tensor::empty({c.B, c.L, c.Z}, dt, dev) : Tensor();
    Tensor dk = need_k ? Tensor::empty({c.B, c.L, c.Z}, dt, dev) : Tensor();
    Tensor dv = need_v ? Tensor::empty({c.B, c.L, c.H}, dt, dev) : Tensor();
    Tensor drel_t = need_bias ? Tensor::zeros({2 * c.C - 1}, DType::Float64, dev) : Tensor();
    dispatch_float(kOp, dt, [&]<typename T>() {
      const AttentionProblem<T> pr = make_problem<T>(c, o, drop, q, k, v, mask, rel);
      AttentionGrads<T> g;
      if (need_q) g.dq = dq.device_data_ptr<T>();
      if (need_k) g.dk = dk.device_data_ptr<T>();
      if (need_v) g.dv = dv.device_data_ptr<T>();
      if (need_bias) g.drel = drel_t.device_data_ptr<double>();
      const T* lse_p = lse.defined() ? lse.device_data_ptr<T>() : nullptr;
      if (dev.is_cpu()) {
        attention_cpu::backward<T>(pr, out.device_data_ptr<T>(), lse_p, dout.device_data_ptr<T>(), g);
      } else {
#if MEGAGRAD_HAS_CUDA
        const size_t bytes = attention_cuda::backward_workspace_bytes<T>(pr, g);
        Tensor ws = Tensor::empty({(int64_t)((bytes + 7) / 8)}, DType::Float64, dev);  // from the caching allocator
        attention_cuda::backward<T>(pr, out.device_data_ptr<T>(), lse_p, dout.device_data_ptr<T>(), g,
                                    bytes ? ws.raw_device_data() : nullptr, bytes, cuda_stream(dev.index));
#endif
      }
    });
    grads[0] = dq, grads[1] = dk, grads[2] = dv;
    if (!need_bias) return grads;
    if (!dev.is_cpu()) {  // on the device, as the host below computes it
#if MEGAGRAD_HAS_CUDA
      if (!c.rotary) {
        grads[3] = Tensor::zeros({2 * c.M - 1}, dt, dev);
        grads[3].narrow(0, c.M - c.C, 2 * c.C - 1).copy_(drel_t);  // (T) of the double sums, as from_vector
      } else {
        Tensor a = saved.alpha.contiguous(), b = saved.beta.contiguous();
        grads[4] = Tensor::empty({1, c.Z}, dt, dev);
        grads[5] = Tensor::empty({1, c.Z}, dt, dev);
        dispatch_float(kOp, dt, [&]<typename T>() {
          rotary_cuda::bias_table_backward<T>(a.device_data_ptr<T>(), b.device_data_ptr<T>(),
                                              drel_t.device_data_ptr<double>(), c.Z, c.C,
                                              grads[4].device_data_ptr<T>(), grads[5].device_data_ptr<T>(),
                                              cuda_stream(dev.index));
        });
      }
#endif
      return grads;
    }
    const std::vector<double> drel = drel_t.to_vector();
    if (!c.rotary) {
      // rel[t] = w[M-C+t]: the table's gradient lands on that slice of the weight.
      std::vector<double> dw((size_t)(2 * c.M - 1), 0.0);
      for (int64_t t = 0; t < 2 * c.C - 1; ++t) dw[(size_t)(c.M - c.C + t)] = drel[(size_t)t];
      grads[3] = Tensor::from_vector(dw, {2 * c.M - 1}, dt);
    } else {
      auto [da, db] = rotary_bias_table_backward(saved.alpha, saved.beta, drel, c.C);
      grads[4] = Tensor::from_vector(da, {1, c.Z}, dt);
      grads[5] = Tensor::from_vector(db, {1, c.Z}, dt);
    }
    return grads;
  });
  return out;
}

// ---------------------------------------------------------------- composed reference

Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                           const RelPosBias& bias, const AttentionOptions& o) {
  Checked c = check_attention(q, k, v, mask, bias, o);
  const int64_t B = c.B, C = c.C, NC = c.NC, Z = c.Z, H = c.H, BN = c.B * c.NC;
  const DType dt = q.dtype();
  const bool softmax = o.activation == AttentionActivation::Softmax;

  // The (C, C) bias, as the official modules build it.
  Tensor bias_cc;
  if (!c.rotary) {
    std::vector<int64_t> idx((size_t)(C * C));
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) idx[(size_t)(i * C + j)] = c.M - 1 + j - i;
    bias_cc = index_select(bias.weight, 0, Tensor::from_vector(idx, {C * C})).reshape({C, C});
  } else {
    bias_cc = rotary_bias_composed(bias.alpha, bias.beta, C);
  }

  // Per-(b, chunk) masks as constants: which scores are dropped, and laplace/relu2's 1/n.
  std::vector<double> m = mask.defined() ? mask.to_vector() : std::vector<double>((size_t)(B * c.L), 0.0);
  std::vector<uint8_t> hide((size_t)(BN * C * C));
  std::vector<double> keep((size_t)(BN * C * C)), inv_n((size_t)(BN * C));
  for (int64_t bc = 0; bc < BN; ++bc) {
    int64_t npad = 0;
    for (int64_t j = 0; j < C; ++j) npad += m[(size_t)(bc * C + j)] != 0;
    for (int64_t i = 0; i < C; ++i) {
      inv_n[(size_t)(bc * C + i)] =
          1.0 / (o.causal ? (double)(i + 1) : mask.defined() ? (double)std::max<int64_t>(1, C - npad) : (double)C);
      for (int64_t j = 0; j < C; ++j) {
        bool pad = m[(size_t)(bc * C + j)] != 0;
        bool causal_hidden = o.causal && j > i;
        size_t e = (size_t)((bc * C + i) * C + j);
        hide[e] = causal_hidden || (pad && npad < C);  // softmax: an all-padding chunk is not masked
        keep[e] = causal_hidden || pad ? 0.0 : 1.0;    // laplace/relu2: masks multiply
      }
    }
  }

  Tensor q3 = q.reshape({BN, C, Z}), k3 = k.reshape({BN, C, Z}), v3 = v.reshape({BN, C, H});
  Tensor P;
  if (softmax) {
    Tensor s = add(matmul(mul_scalar(q3, std::pow((double)Z, -0.5)), k3.transpose(1, 2)), bias_cc);
    Tensor hidden = Tensor::from_vector(std::vector<double>(hide.begin(), hide.end()), {BN, C, C}, DType::Bool);
    P = megagrad::softmax(masked_fill(s, hidden, -INFINITY), 2);
  } else {
    Tensor s = add(mul(matmul(q3, k3.transpose(1, 2)), Tensor::from_vector(inv_n, {BN, C, 1}, dt)), bias_cc);
    Tensor f;
    if (o.activation == AttentionActivation::Laplace) {
      const double inv = 1.0 / (kLaplaceSigma * std::sqrt(2.0));
      f = mul_scalar(add_scalar(erf(mul_scalar(add_scalar(s, -kLaplaceMu), inv)), 1.0), 0.5);
    } else {
      f = square(relu(s));
    }
    P = mul(f, Tensor::from_vector(keep, {BN, C, C}, dt));
  }
  const Dropout drop = draw_dropout(c, o);
  if (drop.p > 0) {
    std::vector<double> dm((size_t)(BN * C * C));
    for (int64_t bc = 0; bc < BN; ++bc)
      for (int64_t i = 0; i < C; ++i)
        for (int64_t j = 0; j < C; ++j)
          dm[(size_t)((bc * C + i) * C + j)] =
              attention_cpu::dropout_keep(drop.p, drop.seed, drop.first, bc / NC, bc % NC, i, j, NC, C);
    P = mul(P, Tensor::from_vector(dm, {BN, C, C}, dt));
  }
  return matmul(P, v3).reshape({B, c.L, H});
}

}  // namespace megagrad
