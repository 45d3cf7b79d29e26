// The NCCL communicator (backends/dist/nccl.h) in one process: a world of 1 rank on one GPU.
// Without a device (this machine, CI) the GPU cases are visible skips; what can run here is the
// error of a build without NCCL, or, with NCCL built, the error of a machine without a GPU.
// Across ranks: tests/dist/nccl_check.cpp under mpirun (bench/gpu_check.sh).
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>
#include "tests/cuda_test_util.h"
#include "backends/cuda/cuda.h"
#include "backends/dist/nccl.h"
#include "core/tensor.h"

using namespace megagrad;
using Catch::Matchers::Contains;

namespace {

// True (after a visible skip) when the NCCL communicator cannot exist here.
bool skip_without_nccl_gpu() {
  if (!dist::built_with_nccl()) {
    test::skip("megagrad was built without NCCL");
    return true;
  }
  return test::skip_without_cuda();
}

}  // namespace

TEST_CASE("nccl: a build without NCCL says so, and why", "[dist][nccl]") {
  if (dist::built_with_nccl()) return test::skip("built with NCCL: the stub's error cannot occur");
  REQUIRE_THROWS_WITH(dist::nccl_world(), Contains("[nccl] this megagrad was built without NCCL: "));
  REQUIRE_THROWS_WITH(dist::nccl_device(), Contains("[nccl] this megagrad was built without NCCL: "));
  // The reason CMake compiled in: which of CUDA, MPI or NCCL itself was missing (or turned off).
  std::string why;
  try {
    dist::nccl_world();
  } catch (const Error& e) {
    why = e.what();
  }
  const bool names_cause = why.find("CUDA") != std::string::npos || why.find("MPI") != std::string::npos ||
                           why.find("nccl.h") != std::string::npos || why.find("MEGAGRAD_NCCL=OFF") != std::string::npos;
  INFO(why);
  REQUIRE(names_cause);
}

TEST_CASE("nccl: built with NCCL but without a GPU, nccl_world() says the GPU is missing", "[dist][nccl]") {
  if (!dist::built_with_nccl()) return test::skip("megagrad was built without NCCL");
  if (cuda_available()) return test::skip("a CUDA device is present: the [cuda] NCCL tests use it");
  REQUIRE_THROWS_WITH(dist::nccl_world(), Contains("[nccl] no CUDA device on host ") && Contains("one GPU per rank"));
  // A failed creation is not remembered as a communicator: the next call fails the same way.
  REQUIRE_THROWS_WITH(dist::nccl_device(), Contains("[nccl] no CUDA device"));
}

TEST_CASE("nccl: the checks before each collective refuse bad input on the CPU too", "[dist][nccl]") {
  // As a rank that drives cuda:0 in a world of 1 (detail:: runs in every build, without a GPU).
  const auto problem = [](const Tensor& t, int root, bool sum) {
    return dist::detail::collective_problem(t, root, sum, 1, 0);
  };
  Tensor ok = Tensor::zeros({3, 4}, DType::Float32);
  REQUIRE(problem(ok, 0, true).empty());
  REQUIRE(problem(Tensor::zeros({2}, DType::Int64), 0, false).empty());  // broadcast: any dtype
  REQUIRE_THAT(problem(Tensor::zeros({2}, DType::Int64), 0, true),
               Contains("expected a float32 or float64 tensor, got (2) int64 cpu"));
  REQUIRE_THAT(problem(ok.t(), 0, true), Contains("(4,3) float32 cpu is not contiguous"));
  REQUIRE_THAT(problem(ok, 1, false), Contains("root rank 1 is not in [0, 1)"));
  REQUIRE_THAT(problem(ok, -1, false), Contains("root rank -1 is not in [0, 1)"));
  REQUIRE_THAT(problem(Tensor(), 0, true), Contains("undefined tensor"));
  // One rank: its own problem is the error, prefixed with the op; none, no error.
  if (dist::world().size() != 1) return test::skip("under mpirun: nccl_agreement_2_ranks covers more ranks");
  REQUIRE_NOTHROW(dist::detail::agree_on_collective(dist::world(), "all_reduce_sum", ok, 0, true, ""));
  REQUIRE_THROWS_WITH(dist::detail::agree_on_collective(dist::world(), "broadcast", ok, 1, false, problem(ok, 1, false)),
                      "[broadcast] root rank 1 is not in [0, 1)");
}

