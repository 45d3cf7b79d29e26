// backends/cuda/allocator.h: the caching device allocator and the copies.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include "backends/cuda/allocator.h"
#include "backends/cuda/cuda.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/deferred_check.h"
#include "backends/cuda/stream.h"

namespace megagrad {

namespace {

constexpr int kMaxDevices = 64;             // as stream.cu
constexpr size_t kSmall = size_t(1) << 20;  // below: 512-byte steps; from here: 4 classes per 2^k
// No device has 2^62 bytes; refusing such sizes up front also keeps the rounding from overflowing.
constexpr size_t kMaxRequest = size_t(1) << 62;

// The size class of a request (see allocator.h). 0 bytes still gets a real block, so that every
// Storage has a distinct non-null pointer.
size_t size_class(size_t n) {
  if (n < kSmall) return std::max<size_t>((n + 511) / 512 * 512, 512);
  size_t step = (size_t(1) << (63 - __builtin_clzll(n))) / 4;  // a quarter of n's power of two
  return (n + step - 1) / step * step;
}

bool caching_from_env() {
  const char* e = std::getenv("MEGAGRAD_CUDA_CACHE");
  return !(e && std::strcmp(e, "0") == 0);
}

struct DeviceState {
  std::unordered_multimap<size_t, void*> free;  // size class -> cached blocks
  size_t allocated = 0, cached = 0, peak = 0;
  int64_t mallocs = 0, hits = 0;
};

struct Block {
  size_t size;  // its size class: what cudaMalloc was asked for
  int device;
};

// One mutex for all devices: the fast path (a hash lookup) is short, and cudaMalloc, the slow
// path, is rare once the cache is warm.
class Allocator {
 public:
  void* alloc(size_t bytes, int device) {
    cuda_set_device(device, "cuda_alloc");  // checks the device first: the clearest error
    MG_CHECK(device < kMaxDevices, "cuda_alloc", "cuda:{} is beyond the {} devices megagrad supports",
             device, kMaxDevices);
    std::lock_guard g(mu_);
    DeviceState& d = dev_[device];
    if (bytes > kMaxRequest) out_of_memory(bytes, device);
    const size_t size = size_class(bytes);
    void* p = nullptr;
    if (caching()) {
      auto it = d.free.find(size);
      if (it != d.free.end()) {
        p = it->second;
        d.free.erase(it);
        d.cached -= size;
        ++d.hits;
      }
    }
    if (!p) p = malloc_locked(bytes, size, device);
    used_.emplace(p, Block{size, device});
    d.allocated += size;
    d.peak = std::max(d.peak, d.allocated);
    return p;
  }

  void free(void* p) {
    if (!p) return;
    std::lock_guard g(mu_);
    auto it = used_.find(p);
    if (it == used_.end())
      fail("cuda_free", "{} was not returned by cuda_alloc, or was freed already", p);
    const Block b = it->second;
    used_.erase(it);
    DeviceState& d = dev_[b.device];
    d.allocated -= b.size;
    if (caching()) {
      d.free.emplace(b.size, p);
      d.cached += b.size;
      return;
    }
    // No cache: give it back now. cudaFree waits for the device, so no queued kernel still uses it.
    cudaError_t err = cudaSetDevice(b.device);
    if (err == cudaSuccess) err = cudaFree(p);
    if (err != cudaSuccess) {
      cudaGetLastError();
      std::fprintf(stderr, "megagrad: warning: [cuda_free] cudaFree of %zu bytes on cuda:%d failed: %s (the block is leaked)\n",
                   b.size, b.device, cudaGetErrorString(err));
    }
  }

  void empty_cache() {
    std::lock_guard g(mu_);
    for (int i = 0; i < kMaxDevices; ++i)
      if (!dev_[i].free.empty()) {
        MG_CUDA_CHECK(cudaSetDevice(i));
        release_cached_locked(i);
      }
  }

  CudaMemoryStats stats(int device) {
    MG_CHECK(device >= 0 && device < kMaxDevices, "cuda_memory_stats", "cuda:{} is not a device index", device);
    std::lock_guard g(mu_);
    const DeviceState& d = dev_[device];
    return {d.allocated, d.allocated + d.cached, d.peak, d.mallocs, d.hits};
  }

  void reset_peak(int device) {
    MG_CHECK(device >= 0 && device < kMaxDevices, "cuda_reset_peak_memory_stats", "cuda:{} is not a device index", device);
    std::lock_guard g(mu_);
    dev_[device].peak = dev_[device].allocated;
  }

