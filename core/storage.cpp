#include "core/storage.h"
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include "backends/cuda/allocator.h"
#include "core/error.h"

namespace megagrad {

std::atomic<int64_t> Storage::live_{0};

namespace {
class BlockCache {
 public:
  // Blocks from 64 KiB up are cached (glibc serves large blocks with fresh mmaps, which fault in
  // page by page). Sizes round up to one of four classes per power of two (at most 25% waste), so
  // that shapes which vary a little between steps (padded batches) still reuse blocks.
  static constexpr size_t kMin = size_t(64) << 10;
  static size_t rounded(size_t n) {
    if (n < kMin) return ((n + 63) / 64) * 64;
    size_t step = (size_t(1) << (63 - __builtin_clzll(n))) / 4;
    return (n + step - 1) / step * step;
  }

  void* take(size_t bytes) {
    if (bytes < kMin) return nullptr;
    std::lock_guard g(mu_);
    auto it = free_.find(bytes);
    if (it == free_.end()) return nullptr;
    void* p = it->second;
    free_.erase(it);
    cached_ -= bytes;
    return p;
  }
  // Keeps the block if it is large and fits under the limit; else frees it.
  void give(void* p, size_t bytes) {
    if (bytes >= kMin) {
      std::lock_guard g(mu_);
      if (cached_ + bytes <= limit()) {
        free_.emplace(bytes, p);
        cached_ += bytes;
        return;
      }
    }
    std::free(p);
  }
  void clear() {
    std::lock_guard g(mu_);
    for (auto& [n, p] : free_) std::free(p);
    free_.clear();
    cached_ = 0;
  }
  size_t cached() {
    std::lock_guard g(mu_);
    return cached_;
  }
  ~BlockCache() { clear(); }

 private:
  static size_t limit() {
    static const size_t mb = [] {
      const char* e = std::getenv("MEGAGRAD_CPU_CACHE_MB");
      return e ? (size_t)std::strtoull(e, nullptr, 10) : size_t(2048);
    }();
    return mb << 20;
  }
  std::mutex mu_;
  std::unordered_multimap<size_t, void*> free_;
  size_t cached_ = 0;
};

BlockCache& block_cache() {
  static BlockCache* c = new BlockCache();  // never destroyed: Storages may outlive static teardown
  return *c;
}
}  // namespace

std::string human_bytes(size_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 6) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.2f} {}", v, units[u]);
}

size_t cpu_cache_bytes() { return block_cache().cached(); }
void empty_cpu_cache() { block_cache().clear(); }

Storage::Storage(size_t nbytes, Device device, bool zero_fill) : nbytes_(nbytes), device_(device) {
  if (!device.is_cpu()) {  // the CUDA caching allocator (backends/cuda/allocator.h) keeps its own cache
    data_ = cuda_alloc(nbytes, device.index);
    capacity_ = nbytes;
    if (zero_fill) {
      try {
        cuda_memset_zero(data_, nbytes, device.index);
      } catch (...) {
        cuda_free(data_);  // no destructor runs for a constructor that throws
        throw;
      }
    }
    ++live_;
    return;
  }
  // 64-byte alignment: one cache line, and what AVX-512 loads like.
  capacity_ = std::max<size_t>(BlockCache::rounded(nbytes), 64);
  data_ = block_cache().take(capacity_);
  if (!data_) data_ = std::aligned_alloc(64, capacity_);
  if (!data_ && block_cache().cached() > 0) {  // the cache may hold what the system lacks
    block_cache().clear();
    data_ = std::aligned_alloc(64, capacity_);
  }
  if (!data_)
    fail("alloc", "out of memory: could not allocate {} ({} bytes) on {}", human_bytes(nbytes), nbytes, device);
  if (zero_fill) std::memset(data_, 0, nbytes);
  ++live_;
}

Storage::~Storage() {
  if (!device_.is_cpu())
    cuda_free(data_);
  else
    block_cache().give(data_, capacity_);
  --live_;
}

}  // namespace megagrad