TEST_CASE("nccl: 1 rank, all_reduce_sum and broadcast of CUDA tensors keep their values", "[cuda][dist][nccl]") {
  if (skip_without_nccl_gpu()) return;
  dist::Communicator& c = dist::nccl_world();
  REQUIRE(c.name() == "NCCL");
  REQUIRE(c.size() == dist::world().size());
  if (c.size() != 1) return test::skip("more than one rank: tests/dist/nccl_check.cpp covers that");
  REQUIRE(c.rank() == 0);
  const int dev = dist::nccl_device();
  REQUIRE(dev >= 0);
  REQUIRE(dev < cuda_device_count());

  for (DType dt : {DType::Float32, DType::Float64}) {
    // The middle row of a (3,4) matrix: contiguous, at an offset into its storage. The sum over
    // one rank is the identity; the rows around it must stay untouched.
    const std::vector<double> values = {1.5, -2, 3.25, 1e6, 0.125, -7, 8, 9, -0.5, 11, 12.75, -13};
    Tensor m = Tensor::from_vector(values, {3, 4}, dt).cuda(dev);
    Tensor row = m.narrow(0, 1, 1);
    REQUIRE(row.is_contiguous());
    c.all_reduce_sum(row);
    REQUIRE(m.cpu().to_vector() == values);
    c.broadcast(row, 0);
    REQUIRE(m.cpu().to_vector() == values);
    // A large buffer (NCCL splits it into chunks and channels) and an empty one.
    Tensor big = Tensor::arange(0, 1 << 20, 1, dt).cuda(dev);
    c.all_reduce_sum(big);
    REQUIRE(big.cpu().to_vector() == Tensor::arange(0, 1 << 20, 1, dt).to_vector());
    Tensor empty = Tensor::zeros({0, 3}, dt, Device::cuda(dev));
    REQUIRE_NOTHROW(c.all_reduce_sum(empty));
  }
  // The non-blocking form (the data-parallel trainer's buckets): queued on the stream, so the
  // copy back to the host after it sees the result.
  REQUIRE(c.reduces_on(Device::cuda(dev)));
  REQUIRE(c.reduces_on(Device::cpu()));
  Tensor bucket = Tensor::from_vector({0.25, -4}, {2}, DType::Float32).cuda(dev);
  std::unique_ptr<dist::PendingCollective> pending = c.start_all_reduce_sum(bucket);
  pending->wait();
  REQUIRE(bucket.cpu().to_vector() == std::vector<double>{0.25, -4});
  // Broadcast takes every dtype (bool as bytes).
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{5, -3, 1LL << 40}, {3}).cuda(dev);
  c.broadcast(idx, 0);
  REQUIRE(idx.cpu().to_int_vector() == std::vector<int64_t>{5, -3, 1LL << 40});

  // CPU tensors go to world() (the single-process stand-in here, MPI under mpirun).
  Tensor host = Tensor::from_vector({1.5, -2.0}, {2}, DType::Float32);
  c.all_reduce_sum(host);
  REQUIRE(host.to_vector() == std::vector<double>{1.5, -2.0});
  c.broadcast(host, 0);
  REQUIRE(host.to_vector() == std::vector<double>{1.5, -2.0});
  std::string bytes = "id";
  c.broadcast_bytes(bytes, 0);
  REQUIRE(bytes == "id");
  REQUIRE(c.all_gather(42) == std::vector<uint64_t>{42});
  REQUIRE_NOTHROW(c.barrier());
  // The same communicator at every call.
  REQUIRE(&dist::nccl_world() == &c);
}

TEST_CASE("nccl: bad input is refused before NCCL is called, naming the op, shape, dtype and device",
          "[cuda][dist][nccl]") {
  if (skip_without_nccl_gpu()) return;
  dist::Communicator& c = dist::nccl_world();
  if (c.size() != 1) return test::skip("more than one rank: tests/dist/nccl_check.cpp covers that");
  const int dev = dist::nccl_device();
  const std::string on = fmt::format("cuda:{}", dev);

  // The sum takes float32/float64 only.
  Tensor ints = Tensor::zeros({2, 3}, DType::Int64, Device::cuda(dev));
  REQUIRE_THROWS_WITH(c.all_reduce_sum(ints),
                      Contains("[all_reduce_sum]") && Contains("(2,3) int64 " + on) && Contains("float32 or float64"));
  // NCCL sees a flat buffer: a transposed view would be summed in the wrong order of elements.
  Tensor m = Tensor::zeros({3, 4}, DType::Float32, Device::cuda(dev));
  Tensor mt = m.t();
  REQUIRE_THROWS_WITH(c.all_reduce_sum(mt), Contains("[all_reduce_sum]") && Contains("(4,3) float32 " + on) &&
                                                Contains("not contiguous"));
  REQUIRE_THROWS_WITH(c.broadcast(mt, 0), Contains("[broadcast]") && Contains("not contiguous"));
  // A root outside the world, and an undefined tensor.
  REQUIRE_THROWS_WITH(c.broadcast(m, 1), Contains("[broadcast] root rank 1 is not in [0, 1)"));
  Tensor undefined;
  REQUIRE_THROWS_WITH(c.all_reduce_sum(undefined), Contains("[all_reduce_sum] undefined tensor"));
  // The CPU path refuses what MPI would.
  Tensor host_ints = Tensor::zeros({2}, DType::Int64);
  REQUIRE_THROWS_WITH(c.all_reduce_sum(host_ints), Contains("[all_reduce_sum]") && Contains("(2) int64 cpu"));
  // A tensor on another GPU than this rank's.
  if (cuda_device_count() > 1) {
    const int other = (dev + 1) % cuda_device_count();
    Tensor elsewhere = Tensor::zeros({5}, DType::Float32, Device::cuda(other));
    REQUIRE_THROWS_WITH(c.all_reduce_sum(elsewhere),
                        Contains("[all_reduce_sum]") && Contains(fmt::format("cuda:{}", other)) &&
                            Contains("drives " + on));
  }
  // After the refusals, the communicator still works.
  Tensor ok = Tensor::ones({4}, DType::Float32, Device::cuda(dev));
  c.all_reduce_sum(ok);
  REQUIRE(ok.cpu().to_vector() == std::vector<double>(4, 1.0));
}
