// exp that the compiler vectorises. std::exp is a libm call per element (glibc's vector variants
// need -ffast-math, which would also break the -inf/NaN handling the attention masks rely on), so
// loops over sigmoid/silu/exp would run one element at a time. This one is branch-free:
//   exp(x) = 2^k * e^r,  k = round(x / ln 2),  r = x - k ln 2 in [-ln2/2, ln2/2],
// e^r by its Taylor polynomial (degree 7 for float, 13 for double: below one ulp on that range),
// 2^k assembled in the exponent bits in two halves so that results down to the subnormals are right.
// Accuracy: within 2 ulp of std::exp over the whole range; +-inf and NaN as std::exp.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace megagrad {

template <typename T>
inline T exp_fast(T x) {
  constexpr bool f32 = sizeof(T) == 4;
  constexpr T kLog2e = T(1.4426950408889634074);
  constexpr T kLn2Hi = f32 ? T(0.693145751953125) : T(0.6931471803691238164902);
  constexpr T kLn2Lo = f32 ? T(1.428606765330187045e-06) : T(1.9082149292705877e-10);
  constexpr T kHi = f32 ? T(88.7228394) : T(709.782712893384);
  constexpr T kLo = f32 ? T(-103.972084) : T(-745.1332191019412);
  T xc = x > kHi ? kHi : (x < kLo ? kLo : x);
  // Round to nearest by the magic-number trick (std::floor does not vectorise under the default
  // -ftrapping-math); exact since |x log2 e| < 2^22.
  constexpr T kMagic = f32 ? T(12582912.0) : T(6755399441055744.0);  // 1.5 * 2^23, 1.5 * 2^52
  T k = (xc * kLog2e + kMagic) - kMagic;
  T r = (xc - k * kLn2Hi) - k * kLn2Lo;
  T p;
  if constexpr (f32) {
    p = T(1.0 / 5040);
    p = p * r + T(1.0 / 720);
    p = p * r + T(1.0 / 120);
    p = p * r + T(1.0 / 24);
    p = p * r + T(1.0 / 6);
    p = p * r + T(0.5);
    p = p * r + T(1);
    p = p * r + T(1);
  } else {
    p = T(1.0 / 6227020800.0);
    p = p * r + T(1.0 / 479001600.0);
    p = p * r + T(1.0 / 39916800.0);
    p = p * r + T(1.0 / 3628800.0);
    p = p * r + T(1.0 / 362880.0);
    p = p * r + T(1.0 / 40320.0);
    p = p * r + T(1.0 / 5040.0);
    p = p * r + T(1.0 / 720.0);
    p = p * r + T(1.0 / 120.0);
    p = p * r + T(1.0 / 24.0);
    p = p * r + T(1.0 / 6.0);
    p = p * r + T(0.5);
    p = p * r + T(1);
    p = p * r + T(1);
  }
  // 2^k = 2^k1 * 2^k2 with k1 = floor(k/2): each half is a normal number even for k near the ends.
  using I = std::conditional_t<f32, int32_t, int64_t>;
  constexpr int kMant = f32 ? 23 : 52;
  constexpr I kBias = f32 ? 127 : 1023;
  I ki = (I)k;
  I k1 = ki >> 1, k2 = ki - k1;
  T s1 = std::bit_cast<T>((I)((k1 + kBias) << kMant));
  T s2 = std::bit_cast<T>((I)((k2 + kBias) << kMant));
  T y = p * s1 * s2;
  y = x > kHi ? T(INFINITY) : y;
  y = x < kLo ? T(0) : y;
  return x != x ? x : y;  // NaN stays NaN
}

template <typename T> inline T sigmoid_fast(T x) { return T(1) / (T(1) + exp_fast(-x)); }

}  // namespace megagrad
