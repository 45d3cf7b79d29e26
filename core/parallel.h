// The library's thread pool. Large elementwise and reduction loops split their index range over
// the pool's threads; small ones run inline. GEMMs run on the same pool (backends/cpu/blas.cpp cuts
// C into blocks; OpenBLAS itself runs single-threaded), so there is one set of threads, and a gemm
// may be called inside a parallel_for (it then runs inline, as any nested parallel_for does).
//
// Workers are pinned (one per core). Between jobs a worker spins for a short while
// (MEGAGRAD_POOL_SPIN_US, default 50; it yields the core on every few checks), then sleeps on a
// condition variable: the ops of a forward or backward pass follow each other within microseconds,
// and waking a sleeping thread costs ~30-40 us on a VM, as much as a whole small op. On a machine
// whose cores are shared with other busy programs, MEGAGRAD_POOL_SPIN_US=0 gives the cores back at
// once.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>
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

// A non-owning reference to a callable, for calls that finish before the callable's lifetime ends
// (parallel_for runs its body before returning). Unlike std::function it never allocates: a
// lambda that captures several references would otherwise cost a heap allocation per call.
template <typename Sig> class FunctionRef;
template <typename R, typename... A>
class FunctionRef<R(A...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT: implicit, as std::function's
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, A... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...); }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

// Runs f(begin, end) over [0, n) split into at most get_num_threads() contiguous pieces of at
// least `grain` elements each. Runs inline when n < 2 * grain or when already inside the pool.
void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> f);

// True inside a parallel_for's job (a nested parallel_for runs inline there).
bool in_parallel_region();

// Column sums over rows, in parallel yet independent of the thread count: rows are taken in fixed
// blocks of `block`, row(r, acc) adds row r's `width` terms into its block's doubles, and the
// blocks are summed in order into out[0, width). `grain_rows`: rows per piece of work, at least.
// Rows per block of blocked_row_sums for the kernels that share it.
inline constexpr int64_t kRowSumBlock = 64;

template <typename RowFn>
void blocked_row_sums(int64_t rows, int64_t width, int64_t block, int64_t grain_rows, double* out, RowFn&& row) {
  const int64_t nblocks = (rows + block - 1) / block;
  std::vector<double> partial((size_t)(nblocks * width), 0.0);
  parallel_for(nblocks, std::max<int64_t>(1, grain_rows / block), [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      double* acc = partial.data() + blk * width;
      for (int64_t r = blk * block; r < std::min(rows, (blk + 1) * block); ++r) row(r, acc);
    }
  });
  std::fill(out, out + width, 0.0);
  for (int64_t blk = 0; blk < nblocks; ++blk)
    for (int64_t j = 0; j < width; ++j) out[j] += partial[(size_t)(blk * width + j)];
}

// Grain for elementwise loops: a loop splits from 2 grains on. Measured on this 2-core VM with the
// spinning pool (2 threads against 1): a float multiply (~0.1 ns an element) gains 1.1x at 16K
// elements and 1.5x at 32K, a silu with libm's exp (~3.5 ns) 1.6x from 8K; below, the dispatch
// (~1-2 us) costs more than it saves.
inline constexpr int64_t kElementwiseGrain = 16384;

}  // namespace megagrad
