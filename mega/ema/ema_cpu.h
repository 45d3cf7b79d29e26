// CPU kernels of the fused multi-dimensional damped EMA (derivation: mega/ema/ema.md).
//
// Legend
//   B  batch                 L  time steps               D  channels
//   N  EMA dims per channel  K  truncation (K >= L: none) W  channels per work item (one vector)
//   Dp D rounded up to a multiple of W (coefficient arrays are zero-padded to Dp)
//
// A work item is (b, a block of W channels). The time loop is sequential; every inner loop runs
// over the W channels of the block, so it vectorises (W = 16 floats or 8 doubles: one AVX-512
// register) and the N x W states stay in registers / L1.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>
#include "core/parallel.h"
#include "mega/ema/ema_types.h"

namespace megagrad::ema_cpu {

template <typename T> inline constexpr int64_t kWidth = 64 / sizeof(T);

// dst[w] = src[w] k for w < n, 0 for n <= w < W. Restrict-qualified: without it GCC unrolled the
// copy into 16 scalar multiplies (src and dst might overlap), which cost 15% of the forward at L = 100.
template <typename T>
inline void load_lanes(const T* __restrict src, T k, int64_t n, T* __restrict dst) {
  constexpr int64_t W = kWidth<T>;
  if (n == W) {  // a full block: one vector, no per-lane test
    for (int64_t w = 0; w < W; ++w) dst[w] = src[w] * k;
    return;
  }
  for (int64_t w = 0; w < W; ++w) dst[w] = w < n ? src[w] * k : T(0);
}

// dst[w] (+)= src[w] for w < n: a direction's (L, W) block row into a (B, L, D) row.
template <typename T>
inline void store_lanes(const T* __restrict src, int64_t n, bool add, T* __restrict dst) {
  if (add) for (int64_t w = 0; w < n; ++w) dst[w] += src[w];
  else     for (int64_t w = 0; w < n; ++w) dst[w] = src[w];
}

// x~[b, t, d0 + w] for w < W (zero beyond D), into out[W].
template <typename T>
inline void load_input(const EmaInput<T>& in, int64_t b, int64_t t, int64_t d0, int64_t D, T* out) {
  const T keep = in.mask ? T(1) - in.mask[b * in.mb + t * in.ml] : T(1);
  load_lanes(in.x + b * in.sb + t * in.sl + d0, keep, std::min<int64_t>(kWidth<T>, D - d0), out);
}

// Step s of a direction visits time t = s (forward) or L-1-s (reverse).
inline int64_t time_of(int dir, int64_t s, int64_t L) { return dir == 0 ? s : L - 1 - s; }

// ---------------------------------------------------------------- forward
// One work item's coefficients, read in place: each points at channel d0 of its (N, Dp) array,
// so dimension n of the block is at n * Dp (unit stride over the W channels: the inner loops
// vectorise; an earlier per-item copy into (N, W) arrays cost as much as the sweep at L = 100).
template <typename T>
struct BlockCoeffs {
  const T *q, *a, *c, *Q;
  BlockCoeffs(const EmaCoeffs<T>& cf, int64_t d0) : q(cf.q + d0), a(cf.a + d0), c(cf.c + d0), Q(cf.Q + d0) {}
};

// G dimensions n..n+G-1 of one work item over the whole sequence: h = q h + a (x~[t] - Q x~[t-K]),
// ys[t] += c h. Carried as u = h / a (the tangent sweep's u = dh/da): u = q u + (x~[t] - Q x~[t-K])
// and ys[t] += (c a) u, one multiply per dimension and step fewer than h itself (the sweep is
// bound by the vector unit's throughput). The time loop is outermost so the G states stay in
// registers; the coefficient pointers are at dimension n of the block and each is (G, W) with row
// stride ld. G independent recurrences per step keep the FMA units busy: one recurrence alone
// waits on its own latency at every step. The G terms are added to ys[t] in order of n, as one
// dimension at a time would.
template <typename T, int G>
inline void forward_sweep(int64_t L, int64_t K, int64_t ld, const T* __restrict q, const T* __restrict a,
                          const T* __restrict c, const T* __restrict Q, const T* __restrict xs, T* __restrict ys) {
  constexpr int64_t W = kWidth<T>;
  alignas(64) T u[G * W] = {}, ca[G * W];
  for (int g = 0; g < G; ++g)
    for (int64_t w = 0; w < W; ++w) ca[g * W + w] = c[g * ld + w] * a[g * ld + w];
  const int64_t lagged = K < L ? K : L;  // steps before the truncation term starts
  for (int64_t st = 0; st < lagged; ++st)
    for (int64_t w = 0; w < W; ++w) {
      const T x = xs[st * W + w];
      T y = ys[st * W + w];
      for (int g = 0; g < G; ++g) {
        u[g * W + w] = q[g * ld + w] * u[g * W + w] + x;
        y += ca[g * W + w] * u[g * W + w];
      }
      ys[st * W + w] = y;
    }
  for (int64_t st = lagged; st < L; ++st)
    for (int64_t w = 0; w < W; ++w) {
      const T x = xs[st * W + w], xl = xs[(st - K) * W + w];
      T y = ys[st * W + w];
      for (int g = 0; g < G; ++g) {
        u[g * W + w] = q[g * ld + w] * u[g * W + w] + (x - Q[g * ld + w] * xl);
        y += ca[g * W + w] * u[g * W + w];
      }
      ys[st * W + w] = y;
    }
}

// Runs sweep<G>(n) over the dimensions [0, N) in groups of 4, then the rest one by one.
template <typename Sweep>
inline void over_dims(int64_t N, Sweep&& sweep) {
  int64_t n = 0;
  for (; n + 4 <= N; n += 4) sweep.template operator()<4>(n);
  for (; n < N; ++n) sweep.template operator()<1>(n);
}

// y: (B, L, D) contiguous output. y[b,t,d] = sum over directions and n of c h[t]
// where h[t] = q h[t-1] + a (x~[t] - Q x~[t-K]).
template <typename T>
void forward(const EmaInput<T>& in, const EmaCoeffs<T>* dirs, const EmaShape& s, T* y) {
  const int ndirs = s.ndirs;
  constexpr int64_t W = kWidth<T>;
  const int64_t blocks = (s.D + W - 1) / W, Dp = s.Dp(), N = s.N;
  parallel_for(s.B * blocks, 1, [&](int64_t i0, int64_t i1) {
    std::vector<T> xs((size_t)(s.L * W)), ys((size_t)(s.L * W));  // (L, W) in direction order
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t b = item / blocks, d0 = (item % blocks) * W, wn = std::min(W, s.D - d0);
      for (int dir = 0; dir < ndirs; ++dir) {
        const BlockCoeffs<T> bc(dirs[dir], d0);
        for (int64_t st = 0; st < s.L; ++st) load_input(in, b, time_of(dir, st, s.L), d0, s.D, &xs[(size_t)(st * W)]);
        std::fill(ys.begin(), ys.end(), T(0));
        over_dims(N, [&]<int G>(int64_t n) {
          forward_sweep<T, G>(s.L, s.kernel_len, Dp, bc.q + n * Dp, bc.a + n * Dp, bc.c + n * Dp, bc.Q + n * Dp,
                              xs.data(), ys.data());
        });
        for (int64_t st = 0; st < s.L; ++st)
          store_lanes(&ys[(size_t)(st * W)], wn, dir > 0, y + (b * s.L + time_of(dir, st, s.L)) * s.D + d0);
      }
    }
  });
}

