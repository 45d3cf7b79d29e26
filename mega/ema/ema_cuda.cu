// CUDA kernels of the fused multi-dimensional damped EMA (interface: ema_cuda.h; derivation:
// ema.md; the CPU kernels they mirror: ema_cpu.h).
//
// Legend
//   B  batch                 L  time steps               D  channels
//   N  EMA dims per channel  K  truncation (K >= L: none) R  directions (1 or 2)
//   Dp D rounded up to 64    Lc chunk length (steps)     C  chunks per sequence = ceil(L / Lc)
//   NT EMA dims held in registers at once (a "group"; N > NT runs ceil(N / NT) groups in turn)
//   U  steps whose inputs are loaded together, before the first of them is used
//
// The recurrence per (b, d, n), in a direction's time order (previous step t-1 and lag t-K going
// forward, t+1 and t+K going backward). With h = a u, a and c only enter as the product c a:
//   u[t] = q u[t-1] + z[t],   z[t] = x~[t] - Q x~[lag]   (the Q term only when truncated)
//   y[t] = sum over directions and n of (c a) u[t]
//
// Chunked scan. Time is cut into C chunks of Lc steps (the last may be shorter), the same chunks
// for both directions. One thread = (b, d, chunk); a warp = 32 consecutive channels, so each load
// and store of a step is one coalesced row.
//   1. chunk_states: every thread runs its chunk from u = 0 and stores the end state.
//   2. carry_scan:   one thread per (direction, b, n, d) walks the chunks in the direction's
//                    order, U = q^Lc U + u_end, leaving the true state at each chunk's end.
//   3. chunk_output: every thread reruns its chunk from the state that the chunk before it (in
//                    the direction's order) ends with, and writes y; the second direction and
//                    later groups of dims add to it (same thread, so no race).
// The chunk count is chosen so that B D C threads fill the GPU; with one chunk (B D alone fills
// it) steps 1-2 are skipped and the forward reads x once and writes y once. Workspace: R B C N D
// states. No kernel waits for another block: the three steps are three launches.
//
// Backward (ema.md). dx~ is the same recurrence on gy run in the opposite time order (the
// adjoint, where again only c a enters), so it reuses the three kernels with the directions
// flipped. The parameter sums carry two tangents next to u, primed = divided by a:
//   s'[t] = q s'[t-1] + u[t-1]       (s = a s' = dh/dq)
//   w'[t] = q w'[t-1] - x~[lag]      (w = a w' = dh/dQ)
//   Su = sum gy u,  Ss = sum gy s',  Sw = sum gy w'  =>  dc = a Su, da = Su, dq = a Ss, dQ = a Sw
// (u, s', w') is again linear in the inputs, so it is chunked the same way; across Lc steps
//   U <- q^Lc U + u_end,   S <- q^Lc S + Lc q^(Lc-1) U + s'_end,   W <- q^Lc W + w'_end.
// param_sums: each thread sums over its chunk starting from its carry; the warps of a block hold
// consecutive chunks of the same (b, 32 channels) and add their sums in shared memory into one
// partial per block (double); reduce_sums adds the partials over (b, block) in a fixed order. No
// atomics: the result does not depend on scheduling.
//
// Two directions without truncation take the tile kernels further down instead of chunk_states
// and chunk_output: the chunk's x~ in shared memory, scanned by the warps in sub-chunks.
//
// Cost (float32, per element of x, N = 16). One direction, one chunk: 8 bytes (read x, write y)
// and 2 FMA per (step, n): memory-bound on an H100/H200. With C > 1 chunks: x is read once more
// by chunk_states and 1 FMA per (step, n) is added, plus R N / Lc states moved 4 times. In the
// streaming kernels each extra direction or register group re-reads x and read-modify-writes y;
// the tile kernels read x once each and write y once, at 6 FMA per (step, n) for two directions
// (plus 2 in the states pass): compute-bound rather than memory-bound.
#include "mega/ema/ema_cuda.h"
#include "mega/ema/ema_coeffs.h"
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cmath>
#include <type_traits>
#include "backends/cuda/cuda_check.h"
#include "core/vec_math.h"

namespace megagrad::ema_cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;            // blocks of (32, 4) threads
constexpr int kU = 8;                        // steps loaded together
constexpr int64_t kTargetThreads = 1 << 17;  // enough to fill an H100/H200 (132 SMs) or A100
constexpr int64_t kMinChunk = 256;           // chunk states (N per chunk) stay small next to x
constexpr int64_t kMaxParamChunk = 512;      // parameter sums run in T over at most this many steps

// Dims per register group: all of N = 16 at once in float; double takes twice the registers.
template <typename T> constexpr int kGroup = sizeof(T) == 4 ? 16 : 8;

