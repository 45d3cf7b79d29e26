// Timing helpers shared by the benchmarks: medians and minima of alternating runs, so that a
// burst of load from another process hits the baseline and the candidate alike.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <utility>
#include <vector>

namespace megagrad::bench {

struct Stats {
  double median = 0, min = 0;  // seconds
};

inline Stats stats_of(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front()};
}

inline double seconds_of(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One warm-up run of each, then `reps` alternating runs of baseline and candidate.
inline std::pair<Stats, Stats> race(int reps, const std::function<void()>& base, const std::function<void()>& cand) {
  base();
  cand();
  std::vector<double> tb, tc;
  for (int i = 0; i < reps; ++i) {
    tb.push_back(seconds_of(base));
    tc.push_back(seconds_of(cand));
  }
  return {stats_of(tb), stats_of(tc)};
}

}  // namespace megagrad::bench