  static bool caching() {
    static const bool on = caching_from_env();
    return on;
  }

 private:
  // cudaMalloc of `size` bytes on the current device (== device). On "out of memory": empties
  // this device's cache and tries once more, then throws.
  void* malloc_locked(size_t bytes, size_t size, int device) {
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // not sticky: clear it
      release_cached_locked(device);
      err = cudaMalloc(&p, size);
      if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        out_of_memory(bytes, device);
      }
    }
    cuda_check(err, "cudaMalloc");
    ++dev_[device].mallocs;
    return p;
  }

  // cudaFree of the cached blocks of `device` (the current device).
  void release_cached_locked(int device) {
    DeviceState& d = dev_[device];
    while (!d.free.empty()) {
      auto it = d.free.begin();
      const size_t size = it->first;
      void* p = it->second;
      d.free.erase(it);  // first, so that a failing cudaFree leaves no dangling entry
      d.cached -= size;
      MG_CUDA_CHECK(cudaFree(p));
    }
  }

  [[noreturn]] void out_of_memory(size_t bytes, int device) {
    const DeviceState& d = dev_[device];
    size_t free_b = 0, total_b = 0;
    std::string free_s = "?", total_s = "?";
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      free_s = human_bytes(free_b);
      total_s = human_bytes(total_b);
    } else {
      cudaGetLastError();
    }
    fail("cuda_alloc",
         "out of memory on cuda:{}: tried to allocate {} ({} bytes); {} allocated by megagrad, {} "
         "cached, {} free of {} on the device",
         device, human_bytes(bytes), bytes, human_bytes(d.allocated), human_bytes(d.cached),
         free_s, total_s);
  }

  std::mutex mu_;
  DeviceState dev_[kMaxDevices];
  std::unordered_map<void*, Block> used_;
};

// Never destroyed: Storages may outlive static teardown, and cudaFree after the driver has shut
// down only fails. The driver takes all device memory back when the process exits.
Allocator& allocator() {
  static Allocator* a = new Allocator();
  return *a;
}

}  // namespace

void* cuda_alloc(size_t bytes, int device) { return allocator().alloc(bytes, device); }
void cuda_free(void* p) { allocator().free(p); }
void empty_cuda_cache() { allocator().empty_cache(); }
bool cuda_caching_enabled() { return Allocator::caching(); }
CudaMemoryStats cuda_memory_stats(int device) { return allocator().stats(device); }
void cuda_reset_peak_memory_stats(int device) { allocator().reset_peak(device); }

// ---- copies ----

namespace {
void check_pointers(const char* op, const void* dst, const void* src) {
  MG_CHECK(dst && src, op, "null pointer (dst {}, src {})", dst, src);
}
}  // namespace

void cuda_memcpy_h2d(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  check_pointers("cuda_memcpy_h2d", dst, src);
  cuda_set_device(device, "cuda_memcpy_h2d");
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_stream(device)));
}

void cuda_memcpy_d2h(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  check_pointers("cuda_memcpy_d2h", dst, src);
  cuda_set_device(device, "cuda_memcpy_d2h");
  cudaStream_t s = cuda_stream(device);
  const unsigned long long checks = cuda::deferred_checks_registered(device);  // complete after the sync
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  MG_CUDA_CHECK(cudaStreamSynchronize(s));  // the host reads dst next
  cuda::raise_deferred_failure(device, checks);  // a bad input found on the GPU since the last sync
}

void cuda_memcpy_d2d(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  check_pointers("cuda_memcpy_d2d", dst, src);
  cuda_set_device(device, "cuda_memcpy_d2d");
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream(device)));
}

void cuda_memset_zero(void* p, size_t bytes, int device) {
  if (bytes == 0) return;
  MG_CHECK(p, "cuda_memset_zero", "null pointer");
  cuda_set_device(device, "cuda_memset_zero");
  MG_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_stream(device)));
}

void cuda_synchronize(int device) {
  if (cuda_device_count() == 0) return;  // no device, no work (cuda.h)
  cuda_set_device(device, "cuda_synchronize");
  const unsigned long long checks = cuda::deferred_checks_registered(device);
  MG_CUDA_CHECK(cudaDeviceSynchronize());
  cuda::raise_deferred_failure(device, checks);
}

}  // namespace megagrad
