// The argument structs of the fused EMA's kernels, shared by the CPU kernels (ema_cpu.h) and the
// CUDA launchers (ema_cuda.h), so the op (ema.cpp) checks its inputs, builds these once and hands
// the same values to either device. Plain structs of sizes and pointers: nvcc reads this header in
// C++17 too.
//
// Legend
//   B  batch                 L  time steps               D  channels
//   N  EMA dims per channel  K  kernel length: min(truncation, L), K == L means no truncation
//   R  directions (2 if bidirectional)    E = R D rows of the official parameters
//   Dp D rounded up to a multiple of 64 (coefficient arrays are zero-padded to Dp)
#pragma once
#include <cstdint>

namespace megagrad {

struct EmaShape {
  int64_t B, L, D, N;
  int64_t kernel_len;  // K = min(truncation, L); K == L means no truncation
  int ndirs;           // R: 1, or 2 if bidirectional (direction 1 runs backward in time)
  int64_t E() const { return D * ndirs; }
  int64_t Dp() const { return (D + 63) / 64 * 64; }  // a multiple of every CPU vector width
  bool truncated() const { return kernel_len < L; }
};

// One direction's coefficients, each (N, Dp) with the channel innermost and zero for d >= D:
// q = 1 - p a', a = p beta, c = gamma / sqrt(N), Q = q^K (0 if not truncated). Host pointers for
// the CPU kernels, device pointers for the CUDA launchers.
template <typename T>
struct EmaCoeffs {
  const T* q;
  const T* a;
  const T* c;
  const T* Q;
};

// x: (B, L, D) with unit channel stride and strides sb, sl (elements) over b and t; mask: (B, L)
// with strides mb, ml (1 = pad), or null for no padding. On the device of the kernels.
template <typename T>
struct EmaInput {
  const T* x;
  int64_t sb, sl;
  const T* mask;
  int64_t mb, ml;
};

}  // namespace megagrad
