// megagrad train / eval / generate: training runs on the built-in tasks, evaluation of a
// checkpoint, and text generation from a language-model checkpoint.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include "backends/cpu/blas.h"
#include "backends/cuda/cuda.h"
#include "backends/dist/communicator.h"
#include "backends/dist/nccl.h"
#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/parallel.h"
#include "mega/train/checkpoint.h"
#include "mega/train/data_parallel.h"
#include "mega/train/report.h"
#include "mega/train/tasks.h"
#include "mega/train/weights.h"

namespace megagrad::cli {

namespace {
double parse_double(const std::string& cmd, const std::string& what, const std::string& text) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v))
    throw UsageError(fmt::format("megagrad {}: {} expects a number, got '{}'", cmd, what, text));
  return v;
}
// load_checkpoint_with_finite_weights, with the warning of a format-1 file on stderr.
Checkpoint load_for(const std::string& path, const char* cmd) {
  Checkpoint ck = load_checkpoint_with_finite_weights(path, cmd);
  if (!ck.unverified.empty()) std::fprintf(stderr, "megagrad %s: warning: %s\n", cmd, ck.unverified.c_str());
  return ck;
}

// A weights file's tensors checked against the model and loaded into it; then, on stderr, what
// was not verified and which tensors were 16-bit floats in the file.
void load_weights_for(Module& model, const WeightsFile& w, const char* cmd, const char* op, bool print) {
  load_weights_into(model, w, op);
  if (!print) return;
  if (std::string warn = weights_warning(w); !warn.empty())
    std::fprintf(stderr, "megagrad %s: warning: %s\n", cmd, warn.c_str());
  if (w.widened.empty()) return;
  std::string codes;  // "F16", "BF16" or "F16/BF16"
  for (const char* c : {"F16", "BF16"})
    for (const auto& named : w.widened)
      if (named.second == c) {
        codes += (codes.empty() ? "" : "/") + std::string(c);
        break;
      }
  std::fprintf(stderr, "megagrad %s: %zu of the %zu tensors of %s are %s in the file, read as float32\n", cmd,
               w.widened.size(), w.tensors.size(), w.path.c_str(), codes.c_str());
}
}  // namespace

Device parse_device(const Options& opts, const std::string& cmd) {
  std::string dev = opts.get("--device").value_or("cpu");
  if (dev == "cpu") return Device::cpu();
  if (dev == "cuda" || dev.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (dev.size() > 5) {
      char* end = nullptr;
      long v = std::strtol(dev.c_str() + 5, &end, 10);
      if (*end != '\0' || v < 0 || v > 63)
        throw UsageError(fmt::format("megagrad {}: --device: bad device '{}'", cmd, dev));
      index = (int)v;
    }
    if (!cuda_available())
      throw UsageError(fmt::format("megagrad {}: --device {}: {}. Use --device cpu.", cmd, dev, cuda_status()));
    if (index >= cuda_device_count())
      throw UsageError(fmt::format("megagrad {}: --device {}: this machine has {} CUDA device(s)", cmd, dev,
                                   cuda_device_count()));
    return Device::cuda(index);
  }
  throw UsageError(fmt::format("megagrad {}: --device must be cpu, cuda or cuda:N, got '{}'", cmd, dev));
}

