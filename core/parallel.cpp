#include "core/parallel.h"
#include <pthread.h>
#include <sched.h>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include "core/error.h"

namespace megagrad {
namespace {

thread_local bool t_in_pool = false;


// A fixed set of workers; job k of a parallel_for runs on worker k-1, job 0 on the caller.
class Pool {
 public:
  explicit Pool(int threads) { resize(threads); }
  ~Pool() { stop(); }

  int threads() const { return (int)workers_.size() + 1; }

  void resize(int threads) {
    stop();
    stopping_ = false;
    // A new worker has seen every job so far: it must wait for the next one.
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i, g = generation_] { worker_loop(i, g); });
    pin_workers();
  }

  void run(int jobs, const std::function<void(int)>& job) {
    std::unique_lock lk(mu_);
    job_ = &job;
    jobs_ = jobs;
    pending_ = jobs - 1;
    error_ = nullptr;
    ++generation_;
    lk.unlock();
    cv_work_.notify_all();
    run_guarded(job, 0);
    lk.lock();
    cv_done_.wait(lk, [&] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void run_guarded(const std::function<void(int)>& job, int k) {
    t_in_pool = true;
    try {
      job(k);
    } catch (...) {
      std::lock_guard g(err_mu_);
      if (!error_) error_ = std::current_exception();
    }
    t_in_pool = false;
  }

  void worker_loop(int id, uint64_t seen) {
    for (;;) {
      std::unique_lock lk(mu_);
      cv_work_.wait(lk, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      const std::function<void(int)>* job = job_;
      bool mine = job && id < jobs_;
      lk.unlock();
      if (!mine) continue;
      run_guarded(*job, id);
      lk.lock();
      if (--pending_ == 0) cv_done_.notify_one();
    }
  }

  // One worker per core, leaving core 0 to the caller's thread (which we do not pin).
  void pin_workers() {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
    std::vector<int> cpus;
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
    if (cpus.size() < 2) return;
    for (size_t i = 0; i < workers_.size(); ++i) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpus[(i + 1) % cpus.size()], &one);
      pthread_setaffinity_np(workers_[i].native_handle(), sizeof(one), &one);
    }
  }

  void stop() {
    {
      std::lock_guard g(mu_);
      stopping_ = true;
    }
    cv_work_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mu_, err_mu_;
  std::condition_variable cv_work_, cv_done_;
  const std::function<void(int)>* job_ = nullptr;
  int jobs_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

std::mutex g_pool_mu;
// Sized by its users (set_num_threads, parallel_for) to the thread count in force.
Pool& pool() {
  static Pool p(1);
  return p;
}
std::atomic<int> g_threads{0};  // read by every parallel_for, from any thread

}  // namespace

int parse_num_threads(const std::string& text, std::string_view what) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || std::isspace((unsigned char)text[0]) || *end != '\0' || errno == ERANGE || v < 1 ||
      v > kMaxThreads)
    fail("threads", "{} expects an integer in [1, {}], got '{}'", what, kMaxThreads, text);
  return (int)v;
}

int default_num_threads() {
  if (const char* e = std::getenv("MEGAGRAD_NUM_THREADS")) return parse_num_threads(e, "MEGAGRAD_NUM_THREADS");
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int get_num_threads() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::lock_guard g(g_pool_mu);
    if (g_threads.load() == 0) g_threads = default_num_threads();
  });
  return g_threads.load();
}

void set_num_threads(int n) {
  MG_CHECK(n >= 1 && n <= kMaxThreads, "set_num_threads", "thread count must be in [1, {}], got {}", kMaxThreads, n);
  get_num_threads();  // the default is settled first, so it cannot overwrite n later
  std::lock_guard g(g_pool_mu);
  g_threads = n;
  pool().resize(n);  // OpenBLAS follows at its next call (backends/cpu/blas.cpp)
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f) {
  if (n <= 0) return;
  int threads = get_num_threads();
  grain = std::max<int64_t>(grain, 1);
  if (t_in_pool || threads == 1 || n < 2 * grain) {
    f(0, n);
    return;
  }
  int jobs = (int)std::min<int64_t>(threads, n / grain);
  std::lock_guard g(g_pool_mu);  // one parallel region at a time (e.g. two user threads)
  if (pool().threads() != threads) pool().resize(threads);
  int64_t chunk = (n + jobs - 1) / jobs;
  pool().run(jobs, [&](int k) {
    int64_t b = k * chunk, e = std::min(n, b + chunk);
    if (b < e) f(b, e);
  });
}

}  // namespace megagrad
