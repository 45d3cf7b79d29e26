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

// x~[b, t, d0 + w] for w < W (zero beyond D), into out[W].
template <typename T>
inline void load_input(const EmaInput<T>& in, int64_t b, int64_t t, int64_t d0, int64_t D, T* out) {
  constexpr int64_t W = kWidth<T>;
  const T* row = in.x + b * in.sb + t * in.sl + d0;
  T keep = in.mask ? T(1) - in.mask[b * in.mb + t * in.ml] : T(1);
  int64_t n = std::min<int64_t>(W, D - d0);
  for (int64_t w = 0; w < W; ++w) out[w] = w < n ? row[w] * keep : T(0);
}

// Step s of a direction visits time t = s (forward) or L-1-s (reverse).
inline int64_t time_of(int dir, int64_t s, int64_t L) { return dir == 0 ? s : L - 1 - s; }

// ---------------------------------------------------------------- forward
// One work item's coefficients, copied next to each other so the inner loops read them with unit
// stride and the compiler knows nothing aliases them: each is (N, W).
template <typename T>
struct BlockCoeffs {
  std::vector<T> q, a, c, Q;
  void load(const EmaCoeffs<T>& cf, int64_t N, int64_t Dp, int64_t d0) {
    constexpr int64_t W = kWidth<T>;
    for (auto* v : {&q, &a, &c, &Q}) v->resize((size_t)(N * W));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t w = 0; w < W; ++w) {
        size_t i = (size_t)(n * W + w), j = (size_t)(n * Dp + d0 + w);
        q[i] = cf.q[j], a[i] = cf.a[j], c[i] = cf.c[j], Q[i] = cf.Q[j];
      }
  }
};

// One dimension n of one work item over the whole sequence: h = q h + a (x~[t] - Q x~[t-K]),
// ys[t] += c h. The time loop is innermost so h stays in a register; xs and ys are (L, W) in
// this direction's time order.
template <typename T>
inline void forward_sweep(int64_t L, int64_t K, const T* __restrict q, const T* __restrict a,
                          const T* __restrict c, const T* __restrict Q, const T* __restrict xs, T* __restrict ys) {
  constexpr int64_t W = kWidth<T>;
  alignas(64) T h[W] = {};
  const int64_t lagged = K < L ? K : L;  // steps before the truncation term starts
  for (int64_t st = 0; st < lagged; ++st)
    for (int64_t w = 0; w < W; ++w) {
      h[w] = q[w] * h[w] + a[w] * xs[st * W + w];
      ys[st * W + w] += c[w] * h[w];
    }
  for (int64_t st = lagged; st < L; ++st)
    for (int64_t w = 0; w < W; ++w) {
      h[w] = q[w] * h[w] + a[w] * (xs[st * W + w] - Q[w] * xs[(st - K) * W + w]);
      ys[st * W + w] += c[w] * h[w];
    }
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
    BlockCoeffs<T> bc;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t b = item / blocks, d0 = (item % blocks) * W, wn = std::min(W, s.D - d0);
      for (int dir = 0; dir < ndirs; ++dir) {
        bc.load(dirs[dir], N, Dp, d0);
        for (int64_t st = 0; st < s.L; ++st) load_input(in, b, time_of(dir, st, s.L), d0, s.D, &xs[(size_t)(st * W)]);
        std::fill(ys.begin(), ys.end(), T(0));
        for (int64_t n = 0; n < N; ++n)
          forward_sweep<T>(s.L, s.kernel_len, &bc.q[(size_t)(n * W)], &bc.a[(size_t)(n * W)], &bc.c[(size_t)(n * W)],
                           &bc.Q[(size_t)(n * W)], xs.data(), ys.data());
        for (int64_t st = 0; st < s.L; ++st) {
          T* yr = y + (b * s.L + time_of(dir, st, s.L)) * s.D + d0;
          const T* src = &ys[(size_t)(st * W)];
          if (dir == 0) for (int64_t w = 0; w < wn; ++w) yr[w] = src[w];
          else          for (int64_t w = 0; w < wn; ++w) yr[w] += src[w];
        }
      }
    }
  });
}

