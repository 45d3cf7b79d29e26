// Per-op timers (off by default; for the calling thread): where a forward and backward pass spend
// their time, op by op, without an external profiler.
//
//   { profile_ops prof; loss = model.forward(x); loss.backward(); std::puts(prof.table().c_str()); }
//
// Backward: the engine times each node's backward closure (and the gradient sums it does for a
// node fed by several paths, under "(sum of gradients)"). Forward: the ops have no common entry
// point, but each one that records a backward calls record() when it is done, so the time since
// the previous record() (or since the profile started) is charged to that op. Work between ops
// that records nothing (no_grad code, host loops in a module) is charged to the next op that
// records: the forward table is a good map of a training forward, not of inference.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace megagrad {

struct OpTimes {
  int64_t forward_calls = 0, backward_calls = 0;
  double forward_s = 0, backward_s = 0;
};

class profile_ops {
 public:
  profile_ops();
  ~profile_ops();
  profile_ops(const profile_ops&) = delete;
  profile_ops& operator=(const profile_ops&) = delete;

  const std::map<std::string, OpTimes, std::less<>>& times() const { return times_; }
  // Ops by total time, with calls, ms and share of the whole, and a total line.
  std::string table() const;
  void reset();

  // Called by record() and the engine while a profile is active on this thread.
  static profile_ops* active();
  void forward_done(std::string_view op);
  void backward_done(std::string_view op, double seconds);

 private:
  std::map<std::string, OpTimes, std::less<>> times_;
  std::chrono::steady_clock::time_point last_;
  profile_ops* prev_;
};

}  // namespace megagrad
