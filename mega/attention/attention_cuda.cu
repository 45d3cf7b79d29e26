// CUDA kernels of Mega's fused single-head attention inside chunks, forward and backward
// (interface and argument shapes: attention_cuda.h; derivation: attention.md; the CPU kernels
// these mirror: attention_cpu.h).
//
// Legend
//   B  batch                 L  sequence length         C  chunk length (L when not chunking)
//   NC chunks (L / C)        Z  query/key width         H  value width
//   i  query row in its chunk, j key column in its chunk (both 0..C-1)
//   kT = 64: a score tile is kT query rows x kT key columns; NT = ceil(C / kT) tiles per chunk
//   OC output columns per thread: a block writes an output slice of BO = 16 OC columns of H (out,
//      dv) or Z (dq, dk); the slices are the grid's y dimension
//   m, n the row and column of a tile: thread (ty, tx) = (tid / 16, tid % 16) of the 256 owns
//      the 4 x 4 scores m = 4 ty + r, n = 4 tx + c (r, c < 4) and the output columns
//      o = 64 (c / 4) + 4 tx + c % 4 (c < OC) of its 4 rows: groups of 4 contiguous entries, read
//      from shared memory as one 16-byte vector (float4; double: two double2)
//
// Kernels (one block of 256 threads per tile; nothing of size C x C leaves shared memory):
//   forward_kernel  grid (B NC NT, H / BO): a block owns kT query rows and an H slice and walks the
//                   key tiles of its chunk (causal: up to its last row): S = Qs K^T (Qs = the
//                   rows times their score factor), bias, masks, activation, dropout in registers
//                   (the softmax online: running max and sum per row, O rescaled when the max
//                   grows), P~ to shared memory, O += P~ V. Each H slice recomputes S: cheap
//                   next to P~ V when Z <= BO, and it keeps O in registers for any H.
//   rowdot_kernel   D_i = dO_i . O_i, the softmax Jacobian's row term (attention.md).
//   dq_kernel       grid (ceil(B/G) NC NT, Z / BO): query tiles walk their key tiles: S, dP~ =
//                   dO V^T (over all of H), dS in one pass, dQ += dS K; and (slice 0) the sums of
//                   dS along its diagonals into the block's own row of bias partials.
//   drel_kernel     drel[t] = the partial rows summed in a fixed order (no atomics).
//   key_kernel DK   grid (B NC NT, Z / BO): key tiles walk their query tiles (causal: from the
//                   diagonal): S^T, dP~^T, dS^T, dK += dS^T Qs.
//   key_kernel DV   grid (B NC NT, H / BO): key tiles walk their query tiles: S^T, P~^T,
//                   dV += P~^T dO for the block's H slice.
// Separate kernels for dQ and dK (rather than atomics on dQ) keep results deterministic; the price
// is S and dP~ computed twice. dV has its own kernel because a key tile cannot hold dV for all of
// H in registers, while dK must not recompute dP~ (a product over all of H) per H slice.
// Registers (ptxas -v, sm_80/sm_90): 146-188 (float), 198-250 (double), no spills; dynamic shared
// memory 27,648 bytes (float), 55,296 (double: above the default 48 KiB, asked for per kernel).
// __launch_bounds__(256, 1): (256, 2) would cap float at 128 registers with 8-48 bytes of spills
// and double with 100-700 (measured with ptxas); worth timing on the device.
//
// Products: nt_product (S = A B^T over a width W: Z or H) stages kW-wide slices of A's and B's
// rows transposed in shared memory; tn_product (acc += P^T-tile times rows of V, K, dO or Qs)
// stages kKc rows of the right operand. Both fetch the next slice into registers while they
// multiply the current one (global latency hidden at one block of 8 warps per SM), and each
// thread's shared reads are 16-byte vectors (3 shared-memory wavefronts per 16 FMA per warp
// rather than 8). Plain FMA in T (no tensor cores: float32 stays float32, as on the CPU).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include "backends/cuda/cuda_check.h"
#include "core/error.h"
#include "mega/attention/activation.h"
#include "mega/attention/attention_cuda.h"

namespace megagrad::attention_cuda {

namespace {

constexpr int kThreads = 256;    // 16 x 16
constexpr int kT = 64;           // rows and columns of a score tile
constexpr int kLd = kT + 4;      // row length of a tile in shared memory (16-byte rows; see nt_product's stores)
constexpr int kW = 16;           // width of nt_product's slices
constexpr int kKc = 16;          // rows per step of tn_product
constexpr size_t kPartialBudget = size_t(64) << 20;  // bytes of bias partial sums before batches share rows

// ---------------------------------------------------------------- device math

// exp: exp_fast (core/vec_math.h), the polynomial the CPU kernels use. Activations: activation.h.
__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return log(x); }
// A non-deduced T (C++20's std::type_identity_t): nullptr may be passed for a `const NoDeduce<T>*`.
template <typename T> struct NoDeduceS { using type = T; };
template <typename T> using NoDeduce = typename NoDeduceS<T>::type;

template <typename T> __device__ __forceinline__ T d_inf() { return (T)INFINITY; }

// Max and sum over the 16 lanes that share a tile row (lanes tx = 0..15 of one ty: xor offsets
// below 16 stay inside the half warp). Every thread of the block calls them.
template <typename T> __device__ __forceinline__ T row_max16(T v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) {
    const T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}
template <typename T> __device__ __forceinline__ T row_sum16(T v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---------------------------------------------------------------- dropout
// The 53 random bits of uniform_at(seed, counter) (core/rng.cpp: philox4x32 with counter_hi = 0,
// then uint_to_unit): Philox4x32-10 in 32-bit integer arithmetic, bit for bit as on the CPU.
__device__ __forceinline__ uint64_t philox_bits53(uint64_t seed, uint64_t counter) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c1 = lo1, c3 = lo0, c0 = n0, c2 = n2;
    k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
  }
  return (((uint64_t)c0 << 21) ^ (uint64_t)c1) & ((1ull << 53) - 1);
}

// The dropout parameters of a launch: keep iff bits >= thr = ceil(p 2^53) (uniform_at's u = bits
// 2^-53 >= p), multiplier scale = 1/(1-p) (attention_cpu.h: dropout_row).
template <typename T>
struct Drop {
  bool on;
  uint64_t thr;
  T scale;
};

