// Anomaly mode (off by default; per thread, as grad mode): every recorded op's output, and every
// gradient that an op's backward produces, is checked for NaN and Inf. The first one raises
// "[anomaly] ..." naming the op and where in the model it ran, e.g.
//   [anomaly] op 'exp' in layers.2.mega_layer.move produced Inf in its output (2,16,32) float32 ...
// It costs one pass over every tensor the graph touches, so it is for finding a bug, not for
// training runs (the trainer's NaN check on the loss is free and always on).
//
//     { detect_anomaly guard; loss = model.forward(x) ...; loss.backward(); }
//
// Checked in the forward: the outputs of the ops that record a backward (every op whose output
// takes part in the gradient). Ops run under no_grad record nothing and are not checked.
#pragma once
#include <string>
#include <string_view>
#include "core/tensor.h"

namespace megagrad {

class AnomalyMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

class detect_anomaly {
 public:
  explicit detect_anomaly(bool on = true) : prev_(AnomalyMode::is_enabled()) { AnomalyMode::set_enabled(on); }
  ~detect_anomaly() { AnomalyMode::set_enabled(prev_); }
  detect_anomaly(const detect_anomaly&) = delete;
  detect_anomaly& operator=(const detect_anomaly&) = delete;

 private:
  bool prev_;
};

// Something that can say where in a model it is ("layers.2.mega_layer.move"): mega's Module.
// The engine knows no model; it only asks the innermost scope for its path.
class NamedScope {
 public:
  virtual std::string scope_path() const = 0;

 protected:
  ~NamedScope() = default;
};

// Pushed by a module while its forward runs (cheap: one pointer on a per-thread stack).
class ForwardScope {
 public:
  explicit ForwardScope(const NamedScope* scope);
  ~ForwardScope();
  ForwardScope(const ForwardScope&) = delete;
  ForwardScope& operator=(const ForwardScope&) = delete;
};

// The path of the innermost module whose forward is running on this thread ("" outside any).
std::string current_scope_path();

// Throws "[anomaly] <context> produced NaN|Inf in <role> <desc> (first at [i,j,..]; n of m
// values are not finite)" when t (a float tensor) holds a NaN or an Inf.
void check_finite(const Tensor& t, std::string_view context, std::string_view role);

}  // namespace megagrad
