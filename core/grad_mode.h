// Grad mode: one flag per thread that says whether ops record the graph. It lives in core (as
// PyTorch keeps it in c10) because core's in-place updates and Tensor::to() refuse to touch a
// tensor that requires grad while recording is on. The scoped switches `no_grad` and
// `enable_grad` are autograd's: autograd/grad_mode.h.
#pragma once

namespace megagrad {

class GradMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

}  // namespace megagrad
