// megagrad demo: a quick smoke run, a two-layer MLP trained on a 2-D spiral (the same code
// as examples/mlp.cpp: examples/mlp_job.h).
#include <cstdio>
#include "cli/commands.h"
#include "examples/mlp_job.h"

namespace megagrad::cli {

int cmd_demo(const std::vector<std::string>& args) {
  mlp_job::Options o;
  Options opts("demo", {{"--steps", "N", fmt::format("training steps (default {})", o.steps)},
                        {"--seed", "S", fmt::format("seed for the data and the initial weights (default {})", o.seed)},
                        {"--dump-graph", "FILE", "write the first step's graph as Graphviz DOT to FILE"},
                        threads_option()});
  opts.parse(args);
  if (opts.help()) {
    std::printf("usage: megagrad demo [options]\n\n"
                "Trains a two-layer MLP (2 -> %d tanh -> %d) with Adam on a noisy %d-class 2-D\n"
                "spiral and prints the loss as it falls, then the accuracy on the\n"
                "training points and on held-out points.\n\n%s",
                o.hidden, o.classes, o.classes, opts.options_help().c_str());
    return 0;
  }
  apply_threads(opts);
  o.steps = (int)opts.get_int("--steps", o.steps, 1, 10'000'000);
  o.seed = (uint64_t)opts.get_int("--seed", (int64_t)o.seed, 0, INT64_MAX);
  o.dump_graph = opts.get("--dump-graph").value_or("");
  if (opts.has("--dump-graph") && o.dump_graph.empty())
    throw UsageError("megagrad demo: --dump-graph needs a file name");
  mlp_job::Result r = mlp_job::run(o);
  mlp_job::print_result(r);
  return 0;
}

}  // namespace megagrad::cli
