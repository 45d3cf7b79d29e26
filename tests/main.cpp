// Catch2's main, with megagrad's OpenBLAS check first (see backends/cpu/blas.h).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include "backends/cpu/blas.h"

int main(int argc, char** argv) {
  megagrad::fix_openblas_core_or_reexec(argc, argv);
  return Catch::Session().run(argc, argv);
}
