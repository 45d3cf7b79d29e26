// A two-layer MLP learns a noisy 3-class spiral (see examples/mlp_job.h for the model, the data
// and the inline Adam). Runs in a few seconds:   build/mlp
// The same job runs as `megagrad demo`, which also takes --steps, --seed and --threads.
#include <cstdio>
#include "backends/cpu/blas.h"
#include "examples/mlp_job.h"

int main(int argc, char** argv) {
  megagrad::fix_openblas_core_or_reexec(argc, argv);
  if (argc > 1) {
    std::fprintf(stderr, "usage: %s   (no options; `megagrad demo --help` has the tunable version)\n", argv[0]);
    return 2;
  }
  try {
    megagrad::mlp_job::Result r = megagrad::mlp_job::run({});
    megagrad::mlp_job::print_result(r);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mlp: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
