// CUDA kernels of Mega's fused single-head attention inside chunks, forward and backward, as
// launchers on raw device pointers. They mirror the CPU kernels (attention_cpu.h: the same
// argument structs, attention_types.h, with device pointers; the same strides and results) and
// the derivation in attention.md. Plain C++17 with cuda_runtime.h only for cudaStream_t (no
// megagrad Tensor), so .cpp files can include it under `#if MEGAGRAD_HAS_CUDA`.
//
// Legend
//   B  batch                 L  sequence length         C  chunk length (L when not chunking)
//   NC chunks (L / C)        Z  query/key width         H  value width (up to 1536 and more)
//   i  query row in its chunk, j key column in its chunk (both 0..C-1)
//
// Arguments (every pointer is a device pointer):
//   q, k (B,L,Z) and v (B,L,H): AttentionRows<T>, unit stride along Z / H, row stride ld, batch stride sb
//      (contiguous tensors and time-major transposed views qualify, as on the CPU)
//   mask (B,L), strides msb, msl, 1 = pad; null: no padding
//   rel (2C-1): the Toeplitz bias table, bias[i, j] = rel[C-1 + j - i] (simple and rotary alike)
//   out (B,L,H), lse (B,L) (softmax only), dout (B,L,H), dq, dk (B,L,Z), dv (B,L,H): contiguous
//   drel (2C-1) double
//
// Results equal the CPU kernels' up to rounding (other summation orders; exp/erf of the CUDA math
// library instead of the CPU's polynomials): the same masks, score factors, online softmax and
// logsumexp (+inf for a row whose keys are all masked, output 0), and the same dropout mask:
// the device Philox draws the same bits as the CPU for the same (seed, first + counter), so a
// GPU run with dropout matches the CPU run. Results do not depend on the launch (no
// floating-point atomics): the same inputs give the same bits on every run of one device.
//
// Launchers are asynchronous on `stream`; bad arguments raise megagrad::Error
// "[attention_cuda] ...", launch failures "[cuda] ...".
#pragma once
#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>
#include "mega/attention/attention_types.h"

namespace megagrad::attention_cuda {

using Act = AttentionActivation;  // the one enum, attention_types.h

// out (B,L,H) = P V per chunk; lse (B,L): the softmax's per-row logsumexp (null for
// laplace/relu2). No workspace.
template <typename T>
void forward(const AttentionProblem<T>& pr, T* out, T* lse, cudaStream_t stream);

// Bytes of device workspace that backward() needs for these arguments (0 when none): the
// softmax's row terms D = dO . O (B,L), and the partial bias-gradient sums of the blocks.
template <typename T>
size_t backward_workspace_bytes(const AttentionProblem<T>& pr, const AttentionGrads<T>& g);

// out (B,L,H) the forward's output, lse (B,L) its logsumexp (softmax; else ignored), dout (B,L,H)
// = dLoss/dout. workspace: at least backward_workspace_bytes(pr, g) bytes of device memory
// (256-byte aligned, as cudaMalloc gives), untouched by the caller until the work on `stream`
// is done.
template <typename T>
void backward(const AttentionProblem<T>& pr, const T* out, const T* lse, const T* dout, const AttentionGrads<T>& g,
              void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace megagrad::attention_cuda
