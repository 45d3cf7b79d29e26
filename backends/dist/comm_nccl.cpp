// The NCCL communicator (nccl.h): one rank per GPU, NCCL's unique id sent over world() (MPI).
// Built when CMake finds the CUDA backend, MPI and NCCL (MEGAGRAD_NCCL).
//
// NCCL neither checks its buffers nor times out: a wrong pointer, a count that differs between
// ranks or two ranks on one GPU end in a hang or in corrupt memory. So everything that can be
// checked is checked first, and every rank takes part in the same checks (all-gathers over MPI)
// before a collective, so that when one rank refuses, all of them throw, and none is left waiting.
#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>
#include "backends/cuda/cuda.h"
#include "core/hash.h"
#include "backends/cuda/stream.h"
#include "backends/dist/nccl.h"
#include "core/dtype.h"
#include "core/error.h"

namespace megagrad::dist {

namespace {

// "[op] call: <NCCL's error string>: <NCCL's last message>", the last message being the detail
// NCCL logs (say, which peer or which socket), when it has one.
void nccl_check(std::string_view op, ncclResult_t r, std::string_view what) {
  if (r == ncclSuccess) return;
  const char* last = ncclGetLastError(nullptr);
  fail(op, "{}: {}{}{}", what, ncclGetErrorString(r), last && *last ? ": " : "", last ? last : "");
}

std::string host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

// This rank's index among the ranks on its host, as the launcher says (Open MPI, MPICH's Hydra,
// Slurm's srun); -1 when none says.
int local_rank_from_env() {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    if (const char* v = std::getenv(var)) {
      char* end = nullptr;
      const long n = std::strtol(v, &end, 10);
      if (end != v && *end == '\0' && n >= 0 && n < INT_MAX) return (int)n;
    }
  }
  return -1;
}

class Nccl final : public Communicator {
 public:
  Nccl() : world_(world()) {
    constexpr std::string_view op = "nccl";
    const int rank = world_.rank(), size = world_.size();

    // 1. Each rank picks its GPU. A local failure is not thrown yet: the other ranks would wait
    //    for this one in the all-gathers below.
    std::string error;
    const std::string host = host_name();
    const uint64_t host_hash = fnv1a(host) | 1;  // never 0: 0 marks a failure
    const std::vector<uint64_t> hosts = world_.all_gather(host_hash);
    int local_rank = local_rank_from_env();
    if (local_rank < 0) {  // no launcher variable: count the lower ranks on the same host
      local_rank = 0;
      for (int r = 0; r < rank; ++r) local_rank += hosts[(size_t)r] == host_hash;
    }
    uint64_t gpu_hash = 0;
    try {
      std::string why = cuda_status();  // "no device: <reason>"
      if (why.rfind("no device: ", 0) == 0) why = why.substr(11);
      MG_CHECK(cuda_available(), op, "no CUDA device on host {}: {}. NCCL needs one GPU per rank", host, why);
      const int count = cuda_device_count();
      device_ = local_rank % count;
      cuda_set_device(device_, op);
      cudaDeviceProp prop{};
      const cudaError_t err = cudaGetDeviceProperties(&prop, device_);
      MG_CHECK(err == cudaSuccess, op, "cudaGetDeviceProperties(cuda:{}): {}", device_, cudaGetErrorString(err));
      gpu_hash = fnv1a(std::string_view(prop.uuid.bytes, sizeof prop.uuid.bytes), host_hash) | 1;
    } catch (const Error& e) {
      error = e.what();
    }

    // 2. Every rank learns whether all found a GPU, and whether two of them found the same one
    //    (by its UUID): NCCL does not allow two ranks on one GPU; they would hang.
    const std::vector<uint64_t> gpus = world_.all_gather(gpu_hash);
    if (!error.empty()) throw Error(size == 1 ? error : fmt::format("{} (rank {} of {})", error, rank, size));
    for (int r = 0; r < size; ++r) {
      MG_CHECK(gpus[(size_t)r] != 0, op, "rank {} of {} found no usable CUDA device (its own error says why)", r,
               size);
      for (int q = 0; q < r; ++q)
        MG_CHECK(gpus[(size_t)q] != gpus[(size_t)r], op,
                 "ranks {} and {} would share one GPU (the same device UUID on the same host; this rank, {} of "
                 "{} on {}, took cuda:{} of the {} visible): NCCL does not allow two ranks on one GPU. Start at "
                 "most as many ranks per host as it has GPUs",
                 q, r, rank, size, host, device_, cuda_device_count());
    }

    // 3. Rank 0 creates the id; MPI carries it. An empty message tells the others it failed.
    std::string id_bytes;
    ncclUniqueId id{};
    if (rank == 0) {
      const ncclResult_t r = ncclGetUniqueId(&id);
      if (r == ncclSuccess) id_bytes.assign(id.internal, sizeof id.internal);
      else error = fmt::format("[{}] ncclGetUniqueId: {}", op, ncclGetErrorString(r));
    }
    world_.broadcast_bytes(id_bytes, 0);
    if (!error.empty()) throw Error(error);
    MG_CHECK(id_bytes.size() == sizeof id.internal, op, "rank 0 could not create NCCL's unique id (its error says why)");
    std::memcpy(id.internal, id_bytes.data(), sizeof id.internal);

    // 4. The communicator, on the current device (set above). Then every rank learns whether
    //    all succeeded, so that none goes on to a collective that a failed peer will never join.
    const ncclResult_t init = ncclCommInitRank(&comm_, size, id, rank);
    const std::vector<uint64_t> ok = world_.all_gather(init == ncclSuccess);
    nccl_check(op, init, fmt::format("ncclCommInitRank(rank {} of {}, cuda:{})", rank, size, device_));
    for (int r = 0; r < size; ++r) {
      if (ok[(size_t)r]) continue;
      ncclCommAbort(comm_);
      comm_ = nullptr;
      fail(op, "ncclCommInitRank failed on rank {} of {} (its error says why)", r, size);
    }
  }

