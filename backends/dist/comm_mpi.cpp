// The MPI communicator (Open MPI from Debian: libopenmpi-dev). MPI is initialised at the first
// world() call of a process that mpirun started, and finalised at exit. Collectives run on
// MPI_COMM_WORLD with MPI's default error handler (MPI_ERRORS_ARE_FATAL): a failed call or a
// dead rank ends the whole job instead of leaving ranks waiting.
#include <mpi.h>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>
#include "backends/dist/communicator.h"
#include "core/dtype.h"
#include "core/error.h"

namespace megagrad::dist {

namespace {

// MPI counts are int: large buffers go in pieces of at most this many elements.
constexpr int64_t kMaxCount = int64_t(1) << 30;

MPI_Datatype mpi_type(std::string_view op, const Tensor& t) {
  switch (t.dtype()) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Int64: return MPI_INT64_T;
    case DType::Bool: return MPI_UINT8_T;
  }
  fail(op, "unknown dtype of {}", t.desc());
}

void check_cpu_contiguous(std::string_view op, const Tensor& t) {
  MG_CHECK(t.defined(), op, "undefined tensor");
  MG_CHECK(t.device().is_cpu(), op, "{} is on {}: the MPI communicator takes CPU tensors", t.desc(),
           t.device());
  MG_CHECK(t.is_contiguous(), op, "{} is not contiguous", t.desc());
}

// MPI_Iallreduce requests of one tensor (one per piece of at most kMaxCount elements).
class MpiPending final : public PendingCollective {
 public:
  explicit MpiPending(std::vector<MPI_Request> requests) : requests_(std::move(requests)) {}
  ~MpiPending() override { wait(); }
  void wait() override {
    if (!requests_.empty()) MPI_Waitall((int)requests_.size(), requests_.data(), MPI_STATUSES_IGNORE);
    requests_.clear();
  }
  bool test() override {
    int done = 1;
    if (!requests_.empty()) MPI_Testall((int)requests_.size(), requests_.data(), &done, MPI_STATUSES_IGNORE);
    if (done) requests_.clear();
    return done != 0;
  }

 private:
  std::vector<MPI_Request> requests_;
};

class Mpi final : public Communicator {
 public:
  Mpi() {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
      int provided = 0;
      // Collectives come from one thread at a time (the training loop's).
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
      std::atexit([] {
        int finalised = 0;
        MPI_Finalized(&finalised);
        if (!finalised) MPI_Finalize();
      });
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view name() const override { return "MPI"; }

  void all_reduce_sum(Tensor& t) override { start_all_reduce_sum(t)->wait(); }

  std::unique_ptr<PendingCollective> start_all_reduce_sum(Tensor& t) override {
    constexpr std::string_view op = "all_reduce_sum";
    check_cpu_contiguous(op, t);
    MG_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::Float64, op,
             "expected a float32 or float64 tensor, got {}", t.desc());
    char* p = static_cast<char*>(t.raw_device_data());
    const size_t esize = dtype_size(t.dtype());
    std::vector<MPI_Request> requests;
    for (int64_t i = 0; i < t.numel(); i += kMaxCount) {
      const int n = (int)std::min(kMaxCount, t.numel() - i);
      requests.emplace_back();
      MPI_Iallreduce(MPI_IN_PLACE, p + (size_t)i * esize, n, mpi_type(op, t), MPI_SUM, MPI_COMM_WORLD,
                     &requests.back());
    }
    return std::make_unique<MpiPending>(std::move(requests));
  }

  void broadcast(Tensor& t, int root) override {
    constexpr std::string_view op = "broadcast";
    check_cpu_contiguous(op, t);
    check_root(op, root);
    char* p = static_cast<char*>(t.raw_device_data());
    const size_t esize = dtype_size(t.dtype());
    for (int64_t i = 0; i < t.numel(); i += kMaxCount) {
      const int n = (int)std::min(kMaxCount, t.numel() - i);
      MPI_Bcast(p + (size_t)i * esize, n, mpi_type(op, t), root, MPI_COMM_WORLD);
    }
  }

  void broadcast_bytes(std::string& bytes, int root) override {
    check_root("broadcast_bytes", root);
    uint64_t n = bytes.size();
    MPI_Bcast(&n, 1, MPI_UINT64_T, root, MPI_COMM_WORLD);
    bytes.resize(n);
    for (uint64_t i = 0; i < n; i += (uint64_t)kMaxCount)
      MPI_Bcast(bytes.data() + i, (int)std::min<uint64_t>(kMaxCount, n - i), MPI_CHAR, root, MPI_COMM_WORLD);
  }

  std::vector<uint64_t> all_gather(uint64_t value) override {
    std::vector<uint64_t> all((size_t)size_);
    MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
    return all;
  }

  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }

  [[noreturn]] void abort_job(int exit_code) override {
    std::fflush(nullptr);  // the error message first
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);  // MPI_Abort does not return; this satisfies [[noreturn]]
  }

 private:
  void check_root(std::string_view op, int root) const {
    MG_CHECK(root >= 0 && root < size_, op, "root rank {} is not in [0, {})", root, size_);
  }
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() { return std::make_unique<Mpi>(); }

}  // namespace megagrad::dist
