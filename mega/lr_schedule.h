// Learning-rate schedules for the optimizers of mega/optim.h.
#pragma once
#include <cstdint>

namespace megagrad {

// Learning-rate schedules: lr(step) is a pure function of the number of completed updates, so a
// resumed run gets the same rates. Use: opt.set_lr(schedule.lr(opt.num_steps())); opt.step();
class LRSchedule {
 public:
  virtual ~LRSchedule() = default;
  virtual double lr(int64_t step) const = 0;  // step >= 0
};

class ConstantLR : public LRSchedule {
 public:
  explicit ConstantLR(double lr);
  double lr(int64_t step) const override;

 private:
  double lr_;
};

// Linear warmup from init_lr to peak_lr over warmup_steps updates, then linear decay to end_lr at
// total_steps, constant after. As fairseq's linear_decay (the Mega code's --lr-scheduler) and
// polynomial_decay with power 1 (fairseq calls step_update(num_updates) after every update, so
// the update that follows `step` completed ones uses lr(step)):
//   step <= warmup:          init + step * (peak - init) / warmup      (lr(0) = init, default 0)
//   warmup < step < total:   (peak - end) / (total - warmup) * (total - step) + end
//   step >= total:           end
// With warmup_steps == 0 the warmup is skipped (lr(0) = peak).
class LinearWarmupDecay : public LRSchedule {
 public:
  LinearWarmupDecay(double peak_lr, int64_t warmup_steps, int64_t total_steps, double end_lr = 0,
                    double init_lr = 0);
  double lr(int64_t step) const override;

 private:
  double peak_, end_, init_;
  int64_t warmup_, total_;
};

}  // namespace megagrad
