// world(), the single-process stand-in, and the checks shared by every implementation.
#include "backends/dist/communicator.h"
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include "core/error.h"

namespace megagrad::dist {

// comm_mpi.cpp (or, without MPI, comm_mpi_stub.cpp).
std::unique_ptr<Communicator> make_mpi_communicator();

namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string_view name() const override { return "single process"; }
  bool reduces_on(Device) const override { return true; }  // nothing moves
  void all_reduce_sum(Tensor& t) override { check_reducible("all_reduce_sum", t); }
  void broadcast(Tensor&, int root) override { check_root("broadcast", root); }
  void broadcast_bytes(std::string&, int root) override { check_root("broadcast_bytes", root); }
  std::vector<uint64_t> all_gather(uint64_t value) override { return {value}; }
  void barrier() override {}

 private:
  static void check_root(std::string_view op, int root) {
    MG_CHECK(root == 0, op, "root rank {} of a single-process run", root);
  }
  // The same checks as MPI's, so that a single-process run refuses what a distributed one would.
  static void check_reducible(std::string_view op, const Tensor& t) {
    MG_CHECK(t.defined(), op, "undefined tensor");
    MG_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::Float64, op,
             "expected a float32 or float64 tensor, got {}", t.desc());
  }
};

}  // namespace

int launcher_world_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"}) {
    if (const char* v = std::getenv(var)) {
      char* end = nullptr;
      const long n = std::strtol(v, &end, 10);
      if (end != v && *end == '\0' && n >= 1) return (int)n;
    }
  }
  return 1;
}

bool built_with_mpi() { return MEGAGRAD_HAS_MPI; }

Communicator& single_process() {
  static SingleProcess one;
  return one;
}

namespace {
std::atomic<Communicator*> g_started{nullptr};  // world() once it exists
}  // namespace

void Communicator::abort_job(int exit_code) {
  std::fflush(nullptr);
  std::_Exit(exit_code);
}

void end_job_after_error(int exit_code) {
  Communicator* c = g_started.load();
  if (c && c->size() > 1) c->abort_job(exit_code);
}

Communicator& world() {
  static std::once_flag once;
  static std::unique_ptr<Communicator> comm;
  std::call_once(once, [] {
    const int launched = launcher_world_size();
    if (launched > 1) {
      MG_CHECK(built_with_mpi(), "dist",
               "this process is one of {} ranks started by mpirun, but this megagrad was built without MPI, so "
               "each rank would train alone. Install libopenmpi-dev and rebuild (CMake finds MPI by itself), "
               "or run one process without mpirun",
               launched);
      comm = make_mpi_communicator();
    } else {
      comm = std::make_unique<SingleProcess>();
    }
    g_started = comm.get();
  });
  return *comm;
}

namespace {
class Finished final : public PendingCollective {
 public:
  void wait() override {}
  bool test() override { return true; }
};
}  // namespace

std::unique_ptr<PendingCollective> Communicator::start_all_reduce_sum(Tensor& t) {
  all_reduce_sum(t);
  return std::make_unique<Finished>();
}

void check_same_on_all_ranks(std::string_view what, uint64_t value) { check_same_on_all_ranks(world(), what, value); }

void check_same_on_all_ranks(Communicator& c, std::string_view what, uint64_t value) {
  const std::vector<uint64_t> all = c.all_gather(value);
  bool same = true;
  for (uint64_t v : all) same = same && v == all[0];
  if (same) return;
  std::string list;
  for (size_t r = 0; r < all.size(); ++r) list += fmt::format("{}rank {} has {:#018x}", r ? ", " : "", r, all[r]);
  fail(what, "ranks disagree: {}", list);
}

}  // namespace megagrad::dist
