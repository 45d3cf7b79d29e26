// The megagrad program:   megagrad [--threads N] <command> [options]
//                         megagrad help [<command>] | --help | --version
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
      {"train", cmd_train, "train a Mega model on listops, fmnist, charlm or translate (progress, checkpoints, plot)"},
      {"eval", cmd_eval, "evaluate a training checkpoint or a weights file (or a ListOps model on a .tsv file)"},
      {"export", cmd_export, "write a checkpoint's weights only (official names, configuration, checksum) to a safetensors file"},
      {"translate", cmd_translate, "translate sentences with a translate checkpoint (beam search or greedy)"},
      {"generate", cmd_generate, "continue a prompt with a character language model (a checkpoint or its exported weights)"},
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

Options global_options() {
  return Options("", {threads_option(), {"--version", "", "print the version and exit (also -V)"}});
}

std::string program_help() {
  std::string out =
      "megagrad " MEGAGRAD_VERSION ": trains Mega sequence models (tensors, reverse-mode autograd, CPU/OpenBLAS\n"
      "and CUDA backends)\n\n"
      "usage: megagrad [--threads N] <command> [options]\n"
      "       megagrad help [<command>]\n"
      "       megagrad --version\n\ncommands:\n";
  for (const Command& c : commands()) out += fmt::format("  {:<12} {}\n", c.name, c.summary);
  out += fmt::format("  {:<12} {}\n", "help", "this list, or `megagrad help <command>`: the command's options");
  out += "\n" + global_options().options_help();
  out += "\n`megagrad help <command>` (or `megagrad <command> --help`) describes a command. In every\n"
         "command, `--` ends the options: what follows is a positional argument even if it starts with '-'.\n"
         "Exit codes: 0 success, 1 the command failed, 2 bad usage.\n";
  return out;
}

const Command* find_command(const std::string& name) {
  for (const Command& c : commands())
    if (name == c.name) return &c;
  return nullptr;
}

[[noreturn]] void unknown_command(const std::string& name) {
  std::string names;
  for (const Command& c : commands()) names += (names.empty() ? "" : ", ") + std::string(c.name);
  throw UsageError(fmt::format("megagrad: unknown command '{}' (commands: {}, help)", name, names));
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // Global options come before the command name; "--" ends them.
  size_t i = 0;
  std::vector<std::string> global_args;
  while (i < args.size() && args[i].rfind("-", 0) == 0) {
    if (args[i] == "--") {
      ++i;
      break;
    }
    global_args.push_back(args[i] == "-V" ? "--version" : args[i]);
    // "--threads N": the value travels with it.
    if (args[i] == "--threads" && i + 1 < args.size()) global_args.push_back(args[++i]);
    ++i;
  }
  Options global = global_options();
  global.parse(global_args);
  if (global.has("--version")) {
    std::printf("megagrad %s\n", MEGAGRAD_VERSION);
    return 0;
  }
  if (global.help()) {
    std::fputs(program_help().c_str(), stdout);
    return 0;
  }
  if (i == args.size())
    throw UsageError("megagrad: no command given (try: megagrad --help)");
  apply_threads(global);
  const std::string& name = args[i];
  std::vector<std::string> rest(args.begin() + i + 1, args.end());
  if (name == "help") {  // megagrad help [<command>]: the same text as --help
    if (rest.empty() || (rest.size() == 1 && (rest[0] == "--help" || rest[0] == "-h"))) {
      std::fputs(program_help().c_str(), stdout);
      return 0;
    }
    if (rest.size() > 1)
      throw UsageError(fmt::format("megagrad help: expects one command name, got {} arguments (see: megagrad help)",
                                   rest.size()));
    const Command* c = find_command(rest[0]);
    if (!c) unknown_command(rest[0]);
    return c->run({"--help"});
  }
  const Command* c = find_command(name);
  if (!c) unknown_command(name);
  return c->run(rest);
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
