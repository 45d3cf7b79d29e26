// Learning-rate schedules (see lr_schedule.h for the formulas).
#include "mega/lr_schedule.h"
#include <cmath>
#include "core/error.h"

namespace megagrad {

ConstantLR::ConstantLR(double lr) : lr_(lr) {
  MG_CHECK(std::isfinite(lr) && lr >= 0, "ConstantLR", "lr must be finite and >= 0, got {}", lr);
}

double ConstantLR::lr(int64_t step) const {
  MG_CHECK(step >= 0, "ConstantLR", "step must be >= 0, got {}", step);
  return lr_;
}

LinearWarmupDecay::LinearWarmupDecay(double peak_lr, int64_t warmup_steps, int64_t total_steps, double end_lr,
                                     double init_lr)
    : peak_(peak_lr), end_(end_lr), init_(init_lr), warmup_(warmup_steps), total_(total_steps) {
  const char* op = "LinearWarmupDecay";
  MG_CHECK(std::isfinite(peak_lr) && peak_lr >= 0, op, "peak_lr must be finite and >= 0, got {}", peak_lr);
  MG_CHECK(std::isfinite(end_lr) && end_lr >= 0, op, "end_lr must be finite and >= 0, got {}", end_lr);
  MG_CHECK(std::isfinite(init_lr) && init_lr >= 0, op, "init_lr must be finite and >= 0, got {}", init_lr);
  MG_CHECK(warmup_steps >= 0, op, "warmup_steps must be >= 0, got {}", warmup_steps);
  MG_CHECK(total_steps > warmup_steps, op, "total_steps ({}) must be greater than warmup_steps ({})", total_steps,
           warmup_steps);
}

double LinearWarmupDecay::lr(int64_t step) const {
  MG_CHECK(step >= 0, "LinearWarmupDecay", "step must be >= 0, got {}", step);
  if (warmup_ == 0 && step == 0) return peak_;
  if (step <= warmup_) return init_ + (double)step * ((peak_ - init_) / (double)warmup_);
  if (step >= total_) return end_;
  return (peak_ - end_) / (double)(total_ - warmup_) * (double)(total_ - step) + end_;
}

}  // namespace megagrad
