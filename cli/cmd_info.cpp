// megagrad info: what this build is and what it found on this machine.
#include <cstdio>
#include <cstdlib>
#include "backends/cpu/blas.h"
#include "backends/dist/communicator.h"
#include "backends/dist/nccl.h"
#include "backends/cuda/cuda.h"
#include "cli/commands.h"
#include "core/build_info.h"
#include "core/parallel.h"
#include "mega/data/bible_parallel.h"
#include "mega/text/subword.h"

namespace megagrad::cli {

int cmd_info(const std::vector<std::string>& args) {
  Options opts("info", {threads_option()});
  opts.parse(args);
  if (opts.help()) {
    std::printf("usage: megagrad info [options]\n\n"
                "Prints the version, the build, the CUDA devices this process can use, the\n"
                "OpenBLAS kernel (and whether it was auto-fixed) and the thread counts.\n\n%s",
                opts.options_help().c_str());
    return 0;
  }
  apply_threads(opts);

  auto row = [](const char* key, const std::string& value) {
    std::printf("%-18s %s\n", key, value.c_str());
  };
  row("megagrad", MEGAGRAD_VERSION);
  row("build type", MEGAGRAD_BUILD_TYPE);
  row("build target", build_target());  // MEGAGRAD_NATIVE: the CPUs this build runs on
#if defined(__clang__)
  row("compiler", "clang " __VERSION__);
#elif defined(__GNUC__)
  row("compiler", "gcc " __VERSION__);
#else
  row("compiler", __VERSION__);
#endif

  // CUDA: built or not; the devices, or why there are none.
  if (!cuda_built()) {
    row("cuda", "not built (no nvcc at configure time)");
  } else {
    row("cuda", "built: yes");
    if (cuda_available()) {
      row("cuda status", cuda_status());
      for (const std::string& d : cuda_device_descriptions()) row("cuda device", d);
    } else {
      row("cuda devices", cuda_status());  // "no device: <reason>"
    }
  }

  // Between processes: MPI built or not, and this process's place in an mpirun launch.
  row("mpi", dist::built_with_mpi() ? "built: yes (backends/dist/comm_mpi.cpp)"
                                    : "not built (no MPI at configure time: Debian's libopenmpi-dev)");
  if (dist::launcher_world_size() > 1) {
    const dist::Communicator& w = dist::world();
    row("mpi rank", fmt::format("{} of {}", w.rank(), w.size()));
  }
  // Between GPUs: NCCL, built or not (and why not). Creating its communicator is a collective,
  // so info only reports the build.
  row("nccl", dist::nccl_build_info());

  // Translation data: the subword tokenizer and the Bible modules' reader, built or not.
  row("sentencepiece", text::sentencepiece_build_info());
  row("sword", data::sword_build_info());

  // OpenBLAS: the kernel it runs, and whether we had to re-exec to get it.
  row("openblas core", blas_core_name());
  row("openblas config", blas_config());
  row("openblas threads", std::to_string(blas_get_num_threads()));
  if (const char* replaced = std::getenv("MEGAGRAD_REEXECUTED")) {
    const char* core = std::getenv("OPENBLAS_CORETYPE");
    row("openblas fix",
        fmt::format("auto-fixed: OpenBLAS picked its generic '{}' kernel; re-executed with "
                    "OPENBLAS_CORETYPE={}",
                    replaced, core ? core : "?"));
  } else if (blas_core_is_slow_fallback()) {
    row("openblas fix", fmt::format("NOT fixed: slow generic kernel; export OPENBLAS_CORETYPE={}",
                                    blas_best_core_type()));
  } else {
    row("openblas fix", "not needed");
  }

  const char* env_threads = std::getenv("MEGAGRAD_NUM_THREADS");
  std::string source = threads_set_by_option()    ? "from --threads"
                       : env_threads != nullptr   ? fmt::format("from MEGAGRAD_NUM_THREADS={}", env_threads)
                                                  : "default: the cores this process may use";
  row("threads", fmt::format("{} ({})", get_num_threads(), source));
  return 0;
}

}  // namespace megagrad::cli
