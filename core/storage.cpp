#include "core/storage.h"
#include "core/backend.h"
#include "core/error.h"

namespace megagrad {

std::atomic<int64_t> Storage::live_{0};

std::string human_bytes(size_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 6) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.2f} {}", v, units[u]);
}

// Each device's allocator keeps its own cache: the CPU's block cache (backends/cpu/allocator.h),
// the CUDA caching allocator (backends/cuda/allocator.h).
Storage::Storage(size_t nbytes, Device device, bool zero_fill) : nbytes_(nbytes), device_(device) {
  data_ = backend(device).alloc(nbytes, device.index, zero_fill);
  ++live_;
}

Storage::~Storage() {
  backend(device_).free(data_, nbytes_, device_.index);
  --live_;
}

}  // namespace megagrad
