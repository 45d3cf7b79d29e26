// CUDA kernels of the fused multi-dimensional damped EMA, as raw-pointer launchers. They take the
// same inputs as the CPU kernels (mega/ema/ema_cpu.h), with every array on the device, and compute
// the same values; the derivation is in mega/ema/ema.md, the algorithm at the top of ema_cuda.cu.
//
// Legend
//   B  batch                 L  time steps               D  channels
//   N  EMA dims per channel  K  truncation (K >= L: none) R  directions (2 if bidirectional)
//   Dp D rounded up to a multiple of 64 (coefficient arrays are zero-padded to Dp, as on the CPU)
//
// Plain C++ (no megagrad Tensor), defined only in CUDA builds (MEGAGRAD_HAS_CUDA). Every launcher
// is asynchronous on `stream`; errors (bad arguments, CUDA failures) throw megagrad::Error
// "[ema_cuda] ..." / "[cuda] ...".
#pragma once
#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>

namespace megagrad::ema_cuda {

// The same fields as ema_cpu::Dims: K = min(truncation, L); K == L means no truncation.
struct Dims {
  int64_t B, L, D, N, K;
  int64_t Dp() const { return (D + 63) / 64 * 64; }
  bool truncated() const { return K < L; }
};

// One direction's coefficients (device pointers), each (N, Dp) with the channel innermost, as
// ema_cpu::Coeffs: q = 1 - p a', a = p beta, c = gamma / sqrt(N), Q = q^K (0 if not truncated).
// Direction 0 runs forward in time, direction 1 (bidirectional) backward.
template <typename T>
struct Coeffs {
  const T* q;
  const T* a;
  const T* c;
  const T* Q;
};

// As ema_cpu::Input: x is (B, L, D) on the device with unit channel stride and strides sb, sl
// (elements) over b and t; mask is (B, L) with strides mb, ml (1 = pad), or null for no padding.
template <typename T>
struct Input {
  const T* x;
  int64_t sb, sl;
  const T* mask;
  int64_t mb, ml;
};

// Device scratch the launchers need, in bytes (0 when none): the caller allocates it (16-byte
// aligned, e.g. with cuda_alloc from backends/cuda/allocator.h) and passes it with its size;
// nothing is allocated inside. It is used in stream order only, so it may be freed (returned to a
// stream-ordered cache) right after the launcher returns. chunk: time steps per chunk of the scan, 0 = chosen from the shape (tests
// pass small values to exercise the chunk boundaries); pass the same value to the launcher.
template <typename T>
size_t forward_workspace_bytes(const Dims& s, int ndirs, int64_t chunk = 0);
template <typename T>
size_t backward_workspace_bytes(const Dims& s, int ndirs, int64_t chunk = 0);

// y: (B, L, D) contiguous. y[b,t,d] = sum over directions and n of c h[t], where
// h[t] = q h[t-1] + a (x~[t] - Q x~[t-K]) in the direction's time order, x~ = x (1 - mask):
// what ema_cpu::forward computes.
// Optional fused epilogue of the op: with omega (D) and out ((B, L, D) contiguous) non-null, also
// writes out = silu(y + omega x) with the unmasked x (ema.md), so the op needs no extra pass.
template <typename T>
void forward(const Input<T>& in, const Coeffs<T>* dirs, int ndirs, const Dims& s, T* y, const T* omega,
             T* out, void* workspace, size_t workspace_bytes, cudaStream_t stream, int64_t chunk = 0);

// gy: (B, L, D) contiguous gradient of y.
// dxt (optional): (B, L, D) contiguous, the gradient of x~ (ema_cpu::backward's dxt; the op then
//   forms dx = (1 - mask) dxt + omega gy).
// sums (optional): (4, R, N, Dp) doubles, already summed over the batch: [0] dc = sum gy h,
//   [1] da = sum gy u, [2] dq = sum gy s, [3] dQ = sum gy w (ema_cpu::ParamSums summed over b;
//   zero for d >= D). The op chains them to delta, alpha, beta, gamma as it does on the CPU.
// Null outputs are not computed.
template <typename T>
void backward(const Input<T>& in, const Coeffs<T>* dirs, int ndirs, const Dims& s, const T* gy, T* dxt,
              double* sums, void* workspace, size_t workspace_bytes, cudaStream_t stream, int64_t chunk = 0);

}  // namespace megagrad::ema_cuda
