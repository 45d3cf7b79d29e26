// The argument structs of the fused attention's kernels, shared by the CPU kernels
// (attention_cpu.h) and the CUDA launchers (attention_cuda.h), so the op (attention.cpp) checks its
// inputs, builds one problem and hands it to either device. Plain structs of sizes, pointers and
// flags: nvcc reads this header in C++17 too.
//
// Legend
//   B  batch                 L  sequence length         C  chunk length (L when not chunking)
//   NC chunks (L / C)        Z  query/key width         H  value width
#pragma once
#include <cstdint>

namespace megagrad {

enum class AttentionActivation { Softmax, Laplace, Relu2 };

// The activation's name in configurations (and the official code's attention_activation).
inline constexpr const char* attention_activation_name(AttentionActivation a) {
  return a == AttentionActivation::Softmax ? "softmax" : a == AttentionActivation::Laplace ? "laplace" : "relu2";
}

struct AttentionShape {
  int64_t B, L, Z, H, C, NC;
};

// A (B, L, W) operand with unit stride along W: row t of batch b starts at p + b*sb + t*ld.
template <typename T>
struct AttentionRows {
  const T* p;
  int64_t sb, ld;
};

// One call of the kernels; pointers on the kernels' device.
template <typename T>
struct AttentionProblem {
  AttentionShape d;
  AttentionActivation act;
  bool causal;
  AttentionRows<T> q, k, v;
  const T* mask = nullptr;  // (B, L) with strides msb, msl; 1 = pad; null: no padding
  int64_t msb = 0, msl = 0;
  const T* rel = nullptr;    // (2C-1): bias[i, j] = rel[C-1 + j - i] (simple and rotary alike)
  double softmax_scale = 1;  // Z^-0.5
  double p = 0;              // attention dropout; 0: none
  uint64_t seed = 0, first = 0;  // dropout counters: first + ((b NC + chunk) C + i) C + j
};

// Gradients to compute (null: not wanted). dq, dk (B,L,Z), dv (B,L,H) contiguous, written in full
// (their contents on entry do not matter). drel (2C-1): the gradient of the bias table summed over
// batch and chunks; the caller zeroes it (the CPU kernel adds to it, the CUDA one overwrites it).
template <typename T>
struct AttentionGrads {
  T* dq = nullptr;
  T* dk = nullptr;
  T* dv = nullptr;
  double* drel = nullptr;
};

}  // namespace megagrad
