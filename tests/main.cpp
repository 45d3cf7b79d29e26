// Catch2's main, with megagrad's OpenBLAS check first (see backends/cpu/blas.h).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include "backends/cpu/blas.h"

#ifdef __SANITIZE_ADDRESS__
// The out-of-memory tests ask for petabytes: ASan must return null (as glibc does) instead of
// aborting, so that megagrad's "[alloc] out of memory" path is what runs.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
#endif

int main(int argc, char** argv) {
  megagrad::fix_openblas_core_or_reexec(argc, argv);
  return Catch::Session().run(argc, argv);
}
