#include "mega/train/trainer.h"
#include <chrono>
#include <cstdio>
#include <ctime>
#include <cmath>
#include <filesystem>
#include <optional>
#include "autograd/anomaly.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/rng.h"
#include "mega/optim.h"
#include "core/parallel.h"
#include "mega/train/checkpoint.h"
#include "mega/train/data_parallel.h"
#include "mega/train/report.h"
#include "mega/train/tensorboard.h"

namespace megagrad {

namespace {
// The files a run writes into its folder; any of them marks the folder as holding a run.
constexpr const char* kRunFiles[] = {"checkpoint.safetensors", "metrics.jsonl", "curves.svg"};
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The checkpoint of the state after `step` (weights, optimizer, data position, RNG).
Checkpoint snapshot(TrainTask& task, const Optimizer& opt, const TrainOptions& o, int64_t step) {
  Checkpoint ck;
  ck.model = task.model().state_dict();
  ck.optimizer = opt.state_dict();
  ck.meta["step"] = std::to_string(step);
  ck.meta["data"] = task.data_state().dump();
  Generator& g = default_generator();
  ck.meta["rng"] = fmt::format("{} {}", g.seed(), g.offset());
  ck.meta["config"] = o.config.dump();
  return ck;
}

// The first file of a run in `dir`, or "" when it holds none.
std::string run_file_in(const std::filesystem::path& dir) {
  std::error_code ec;
  for (const char* f : kRunFiles)
    if (std::filesystem::exists(dir / f, ec)) return (dir / f).string();
  return "";
}
}  // namespace

std::string prepare_run_dir(const TrainOptions& o) {
  namespace fs = std::filesystem;
  MG_CHECK(!o.out_dir.empty(), "train", "the output folder is empty");
  const fs::path dir(o.out_dir);
  std::error_code ec;
  std::string moved;
  if (const std::string found = run_file_in(dir); !found.empty()) {
    const fs::path ckpt = dir / "checkpoint.safetensors";
    const bool continues = !o.resume.empty() && !o.force && fs::equivalent(o.resume, ckpt, ec);
    if (o.force) {
      MG_CHECK(o.resume.empty(), "train", "--force starts {} over and --resume continues a run: give one of them",
               o.out_dir);
      // Never delete a run: move it aside to "<dir>.old-<local time>[-k]".
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      const std::string base = fmt::format("{}.old-{:04}{:02}{:02}-{:02}{:02}{:02}", (dir.has_filename() ? dir : dir.parent_path()).string(),
                                           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
      moved = base;
      for (int k = 1; fs::exists(moved, ec); ++k) moved = fmt::format("{}-{}", base, k);
      fs::rename(dir, moved, ec);
      MG_CHECK(!ec, "train", "cannot move the old run {} aside to {}: {}", o.out_dir, moved, ec.message());
    } else if (!continues) {
      throw RunExistsError(fmt::format(
          "[train] {} already holds a run ({} is there). Continue it with --resume {}, or start over with "
          "--force (the old run is moved to {}.old-<time>/, not deleted), or choose another --out",
          o.out_dir, found, ckpt.string(), o.out_dir));
    }
  }
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir, ec))
    fail("train", "cannot create the output folder {}: {}", o.out_dir,
         ec ? ec.message() : "a file of that name is in the way");
  return moved;
}

