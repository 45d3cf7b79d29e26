// Communication between the processes of a data-parallel run, behind one small interface:
// rank, size, all-reduce, broadcast, barrier. Implementations:
//   - a single-process stand-in (size 1: every collective is a no-op), when the program was not
//     launched by mpirun;
//   - MPI (comm_mpi.cpp, built when CMake finds MPI: Debian's libopenmpi-dev), between processes
//     and hosts, on CPU tensors.
// world() picks one at its first call: MPI when the environment says the process is one rank of
// an mpirun launch, else the stand-in. A launch by mpirun of a build without MPI is an error that
// says so, rather than N processes that each train alone.
//
// Errors: the MPI implementation keeps MPI's default handler (MPI_ERRORS_ARE_FATAL), so a rank
// that dies makes mpirun stop the others instead of leaving them waiting in a collective.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include "core/tensor.h"

namespace megagrad::dist {

// A collective that was started and may not have finished: its tensor must stay alive and
// untouched until wait() returns. The destructor waits too, so a buffer is never freed under a
// collective in flight.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
  // Lets the library move the collective on without blocking (MPI progresses non-blocking
  // collectives only inside MPI calls); true once it has finished.
  virtual bool test() { return false; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string_view name() const = 0;  // "single process" or "MPI"
  // Whether the collectives take tensors on this device (MPI: CPU tensors; a caller stages others
  // through the host).
  virtual bool reduces_on(Device d) const { return d.is_cpu(); }
  // t = the sum of t over all ranks, in place. t: a contiguous float32/float64 CPU tensor with the
  // same shape on every rank.
  virtual void all_reduce_sum(Tensor& t) = 0;
  // all_reduce_sum started without waiting for it (MPI_Iallreduce), so that a data-parallel
  // backward can overlap it with the rest of the gradient computation. Every rank must start the
  // same collectives in the same order. The default runs the blocking one and returns it finished.
  virtual std::unique_ptr<PendingCollective> start_all_reduce_sum(Tensor& t);
  // t = root's t on every rank, in place (any dtype, contiguous, CPU).
  virtual void broadcast(Tensor& t, int root) = 0;
  // bytes = root's bytes on every rank (the length too).
  virtual void broadcast_bytes(std::string& bytes, int root) = 0;
  // Every rank's value, in rank order.
  virtual std::vector<uint64_t> all_gather(uint64_t value) = 0;
  virtual void barrier() = 0;
  // Ends every rank of the job now (MPI_Abort): for an error on some ranks only, whose peers may
  // wait in a collective that will never complete. The stand-in exits this process.
  [[noreturn]] virtual void abort_job(int exit_code);
};

// The communicator of this process (see above). Thread-safe first call; lives until exit.
Communicator& world();

// The rank count of the mpirun launch this process belongs to, from its environment
// (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_SIZE...); 1 when not launched by mpirun.
int launcher_world_size();

// Stops every rank with the same error when the ranks disagree on `value` (say, a hash of the
// configuration or of the data): "[what] ranks disagree: rank 0 has 0x..., rank 1 has 0x...".
// Every rank calls it; every rank throws, so none is left waiting in a later collective.
void check_same_on_all_ranks(std::string_view what, uint64_t value);
void check_same_on_all_ranks(Communicator& comm, std::string_view what, uint64_t value);

// Called on the way out of a program after an error: when this process is one of several ranks
// (world() was started and has size > 1), ends the whole job with exit_code, since a normal exit
// would wait in MPI_Finalize for ranks that may wait for this one. Otherwise returns.
void end_job_after_error(int exit_code);

// Built with MPI?
bool built_with_mpi();

// A single-process communicator (size 1), whatever world() is: for a run that must train alone
// inside an mpirun launch (tests that compare N ranks with one process).
Communicator& single_process();

}  // namespace megagrad::dist