int cmd_train(const std::vector<std::string>& args) {
  Options opts("train", {{"--task", "T", "listops, fmnist, charlm or translate (required)"},
                         {"--recipe", "NAME", "a named set of settings, merged before --config: cpu (the defaults), official (listops: the paper's mega_lra_listop)"},
                         {"--config", "FILE", "JSON overriding any default (see: megagrad train --task T --show-config)"},
                         {"--show-config", "", "print the task's full configuration and exit"},
                         {"--model", "M", "mega (default) or transformer (listops, charlm, translate)"},
                         {"--steps", "N", "optimizer steps"},
                         {"--batch-size", "N", "sequences per batch"},
                         {"--lr", "X", "peak learning rate"},
                         {"--seed", "N", "seed of the initialisation and the batch order"},
                         {"--data", "PATH", "listops: a folder with train/val/test .tsv (LRA format); charlm: a text file; translate: SRC.txt TGT.txt (line-aligned) or one source<TAB>target .tsv (default: the Spanish-English Bible)"},
                         {"--out", "DIR", "where the checkpoint, metrics.jsonl and curves.svg go (default runs/<task>-<model>; with --resume, the checkpoint's folder)"},
                         {"--resume", "CKPT", "continue a run from its checkpoint, bit-identically"},
                         {"--init-from", "WEIGHTS", "start from the weights of a weights file (megagrad export, or converted official weights) instead of a fresh initialisation; its tensor names and shapes must match the model"},
                         {"--force", "", "--out holds another run: move it aside to DIR.old-<time>/ and start over"},
                         device_option(),
                         {"--tensorboard", "", "also write TensorBoard event files to OUT/tensorboard/ (view: tensorboard --logdir runs)"},
                         {"--detect-anomaly", "", "check every op's output and gradient for NaN/Inf and stop at the first, naming the op and module (slow)"},
                         threads_option()});
  opts.positionals(1, "TGT.txt (translate: --data SRC.txt TGT.txt)");
  opts.parse(args);
  // Under mpirun: one rank of a data-parallel run (a build without MPI says so here). Rank 0
  // prints and writes; every rank trains on its share of each batch.
  dist::Communicator& comm = opts.help() ? dist::single_process() : dist::world();
  const bool root = comm.rank() == 0;
  if (opts.help()) {
    std::printf("usage: megagrad train --task listops|fmnist|charlm|translate [options]\n\n"
                "Trains a Mega model (or the Transformer baseline) on a built-in task, with a progress\n"
                "bar, evaluation on the validation split, checkpoints, a metrics log and a plot.\n"
                "Under `mpirun -np N`, N processes train one run (data parallel): --batch-size stays\n"
                "the global batch, each rank takes its rows, and rank 0 writes the run folder.\n\n%s",
                opts.options_help().c_str());
    return 0;
  }
  apply_threads(opts);
  const Device device = parse_device(opts, "train");
  if (!opts.has("--task")) throw UsageError("megagrad train: --task is required (listops, fmnist, charlm or translate)");
  const std::string task = *opts.get("--task");
  if (task != "listops" && task != "fmnist" && task != "charlm" && task != "translate")
    throw UsageError(fmt::format("megagrad train: --task must be listops, fmnist, charlm or translate, got '{}'", task));
  if (!opts.positional().empty() && (task != "translate" || !opts.has("--data")))
    throw UsageError(fmt::format("megagrad train: unexpected argument '{}' (only --task translate takes a second "
                                 "file: --data SRC.txt TGT.txt)", opts.positional()[0]));
  Json cfg = default_run_config(task);
  if (auto r = opts.get("--recipe")) cfg = recipe_run_config(task, *r);  // then --config, then the flags
  if (auto f = opts.get("--config")) cfg = merge_run_config(cfg, Json::parse(read_file(*f, "train", 1 << 20), *f), *f);
  auto set = [&](const char* section, const char* key, Json v) {
    Json s = cfg.at(section);
    s.set(key, std::move(v));
    cfg.set(section, s);
  };
  if (auto v = opts.get("--model")) {
    if (*v != "mega" && *v != "transformer")
      throw UsageError(fmt::format("megagrad train: --model must be mega or transformer, got '{}'", *v));
    set("model", "type", *v);
  }
  if (opts.has("--steps")) set("train", "steps", opts.get_int("--steps", 0, 1, 100000000));
  if (opts.has("--batch-size")) set("train", "batch_size", opts.get_int("--batch-size", 0, 1, 1000000));
  if (opts.has("--seed")) set("train", "seed", opts.get_int("--seed", 0, 0, INT64_MAX));
  if (auto v = opts.get("--lr")) set("train", "lr", parse_double("train", "--lr", *v));
  if (auto v = opts.get("--data")) {
    if (task == "listops") set("data", "dir", *v);
    else if (task == "charlm") set("data", "file", *v);
    else if (task == "translate") {
      set("data", "src", *v);
      set("data", "tgt", opts.positional().empty() ? Json() : Json(opts.positional()[0]));
    }
    else set("data", "dir", *v);
  }
  validate_run_config(cfg);  // before --show-config, so that it never prints an invalid configuration back
  if (opts.has("--show-config")) {
    std::printf("%s\n", cfg.dump(2).c_str());
    return 0;
  }
  TrainOptions o = train_options(cfg);
  o.resume = opts.get("--resume").value_or("");
  o.force = opts.has("--force");
  if (o.force && !o.resume.empty())
    throw UsageError("megagrad train: --force starts over and --resume continues a run: give one of them");
  if (opts.has("--init-from") && !o.resume.empty())
    throw UsageError("megagrad train: --resume continues a run with its own weights, --init-from starts a new run "
                     "from a weights file: give one of them");
  // The file's own checks (structure, checksum, finite values) before anything is written; its
  // names and shapes once the model is built.
  std::optional<WeightsFile> init;
  if (auto w = opts.get("--init-from")) init = load_weights_file(*w, "init-from");
  const std::string model_type = cfg.at("model").at("type").get_string();
  const std::string resume_dir = std::filesystem::path(o.resume).parent_path().string();
  o.out_dir = opts.get("--out").value_or(o.resume.empty() ? "runs/" + task + "-" + model_type
                                                          : (resume_dir.empty() ? "." : resume_dir));
  o.detect_anomaly = opts.has("--detect-anomaly");
  if (opts.has("--tensorboard")) o.tensorboard_dir = (std::filesystem::path(o.out_dir) / "tensorboard").string();
  o.device = device;
  // Before the data is loaded: a folder that holds another run is refused at once.
  try {
    const std::string moved = run_on_root(comm, [&] { return prepare_run_dir(o); });
    if (!moved.empty() && root)
      std::printf("megagrad train: moved the old run in %s to %s\n", o.out_dir.c_str(), moved.c_str());
    o.force = false;  // done: train() finds an empty folder
  } catch (const RunExistsError& e) {
    throw UsageError(fmt::format("megagrad train: {}", std::string_view(e.what()).substr(8)));
  }
  if (root)
    std::printf("megagrad train: task %s, model %s; OpenBLAS core %s, %d thread(s)%s\n", task.c_str(),
                cfg.at("model").at("type").get_string().c_str(), blas_core_name().c_str(), get_num_threads(),
                comm.size() > 1 ? fmt::format(" per rank, {} ranks ({})", comm.size(), comm.name()).c_str() : "");
  std::fflush(stdout);
  std::unique_ptr<TrainTask> t = make_task(cfg);
  set_task_run_dir(*t, o.out_dir, root);  // translate: its tokenizer is cached there
  // translate: the subword model is trained (or read from the folder's cache) and the training and
  // validation splits encoded here, before train() writes any file: a vocabulary the text cannot
  // fill, or a sentence too long, then leaves no half-started run behind.
  if (o.resume.empty()) prepare_task_data(*t);
  if (init) {
    load_weights_for(t->model(), *init, "train", "init-from", root);
    if (root) std::printf("megagrad train: initialised from %s (%zu tensors)\n", init->path.c_str(), init->tensors.size());
    o.init_from = init->path;
    if (init->verified) o.init_from_checksum = init->metadata.at("checksum");
    if (root && init->config) {  // the same names and shapes, but maybe another model (e.g. an activation)
      std::vector<std::string> diff;
      try {
        diff = model_config_differences(*init->config, cfg);
      } catch (const Error& e) {
        diff = {fmt::format("cannot compare: {}", e.what())};
      }
      std::string list;
      for (const std::string& d : diff) list += (list.empty() ? "" : ", ") + d;
      if (!diff.empty())
        std::fprintf(stderr, "megagrad train: warning: %s was exported from another model configuration than this "
                     "run's (%s); its tensor names and shapes match\n", init->path.c_str(), list.c_str());
    }
  }
  o.comm = &comm;
  if (comm.size() > 1 && !o.device.is_cpu() && dist::built_with_nccl()) {
    // GPUs: one per rank, and the gradients summed by NCCL on the device. (Without NCCL, MPI
    // sums them through the host.)
    o.comm = &dist::nccl_world();
    o.device = Device::cuda(dist::nccl_device());  // train() moves the model there
  }
  TrainSummary s = train(*t, o);
  if (!root) return s.stopped_on_nan ? 1 : 0;
  const double steps_done = (double)std::max<int64_t>(s.step, 1);
  std::printf("\nsteps %lld in %s: %.0f tokens/s; per step %.1f ms forward, %.1f ms backward, %.1f ms optimizer\n",
              (long long)s.step, format_seconds(s.seconds).c_str(), s.tokens_per_s, 1e3 * s.forward_s / steps_done,
              1e3 * s.backward_s / steps_done, 1e3 * s.optimizer_s / steps_done);
  std::printf("validation %s %s (loss %s, %lld predictions)\n", t->metric_name().c_str(),
              format_metric(t->metric_name(), s.val.metric).c_str(), format_metric("loss", s.val.loss).c_str(),
              (long long)s.val.count);
  std::printf("%s\n", t->describe().c_str());
  std::printf("checkpoint %s\nmetrics    %s\nplot       %s\n",
              s.checkpoint.empty() ? "(none: no step passed the checks)" : s.checkpoint.c_str(), s.metrics.c_str(),
              s.plot.c_str());
  return s.stopped_on_nan ? 1 : 0;
}