// The multiplier of score (b, chunk c, i, j): counter = first + ((b NC + c) C + i) C + j.
template <typename T>
__device__ __forceinline__ T dropout_mult(const AttentionProblem<T>& pr, const Drop<T>& dr, int64_t b, int c, int i, int j) {
  const uint64_t counter =
      pr.first + ((((uint64_t)b * (uint64_t)pr.d.NC + (uint64_t)c) * (uint64_t)pr.d.C + (uint64_t)i) *
                      (uint64_t)pr.d.C + (uint64_t)j);
  return philox_bits53(pr.seed, counter) >= dr.thr ? dr.scale : T(0);
}

// ---------------------------------------------------------------- chunk masks (attention_cpu.h: ChunkInfo)

// The number of padded keys of chunk (b, c); every thread of the block gets it.
template <typename T>
__device__ int count_pads(const AttentionProblem<T>& pr, int64_t b, int c) {
  if (!pr.mask) return 0;
  const int C = (int)pr.d.C;
  int n = 0;
  for (int j0 = 0; j0 < C; j0 += kThreads) {
    const int j = j0 + (int)threadIdx.x;
    n += __syncthreads_count(j < C && pr.mask[b * pr.msb + (int64_t)(c * C + j) * pr.msl] != T(0));
  }
  return n;
}

// Whether key j of chunk (b, c) is masked: padding, unless (softmax) every key of the chunk is.
template <typename T>
__device__ __forceinline__ bool key_hidden(const AttentionProblem<T>& pr, bool mask_pads, int64_t b, int c, int j) {
  return mask_pads && pr.mask && pr.mask[b * pr.msb + (int64_t)(c * (int)pr.d.C + j) * pr.msl] != T(0);
}

// The factor of q_i . k_j in row i's scores: softmax Z^-0.5; laplace/relu2 1/n_i with n_i = i+1
// when causal (wins over padding), else the count of non-padding keys (at least 1), else C.
template <Act A, typename T>
__device__ __forceinline__ T row_scale(const AttentionProblem<T>& pr, int npad, int i) {
  if constexpr (A == Act::Softmax) {
    return (T)pr.softmax_scale;
  } else {
    const int C = (int)pr.d.C;
    const double n = pr.causal ? (double)(i + 1) : pr.mask ? (double)(C - npad > 1 ? C - npad : 1) : (double)C;
    return (T)(1.0 / n);
  }
}

// ---------------------------------------------------------------- shared memory

constexpr int stage_elems(int OC) { return 2 * kW * kLd > kKc * 16 * OC ? 2 * kW * kLd : kKc * 16 * OC; }
template <typename T> constexpr size_t smem_bytes(int OC) {
  return (size_t)(stage_elems(OC) + kT * kLd + 2 * kT + 4 * kT) * sizeof(T);
}

// The carve-up of a block's dynamic shared memory.
template <typename T>
struct Smem {
  T* stage;  // the staged operands of nt_product / tn_product
  T* ps;     // (kT, kLd): P~ or dS of the tile, ps[n * kLd + m] (n: the index tn_product sums over)
  T* rel;    // (2 kT - 1): the bias of the tile, rel[jj - ii + kT - 1]
  T* rs;     // (kT): the score factor of the tile's query rows
  T* rl;     // (kT): their logsumexp (softmax backward)
  T* rd;     // (kT): their D = dO . O (softmax backward)
  T* khid;   // (kT): 1 for a masked key (or one past the chunk / the causal end), else 0
  __device__ Smem(unsigned char* raw, int OC) {
    T* p = reinterpret_cast<T*>(raw);
    stage = p, p += stage_elems(OC);  // (every array starts 16-byte aligned: sizes are multiples of 4)
    ps = p, p += kT * kLd;
    rel = p, p += 2 * kT;
    rs = p, p += kT;
    rl = p, p += kT;
    rd = p, p += kT;
    khid = p;
  }
};

// rel_s[t] = rel[base + t] for t < 2 kT - 1, 0 outside the table (only tile entries outside the
// chunk read those).
template <typename T>
__device__ __forceinline__ void load_rel(T* rel_s, const T* rel, int C, int64_t base) {
  for (int t = (int)threadIdx.x; t < 2 * kT - 1; t += kThreads) {
    const int64_t e = base + t;
    rel_s[t] = e >= 0 && e <= 2 * (int64_t)C - 2 ? rel[e] : T(0);
  }
}

// ---------------------------------------------------------------- tile products

// The thread's rows m = 4 ty + r, score columns n = 4 tx + c, output columns o = out_col(c).
__device__ __forceinline__ int tile_row(int r) { return 4 * ((int)threadIdx.x >> 4) + r; }
__device__ __forceinline__ int tile_col(int c) { return 4 * ((int)threadIdx.x & 15) + c; }
__device__ __forceinline__ int out_col(int c) { return 64 * (c >> 2) + 4 * ((int)threadIdx.x & 15) + (c & 3); }

// v[0..3] = p[0..3], p 16-byte aligned in shared memory: one vector load (float4; double: two double2).
template <typename T> __device__ __forceinline__ void load4(const T* p, T* v) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) {
    const float4 x = *reinterpret_cast<const float4*>(p);
    v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
  } else {
    const double2 x = reinterpret_cast<const double2*>(p)[0], y = reinterpret_cast<const double2*>(p)[1];
    v[0] = x.x, v[1] = x.y, v[2] = y.x, v[3] = y.y;
  }
#else  // a host emulation of the kernels (checks without a GPU): plain loads, alignment checked
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) __builtin_trap();
  for (int e = 0; e < 4; ++e) v[e] = p[e];
#endif
}
template <typename T> __device__ __forceinline__ void store4(T* p, T a, T b, T c, T d) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(a, b, c, d);
  } else {
    reinterpret_cast<double2*>(p)[0] = make_double2(a, b);
    reinterpret_cast<double2*>(p)[1] = make_double2(c, d);
  }
#else
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) __builtin_trap();
  p[0] = a, p[1] = b, p[2] = c, p[3] = d;
#endif
}

