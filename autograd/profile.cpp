#include "autograd/profile.h"
#include <algorithm>
#include <vector>
#include <fmt/format.h>

namespace megagrad {

namespace {
thread_local profile_ops* t_active = nullptr;
double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

profile_ops::profile_ops() : last_(std::chrono::steady_clock::now()), prev_(t_active) { t_active = this; }
profile_ops::~profile_ops() { t_active = prev_; }

profile_ops* profile_ops::active() { return t_active; }

void profile_ops::reset() {
  times_.clear();
  last_ = std::chrono::steady_clock::now();
}

void profile_ops::forward_done(std::string_view op) {
  const auto now = std::chrono::steady_clock::now();
  auto it = times_.find(op);
  if (it == times_.end()) it = times_.emplace(std::string(op), OpTimes{}).first;
  it->second.forward_calls += 1, it->second.forward_s += seconds_between(last_, now);
  last_ = now;
}

void profile_ops::backward_done(std::string_view op, double seconds) {
  auto it = times_.find(op);
  if (it == times_.end()) it = times_.emplace(std::string(op), OpTimes{}).first;
  it->second.backward_calls += 1, it->second.backward_s += seconds;
  // The backward's own time is no forward op's: the next forward starts the clock afresh.
  last_ = std::chrono::steady_clock::now();
}

std::string profile_ops::table() const {
  std::vector<std::pair<std::string, OpTimes>> rows(times_.begin(), times_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return a.second.forward_s + a.second.backward_s > b.second.forward_s + b.second.backward_s;
  });
  double fwd = 0, bwd = 0;
  int64_t fcalls = 0, bcalls = 0;
  for (const auto& [op, t] : rows) fwd += t.forward_s, bwd += t.backward_s, fcalls += t.forward_calls, bcalls += t.backward_calls;
  const double all = std::max(fwd + bwd, 1e-12);
  std::string out = fmt::format("{:<26} {:>7} {:>10} {:>7} {:>10} {:>7}\n", "op", "fwd n", "fwd ms", "bwd n", "bwd ms", "share");
  for (const auto& [op, t] : rows)
    out += fmt::format("{:<26} {:>7} {:>10.3f} {:>7} {:>10.3f} {:>6.1f}%\n", op, t.forward_calls, 1e3 * t.forward_s,
                       t.backward_calls, 1e3 * t.backward_s, 100 * (t.forward_s + t.backward_s) / all);
  out += fmt::format("{:<26} {:>7} {:>10.3f} {:>7} {:>10.3f} {:>6.1f}%\n", "total", fcalls, 1e3 * fwd, bcalls, 1e3 * bwd, 100.0);
  return out;
}

}  // namespace megagrad