int cmd_eval(const std::vector<std::string>& args) {
  Options opts("eval", {{"--weights", "FILE", "evaluate a weights file instead of a CHECKPOINT: one from megagrad export, or from elsewhere (e.g. converted official weights) with --config"},
                        {"--config", "FILE", "with --weights: the run configuration (JSON with \"task\", as train's --config) of a file that carries none; for an exported file, overrides merged into its own"},
                        {"--data", "FILE", "listops: evaluate on this LRA-format .tsv instead of the run's data"},
                        {"--split", "S", "val (default) or test"},
                        {"--beam", "K", "translate: beam size of the translations scored with BLEU and chrF (default 4; 1: greedy)"},
                        {"--max-len", "N", "translate: at most N generated tokens per sentence (default: 2 x source + 10, within the model's positions)"},
                        {"--sentences", "N", "translate: score the split's first N pairs only (default: all)"},
                        device_option(),
                        threads_option()});
  opts.positionals(1, "CHECKPOINT");
  opts.parse(args);
  if (opts.help()) {
    std::printf("usage: megagrad eval CHECKPOINT [options]\n"
                "       megagrad eval --weights FILE [--config MODEL.json] [options]\n\n"
                "Evaluates a training checkpoint, or a weights-only file, on its task's validation or test\n"
                "split, or on a ListOps .tsv file. A weights file written by megagrad export carries its\n"
                "run configuration and a checksum, and is verified. A file from elsewhere (e.g. official\n"
                "weights converted by tools/convert_fairseq_mega.py) carries neither: give the run\n"
                "configuration with --config; the file is reported as unverified on stderr. Either way its\n"
                "tensor names and shapes must be the model's (the error lists the missing, unexpected and\n"
                "mismatched tensors). F16 and BF16 tensors are read as float32.\n"
                "A translate checkpoint also translates the split (beam search, --beam) and reports corpus\n"
                "BLEU (sacreBLEU's 13a tokenisation and formula) and chrF.\n\n%s",
                opts.options_help().c_str());
    return 0;
  }
  apply_threads(opts);
  const Device device = parse_device(opts, "eval");
  const bool weights = opts.has("--weights");
  if (weights && !opts.positional().empty())
    throw UsageError("megagrad eval: give a CHECKPOINT or --weights FILE, not both");
  if (!weights && opts.positional().empty())
    throw UsageError("megagrad eval: missing CHECKPOINT or --weights FILE (see: megagrad eval --help)");
  if (!weights && opts.has("--config"))
    throw UsageError("megagrad eval: --config goes with --weights (a checkpoint carries its own configuration)");
  const std::string split = opts.get("--split").value_or("val");
  if (split != "val" && split != "test")
    throw UsageError(fmt::format("megagrad eval: --split must be val or test, got '{}'", split));
  const std::string path = weights ? *opts.get("--weights") : opts.positional()[0];
  Checkpoint ck;
  std::optional<WeightsFile> w;
  Json cfg;
  if (weights) {
    w = load_weights_file(path, "eval");
    std::optional<Json> given;
    if (auto f = opts.get("--config")) given = Json::parse(read_file(*f, "eval", 1 << 20), *f);
    if (w->config) {
      cfg = complete_run_config(*w->config);
      if (given) cfg = merge_run_config(cfg, *given, *opts.get("--config"));
    } else {
      if (!given)
        throw UsageError(fmt::format("megagrad eval: {} carries no run configuration (not a file of megagrad export): "
                                     "give the model's with --config MODEL.json", path));
      const std::string& f = *opts.get("--config");
      MG_CHECK(given->is_object() && given->contains("task") && given->at("task").is_string(), "eval",
               "{}: no \"task\" in the configuration: say which task the model is for (listops, fmnist or charlm)", f);
      cfg = merge_run_config(default_run_config(given->at("task").get_string()), *given, f);
    }
  } else {
    ck = load_for(path, "eval");
    MG_CHECK(ck.meta.count("config"), "eval", "{}: no run configuration in the checkpoint", path);
    cfg = Json::parse(ck.meta.at("config"), "checkpoint config");
  }
  if (auto f = opts.get("--data")) {
    if (cfg.at("task").get_string() != "listops")
      throw UsageError("megagrad eval: --data FILE.tsv is for ListOps checkpoints");
    Json d = cfg.at("data");
    d.set("eval_file", *f);
    cfg.set("data", d);
  }
  const bool translate = cfg.at("task").get_string() == "translate";
  if (!translate)
    for (const char* o : {"--beam", "--max-len", "--sentences"})
      if (opts.has(o)) throw UsageError(fmt::format("megagrad eval: {} is for translate checkpoints", o));
  if (translate && weights)
    throw UsageError("megagrad eval: a translate model needs its tokenizer, which only its checkpoint carries: give "
                     "the CHECKPOINT");
  const int64_t beam = opts.get_int("--beam", 4, 1, 1000), max_len = opts.get_int("--max-len", 0, 1, 1000000);
  const int64_t sentences = opts.get_int("--sentences", 0, 1, INT64_MAX);
  std::unique_ptr<TrainTask> t = make_task(cfg);
  if (w) load_weights_for(t->model(), *w, "eval", "eval", true);
  else t->model().load_state_dict(ck.model);
  if (translate) t->load_data_state(Json::parse(ck.meta.at("data"), path + ": data"));  // its tokenizer
  t->to(device);
  EvalResult r = t->evaluate(split, 0);
  MG_CHECK(std::isfinite(r.loss) && std::isfinite(r.metric), "eval", "{}: the {} loss is {} with finite weights",
           path, split, r.loss);
  std::printf("%s\n%s %s %s (loss %s, %lld predictions)\n", t->describe().c_str(), split.c_str(),
              t->metric_name().c_str(), format_metric(t->metric_name(), r.metric).c_str(),
              format_metric("loss", r.loss).c_str(), (long long)r.count);
  if (translate) {
    TranslationScores s = translation_scores(*t, split, beam, max_len, sentences);
    std::printf("%s %s\n%s %s (beam %lld, %zu sentences, %.1f s, %.2f ms per generated token)\n", split.c_str(),
                s.bleu.format().c_str(), split.c_str(), s.chrf.format().c_str(), (long long)beam,
                s.hypotheses.size(), s.seconds, 1e3 * s.seconds / (double)std::max<int64_t>(s.generated_tokens, 1));
  }
  return 0;
}

