// MG_HD marks a small function that both compilers build: the host compiler for the CPU code and
// nvcc for the kernels, so that a formula is written once (e.g. mega/ema/ema_coeffs.h) and the CPU
// path keeps its exact bits. Such headers stay C++17 (nvcc reads them too) and call math functions
// as ::exp, ::pow, ...: glibc's on the host (the same as std::exp), CUDA's on the device.
#pragma once

#ifndef MG_HD
#ifdef __CUDACC__
#define MG_HD __host__ __device__
#else
#define MG_HD
#endif
#endif
