// Grad mode: whether ops record the graph. `no_grad` turns recording off for a scope (per
// thread), as torch.no_grad() does:
//     { no_grad guard; w.add_(w.grad(), -lr); }
// The per-thread flag itself (GradMode) is core's: core/grad_mode.h.
#pragma once
#include "core/grad_mode.h"

namespace megagrad {

class no_grad {
 public:
  no_grad() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~no_grad() { GradMode::set_enabled(prev_); }
  no_grad(const no_grad&) = delete;
  no_grad& operator=(const no_grad&) = delete;

 private:
  bool prev_;
};

class enable_grad {
 public:
  enable_grad() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(true); }
  ~enable_grad() { GradMode::set_enabled(prev_); }
  enable_grad(const enable_grad&) = delete;
  enable_grad& operator=(const enable_grad&) = delete;

 private:
  bool prev_;
};

}  // namespace megagrad