__device__ __forceinline__ float mad(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double mad(double a, double b, double c) { return fma(a, b, c); }
// 1 / (1 + e^-v) as the CPU's sigmoid_fast (core/vec_math.h): the same exp_fast, and a correctly
// rounded reciprocal (= the CPU's division) with no slow-path call (rcp(inf) = 0).
__device__ __forceinline__ float sigmoid(float v) { return __frcp_rn(1.0f + exp_fast(-v)); }
__device__ __forceinline__ double sigmoid(double v) { return __drcp_rn(1.0 + exp_fast(-v)); }
// out = silu(v) in the epilogues. float64: they store v, then apply silu in a second pass over what
// this thread wrote (read back from L1/L2): the degree-13 exp_fast inlined next to the live
// states made ptxas spill (sm_80 tile_kernel<double, 8>, chunk_output_kernel<double, 8>).
template <typename T> inline constexpr bool kSiluSecondPass = sizeof(T) == 8;
template <typename T> __device__ __forceinline__ T silu_now(T v) { return kSiluSecondPass<T> ? v : v * sigmoid(v); }
template <typename T> __device__ __forceinline__ void silu_in_place(T* o) {
  const T v = *o;
  *o = v * sigmoid(v);
}
__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
__host__ __device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// One direction as the kernels see it: coefficients (N, Dp) and the time order it runs in.
template <typename T>
struct Dir : EmaCoeffs<T> {
  int rev;  // 1: from t = L-1 down to 0
};
template <typename T>
struct Dirs {
  Dir<T> d[2];
  int n;
  // By value with a select: indexing the kernel parameter with a runtime index would copy it to
  // local memory.
  __device__ __forceinline__ Dir<T> operator[](int r) const { return r == 0 ? d[0] : d[1]; }
};

// Shape and chunking, passed by value to every kernel.
struct Geo {
  int64_t B, L, D, N, K, Dp;
  int64_t Lc, C;  // chunk length and count
  int64_t ndt;    // tiles of 32 channels: ceil(D / 32)
  int trunc;      // K < L
};

template <typename T>
__device__ const T kNoPad = T(0);

// The strided input as the kernels see it: EmaInput (x, or gy for the adjoint with no mask).
template <typename T>
using In = EmaInput<T>;

// Slot of state k of dim n, channel d, chunk c in the chunk-state workspace: (R, B, C, S, N, D).
__device__ __forceinline__ int64_t slot(const Geo& g, int dir, int64_t b, int64_t c, int S, int k, int64_t n,
                                        int64_t d) {
  return ((((dir * g.B + b) * g.C + c) * S + k) * g.N + n) * g.D + d;
}
// Slot of sum k of dim n, channel d in the per-block partials: (R, B, CB, 3, N, D).
__host__ __device__ __forceinline__ int64_t pslot(const Geo& g, int64_t CB, int dir, int64_t b, int64_t cb, int k,
                                                  int64_t n, int64_t d) {
  return ((((dir * g.B + b) * CB + cb) * 3 + k) * g.N + n) * g.D + d;
}

// The (b, chunk, channel) of this thread in the (32, warps) block layout of chunk_states and
// chunk_output: warp w of the grid takes item w = (b, c, tile), the channel tile fastest.
struct Item {
  int64_t b, c, d;
  bool ok;
};
// 32-bit index math: the host checks B C ceil(D / 32) < 2^31.
__device__ __forceinline__ Item item_of(const Geo& g) {
  const unsigned w = blockIdx.x * blockDim.y + threadIdx.y, ndt = (unsigned)g.ndt, C = (unsigned)g.C;
  const unsigned tile = w % ndt, r = w / ndt;
  Item it;
  it.c = r % C;
  it.b = r / C;
  it.d = (int64_t)tile * kWarp + threadIdx.x;
  it.ok = it.b < g.B && it.d < g.D;
  return it;
}

// Coefficient p of dims n0 .. n0+NT-1 at channel d; 0 beyond N (such dims add nothing to y and
// their states are never stored).
template <int NT, typename T>
__device__ __forceinline__ void load_group(const T* p, const Geo& g, int64_t n0, int64_t d, T (&v)[NT]) {
#pragma unroll
  for (int i = 0; i < NT; ++i) v[i] = n0 + i < g.N ? __ldg(p + (n0 + i) * g.Dp + d) : T(0);
}

// Calls f(t, xv, xl, ev, xr) for the steps t of chunk [t0, t1) in the direction's order, where
// xv = x~[t], xl = x~[lag] (0 unless TRUNC and the lag lies in [0, L)), ev = extra[b, t, d]
// (extra: (B, L, D) contiguous, or null for 0) and xr = x[t] unmasked. The inputs of U steps are
// loaded before the first of them is used, so U loads per array are in flight together. f may
// write extra at step t (after its load): extra is read with plain loads, not through the
// read-only cache. Time indices are int (L < 2^31 is checked); offsets are formed in 64 bits.
template <bool TRUNC, typename T, typename F>
__device__ __forceinline__ void sweep(const In<T>& in, const Geo& g, int64_t b, int64_t d, int t0, int t1, bool rev,
                                      const T* extra, F&& f) {
  const T* xb = in.x + b * in.sb + d;  // x[b, t, d] = xb[t sl]
  // Without a mask, read a zero with stride 0: the same x * (1 - 0) and no branch per step.
  const T* mb = in.mask ? in.mask + b * in.mb : &kNoPad<T>;
  const int64_t sl = in.sl, ml = in.mask ? in.ml : 0;
  const T* eb = extra ? extra + b * g.L * g.D + d : nullptr;  // extra[b, t, d] = eb[t D]
  const int dt = rev ? -1 : 1, lag = rev ? (int)g.K : -(int)g.K, L = (int)g.L;
  auto load = [&](int t, T& xv, T& xl, T& ev, T& xr) {
    xr = __ldg(xb + t * sl);
    xv = xr * (T(1) - __ldg(mb + t * ml));
    xl = T(0);
    if constexpr (TRUNC) {
      const int tl = t + lag;
      if (tl >= 0 && tl < L) xl = __ldg(xb + tl * sl) * (T(1) - __ldg(mb + tl * ml));
    }
    ev = eb ? eb[(int64_t)t * g.D] : T(0);
  };
  const int len = t1 - t0;
  int t = rev ? t1 - 1 : t0, j0 = 0;
#pragma unroll 1
  for (; j0 + kU <= len; j0 += kU, t += kU * dt) {
    T xv[kU], xl[kU], ev[kU], xr[kU];
#pragma unroll
    for (int k = 0; k < kU; ++k) load(t + k * dt, xv[k], xl[k], ev[k], xr[k]);
#pragma unroll
    for (int k = 0; k < kU; ++k) f(t + k * dt, xv[k], xl[k], ev[k], xr[k]);
  }
#pragma unroll 1
  for (; j0 < len; ++j0, t += dt) {  // the last len % U steps
    T xv, xl, ev, xr;
    load(t, xv, xl, ev, xr);
    f(t, xv, xl, ev, xr);
  }
}

// ---------------------------------------------------------------- 1. chunk end states

// ws: (R, B, C, S, N, D), S = 3 (u, s', w') with TANGENT else 1 (u). Each thread runs its chunk
// from zero states; the last chunk in a direction's order is skipped (nothing needs its state).
template <typename T, int NT, bool TANGENT, bool TRUNC>
__device__ __forceinline__ void chunk_states_body(const In<T>& in, const Dirs<T>& dirs, const Geo& g, T* ws,
                                                  const Item& it) {
  constexpr int S = TANGENT ? 3 : 1;
  const int t0 = (int)(it.c * g.Lc), t1 = (int)imin(t0 + g.Lc, g.L);
  const int64_t d = it.d;
#pragma unroll 1
  for (int dir = 0; dir < dirs.n; ++dir) {
    const Dir<T> dr = dirs[dir];
    if (dr.rev ? it.c == 0 : it.c == g.C - 1) continue;
#pragma unroll 1
    for (int64_t n0 = 0; n0 < g.N; n0 += NT) {
      T q[NT], Q[NT], u[NT], s[NT], w[NT];
      load_group(dr.q, g, n0, d, q);
      load_group(dr.Q, g, n0, d, Q);
#pragma unroll
      for (int i = 0; i < NT; ++i) u[i] = s[i] = w[i] = T(0);
      sweep<TRUNC>(in, g, it.b, d, t0, t1, dr.rev, (const T*)nullptr, [&](int, T xv, T xl, T, T) {
#pragma unroll
        for (int i = 0; i < NT; ++i) {
          if constexpr (TANGENT) {
            s[i] = mad(q[i], s[i], u[i]);                        // s'[t] = q s'[t-1] + u[t-1]
            if constexpr (TRUNC) w[i] = mad(q[i], w[i], -xl);    // w'[t] = q w'[t-1] - x~[lag]
          }
          u[i] = mad(q[i], u[i], TRUNC ? mad(-Q[i], xl, xv) : xv);  // u[t] = q u[t-1] + z[t]
        }
      });
#pragma unroll
      for (int i = 0; i < NT; ++i)
        if (n0 + i < g.N) {
          ws[slot(g, dir, it.b, it.c, S, 0, n0 + i, d)] = u[i];
          if constexpr (TANGENT) {
            ws[slot(g, dir, it.b, it.c, S, 1, n0 + i, d)] = s[i];
            ws[slot(g, dir, it.b, it.c, S, 2, n0 + i, d)] = w[i];
          }
        }
    }
  }
}

template <typename T, int NT, bool TANGENT, bool TRUNC>
__global__ void __launch_bounds__(kWarp * kWarpsPerBlock)
    chunk_states_kernel(In<T> in, Dirs<T> dirs, Geo g, T* ws) {
  const Item it = item_of(g);
  if (it.ok) chunk_states_body<T, NT, TANGENT, TRUNC>(in, dirs, g, ws, it);
}

// ---------------------------------------------------------------- 2. carries across chunks

// One thread per (dir, b, n, d): walks chunks in the direction's order and replaces each chunk's
// end state from zero by the true end state (the carry into the next chunk). Every chunk after
// the first in this order is a full one of Lc steps (only chunk C-1 can be short, and it is the
// first going backward and the skipped last going forward), so one decay q^Lc serves all.
template <typename T, bool TANGENT>
__global__ void carry_scan_kernel(Dirs<T> dirs, Geo g, T* ws) {
  constexpr int S = TANGENT ? 3 : 1;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= dirs.n * g.B * g.N * g.D) return;
  const int64_t d = i % g.D, n = (i / g.D) % g.N, b = (i / (g.D * g.N)) % g.B;
  const int dir = (int)(i / (g.D * g.N * g.B));
  const Dir<T> dr = dirs[dir];
  const double qd = (double)dr.q[n * g.Dp + d];
  const T qL = (T)pow(qd, (double)g.Lc);                                // q^Lc
  const T qL1 = TANGENT ? (T)((double)g.Lc * pow(qd, (double)(g.Lc - 1))) : T(0);  // Lc q^(Lc-1)
  const int64_t ks = g.N * g.D;  // distance between the states k of one slot
  T U = T(0), Sx = T(0), W = T(0);
  for (int64_t j = 0; j + 1 < g.C; ++j) {
    const int64_t c = dr.rev ? g.C - 1 - j : j;
    T* p = ws + slot(g, dir, b, c, S, 0, n, d);
    if constexpr (TANGENT) {
      Sx = mad(qL, Sx, mad(qL1, U, p[ks]));  // uses U before this chunk
      W = mad(qL, W, p[2 * ks]);
      p[ks] = Sx;
      p[2 * ks] = W;
    }
    U = mad(qL, U, p[0]);
    p[0] = U;
  }
}

