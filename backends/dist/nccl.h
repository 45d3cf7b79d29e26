// The NCCL communicator: data-parallel collectives between GPUs, one rank per GPU.
//
// nccl_world() is the NCCL twin of world() (communicator.h) for a run whose tensors live on CUDA
// devices. Each rank of the MPI launch drives one GPU: its local rank on the host (from mpirun's
// environment: OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, SLURM_LOCALID) modulo the host's GPU
// count. Rank 0 creates NCCL's unique id and world().broadcast_bytes sends it to the others;
// then every rank calls ncclCommInitRank. A single-process run is a world of 1 rank.
//
// all_reduce_sum and broadcast of CUDA tensors (contiguous, on the rank's device; float32 or
// float64 for the sum) go through NCCL, queued on the library's stream of that device
// (backends/cuda/stream.h), so they are ordered with the kernels that made and will read them.
// CPU tensors, broadcast_bytes, all_gather and barrier go to world() (MPI).
//
// Errors are megagrad::Errors prefixed with the op ("[all_reduce_sum] ..."), thrown before NCCL
// is called whenever the input is wrong, since NCCL on a bad buffer hangs or corrupts memory
// rather than failing. Before each collective the ranks gather each other's verdicts on their
// own input and their element counts, dtypes, device kinds and roots (one small MPI all-gather):
// when any rank refuses or they differ, all throw, instead of some waiting for the others.
// At exit, the NCCL communicator is destroyed before MPI is finalised.
#pragma once
#include <string>
#include "backends/dist/communicator.h"

namespace megagrad::dist {

// Built with NCCL (CMake: MEGAGRAD_NCCL, found with the CUDA backend and MPI)?
bool built_with_nccl();
// For `megagrad info`: "built: yes (NCCL 2.28.9, ...)", or "not built: <what was missing>".
std::string nccl_build_info();

// The NCCL communicator of this process, created at the first call (a collective: every rank
// must call it). Throws "[nccl] ..." when this build has no NCCL (saying what was missing at
// configure time), when there is no CUDA device, or when two ranks would share one GPU.
Communicator& nccl_world();

// The CUDA device index this rank's NCCL communicator drives (creating it, as nccl_world(), at
// the first call): the device for the model, the data and the gradients of this rank.
int nccl_device();

namespace detail {

// The checks before each NCCL collective, apart so that they can be tested without a GPU.
// Why t cannot take part in a collective (all_reduce_sum when `sum`, else broadcast from `root`)
// on a rank that drives CUDA device `device`, or "" when it can.
std::string collective_problem(const Tensor& t, int root, bool sum, int world_size, int device);
// Every rank calls it with its own `problem` ("" when none): it throws "[op] ..." on every rank
// when any rank has a problem, or when the ranks' element counts, dtypes, devices kinds (CPU or
// CUDA) or broadcast roots differ; otherwise it returns on every rank. One all_gather on `w`.
void agree_on_collective(Communicator& w, std::string_view op, const Tensor& t, int root, bool sum,
                         const std::string& problem);

}  // namespace detail

}  // namespace megagrad::dist
