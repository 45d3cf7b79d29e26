// backends/cuda/deferred_check.h: the registry of pending device-side checks and their slots.
#include "backends/cuda/deferred_check.h"
#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/stream.h"
#include "core/error.h"

namespace megagrad::cuda {

namespace {

constexpr int kMaxDevices = 64;

struct Pending {
  unsigned long long id;
  std::string op;
  DeferredMessage message;
};

struct DeviceChecks {
  std::mutex mu;
  std::deque<Pending> pending;  // increasing ids
  std::atomic<unsigned long long> last_id{0};
  std::atomic<size_t> count{0};  // pending.size(), readable without the lock
};

// Never destroyed, as the streams (stream.cu). The slots: one per device, in one pinned block
// mapped into every device (cudaHostAllocPortable), allocated on the first check.
struct Registry {
  DeviceChecks dev[kMaxDevices];
  std::once_flag slots_once;
  DeferredSlot* host = nullptr;    // as the host reads it
  DeferredSlot* mapped = nullptr;  // as the devices write it
};
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

void alloc_slots(Registry& r) {
  std::call_once(r.slots_once, [&] {
    void* p = nullptr;
    MG_CUDA_CHECK(cudaHostAlloc(&p, sizeof(DeferredSlot) * kMaxDevices, cudaHostAllocMapped | cudaHostAllocPortable));
    std::memset(p, 0, sizeof(DeferredSlot) * kMaxDevices);
    void* d = nullptr;
    MG_CUDA_CHECK(cudaHostGetDevicePointer(&d, p, 0));
    r.host = static_cast<DeferredSlot*>(p);
    r.mapped = static_cast<DeferredSlot*>(d);
  });
}

void check_device_index(int device) {
  MG_CHECK(device >= 0 && device < kMaxDevices, "cuda", "cuda:{} is not available", device);
}

}  // namespace

DeferredCheck defer_check(int device, std::string_view op, DeferredMessage message) {
  check_device_index(device);
  Registry& r = registry();
  alloc_slots(r);
  DeviceChecks& d = r.dev[device];
  if (d.count.load() >= kMaxPendingChecks) flush_deferred_checks(device);  // bounded memory
  std::lock_guard<std::mutex> lock(d.mu);
  const unsigned long long id = d.last_id.load() + 1;
  d.pending.push_back({id, std::string(op), std::move(message)});
  d.last_id.store(id);
  d.count.store(d.pending.size());
  return {id, r.mapped + device};
}

unsigned long long deferred_checks_registered(int device) {
  if (device < 0 || device >= kMaxDevices) return 0;
  return registry().dev[device].last_id.load();
}

void raise_deferred_failure(int device, unsigned long long upto) {
  if (device < 0 || device >= kMaxDevices) return;
  Registry& r = registry();
  DeviceChecks& d = r.dev[device];
  if (d.count.load() == 0) return;  // no check since the last synchronisation: the fast path
  volatile DeferredSlot* slot = r.host + device;  // written by the device; complete after the sync
  std::string error;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    const unsigned long long failed = slot->id;
    if (failed != 0) {
      const int64_t pos = slot->pos, bits = slot->bits;
      std::string op = "cuda", what;
      for (const Pending& p : d.pending)
        if (p.id == failed) {
          op = p.op;
          what = p.message(pos, bits);
          break;
        }
      if (what.empty()) what = fmt::format("a device-side input check (#{}) failed at position {}", failed, pos);
      error = fmt::format("[{}] {} (found on the GPU; reported at the next synchronisation)", op, what);
      slot->pos = 0;
      slot->bits = 0;
      slot->id = 0;  // forgotten once raised: the device stays usable
      if (failed > upto) upto = failed;
    }
    while (!d.pending.empty() && d.pending.front().id <= upto) d.pending.pop_front();
    d.count.store(d.pending.size());
  }
  if (!error.empty()) throw Error(error);
}

void flush_deferred_checks(int device) {
  check_device_index(device);
  const unsigned long long upto = deferred_checks_registered(device);
  cuda_set_device(device, "cuda_synchronize");
  MG_CUDA_CHECK(cudaStreamSynchronize(cuda_stream(device)));
  raise_deferred_failure(device, upto);
}

}  // namespace megagrad::cuda
