// Storage: one buffer of bytes on one device. Tensors are views into a Storage; several views
// may share one (reshape, transpose, narrow ... never copy).
#pragma once
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include "core/device.h"
#include "core/human_bytes.h"

namespace megagrad {

class Storage {
 public:
  // Allocates nbytes on the device (zero-filled when asked); throws "[alloc] out of memory ..."
  // with the requested size.
  Storage(size_t nbytes, Device device, bool zero_fill = true);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

  // Number of Storage objects alive in this process: tests use it to prove that backward()
  // releases the tensors a graph saved.
  static int64_t live_count() { return live_.load(); }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  size_t capacity_ = 0;  // bytes actually allocated (rounded up; see the block cache)
  Device device_;
  static std::atomic<int64_t> live_;
};

// The CPU block cache: blocks of 64 KiB and more are kept when their Storage dies and handed out
// again for the same rounded size. A fresh large block pays a page fault per 4 KiB page on first
// touch, which costs more than a memory-bound op itself; a training step allocates the same sizes
// every time. At most MEGAGRAD_CPU_CACHE_MB (default 2048) MiB are kept.
size_t cpu_cache_bytes();
void empty_cpu_cache();

}  // namespace megagrad
