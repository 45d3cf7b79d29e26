// The fused gate ops of MovingAverageGatedAttention: input checks, the forward kernel, then the
// backward closure (kernels in gates_cpu.h; on a CUDA device both ops run the composed ops below,
// which have device kernels of their own).
#include "mega/gates/gates.h"
#include <vector>
#include "autograd/checks.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/dispatch.h"
#include "mega/gates/gates_cpu.h"

namespace megagrad {

namespace {

// Channels at unit stride; B and L may have any strides.
Tensor unit_channel_stride(const Tensor& t) { return t.strides()[2] == 1 ? t : t.contiguous(); }

template <typename T>
gates_cpu::Rows<T> rows(const Tensor& t) {
  return {t.data_ptr<T>(), t.strides()[0], t.strides()[1]};
}

gates_cpu::Dims check_input_gates(const Tensor& x, const Tensor& gamma, const Tensor& beta, int64_t D) {
  constexpr std::string_view op = "input_gates";
  check_float(op, x);
  MG_CHECK(x.dim() == 3, op, "x must be (B, L, D + Z + H), got {}", x.desc());
  for (const Tensor* t : {&gamma, &beta}) {
    check_defined(op, *t, "gamma/beta");
    MG_CHECK(t->dtype() == x.dtype() && t->device() == x.device(), op,
             "gamma/beta {} does not match x {} (dtype and device must agree)", t->desc(), x.desc());
  }
  MG_CHECK(gamma.dim() == 2 && gamma.size(0) == 2 && gamma.size(1) >= 1, op, "gamma must be (2, Z), got {}",
           gamma.desc());
  MG_CHECK(beta.shape() == gamma.shape(), op, "beta must have gamma's shape {}, got {}", gamma.desc(), beta.desc());
  const int64_t Z = gamma.size(1);
  MG_CHECK(D >= 1 && x.size(2) > D + Z, op,
           "x {} must have D + Z + H columns with D = {}, Z = {} (from gamma {}) and H >= 1", x.desc(), D, Z,
           gamma.desc());
  return {x.size(0), x.size(1), D, Z, x.size(2) - D - Z};
}

gates_cpu::Dims check_output_gate(const Tensor& hx, const Tensor& hp, const Tensor& u, const Tensor& res) {
  constexpr std::string_view op = "output_gate";
  check_float(op, hx);
  MG_CHECK(hx.dim() == 3, op, "hx must be (B, L, D), got {}", hx.desc());
  for (const Tensor* t : {&hp, &u, &res}) {
    check_float(op, *t);
    MG_CHECK(t->dtype() == hx.dtype() && t->device() == hx.device(), op,
             "{} does not match hx {} (dtype and device must agree)", t->desc(), hx.desc());
    MG_CHECK(t->shape() == hx.shape(), op, "hp, u and residual must have hx's shape {}, got {}", hx.desc(),
             t->desc());
  }
  return {hx.size(0), hx.size(1), hx.size(2), 0, 0};
}

}  // namespace

// ---------------------------------------------------------------- input gates

InputGates input_gates(const Tensor& x_in, const Tensor& gamma_in, const Tensor& beta_in, int64_t D) {
  const gates_cpu::Dims s = check_input_gates(x_in, gamma_in, beta_in, D);
  if (on_cuda(x_in)) return input_gates_reference(x_in, gamma_in, beta_in, D);
  Tensor x = unit_channel_stride(x_in);
  Tensor gamma = gamma_in.contiguous(), beta = beta_in.contiguous();
  Tensor packed = Tensor::empty({s.B, s.L, s.P()}, x.dtype());
  dispatch_float("input_gates", x.dtype(), [&]<typename T>() {
    gates_cpu::input_gates_forward<T>(s, rows<T>(x), gamma.data_ptr<T>(), beta.data_ptr<T>(), packed.data_ptr<T>());
  });
  if (needs_grad({&x_in, &gamma_in, &beta_in})) {
    const bool need_x = wants_grad(x_in), need_params = wants_grad(gamma_in) || wants_grad(beta_in);
    record("input_gates", {x_in, gamma_in, beta_in}, packed,
           [s, need_x, need_params, x = x.detach(), gamma = gamma.detach(), out = packed.detach()](const Tensor& g_in) {
      std::vector<Tensor> grads(3);
      Tensor g = g_in.contiguous();
      dispatch_float("input_gates", x.dtype(), [&]<typename T>() {
        // dx: the three columns' elementwise derivatives; dgamma, dbeta: sums over the rows (gates.md)
        Tensor dx = need_x ? Tensor::empty({s.B, s.L, s.C()}, x.dtype()) : Tensor();
        std::vector<double> dparams(need_params ? (size_t)(4 * s.Z) : 0);
        gates_cpu::input_gates_backward<T>(s, rows<T>(x), gamma.data_ptr<T>(), out.data_ptr<T>(), g.data_ptr<T>(),
                                           need_x ? dx.data_ptr<T>() : nullptr,
                                           need_params ? dparams.data() : nullptr);
        grads[0] = dx;
        if (need_params) {
          grads[1] = Tensor::from_vector(std::vector<double>(dparams.begin(), dparams.begin() + 2 * s.Z), {2, s.Z},
                                         x.dtype());
          grads[2] = Tensor::from_vector(std::vector<double>(dparams.begin() + 2 * s.Z, dparams.end()), {2, s.Z},
                                         x.dtype());
        }
      });
      return grads;
    });
  }
  InputGates out;
  out.packed = packed;
  out.u = packed.narrow(2, 0, s.D);
  out.r = packed.narrow(2, s.D, s.H);
  out.q = packed.narrow(2, s.D + s.H, s.Z);
  out.k = packed.narrow(2, s.D + s.H + s.Z, s.Z);
  return out;
}

// ---------------------------------------------------------------- output gate

Tensor output_gate(const Tensor& hx_in, const Tensor& hp_in, const Tensor& u_in, const Tensor& res_in) {
  const gates_cpu::Dims s = check_output_gate(hx_in, hp_in, u_in, res_in);
  if (on_cuda(hx_in)) return output_gate_reference(hx_in, hp_in, u_in, res_in);
  Tensor hx = unit_channel_stride(hx_in), hp = unit_channel_stride(hp_in), u = unit_channel_stride(u_in),
         res = unit_channel_stride(res_in);
  Tensor out = Tensor::empty({s.B, s.L, s.D}, hx.dtype());
  dispatch_float("output_gate", hx.dtype(), [&]<typename T>() {
    gates_cpu::output_gate_forward<T>(s, rows<T>(hx), rows<T>(hp), rows<T>(u), rows<T>(res), out.data_ptr<T>());
  });
  if (needs_grad({&hx_in, &hp_in, &u_in, &res_in})) {
    const bool need_a = wants_grad(hx_in) || wants_grad(hp_in), need_u = wants_grad(u_in),
               need_res = wants_grad(res_in);
    record("output_gate", {hx_in, hp_in, u_in, res_in}, out,
           [s, need_a, need_u, need_res, hx = hx.detach(), hp = hp.detach(), u = u.detach(),
            res = res.detach()](const Tensor& g_in) {
      Tensor g = g_in.contiguous();
      auto make = [&](bool need) { return need ? Tensor::empty({s.B, s.L, s.D}, hx.dtype()) : Tensor(); };
      Tensor da = make(need_a), du = make(need_u), dres = make(need_res);
      dispatch_float("output_gate", hx.dtype(), [&]<typename T>() {
        auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; };
        gates_cpu::output_gate_backward<T>(s, rows<T>(hx), rows<T>(hp), rows<T>(u), rows<T>(res), g.data_ptr<T>(),
                                           ptr(da), ptr(du), ptr(dres));
      });
      // hx and hp enter as a sum: the same gradient (the engine never writes into a gradient)
      return std::vector<Tensor>{da, da, du, dres};
    });
  }
  return out;
}

