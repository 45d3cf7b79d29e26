// The CUDA backend's device queries and its smoke kernel. On a machine without a GPU or driver
// (this one, CI) the kernel test is reported as a visible skip, not a silent pass.
#include <catch2/catch.hpp>
#include "tests/cuda_test_util.h"
#include <cmath>
#include <vector>
#include "backends/cuda/cuda.h"
#include "core/rng.h"
#if MEGAGRAD_HAS_CUDA
#include "backends/cuda/kernels_smoke.h"
#endif

using namespace megagrad;

TEST_CASE("cuda: status is reported and agrees with the device count", "[cuda]") {
  std::string status = cuda_status();
  INFO("cuda_status: " << status);
  REQUIRE(!status.empty());
  REQUIRE(cuda_built() == bool(MEGAGRAD_HAS_CUDA));
  int n = cuda_device_count();
  REQUIRE(n >= 0);
  REQUIRE(cuda_available() == (n > 0));
  if (n == 0) {
    // No device: the status says why, and the descriptions carry that reason.
    if (cuda_built()) REQUIRE(status.rfind("no device: ", 0) == 0);
    auto d = cuda_device_descriptions();
    if (cuda_built()) {
      REQUIRE(d.size() == 1);
      REQUIRE(d[0] == status);
    }
  } else {
    auto d = cuda_device_descriptions();
    REQUIRE((int)d.size() == n);
    for (const auto& line : d) REQUIRE(line.find("sm_") != std::string::npos);
  }
  // Asking again gives the same answer (the probe is cached, and a failed probe left no error
  // behind to break later calls).
  REQUIRE(cuda_status() == status);
  REQUIRE(cuda_device_count() == n);
}

TEST_CASE("cuda: axpy kernel matches the CPU", "[cuda]") {
  if (test::skip_without_cuda()) return;
#if MEGAGRAD_HAS_CUDA
  // A length that is not a multiple of the block size, so the tail is exercised.
  const int64_t n = (1 << 20) + 3;
  Generator g(7);
  std::vector<double> xd = uniform({n}, -1, 1, DType::Float64, &g).to_vector();
  std::vector<double> yd = uniform({n}, -1, 1, DType::Float64, &g).to_vector();
  std::vector<float> x(xd.begin(), xd.end()), y(yd.begin(), yd.end());
  const float alpha = 0.75f;
  std::vector<float> expect(n);
  for (int64_t i = 0; i < n; ++i) expect[i] = (float)((double)alpha * x[i] + (double)y[i]);
  cuda_axpy(alpha, x.data(), y.data(), n);
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) worst = test::max_or_inf(worst, (double)std::fabs(y[i] - expect[i]));
  INFO("worst |gpu - cpu| = " << worst);
  REQUIRE(worst <= 1e-6);  // |alpha x + y| <= 1.75: a few float32 ulps at most
#endif
}
