// The megagrad program's subcommands. Each takes the arguments after its name, returns the
// process exit code (0 ok, 1 failed), and throws UsageError (exit 2) on bad arguments.
#pragma once
#include <string>
#include <vector>
#include "cli/args.h"
#include "core/device.h"

namespace megagrad::cli {

int cmd_info(const std::vector<std::string>& args);
int cmd_gradcheck(const std::vector<std::string>& args);
int cmd_demo(const std::vector<std::string>& args);
int cmd_ref_check(const std::vector<std::string>& args);
int cmd_bench_layer(const std::vector<std::string>& args);
int cmd_bench_step(const std::vector<std::string>& args);
int cmd_train(const std::vector<std::string>& args);
int cmd_eval(const std::vector<std::string>& args);
int cmd_generate(const std::vector<std::string>& args);
int cmd_translate(const std::vector<std::string>& args);
int cmd_plot(const std::vector<std::string>& args);
int cmd_export(const std::vector<std::string>& args);

// --threads N is accepted before the subcommand and by every subcommand.
inline OptionSpec threads_option() {
  return {"--threads", "N", "threads for megagrad and OpenBLAS (default: MEGAGRAD_NUM_THREADS, else all cores)"};
}
// Applies --threads when given (set_num_threads).
void apply_threads(const Options& opts);
inline OptionSpec device_option() { return {"--device", "D", "cpu (default), cuda or cuda:N"}; }
// --device cpu | cuda | cuda:N. No device is a usage error naming why, never a silent CPU run.
Device parse_device(const Options& opts, const std::string& cmd);
// Whether a --threads option (global or a subcommand's) set the thread count.
bool threads_set_by_option();

}  // namespace megagrad::cli
