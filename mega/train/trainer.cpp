#include "mega/train/trainer.h"
#include <chrono>
#include <cmath>
#include <filesystem>
#include "autograd/anomaly.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/rng.h"
#include "mega/optim.h"
#include "mega/train/checkpoint.h"
#include "mega/train/report.h"

namespace megagrad {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void save(const std::string& path, TrainTask& task, const Optimizer& opt, const TrainOptions& o, int64_t step) {
  Checkpoint ck;
  ck.model = task.model().state_dict();
  ck.optimizer = opt.state_dict();
  ck.meta["step"] = std::to_string(step);
  ck.meta["data"] = task.data_state().dump();
  Generator& g = default_generator();
  ck.meta["rng"] = fmt::format("{} {}", g.seed(), g.offset());
  ck.meta["config"] = o.config.dump();
  save_checkpoint(path, ck);
}
}  // namespace

TrainSummary train(TrainTask& task, const TrainOptions& o) {
  MG_CHECK(o.steps >= 1 && o.accum >= 1 && o.log_every >= 1 && o.eval_every >= 1 && o.checkpoint_every >= 1,
           "train", "steps, accum, log_every, eval_every and checkpoint_every must be >= 1");
  namespace fs = std::filesystem;
  fs::create_directories(o.out_dir);
  TrainSummary sum;
  sum.checkpoint = (fs::path(o.out_dir) / "checkpoint.safetensors").string();
  sum.metrics = (fs::path(o.out_dir) / "metrics.jsonl").string();
  sum.plot = (fs::path(o.out_dir) / "curves.svg").string();

  task.to(o.device);
  Module& model = task.model();
  AdamWOptions ao;
  ao.lr = o.lr, ao.beta1 = o.beta1, ao.beta2 = o.beta2, ao.eps = o.eps, ao.weight_decay = o.weight_decay;
  AdamW opt(model.named_parameters(), ao);
  // A warmup as long as the run (e.g. a short run with the task's default warmup) becomes a tenth
  // of the run.
  const int64_t warmup = o.warmup < o.steps ? o.warmup : o.steps / 10;
  LinearWarmupDecay schedule(o.lr, warmup, o.steps, o.end_lr);

  int64_t step = 0;
  default_generator().set_state(o.seed, 0);  // dropout masks: the same seed gives the same run
  if (!o.resume.empty()) {
    Checkpoint ck = load_checkpoint(o.resume);
    MG_CHECK(ck.meta.count("step") && ck.meta.count("data") && ck.meta.count("rng"), "train",
             "{}: not a training checkpoint (no step/data/rng metadata)", o.resume);
    if (ck.meta.count("config") && o.config.contains("model")) {
      Json saved = Json::parse(ck.meta.at("config"), o.resume);
      MG_CHECK(saved.contains("model") && saved.at("model").dump() == o.config.at("model").dump(), "train",
               "{}: the checkpoint's model configuration differs from this run's", o.resume);
    }
    // The metadata first, so that a bad file changes nothing.
    const uint64_t ck_step = parse_uint64(ck.meta.at("step"), "step", o.resume);
    MG_CHECK(ck_step <= (uint64_t)INT64_MAX, "train", "{}: bad step {}", o.resume, ck_step);
    const std::string& rng = ck.meta.at("rng");
    const size_t space = rng.find(' ');
    MG_CHECK(space != std::string::npos, "train", "{}: bad rng state '{}'", o.resume, rng);
    const uint64_t seed = parse_uint64(rng.substr(0, space), "rng seed", o.resume);
    const uint64_t offset = parse_uint64(rng.substr(space + 1), "rng offset", o.resume);
    Json data_state = Json::parse(ck.meta.at("data"), o.resume);
    model.load_state_dict(ck.model);
    opt.load_state_dict(ck.optimizer);
    step = (int64_t)ck_step;
    task.load_data_state(data_state);
    default_generator().set_state(seed, offset);
    MG_CHECK(step < o.steps, "train", "{} is at step {}, and this run has only {} steps", o.resume, step, o.steps);
  }

  MetricsLog log(sum.metrics, o.resume.empty() ? -1 : step);
  Progress progress(o.steps, o.log_every);
  progress.message(task.describe());
  progress.message(fmt::format("{} parameters; {} steps{}", model.num_parameters(), o.steps,
                               step > 0 ? fmt::format(", resuming at step {} from {}", step, o.resume) : ""));
  auto t_run = Clock::now();
  StepStats window;
  int64_t tokens_total = 0;
  model.train();

  auto evaluate = [&](int64_t at) {
    sum.val = task.evaluate("val", o.eval_batches);
    Json j = Json::object();
    j.set("step", at), j.set("split", "val"), j.set("loss", sum.val.loss), j.set(task.metric_name(), sum.val.metric);
    log.write(j);
    progress.message(fmt::format("step {}: validation loss {:.4f}, {} {:.4g}", at, sum.val.loss, task.metric_name(),
                                 sum.val.metric));
    model.train();
  };

  detect_anomaly anomaly_guard(o.detect_anomaly);  // an error naming the op, instead of a NaN loss later
  while (step < o.steps) {
    const int64_t s = step + 1;
    opt.zero_grad();
    StepStats st;
    double loss_value = 0;
    for (int64_t m = 0; m < o.accum; ++m) {
      auto t0 = Clock::now();
      Tensor loss = task.next_train_loss(st);
      sum.forward_s += since(t0);
      loss_value += loss.item() / (double)o.accum;
      auto t1 = Clock::now();
      (o.accum > 1 ? mul_scalar(loss, 1.0 / (double)o.accum) : loss).backward();
      sum.backward_s += since(t1);
    }
    if (!std::isfinite(loss_value)) {
      sum.stopped_on_nan = true;
      progress.message(fmt::format("train: the loss is {} at step {}: stopping. The last good checkpoint is {}", loss_value,
                                   s, std::filesystem::exists(sum.checkpoint) ? sum.checkpoint : "(none yet)"));
      break;
    }
    auto t2 = Clock::now();
    double norm = o.clip > 0 ? clip_grad_norm(opt.params(), o.clip) : global_grad_norm(opt.params());
    if (!std::isfinite(norm)) {
      sum.stopped_on_nan = true;
      progress.message(fmt::format("train: the gradient norm is {} at step {}: stopping. The last good checkpoint is {}",
                                   norm, s, std::filesystem::exists(sum.checkpoint) ? sum.checkpoint : "(none yet)"));
      break;
    }
    opt.set_lr(schedule.lr(opt.num_steps()));
    opt.step();
    sum.optimizer_s += since(t2);
    step = s;
    sum.step = step;

    window.loss_sum += loss_value, window.batches += 1, window.tokens += st.tokens;
    window.correct += st.correct, window.count += st.count;
    tokens_total += st.tokens;
    const double elapsed = since(t_run);
    {  // every step: a resumed run's log then equals an uninterrupted run's line for line
      Json j = Json::object();
      j.set("step", step), j.set("split", "train"), j.set("loss", loss_value), j.set("lr", opt.lr());
      j.set("grad_norm", norm), j.set(task.metric_name(), task.train_metric(st));
      log.write(j);
    }
    if (step % o.log_every == 0 || step == o.steps) {
      sum.train_loss = window.loss_sum / (double)window.batches;
      window = StepStats();
    }
    progress.update(step,
                    {{"loss", fmt::format("{:.4f}", loss_value)},
                     {task.metric_name(), fmt::format("{:.4g}", task.train_metric(st))},
                     {"lr", fmt::format("{:.2e}", opt.lr())}},
                    (double)tokens_total / std::max(elapsed, 1e-9));
    if (step % o.eval_every == 0 || step == o.steps) evaluate(step);
    const bool stop = o.stop_after > 0 && step == o.stop_after;
    if (step % o.checkpoint_every == 0 || step == o.steps || stop) save(sum.checkpoint, task, opt, o, step);
    if (stop) break;
  }
  progress.finish();
  sum.seconds = since(t_run);
  sum.tokens_per_s = (double)tokens_total / std::max(sum.seconds, 1e-9);
  plot_metrics_log(sum.metrics, sum.plot, o.title, task.metric_name());
  return sum;
}

}  // namespace megagrad
