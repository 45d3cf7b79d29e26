// The training loop, shared by every task: AdamW with warmup and linear decay, gradient
// accumulation and clipping, evaluation every N steps, atomic checksummed checkpoints with
// everything a bit-identical resume needs, a progress bar, a metrics log and a plot.
//
// A task (mega/train/tasks.h) owns the model and the data; the loop only sees this interface.
#pragma once
#include <string>
#include "core/json.h"
#include "mega/module.h"

namespace megagrad {

struct StepStats {
  double loss_sum = 0;   // sum of per-batch mean losses
  int64_t batches = 0;
  int64_t tokens = 0;    // input tokens (or pixels) processed
  int64_t correct = 0, count = 0;  // classification: right / total predictions
};

struct EvalResult {
  double loss = 0;    // mean loss per prediction
  double metric = 0;  // accuracy in % or bits per character
  int64_t count = 0;  // predictions evaluated
};

class TrainTask {
 public:
  virtual ~TrainTask() = default;
  virtual Module& model() = 0;
  // The mean loss of the next training batch (drawn from the task's resumable iterator); adds
  // what the batch saw to `stats`.
  virtual Tensor next_train_loss(StepStats& stats) = 0;
  virtual std::string metric_name() const = 0;  // "accuracy" or "bpc"
  virtual double train_metric(const StepStats& stats) const = 0;
  // Runs under no_grad in eval mode over at most max_batches (0: all) of "val" or "test".
  virtual EvalResult evaluate(const std::string& split, int64_t max_batches) = 0;
  // The data position (e.g. the batch iterator's epoch and index), saved in checkpoints.
  virtual Json data_state() const = 0;
  virtual void load_data_state(const Json& state) = 0;
  // A run configuration saved by an older version, with every key added since at its default
  // (which keeps the model it was trained with), so that --resume compares like with like.
  virtual Json complete_config(const Json& saved) const { return saved; }
  // A one-line summary of the dataset and the baseline to beat (e.g. the majority class).
  virtual std::string describe() const = 0;
  // Moves the model there; batches follow it from then on.
  void to(Device device) {
    model().to(device);
    device_ = device;
  }
  Device device() const { return device_; }

 protected:
  Device device_ = Device::cpu();
};

struct TrainOptions {
  int64_t steps = 1000;
  int64_t accum = 1;             // micro-batches per optimizer step (the loss is scaled by 1/accum)
  double lr = 1e-3, end_lr = 0;  // peak and final learning rate
  int64_t warmup = 100;          // linear warmup steps
  double beta1 = 0.9, beta2 = 0.98, eps = 1e-8, weight_decay = 0.01;
  double clip = 1.0;             // max global gradient norm (0: no clipping)
  int64_t log_every = 10;        // progress lines when not on a terminal (the metrics log gets every step)
  int64_t eval_every = 200;      // validation (also at the end)
  int64_t eval_batches = 0;      // validation batches per evaluation (0: the whole split)
  int64_t checkpoint_every = 500;
  std::string out_dir = "runs/run";  // checkpoint.safetensors, metrics.jsonl, curves.svg
  std::string resume;            // a checkpoint to continue from ("" : start fresh)
  bool force = false;            // out_dir holds another run: move it aside to "<out_dir>.old-<time>" first
  uint64_t seed = 1;             // seeds the dropout masks (the default generator) of a fresh run
  Device device = Device::cpu();  // where the model, the batches and the optimizer live
  bool detect_anomaly = false;    // check every op's output and gradient for NaN/Inf (autograd/anomaly.h); slow
  int64_t stop_after = 0;        // stop (with a checkpoint) after this step, as if interrupted (0: run to the end)
  Json config;                   // the run's configuration, stored in every checkpoint
  std::string title = "training";
};

struct TrainSummary {
  int64_t step = 0;                 // the last completed step
  bool stopped_on_nan = false;
  double train_loss = 0;            // mean over the last log interval
  EvalResult val;                   // the last evaluation
  double seconds = 0, tokens_per_s = 0;
  double forward_s = 0, backward_s = 0, optimizer_s = 0;  // summed over the run
  std::string checkpoint;            // the last good checkpoint (this run's or the resumed one), "" if none
  std::string metrics, plot;
  std::string moved_aside;           // where --force moved an old run, "" if nowhere
};

// out_dir already holds a run (a checkpoint, metrics log or plot) and the options neither
// continue it (resume from its checkpoint) nor force a new start. The CLI turns it into exit 2.
struct RunExistsError : Error {
  using Error::Error;
};

// Makes out_dir ready for a run: refuses one that holds another run (RunExistsError), unless the
// run resumes from that folder's checkpoint, or `force` moves the old run aside (never deleted);
// then creates the folder. Returns where the old run went ("" if nowhere). train() calls it; a
// caller may call it earlier, e.g. before loading data.
std::string prepare_run_dir(const TrainOptions& options);

// Trains; the checkpoint in out_dir is only ever replaced by one whose weights gave a finite
// loss in a forward pass (see TrainSummary::checkpoint).
TrainSummary train(TrainTask& task, const TrainOptions& options);

}  // namespace megagrad