// ---------------------------------------------------------------- 3. outputs

// y: (B, L, D) contiguous. Pass (dir, group) runs the chunk from the carry and adds c a u over
// the group's dims to y; the first pass writes y, the last also writes the epilogue
// out = silu(y + omega x) when out is non-null.
template <typename T, int NT, bool TRUNC>
__device__ __forceinline__ void chunk_output_body(const In<T>& in, const Dirs<T>& dirs, const Geo& g, const T* ws,
                                                  T* y, const T* omega, T* out, const Item& it) {
  const int t0 = (int)(it.c * g.Lc), t1 = (int)imin(t0 + g.Lc, g.L);
  const int64_t b = it.b, d = it.d;
#pragma unroll 1
  for (int dir = 0; dir < dirs.n; ++dir) {
    const Dir<T> dr = dirs[dir];
    const int64_t cp = dr.rev ? it.c + 1 : it.c - 1;  // the chunk before this one, in this order
    const bool carry = cp >= 0 && cp < g.C;
#pragma unroll 1
    for (int64_t n0 = 0; n0 < g.N; n0 += NT) {
      const bool first = dir == 0 && n0 == 0;
      const bool last = dir + 1 == dirs.n && n0 + NT >= g.N;
      T q[NT], Q[NT], ca[NT], cc[NT], u[NT];
      load_group(dr.q, g, n0, d, q);
      load_group(dr.Q, g, n0, d, Q);
      load_group(dr.a, g, n0, d, ca);
      load_group(dr.c, g, n0, d, cc);
#pragma unroll
      for (int i = 0; i < NT; ++i) {
        ca[i] *= cc[i];
        u[i] = carry && n0 + i < g.N ? ws[slot(g, dir, b, cp, 1, 0, n0 + i, d)] : T(0);
      }
      // One step: u[t] = q u[t-1] + z[t], then y[t] += c a u[t] over the group (acc starts at the
      // y of earlier passes, 0 on the first).
      auto step = [&](T xv, T xl, T acc) {
#pragma unroll
        for (int i = 0; i < NT; ++i) {
          u[i] = mad(q[i], u[i], TRUNC ? mad(-Q[i], xl, xv) : xv);
          acc = mad(ca[i], u[i], acc);
        }
        return acc;
      };
      const T* prev = first ? nullptr : y;
      T* yb = y + b * g.L * g.D + d;  // y[b, t, d] = yb[t D]
      if (last && out != nullptr) {   // the last pass also writes out = silu(y + omega x)
        T* ob = out + b * g.L * g.D + d;
        const T om = omega[d];
        sweep<TRUNC>(in, g, b, d, t0, t1, dr.rev, prev, [&](int t, T xv, T xl, T yold, T xr) {
          const T acc = step(xv, xl, yold), v = acc + om * xr;
          yb[(int64_t)t * g.D] = acc;
          ob[(int64_t)t * g.D] = silu_now(v);
        });
        if constexpr (kSiluSecondPass<T>) {
#pragma unroll 1
          for (int t = t0; t < t1; ++t) silu_in_place(ob + (int64_t)t * g.D);
        }
      } else {
        sweep<TRUNC>(in, g, b, d, t0, t1, dr.rev, prev,
                     [&](int t, T xv, T xl, T yold, T) { yb[(int64_t)t * g.D] = step(xv, xl, yold); });
      }
    }
  }
}

// At most 128 registers (4 blocks per SM) without truncation, 168 with it: small spills of
// loop-invariant values only, none inside the time loops (checked in the SASS).
template <typename T, int NT, bool TRUNC>
__global__ void __launch_bounds__(kWarp * kWarpsPerBlock, TRUNC ? 3 : 4)
    chunk_output_kernel(In<T> in, Dirs<T> dirs, Geo g, const T* ws, T* y, const T* omega, T* out) {
  const Item it = item_of(g);
  if (it.ok) chunk_output_body<T, NT, TRUNC>(in, dirs, g, ws, y, omega, out, it);
}