int cmd_generate(const std::vector<std::string>& args) {
  Options opts("generate", {{"--prompt", "TEXT", "the text to continue (required)"},
                            {"--length", "N", "characters to generate (default 300)"},
                            {"--temperature", "T", "sampling temperature (default 0.8)"},
                            {"--top-k", "K", "sample among the K most likely characters (default 0: all)"},
                            {"--seed", "S", "sampling seed (default 0)"},
                            {"--weights", "FILE", "generate from a weights file of megagrad export (it carries the configuration and the vocabulary) instead of a CHECKPOINT"},
                            threads_option()});
  opts.positionals(1, "CHECKPOINT");
  opts.parse(args);
  if (opts.help()) {
    std::printf("usage: megagrad generate CHECKPOINT --prompt TEXT [options]\n"
                "       megagrad generate --weights FILE --prompt TEXT [options]\n\nContinues TEXT with a character "
                "language model (megagrad train --task charlm), by incremental decoding (Mega;\n"
                "a Transformer decoder reruns its forward over the context for each character).\n\n%s",
                opts.options_help().c_str());
    return 0;
  }
  apply_threads(opts);
  const bool weights = opts.has("--weights");
  if (weights && !opts.positional().empty())
    throw UsageError("megagrad generate: give a CHECKPOINT or --weights FILE, not both");
  if (!weights && opts.positional().empty())
    throw UsageError("megagrad generate: missing CHECKPOINT or --weights FILE (see: megagrad generate --help)");
  if (!opts.has("--prompt")) throw UsageError("megagrad generate: --prompt is required");
  const double temperature = parse_double("generate", "--temperature", opts.get("--temperature").value_or("0.8"));
  if (!(temperature > 0)) throw UsageError("megagrad generate: --temperature must be positive");
  Checkpoint ck;
  if (weights) {  // the parts of a checkpoint that generation reads: weights, configuration, vocabulary
    const WeightsFile w = load_weights_file(*opts.get("--weights"), "generate");
    MG_CHECK(w.config && w.metadata.count("vocab"), "generate",
             "{}: no run configuration or vocabulary in the metadata: generate needs a character LM's weights "
             "written by megagrad export", w.path);
    ck.model = w.tensors;
    ck.meta["config"] = w.config->dump();
    Json data = Json::object();
    data.set("vocab", Json::parse(w.metadata.at("vocab"), w.path + ": vocab"));
    ck.meta["data"] = data.dump();
  } else {
    ck = load_for(opts.positional()[0], "generate");
  }
  std::string out = generate_from_checkpoint(ck, *opts.get("--prompt"), opts.get_int("--length", 300, 1, 1000000),
                                             temperature, opts.get_int("--top-k", 0, 0, 1000000),
                                             (uint64_t)opts.get_int("--seed", 0, 0, INT64_MAX));
  std::printf("%s%s\n", opts.get("--prompt")->c_str(), out.c_str());
  return 0;
}

}  // namespace megagrad::cli
