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

namespace megagrad::ema_cpu {

template <typename T> inline constexpr int64_t kWidth = 64 / sizeof(T);

// The coefficients of one direction, laid out (N, Dp) so the channel index is innermost.
template <typename T>
struct Coeffs {
  std::vector<T> q, a, c, Q;  // each (N, Dp); Q = q^K, or 0 without truncation
};

struct Dims {
  int64_t B, L, D, N, K;  // K = min(truncation, L); K == L means no truncation
  int64_t Dp() const { return (D + 63) / 64 * 64; }  // a multiple of every W
  bool truncated() const { return K < L; }
};

// Strided (B, L, D) input with unit channel stride, and an optional (B, L) mask (1 = pad).
template <typename T>
struct Input {
  const T* x;
  int64_t sb, sl;   // x strides of b and t
  const T* mask;    // null: no padding
  int64_t mb, ml;   // mask strides of b and t
  // x~[b, t, d0 + w] for w < W (zero beyond D), into out[W].
  void load(int64_t b, int64_t t, int64_t d0, int64_t D, T* out) const {
    constexpr int64_t W = kWidth<T>;
    const T* row = x + b * sb + t * sl + d0;
    T keep = mask ? T(1) - mask[b * mb + t * ml] : T(1);
    int64_t n = std::min<int64_t>(W, D - d0);
    for (int64_t w = 0; w < W; ++w) out[w] = w < n ? row[w] * keep : T(0);
  }
};

// Step s of a direction visits time t = s (forward) or L-1-s (reverse).
inline int64_t time_of(int dir, int64_t s, int64_t L) { return dir == 0 ? s : L - 1 - s; }

// ---------------------------------------------------------------- forward
// y: (B, L, D) contiguous output. y[b,t,d] = sum over directions and n of c h[t]
// where h[t] = q h[t-1] + a (x~[t] - Q x~[t-K]).
template <typename T>
void forward(const Input<T>& in, const Coeffs<T>* dirs, int ndirs, const Dims& s, T* y) {
  constexpr int64_t W = kWidth<T>;
  const int64_t blocks = (s.D + W - 1) / W, Dp = s.Dp(), N = s.N;
  parallel_for(s.B * blocks, 1, [&](int64_t i0, int64_t i1) {
    std::vector<T> h((size_t)(N * W));
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t b = item / blocks, d0 = (item % blocks) * W, wn = std::min(W, s.D - d0);
      for (int dir = 0; dir < ndirs; ++dir) {
        const Coeffs<T>& cf = dirs[dir];
        std::fill(h.begin(), h.end(), T(0));
        for (int64_t st = 0; st < s.L; ++st) {
          const int64_t t = time_of(dir, st, s.L);
          alignas(64) T xt[W], xl[W], acc[W];
          in.load(b, t, d0, s.D, xt);
          if (s.truncated() && st >= s.K) in.load(b, time_of(dir, st - s.K, s.L), d0, s.D, xl);
          else std::fill(xl, xl + W, T(0));
          std::fill(acc, acc + W, T(0));
          for (int64_t n = 0; n < N; ++n) {
            const T *q = &cf.q[n * Dp + d0], *a = &cf.a[n * Dp + d0], *c = &cf.c[n * Dp + d0],
                    *Q = &cf.Q[n * Dp + d0];
            T* hn = &h[n * W];
            for (int64_t w = 0; w < W; ++w) {
              hn[w] = q[w] * hn[w] + a[w] * (xt[w] - Q[w] * xl[w]);
              acc[w] += c[w] * hn[w];
            }
          }
          T* yr = y + (b * s.L + t) * s.D + d0;
          if (dir == 0) for (int64_t w = 0; w < wn; ++w) yr[w] = acc[w];
          else          for (int64_t w = 0; w < wn; ++w) yr[w] += acc[w];
        }
      }
    }
  });
}

// ---------------------------------------------------------------- backward
// Per-(b, direction) sums of the parameter gradients before the chain to the official
// parameters: dc = sum gy h, da = sum gy u (times c later), dq = sum gy s, dQ = sum gy w.
struct ParamSums {
  std::vector<double> dc, da, dq, dQ;  // each (B, ndirs, N, Dp)
};