// ---------------------------------------------------------------- two directions: chunk tiles
//
// With two directions the streaming kernels above read x once per direction in both chunk_states
// and chunk_output, and read and write y again for the second direction. The tile kernels hold
// the chunk's x~ (Lc = W S steps by 32 channels) in shared memory instead and split it among the
// W warps of the block, S steps each: the same chunked scan once more, inside the block.
//   a. each warp runs its S steps from zero and puts its end state in shared memory;
//   b. each warp folds the end states of the warps before it (in the direction's order) onto the
//      chunk's carry-in (from carry_scan): the state its own steps start from;
//   c. each warp reruns its steps from there and adds c a u into y, which stays in registers over
//      both directions and all groups of dims; y (and out) are written once at the end.
// The states variant (step 1 of the scan) stops after a. and folds all W end states into the
// chunk's. So each of the two kernels reads x once, and y is written once.
template <typename T> constexpr int kTileS = sizeof(T) == 4 ? 32 : 16;  // steps per warp
constexpr int kTileW = 8;                                                // warps per block
template <typename T> constexpr int kTileLc = kTileS<T> * kTileW;        // chunk: 256 or 128 steps

// q^n for n >= 0, by squaring.
template <typename T>
__device__ __forceinline__ T powi(T q, int n) {
  T r = T(1);
  for (; n != 0; n >>= 1, q *= q)
    if (n & 1) r *= q;
  return r;
}

// Block = (32 channels, W warps) for the (b, chunk, 32 channels) of blockIdx.x (channels fastest).
// Shared memory: the x~ tile, Lc x 32, and the warps' end states, W x NT x 32 (48 KiB in all).
// Untruncated EMAs only (scan_plan): z = x~.
template <typename T, int NT, bool STATES>
__global__ void __launch_bounds__(kWarp * kTileW, 2)
    tile_kernel(In<T> in, Dirs<T> dirs, Geo g, T* ws, T* y, const T* omega, T* out) {
  constexpr int S = kTileS<T>, W = kTileW, Lc = kTileLc<T>;
  __shared__ T xs[Lc][kWarp];     // x~[b, t0 + r, d]; 0 past the end and for d >= D
  __shared__ T st[W][NT][kWarp];  // each warp's end state, of one direction and group
  const int lane = threadIdx.x, w = threadIdx.y;
  const unsigned blk = blockIdx.x, ndt = (unsigned)g.ndt, C = (unsigned)g.C;  // host: < 2^31 blocks
  const int64_t c = (blk / ndt) % C, b = blk / (ndt * C), d = (int64_t)(blk % ndt) * kWarp + lane;
  const bool dok = d < g.D;  // threads past D only help with the loads and barriers
  const int L = (int)g.L, t0 = (int)c * Lc, t1 = min(t0 + Lc, L);
  const int s0 = min(t0 + w * S, t1), len = min(s0 + S, t1) - s0;  // this warp's steps: [s0, s0 + len)
  const T* xb = in.x + b * in.sb + (dok ? d : 0);
  const T* mb = in.mask ? in.mask + b * in.mb : &kNoPad<T>;
  const int64_t ml = in.mask ? in.ml : 0;
  auto xt = [&](int t) { return __ldg(xb + t * in.sl) * (T(1) - __ldg(mb + t * ml)); };  // x~[t]
  // The tile: warp w loads rows w, w + W, ..., each one coalesced row.
#pragma unroll 4
  for (int r = w; r < Lc; r += W) xs[r][lane] = t0 + r < t1 && dok ? xt(t0 + r) : T(0);
  __syncthreads();

  T yacc[STATES ? 1 : S];
#pragma unroll
  for (int j = 0; j < (STATES ? 1 : S); ++j) yacc[j] = T(0);
#pragma unroll 1
  for (int dir = 0; dir < dirs.n; ++dir) {
    const Dir<T> dr = dirs[dir];
    const bool rev = dr.rev;
#pragma unroll 1
    for (int64_t n0 = 0; n0 < g.N; n0 += NT) {
      T q[NT], u[NT];
      load_group(dr.q, g, n0, d, q);
      // a. this warp's steps from zero: u = q u + x~
#pragma unroll
      for (int i = 0; i < NT; ++i) u[i] = T(0);
#pragma unroll 4
      for (int k = 0; k < len; ++k) {
        const T xv = xs[(rev ? s0 + len - 1 - k : s0 + k) - t0][lane];
#pragma unroll
        for (int i = 0; i < NT; ++i) u[i] = mad(q[i], u[i], xv);
      }
#pragma unroll
      for (int i = 0; i < NT; ++i) st[w][i][lane] = u[i];
      __syncthreads();
      // Folding warp v's end state onto the state before it: U = q^S U + st[v]. Only in the last
      // chunk do warps have fewer than S steps (or none); going backward they come first, while
      // U is still 0, and going forward after every warp with steps: so q^S serves every fold
      // that matters.
      T qS[NT];
#pragma unroll
      for (int i = 0; i < NT; ++i) qS[i] = powi(q[i], S);
      if constexpr (STATES) {
        // The chunk's end state from zero: all W warps folded in the direction's order. Not for
        // the chunk that comes last in this order (nothing needs it).
        if (w == 0 && dok && !(rev ? c == 0 : c == g.C - 1)) {
#pragma unroll
          for (int i = 0; i < NT; ++i) {
            T U = T(0);
            for (int v = 0; v < W; ++v) U = mad(qS[i], U, st[rev ? W - 1 - v : v][i][lane]);
            if (n0 + i < g.N) ws[slot(g, dir, b, c, 1, 0, n0 + i, d)] = U;
          }
        }
      } else {
        // b. The state this warp starts from: the chunk's carry-in (the true end state of the
        // chunk before, in this order), then the end states of the warps before this one.
        const int64_t cp = rev ? c + 1 : c - 1;
        const bool carry = cp >= 0 && cp < g.C;
#pragma unroll
        for (int i = 0; i < NT; ++i) u[i] = carry && n0 + i < g.N ? ws[slot(g, dir, b, cp, 1, 0, n0 + i, d)] : T(0);
        for (int v = 0; v < W; ++v) {
          const int vv = rev ? W - 1 - v : v;
          if (vv == w) break;
#pragma unroll
          for (int i = 0; i < NT; ++i) u[i] = mad(qS[i], u[i], st[vv][i][lane]);
        }
      }
      __syncthreads();  // st is rewritten by the next pass
      if constexpr (!STATES) {
        // c. Rerun this warp's steps from there, adding c a u into y.
        T ca[NT], cc[NT];
        load_group(dr.a, g, n0, d, ca);
        load_group(dr.c, g, n0, d, cc);
#pragma unroll
        for (int i = 0; i < NT; ++i) ca[i] *= cc[i];
        auto rerun = [&](auto reversed) {
          constexpr bool REV = decltype(reversed)::value;
#pragma unroll
          for (int k = 0; k < S; ++k) {
            const int j = REV ? S - 1 - k : k;  // compile-time index into yacc
            if (j < len) {
              const T xv = xs[s0 + j - t0][lane];
              T acc = yacc[j];
#pragma unroll
              for (int i = 0; i < NT; ++i) {
                u[i] = mad(q[i], u[i], xv);
                acc = mad(ca[i], u[i], acc);
              }
              yacc[j] = acc;
            }
          }
        };
        if (rev) rerun(std::true_type{});
        else     rerun(std::false_type{});
      }
    }
  }
  if constexpr (!STATES) {
    if (dok) {  // y once, and out = silu(y + omega x) with x unmasked (read again: an L2 hit)
      T* yb = y + b * g.L * g.D + d;
      T* ob = out ? out + b * g.L * g.D + d : nullptr;
      const T om = out ? omega[d] : T(0);
#pragma unroll
      for (int j = 0; j < S; ++j)
        if (j < len) {
          const int t = s0 + j;
          yb[(int64_t)t * g.D] = yacc[j];
          if (ob) {
            const T v = yacc[j] + om * __ldg(xb + t * in.sl);
            ob[(int64_t)t * g.D] = silu_now(v);
          }
        }
      if constexpr (kSiluSecondPass<T>) {
        if (ob) {
#pragma unroll
          for (int j = 0; j < S; ++j)
            if (j < len) silu_in_place(ob + (int64_t)(s0 + j) * g.D);
        }
      }
    }
  }
}