// ---------------------------------------------------------------- backward
// Forward-mode sweep of G dimensions n..n+G-1 over the whole sequence: carry u = dh/da,
// s = dh/dq, w = dh/dQ next to the state (h = a u) and sum gy times each. The time loop is
// outermost so the states and sums stay in registers; xs, gs are the block's x~ and gy laid out
// (L, W) in this direction's time order. Sums are flushed into double every kFlush steps to keep
// long float32 sums accurate; out is (G, 4, W): {dc, da/c, dq/c, dQ/c} for the W channels.
// Work saved: dc = sum gy h = a sum gy u is the da sum times a; s and w are carried divided by a
// (s/a = q s/a + u[t-1], w/a = q w/a - x~[t-K]: an FMA each instead of a multiply and an FMA), so
// their sums are multiplied by a once at the end; w and its sum stay 0 until the truncation term
// starts (step K), so they are skipped before it.
template <typename T, int G>
inline void tangent_sweep(int64_t L, int64_t K, int64_t ld, const T* __restrict q, const T* __restrict a,
                          const T* __restrict Q, const T* __restrict xs, const T* __restrict gs,
                          double* __restrict out) {
  constexpr int64_t W = kWidth<T>;
  constexpr int64_t kFlush = 64;
  alignas(64) T u[G * W] = {}, s[G * W] = {}, wq[G * W] = {}, pa[G * W] = {}, pq[G * W] = {}, pQ[G * W] = {};
  auto flush = [&] {
    for (int g = 0; g < G; ++g) {
      double* o = out + g * 4 * W;
      for (int64_t w = 0; w < W; ++w) {
        const int64_t i = g * W + w;
        o[W + w] += pa[i], o[2 * W + w] += pq[i], o[3 * W + w] += pQ[i];
        pa[i] = pq[i] = pQ[i] = T(0);
      }
    }
  };
  for (int64_t st = 0; st < L; ++st) {
    if (K < L && st >= K) {
      for (int64_t w = 0; w < W; ++w) {
        const T x = xs[st * W + w], xl = xs[(st - K) * W + w], gv = gs[st * W + w];
        for (int g = 0; g < G; ++g) {
          const int64_t i = g * W + w, j = g * ld + w;
          s[i] = q[j] * s[i] + u[i];                 // s[t]/a = q s[t-1]/a + u[t-1]  (h = a u)
          wq[i] = q[j] * wq[i] - xl;                 // w[t]/a = q w[t-1]/a - x~[t-K]
          u[i] = q[j] * u[i] + (x - Q[j] * xl);      // u[t] = q u[t-1] + z[t]
          pa[i] += gv * u[i], pq[i] += gv * s[i], pQ[i] += gv * wq[i];
        }
      }
    } else {
      for (int64_t w = 0; w < W; ++w) {
        const T x = xs[st * W + w], gv = gs[st * W + w];
        for (int g = 0; g < G; ++g) {
          const int64_t i = g * W + w, j = g * ld + w;
          s[i] = q[j] * s[i] + u[i];
          u[i] = q[j] * u[i] + x;
          pa[i] += gv * u[i], pq[i] += gv * s[i];
        }
      }
    }
    if ((st + 1) % kFlush == 0) flush();
  }
  flush();
  for (int g = 0; g < G; ++g)
    for (int64_t w = 0; w < W; ++w) {  // dc = a (da sum); the s and w sums back from s/a, w/a
      double* o = out + g * 4 * W;
      const double ag = a[g * ld + w];
      o[w] = ag * o[W + w];
      o[2 * W + w] *= ag;
      o[3 * W + w] *= ag;
    }
}

