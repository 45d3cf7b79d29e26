// MG_HD marks a function that both compilers build: nvcc for the GPU and the host compiler for the
// CPU. Headers that use it are C++17 (nvcc here compiles CUDA as C++17). The host compiler sees
// nothing of CUDA: MG_HD is empty there.
#pragma once

#ifndef MG_HD
#ifdef __CUDACC__
#define MG_HD __host__ __device__ __forceinline__
#else
#define MG_HD inline
#endif
#endif
