// being written
#include "mega/attention/attention.h"
#include "core/error.h"

namespace megagrad {
Tensor attention(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const RelPosBias&, const AttentionOptions&) {
  fail("attention", "not implemented yet");
}
Tensor attention_reference(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const RelPosBias&,
                           const AttentionOptions&) {
  fail("attention_reference", "not implemented yet");
}
}  // namespace megagrad
