// Optimizers (AdamW, SGD) and gradient clipping: the optimizer state and its updates. The update
// loops are in optim_kernels.h, the learning-rate schedules in lr_schedule.h (included here, as
// every training loop uses one).
//
// An optimizer holds the model's named parameters (leaf tensors, as Module::named_parameters()
// returns them) and updates them in place from their .grad(), one fused loop per parameter under
// no_grad. Parameters whose .grad() is undefined are skipped (their state and step are untouched),
// as torch.optim does.
//
// A training step, with gradient accumulation over `accum` micro-batches:
//
//   AdamW opt(model.named_parameters(), {.lr = 1e-3, .beta2 = 0.98, .weight_decay = 0.01});
//   LinearWarmupDecay sched(1e-3, /*warmup*/ 3000, /*total*/ 90000);
//   for (...) {
//     opt.zero_grad();                       // drops every .grad
//     for (int k = 0; k < accum; ++k) {      // .grad sums over the micro-batches:
//       Tensor loss = mul_scalar(model_loss(batch[k]), 1.0 / accum);  // scale, so .grad is the mean
//       loss.backward();
//     }
//     double norm = clip_grad_norm(opt.params(), 1.0);
//     if (!std::isfinite(norm)) continue;    // skip the update (fairseq does the same)
//     opt.set_lr(sched.lr(opt.num_steps())); // a pure function of the step: resumes exactly
//     opt.step();
//   }
//
// Checkpoints: save model.state_dict() and opt.state_dict() (e.g. with save_safetensors); to
// resume, build the model and the optimizer as before, then load both. The optimizer continues
// bit-identically: state_dict() holds every number that step() reads besides the hyperparameters
// given to the constructor and set_weight_decay (which, as in fairseq, come from the current
// configuration, not from the checkpoint).
//
// The optimizer keeps handles to the parameter tensors and creates its state in their dtype:
// build it after Module::to(dtype).
#pragma once
#include "mega/lr_schedule.h"
#include <cstdint>
#include <string>
#include <vector>
#include "mega/module.h"

namespace megagrad {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient, with the current lr().
  void step();
  // Drops every parameter's .grad (as torch's zero_grad(set_to_none=True)).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);  // >= 0 and finite
  // Number of step() calls so far (restored by load_state_dict). LR schedules take it.
  int64_t num_steps() const { return num_steps_; }
  const NamedTensors& params() const { return params_; }
  const std::string& kind() const { return kind_; }  // "adamw", "sgd"

  // Per-parameter weight decay (e.g. none for biases and norms, or fairseq's
  // --moving-weight-decay for the EMA parameters). Unknown names are an error.
  void set_weight_decay(const std::string& param_name, double weight_decay);
  double weight_decay(const std::string& param_name) const;

  // A snapshot (copies) of the state:
  //   "step"             int64 scalar: num_steps()
  //   "lr"               float64 scalar: lr()
  //   "step.<param>"     int64 scalar: updates this parameter has had (it skips steps without a grad)
  //   "<slot>.<param>"   the parameter's shape and dtype, for each slot of the optimizer
  //                      (AdamW: exp_avg, exp_avg_sq; SGD with momentum: momentum_buffer)
  NamedTensors state_dict() const;
  // Loads a state_dict() of an optimizer of the same kind over parameters of the same names and
  // shapes. Strict: a missing, unexpected, duplicated, mis-shaped or mis-typed entry is an error
  // that names it, and nothing is changed unless every entry is valid. Slots are converted to the
  // parameter's dtype (bit-identical when they match).
  void load_state_dict(const NamedTensors& state);

 protected:
  // kind: for error messages; slots: the names of the per-parameter state tensors (zero-filled,
  // the parameter's shape and dtype).
  Optimizer(std::string kind, NamedTensors params, double lr, double weight_decay, std::vector<std::string> slots);
  // Updates parameter i in place from g (its gradient: same shape and dtype, contiguous, as is the
  // parameter) and its slots slots_[i]. step: this parameter's update count, 1 on its first update.
  virtual void update(size_t i, const Tensor& param, const Tensor& grad, int64_t step) = 0;

  std::vector<std::vector<Tensor>> slots_;  // [parameter][slot]
  std::vector<double> weight_decay_;        // per parameter

 private:
  size_t index_of(const std::string& param_name, const char* op) const;

  std::string kind_;
  NamedTensors params_;
  std::vector<std::string> slot_names_;
  std::vector<int64_t> param_steps_;
  int64_t num_steps_ = 0;
  double lr_;
};

// AdamW as torch.optim.AdamW (decoupled weight decay), for each parameter p with gradient g, at
// its update t = 1, 2, ...:
//   p <- p * (1 - lr * wd)
//   m <- b1 m + (1 - b1) g           v <- b2 v + (1 - b2) g^2
//   p <- p - lr/(1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//
// The official Mega training (fairseq's `--optimizer adam`, fairseq/optim/adam.py) is this same
// decoupled AdamW: its weight decay is p -= wd * lr * p before the Adam update, not an L2 term
// added to g. It differs only in where eps sits: p -= lr sqrt(1 - b2^t)/(1 - b1^t) * m / (sqrt(v) +
// eps), i.e. eps is added before the bias correction. Set fairseq_eps for that form; the two differ
// only while sqrt(v) is comparable to eps. (fairseq on GPU may use apex's FusedAdam instead, which
// is not reproduced here.)
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // torch's AdamW default; fairseq's default is 0
  bool fairseq_eps = false;
};

class AdamW : public Optimizer {
 public:
  explicit AdamW(NamedTensors params, const AdamWOptions& options = {});
  const AdamWOptions& options() const { return opt_; }

 protected:
  void update(size_t i, const Tensor& param, const Tensor& grad, int64_t step) override;

 private:
  AdamWOptions opt_;
};

// SGD as torch.optim.SGD: d = g + wd p (an L2 term, coupled);
//   with momentum: b <- d on the first update, then b <- momentum b + (1 - dampening) d;
//                  d <- d + momentum b (nesterov) or d <- b;
//   p <- p - lr d.
struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0
};

class SGD : public Optimizer {
 public:
  explicit SGD(NamedTensors params, const SGDOptions& options = {});
  const SGDOptions& options() const { return opt_; }

 protected:
  void update(size_t i, const Tensor& param, const Tensor& grad, int64_t step) override;

 private:
  SGDOptions opt_;
};

// The L2 norm of all gradients together (parameters without .grad are skipped), accumulated in
// double; deterministic (independent of the thread count).
double global_grad_norm(const NamedTensors& params);

// As torch.nn.utils.clip_grad_norm_ (and fairseq's clip_grad_norm_): computes the global norm;
// when it is finite and max_norm / (norm + 1e-6) < 1, multiplies every gradient in place by that
// factor. Returns the norm before clipping. A non-finite norm (inf or NaN gradients) is returned
// with the gradients untouched: the caller should skip the update. max_norm must be > 0 (to only
// measure, call global_grad_norm).
double clip_grad_norm(const NamedTensors& params, double max_norm);

}  // namespace megagrad