// ---------------------------------------------------------------- backward: parameter sums

// The forward-mode sweep of one thread over its chunk, from the carried (u, s', w') (ws: the
// chunk states after carry_scan<TANGENT>, (R, B, C, 3, N, D)); adds gy u, gy s', gy w' of each
// step into su, ss, sw.
template <typename T, int NT, bool TRUNC>
__device__ __forceinline__ void tangent_body(const In<T>& in, const Dir<T>& dr, int dir, const Geo& g, const T* ws,
                                             const T* gy, int64_t b, int64_t c, int64_t d, int64_t n0, T (&su)[NT],
                                             T (&ss)[NT], T (&sw)[NT]) {
  const int t0 = (int)(c * g.Lc), t1 = (int)imin(t0 + g.Lc, g.L);
  const int64_t cp = dr.rev ? c + 1 : c - 1;
  const bool carry = cp >= 0 && cp < g.C;
  T q[NT], Q[NT], u[NT], s[NT], w[NT];
  load_group(dr.q, g, n0, d, q);
  load_group(dr.Q, g, n0, d, Q);
#pragma unroll
  for (int i = 0; i < NT; ++i) {
    const bool has = carry && n0 + i < g.N;
    u[i] = has ? ws[slot(g, dir, b, cp, 3, 0, n0 + i, d)] : T(0);
    s[i] = has ? ws[slot(g, dir, b, cp, 3, 1, n0 + i, d)] : T(0);
    w[i] = has ? ws[slot(g, dir, b, cp, 3, 2, n0 + i, d)] : T(0);
  }
  sweep<TRUNC>(in, g, b, d, t0, t1, dr.rev, gy, [&](int, T xv, T xl, T gv, T) {
#pragma unroll
    for (int i = 0; i < NT; ++i) {
      s[i] = mad(q[i], s[i], u[i]);                               // s'[t] = q s'[t-1] + u[t-1]
      if constexpr (TRUNC) w[i] = mad(q[i], w[i], -xl);           // w'[t] = q w'[t-1] - x~[lag]
      u[i] = mad(q[i], u[i], TRUNC ? mad(-Q[i], xl, xv) : xv);    // u[t] = q u[t-1] + z[t]
      su[i] = mad(gv, u[i], su[i]);
      ss[i] = mad(gv, s[i], ss[i]);
      if constexpr (TRUNC) sw[i] = mad(gv, w[i], sw[i]);
    }
  });
}

// Block = (32 channels, WB warps); warp y takes chunk c = cb WB + y of the block's (b, cb, tile).
// For each (dir, group) the warps' sums meet in shared memory and warp 0 writes the block's
// partial, part: (R, B, CB, 3, N, D) doubles.
template <typename T, int NT, bool TRUNC>
__global__ void __launch_bounds__(kWarp * kWarpsPerBlock)
    param_sums_kernel(In<T> in, Dirs<T> dirs, Geo g, const T* ws, const T* gy, double* part, int64_t CB) {
  __shared__ T red[kWarpsPerBlock][3][NT][kWarp];
  const int ty = threadIdx.y, lane = threadIdx.x;
  const int64_t blk = blockIdx.x, tile = blk % g.ndt, cb = (blk / g.ndt) % CB, b = blk / (g.ndt * CB);
  const int64_t c = cb * blockDim.y + ty, d = tile * kWarp + lane;
  const bool active = c < g.C && d < g.D;  // idle threads still meet the barriers
#pragma unroll 1
  for (int dir = 0; dir < dirs.n; ++dir) {
#pragma unroll 1
    for (int64_t n0 = 0; n0 < g.N; n0 += NT) {
      T su[NT], ss[NT], sw[NT];
#pragma unroll
      for (int i = 0; i < NT; ++i) su[i] = ss[i] = sw[i] = T(0);
      if (active) tangent_body<T, NT, TRUNC>(in, dirs[dir], dir, g, ws, gy, b, c, d, n0, su, ss, sw);
#pragma unroll
      for (int i = 0; i < NT; ++i) red[ty][0][i][lane] = su[i], red[ty][1][i][lane] = ss[i], red[ty][2][i][lane] = sw[i];
      __syncthreads();
      if (ty == 0 && d < g.D)
        for (int i = 0; i < NT && n0 + i < g.N; ++i)
          for (int k = 0; k < 3; ++k) {
            double acc = 0;
            for (int wy = 0; wy < (int)blockDim.y; ++wy) acc += (double)red[wy][k][i][lane];
            part[pslot(g, CB, dir, b, cb, k, n0 + i, d)] = acc;
          }
      __syncthreads();  // red is rewritten by the next pass
    }
  }
}