  int rank() const override { return world_.rank(); }
  int size() const override { return world_.size(); }
  std::string_view name() const override { return "NCCL"; }
  int device() const { return device_; }

  // CPU tensors through MPI; CUDA tensors on this rank's device through NCCL.
  bool reduces_on(Device d) const override { return d.is_cpu() || d.index == device_; }

  void all_reduce_sum(Tensor& t) override { start_all_reduce_sum(t)->wait(); }

  std::unique_ptr<PendingCollective> start_all_reduce_sum(Tensor& t) override {
    constexpr std::string_view op = "all_reduce_sum";
    agree(op, t, 0, /*sum=*/true);
    if (t.device().is_cpu()) return world_.start_all_reduce_sum(t);
    if (t.numel() > 0) enqueue_all_reduce(op, t);
    return std::make_unique<Enqueued>();
  }

  void broadcast(Tensor& t, int root) override {
    constexpr std::string_view op = "broadcast";
    agree(op, t, root, /*sum=*/false);
    if (t.device().is_cpu()) return world_.broadcast(t, root);
    if (t.numel() == 0) return;
    cuda_set_device(device_, op);
    void* p = t.raw_device_data();
    nccl_check(op,
               ncclBroadcast(p, p, (size_t)t.numel(), nccl_type(t.dtype()), root, comm_, cuda_stream(device_)),
               fmt::format("ncclBroadcast of {} from rank {}", t.desc(), root));
  }

  // Small host data: MPI.
  void broadcast_bytes(std::string& bytes, int root) override { world_.broadcast_bytes(bytes, root); }
  std::vector<uint64_t> all_gather(uint64_t value) override { return world_.all_gather(value); }
  void barrier() override { world_.barrier(); }
  [[noreturn]] void abort_job(int exit_code) override {
    world_.abort_job(exit_code);  // MPI_Abort: does not return
    std::_Exit(exit_code);        // but a virtual call's [[noreturn]] is not seen here
  }

 private:
  // A collective queued on the library's stream: the kernels and copies queued after it (the
  // only way the library reads a CUDA tensor) see its result, so the host has nothing to wait for.
  struct Enqueued final : PendingCollective {
    void wait() override {}
    bool test() override { return true; }
  };

