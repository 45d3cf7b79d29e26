// Input checks that read device memory without synchronising: the verdict comes later, at the
// next call that synchronises anyway (README.md, "CUDA": "Errors reported late").
//
// An op on GPU tensors whose validity depends on their values (an index in range, a padding mask
// of 0s and 1s) cannot answer eagerly without waiting for the GPU. Instead it registers a check
// here (defer_check: the op's name and how to word the error), queues a check kernel with the id
// it got, and goes on; the kernels that follow are made safe against the bad values (an index
// launcher reads a sanitised copy), so nothing reads out of bounds and the CUDA context survives.
// A failing check kernel writes (id, position, value) into its device's slot, unless an earlier
// failure is already there: the first failure in stream order wins. The slot lives in pinned host
// memory mapped into the device, so reading it costs no copy.
//
// The slot is read right after each synchronisation that megagrad makes (cuda_memcpy_d2h: every
// .item(), .to_vector(), .cpu(); cuda_synchronize), and the first failure is raised there as the
// op's own error, "[embedding] index 7 at position 3 is out of range ...". The failure is
// forgotten once raised: the device stays usable. Results computed from bad values are garbage and
// must be dropped; the error says so by arriving before any of them reaches the host.
//
// Plain C++17: the .cu files include it too.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace megagrad::cuda {

// Where a failing check records itself (written by one thread of a one-thread kernel, stream
// ordered, so no atomics on host memory are needed).
struct DeferredSlot {
  unsigned long long id;  // 0: no failure; else the failed check's id
  long long pos;          // flat row-major position of the first bad element
  long long bits;         // its value: an int64, or the bits of a double
};

// What a check kernel needs: its id and the device's view of the slot.
struct DeferredCheck {
  unsigned long long id = 0;
  DeferredSlot* slot = nullptr;
};

// Words the error from the bad element's position and value bits (without the "[op] " prefix).
using DeferredMessage = std::function<std::string(int64_t pos, int64_t bits)>;

// Registers a check of data on cuda:`device` whose kernel the caller queues next on the device's
// stream. After kMaxPendingChecks checks with no synchronisation in between, it synchronises
// once itself (so the record of pending checks stays bounded) and raises any failure.
DeferredCheck defer_check(int device, std::string_view op, DeferredMessage message);
inline constexpr size_t kMaxPendingChecks = 4096;

// The id of the newest check registered on `device` (0 if none). Read it before a
// synchronisation: the checks up to it are complete after it.
unsigned long long deferred_checks_registered(int device);

// After a synchronisation that covered the checks up to `upto`: raises the first failure as
// "[op] message" (and clears it), else forgets those checks. Cheap when nothing failed.
void raise_deferred_failure(int device, unsigned long long upto);

// Synchronises the device's stream and raises the first failure, if any.
void flush_deferred_checks(int device);

}  // namespace megagrad::cuda
