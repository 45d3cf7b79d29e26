// The build without NCCL: nccl_world() says why (CMake compiles the reason in as
// MEGAGRAD_NCCL_MISSING), so that a GPU run asking for it fails with a fix rather than silently.
#include "backends/dist/nccl.h"
#include "core/error.h"

#ifndef MEGAGRAD_NCCL_MISSING
#define MEGAGRAD_NCCL_MISSING "unknown reason"
#endif

namespace megagrad::dist {

bool built_with_nccl() { return false; }
std::string nccl_build_info() { return std::string("not built: ") + MEGAGRAD_NCCL_MISSING; }

[[noreturn]] static void missing() {
  fail("nccl", "this megagrad was built without NCCL: {}", MEGAGRAD_NCCL_MISSING);
}

Communicator& nccl_world() { missing(); }
int nccl_device() { missing(); }

}  // namespace megagrad::dist
