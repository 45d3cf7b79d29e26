// The CUDA side of backends/cuda/cuda.h: which devices this process can use.
//
// A machine without a GPU, or with a driver older than the runtime, makes cudaGetDeviceCount
// fail ("no CUDA-capable device is detected", "CUDA driver version is insufficient ..."). That
// is the ordinary "no device" answer here, never a crash: the queries report it in cuda_status().
#include <mutex>
#include "backends/cuda/cuda.h"
#include "backends/cuda/cuda_check.h"

namespace megagrad {

namespace {

struct Probe {
  int count = 0;
  std::string why_none;  // set when count == 0
};

// Asks the runtime once per process; the answer does not change while it runs.
const Probe& probe() {
  static Probe p;
  static std::once_flag once;
  std::call_once(once, [] {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it so later calls are not blamed for it
      p.count = 0;
      p.why_none = cudaGetErrorString(err);
    } else if (n == 0) {
      p.why_none = "cudaGetDeviceCount found 0 devices";
    } else {
      p.count = n;
    }
  });
  return p;
}

std::string version_str(int v) { return fmt::format("{}.{}", v / 1000, (v % 1000) / 10); }

}  // namespace

bool cuda_built() { return true; }
bool cuda_available() { return probe().count > 0; }
int cuda_device_count() { return probe().count; }

std::vector<std::string> cuda_device_descriptions() {
  const Probe& p = probe();
  if (p.count == 0) return {cuda_status()};
  std::vector<std::string> out;
  for (int i = 0; i < p.count; ++i) {
    cudaDeviceProp prop{};
    MG_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    out.push_back(fmt::format("cuda:{} {}, sm_{}{}, {:.0f} GiB, {} SMs", i, prop.name, prop.major,
                              prop.minor, (double)prop.totalGlobalMem / (1ull << 30),
                              prop.multiProcessorCount));
  }
  return out;
}

std::string cuda_status() {
  const Probe& p = probe();
  if (p.count == 0) return "no device: " + p.why_none;
  int runtime = 0, driver = 0;
  MG_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  MG_CUDA_CHECK(cudaDriverGetVersion(&driver));
  return fmt::format("{} device{} (runtime {}, driver {})", p.count, p.count == 1 ? "" : "s",
                     version_str(runtime), version_str(driver));
}

}  // namespace megagrad
