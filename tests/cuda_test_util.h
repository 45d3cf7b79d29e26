// Shared by the CUDA tests: the visible skip on machines without a device.
#pragma once
#include <catch2/catch.hpp>
#include <string>
#include "backends/cuda/cuda.h"

namespace megagrad::test {

// True, after a visible "SKIPPED: no CUDA device: <why>" warning, when there is no device.
inline bool skip_without_cuda() {
  if (cuda_available()) return false;
  std::string why = cuda_status();
  if (why.rfind("no device: ", 0) == 0) why = why.substr(11);
  WARN("SKIPPED: no CUDA device: " << why);
  SUCCEED();
  return true;
}

}  // namespace megagrad::test