// One thread per (dir, n, d < Dp): adds the partials over (b, cb) in a fixed order and writes
// sums (4, R, N, Dp): dc = a Su, da = Su, dq = a Ss, dQ = a Sw (0 for d >= D).
template <typename T>
__global__ void reduce_sums_kernel(Dirs<T> dirs, Geo g, int64_t CB, const double* part, double* sums) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t plane = dirs.n * g.N * g.Dp;
  if (i >= plane) return;
  const int64_t d = i % g.Dp, n = (i / g.Dp) % g.N;
  const int dir = (int)(i / (g.Dp * g.N));
  double su = 0, ss = 0, sw = 0, a = 0;
  if (d < g.D) {
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t cb = 0; cb < CB; ++cb) {
        su += part[pslot(g, CB, dir, b, cb, 0, n, d)];
        ss += part[pslot(g, CB, dir, b, cb, 1, n, d)];
        sw += part[pslot(g, CB, dir, b, cb, 2, n, d)];
      }
    a = (double)dirs[dir].a[n * g.Dp + d];
  }
  sums[i] = a * su;
  sums[plane + i] = su;
  sums[2 * plane + i] = a * ss;
  sums[3 * plane + i] = a * sw;
}

// ---------------------------------------------------------------- host side

struct Plan {
  int64_t Lc, C;
  bool tiled = false;  // two directions: the tile kernels, chunks of kTileLc
};

// Chunks per sequence: as few as fill the GPU with B D C threads, each at least kMinChunk steps
// (the workspace holds N numbers per chunk and channel) and at most max_chunk; or `chunk` if > 0.
Plan make_plan(const EmaShape& s, int64_t max_chunk, int64_t chunk) {
  int64_t Lc = chunk;
  if (Lc <= 0) {
    const int64_t base = std::max<int64_t>(1, s.B * ceil_div(s.D, kWarp) * kWarp);
    const int64_t want = std::max<int64_t>(1, ceil_div(kTargetThreads, base));
    Lc = std::min(std::max(ceil_div(s.L, want), kMinChunk), max_chunk);
  }
  Lc = std::max<int64_t>(1, std::min(Lc, s.L));
  return {Lc, ceil_div(s.L, Lc)};
}

// The chunks of the y and dx~ scans: with two directions and no truncation the tile kernels and
// their chunk length, unless `chunk` asks for another one (tests do); else the streaming kernels.
// (Truncated, the tile kernels would read the lagged inputs from memory in the unrolled rerun,
// and their registers spill.)
template <typename T>
Plan scan_plan(const EmaShape& s, int ndirs, int64_t chunk) {
  if (ndirs == 2 && !s.truncated() && (chunk <= 0 || chunk == kTileLc<T>))
    return {kTileLc<T>, ceil_div(s.L, kTileLc<T>), true};
  return make_plan(s, INT64_MAX, chunk);
}

Geo make_geo(const EmaShape& s, const Plan& p) {
  return {s.B, s.L, s.D, s.N, s.kernel_len, s.Dp(), p.Lc, p.C, ceil_div(s.D, kWarp), s.kernel_len < s.L ? 1 : 0};
}

constexpr size_t align256(size_t n) { return (n + 255) / 256 * 256; }
bool empty(const EmaShape& s) { return s.B == 0 || s.L == 0 || s.D == 0; }

// Chunk states: (R, B, C, S, N, D), none with one chunk.
template <typename T>
size_t states_bytes(const EmaShape& s, int ndirs, const Plan& p, int S) {
  return p.C > 1 ? (size_t)(S * ndirs * s.B * p.C * s.N * s.D) * sizeof(T) : 0;
}
int64_t warps_per_param_block(const Plan& p) { return std::min<int64_t>(kWarpsPerBlock, p.C); }
int64_t param_blocks_per_row(const Plan& p) { return ceil_div(p.C, warps_per_param_block(p)); }
// Parameter pass: chunk states (S = 3), then the per-block partials (R, B, CB, 3, N, D) doubles.
template <typename T>
size_t param_bytes(const EmaShape& s, int ndirs, const Plan& p) {
  return align256(states_bytes<T>(s, ndirs, p, 3)) +
         (size_t)(ndirs * s.B * param_blocks_per_row(p) * 3 * s.N * s.D) * sizeof(double);
}

template <typename T>
void check_args(const EmaShape& s, const EmaCoeffs<T>* dirs, int ndirs, size_t need, const void* ws, size_t ws_bytes) {
  constexpr std::string_view op = "ema_cuda";
  MG_CHECK(s.B >= 0 && s.L >= 0 && s.D >= 0, op, "negative size: B={} L={} D={}", s.B, s.L, s.D);
  MG_CHECK(s.N >= 1, op, "N must be at least 1, got {}", s.N);
  MG_CHECK(s.L == 0 || (s.kernel_len >= 1 && s.kernel_len <= s.L), op, "K must be in [1, L] (K = L: no truncation), got K={} L={}",
           s.kernel_len, s.L);
  MG_CHECK(s.L <= INT_MAX, op, "L = {} exceeds the int time index", s.L);
  MG_CHECK(ndirs == 1 || ndirs == 2, op, "ndirs must be 1 or 2, got {}", ndirs);
  MG_CHECK(dirs != nullptr, op, "no coefficients");
  for (int r = 0; r < ndirs; ++r)
    MG_CHECK(dirs[r].q && dirs[r].a && dirs[r].c && dirs[r].Q, op, "direction {}: a null coefficient array", r);
  MG_CHECK(ws_bytes >= need && (need == 0 || ws != nullptr), op,
           "workspace of {} bytes is too small: {} needed (see *_workspace_bytes)", ws != nullptr ? ws_bytes : 0, need);
  MG_CHECK(reinterpret_cast<uintptr_t>(ws) % 16 == 0, op, "the workspace must be 16-byte aligned");
}

template <typename T>
Dirs<T> make_dirs(const EmaCoeffs<T>* dirs, int ndirs, bool flip) {
  Dirs<T> out{};
  out.n = ndirs;
  for (int r = 0; r < ndirs; ++r) out.d[r] = {dirs[r], (r == 1) != flip ? 1 : 0};
  return out;
}

unsigned grid_of(int64_t blocks) {
  MG_CHECK(blocks <= INT_MAX, "ema_cuda", "{} blocks exceed the grid limit", blocks);
  return (unsigned)blocks;
}
// Grid of the (32, 4) kernels: one warp per (b, chunk, 32 channels); item_of's 32-bit math.
unsigned item_grid(const Geo& g) {
  const int64_t items = g.B * g.C * g.ndt;
  MG_CHECK(items <= INT_MAX, "ema_cuda", "{} work items (B={} chunks={} tiles={}) exceed 2^31", items, g.B, g.C, g.ndt);
  return grid_of(ceil_div(items, kWarpsPerBlock));
}

