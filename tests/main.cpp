// Catch2's main, with megagrad's OpenBLAS check first (see backends/cpu/blas.h), and the count
// of skipped test cases (test::skip in test_util.h) that Catch2 v2 would report as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>
#include "backends/cpu/blas.h"
#include "tests/test_util.h"

#ifdef __SANITIZE_ADDRESS__
// The out-of-memory tests ask for petabytes: ASan must return null (as glibc does) instead of
// aborting, so that megagrad's "[alloc] out of memory" path is what runs.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
#endif

namespace {

// ctest's SKIP_RETURN_CODE (CMakeLists.txt): the test shows as ***Skipped, not Passed.
constexpr int kSkipReturnCode = 77;

struct SkipCounts {
  int ran = 0;
  std::vector<std::string> skipped;  // names of the test cases that called test::skip
};
SkipCounts& skip_counts() {
  static SkipCounts c;
  return c;
}

struct SkipListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseStarting(const Catch::TestCaseInfo& info) override {
    TestEventListenerBase::testCaseStarting(info);
    megagrad::test::test_case_skipped() = false;
  }
  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    TestEventListenerBase::testCaseEnded(stats);
    ++skip_counts().ran;
    // A test case that failed before it skipped counts as failed (Catch2's exit status says so).
    if (megagrad::test::test_case_skipped() && stats.totals.assertions.failed == 0)
      skip_counts().skipped.push_back(stats.testInfo.name);
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(SkipListener)

int main(int argc, char** argv) {
  megagrad::fix_openblas_core_or_reexec(argc, argv);
  const int rc = Catch::Session().run(argc, argv);
  const SkipCounts& c = skip_counts();
  if (c.skipped.empty()) return rc;
  // After Catch2's "All tests passed" line: the skipped ones did not pass, they did not run.
  std::printf("NOTE: %zu of %d test case(s) skipped, not run (Catch2 counts them as passed above):\n",
              c.skipped.size(), c.ran);
  for (const std::string& name : c.skipped) std::printf("  skipped: %s\n", name.c_str());
  std::fflush(stdout);
  if (rc != 0) return rc;
  // Everything that ran was skipped (as under ctest, one test case per run): exit as skipped.
  // Some ran and passed: success, with the list above.
  return (int)c.skipped.size() == c.ran ? kSkipReturnCode : 0;
}
