// MG_HD marks a small function that both compilers build: nvcc for the kernels and the host
// compiler for the CPU code, so that a formula is written once (core/pointwise.h,
// mega/ema/ema_coeffs.h, ...) and both devices run it. MG_HD includes `inline` (and, for nvcc,
// __forceinline__). Headers that use it stay C++17 (nvcc compiles CUDA as C++17) and call math
// functions as ::exp, ::pow, ...: glibc's on the host (the same as std::exp), CUDA's on the device.
// The host compiler sees nothing of CUDA.
#pragma once

#ifndef MG_HD
#ifdef __CUDACC__
#define MG_HD __host__ __device__ __forceinline__
#else
#define MG_HD inline
#endif
#endif
