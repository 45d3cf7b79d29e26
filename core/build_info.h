#pragma once
// What the compiler was told to target when it built the library (megagrad info shows it).
#include <string>

namespace megagrad {

// True when the library was compiled with -march=native (MEGAGRAD_NATIVE=ON): it then runs only
// on CPUs with the building machine's instruction set.
bool built_native();

// e.g. "native (-march=native): AVX-512 (F CD BW DQ VL), AVX2, FMA" or
// "portable (x86-64 baseline: SSE2)": the instruction-set macros seen when this file compiled.
std::string build_target();

}  // namespace megagrad