// The three kernels of the chunked scan: y (+ epilogue) from x.
template <typename T, int NT, bool TRUNC>
void scan(const In<T>& in, const Dirs<T>& dirs, const Geo& g, bool tiled, T* ws, T* y, const T* omega, T* out,
          cudaStream_t stream) {
  if (tiled) {  // scan_plan tiles untruncated EMAs only
    const dim3 block(kWarp, kTileW);
    const int64_t blocks = g.B * g.C * g.ndt;
    MG_CHECK(blocks <= INT_MAX, "ema_cuda", "{} tiles (B={} chunks={} channel tiles={}) exceed 2^31", blocks, g.B,
             g.C, g.ndt);
    if (g.C > 1) {
      tile_kernel<T, NT, true><<<grid_of(blocks), block, 0, stream>>>(in, dirs, g, ws, nullptr, nullptr, nullptr);
      MG_CUDA_CHECK(cudaGetLastError());
      carry_scan_kernel<T, false><<<grid_of(ceil_div(dirs.n * g.B * g.N * g.D, 256)), 256, 0, stream>>>(dirs, g, ws);
      MG_CUDA_CHECK(cudaGetLastError());
    }
    tile_kernel<T, NT, false><<<grid_of(blocks), block, 0, stream>>>(in, dirs, g, ws, y, omega, out);
    MG_CUDA_CHECK(cudaGetLastError());
    return;
  }
  const dim3 block(kWarp, kWarpsPerBlock);
  const unsigned grid = item_grid(g);
  if (g.C > 1) {
    chunk_states_kernel<T, NT, false, TRUNC><<<grid, block, 0, stream>>>(in, dirs, g, ws);
    MG_CUDA_CHECK(cudaGetLastError());
    carry_scan_kernel<T, false><<<grid_of(ceil_div(dirs.n * g.B * g.N * g.D, 256)), 256, 0, stream>>>(dirs, g, ws);
    MG_CUDA_CHECK(cudaGetLastError());
  }
  chunk_output_kernel<T, NT, TRUNC><<<grid, block, 0, stream>>>(in, dirs, g, ws, y, omega, out);
  MG_CUDA_CHECK(cudaGetLastError());
}

template <typename T, int NT, bool TRUNC>
void param_pass(const In<T>& in, const Dirs<T>& dirs, const Geo& g, const Plan& p, const T* gy, double* sums,
                void* ws, size_t state_bytes, cudaStream_t stream) {
  T* st = static_cast<T*>(ws);
  double* part = reinterpret_cast<double*>(static_cast<char*>(ws) + align256(state_bytes));
  if (g.C > 1) {
    const dim3 block(kWarp, kWarpsPerBlock);
    chunk_states_kernel<T, NT, true, TRUNC>
        <<<item_grid(g), block, 0, stream>>>(in, dirs, g, st);
    MG_CUDA_CHECK(cudaGetLastError());
    carry_scan_kernel<T, true><<<grid_of(ceil_div(dirs.n * g.B * g.N * g.D, 256)), 256, 0, stream>>>(dirs, g, st);
    MG_CUDA_CHECK(cudaGetLastError());
  }
  const int64_t WB = warps_per_param_block(p), CB = param_blocks_per_row(p);
  param_sums_kernel<T, NT, TRUNC><<<grid_of(g.B * CB * g.ndt), dim3(kWarp, (unsigned)WB), 0, stream>>>(in, dirs, g, st, gy,
                                                                                                part, CB);
  MG_CUDA_CHECK(cudaGetLastError());
  reduce_sums_kernel<T><<<grid_of(ceil_div(dirs.n * g.N * g.Dp, 256)), 256, 0, stream>>>(dirs, g, CB, part, sums);
  MG_CUDA_CHECK(cudaGetLastError());
}

// Calls f(nt, trunc) with the register group size for N and the truncation flag as types
// (std::integral_constant), so f can pass them on as template arguments.
template <typename T, typename F>
void dispatch(const EmaShape& s, F&& f) {
  using Small = std::integral_constant<int, 4>;
  using Large = std::integral_constant<int, kGroup<T>>;
  if (s.N <= 4) {
    if (s.truncated()) f(Small{}, std::true_type{});
    else               f(Small{}, std::false_type{});
  } else {
    if (s.truncated()) f(Large{}, std::true_type{});
    else               f(Large{}, std::false_type{});
  }
}

}  // namespace

template <typename T>
size_t forward_workspace_bytes(const EmaShape& s, int64_t chunk) {
  const int ndirs = s.ndirs;
  if (empty(s)) return 0;
  return states_bytes<T>(s, ndirs, scan_plan<T>(s, ndirs, chunk), 1);
}

template <typename T>
size_t backward_workspace_bytes(const EmaShape& s, int64_t chunk) {
  const int ndirs = s.ndirs;
  if (empty(s)) return 0;
  // The dx~ scan and then the parameter pass use the same memory, one after the other.
  return std::max(states_bytes<T>(s, ndirs, scan_plan<T>(s, ndirs, chunk), 1),
                  param_bytes<T>(s, ndirs, make_plan(s, kMaxParamChunk, chunk)));
}

template <typename T>
void forward(const EmaInput<T>& in, const EmaCoeffs<T>* dirs, const EmaShape& s, T* y, const T* omega, T* out,
             void* workspace, size_t workspace_bytes, cudaStream_t stream, int64_t chunk) {
  const int ndirs = s.ndirs;
  check_args(s, dirs, ndirs, forward_workspace_bytes<T>(s, chunk), workspace, workspace_bytes);
  MG_CHECK((omega == nullptr) == (out == nullptr), "ema_cuda", "the epilogue needs both omega and out");
  if (empty(s)) return;
  MG_CHECK(in.x != nullptr && y != nullptr, "ema_cuda", "forward: null x or y");
  const Dirs<T> dd = make_dirs(dirs, ndirs, false);
  const Plan p = scan_plan<T>(s, ndirs, chunk);
  const Geo g = make_geo(s, p);
  T* ws = static_cast<T*>(workspace);
  dispatch<T>(s, [&](auto nt, auto trunc) {
    scan<T, decltype(nt)::value, decltype(trunc)::value>(in, dd, g, p.tiled, ws, y, omega, out, stream);
  });
}