// ps[n * kLd + m] = x[r][c] for the thread's scores (m = 4 ty + r, n = 4 tx + c): its 4 rows of
// one column are contiguous, one vector store.
template <typename T> __device__ __forceinline__ void store_tile(T* ps, const T (&x)[4][4]) {
#pragma unroll
  for (int c = 0; c < 4; ++c) store4(ps + tile_col(c) * kLd + tile_row(0), x[0][c], x[1][c], x[2][c], x[3][c]);
}

// acc[r][c] += sum_{w < W} A[m][w] B[n][w] for the thread's m, n: the rows of A (na of them, at
// a + m lda) and B (nb, at b + n ldb) in kW-wide slices, transposed into shared memory; rows past
// na / nb and columns past W read as 0. ascale / bscale (shared, per row, or null) multiply the
// rows as they are loaded (Qs = diag(s) Q, as the CPU's scaled_queries). A warp loads 8 columns
// of 4 rows: whole 32-byte sectors from global memory, and its transposed stores
// (As[w kLd + row], kLd = 68) hit 32 distinct banks in float32.
template <typename T>
__device__ __forceinline__ void nt_product(T (&acc)[4][4], const T* __restrict__ a, int64_t lda, int na,
                                           const NoDeduce<T>* ascale, const T* __restrict__ b, int64_t ldb,
                                           int nb, const NoDeduce<T>* bscale, int64_t W, T* stage) {
  constexpr int KW = kW, PER = kT * KW / kThreads, RSTEP = kThreads / KW;
  const int tid = (int)threadIdx.x;
  // The thread's column w of the slice and its rows row0 + t RSTEP (t < PER): warp q loads rows
  // 4 (q / (KW/8)) + 0..3 (+ t RSTEP), columns 8 (q % (KW/8)) + 0..7.
  const int w = (tid & 7) + 8 * ((tid >> 5) % (KW / 8)), row0 = 4 * ((tid >> 5) / (KW / 8)) + ((tid >> 3) & 3);
  T* As = stage + w * kLd + row0;             // As[w * kLd + m] = A[m][w0 + w], (KW, kLd)
  T* Bs = stage + KW * kLd + w * kLd + row0;  // (KW, kLd)
  const T* ap = a + row0 * lda + w;
  const T* bp = b + row0 * ldb + w;
  T ra[PER], rb[PER];  // the next slice, in flight while the current one is multiplied
  auto fetch = [&](int64_t w0) {
    const bool in = w0 + w < W;
#pragma unroll
    for (int t = 0; t < PER; ++t) {
      const int row = row0 + t * RSTEP;
      ra[t] = T(0), rb[t] = T(0);
      if (in && row < na) {
        ra[t] = ap[t * RSTEP * lda + w0];
        if (ascale) ra[t] *= ascale[row];
      }
      if (in && row < nb) {
        rb[t] = bp[t * RSTEP * ldb + w0];
        if (bscale) rb[t] *= bscale[row];
      }
    }
  };
  fetch(0);
  for (int64_t w0 = 0; w0 < W; w0 += KW) {
#pragma unroll
    for (int t = 0; t < PER; ++t) As[t * RSTEP] = ra[t], Bs[t * RSTEP] = rb[t];
    __syncthreads();
    if (w0 + KW < W) fetch(w0 + KW);
#pragma unroll
    for (int k = 0; k < KW; ++k) {
      T av[4], bv[4];
      load4(stage + k * kLd + tile_row(0), av);
      load4(stage + KW * kLd + k * kLd + tile_col(0), bv);
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c] += av[r] * bv[c];
    }
    __syncthreads();
  }
}

