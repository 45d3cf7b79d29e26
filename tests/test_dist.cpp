// backends/dist/communicator.h in a single process: the stand-in's collectives, and the launcher
// detection that refuses an mpirun launch of a build without MPI. (Across processes:
// tests/dist/dist_check.cpp under mpirun, ctest mpi_communicator_2_ranks.)
#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include "backends/dist/communicator.h"
#include "core/tensor.h"

using namespace megagrad;

TEST_CASE("dist: without mpirun, world() is the single-process stand-in", "[dist]") {
  if (dist::launcher_world_size() > 1) SUCCEED("running under mpirun: the MPI check covers this");
  dist::Communicator& c = dist::world();
  REQUIRE(c.rank() == 0);
  REQUIRE(c.size() == 1);
  REQUIRE(c.name() == "single process");
  Tensor t = Tensor::from_vector({1.5, -2.0}, {2}, DType::Float32);
  c.all_reduce_sum(t);  // the sum over one rank: unchanged
  REQUIRE(t.to_vector() == std::vector<double>{1.5, -2.0});
  std::string bytes = "abc";
  c.broadcast_bytes(bytes, 0);
  REQUIRE(bytes == "abc");
  REQUIRE(c.all_gather(7) == std::vector<uint64_t>{7});
  REQUIRE_NOTHROW(dist::check_same_on_all_ranks("config", 5));
  REQUIRE_THROWS_WITH(c.broadcast(t, 1), Catch::Contains("[broadcast] root rank 1"));
  Tensor ints = Tensor::zeros({2}, DType::Int64);
  REQUIRE_THROWS_WITH(c.all_reduce_sum(ints), Catch::Contains("[all_reduce_sum]") && Catch::Contains("int64"));
}

TEST_CASE("dist: the launcher's rank count comes from mpirun's environment", "[dist]") {
  // Only the parsing: world() itself is decided once per process.
  const char* saved = std::getenv("OMPI_COMM_WORLD_SIZE");
  const std::string keep = saved ? saved : "";
  setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
  REQUIRE(dist::launcher_world_size() == 4);
  setenv("OMPI_COMM_WORLD_SIZE", "four", 1);
  const int fallback = dist::launcher_world_size();  // not a number: the next variable, or 1
  if (saved) setenv("OMPI_COMM_WORLD_SIZE", keep.c_str(), 1);
  else unsetenv("OMPI_COMM_WORLD_SIZE");
  bool other_vars = false;
  for (const char* v : {"PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"}) other_vars = other_vars || std::getenv(v);
  if (!other_vars) REQUIRE(fallback == 1);
}