template <typename T>
void backward(const EmaInput<T>& in, const EmaCoeffs<T>* dirs, const EmaShape& s, const T* gy, T* dxt,
              double* sums, void* workspace, size_t workspace_bytes, cudaStream_t stream, int64_t chunk) {
  const int ndirs = s.ndirs;
  check_args(s, dirs, ndirs, backward_workspace_bytes<T>(s, chunk), workspace, workspace_bytes);
  if (empty(s)) {
    if (sums) MG_CUDA_CHECK(cudaMemsetAsync(sums, 0, (size_t)(4 * ndirs * s.N * s.Dp()) * sizeof(double), stream));
    return;
  }
  MG_CHECK(gy != nullptr, "ema_cuda", "backward: null gy");
  if (dxt) {  // dx~: the forward scan on gy with each direction's time order reversed
    const In<T> gin{gy, s.L * s.D, s.D, nullptr, 0, 0};
    const Dirs<T> flipped = make_dirs(dirs, ndirs, true);
    const Plan p = scan_plan<T>(s, ndirs, chunk);
    const Geo g = make_geo(s, p);
    T* ws = static_cast<T*>(workspace);
    dispatch<T>(s, [&](auto nt, auto trunc) {
      scan<T, decltype(nt)::value, decltype(trunc)::value>(gin, flipped, g, p.tiled, ws, dxt, nullptr, nullptr,
                                                           stream);
    });
  }
  if (sums) {  // parameter sums: the tangent sweep on x~ with gy
    MG_CHECK(in.x != nullptr, "ema_cuda", "backward: null x");
      const Dirs<T> dd = make_dirs(dirs, ndirs, false);
    const Plan p = make_plan(s, kMaxParamChunk, chunk);
    const Geo g = make_geo(s, p);
    const size_t sb = states_bytes<T>(s, ndirs, p, 3);
    dispatch<T>(s, [&](auto nt, auto trunc) {
      param_pass<T, decltype(nt)::value, decltype(trunc)::value>(in, dd, g, p, gy, sums, workspace, sb, stream);
    });
  }
}

namespace {

// ---------------------------------------------------------------- parameter tables
// One thread per entry (direction, n, column j < Dp); the formulas are ema_coeffs.h's.
template <typename T>
__global__ void __launch_bounds__(256)
make_coeffs_kernel(const T* __restrict__ delta, const T* __restrict__ alpha, const T* __restrict__ beta,
                   const T* __restrict__ gamma, int64_t D, int64_t N, int64_t Dp, int ndirs, double scale,
                   bool truncated, int64_t K, T* __restrict__ out) {
  // No grid-stride loop: with one, ptxas spills 8 bytes in the float64 kernel on sm_90.
  const int64_t NDp = N * Dp, i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= ndirs * NDp) return;
  const int64_t dir = i / NDp, r = i - dir * NDp, n = r / Dp, d = r - n * Dp;
  T* q = out + dir * 4 * NDp + r;
  if (d >= D) {
    q[0] = q[NDp] = q[2 * NDp] = q[3 * NDp] = T(0);
    return;
  }
  const int64_t e = (dir * D + d) * N + n;
  const EmaCoeffValue v =
      ema_coeff((double)delta[e], (double)alpha[e], (double)beta[e], (double)gamma[e], scale, truncated, K);
  q[0] = (T)v.q;
  q[NDp] = (T)v.a;
  q[2 * NDp] = (T)v.c;
  q[3 * NDp] = (T)v.Q;
}

// One thread per parameter entry e = (dir D + d) N + n.
template <typename T>
__global__ void __launch_bounds__(256)
chain_kernel(const T* __restrict__ delta, const T* __restrict__ alpha, const T* __restrict__ beta,
             const T* __restrict__ gamma, const double* __restrict__ sums, int64_t D, int64_t N, int64_t Dp, int ndirs,
             double scale, bool truncated, int64_t K, T* __restrict__ gdelta, T* __restrict__ galpha,
             T* __restrict__ gbeta, T* __restrict__ ggamma) {
  const int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= ndirs * D * N) return;
  const int64_t n = e % N, dd = e / N, dir = dd / D, d = dd - dir * D;
  auto sum = [&](int kind) { return sums[((kind * ndirs + dir) * N + n) * Dp + d]; };
  const EmaParamGrads g = ema_chain((double)delta[e], (double)alpha[e], (double)beta[e], (double)gamma[e], scale,
                                    truncated, K, sum(0), sum(1), sum(2), sum(3));
  gdelta[e] = (T)g.delta;
  galpha[e] = (T)g.alpha;
  gbeta[e] = (T)g.beta;
  ggamma[e] = (T)g.gamma;
}

// One thread per entry (the tables are small: R N Dp entries).
unsigned table_grid(int64_t n) {
  MG_CHECK((n + 255) / 256 <= INT32_MAX, "ema_cuda", "{} table entries do not fit one grid", n);
  return (unsigned)std::max<int64_t>((n + 255) / 256, 1);
}

}  // namespace

template <typename T>
void make_coeffs(const T* delta, const T* alpha, const T* beta, const T* gamma, const EmaShape& s, double scale,
                 T* coeffs, cudaStream_t stream) {
  MG_CHECK(delta && alpha && beta && gamma && coeffs, "ema_cuda", "make_coeffs: null pointer");
  const int64_t total = s.ndirs * s.N * s.Dp();
  if (total == 0) return;
  make_coeffs_kernel<T><<<table_grid(total), 256, 0, stream>>>(delta, alpha, beta, gamma, s.D, s.N, s.Dp(), s.ndirs,
                                                               scale, s.truncated(), s.kernel_len, coeffs);
  MG_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void chain_param_grads(const T* delta, const T* alpha, const T* beta, const T* gamma, const double* sums,
                       const EmaShape& s, double scale, T* gdelta, T* galpha, T* gbeta, T* ggamma,
                       cudaStream_t stream) {
  MG_CHECK(delta && alpha && beta && gamma && sums && gdelta && galpha && gbeta && ggamma, "ema_cuda",
           "chain_param_grads: null pointer");
  const int64_t total = s.E() * s.N;
  if (total == 0) return;
  chain_kernel<T><<<table_grid(total), 256, 0, stream>>>(delta, alpha, beta, gamma, sums, s.D, s.N, s.Dp(), s.ndirs,
                                                         scale, s.truncated(), s.kernel_len, gdelta, galpha, gbeta,
                                                         ggamma);
  MG_CUDA_CHECK(cudaGetLastError());
}

#define MG_EMA_CUDA_INSTANTIATE(T)                                                                              \
  template size_t forward_workspace_bytes<T>(const EmaShape&, int64_t);                                            \
  template size_t backward_workspace_bytes<T>(const EmaShape&, int64_t);                                           \
  template void forward<T>(const EmaInput<T>&, const EmaCoeffs<T>*, const EmaShape&, T*, const T*, T*, void*, size_t, \
                           cudaStream_t, int64_t);                                                              \
  template void backward<T>(const EmaInput<T>&, const EmaCoeffs<T>*, const EmaShape&, const T*, T*, double*, void*,  \
                            size_t, cudaStream_t, int64_t);                                                  \
  template void make_coeffs<T>(const T*, const T*, const T*, const T*, const EmaShape&, double, T*, cudaStream_t);  \
  template void chain_param_grads<T>(const T*, const T*, const T*, const T*, const double*, const EmaShape&, double, \
                                     T*, T*, T*, T*, cudaStream_t);
MG_EMA_CUDA_INSTANTIATE(float)
MG_EMA_CUDA_INSTANTIATE(double)
#undef MG_EMA_CUDA_INSTANTIATE

}  // namespace megagrad::ema_cuda