// ---------------------------------------------------------------- backward
// Forward-mode sweep of one dimension n over the whole sequence: carry u = dh/da,
// s = dh/dq, w = dh/dQ next to the state (h = a u) and sum gy times each. The time loop is
// innermost so the three states and four sums stay in registers; xs, gs are the block's x~ and
// gy laid out (L, W) in this direction's time order. Sums are flushed into double every kFlush
// steps to keep long float32 sums accurate; out = {dc, da/c, dq/c, dQ/c} for the W channels.
template <typename T>
inline void tangent_sweep(int64_t L, int64_t K, const T* __restrict q, const T* __restrict a, const T* __restrict Q,
                          const T* __restrict xs, const T* __restrict gs, double* __restrict out) {
  constexpr int64_t W = kWidth<T>;
  constexpr int64_t kFlush = 64;
  alignas(64) T u[W] = {}, s[W] = {}, wq[W] = {}, pc[W] = {}, pa[W] = {}, pq[W] = {}, pQ[W] = {};
  auto flush = [&] {
    for (int64_t w = 0; w < W; ++w) {
      out[w] += pc[w], out[W + w] += pa[w], out[2 * W + w] += pq[w], out[3 * W + w] += pQ[w];
      pc[w] = pa[w] = pq[w] = pQ[w] = T(0);
    }
  };
  for (int64_t st = 0; st < L; ++st) {
    const T* xt = xs + st * W;
    const T* gt = gs + st * W;
    if (K < L && st >= K) {
      const T* xl = xs + (st - K) * W;
      for (int64_t w = 0; w < W; ++w) {
        s[w] = q[w] * s[w] + a[w] * u[w];            // s[t] = q s[t-1] + h[t-1]
        wq[w] = q[w] * wq[w] - a[w] * xl[w];         // w[t] = q w[t-1] - a x~[t-K]
        u[w] = q[w] * u[w] + (xt[w] - Q[w] * xl[w]); // u[t] = q u[t-1] + z[t]
        pc[w] += gt[w] * a[w] * u[w], pa[w] += gt[w] * u[w], pq[w] += gt[w] * s[w], pQ[w] += gt[w] * wq[w];
      }
    } else {
      for (int64_t w = 0; w < W; ++w) {
        s[w] = q[w] * s[w] + a[w] * u[w];
        wq[w] = q[w] * wq[w];
        u[w] = q[w] * u[w] + xt[w];
        pc[w] += gt[w] * a[w] * u[w], pa[w] += gt[w] * u[w], pq[w] += gt[w] * s[w], pQ[w] += gt[w] * wq[w];
      }
    }
    if ((st + 1) % kFlush == 0) flush();
  }
  flush();
}

// Reverse-mode sweep of one dimension n, backwards in this direction's time:
// mu[t] = q mu[t+1] + c (gy[t] - Q gy[t+K]); dxs[t] += a mu[t] (the gradient of x~[t]).
template <typename T>
inline void adjoint_sweep(int64_t L, int64_t K, const T* __restrict q, const T* __restrict a,
                          const T* __restrict c, const T* __restrict Q, const T* __restrict gs, T* __restrict dxs) {
  constexpr int64_t W = kWidth<T>;
  alignas(64) T mu[W] = {};
  const int64_t lead_end = K < L ? L - K : 0;  // steps st < lead_end see gy[st + K]
  for (int64_t st = L - 1; st >= lead_end; --st)
    for (int64_t w = 0; w < W; ++w) {
      mu[w] = q[w] * mu[w] + c[w] * gs[st * W + w];
      dxs[st * W + w] += a[w] * mu[w];
    }
  for (int64_t st = lead_end - 1; st >= 0; --st)
    for (int64_t w = 0; w < W; ++w) {
      mu[w] = q[w] * mu[w] + c[w] * (gs[st * W + w] - Q[w] * gs[(st + K) * W + w]);
      dxs[st * W + w] += a[w] * mu[w];
    }
}

