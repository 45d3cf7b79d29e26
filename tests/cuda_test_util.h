// Shared by the CUDA tests: the visible skip on machines without a device.
#pragma once
#include <catch2/catch.hpp>
#include <string>
#include "backends/cuda/cuda.h"
#include "tests/test_util.h"

namespace megagrad::test {

// True, after skip("no CUDA device: <why>"), when there is no device: the caller returns, and
// the test case is reported as skipped (see skip() in test_util.h), never as passed.
inline bool skip_without_cuda() {
  if (cuda_available()) return false;
  std::string why = cuda_status();
  if (why.rfind("no device: ", 0) == 0) why = why.substr(11);
  skip("no CUDA device: " + why);
  return true;
}

}  // namespace megagrad::test
