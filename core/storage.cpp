#include "core/storage.h"
#include <cstdlib>
#include <cstring>
#include "core/error.h"

namespace megagrad {

std::atomic<int64_t> Storage::live_{0};

Storage::Storage(size_t nbytes, Device device, bool zero_fill) : nbytes_(nbytes), device_(device) {
  if (!device.is_cpu())
    fail("alloc", "device {} is not supported by this build (CUDA storage arrives with the CUDA backend)",
         device);
  // 64-byte alignment: one cache line, and what AVX-512 loads like.
  size_t padded = ((nbytes + 63) / 64) * 64;
  if (padded == 0) padded = 64;
  data_ = std::aligned_alloc(64, padded);
  if (!data_) fail("alloc", "out of memory allocating {} bytes on {}", nbytes, device);
  if (zero_fill) std::memset(data_, 0, padded);
  ++live_;
}

Storage::~Storage() {
  std::free(data_);
  --live_;
}

}  // namespace megagrad