// acc[r][c] += sum_{k < nk} ps[k * kLd + m] Bg[k][o] for the thread's rows m and output columns
// o = out_col(c), c < OC: the tile in shared memory times nk rows of a global operand (row k at
// b + k ldb, columns past ncols read as 0; bscale: a per-row factor in shared memory, or null),
// kKc rows at a time.
template <typename T, int OC>
__device__ __forceinline__ void tn_product(T (&acc)[4][OC], const T* ps, int nk, const T* __restrict__ b,
                                           int64_t ldb, int ncols, const NoDeduce<T>* bscale, T* stage) {
  constexpr int BO = 16 * OC, PER = kKc * BO / kThreads, KSTEP = kThreads / BO;
  const int tid = (int)threadIdx.x;
  T* Bs = stage;  // (kKc, BO): Bs[kk * BO + o] = Bg[k0 + kk][o]
  // The thread's column o and its rows kk0 + t KSTEP (t < PER): consecutive threads, one row.
  const int o = tid % BO, kk0 = tid / BO;
  const T* bp = b + (int64_t)kk0 * ldb + o;
  T rb[PER];  // the next kKc rows, in flight while the current ones are multiplied
  auto fetch = [&](int k0) {
#pragma unroll
    for (int t = 0; t < PER; ++t) {
      const int k = k0 + kk0 + t * KSTEP;
      rb[t] = T(0);
      if (k < nk && o < ncols) {
        rb[t] = bp[(int64_t)(k0 + t * KSTEP) * ldb];
        if (bscale) rb[t] *= bscale[k];
      }
    }
  };
  fetch(0);
  for (int k0 = 0; k0 < nk; k0 += kKc) {
#pragma unroll
    for (int t = 0; t < PER; ++t) Bs[tid + t * kThreads] = rb[t];
    __syncthreads();
    if (k0 + kKc < nk) fetch(k0 + kKc);
#pragma unroll
    for (int kk = 0; kk < kKc; ++kk) {
      T av[4], bv[OC];
      load4(ps + (k0 + kk) * kLd + tile_row(0), av);
#pragma unroll
      for (int g = 0; g < OC / 4; ++g) load4(Bs + kk * BO + 64 * g + 4 * (tid & 15), bv + 4 * g);
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < OC; ++c) acc[r][c] += av[r] * bv[c];
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------- forward

// out (B,L,H), lse (B,L) or null. Block: query tile `tile` of chunk (b, c), output columns
// [h0, h0 + BO) of H.
template <typename T, Act A, int OC>
__global__ void __launch_bounds__(kThreads, 1)
    forward_kernel(const AttentionProblem<T> pr, T* __restrict__ out, T* __restrict__ lse, const Drop<T> dr) {
  constexpr int BO = 16 * OC;
  constexpr bool kSoftmax = A == Act::Softmax;
  extern __shared__ __align__(16) unsigned char mg_smem[];
  const Smem<T> sm(mg_smem, OC);
  const int C = (int)pr.d.C, NC = (int)pr.d.NC, NT = (C + kT - 1) / kT, H = (int)pr.d.H;
  const int tid = (int)threadIdx.x, tx = tid & 15;
  const int tile = (int)(blockIdx.x % NT);
  const int64_t bc = blockIdx.x / NT, b = bc / NC;
  const int c = (int)(bc % NC);
  const int i0 = tile * kT, nq = min(kT, C - i0);
  const int h0 = (int)blockIdx.y * BO, nh = min(BO, H - h0);
  const int npad = count_pads(pr, b, c);
  const bool mask_pads = !(kSoftmax && npad == C);
  if (tid < kT) sm.rs[tid] = row_scale<A>(pr, npad, i0 + tid);  // read after the loop's first barrier
  const int64_t row0 = b * pr.d.L + (int64_t)c * C;             // row of (b, chunk start) in out, lse
  const T* qrows = pr.q.p + b * pr.q.sb + (int64_t)(c * C + i0) * pr.q.ld;
  const T* krows = pr.k.p + b * pr.k.sb + (int64_t)c * C * pr.k.ld;
  const T* vrows = pr.v.p + b * pr.v.sb + (int64_t)c * C * pr.v.ld + h0;

  T O[4][OC], m[4], l[4];  // output rows; softmax: running max and sum of exp(s - m) per row
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    m[r] = -d_inf<T>(), l[r] = T(0);
#pragma unroll
    for (int o = 0; o < OC; ++o) O[r][o] = T(0);
  }
  const int kend = pr.causal ? min(C, i0 + nq) : C;  // causal: no key right of the tile's last row
  for (int j0 = 0; j0 < kend; j0 += kT) {
    const int nk = min(kT, kend - j0);
    int vis = 0;
    if (tid < kT) {
      const bool hid = tid >= nk || key_hidden(pr, mask_pads, b, c, j0 + tid);
      sm.khid[tid] = hid ? T(1) : T(0);
      vis = !hid;
    }
    load_rel(sm.rel, pr.rel, C, (int64_t)C - 1 + j0 - i0 - (kT - 1));
    if (!__syncthreads_or(vis)) continue;  // every key of the tile masked: nothing to add
    // S = Qs K^T
    T S[4][4] = {};
    nt_product(S, qrows, pr.q.ld, nq, sm.rs, krows + (int64_t)j0 * pr.k.ld, pr.k.ld, nk, nullptr, pr.d.Z, sm.stage);
    // S -> P~ in registers: bias, masks, activation (softmax online, as the CPU: l sums P before
    // dropout, O sums P~, so O / l is the dropped attention applied to V), dropout.
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int ii = tile_row(r), i = i0 + ii;
      bool valid[4];
      T rmax = -d_inf<T>();
#pragma unroll
      for (int cc = 0; cc < 4; ++cc) {
        const int jj = tile_col(cc), j = j0 + jj;
        valid[cc] = ii < nq && sm.khid[jj] == T(0) && !(pr.causal && j > i);
        const T x = S[r][cc] + sm.rel[jj - ii + kT - 1];
        if constexpr (kSoftmax) {
          S[r][cc] = valid[cc] ? x : -d_inf<T>();
          rmax = S[r][cc] > rmax ? S[r][cc] : rmax;
        } else {
          S[r][cc] = valid[cc] ? act_f<A>(x) : T(0);
        }
      }
      if constexpr (kSoftmax) {
        rmax = row_max16(rmax);
        const T mnew = m[r] > rmax ? m[r] : rmax;
        const bool none = mnew == -d_inf<T>();  // nothing visible in this row yet
        T sum = T(0);
#pragma unroll
        for (int cc = 0; cc < 4; ++cc) {
          S[r][cc] = none ? T(0) : exp_fast(S[r][cc] - mnew);
          sum += S[r][cc];
        }
        sum = row_sum16(sum);
        if (!none) {
          const T corr = exp_fast(m[r] - mnew);
          l[r] = l[r] * corr + sum;
          m[r] = mnew;
#pragma unroll
          for (int o = 0; o < OC; ++o) O[r][o] *= corr;
        }
      }
      if (dr.on)
#pragma unroll
        for (int cc = 0; cc < 4; ++cc)
          if (valid[cc]) S[r][cc] *= dropout_mult(pr, dr, b, c, i, j0 + tile_col(cc));
    }
    store_tile(sm.ps, S);  // ps[jj * kLd + ii]
    __syncthreads();
    // O += P~ V
    tn_product(O, sm.ps, nk, vrows + (int64_t)j0 * pr.v.ld, pr.v.ld, nh, nullptr, sm.stage);
  }
  // Softmax: h = O / l and lse = m + log l (a row with no visible key: h = 0, lse = +inf).
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int ii = tile_row(r);
    if (ii >= nq) continue;
    T inv = T(1);
    if constexpr (kSoftmax) inv = l[r] > T(0) ? T(1) / l[r] : T(0);
    T* orow = out + (row0 + i0 + ii) * H + h0;
#pragma unroll
    for (int o = 0; o < OC; ++o)
      if (out_col(o) < nh) orow[out_col(o)] = O[r][o] * inv;
    if (kSoftmax && lse && blockIdx.y == 0 && tx == 0)
      lse[row0 + i0 + ii] = l[r] > T(0) ? m[r] + d_log(l[r]) : d_inf<T>();
  }
}

// ---------------------------------------------------------------- backward

// D (rows) = sum_w a[row][w] b[row][w] over W: one warp per row.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    rowdot_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ D, int64_t rows, int64_t W) {
  const int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + threadIdx.x / 32;
  const int lane = (int)threadIdx.x % 32;
  if (row >= rows) return;  // the whole warp
  T s = T(0);
  for (int64_t w = lane; w < W; w += 32) s += a[row * W + w] * b[row * W + w];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) D[row] = s;
}

