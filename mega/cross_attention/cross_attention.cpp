// The fused cross-attention op: input checks, the (L+S-1) bias table, the CPU kernel
// (cross_attention_cpu.h) and, just below it, the backward closure (derivation in
// cross_attention.md). A CUDA tensor runs the composed reference at the end of the file, on its
// device.
#include "mega/cross_attention/cross_attention.h"
#include <cmath>
#include "autograd/checks.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "mega/attention/attention_rows.h"
#include "core/dispatch.h"
#include "mega/attention/rotary_bias.h"
#include "mega/cross_attention/cross_attention_cpu.h"

namespace megagrad {

namespace {

constexpr std::string_view kOp = "cross_attention";
using cross_attention_cpu::CrossAttentionProblem;
using cross_attention_cpu::CrossAttentionShape;

struct Checked : CrossAttentionShape {
  int64_t M;  // simple bias: the weight has 2M-1 entries
  int64_t C;  // max(L, S): the official rel_pos_bias(max(L, S))
  bool rotary;
};

Checked check_cross_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                              const RelPosBias& bias, const CrossAttentionOptions& o) {
  const std::string_view op = kOp;
  check_float(op, q);
  check_float(op, k);
  check_float(op, v);
  MG_CHECK(q.dim() == 3, op, "q must be (B, L, Z), got {}", q.desc());
  MG_CHECK(k.dim() == 3 && k.size(0) == q.size(0) && k.size(2) == q.size(2), op,
           "k must be (B, S, Z) = ({},S,{}) as q {}, got k {}", q.size(0), q.size(2), q.desc(), k.desc());
  MG_CHECK(v.dim() == 3 && v.size(0) == k.size(0) && v.size(1) == k.size(1), op,
           "v must be (B, S, H) = ({},{},H) as k {}, got v {}", k.size(0), k.size(1), k.desc(), v.desc());
  for (const Tensor* t : {&k, &v})
    MG_CHECK(t->dtype() == q.dtype() && t->device() == q.device(), op,
             "q {}, k {} and v {} must have the same dtype and device", q.desc(), k.desc(), v.desc());
  Checked c{};
  c.B = q.size(0), c.L = q.size(1), c.S = k.size(1), c.Z = q.size(2), c.H = v.size(2);
  MG_CHECK(c.L >= 1 && c.S >= 1 && c.Z >= 1 && c.H >= 1, op, "empty q {}, k {} or v {}", q.desc(), k.desc(),
           v.desc());
  c.C = std::max(c.L, c.S);
  if (mask.defined()) {
    MG_CHECK(mask.dtype() == q.dtype() && mask.device() == q.device(), op,
             "key_padding_mask {} must have q's dtype and device ({})", mask.desc(), q.desc());
    MG_CHECK(mask.shape() == (Shape{c.B, c.S}), op, "key_padding_mask must be (B, S) = ({},{}) as k {}, got {}", c.B,
             c.S, k.desc(), mask.desc());
    // On the host (a CUDA mask is copied: its path, the composed ops, reads it there anyway).
    std::vector<double> m = mask.to_vector();
    for (size_t i = 0; i < m.size(); ++i)
      MG_CHECK(m[i] == 0.0 || m[i] == 1.0, op, "key_padding_mask must hold 0 or 1 (1 = pad), found {} at ({},{})",
               m[i], (int64_t)i / c.S, (int64_t)i % c.S);
  }
  MG_CHECK(o.dropout >= 0.0 && o.dropout < 1.0, op, "dropout must be in [0, 1), got {}", o.dropout);
  c.rotary = bias.kind == RelPosBias::Kind::Rotary;
  if (c.rotary) {
    attention_rows::check_rotary_bias(op, bias, q, c.Z);
    c.M = 0;
  } else {
    c.M = o.max_positions;
    MG_CHECK(c.M >= 1, op, "the simple bias needs max_positions >= 1, got {}", o.max_positions);
    MG_CHECK(c.C <= c.M, op, "target length L={} or source length S={} exceeds max_positions {} (q {}, k {})", c.L,
             c.S, c.M, q.desc(), k.desc());
    check_defined(op, bias.weight, "the simple bias's weight");
    MG_CHECK(bias.weight.dtype() == q.dtype() && bias.weight.device() == q.device(), op,
             "bias weight {} must have q's dtype and device ({})", bias.weight.desc(), q.desc());
    MG_CHECK(bias.weight.shape() == Shape{2 * c.M - 1}, op,
             "the simple bias weight must be ({}) = 2M-1 for M = {}, got {}", 2 * c.M - 1, c.M, bias.weight.desc());
  }
  return c;
}

// bias[i, j] = rel[L-1 + j - i], j - i in [-(L-1), S-1] (cross_attention.md, "Toeplitz slice").
std::vector<double> bias_table(const RelPosBias& bias, const Checked& c) {
  std::vector<double> rel((size_t)(c.L + c.S - 1));
  if (c.rotary) {
    const std::vector<double> full = rotary_bias_table(bias.alpha, bias.beta, c.C);  // full[C-1 + e]
    for (size_t t = 0; t < rel.size(); ++t) rel[t] = full[(size_t)(c.C - c.L) + t];
  } else {
    const std::vector<double> w = bias.weight.to_vector();
    for (size_t t = 0; t < rel.size(); ++t) rel[t] = w[(size_t)(c.M - c.L) + t];
  }
  return rel;
}

using attention_rows::Dropout;
using attention_rows::rows_of;
using attention_rows::rows_ready;

// Reserves the counters of one call's dropout mask: one per score.
Dropout draw_dropout(const Checked& c, const CrossAttentionOptions& o) {
  return attention_rows::draw_dropout(o.training, o.dropout, o.generator, (uint64_t)(c.B * c.L * c.S), "cross_attention");
}

template <typename T>
CrossAttentionProblem<T> make_problem(const Checked& c, const CrossAttentionOptions& o, const Dropout& drop,
                                      const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                      const Tensor& rel) {
  CrossAttentionProblem<T> pr;
  pr.d = c;
  pr.act = o.activation;
  pr.q = rows_of<T>(q), pr.k = rows_of<T>(k), pr.v = rows_of<T>(v);
  if (mask.defined()) pr.mask = mask.data_ptr<T>(), pr.msb = mask.strides()[0], pr.msl = mask.strides()[1];
  pr.rel = rel.data_ptr<T>();
  pr.softmax_scale = std::pow((double)c.Z, -0.5);
  pr.p = drop.p, pr.seed = drop.seed, pr.first = drop.first;
  return pr;
}

Tensor composed(const Checked& c, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                const RelPosBias& bias, const CrossAttentionOptions& o);

}  // namespace