// Reverse-mode sweep of G dimensions n..n+G-1, backwards in this direction's time:
// mu[t] = q mu[t+1] + c (gy[t] - Q gy[t+K]); dxs[t] += a mu[t] (the gradient of x~[t]), the G terms
// added in order of n. Carried as a mu (as forward_sweep carries h / a): one multiply per
// dimension and step fewer. G independent recurrences per step, as in forward_sweep.
template <typename T, int G>
inline void adjoint_sweep(int64_t L, int64_t K, int64_t ld, const T* __restrict q, const T* __restrict a,
                          const T* __restrict c, const T* __restrict Q, const T* __restrict gs, T* __restrict dxs) {
  constexpr int64_t W = kWidth<T>;
  alignas(64) T amu[G * W] = {}, ac[G * W];
  for (int g = 0; g < G; ++g)
    for (int64_t w = 0; w < W; ++w) ac[g * W + w] = a[g * ld + w] * c[g * ld + w];
  const int64_t lead_end = K < L ? L - K : 0;  // steps st < lead_end see gy[st + K]
  for (int64_t st = L - 1; st >= lead_end; --st)
    for (int64_t w = 0; w < W; ++w) {
      const T gv = gs[st * W + w];
      T dx = dxs[st * W + w];
      for (int g = 0; g < G; ++g) {
        amu[g * W + w] = q[g * ld + w] * amu[g * W + w] + ac[g * W + w] * gv;
        dx += amu[g * W + w];
      }
      dxs[st * W + w] = dx;
    }
  for (int64_t st = lead_end - 1; st >= 0; --st)
    for (int64_t w = 0; w < W; ++w) {
      const T gv = gs[st * W + w], gk = gs[(st + K) * W + w];
      T dx = dxs[st * W + w];
      for (int g = 0; g < G; ++g) {
        amu[g * W + w] = q[g * ld + w] * amu[g * W + w] + ac[g * W + w] * (gv - Q[g * ld + w] * gk);
        dx += amu[g * W + w];
      }
      dxs[st * W + w] = dx;
    }
}

