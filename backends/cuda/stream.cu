// backends/cuda/stream.h: the per-device stream and the device check every entry point makes.
#include <mutex>
#include "backends/cuda/cuda.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/stream.h"

namespace megagrad {

namespace {

constexpr int kMaxDevices = 64;

struct Streams {
  std::once_flag once[kMaxDevices];
  cudaStream_t stream[kMaxDevices] = {};
};

// Never destroyed: the streams live as long as the process (destroying them during static
// teardown, after the driver may have shut down, would only produce errors).
Streams& streams() {
  static Streams* s = new Streams();
  return *s;
}

}  // namespace

void cuda_set_device(int device, std::string_view op) {
  int n = cuda_device_count();
  if (n == 0) fail(op, "cuda:{} is not available: {}", device, cuda_status());
  if (device < 0 || device >= n)
    fail(op, "cuda:{} is not available: this machine has {} CUDA device{} (cuda:0{})", device, n,
         n == 1 ? "" : "s", n == 1 ? std::string() : fmt::format(" to cuda:{}", n - 1));
  MG_CUDA_CHECK(cudaSetDevice(device));
}

cudaStream_t cuda_stream(int device) {
  MG_CHECK(device >= 0 && device < kMaxDevices, "cuda_stream", "cuda:{} is not available", device);
  Streams& s = streams();
  // call_once: the fast path is one atomic load; a throw leaves the flag unset, so a later call
  // tries again (and fails the same clear way on a machine without the device).
  std::call_once(s.once[device], [&] {
    cuda_set_device(device, "cuda_stream");
    cudaStream_t st = nullptr;
    MG_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamDefault));  // blocking: see stream.h
    s.stream[device] = st;
  });
  return s.stream[device];
}

}  // namespace megagrad