// gy: (B, L, D) contiguous gradient of y.
// dxt (optional): (B, L, D) contiguous output, the gradient of x~ (reverse sweep, mu states).
// sums (optional): the parameter sums (forward sweep, u/s/w states). Only what is asked for runs.
template <typename T>
void backward(const Input<T>& in, const Coeffs<T>* dirs, int ndirs, const Dims& s, const T* gy,
              T* dxt, ParamSums* sums) {
  constexpr int64_t W = kWidth<T>;
  constexpr int64_t kFlush = 64;  // steps summed in T before adding into double
  const int64_t blocks = (s.D + W - 1) / W, Dp = s.Dp(), N = s.N;
  if (sums) {
    size_t n = (size_t)(s.B * ndirs * N * Dp);
    sums->dc.assign(n, 0.0), sums->da.assign(n, 0.0), sums->dq.assign(n, 0.0), sums->dQ.assign(n, 0.0);
  }
  auto gy_row = [&](int64_t b, int64_t t, int64_t d0, T* out) {
    const T* row = gy + (b * s.L + t) * s.D + d0;
    int64_t n = std::min<int64_t>(W, s.D - d0);
    for (int64_t w = 0; w < W; ++w) out[w] = w < n ? row[w] : T(0);
  };
  parallel_for(s.B * blocks, 1, [&](int64_t i0, int64_t i1) {
    std::vector<T> u((size_t)(N * W)), sq((size_t)(N * W)), wq((size_t)(N * W)), mu((size_t)(N * W));
    std::vector<T> pc((size_t)(N * W)), pa((size_t)(N * W)), pq((size_t)(N * W)), pQ((size_t)(N * W));
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t b = item / blocks, d0 = (item % blocks) * W, wn = std::min(W, s.D - d0);
      for (int dir = 0; dir < ndirs; ++dir) {
        const Coeffs<T>& cf = dirs[dir];
        alignas(64) T xt[W], xl[W], gt[W], gl[W], acc[W];

        // Forward sweep (forward-mode): carry u = dh/da, s = dh/dq, w = dh/dQ next to the
        // state and sum gy times each; h itself is a * u.
        if (sums) {
          for (auto* v : {&u, &sq, &wq, &pc, &pa, &pq, &pQ}) std::fill(v->begin(), v->end(), T(0));
          const size_t base = (size_t)(((b * ndirs) + dir) * N * Dp);
          auto flush = [&] {
            for (int64_t n = 0; n < N; ++n)
              for (int64_t w = 0; w < wn; ++w) {
                size_t k = base + (size_t)(n * Dp + d0 + w), j = (size_t)(n * W + w);
                sums->dc[k] += pc[j], sums->da[k] += pa[j], sums->dq[k] += pq[j], sums->dQ[k] += pQ[j];
                pc[j] = pa[j] = pq[j] = pQ[j] = T(0);
              }
          };
          for (int64_t st = 0; st < s.L; ++st) {
            const int64_t t = time_of(dir, st, s.L);
            in.load(b, t, d0, s.D, xt);
            if (s.truncated() && st >= s.K) in.load(b, time_of(dir, st - s.K, s.L), d0, s.D, xl);
            else std::fill(xl, xl + W, T(0));
            gy_row(b, t, d0, gt);
            for (int64_t n = 0; n < N; ++n) {
              const T *q = &cf.q[n * Dp + d0], *a = &cf.a[n * Dp + d0], *Q = &cf.Q[n * Dp + d0];
              T *un = &u[n * W], *sn = &sq[n * W], *wn_ = &wq[n * W];
              T *c1 = &pc[n * W], *c2 = &pa[n * W], *c3 = &pq[n * W], *c4 = &pQ[n * W];
              for (int64_t w = 0; w < W; ++w) {
                sn[w] = q[w] * sn[w] + a[w] * un[w];           // s[t] = q s[t-1] + h[t-1]
                wn_[w] = q[w] * wn_[w] - a[w] * xl[w];         // w[t] = q w[t-1] - a x~[t-K]
                un[w] = q[w] * un[w] + (xt[w] - Q[w] * xl[w]); // u[t] = q u[t-1] + z[t]
                c1[w] += gt[w] * a[w] * un[w];
                c2[w] += gt[w] * un[w];
                c3[w] += gt[w] * sn[w];
                c4[w] += gt[w] * wn_[w];
              }
            }
            if ((st + 1) % kFlush == 0) flush();
          }
          flush();
        }

        // Reverse sweep (reverse-mode): mu[t] = q mu[t+1] + c (gy[t] - Q gy[t+K]);
        // dx~[t] = sum_n a mu[t].
        if (dxt) {
          std::fill(mu.begin(), mu.end(), T(0));
          for (int64_t st = s.L - 1; st >= 0; --st) {
            const int64_t t = time_of(dir, st, s.L);
            gy_row(b, t, d0, gt);
            if (s.truncated() && st + s.K < s.L) gy_row(b, time_of(dir, st + s.K, s.L), d0, gl);
            else std::fill(gl, gl + W, T(0));
            std::fill(acc, acc + W, T(0));
            for (int64_t n = 0; n < N; ++n) {
              const T *q = &cf.q[n * Dp + d0], *a = &cf.a[n * Dp + d0], *c = &cf.c[n * Dp + d0],
                      *Q = &cf.Q[n * Dp + d0];
              T* m = &mu[n * W];
              for (int64_t w = 0; w < W; ++w) {
                m[w] = q[w] * m[w] + c[w] * (gt[w] - Q[w] * gl[w]);
                acc[w] += a[w] * m[w];
              }
            }
            T* dr = dxt + (b * s.L + t) * s.D + d0;
            if (dir == 0) for (int64_t w = 0; w < wn; ++w) dr[w] = acc[w];
            else          for (int64_t w = 0; w < wn; ++w) dr[w] += acc[w];
          }
        }
      }
    }
  });
}

}  // namespace megagrad::ema_cpu