Tensor cross_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& mask_in,
                       const RelPosBias& bias, const CrossAttentionOptions& o) {
  const Checked c = check_cross_attention(q_in, k_in, v_in, mask_in, bias, o);
  // No fused CUDA kernel yet: the composed ops, each on the device.
  if (!q_in.device().is_cpu()) return composed(c, q_in, k_in, v_in, mask_in, bias, o);
  Tensor q = rows_ready(q_in), k = rows_ready(k_in), v = rows_ready(v_in);
  Tensor mask = mask_in.defined() ? mask_in.detach() : Tensor();
  const bool softmax = o.activation == AttentionActivation::Softmax;
  const Dropout drop = draw_dropout(c, o);
  const DType dt = q.dtype();
  const Tensor rel = Tensor::from_vector(bias_table(bias, c), {c.L + c.S - 1}, dt);
  Tensor out = Tensor::empty({c.B, c.L, c.H}, dt);
  Tensor lse = softmax ? Tensor::empty({c.B, c.L}, dt) : Tensor();
  dispatch_float(kOp, dt, [&]<typename T>() {
    const CrossAttentionProblem<T> pr = make_problem<T>(c, o, drop, q, k, v, mask, rel);
    cross_attention_cpu::forward<T>(pr, out.data_ptr<T>(), softmax ? lse.data_ptr<T>() : nullptr);
  });

  const Tensor& w = bias.weight;
  const Tensor& alpha = bias.alpha;
  const Tensor& beta = bias.beta;
  if (!needs_grad({&q_in, &k_in, &v_in, &w, &alpha, &beta})) return out;
  const bool need_q = wants_grad(q_in), need_k = wants_grad(k_in), need_v = wants_grad(v_in);
  const bool need_bias = c.rotary ? wants_grad(alpha) || wants_grad(beta) : wants_grad(w);
  const Tensor a_saved = c.rotary ? alpha.detach() : Tensor(), b_saved = c.rotary ? beta.detach() : Tensor();
  record("cross_attention",
         {q_in, k_in, v_in, c.rotary ? Tensor() : w, c.rotary ? alpha : Tensor(), c.rotary ? beta : Tensor()}, out,
         [c, o, drop, need_q, need_k, need_v, need_bias, a_saved, b_saved, rel, q, k, v, mask, lse,
          out = out.detach()](const Tensor& g_out) {
           // The gradients of q, k, v and the bias table (cross_attention.md, "Backward"); only
           // those wanted are computed.
           std::vector<Tensor> grads(6);
           const DType dt = q.dtype();
           Tensor dout = g_out.contiguous();
           Tensor dq = need_q ? Tensor::empty({c.B, c.L, c.Z}, dt) : Tensor();
           Tensor dk = need_k ? Tensor::empty({c.B, c.S, c.Z}, dt) : Tensor();
           Tensor dv = need_v ? Tensor::empty({c.B, c.S, c.H}, dt) : Tensor();
           std::vector<double> drel(need_bias ? (size_t)(c.L + c.S - 1) : 0, 0.0);
           dispatch_float(kOp, dt, [&]<typename T>() {
             const CrossAttentionProblem<T> pr = make_problem<T>(c, o, drop, q, k, v, mask, rel);
             AttentionGrads<T> g;
             if (need_q) g.dq = dq.data_ptr<T>();
             if (need_k) g.dk = dk.data_ptr<T>();
             if (need_v) g.dv = dv.data_ptr<T>();
             if (need_bias) g.drel = drel.data();
             cross_attention_cpu::backward<T>(pr, out.data_ptr<T>(), lse.defined() ? lse.data_ptr<T>() : nullptr,
                                              dout.data_ptr<T>(), g);
           });
           grads[0] = dq, grads[1] = dk, grads[2] = dv;
           if (!need_bias) return grads;
           if (!c.rotary) {  // rel[t] = w[M-L+t]
             std::vector<double> dw((size_t)(2 * c.M - 1), 0.0);
             for (size_t t = 0; t < drel.size(); ++t) dw[(size_t)(c.M - c.L) + t] = drel[t];
             grads[3] = Tensor::from_vector(dw, {2 * c.M - 1}, dt);
           } else {  // rel[t] = full[C-L+t], then the self-attention's table backward
             std::vector<double> dfull((size_t)(2 * c.C - 1), 0.0);
             for (size_t t = 0; t < drel.size(); ++t) dfull[(size_t)(c.C - c.L) + t] = drel[t];
             std::pair<std::vector<double>, std::vector<double>> dab =
                 rotary_bias_table_backward(a_saved, b_saved, dfull, c.C);
             grads[4] = Tensor::from_vector(dab.first, {1, c.Z}, dt);
             grads[5] = Tensor::from_vector(dab.second, {1, c.Z}, dt);
           }
           return grads;
         });
  return out;
}