// ---------------------------------------------------------------- composed reference

InputGates input_gates_reference(const Tensor& x, const Tensor& gamma, const Tensor& beta, int64_t D) {
  const gates_cpu::Dims s = check_input_gates(x, gamma, beta, D);
  // Slices of x: under a graph their gradients are written straight into x's gradient buffer (the
  // engine's slices; x, itself a slice of mx_proj's output in the layer, adds no level). One silu
  // over [z | r]: two over 32 and 128 columns cost more in per-row overhead than the split saves.
  InputGates g;
  g.u = sigmoid(x.narrow(-1, 0, s.D));
  const Tensor zr = silu(x.narrow(-1, s.D, s.Z + s.H));
  const Tensor z = zr.narrow(-1, 0, s.Z);
  g.r = zr.narrow(-1, s.Z, s.H);
  g.q = add(mul(z, gamma.select(0, 0)), beta.select(0, 0));
  g.k = add(mul(z, gamma.select(0, 1)), beta.select(0, 1));
  return g;
}

Tensor output_gate_reference(const Tensor& hx, const Tensor& hp, const Tensor& u, const Tensor& residual) {
  check_output_gate(hx, hp, u, residual);
  Tensor h = silu(add(hx, hp));
  return add(residual, mul(u, sub(h, residual)));
}

}  // namespace megagrad
