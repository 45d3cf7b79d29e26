// The library's thread pool. Large elementwise and reduction loops split their index range over
// the pool's threads; small ones run inline. Workers are pinned (one per core) and sleep on a
// condition variable between jobs: no spin barriers, which on a small VM steal the core that
// the caller needs.
//
// OpenBLAS has its own threads. megagrad never calls BLAS from inside a parallel_for, so the two
// pools take turns instead of oversubscribing the cores. set_num_threads() sets the count of
// both: OpenBLAS applies it at its next call (backends/cpu/blas.cpp), so core needs no BLAS.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace megagrad {

// Threads used by parallel_for and by OpenBLAS. Default: MEGAGRAD_NUM_THREADS, else the number
// of cores this process may run on. An invalid MEGAGRAD_NUM_THREADS (not an integer in
// [1, kMaxThreads], as --threads) is an error: "[threads] MEGAGRAD_NUM_THREADS expects an integer
// in [1, 4096], got 'zz'", thrown by the first get_num_threads() (and so by set_num_threads and
// the first parallel op) until the variable is fixed.
int get_num_threads();
void set_num_threads(int n);

inline constexpr int kMaxThreads = 4096;
// The default thread count: MEGAGRAD_NUM_THREADS checked now (see above), else the cores.
int default_num_threads();
// `text` as a thread count in [1, kMaxThreads]; else "[threads] <what> expects an integer in
// [1, 4096], got '<text>'".
int parse_num_threads(const std::string& text, std::string_view what);

// Runs f(begin, end) over [0, n) split into at most get_num_threads() contiguous pieces of at
// least `grain` elements each. Runs inline when n < 2 * grain or when already inside the pool.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f);

// Grain for elementwise loops: below this many elements, threads cost more than they save.
inline constexpr int64_t kElementwiseGrain = 32768;

}  // namespace megagrad
