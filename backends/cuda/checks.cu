// Device-side input checks that do not synchronise (kernels.h, "checks without a
// synchronisation"; the protocol: deferred_check.h). Each is three launches on the stream: reset a
// scratch, scan (the first bad flat position by atomicMin on integers: exact), then one thread
// that records a failure in the device's slot unless an earlier one is there. Stream order makes
// that thread the only writer of the slot at its time, so the host-mapped slot needs no atomics,
// and it reads the slot (over the bus) only when its check failed.
#include "backends/cuda/common.cuh"
#include "backends/cuda/deferred_check.h"

namespace megagrad::cuda {

namespace {

// res[0] = first bad position (n when none), res[1] = kept count.
__global__ void check_reset_kernel(long long* res, int64_t n) {
  res[0] = n;
  res[1] = 0;
}

__device__ __forceinline__ void record_failure(DeferredSlot* slot, unsigned long long id, long long pos,
                                               long long bits) {
  if (slot->id != 0) return;  // an earlier failure is reported first
  slot->pos = pos;
  slot->bits = bits;
  __threadfence_system();
  slot->id = id;
}

__global__ void __launch_bounds__(kThreads)
index_scan_kernel(const int64_t* __restrict__ idx, int64_t n, OffsetCalc<1, int64_t> calc, int64_t limit,
                  bool has_ignore, int64_t ignore_index, int64_t* __restrict__ safe, bool count, long long* res) {
  long long kept = 0;
  for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += (int64_t)gridDim.x * kThreads) {
    int64_t off[1];
    calc.get(i, off);
    const int64_t v = idx[off[0]];
    const bool ignored = has_ignore && v == ignore_index;
    const bool bad = !ignored && (v < 0 || v >= limit);
    safe[i] = bad ? (has_ignore ? ignore_index : 0) : v;
    kept += !ignored;
    if (bad) atomicMin(reinterpret_cast<unsigned long long*>(res), (unsigned long long)i);
  }
  if (!count) return;
  kept = warp_allreduce(kept, SumOp{});
  if (threadIdx.x % 32 == 0 && kept)
    atomicAdd(reinterpret_cast<unsigned long long*>(res + 1), (unsigned long long)kept);
}

__global__ void index_report_kernel(const int64_t* __restrict__ idx, int64_t n, OffsetCalc<1, int64_t> calc,
                                    const long long* res, int64_t* kept, DeferredSlot* slot, unsigned long long id) {
  if (kept) *kept = res[1];
  if (res[0] < n) {
    int64_t off[1];
    calc.get(res[0], off);
    record_failure(slot, id, res[0], idx[off[0]]);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
binary_scan_kernel(const T* __restrict__ x, int64_t n, OffsetCalc<1, int64_t> calc, long long* res) {
  for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += (int64_t)gridDim.x * kThreads) {
    int64_t off[1];
    calc.get(i, off);
    const T v = x[off[0]];
    if (!(v == T(0) || v == T(1))) atomicMin(reinterpret_cast<unsigned long long*>(res), (unsigned long long)i);
  }
}

template <typename T>
__global__ void binary_report_kernel(const T* __restrict__ x, int64_t n, OffsetCalc<1, int64_t> calc,
                                     const long long* res, DeferredSlot* slot, unsigned long long id) {
  if (res[0] < n) {
    int64_t off[1];
    calc.get(res[0], off);
    record_failure(slot, id, res[0], __double_as_longlong((double)x[off[0]]));
  }
}

}  // namespace

void cuda_index_check_deferred(const CudaView& idx, int64_t limit, bool has_ignore, int64_t ignore_index,
                               int64_t* safe, int64_t* kept, const DeferredCheck& check, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_index_check_deferred";
  MG_CHECK(check.slot && check.id, name, "no check registered");
  const CudaView* views[1] = {&idx};
  const Layout<1> L = merge_views<1>(name, views);
  const int64_t n = L.numel;
  if (n == 0) {
    if (kept) MG_CUDA_CHECK(cudaMemsetAsync(kept, 0, sizeof(int64_t), stream));
    return;
  }
  MG_CHECK(idx.data && safe, name, "null pointer");
  const OffsetCalc<1, int64_t> calc(L);
  const int64_t* ip = static_cast<const int64_t*>(idx.data);
  Workspace res(2 * sizeof(long long), stream);
  check_reset_kernel<<<1, 1, 0, stream>>>(res.as<long long>(), n);
  check_launch();
  index_scan_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(ip, n, calc, limit, has_ignore, ignore_index, safe,
                                                                     kept != nullptr, res.as<long long>());
  check_launch();
  index_report_kernel<<<1, 1, 0, stream>>>(ip, n, calc, res.as<long long>(), kept, check.slot, check.id);
  check_launch();
}

void cuda_binary_values_check_deferred(DType dtype, const CudaView& x, const DeferredCheck& check,
                                       cudaStream_t stream) {
  constexpr std::string_view name = "cuda_binary_values_check_deferred";
  MG_CHECK(check.slot && check.id, name, "no check registered");
  const CudaView* views[1] = {&x};
  const Layout<1> L = merge_views<1>(name, views);
  const int64_t n = L.numel;
  if (n == 0) return;
  MG_CHECK(x.data, name, "null pointer");
  const OffsetCalc<1, int64_t> calc(L);
  Workspace res(2 * sizeof(long long), stream);
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = static_cast<const T*>(x.data);
    check_reset_kernel<<<1, 1, 0, stream>>>(res.as<long long>(), n);
    check_launch();
    binary_scan_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(xp, n, calc, res.as<long long>());
    check_launch();
    binary_report_kernel<T><<<1, 1, 0, stream>>>(xp, n, calc, res.as<long long>(), check.slot, check.id);
    check_launch();
  });
}

}  // namespace megagrad::cuda