// One score of the backward, recomputed as the forward did, with dpt = dP~ (dO_i . v_j) given.
// Returns dS (the gradient of the score after the bias, before the activation):
//   softmax: P = exp(x - lse_i); P~ = P keep; dS = P~ dP~ - P D_i (no dropout: P (dP~ - D_i),
//            as the CPU's softmax_back_row);
//   laplace/relu2: dS = f'(x) dP~ keep.
template <typename T, Act A>
__device__ __forceinline__ T score_grad(T x, T dpt, T lse_i, T D_i, T keep, bool drop) {
  if constexpr (A == Act::Softmax) {
    const T P = exp_fast(x - lse_i);
    return drop ? (P * keep) * dpt - P * D_i : P * (dpt - D_i);
  } else {
    T df;
    (void)act_f_df<A>(x, df);
    const T ds = dpt * df;
    return drop ? ds * keep : ds;
  }
}
// P~ of one score (as above).
template <typename T, Act A>
__device__ __forceinline__ T score_weight(T x, T lse_i, T keep, bool drop) {
  T P;
  if constexpr (A == Act::Softmax)
    P = exp_fast(x - lse_i);
  else
    P = act_f<A>(x);
  return drop ? P * keep : P;
}

// dq (B,L,Z) or null; part: the bias partial rows ((ceil(B/G) NC NT) x PL doubles, PL = C + kT - 1)
// or null. Block: query tile `tile` of chunk c for the batches of group bg (G of them, in order;
// G = 1 unless the partial rows would exceed kPartialBudget), output columns [z0, z0 + BO) of Z.
// The partial row holds the block's sums of dS along diagonals: entry u is bias index
// t = C - i0 - kT + u (u = j - i + i0 + kT - 1 for a score (i, j)).
template <typename T, Act A, int OC>
__global__ void __launch_bounds__(kThreads, 1)
    dq_kernel(const AttentionProblem<T> pr, const T* __restrict__ lse, const T* __restrict__ Dterm, const T* __restrict__ dout,
              T* __restrict__ dq, double* __restrict__ part, const int G, const Drop<T> dr) {
  constexpr int BO = 16 * OC;
  constexpr bool kSoftmax = A == Act::Softmax;
  extern __shared__ __align__(16) unsigned char mg_smem[];
  const Smem<T> sm(mg_smem, OC);
  const int C = (int)pr.d.C, NC = (int)pr.d.NC, NT = (C + kT - 1) / kT, Z = (int)pr.d.Z, H = (int)pr.d.H;
  const int tid = (int)threadIdx.x;
  const int tile = (int)(blockIdx.x % NT);
  const int64_t gc = blockIdx.x / NT, bg = gc / NC;
  const int c = (int)(gc % NC);
  const int i0 = tile * kT, nq = min(kT, C - i0);
  const int z0 = (int)blockIdx.y * BO, nz = min(BO, Z - z0);
  const int64_t PL = (int64_t)C + kT - 1;
  double* prow = part && blockIdx.y == 0 ? part + (int64_t)blockIdx.x * PL : nullptr;
  if (prow)
    for (int64_t u = tid; u < PL; u += kThreads) prow[u] = 0.0;  // added to after the next barrier

  const int64_t bend = min((int64_t)pr.d.B, (bg + 1) * G);
  for (int64_t b = bg * G; b < bend; ++b) {
    const int npad = count_pads(pr, b, c);  // (its barriers also separate this batch from the last)
    const bool mask_pads = !(kSoftmax && npad == C);
    const int64_t row0 = b * pr.d.L + (int64_t)c * C;
    if (tid < kT) {
      sm.rs[tid] = row_scale<A>(pr, npad, i0 + tid);
      sm.rl[tid] = kSoftmax && tid < nq ? lse[row0 + i0 + tid] : T(0);
      sm.rd[tid] = kSoftmax && tid < nq ? Dterm[row0 + i0 + tid] : T(0);
    }
    const T* qrows = pr.q.p + b * pr.q.sb + (int64_t)(c * C + i0) * pr.q.ld;
    const T* krows = pr.k.p + b * pr.k.sb + (int64_t)c * C * pr.k.ld;
    const T* vrows = pr.v.p + b * pr.v.sb + (int64_t)c * C * pr.v.ld;
    const T* dorows = dout + (row0 + i0) * H;

    T acc[4][OC];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int o = 0; o < OC; ++o) acc[r][o] = T(0);
    const int kend = pr.causal ? min(C, i0 + nq) : C;
    for (int j0 = 0; j0 < kend; j0 += kT) {
      const int nk = min(kT, kend - j0);
      int vis = 0;
      if (tid < kT) {
        const bool hid = tid >= nk || key_hidden(pr, mask_pads, b, c, j0 + tid);
        sm.khid[tid] = hid ? T(1) : T(0);
        vis = !hid;
      }
      load_rel(sm.rel, pr.rel, C, (int64_t)C - 1 + j0 - i0 - (kT - 1));
      if (!__syncthreads_or(vis)) continue;
      // S = Qs K^T and dP~ = dO V^T (over all of H)
      T S[4][4] = {}, dP[4][4] = {};
      nt_product(S, qrows, pr.q.ld, nq, sm.rs, krows + (int64_t)j0 * pr.k.ld, pr.k.ld, nk, nullptr, pr.d.Z, sm.stage);
      nt_product(dP, dorows, (int64_t)H, nq, nullptr, vrows + (int64_t)j0 * pr.v.ld, pr.v.ld, nk, nullptr, pr.d.H,
                 sm.stage);
      // dS of the tile (masked scores: 0), in place of S, to ps[jj * kLd + ii]
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int ii = tile_row(r), i = i0 + ii;
#pragma unroll
        for (int cc = 0; cc < 4; ++cc) {
          const int jj = tile_col(cc), j = j0 + jj;
          T ds = T(0);
          if (ii < nq && sm.khid[jj] == T(0) && !(pr.causal && j > i)) {
            const T x = S[r][cc] + sm.rel[jj - ii + kT - 1];
            const T keep = dr.on ? dropout_mult(pr, dr, b, c, i, j) : T(1);
            ds = score_grad<T, A>(x, dP[r][cc], sm.rl[ii], sm.rd[ii], keep, dr.on);
          }
          S[r][cc] = ds;
        }
      }
      store_tile(sm.ps, S);
      __syncthreads();
      // The bias enters every score with weight 1: the tile's diagonal sums of dS (jj - ii = t - (kT-1))
      // go to entry u = j0 + t of the block's partial row (one thread per diagonal; a fixed-length
      // loop with 4 accumulators, so that the loads pipeline rather than wait on one add chain).
      if (prow)
        for (int t = tid; t < 2 * kT - 1; t += kThreads) {
          const int off = t - (kT - 1);
          double s4[4] = {0.0, 0.0, 0.0, 0.0};
#pragma unroll
          for (int ii = 0; ii < kT; ++ii)
            if (ii + off >= 0 && ii + off < kT) s4[ii & 3] += (double)sm.ps[(ii + off) * kLd + ii];
          if (j0 + t < PL) prow[j0 + t] += (s4[0] + s4[1]) + (s4[2] + s4[3]);
        }
      // dQ_i += sum_j dS_ij k_j (the factor s_i once the row is complete, below)
      if (dq)
        tn_product(acc, sm.ps, nk, krows + (int64_t)j0 * pr.k.ld + z0, pr.k.ld, nz, nullptr, sm.stage);
      else
        __syncthreads();  // ps is rewritten by the next key tile
    }
    if (dq)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int ii = tile_row(r);
        if (ii >= nq) continue;
        const T sc = sm.rs[ii];
        T* drow = dq + (row0 + i0 + ii) * Z + z0;
