// exp that the compiler vectorises. std::exp is a libm call per element (glibc's vector variants
// need -ffast-math, which would also break the -inf/NaN handling the attention masks rely on), so
// loops over sigmoid/silu/exp would run one element at a time. This one is branch-free:
//   exp(x) = 2^k * e^r,  k = round(x / ln 2),  r = x - k ln 2 in [-ln2/2, ln2/2],
// e^r by its Taylor polynomial (degree 7 for float, 13 for double: below one ulp on that range),
// 2^k assembled in the exponent bits in two halves so that results down to the subnormals are right.
// Accuracy: within 2 ulp of std::exp over the whole range; +-inf and NaN as std::exp.
//
// One numeric policy for both devices: these functions are MG_HD (core/host_device.h), and the
// CUDA kernels call the same ones, so an op computes the same polynomial on the CPU and on a GPU.
// The results may still differ in the last bits where one compiler contracts a * b + c into an
// FMA and the other does not; both stay within the bounds stated here (tests/test_vec_math.cpp
// checks the host build, with and without FMA). C++17, so that nvcc reads it.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include "core/host_device.h"

namespace megagrad {

// std::bit_cast for C++17 and device code: a copy of the bits, which both compilers fold into a
// register move.
template <typename To, typename From>
MG_HD To bits_as(From x) {
  static_assert(sizeof(To) == sizeof(From), "bits_as: sizes differ");
  To y;
  std::memcpy(&y, &x, sizeof(To));
  return y;
}

// e^r by its polynomial, with x = k ln 2 + r, k = round(x / ln 2): the part of exp_fast that
// does not depend on how 2^k is formed. x must already be clamped (|x log2 e| < 2^22).
template <typename T>
MG_HD T exp_poly(T x, T& k) {
  constexpr bool f32 = sizeof(T) == 4;
  constexpr T kLog2e = T(1.4426950408889634074);
  constexpr T kLn2Hi = f32 ? T(0.693145751953125) : T(0.6931471803691238164902);
  constexpr T kLn2Lo = f32 ? T(1.428606765330187045e-06) : T(1.9082149292705877e-10);
  // Round to nearest by the magic-number trick (std::floor does not vectorise under the default
  // -ftrapping-math); exact since |x log2 e| < 2^22.
  constexpr T kMagic = f32 ? T(12582912.0) : T(6755399441055744.0);  // 1.5 * 2^23, 1.5 * 2^52
  k = (x * kLog2e + kMagic) - kMagic;
  T r = (x - k * kLn2Hi) - k * kLn2Lo;
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
  return p;
}

// The integer type of T's bits, and 2^k for an integer k that keeps it a normal number,
// assembled in the exponent bits.
template <typename T> using ExpInt = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
template <typename T>
MG_HD T exp2_int(ExpInt<T> k) {
  constexpr bool f32 = sizeof(T) == 4;
  constexpr int kMant = f32 ? 23 : 52;
  constexpr ExpInt<T> kBias = f32 ? 127 : 1023;
  return bits_as<T>((ExpInt<T>)((k + kBias) << kMant));
}

template <typename T>
MG_HD T exp_fast(T x) {
  constexpr bool f32 = sizeof(T) == 4;
  constexpr T kHi = f32 ? T(88.7228394) : T(709.782712893384);
  constexpr T kLo = f32 ? T(-103.972084) : T(-745.1332191019412);
  T xc = x > kHi ? kHi : (x < kLo ? kLo : x);
  T k;
  const T p = exp_poly(xc, k);
  // 2^k = 2^k1 * 2^k2 with k1 = floor(k/2): each half is a normal number even for k near the ends.
  const ExpInt<T> ki = (ExpInt<T>)k, k1 = ki >> 1;
  T y = p * exp2_int<T>(k1) * exp2_int<T>(ki - k1);
  y = x > kHi ? T(HUGE_VAL) : y;
  y = x < kLo ? T(0) : y;
  return x != x ? x : y;  // NaN stays NaN
}

// erf that the compiler vectorises (std::erf is a libm call per element: ~8 ns on the development
// VM, against ~0.8 ns (float) / ~2.3 ns (double) for this one in a loop). Branch-free: both pieces
// are computed and one is selected.
//   |x| < 1:  erf(x) = x + x P1(x^2), P1(t) ~ erf(sqrt t) / sqrt t - 1, a polynomial of degree 6
//             (float) / 11 (double). The leading x is exact and |P1| <= 0.16, so P1's rounding
//             errors reach the result scaled down.
//   |x| >= 1: erf(|x|) = 1 - e^{-x^2} Q(|x|), Q(x) = erfc(x) e^{x^2} (smooth, ~ 1/(x sqrt pi)):
//             float: a polynomial of degree 8 in x on [1, 4]; double: of degree 10 in
//             1/(1 + 0.4 x) on [1, 6]. Beyond 4 (float) / 6 (double) erfc is below half an ulp of
//             1: |x| is clamped there for Q, and the result rounds to exactly 1.
// The coefficients are weighted minimax fits (Lawson's algorithm in 50-digit arithmetic): P1 to a
// relative error of erf(x)/x below 1.2e-9 (float) / 7e-18 (double); Q so that the error it
// brings to erf stays below 2^-25 (float) / 2^-54 (double), i.e. relative to Q 2e-7 / 3.5e-16 at
// x = 1, growing as erfc falls.
// Accuracy (tests/test_vec_math.cpp): float within 1 ulp of the exact erf (checked on every float;
// 1.32 ulp when compiled without FMA), double within 1 ulp of std::erf (1.5 of the exact value);
// exactly odd (-0 stays -0), +-1 at +-inf, NaN as NaN.
//
// erf_fast_with_exp(x, e) takes e = exp_fast(-(x * x)) from the caller, for code that also needs
// erf's derivative 2/sqrt(pi) e^{-x^2} (gelu's and laplace's backward): one exp serves both.
template <typename T>
MG_HD T erf_fast_with_exp(T x, T e) {
  constexpr bool f32 = sizeof(T) == 4;
  const T t = x * x;
  T p;  // P1(t)
  if constexpr (f32) {
    p = T(7.85385325903140884430e-5);
    p = p * t + T(-8.01019117368656310150e-4);
    p = p * t + T(5.18832740667006546206e-3);
    p = p * t + T(-2.68538117884187445389e-2);
    p = p * t + T(1.12835851451034566969e-1);
    p = p * t + T(-3.76126258239238973928e-1);
    p = p * t + T(1.28379165726665803614e-1);
  } else {
    p = T(-7.77946452561269197974e-10);
    p = p * t + T(1.37109782055572089409e-8);
    p = p * t + T(-1.62063132344334778888e-7);
    p = p * t + T(1.64471315004399732663e-6);
    p = p * t + T(-1.49247122960590218819e-5);
    p = p * t + T(1.20552935765791748746e-4);
    p = p * t + T(-8.54832592930332527110e-4);
    p = p * t + T(5.22397760611823119054e-3);
    p = p * t + T(-2.68661706431114363429e-2);
    p = p * t + T(1.12837916709441845162e-1);
    p = p * t + T(-3.76126389031835195336e-1);
    p = p * t + T(1.28379167095512565654e-1);
  }
  const T small = x + x * p;  // keeps the sign, -0 included
  constexpr T kMax = f32 ? T(4) : T(6);
  T a = x < T(0) ? -x : x;
  a = a > kMax ? kMax : a;  // NaN stays NaN
  T q;  // Q(a)
  if constexpr (f32) {
    const T s = a - T(2.5);
    q = T(1.06842006939620401789e-4);
    q = q * s + T(2.25056425805966889566e-4);
    q = q * s + T(5.43307865533788631739e-4);
    q = q * s + T(-6.61128595360750606871e-4);
    q = q * s + T(2.30250641152064298119e-3);
    q = q * s + T(-8.13224462809764459666e-3);
    q = q * s + T(2.49146288124078242877e-2);
    q = q * s + T(-7.43421865294562439777e-2);
    q = q * s + T(2.10807605468039961687e-1);
  } else {
    const T s = T(1) / (T(1) + T(0.4) * a) - T(0.5042016806722689);
    q = T(-5.22713029125561635593e-2);
    q = q * s + T(6.77491337493867405321e-2);
    q = q * s + T(6.06351457779983141879e-2);
    q = q * s + T(-1.10120220283879796595e-1);
    q = q * s + T(-1.72374886332222249446e-1);
    q = q * s + T(1.23493412552093103339e-1);
    q = q * s + T(6.41400400010714098297e-1);
    q = q * s + T(1.01102220203770623689);
    q = q * s + T(1.01952890241112991035);
    q = q * s + T(7.51987581658176905507e-1);
    q = q * s + T(2.13948051657547544152e-1);
  }
  T big = T(1) - e * q;  // e is 0 or tiny beyond the clamp: the result rounds to 1 there too
  big = x < T(0) ? -big : big;
  return (x < T(1) && x > T(-1)) ? small : big;
}

template <typename T> MG_HD T erf_fast(T x) { return erf_fast_with_exp(x, exp_fast(-(x * x))); }

// 1 / (1 + e^-x) with e^-x from exp_fast's polynomial on -x clamped to where e^-x is a normal
// number: then one power of two scales it and no overflow selects are needed, 8 vector
// instructions fewer than exp_fast (sigmoid and silu are a large part of the elementwise work).
// The same bits as 1 / (1 + exp_fast(-x)) for |x| <= 87 (a power-of-two scaling is exact either way);
// beyond, sigmoid is 1 to the last bit or below 1e-38 (float), as is this.
template <typename T> MG_HD T sigmoid_fast(T x) {
  constexpr bool f32 = sizeof(T) == 4;
  constexpr T kHi = f32 ? T(88) : T(709), kLo = f32 ? T(-87) : T(-708);
  T m = -x;
  m = m > kHi ? kHi : (m < kLo ? kLo : m);  // NaN stays NaN
  T k;
  const T p = exp_poly(m, k);
  return T(1) / (T(1) + p * exp2_int<T>((ExpInt<T>)k));
}

}  // namespace megagrad