// The doubles of backward()'s scratch: the parameter sums of each batch element, (4, B, R, N, Dp).
inline int64_t backward_scratch_doubles(const EmaShape& s) { return 4 * s.B * s.ndirs * s.N * s.Dp(); }

// Whether backward() should run without scratch: on one thread (or inside a pool job, where
// parallel_for runs inline) nothing is lost by running the work items in order, and then each
// parameter sum is added over b directly, in the order the scratch's reduction uses (same bits).
// At config S the scratch is 2 MB of doubles written and read again: ~0.3 ms of a 24 ms pass.
inline bool backward_sums_in_place() { return get_num_threads() == 1 || in_parallel_region(); }

// gy: (B, L, D) contiguous gradient of y.
// dxt (optional): (B, L, D) contiguous output, the gradient of x~ (reverse sweep).
// sums (optional): (4, R, N, Dp) doubles, the parameter sums of the forward sweep, summed over the
//   batch: [0] dc = sum gy h, [1] da = sum gy u, [2] dq = sum gy s, [3] dQ = sum gy w (da, dq, dQ
//   times c later, in the op's chain; zero for d >= D). What ema_cuda::backward returns.
// Only what is asked for runs.
// scratch (with sums): backward_scratch_doubles(s) doubles, from the caller's cached allocator (a
//   fresh 2 MB vector per call cost page faults and a memset on the calling thread); or null: the
//   work items then run in order on the calling thread and add into sums directly
//   (backward_sums_in_place()).
template <typename T>
void backward(const EmaInput<T>& in, const EmaCoeffs<T>* dirs, const EmaShape& s, const T* gy, T* dxt,
              double* sums, double* scratch) {
  const int ndirs = s.ndirs;
  constexpr int64_t W = kWidth<T>;
  const int64_t blocks = (s.D + W - 1) / W, Dp = s.Dp(), N = s.N;
  // The sums per b first, each (B, R, N, Dp): each work item writes its own; summed over b below.
  // Four arrays rather than one (4, B, R, N, Dp): at power-of-two strides the four running sums
  // share cache sets, which made the backward measurably slower.
  // Every slot (w < W included, zero beyond D) is written once by its work item: no zeroing.
  // Without scratch, the four arrays are sums' own (R, N, Dp) planes, added into in b order.
  const bool in_place = sums && !scratch;
  const size_t per_b = (size_t)(ndirs * N * Dp), plane = !sums ? 0 : in_place ? per_b : (size_t)s.B * per_b;
  double* const acc = in_place ? sums : scratch;
  double *pc = acc, *pa = acc + plane, *pq = acc + 2 * plane, *pQ = acc + 3 * plane;
  if (in_place) std::fill(sums, sums + 4 * per_b, 0.0);
  auto gy_row = [&](int64_t b, int64_t t, int64_t d0, T* out) {
    load_lanes(gy + (b * s.L + t) * s.D + d0, T(1), std::min<int64_t>(W, s.D - d0), out);
  };
  auto run_items = [&](int64_t i0, int64_t i1) {
    // The block's x~, gy and dx~, each (L, W) in the direction's time order.
    std::vector<T> xs(sums ? (size_t)(s.L * W) : 0), gs((size_t)(s.L * W)), dxs(dxt ? (size_t)(s.L * W) : 0);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t b = item / blocks, d0 = (item % blocks) * W, wn = std::min(W, s.D - d0);
      for (int dir = 0; dir < ndirs; ++dir) {
        const BlockCoeffs<T> bc(dirs[dir], d0);

        if (sums) {  // forward sweep: parameter gradients, one dimension n at a time
          for (int64_t st = 0; st < s.L; ++st) {
            const int64_t t = time_of(dir, st, s.L);
            load_input(in, b, t, d0, s.D, &xs[(size_t)(st * W)]);
            gy_row(b, t, d0, &gs[(size_t)(st * W)]);
          }
          const size_t base = (size_t)(((in_place ? 0 : b * ndirs) + dir) * N * Dp);
          over_dims(N, [&]<int G>(int64_t n) {
            alignas(64) double out[G * 4 * W] = {};
            tangent_sweep<T, G>(s.L, s.kernel_len, Dp, bc.q + n * Dp, bc.a + n * Dp, bc.Q + n * Dp, xs.data(),
                                gs.data(), out);
            for (int g = 0; g < G; ++g) {
              const double* o = out + g * 4 * W;
              for (int64_t w = 0; w < W; ++w) {
                const size_t k = base + (size_t)((n + g) * Dp + d0 + w);
                const bool real = w < wn;
                // In place: added over b in order, as the reduction below adds them; else written once.
                auto put = [&](double& slot, double v) {
                  const double x = real ? v : 0.0;
                  slot = in_place ? slot + x : x;
                };
                put(pc[k], o[w]), put(pa[k], o[W + w]), put(pq[k], o[2 * W + w]), put(pQ[k], o[3 * W + w]);
              }
            }
          });
        }

        if (dxt) {  // reverse sweep: input gradient, one dimension n at a time
          if (!sums)
            for (int64_t st = 0; st < s.L; ++st) gy_row(b, time_of(dir, st, s.L), d0, &gs[(size_t)(st * W)]);
          std::fill(dxs.begin(), dxs.end(), T(0));
          over_dims(N, [&]<int G>(int64_t n) {
            adjoint_sweep<T, G>(s.L, s.kernel_len, Dp, bc.q + n * Dp, bc.a + n * Dp, bc.c + n * Dp,
                                bc.Q + n * Dp, gs.data(), dxs.data());
          });
          for (int64_t st = 0; st < s.L; ++st)
            store_lanes(&dxs[(size_t)(st * W)], wn, dir > 0, dxt + (b * s.L + time_of(dir, st, s.L)) * s.D + d0);
        }
      }
    }
  };
  if (in_place)
    run_items(0, s.B * blocks);
  else
    parallel_for(s.B * blocks, 1, run_items);
  if (sums && !in_place)  // over b in a fixed order (thread-count independent), the slots split over threads
    parallel_for((int64_t)(4 * per_b), std::max<int64_t>(1, kElementwiseGrain / s.B), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const double* part = scratch + (size_t)(i / (int64_t)per_b) * plane + (size_t)(i % (int64_t)per_b);
        double acc = 0;
        for (int64_t b = 0; b < s.B; ++b) acc += part[(size_t)b * per_b];
        sums[i] = acc;
      }
    });
}

}  // namespace megagrad::ema_cpu
