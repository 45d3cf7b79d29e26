// Shared by the fused self-attention (mega/attention/) and cross-attention (mega/cross_attention/)
// ops: how a q, k or v tensor reaches a kernel, and the dropout counters of one call.
#pragma once
#include <cstdint>
#include <string_view>
#include "autograd/checks.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "mega/attention/attention.h"  // RelPosBias
#include "mega/attention/attention_types.h"

namespace megagrad::attention_rows {

// The kernels read rows with unit stride along the last dim and a row stride >= its width
// (contiguous tensors and transposed time-major views qualify); anything else is copied.
inline Tensor rows_ready(const Tensor& t) {
  Tensor d = t.detach();
  if (d.strides()[2] == 1 && (d.size(1) == 1 || d.strides()[1] >= d.size(2))) return d;
  return d.contiguous();
}
template <typename T> AttentionRows<T> rows_of(const Tensor& t) {
  return {t.device_data_ptr<T>(), t.strides()[0], t.size(1) == 1 ? t.size(2) : t.strides()[1]};
}

// The rotary bias's parameters: alpha and beta (1, Z) of q's dtype and device, and Z even.
inline void check_rotary_bias(std::string_view op, const RelPosBias& bias, const Tensor& q, int64_t Z) {
  for (const Tensor* t : {&bias.alpha, &bias.beta}) {
    check_defined(op, *t, "the rotary bias's alpha/beta");
    MG_CHECK(t->dtype() == q.dtype() && t->device() == q.device(), op,
             "rotary alpha/beta {} must have q's dtype and device ({})", t->desc(), q.desc());
    MG_CHECK(t->shape() == (Shape{1, Z}), op, "rotary alpha/beta must be (1,{}) for Z = {}, got {}", Z, Z, t->desc());
  }
  MG_CHECK(Z % 2 == 0, op, "odd Z = {} with the rotary bias: it rotates pairs (x1, x2), so Z must be even", Z);
}

struct Dropout {
  double p = 0;
  uint64_t seed = 0, first = 0;
};

// Reserves `count` counters (one per score) of the generator's stream for one call's dropout
// mask; none when not training or p = 0. `op` names the call in the generator's errors.
inline Dropout draw_dropout(bool training, double p, Generator* generator, uint64_t count, const char* op) {
  if (!training || p == 0.0) return {};
  Generator& g = generator ? *generator : default_generator();
  Dropout d{p, g.seed(), 0};
  d.first = g.advance_batch(count, op);
  return d;
}

}  // namespace megagrad::attention_rows
