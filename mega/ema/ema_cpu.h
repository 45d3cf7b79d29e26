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
// One work item's coefficients, copied next to each other so the inner loops read them with unit
// stride and the compiler knows nothing aliases them: each is (N, W).
template <typename T>
struct BlockCoeffs {
  std::vector<T> q, a, c, Q;
  void load(const Coeffs<T>& cf, int64_t N, int64_t Dp, int64_t d0) {
    constexpr int64_t W = kWidth<T>;
    for (auto* v : {&q, &a, &c, &Q}) v->resize((size_t)(N * W));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t w = 0; w < W; ++w) {
        size_t i = (size_t)(n * W + w), j = (size_t)(n * Dp + d0 + w);
        q[i] = cf.q[j], a[i] = cf.a[j], c[i] = cf.c[j], Q[i] = cf.Q[j];
      }
  }
};

// One time step of one work item: h = q h + a (x - Q x_lag); acc = sum_n c h.
template <typename T>
inline void forward_step(int64_t N, const T* __restrict q, const T* __restrict a, const T* __restrict c,
                         const T* __restrict Q, T* __restrict h, const T* __restrict xt, const T* __restrict xl,
                         T* __restrict acc) {
  constexpr int64_t W = kWidth<T>;
  for (int64_t w = 0; w < W; ++w) acc[w] = T(0);
  for (int64_t n = 0; n < N; ++n, q += W, a += W, c += W, Q += W, h += W)
    for (int64_t w = 0; w < W; ++w) {
      h[w] = q[w] * h[w] + a[w] * (xt[w] - Q[w] * xl[w]);
      acc[w] += c[w] * h[w];
    }
}

// y: (B, L, D) contiguous output. y[b,t,d] = sum over directions and n of c h[t]
// where h[t] = q h[t-1] + a (x~[t] - Q x~[t-K]).
template <typename T>
void forward(const Input<T>& in, const Coeffs<T>* dirs, int ndirs, const Dims& s, T* y) {
  constexpr int64_t W = kWidth<T>;
  const int64_t blocks = (s.D + W - 1) / W, Dp = s.Dp(), N = s.N;
  parallel_for(s.B * blocks, 1, [&](int64_t i0, int64_t i1) {
    std::vector<T> h((size_t)(N * W));
    BlockCoeffs<T> bc;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t b = item / blocks, d0 = (item % blocks) * W, wn = std::min(W, s.D - d0);
      for (int dir = 0; dir < ndirs; ++dir) {
        bc.load(dirs[dir], N, Dp, d0);
        std::fill(h.begin(), h.end(), T(0));
        alignas(64) T xt[W], xl[W], acc[W];
        std::fill(xl, xl + W, T(0));
        for (int64_t st = 0; st < s.L; ++st) {
          const int64_t t = time_of(dir, st, s.L);
          in.load(b, t, d0, s.D, xt);
          if (s.truncated() && st >= s.K) in.load(b, time_of(dir, st - s.K, s.L), d0, s.D, xl);
          forward_step<T>(N, bc.q.data(), bc.a.data(), bc.c.data(), bc.Q.data(), h.data(), xt, xl, acc);
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

// Forward-mode step: carry u = dh/da, s = dh/dq, w = dh/dQ next to the state (h = a u) and
// add gy times each into the partial sums pc (dc), pa (da / c), pq (dq / c), pQ (dQ / c).
template <typename T>
inline void tangent_step(int64_t N, const T* __restrict q, const T* __restrict a, const T* __restrict Q,
                         T* __restrict u, T* __restrict s, T* __restrict wq, const T* __restrict xt,
                         const T* __restrict xl, const T* __restrict gt, T* __restrict pc, T* __restrict pa,
                         T* __restrict pq, T* __restrict pQ) {
  constexpr int64_t W = kWidth<T>;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t o = n * W;
    for (int64_t w = 0; w < W; ++w) {
      s[o + w] = q[o + w] * s[o + w] + a[o + w] * u[o + w];     // s[t] = q s[t-1] + h[t-1]
      wq[o + w] = q[o + w] * wq[o + w] - a[o + w] * xl[w];      // w[t] = q w[t-1] - a x~[t-K]
      u[o + w] = q[o + w] * u[o + w] + (xt[w] - Q[o + w] * xl[w]);  // u[t] = q u[t-1] + z[t]
      pc[o + w] += gt[w] * a[o + w] * u[o + w];
      pa[o + w] += gt[w] * u[o + w];
      pq[o + w] += gt[w] * s[o + w];
      pQ[o + w] += gt[w] * wq[o + w];
    }
  }
}

// Reverse-mode step: mu[t] = q mu[t+1] + c (gy[t] - Q gy[t+K]); acc = sum_n a mu[t] = dx~[t].
template <typename T>
inline void adjoint_step(int64_t N, const T* __restrict q, const T* __restrict a, const T* __restrict c,
                         const T* __restrict Q, T* __restrict mu, const T* __restrict gt, const T* __restrict gl,
                         T* __restrict acc) {
  constexpr int64_t W = kWidth<T>;
  for (int64_t w = 0; w < W; ++w) acc[w] = T(0);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t o = n * W;
    for (int64_t w = 0; w < W; ++w) {
      mu[o + w] = q[o + w] * mu[o + w] + c[o + w] * (gt[w] - Q[o + w] * gl[w]);
      acc[w] += a[o + w] * mu[o + w];
    }
  }
}

// gy: (B, L, D) contiguous gradient of y.
// dxt (optional): (B, L, D) contiguous output, the gradient of x~ (reverse sweep).
// sums (optional): the parameter sums (forward sweep). Only what is asked for runs.
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
    const size_t NW = (size_t)(N * W);
    std::vector<T> u(NW), sq(NW), wq(NW), mu(NW), pc(NW), pa(NW), pq(NW), pQ(NW);
    BlockCoeffs<T> bc;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t b = item / blocks, d0 = (item % blocks) * W, wn = std::min(W, s.D - d0);
      for (int dir = 0; dir < ndirs; ++dir) {
        bc.load(dirs[dir], N, Dp, d0);
        alignas(64) T xt[W], xl[W], gt[W], gl[W], acc[W];
        std::fill(xl, xl + W, T(0));
        std::fill(gl, gl + W, T(0));

        if (sums) {  // forward sweep: parameter gradients
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
            gy_row(b, t, d0, gt);
            tangent_step<T>(N, bc.q.data(), bc.a.data(), bc.Q.data(), u.data(), sq.data(), wq.data(), xt, xl, gt,
                            pc.data(), pa.data(), pq.data(), pQ.data());
            if ((st + 1) % kFlush == 0) flush();
          }
          flush();
        }

        if (dxt) {  // reverse sweep: input gradient
          std::fill(mu.begin(), mu.end(), T(0));
          for (int64_t st = s.L - 1; st >= 0; --st) {
            const int64_t t = time_of(dir, st, s.L);
            gy_row(b, t, d0, gt);
            if (s.truncated()) {
              if (st + s.K < s.L) gy_row(b, time_of(dir, st + s.K, s.L), d0, gl);
              else std::fill(gl, gl + W, T(0));
            }
            adjoint_step<T>(N, bc.q.data(), bc.a.data(), bc.c.data(), bc.Q.data(), mu.data(), gt, gl, acc);
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
