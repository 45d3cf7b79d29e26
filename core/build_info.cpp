// Compiled with the library's own flags, so the macros below are what its kernels were built for
// (MEGAGRAD_NATIVE_BUILD comes from CMakeLists.txt, on this file only).
#include "core/build_info.h"
#include <vector>

#ifndef MEGAGRAD_NATIVE_BUILD
#define MEGAGRAD_NATIVE_BUILD 0
#endif

namespace megagrad {

bool built_native() { return MEGAGRAD_NATIVE_BUILD != 0; }

std::string build_target() {
  std::vector<std::string> isa;
#if defined(__x86_64__) || defined(__i386__)
#if defined(__AVX512F__)
  std::string avx512 = "AVX-512 (F";
#if defined(__AVX512CD__)
  avx512 += " CD";
#endif
#if defined(__AVX512BW__)
  avx512 += " BW";
#endif
#if defined(__AVX512DQ__)
  avx512 += " DQ";
#endif
#if defined(__AVX512VL__)
  avx512 += " VL";
#endif
  isa.push_back(avx512 + ")");
#endif
#if defined(__AVX2__)
  isa.push_back("AVX2");
#elif defined(__AVX__)
  isa.push_back("AVX");
#endif
#if defined(__FMA__)
  isa.push_back("FMA");
#endif
  if (isa.empty()) {
#if defined(__SSE4_2__)
    isa.push_back("SSE4.2");
#else
    isa.push_back("x86-64 baseline: SSE2");
#endif
  }
#elif defined(__aarch64__)
  isa.push_back("AArch64");
#if defined(__ARM_FEATURE_SVE)
  isa.push_back("SVE");
#endif
#else
  isa.push_back("the compiler's default for this architecture");
#endif
  std::string out = built_native() ? "native (-march=native): " : "portable (MEGAGRAD_NATIVE=OFF): ";
  for (size_t i = 0; i < isa.size(); ++i) out += (i ? ", " : "") + isa[i];
  return out;
}

}  // namespace megagrad
