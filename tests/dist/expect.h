// The check of the programs in tests/dist/ that run under mpirun: a failed expectation is printed
// with the rank and counted; main sums the counts over the ranks and rank 0 reports the job.
#pragma once
#include <cstdio>
#include <string>
#include "backends/dist/communicator.h"

namespace megagrad::dist_test {
inline int failures = 0;
inline void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "rank %d: FAILED: %s\n", dist::world().rank(), what.c_str());
  }
}
}  // namespace megagrad::dist_test