#pragma unroll
        for (int o = 0; o < OC; ++o)
          if (out_col(o) < nz) drow[out_col(o)] = acc[r][o] * sc;
      }
    __syncthreads();  // rs, rl, rd are rewritten for the next batch
  }
}

// drel[t] (2C-1) = sum over the partial rows, in block order, of their entry for bias index t.
__global__ void __launch_bounds__(kThreads)
    drel_kernel(const double* __restrict__ part, double* __restrict__ drel, int64_t rows, int C) {
  const int64_t t = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  if (t >= 2 * (int64_t)C - 1) return;
  const int NT = (C + kT - 1) / kT;
  const int64_t PL = (int64_t)C + kT - 1;
  double s = 0.0;
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t i0 = (int64_t)(row % NT) * kT, u = t - (C - i0 - kT);
    if (u >= 0 && u < PL) s += part[row * PL + u];
  }
  drel[t] = s;
}

// The key-tile kernels: key tile `tile` of chunk (b, c) walks the query tiles of its chunk (causal:
// from the diagonal on). The tile is transposed (m = key jj, n = query ii), so the products
// reduce over queries: ps[ii * kLd + jj].
//   KeyKind::DK: dk (B,L,Z) columns [w0, w0 + BO): dK_j = sum_i dS_ij (s_i q_i)
//   KeyKind::DV: dv (B,L,H) columns [w0, w0 + BO): dV_j = sum_i P~_ij dO_i
enum class KeyKind { DK, DV };

template <typename T, Act A, int OC, KeyKind KIND>
__global__ void __launch_bounds__(kThreads, 1)
    key_kernel(const AttentionProblem<T> pr, const T* __restrict__ lse, const T* __restrict__ Dterm, const T* __restrict__ dout,
               T* __restrict__ grad, const Drop<T> dr) {
  constexpr int BO = 16 * OC;
  constexpr bool kSoftmax = A == Act::Softmax, kDK = KIND == KeyKind::DK;
  extern __shared__ __align__(16) unsigned char mg_smem[];
  const Smem<T> sm(mg_smem, OC);
  const int C = (int)pr.d.C, NC = (int)pr.d.NC, NT = (C + kT - 1) / kT, H = (int)pr.d.H;
  const int W = kDK ? (int)pr.d.Z : H;  // the output's width
  const int tid = (int)threadIdx.x;
  const int tile = (int)(blockIdx.x % NT);
  const int64_t bc = blockIdx.x / NT, b = bc / NC;
  const int c = (int)(bc % NC);
  const int j0 = tile * kT, nk = min(kT, C - j0);
  const int w0 = (int)blockIdx.y * BO, nw = min(BO, W - w0);
  const int npad = count_pads(pr, b, c);
  const bool mask_pads = !(kSoftmax && npad == C);
  const int64_t row0 = b * pr.d.L + (int64_t)c * C;
  const T* qrows = pr.q.p + b * pr.q.sb + (int64_t)c * C * pr.q.ld;  // row i of the chunk: + i ld
  const T* krows = pr.k.p + b * pr.k.sb + (int64_t)(c * C + j0) * pr.k.ld;
  const T* vrows = pr.v.p + b * pr.v.sb + (int64_t)(c * C + j0) * pr.v.ld;
  int vis = 0;
  if (tid < kT) {
    const bool hid = tid >= nk || key_hidden(pr, mask_pads, b, c, j0 + tid);
    sm.khid[tid] = hid ? T(1) : T(0);
    vis = !hid;
  }
  const bool any = __syncthreads_or(vis);  // no visible key: the gradient rows are 0

  T acc[4][OC];
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int o = 0; o < OC; ++o) acc[r][o] = T(0);
  for (int i0 = pr.causal ? j0 : 0; any && i0 < C; i0 += kT) {
    const int nq = min(kT, C - i0);
    if (tid < kT) {
      sm.rs[tid] = row_scale<A>(pr, npad, i0 + tid);
      sm.rl[tid] = kSoftmax && tid < nq ? lse[row0 + i0 + tid] : T(0);
      sm.rd[tid] = kSoftmax && kDK && tid < nq ? Dterm[row0 + i0 + tid] : T(0);
    }
    load_rel(sm.rel, pr.rel, C, (int64_t)C - 1 + j0 - i0 - (kT - 1));
    __syncthreads();
    const T* qi = qrows + (int64_t)i0 * pr.q.ld;
    const T* doi = dout + (row0 + i0) * H;
    // S^T = K Qs^T; DK: dP~^T = V dO^T (over all of H)
    T S[4][4] = {}, dP[4][4] = {};
    nt_product(S, krows, pr.k.ld, nk, nullptr, qi, pr.q.ld, nq, sm.rs, pr.d.Z, sm.stage);
    if constexpr (kDK) nt_product(dP, vrows, pr.v.ld, nk, nullptr, doi, (int64_t)H, nq, nullptr, pr.d.H, sm.stage);
    // DK: dS^T, DV: P~^T of the tile (masked scores: 0), in place of S^T, to ps[ii * kLd + jj]
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int jj = tile_row(r), j = j0 + jj;
      const bool kvis = jj < nk && sm.khid[jj] == T(0);
#pragma unroll
      for (int cc = 0; cc < 4; ++cc) {
        const int ii = tile_col(cc), i = i0 + ii;
        T val = T(0);
        if (kvis && ii < nq && !(pr.causal && j > i)) {
          const T x = S[r][cc] + sm.rel[jj - ii + kT - 1];
          const T keep = dr.on ? dropout_mult(pr, dr, b, c, i, j) : T(1);
          if constexpr (kDK)
            val = score_grad<T, A>(x, dP[r][cc], sm.rl[ii], sm.rd[ii], keep, dr.on);
          else
            val = score_weight<T, A>(x, sm.rl[ii], keep, dr.on);
        }
        S[r][cc] = val;
      }
    }
    store_tile(sm.ps, S);
    __syncthreads();
    if constexpr (kDK)  // dK_j += sum_i dS_ij (s_i q_i)
      tn_product(acc, sm.ps, nq, qi + w0, pr.q.ld, nw, sm.rs, sm.stage);
    else  // dV_j += sum_i P~_ij dO_i
      tn_product(acc, sm.ps, nq, doi + w0, (int64_t)H, nw, nullptr, sm.stage);
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int jj = tile_row(r);
    if (jj >= nk) continue;
    T* grow = grad + (row0 + j0 + jj) * W + w0;
