// The training loop, shared by every task: AdamW with warmup and linear decay, gradient
// accumulation and clipping, evaluation every N steps, atomic checksummed checkpoints with
// everything a bit-identical resume needs, a progress bar, a metrics log and a plot.
//
// A task (mega/train/tasks.h) owns the model and the data; the loop only sees this interface.
#pragma once
#include <cmath>
#include <string>
#include <utility>
#include "backends/dist/communicator.h"
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
  // The validation metric of a trivial predictor and its name (e.g. {41.2, "majority class"}),
  // drawn as a reference line on the plot; NaN: the task has none.
  virtual std::pair<double, std::string> baseline() const { return {std::nan(""), ""}; }
  // Moves the model there; batches follow it from then on.
  void to(Device device) {
    model().to(device);
    device_ = device;
  }
  Device device() const { return device_; }

  // A fingerprint of the data (its content where cheap, else its description): data-parallel
  // ranks that would train on different data stop at start-up instead of drifting apart.
  virtual uint64_t data_fingerprint() const;

  // Data parallelism: this process is one of comm.size() ranks. Each takes its share of every
  // global batch (rows [n r / N, n (r + 1) / N) of a batch of n): next_train_loss then returns the
  // share's part of the global batch's mean loss (the share's mean times its fraction of the
  // rows), so that the ranks' losses, and gradients, sum to the whole batch's; `stats` count the
  // share only. evaluate() splits each batch the same way and sums over the ranks, so every rank
  // gets the whole split's result. A rank whose share of a batch is empty gets an undefined loss.
  void set_communicator(dist::Communicator& comm) { comm_ = &comm; }

 protected:
  struct Share {
    int64_t first = 0, rows = 0, total = 0;  // rows [first, first + rows) of a batch of total
    bool whole() const { return rows == total; }
    double fraction() const { return (double)rows / (double)total; }
  };
  Share share_of(int64_t batch_rows) const;
  // Rows [first, first + rows) of a batch (dimension 0).
  static Tensor take_share(const Tensor& batch, const Share& share) {
    return share.whole() ? batch : batch.narrow(0, share.first, share.rows).contiguous();
  }
  // The share's mean loss as its part of the global batch's mean.
  static Tensor share_of_mean(const Tensor& loss, const Share& share);
  // Sums each value over the ranks, in place (one process: unchanged).
  void sum_over_ranks(std::vector<double>& values) const;

  Device device_ = Device::cpu();
  dist::Communicator* comm_ = nullptr;  // null: one process
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
  // The weights file the caller loaded into the model before train() (train --init-from), and its
  // checksum ("" when unverified): recorded in the metrics log's header, nothing else.
  std::string init_from, init_from_checksum;
  bool force = false;            // out_dir holds another run: move it aside to "<out_dir>.old-<time>" first
  uint64_t seed = 1;             // seeds the dropout masks (the default generator) of a fresh run
  Device device = Device::cpu();  // where the model, the batches and the optimizer live
  bool detect_anomaly = false;    // check every op's output and gradient for NaN/Inf (autograd/anomaly.h); slow
  int64_t stop_after = 0;        // stop (with a checkpoint) after this step, as if interrupted (0: run to the end)
  Json config;                   // the run's configuration, stored in every checkpoint
  std::string title = "training";
  std::string tensorboard_dir;   // non-empty: also write TensorBoard event files there (mega/train/tensorboard.h)
  // The processes of a data-parallel run (null: dist::world(), i.e. MPI when started by mpirun).
  // Rank 0 writes the run folder; --batch-size stays the global batch.
  dist::Communicator* comm = nullptr;
  int64_t check_replicas_every = 0;  // > 0: every N steps, stop if the ranks' weights differ (a test aid)
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