  void enqueue_all_reduce(std::string_view op, Tensor& t) {
    cuda_set_device(device_, op);
    void* p = t.raw_device_data();
    nccl_check(op,
               ncclAllReduce(p, p, (size_t)t.numel(), nccl_type(t.dtype()), ncclSum, comm_, cuda_stream(device_)),
               fmt::format("ncclAllReduce of {}", t.desc()));
  }

 public:
  // At exit, before MPI_Finalize (see nccl_world). ncclCommDestroy waits for the operations still
  // queued, which never finish when a peer is gone (an exit on an error), so then: ncclCommAbort.
  void shutdown() noexcept {
    if (!comm_) return;
    cudaSetDevice(device_);
    ncclResult_t async = ncclSuccess;
    const bool healthy = ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async == ncclSuccess;
    bool idle = false;
    try {
      idle = cudaStreamQuery(cuda_stream(device_)) == cudaSuccess;
    } catch (...) {  // no stream: nothing known about the queue, so abort rather than wait
    }
    if (healthy && idle) ncclCommDestroy(comm_);
    else ncclCommAbort(comm_);
    comm_ = nullptr;
  }

 private:
  static ncclDataType_t nccl_type(DType d) {
    switch (d) {
      case DType::Float32: return ncclFloat32;
      case DType::Float64: return ncclFloat64;
      case DType::Int64: return ncclInt64;
      case DType::Bool: return ncclUint8;  // one byte per element
    }
    fail("nccl", "unknown dtype");
  }

  // Why t cannot take part in the collective on this rank, or "" when it can: the checks of
  // detail::collective_problem, and no error left by an earlier NCCL operation (a peer died: the
  // next collective would wait for it forever). Then every rank learns every rank's verdict.
  void agree(std::string_view op, const Tensor& t, int root, bool sum) {
    std::string problem = detail::collective_problem(t, root, sum, size(), device_);
    if (problem.empty() && !t.device().is_cpu()) {
      ncclResult_t async = ncclSuccess;
      const ncclResult_t r = comm_ ? ncclCommGetAsyncError(comm_, &async) : ncclInvalidUsage;
      if (!comm_) problem = "the NCCL communicator was shut down (the process is exiting)";
      else if (r != ncclSuccess || async != ncclSuccess)
        problem = fmt::format("an earlier NCCL operation failed: {}", ncclGetErrorString(r != ncclSuccess ? r : async));
    }
    detail::agree_on_collective(world_, op, t, root, sum, problem);
  }

  Communicator& world_;
  int device_ = -1;
  ncclComm_t comm_ = nullptr;
};

Nccl* g_nccl = nullptr;  // never deleted: shutdown() runs at exit instead, in a known order

Nccl& nccl_instance() {
  static std::once_flag once;
  std::call_once(once, [] {
    // world() first: MPI's atexit (MPI_Finalize) is then registered before ours, and the CUDA
    // runtime's teardown before both (the constructor touches the device), so at exit NCCL is
    // destroyed first, then MPI is finalised, then CUDA is torn down. A throw leaves the flag
    // unset: the next call tries again.
    auto* n = new Nccl();
    g_nccl = n;
    std::atexit([] { g_nccl->shutdown(); });
  });
  return *g_nccl;
}

}  // namespace

bool built_with_nccl() { return true; }

std::string nccl_build_info() {
  int v = 0;  // the library loaded now, which may differ from the header built against
  const bool known = ncclGetVersion(&v) == ncclSuccess;
  const auto str = [](int code) {  // NCCL_VERSION(): X*1000+Y*100+Z up to 2.8, X*10000+Y*100+Z since
    return code < 10000 ? fmt::format("{}.{}.{}", code / 1000, code / 100 % 10, code % 100)
                        : fmt::format("{}.{}.{}", code / 10000, code / 100 % 100, code % 100);
  };
  return fmt::format("built: yes (backends/dist/comm_nccl.cpp; NCCL {} loaded, built against {})",
                     known ? str(v) : "?", str(NCCL_VERSION_CODE));
}

Communicator& nccl_world() { return nccl_instance(); }

int nccl_device() { return nccl_instance().device(); }

}  // namespace megagrad::dist
