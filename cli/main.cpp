// The megagrad program:   megagrad [--threads N] <command> [options]
// Exit codes: 0 success, 1 the command failed (an error, a failed gradcheck), 2 bad usage.
#include <cstdio>
#include <string>
#include <vector>
#include "backends/cpu/blas.h"
#include "backends/dist/communicator.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"

namespace megagrad::cli {

namespace {

bool g_threads_set = false;  // a --threads option was applied

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>&);
  const char* summary;
};

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"train", cmd_train, "train a Mega model on listops, fmnist or charlm (progress, checkpoints, plot)"},
      {"eval", cmd_eval, "evaluate a training checkpoint (or a ListOps checkpoint on a .tsv file)"},
      {"generate", cmd_generate, "continue a prompt with a character language model checkpoint"},
      {"plot", cmd_plot, "overlay the curves of several training runs in one SVG (e.g. Mega vs the Transformer)"},
      {"info", cmd_info, "version, build, CUDA devices, OpenBLAS kernel and threads"},
      {"gradcheck", cmd_gradcheck, "finite-difference check of every differentiable op"},
      {"demo", cmd_demo, "train a two-layer MLP on a 2-D spiral (a quick smoke run; `make demo` trains ListOps)"},
      {"ref-check", cmd_ref_check, "compare a Mega layer with a case computed by the official code"},
      {"bench-layer", cmd_bench_layer, "time one Mega layer's forward and backward, and its peak memory"},
      {"bench-step", cmd_bench_step, "time one training step of a whole ListOps model at a given length, and its peak memory"},
  };
  return list;
}

std::string program_help() {
  std::string out =
      "megagrad " MEGAGRAD_VERSION ": trains Mega sequence models (tensors, reverse-mode autograd, CPU/OpenBLAS\n"
      "and CUDA backends)\n\n"
      "usage: megagrad [--threads N] <command> [options]\n\ncommands:\n";
  for (const Command& c : commands()) out += fmt::format("  {:<12} {}\n", c.name, c.summary);
  Options global("", {threads_option()});
  out += "\n" + global.options_help();
  out += "\n`megagrad <command> --help` describes a command.\n";
  return out;
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // Global options come before the command name.
  size_t i = 0;
  std::vector<std::string> global_args;
  while (i < args.size() && args[i].rfind("-", 0) == 0) {
    global_args.push_back(args[i]);
    // "--threads N": the value travels with it.
    if (args[i] == "--threads" && i + 1 < args.size()) global_args.push_back(args[++i]);
    ++i;
  }
  Options global("", {threads_option()});
  global.parse(global_args);
  if (global.help()) {
    std::fputs(program_help().c_str(), stdout);
    return 0;
  }
  if (i == args.size())
    throw UsageError("megagrad: no command given (try: megagrad --help)");
  apply_threads(global);
  const std::string& name = args[i];
  std::vector<std::string> rest(args.begin() + i + 1, args.end());
  for (const Command& c : commands())
    if (name == c.name) return c.run(rest);
  std::string names;
  for (const Command& c : commands()) names += (names.empty() ? "" : ", ") + std::string(c.name);
  throw UsageError(fmt::format("megagrad: unknown command '{}' (commands: {})", name, names));
}

}  // namespace

void apply_threads(const Options& opts) {
  if (!opts.has("--threads")) return;
  set_num_threads((int)opts.get_int("--threads", 0, 1, 4096));
  g_threads_set = true;
}

bool threads_set_by_option() { return g_threads_set; }

}  // namespace megagrad::cli

int main(int argc, char** argv) {
  // Before anything else: OpenBLAS picks its kernel when it loads, so a wrong pick needs a
  // re-exec with OPENBLAS_CORETYPE set (see backends/cpu/blas.h).
  megagrad::fix_openblas_core_or_reexec(argc, argv);
  try {
    return megagrad::cli::run(argc, argv);
  } catch (const megagrad::cli::UsageError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    megagrad::dist::end_job_after_error(2);  // under mpirun: the other ranks too, not a hang
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "megagrad: error: %s\n", e.what());
    megagrad::dist::end_job_after_error(1);
    return 1;
  }
}