#pragma unroll
    for (int o = 0; o < OC; ++o)
      if (out_col(o) < nw) grow[out_col(o)] = acc[r][o];
  }
}

// ---------------------------------------------------------------- host side

constexpr const char* kOp = "attention_cuda";

template <Act A> using ActC = std::integral_constant<Act, A>;
template <int N> using IntC = std::integral_constant<int, N>;

// f(ActC<act>, IntC<OC>) for the runtime activation and the columns per thread: 4 (a 64-column
// slice) when the output is at most 64 wide, else 8 (128 columns).
template <typename F> void with_act_oc(Act act, int64_t width, F&& f) {
  auto g = [&](auto a) {
    if (width <= 64)
      f(a, IntC<4>{});
    else
      f(a, IntC<8>{});
  };
  switch (act) {
    case Act::Softmax: g(ActC<Act::Softmax>{}); break;
    case Act::Laplace: g(ActC<Act::Laplace>{}); break;
    case Act::Relu2: g(ActC<Act::Relu2>{}); break;
    default: fail(kOp, "unknown activation {}", (int)act);
  }
}
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Shared memory above the default 48 KiB (double) must be asked for per kernel.
template <typename K> void prepare(K kern, size_t smem) {
  if (smem > (size_t)48 * 1024)
    MG_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
}

template <typename T>
void check_problem(const AttentionProblem<T>& pr) {
  const AttentionShape& d = pr.d;
  MG_CHECK(d.B >= 1 && d.L >= 1 && d.Z >= 1 && d.H >= 1 && d.C >= 1 && d.NC >= 1, kOp,
           "empty or negative dims B={} L={} Z={} H={} C={} NC={}", d.B, d.L, d.Z, d.H, d.C, d.NC);
  MG_CHECK(d.C * d.NC == d.L, kOp, "L={} is not NC={} chunks of C={}", d.L, d.NC, d.C);
  MG_CHECK(d.L <= ((int64_t)1 << 30), kOp, "L = {} exceeds the kernels' 32-bit positions", d.L);
  MG_CHECK(pr.q.p && pr.k.p && pr.v.p && pr.rel, kOp, "null q, k, v or rel pointer");
  MG_CHECK(pr.q.ld >= d.Z && pr.k.ld >= d.Z && pr.v.ld >= d.H, kOp,
           "row strides q {} k {} (Z={}) v {} (H={}) are shorter than the rows", pr.q.ld, pr.k.ld, d.Z, pr.v.ld, d.H);
  MG_CHECK(pr.p >= 0.0 && pr.p < 1.0, kOp, "dropout must be in [0, 1), got {}", pr.p);
  MG_CHECK(d.Z <= (int64_t)1 << 20 && d.H <= (int64_t)1 << 20, kOp, "Z={} or H={} too wide", d.Z, d.H);
}

template <typename T>
Drop<T> drop_of(const AttentionProblem<T>& pr) {
  Drop<T> dr{pr.p > 0, 0, T(1)};
  if (dr.on) {
    dr.thr = (uint64_t)std::ceil(pr.p * 9007199254740992.0);  // p 2^53
    dr.scale = (T)(1.0 / (1.0 - pr.p));
  }
  return dr;
}

// The bias partial rows: G batches share a row group when B NC NT rows of C + kT - 1 doubles would
// exceed kPartialBudget. Returns {G, rows}.
inline void partial_layout(const AttentionShape& d, int64_t& G, int64_t& rows) {
  const int64_t NT = ceil_div(d.C, kT), per_b = d.NC * NT * (d.C + kT - 1) * (int64_t)sizeof(double);
  const int64_t groups = std::max<int64_t>(1, std::min<int64_t>(d.B, (int64_t)kPartialBudget / std::max<int64_t>(per_b, 1)));
  G = ceil_div(d.B, groups);
  rows = ceil_div(d.B, G) * d.NC * NT;
}

constexpr size_t kAlign = 256;
inline size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

struct WorkspaceLayout {
  size_t d_bytes = 0, part_bytes = 0;
  int64_t G = 1, part_rows = 0;
  size_t total() const { return align_up(d_bytes) + part_bytes; }
};
template <typename T>
WorkspaceLayout workspace_layout(const AttentionProblem<T>& pr, const AttentionGrads<T>& g) {
  WorkspaceLayout w;
  const bool need_ds = g.dq || g.dk || g.drel;
  if (pr.act == Act::Softmax && need_ds) w.d_bytes = (size_t)(pr.d.B * pr.d.L) * sizeof(T);
  if (g.drel) {
    partial_layout(pr.d, w.G, w.part_rows);
    w.part_bytes = (size_t)w.part_rows * (size_t)(pr.d.C + kT - 1) * sizeof(double);
  }
  return w;
}

}  // namespace

