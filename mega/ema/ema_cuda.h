// CUDA kernels of the fused multi-dimensional damped EMA, as raw-pointer launchers. They take the
// argument structs of the CPU kernels (mega/ema/ema_types.h), with every array on the device, and
// compute the same values; the derivation is in mega/ema/ema.md, the algorithm at the top of ema_cuda.cu.
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
#include "mega/ema/ema_types.h"

namespace megagrad::ema_cuda {

// Device scratch the launchers need, in bytes (0 when none): the caller allocates it (16-byte
// aligned, e.g. with cuda_alloc from backends/cuda/allocator.h) and passes it with its size;
// nothing is allocated inside. It is used in stream order only, so it may be freed (returned to a
// stream-ordered cache) right after the launcher returns. chunk: time steps per chunk of the scan, 0 = chosen from the shape (tests
// pass small values to exercise the chunk boundaries); pass the same value to the launcher.
template <typename T>
size_t forward_workspace_bytes(const EmaShape& s, int64_t chunk = 0);
template <typename T>
size_t backward_workspace_bytes(const EmaShape& s, int64_t chunk = 0);

// y: (B, L, D) contiguous. y[b,t,d] = sum over directions and n of c h[t], where
// h[t] = q h[t-1] + a (x~[t] - Q x~[t-K]) in the direction's time order, x~ = x (1 - mask):
// what ema_cpu::forward computes.
// Optional fused epilogue of the op: with omega (D) and out ((B, L, D) contiguous) non-null, also
// writes out = silu(y + omega x) with the unmasked x (ema.md), so the op needs no extra pass.
template <typename T>
void forward(const EmaInput<T>& in, const EmaCoeffs<T>* dirs, const EmaShape& s, T* y, const T* omega, T* out,
             void* workspace, size_t workspace_bytes, cudaStream_t stream, int64_t chunk = 0);

// gy: (B, L, D) contiguous gradient of y.
// dxt (optional): (B, L, D) contiguous, the gradient of x~ (ema_cpu::backward's dxt; the op then
//   forms dx = (1 - mask) dxt + omega gy).
// sums (optional): (4, R, N, Dp) doubles, already summed over the batch: [0] dc = sum gy h,
//   [1] da = sum gy u, [2] dq = sum gy s, [3] dQ = sum gy w (as ema_cpu::backward's sums;
//   zero for d >= D). The op chains them to delta, alpha, beta, gamma as it does on the CPU.
// Null outputs are not computed.
template <typename T>
void backward(const EmaInput<T>& in, const EmaCoeffs<T>* dirs, const EmaShape& s, const T* gy, T* dxt,
              double* sums, void* workspace, size_t workspace_bytes, cudaStream_t stream, int64_t chunk = 0);

// The op's parameter tables on the device, from the official parameters (device arrays of T,
// contiguous: delta, alpha, beta (E, N, 1), gamma (E, N)), with the formulas of ema_coeffs.h;
// scale = sqrt(1 / N) as the host computes it.
// coeffs: (R, 4, N * Dp), per direction q, a, c, Q each (N, Dp), zero for d >= D (every entry
// written), as ema.cpp's make_coeffs builds on the host.
template <typename T>
void make_coeffs(const T* delta, const T* alpha, const T* beta, const T* gamma, const EmaShape& s, double scale,
                 T* coeffs, cudaStream_t stream);
// The parameters' gradients from the backward's sums (4, R, N, Dp) doubles: gdelta, galpha,
// gbeta (E, N, 1) and ggamma (E, N), contiguous, written (ema_chain of ema_coeffs.h).
template <typename T>
void chain_param_grads(const T* delta, const T* alpha, const T* beta, const T* gamma, const double* sums,
                       const EmaShape& s, double scale, T* gdelta, T* galpha, T* gbeta, T* ggamma,
                       cudaStream_t stream);

}  // namespace megagrad::ema_cuda