// ---------------------------------------------------------------- composed reference

Tensor cross_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                 const RelPosBias& bias, const CrossAttentionOptions& o) {
  return composed(check_cross_attention(q, k, v, mask, bias, o), q, k, v, mask, bias, o);
}

namespace {
// Primitive ops, each on q's device: the official module's computation, with the constants of the
// masks (and the dropout multipliers) made on the host.
Tensor composed(const Checked& c, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                const RelPosBias& bias, const CrossAttentionOptions& o) {
  const int64_t B = c.B, L = c.L, S = c.S, Z = c.Z;
  const DType dt = q.dtype();
  const Device dev = q.device();
  auto on_dev = [&dev](const Tensor& t) { return dev.is_cpu() ? t : t.to(dev); };

  // The (L, S) bias as the official module builds it: rel_pos_bias(max(L, S))[:L, :S].
  Tensor bias_ls;
  if (!c.rotary) {
    std::vector<int64_t> idx((size_t)(L * S));
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < S; ++j) idx[(size_t)(i * S + j)] = c.M - 1 + j - i;
    bias_ls = index_select(bias.weight, 0, on_dev(Tensor::from_vector(idx, {L * S}))).reshape({L, S});
  } else {
    bias_ls = rotary_bias_composed(bias.alpha, bias.beta, c.C).narrow(0, 0, L).narrow(1, 0, S);
  }