template <typename T>
void forward(const AttentionProblem<T>& pr, T* out, T* lse, cudaStream_t stream) {
  check_problem(pr);
  MG_CHECK(out, kOp, "null output pointer");
  MG_CHECK(pr.act != Act::Softmax || lse, kOp, "the softmax needs an lse buffer (B,L)");
  const AttentionShape& d = pr.d;
  const Drop<T> dr = drop_of(pr);
  const int64_t NT = ceil_div(d.C, kT), tiles = d.B * d.NC * NT;
  MG_CHECK(tiles <= ((int64_t)1 << 31) - 1, kOp, "{} tiles exceed the grid", tiles);
  with_act_oc(pr.act, d.H, [&](auto a, auto oc) {
    constexpr Act A = decltype(a)::value;
    constexpr int OC = decltype(oc)::value;
    const dim3 grid((unsigned)tiles, (unsigned)ceil_div(d.H, 16 * OC));
    const size_t smem = smem_bytes<T>(OC);
    auto kern = forward_kernel<T, A, OC>;
    prepare(kern, smem);
    kern<<<grid, kThreads, smem, stream>>>(pr, out, A == Act::Softmax ? lse : nullptr, dr);
    MG_CUDA_CHECK(cudaGetLastError());
  });
}

template <typename T>
size_t backward_workspace_bytes(const AttentionProblem<T>& pr, const AttentionGrads<T>& g) {
  return workspace_layout(pr, g).total();
}

template <typename T>
void backward(const AttentionProblem<T>& pr, const T* out, const T* lse, const T* dout, const AttentionGrads<T>& g, void* workspace,
              size_t workspace_bytes, cudaStream_t stream) {
  check_problem(pr);
  const bool need_ds = g.dq || g.dk || g.drel;
  if (!need_ds && !g.dv) return;
  const AttentionShape& d = pr.d;
  const bool softmax = pr.act == Act::Softmax;
  MG_CHECK(dout, kOp, "null dout pointer");
  MG_CHECK(!softmax || lse, kOp, "the softmax backward needs the forward's lse (B,L)");
  MG_CHECK(!(softmax && need_ds) || out, kOp, "the softmax backward needs the forward's output (B,L,H)");
  const WorkspaceLayout wl = workspace_layout(pr, g);
  MG_CHECK(workspace_bytes >= wl.total() && (wl.total() == 0 || workspace), kOp,
           "workspace of {} bytes at {}; this call needs {} (backward_workspace_bytes)", workspace_bytes,
           workspace, wl.total());
  MG_CHECK(reinterpret_cast<uintptr_t>(workspace) % 16 == 0, kOp, "workspace {} is not 16-byte aligned", workspace);
  T* D = wl.d_bytes ? static_cast<T*>(workspace) : nullptr;
  double* part = g.drel ? reinterpret_cast<double*>(static_cast<char*>(workspace) + align_up(wl.d_bytes)) : nullptr;
  const Drop<T> dr = drop_of(pr);
  const int64_t NT = ceil_div(d.C, kT), tiles = d.B * d.NC * NT;
  MG_CHECK(tiles <= ((int64_t)1 << 31) - 1, kOp, "{} tiles exceed the grid", tiles);

  // D_i = dO_i . O_i (softmax)
  if (D) {
    auto kern = rowdot_kernel<T>;
    kern<<<(unsigned)ceil_div(d.B * d.L, kThreads / 32), kThreads, 0, stream>>>(dout, out, D, d.B * d.L, d.H);
    MG_CUDA_CHECK(cudaGetLastError());
  }
  // dQ and the bias partials; then the bias gradient
  if (g.dq || g.drel) {
    with_act_oc(pr.act, g.dq ? d.Z : 64, [&](auto a, auto oc) {
      constexpr Act A = decltype(a)::value;
      constexpr int OC = decltype(oc)::value;
      const int64_t G = g.drel ? wl.G : 1;
      const dim3 grid((unsigned)(ceil_div(d.B, G) * d.NC * NT), g.dq ? (unsigned)ceil_div(d.Z, 16 * OC) : 1u);
      const size_t smem = smem_bytes<T>(OC);
      auto kern = dq_kernel<T, A, OC>;
      prepare(kern, smem);
      kern<<<grid, kThreads, smem, stream>>>(pr, lse, D, dout, g.dq, part, (int)G, dr);
      MG_CUDA_CHECK(cudaGetLastError());
    });
    if (g.drel) {
      auto kern = drel_kernel;
      kern<<<(unsigned)ceil_div(2 * d.C - 1, kThreads), kThreads, 0, stream>>>(part, g.drel, wl.part_rows, (int)d.C);
      MG_CUDA_CHECK(cudaGetLastError());
    }
  }
  // dK, dV: the key kernel over the Z or the H columns.
  auto launch_key = [&](auto kind, int64_t width, T* dst) {
    constexpr KeyKind K = decltype(kind)::value;
    with_act_oc(pr.act, width, [&](auto a, auto oc) {
      constexpr Act A = decltype(a)::value;
      constexpr int OC = decltype(oc)::value;
      const dim3 grid((unsigned)tiles, (unsigned)ceil_div(width, 16 * OC));
      const size_t smem = smem_bytes<T>(OC);
      auto kern = key_kernel<T, A, OC, K>;
      prepare(kern, smem);
      kern<<<grid, kThreads, smem, stream>>>(pr, lse, D, dout, dst, dr);
      MG_CUDA_CHECK(cudaGetLastError());
    });
  };
  if (g.dk) launch_key(std::integral_constant<KeyKind, KeyKind::DK>{}, d.Z, g.dk);
  if (g.dv) launch_key(std::integral_constant<KeyKind, KeyKind::DV>{}, d.H, g.dv);
}

template void forward<float>(const AttentionProblem<float>&, float*, float*, cudaStream_t);
template void forward<double>(const AttentionProblem<double>&, double*, double*, cudaStream_t);
template size_t backward_workspace_bytes<float>(const AttentionProblem<float>&, const AttentionGrads<float>&);
template size_t backward_workspace_bytes<double>(const AttentionProblem<double>&, const AttentionGrads<double>&);
template void backward<float>(const AttentionProblem<float>&, const float*, const float*, const float*, const AttentionGrads<float>&,
                              void*, size_t, cudaStream_t);
template void backward<double>(const AttentionProblem<double>&, const double*, const double*, const double*,
                               const AttentionGrads<double>&, void*, size_t, cudaStream_t);

}  // namespace megagrad::attention_cuda
