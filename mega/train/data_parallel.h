// Data-parallel training: N ranks (processes started by mpirun, or GPUs) each hold the same model,
// compute the gradient of their share of every global batch, and sum the gradients before the
// optimizer step, so that every rank takes the same step and keeps the same weights.
//
// The pieces the training loop (trainer.cpp) uses:
//   - GradientSync: sums the gradients over the ranks in buckets. A bucket starts its all-reduce
//     as soon as the backward has produced all of its gradients (a post-accumulate-grad hook on
//     each parameter), so communication overlaps the rest of the backward where the
//     communicator can do that (MPI_Iallreduce). Buckets start in a fixed order on every rank.
//   - run_on_root: work that only rank 0 may do (preparing the run folder), whose error every
//     rank must raise, so that no rank is left waiting in a collective.
//   - broadcast_from_root / replicas_hash: the same weights everywhere at start-up, and a check.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include "backends/dist/communicator.h"
#include "core/hash.h"
#include "mega/module.h"

namespace megagrad {

class GradientSync {
 public:
  // Buckets of at most bucket_bytes of gradient each (one parameter bigger than that gets its
  // own), in reverse parameter order: the order in which the backward finishes them, roughly.
  GradientSync(const NamedTensors& params, dist::Communicator& comm, int64_t bucket_bytes = 1 << 20);
  ~GradientSync();  // removes the hooks; waits for anything in flight
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Call before the last backward of a step (the last micro-batch): from then on, a parameter's
  // accumulated gradient goes into its bucket, and a full bucket starts its all-reduce.
  void arm();
  // After the last backward: starts the buckets not started yet (a gradient that never came
  // counts as zero), waits for all, and writes the sums into .grad. A parameter that got no
  // gradient on any rank keeps none, as in one process.
  void finish();
  int64_t num_buckets() const { return (int64_t)buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // of each gradient in flat
    int64_t numel = 0;             // of the gradients; flat holds one "has a gradient" flag per parameter after them
    Tensor flat;                   // on the parameters' device
    Tensor staged;                 // a CPU copy, when the communicator cannot reduce on that device
    size_t ready = 0;
    bool started = false;
    std::unique_ptr<dist::PendingCollective> pending;
  };
  void on_gradient(size_t param);
  void start(Bucket& b);
  void start_ready_buckets();  // in bucket order: the ranks must start the same collectives in the same order

  std::vector<Tensor> params_;
  std::vector<size_t> bucket_of_;  // per parameter
  std::vector<Bucket> buckets_;
  size_t next_ = 0;                // the first bucket not started yet
  bool armed_ = false;
  std::vector<char> seen_;         // per parameter: its gradient came in this armed pass
  dist::Communicator& comm_;
};

// Runs fn on rank 0 only and returns its result on every rank. When fn throws on rank 0, every
// rank throws the same message (a RunExistsError stays one), so that none waits for the others.
std::string run_on_root(dist::Communicator& comm, const std::function<std::string()>& fn);

// Every rank gets rank 0's values of these tensors (weights and buffers), in place.
void broadcast_from_root(dist::Communicator& comm, const NamedTensors& tensors);

// A hash of the bytes of every tensor (names included): equal on every rank when the replicas hold
// the same weights.
uint64_t replicas_hash(const NamedTensors& tensors);

}  // namespace megagrad