// gy: (B, L, D) contiguous gradient of y.
// dxt (optional): (B, L, D) contiguous output, the gradient of x~ (reverse sweep).
// sums (optional): (4, R, N, Dp) doubles, the parameter sums of the forward sweep, summed over the
//   batch: [0] dc = sum gy h, [1] da = sum gy u, [2] dq = sum gy s, [3] dQ = sum gy w (da, dq, dQ
//   times c later, in the op's chain; zero for d >= D). What ema_cuda::backward returns.
// Only what is asked for runs.
template <typename T>
void backward(const EmaInput<T>& in, const EmaCoeffs<T>* dirs, const EmaShape& s, const T* gy, T* dxt,
              double* sums) {
  const int ndirs = s.ndirs;
  constexpr int64_t W = kWidth<T>;
  const int64_t blocks = (s.D + W - 1) / W, Dp = s.Dp(), N = s.N;
  // The sums per b first, each (B, R, N, Dp): each work item writes its own; summed over b below.
  // Four arrays rather than one (4, B, R, N, Dp): at power-of-two strides the four running sums
  // share cache sets, which made the backward measurably slower.
  const size_t per_b = (size_t)(ndirs * N * Dp), plane = sums ? (size_t)s.B * per_b : 0;
  std::vector<double> pc(plane, 0.0), pa(plane, 0.0), pq(plane, 0.0), pQ(plane, 0.0);
  auto gy_row = [&](int64_t b, int64_t t, int64_t d0, T* out) {
    const T* row = gy + (b * s.L + t) * s.D + d0;
    int64_t n = std::min<int64_t>(W, s.D - d0);
    for (int64_t w = 0; w < W; ++w) out[w] = w < n ? row[w] : T(0);
  };
  parallel_for(s.B * blocks, 1, [&](int64_t i0, int64_t i1) {
    // The block's x~, gy and dx~, each (L, W) in the direction's time order.
    std::vector<T> xs(sums ? (size_t)(s.L * W) : 0), gs((size_t)(s.L * W)), dxs(dxt ? (size_t)(s.L * W) : 0);
    BlockCoeffs<T> bc;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t b = item / blocks, d0 = (item % blocks) * W, wn = std::min(W, s.D - d0);
      for (int dir = 0; dir < ndirs; ++dir) {
        bc.load(dirs[dir], N, Dp, d0);

        if (sums) {  // forward sweep: parameter gradients, one dimension n at a time
          for (int64_t st = 0; st < s.L; ++st) {
            const int64_t t = time_of(dir, st, s.L);
            load_input(in, b, t, d0, s.D, &xs[(size_t)(st * W)]);
            gy_row(b, t, d0, &gs[(size_t)(st * W)]);
          }
          const size_t base = (size_t)(((b * ndirs) + dir) * N * Dp);
          for (int64_t n = 0; n < N; ++n) {
            alignas(64) double out[4 * W] = {};
            tangent_sweep<T>(s.L, s.kernel_len, &bc.q[(size_t)(n * W)], &bc.a[(size_t)(n * W)], &bc.Q[(size_t)(n * W)],
                             xs.data(), gs.data(), out);
            for (int64_t w = 0; w < wn; ++w) {
              size_t k = base + (size_t)(n * Dp + d0 + w);
              pc[k] += out[w], pa[k] += out[W + w], pq[k] += out[2 * W + w], pQ[k] += out[3 * W + w];
            }
          }
        }

        if (dxt) {  // reverse sweep: input gradient, one dimension n at a time
          if (!sums)
            for (int64_t st = 0; st < s.L; ++st) gy_row(b, time_of(dir, st, s.L), d0, &gs[(size_t)(st * W)]);
          std::fill(dxs.begin(), dxs.end(), T(0));
          for (int64_t n = 0; n < N; ++n)
            adjoint_sweep<T>(s.L, s.kernel_len, &bc.q[(size_t)(n * W)], &bc.a[(size_t)(n * W)], &bc.c[(size_t)(n * W)],
                             &bc.Q[(size_t)(n * W)], gs.data(), dxs.data());
          for (int64_t st = 0; st < s.L; ++st) {
            T* dr = dxt + (b * s.L + time_of(dir, st, s.L)) * s.D + d0;
            const T* src = &dxs[(size_t)(st * W)];
            if (dir == 0) for (int64_t w = 0; w < wn; ++w) dr[w] = src[w];
            else          for (int64_t w = 0; w < wn; ++w) dr[w] += src[w];
          }
        }
      }
    }
  });
  if (sums) {  // over b in a fixed order: thread-count independent
    const std::vector<double>* parts[4] = {&pc, &pa, &pq, &pQ};
    for (size_t kind = 0; kind < 4; ++kind)
      for (size_t i = 0; i < per_b; ++i) {
        double acc = 0;
        for (int64_t b = 0; b < s.B; ++b) acc += (*parts[kind])[(size_t)b * per_b + i];
        sums[kind * per_b + i] = acc;
      }
  }
}

}  // namespace megagrad::ema_cpu
