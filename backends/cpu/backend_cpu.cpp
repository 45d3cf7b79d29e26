// The CPU's DeviceBackend (core/backend.h): the block cache that Storage allocates from, and the
// host loops behind Tensor::fill_, copy_, add_, mul_ and the Philox fills of core/rng.h.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <sys/mman.h>
#include "backends/cpu/allocator.h"
#include "core/backend.h"
#include "core/dispatch.h"
#include "core/human_bytes.h"
#include "core/parallel.h"
#include "core/pointwise.h"
#include "core/rng.h"
#include "core/strided.h"

namespace megagrad {

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

// The bytes actually allocated for a request: rounded up to the cache's size class, and at least
// one 64-byte line (the alignment: one cache line, and what AVX-512 loads like).
size_t capacity_of(size_t bytes) { return std::max<size_t>(BlockCache::rounded(bytes), 64); }

// Element i gets draw(seed, first + i): the same numbers however the range is split over threads.
template <typename Draw>
void philox_loop(std::string_view op, DType dtype, void* out, int64_t n, uint64_t seed, uint64_t first, Draw draw) {
  dispatch_float(op, dtype, [&]<typename T>() {
    T* p = static_cast<T*>(out);
    parallel_for(n, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = (T)draw(seed, first + (uint64_t)i);
    });
  });
}

// Blocks of 2 MiB and more start on a 2 MiB boundary, and their whole 2 MiB pages are marked for
// transparent huge pages (MADV_HUGEPAGE: Debian's default THP mode is `madvise`). An op streams
// several MB through memory, one TLB miss per 4 KiB page without them; measured on bench-layer S
// at 1 thread (alternating runs, medians of 8): forward+backward 24.75 against 25.45 ms.
void* system_alloc(size_t capacity) {
  constexpr size_t kHuge = size_t(2) << 20;
  if (capacity < kHuge) return std::aligned_alloc(64, capacity);
  void* p = nullptr;
  if (posix_memalign(&p, kHuge, capacity) != 0) return nullptr;  // (aligned_alloc wants a multiple)
  madvise(p, capacity / kHuge * kHuge, MADV_HUGEPAGE);  // advice only: a failure is harmless
  return p;
}

// The CPU's entries of the DeviceBackend table.
struct Cpu {
  static void* alloc(size_t bytes, int, bool zero) {
    const size_t capacity = capacity_of(bytes);
    void* p = block_cache().take(capacity);
    if (!p) p = system_alloc(capacity);
    if (!p && block_cache().cached() > 0) {  // the cache may hold what the system lacks
      block_cache().clear();
      p = system_alloc(capacity);
    }
    if (!p)
      fail("alloc", "out of memory: could not allocate {} ({} bytes) on {}", human_bytes(bytes), bytes,
           Device::cpu());
    if (zero) std::memset(p, 0, bytes);
    return p;
  }

  static void free(void* p, size_t bytes, int) { block_cache().give(p, capacity_of(bytes)); }

  static void copy(void* dst, Device, const void* src, Device, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }

  static void fill(int, DType dtype, StridedView out, double value) {
    dispatch_all("fill_", dtype, [&]<typename T>() {
      T* p = static_cast<T*>(out.data);
      T v = (T)value;
      for_each_row<1>(out.shape, {out.strides}, [&](auto off, int64_t n, auto inner) {
        for (int64_t i = 0; i < n; ++i) p[off[0] + i * inner[0]] = v;
      });
    });
  }

  static void convert(int, DType dst_dtype, StridedView dst, DType src_dtype, StridedView src) {
    dispatch_all("copy_", dst_dtype, [&]<typename D>() {
      dispatch_all("copy_", src_dtype, [&]<typename S>() {
        D* d = static_cast<D*>(dst.data);
        const S* s = static_cast<const S*>(src.data);
        for_each_row<2>(dst.shape, {dst.strides, src.strides}, [&](auto off, int64_t n, auto inner) {
          D* dp = d + off[0];
          const S* sp = s + off[1];
          if (inner[0] == 1 && inner[1] == 1)
            for (int64_t i = 0; i < n; ++i) dp[i] = (D)sp[i];
          else
            for (int64_t i = 0; i < n; ++i) dp[i * inner[0]] = (D)sp[i * inner[1]];
        });
      });
    });
  }

  static void add_scaled(int, DType dtype, StridedView dst, StridedView src, double alpha) {
    dispatch_float("add_", dtype, [&]<typename T>() {
      T* d = static_cast<T*>(dst.data);
      const T* s = static_cast<const T*>(src.data);
      const pointwise::Axpy f{alpha};  // d + alpha s
      for_each_row<2>(dst.shape, {dst.strides, src.strides}, [&](auto off, int64_t n, auto inner) {
        T* dp = d + off[0];
        const T* sp = s + off[1];
        if (inner[0] == 1 && inner[1] == 1)
          for (int64_t i = 0; i < n; ++i) dp[i] = f(dp[i], sp[i]);
        else
          for (int64_t i = 0; i < n; ++i) dp[i * inner[0]] = f(dp[i * inner[0]], sp[i * inner[1]]);
      });
    });
  }

  static void scale(int, DType dtype, StridedView dst, double s) {
    dispatch_float("mul_", dtype, [&]<typename T>() {
      T* d = static_cast<T*>(dst.data);
      const pointwise::MulScalar f{s};
      for_each_row<1>(dst.shape, {dst.strides}, [&](auto off, int64_t n, auto inner) {
        for (int64_t i = 0; i < n; ++i) d[off[0] + i * inner[0]] = f(d[off[0] + i * inner[0]]);
      });
    });
  }

  static void philox_fill(int, DType dtype, void* out, int64_t n, Dist dist, double a, double b, uint64_t seed,
                          uint64_t first) {
    if (dist == Dist::Uniform)
      philox_loop("uniform_", dtype, out, n, seed, first,
                  [&](uint64_t s, uint64_t c) { return uniform_at(s, c, a, b); });
    else
      philox_loop("normal_", dtype, out, n, seed, first,
                  [&](uint64_t s, uint64_t c) { return normal_at(s, c, a, b); });
  }
};

constexpr DeviceBackend kCpuBackend = backend_table<Cpu>();
}  // namespace

size_t cpu_cache_bytes() { return block_cache().cached(); }
void empty_cpu_cache() { block_cache().clear(); }

const DeviceBackend& cpu_backend() { return kCpuBackend; }

}  // namespace megagrad