  // Constants of b: which keys are hidden (softmax, unless every key of b is padding), the 0/1
  // key weights, and laplace/relu2's 1/n_b.
  std::vector<double> m = mask.defined() ? mask.to_vector() : std::vector<double>((size_t)(B * S), 0.0);
  std::vector<double> hide((size_t)(B * S)), keep((size_t)(B * S)), inv_n((size_t)B);
  for (int64_t b = 0; b < B; ++b) {
    int64_t npad = 0;
    for (int64_t j = 0; j < S; ++j) npad += m[(size_t)(b * S + j)] != 0;
    inv_n[(size_t)b] = 1.0 / (mask.defined() ? (double)std::max<int64_t>(1, S - npad) : (double)S);
    for (int64_t j = 0; j < S; ++j) {
      const bool pad = m[(size_t)(b * S + j)] != 0;
      hide[(size_t)(b * S + j)] = pad && npad < S;
      keep[(size_t)(b * S + j)] = pad ? 0.0 : 1.0;
    }
  }
  Tensor keep_t = on_dev(Tensor::from_vector(keep, {B, 1, S}, dt));
  Tensor P;
  if (o.activation == AttentionActivation::Softmax) {
    Tensor s = add(matmul(mul_scalar(q, std::pow((double)Z, -0.5)), k.transpose(1, 2)), bias_ls);
    Tensor hidden = on_dev(Tensor::from_vector(hide, {B, 1, S}, DType::Bool));
    P = mul(megagrad::softmax(masked_fill(s, hidden, -INFINITY), 2), keep_t);  // keep: an all-padding b gets 0
  } else {
    Tensor s = add(mul(matmul(q, k.transpose(1, 2)), on_dev(Tensor::from_vector(inv_n, {B, 1, 1}, dt))), bias_ls);
    Tensor f;
    if (o.activation == AttentionActivation::Laplace) {
      const double inv = 1.0 / (kLaplaceSigma * std::sqrt(2.0));
      f = mul_scalar(add_scalar(erf(mul_scalar(add_scalar(s, -kLaplaceMu), inv)), 1.0), 0.5);
    } else {
      f = square(relu(s));
    }
    P = mul(f, keep_t);
  }
  const Dropout drop = draw_dropout(c, o);
  if (drop.p > 0) {
    std::vector<double> dm((size_t)(B * L * S));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < L; ++i)
        for (int64_t j = 0; j < S; ++j)
          dm[(size_t)((b * L + i) * S + j)] =
              cross_attention_cpu::dropout_keep(drop.p, drop.seed, drop.first, b, i, j, L, S);
    P = mul(P, on_dev(Tensor::from_vector(dm, {B, L, S}, dt)));
  }
  return matmul(P, v);
}
}  // namespace

}  // namespace megagrad