TrainSummary train(TrainTask& task, const TrainOptions& o) {
  MG_CHECK(o.steps >= 1 && o.accum >= 1 && o.log_every >= 1 && o.eval_every >= 1 && o.checkpoint_every >= 1,
           "train", "steps, accum, log_every, eval_every and checkpoint_every must be >= 1");
  namespace fs = std::filesystem;
  // Data parallelism: every rank runs this loop on its share of each batch; rank 0 alone writes
  // the run folder. Any decision that ends the loop rests on values summed over the ranks (the
  // loss, the gradient norm after the all-reduce, evaluations), so the ranks always decide alike.
  dist::Communicator& comm = o.comm ? *o.comm : dist::world();
  const bool root = comm.rank() == 0, distributed = comm.size() > 1;
  if (distributed) {
    // Ranks that disagree stop here, each with the same error, instead of hanging or drifting.
    dist::check_same_on_all_ranks(comm, "train", fnv1a(o.config.dump() + "|" + o.resume + fmt::format("|{}|{}", o.steps, o.accum)));
    dist::check_same_on_all_ranks(comm, "train: the data", task.data_fingerprint());
    for (const auto& [name, t] : task.model().state_dict())
      MG_CHECK(name.find("running_mean") == std::string::npos, "train",
               "{} is a batch-norm statistic: batch norm under data parallelism would need its statistics "
               "synchronised across the {} ranks, which megagrad does not do. Use another norm (layernorm, "
               "scalenorm, rmsnorm) or one process",
               name, comm.size());
  }
  TrainSummary sum;
  sum.moved_aside = run_on_root(comm, [&] { return prepare_run_dir(o); });
  const std::string checkpoint_path = (fs::path(o.out_dir) / "checkpoint.safetensors").string();
  sum.metrics = (fs::path(o.out_dir) / "metrics.jsonl").string();
  sum.plot = (fs::path(o.out_dir) / "curves.svg").string();

  task.to(o.device);
  task.set_communicator(comm);
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
      const Json saved = task.complete_config(Json::parse(ck.meta.at("config"), o.resume));
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
    if (auto bad = first_non_finite(ck.model)) fail("train", "{}: the weights are not finite ({})", o.resume, *bad);
    if (auto bad = first_non_finite(ck.optimizer))
      fail("train", "{}: the optimizer state is not finite ({})", o.resume, *bad);
    if (!ck.unverified.empty()) std::fprintf(stderr, "megagrad: warning: %s\n", ck.unverified.c_str());
    model.load_state_dict(ck.model);
    opt.load_state_dict(ck.optimizer);
    step = (int64_t)ck_step;
    task.load_data_state(data_state);
    default_generator().set_state(seed, offset);
    MG_CHECK(step < o.steps, "train", "{} is at step {}, and this run has only {} steps", o.resume, step, o.steps);
  }
  std::unique_ptr<GradientSync> sync;
  if (distributed) {
    broadcast_from_root(comm, model.state_dict());  // the same start on every rank, whatever each initialised
    sync = std::make_unique<GradientSync>(model.named_parameters(), comm);
  }

  // Rank 0 keeps the log and the terminal; the others log nothing.
  std::optional<MetricsLog> log;
  if (root) log.emplace(sum.metrics, o.resume.empty() ? -1 : step);
  // TensorBoard (train --tensorboard): the same records as scalars; a writer that fails warns once
  // and goes quiet, never stopping the run.
  std::optional<TensorBoardWriter> tb;
  if (root && !o.tensorboard_dir.empty()) tb.emplace(o.tensorboard_dir, o.resume.empty() ? -1 : step);
  auto log_write = [&](Json j, double elapsed) {
    if (!log) return;
    j.set("elapsed_s", std::round(elapsed * 1000) / 1000);
    log->write(j);
    if (tb) tb->add_metrics(j);
  };
  {  // A header line per start or resume: what produced the lines after it.
    Json h = Json::object();
    h.set("version", MEGAGRAD_VERSION), h.set("seed", (int64_t)o.seed), h.set("threads", (int64_t)get_num_threads());
    h.set("world_size", (int64_t)comm.size()), h.set("communicator", std::string(comm.name()));
    h.set("device", fmt::format("{}", o.device)), h.set("resumed_at_step", o.resume.empty() ? Json() : Json(step));
    h.set("config", o.config);
    {  // the task's reference line (majority class, uniform guess, ...), for megagrad plot
      const auto [value, name] = task.baseline();
      Json b = Json::object();
      b.set("metric", task.metric_name()), b.set("value", std::isfinite(value) ? Json(value) : Json()), b.set("name", name);
      h.set("baseline", b);
    }
    if (!o.init_from.empty()) {
      h.set("init_from", o.init_from);
      h.set("init_from_checksum", o.init_from_checksum.empty() ? Json() : Json(o.init_from_checksum));
    }
    Json j = Json::object();
    j.set("header", h);
    if (log) log->write(j);
  }
  Progress progress(o.steps, o.log_every, root ? stdout : nullptr);
  progress.message(task.describe());
  progress.message(fmt::format("{} parameters; {} steps{}{}", model.num_parameters(), o.steps,
                               step > 0 ? fmt::format(", resuming at step {} from {}", step, o.resume) : "",
                               distributed ? fmt::format("; data parallel over {} ranks ({}, {} gradient bucket(s)), "
                                                         "global batch split across them", comm.size(), comm.name(),
                                                         sync->num_buckets())
                                           : ""));
  auto t_run = Clock::now();
  StepStats window;
  int64_t tokens_total = 0;
  model.train();

  // A checkpoint is committed (written over checkpoint.safetensors) only once a forward pass with
  // exactly its weights has given a finite loss, and every weight and optimizer moment in it is
  // finite: weights of 1e30 are finite in float32, but the next forward pass is not. Until then
  // it waits in memory, serialised. `last_good` is the newest checkpoint that passed: this run's,
  // or the one it resumed from.
  std::string last_good = o.resume, pending;
  int64_t pending_step = 0, val_step = -1;  // val_step: the step of the last evaluation
  auto commit = [&] {
    if (pending.empty()) return;
    if (root) write_file_atomic(checkpoint_path, pending, "train");
    last_good = checkpoint_path;
    pending.clear();
  };
  auto take_checkpoint = [&](int64_t at) {
    Checkpoint ck = snapshot(task, opt, o, at);
    auto bad = first_non_finite(ck.model);
    if (!bad) bad = first_non_finite(ck.optimizer);
    if (bad) {
      pending.clear();
      progress.message(fmt::format("train: not saving step {}: {}", at, *bad));
      return;
    }
    // Only rank 0 writes; the others keep a marker, so that every rank takes the same decisions.
    pending = root ? serialize_checkpoint(ck) : std::string("(written by rank 0)"), pending_step = at;
    // An evaluation at this step was a forward pass with exactly these weights.
    if (val_step == at && std::isfinite(sum.val.loss)) commit();
  };
  auto last_good_text = [&] {
    return last_good.empty() ? std::string("No checkpoint passed the checks, so none was written")
                             : "The last good checkpoint is " + last_good;
  };

  auto evaluate = [&](int64_t at) {
    sum.val = task.evaluate("val", o.eval_batches);
    val_step = at;
    Json j = Json::object();
    j.set("step", at), j.set("split", "val"), j.set("loss", sum.val.loss), j.set(task.metric_name(), sum.val.metric);
    log_write(j, since(t_run));
    progress.message(fmt::format("step {}: validation loss {}, {} {}", at, format_metric("loss", sum.val.loss),
                                 task.metric_name(), format_metric(task.metric_name(), sum.val.metric)));
    model.train();
  };

  detect_anomaly anomaly_guard(o.detect_anomaly);  // an error naming the op, instead of a NaN loss later
  while (step < o.steps) {
    const int64_t s = step + 1;
    opt.zero_grad();
    StepStats st;
    double loss_value = 0;
    for (int64_t m = 0; m < o.accum; ++m) {
      if (sync && m == o.accum - 1) sync->arm();  // the last backward's gradients go to the all-reduce as they come
      auto t0 = Clock::now();
      Tensor loss = task.next_train_loss(st);
      sum.forward_s += since(t0);
      if (!loss.defined()) continue;  // this rank's share of the batch is empty (a small last batch)
      loss_value += loss.item() / (double)o.accum;
      auto t1 = Clock::now();
      (o.accum > 1 ? mul_scalar(loss, 1.0 / (double)o.accum) : loss).backward();
      sum.backward_s += since(t1);
    }
    if (sync) {
      auto t1 = Clock::now();
      sync->finish();
      // The ranks' shares add up to the global batch's loss and counts.
      Tensor totals = Tensor::from_vector({loss_value, (double)st.tokens, (double)st.correct, (double)st.count, st.loss_sum},
                                          {5}, DType::Float64);
      comm.all_reduce_sum(totals);
      const std::vector<double> v = totals.to_vector();
      loss_value = v[0], st.tokens = (int64_t)v[1], st.correct = (int64_t)v[2], st.count = (int64_t)v[3], st.loss_sum = v[4];
      st.batches = o.accum;
      sum.backward_s += since(t1);
    }
    if (!std::isfinite(loss_value)) {
      sum.stopped_on_nan = true;
      progress.message(fmt::format("train: the loss is {} at step {}: stopping{}. {}.", loss_value, s,
                                   pending.empty() ? "" : fmt::format(" without saving step {}", pending_step),
                                   last_good_text()));
      break;
    }
    commit();  // the forward pass with the pending checkpoint's weights was finite
    auto t2 = Clock::now();
    double norm = o.clip > 0 ? clip_grad_norm(opt.params(), o.clip) : global_grad_norm(opt.params());
    if (!std::isfinite(norm)) {
      sum.stopped_on_nan = true;
      progress.message(fmt::format("train: the gradient norm is {} at step {}: stopping. {}.", norm, s,
                                   last_good_text()));
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
      if (tb) tb->add_scalar("train/tokens_per_s", step, (double)tokens_total / std::max(elapsed, 1e-9));
      log_write(j, elapsed);
    }
    if (step % o.log_every == 0 || step == o.steps) {
      sum.train_loss = window.loss_sum / (double)window.batches;
      window = StepStats();
    }
    progress.update(step,
                    {{"loss", format_metric("loss", loss_value)},
                     {task.metric_name(), format_metric(task.metric_name(), task.train_metric(st))},
                     {"lr", fmt::format("{:.2e}", opt.lr())}},
                    (double)tokens_total / std::max(elapsed, 1e-9));
    if (o.check_replicas_every > 0 && step % o.check_replicas_every == 0)
      dist::check_same_on_all_ranks(comm, fmt::format("train: the weights after step {}", step),
                                    replicas_hash(model.state_dict()));
    if (step % o.eval_every == 0 || step == o.steps) evaluate(step);
    const bool stop = o.stop_after > 0 && step == o.stop_after;
    if (step % o.checkpoint_every == 0 || step == o.steps || stop) take_checkpoint(step);
    if (stop) break;
  }
  if (!pending.empty() && !sum.stopped_on_nan) {
    // The run ended (or stopped) without a forward pass on these weights: one validation batch
    // is that pass. It is not logged, so an interrupted run's log still equals an uninterrupted one's.
    const EvalResult check = task.evaluate("val", 1);
    model.train();
    if (std::isfinite(check.loss)) commit();
    else progress.message(fmt::format("train: not saving step {}: the validation loss with its weights is {}. {}.",
                                      pending_step, check.loss, last_good_text()));
  }
  sum.checkpoint = last_good;
  progress.finish();
  sum.seconds = since(t_run);
  sum.tokens_per_s = (double)tokens_total / std::max(sum.seconds, 1e-9);
  // The task's baseline (majority class, chance, uniform guess) becomes the plot's reference line.
  if (root) plot_metrics_log(sum.metrics, sum.plot, o.title, task.metric_name(), task.baseline());
  return sum;
}

}  // namespace megagrad
