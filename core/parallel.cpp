#include "core/parallel.h"
#include <pthread.h>
#include <sched.h>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include "core/error.h"

namespace megagrad {
namespace {

thread_local bool t_in_pool = false;


// How long a worker (or the caller waiting for the workers) spins before it sleeps on the condition
// variable (core/parallel.h): MEGAGRAD_POOL_SPIN_US, default 50 us; 0: always sleep at once.
int64_t spin_ns() {
  static const int64_t ns = [] {
    const char* e = std::getenv("MEGAGRAD_POOL_SPIN_US");
    if (!e) return int64_t{50'000};
    char* end = nullptr;
    long v = std::strtol(e, &end, 10);
    if (*e == '\0' || *end != '\0' || v < 0 || v > 1'000'000)
      fail("threads", "MEGAGRAD_POOL_SPIN_US expects microseconds in [0, 1000000], got '{}'", e);
    return int64_t{v} * 1000;
  }();
  return ns;
}

// Spins until done() or spin_ns() have passed; returns done().
template <typename Done>
bool spin_until(Done&& done) {
  const int64_t limit = spin_ns();
  if (limit == 0) return done();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (done()) return true;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if ((i & 15) != 15) continue;
    // Yield now and then: a thread that shares this core (the caller, which is not pinned, or a
    // thread of another program) runs instead of waiting for the end of our time slice.
    sched_yield();
    if (std::chrono::steady_clock::now() - t0 > std::chrono::nanoseconds(limit)) return done();
  }
}

// A fixed set of workers; job k of a parallel_for runs on worker k-1, job 0 on the caller.
// A job is published by bumping generation_ (after job_ and jobs_ are set); workers spin on it
// briefly, then sleep on cv_work_. pending_ counts the workers' jobs still running.
class Pool {
 public:
  explicit Pool(int threads) { resize(threads); }
  ~Pool() { stop(); }

  int threads() const { return (int)workers_.size() + 1; }

  void resize(int threads) {
    spin_ns();  // a bad MEGAGRAD_POOL_SPIN_US throws here, in the caller's thread, not in a worker
    stop();
    stopping_ = false;
    // A new worker has seen every job so far: it must wait for the next one.
    const uint64_t g = generation_.load();
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i, g] { worker_loop(i, g); });
    pin_workers();
  }

  void run(int jobs, FunctionRef<void(int)> job) {
    {
      std::lock_guard lk(mu_);
      job_ = job;
      jobs_ = jobs;
      pending_.store(jobs - 1, std::memory_order_relaxed);
      error_ = nullptr;
      generation_.fetch_add(1, std::memory_order_release);
      if (sleeping_ > 0) cv_work_.notify_all();
    }
    run_guarded(job, 0);
    auto all_done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
    if (!spin_until(all_done)) {
      std::unique_lock lk(mu_);
      cv_done_.wait(lk, all_done);
    }
    std::lock_guard lk(mu_);
    job_.reset();
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void run_guarded(FunctionRef<void(int)> job, int k) {
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
      auto news = [&] { return stopping_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(news)) {
        std::unique_lock lk(mu_);
        ++sleeping_;
        cv_work_.wait(lk, news);
        --sleeping_;
      }
      if (stopping_.load(std::memory_order_acquire)) return;
      std::optional<FunctionRef<void(int)>> job;
      bool mine;
      {
        std::lock_guard lk(mu_);  // job_ and jobs_ of the generation seen
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
        mine = job.has_value() && id < jobs_;
      }
      if (!mine) continue;
      run_guarded(*job, id);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard lk(mu_);  // the caller checks pending_ under mu_ before it sleeps
        cv_done_.notify_one();
      }
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
      cv_work_.notify_all();
    }
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mu_, err_mu_;
  std::condition_variable cv_work_, cv_done_;
  std::optional<FunctionRef<void(int)>> job_;  // guarded by mu_; set while a job runs
  int jobs_ = 0;                                    // guarded by mu_
  int sleeping_ = 0;                                // workers waiting on cv_work_; guarded by mu_
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
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

bool in_parallel_region() { return t_in_pool; }

void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> f) {
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
