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
  // Allocates nbytes on the device through its backend (core/backend.h), zero-filled when asked;
  // throws "[alloc] out of memory ..." with the requested size.
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
  Device device_;
  static std::atomic<int64_t> live_;
};

}  // namespace megagrad
