// The MPI communicator (backends/dist/communicator.h) across the ranks of one mpirun launch:
//   mpirun -np 2 build/megagrad_dist_check      (ctest: mpi_communicator_2_ranks)
// Each rank checks every collective against what the ranks' inputs make it; rank 0 prints
// "dist check: N ranks passed" only when every rank passed (the result is all-reduced).
#include <cmath>
#include <cstdio>
#include <string>
#include "backends/dist/communicator.h"
#include "core/error.h"
#include "tests/dist/expect.h"
#include "core/tensor.h"

using namespace megagrad;

using dist_test::expect;
using dist_test::failures;

int main() {
  dist::Communicator& c = dist::world();
  const int r = c.rank(), n = c.size();
  expect(c.name() == "MPI", "the communicator is MPI");
  expect(n == dist::launcher_world_size(), "size matches the launcher's");

  for (DType dt : {DType::Float32, DType::Float64}) {
    // all_reduce_sum: rank r holds (r + 1) * (i + 1); the sum is (i + 1) n (n + 1) / 2.
    std::vector<double> v(1000);
    for (size_t i = 0; i < v.size(); ++i) v[i] = (r + 1.0) * (double)(i + 1);
    Tensor t = Tensor::from_vector(v, {10, 100}, dt);
    c.all_reduce_sum(t);
    std::vector<double> got = t.to_vector();
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double want = (double)(i + 1) * n * (n + 1) / 2.0;
      const double d = std::fabs(got[i] - want);
      worst = d > worst || !(d == d) ? d : worst;  // NaN counts as the worst
    }
    expect(worst == 0, std::string("all_reduce_sum ") + std::string(dtype_name(dt)));  // small integers: exact
  }

  // broadcast from the last rank: every rank ends with its values.
  Tensor b = Tensor::from_vector({(double)r, 2.0 * r, 3.0 * r}, {3}, DType::Float64);
  c.broadcast(b, n - 1);
  expect(b.to_vector() == std::vector<double>{(double)(n - 1), 2.0 * (n - 1), 3.0 * (n - 1)}, "broadcast");

  std::string bytes = r == 0 ? std::string("configuration of rank 0") : std::string(5, 'x');
  c.broadcast_bytes(bytes, 0);
  expect(bytes == "configuration of rank 0", "broadcast_bytes");

  const std::vector<uint64_t> all = c.all_gather(100 + (uint64_t)r);
  bool gathered = (int)all.size() == n;
  for (int i = 0; gathered && i < n; ++i) gathered = all[(size_t)i] == 100 + (uint64_t)i;
  expect(gathered, "all_gather");

  // Agreement passes; disagreement throws on every rank, naming each rank's value.
  bool threw = false;
  try {
    dist::check_same_on_all_ranks("config", 42);
  } catch (const Error&) {
    threw = true;
  }
  expect(!threw, "check_same_on_all_ranks accepts equal values");
  std::string message;
  try {
    dist::check_same_on_all_ranks("config", (uint64_t)r);
  } catch (const Error& e) {
    message = e.what();
  }
  expect(message.find("[config] ranks disagree") != std::string::npos && message.find("rank 1 has") != std::string::npos,
         "check_same_on_all_ranks throws on every rank: got '" + message + "'");

  // Errors before any communication: a GPU-free bad call is refused by name.
  bool refused = false;
  try {
    Tensor ints = Tensor::zeros({3}, DType::Int64);
    c.all_reduce_sum(ints);
  } catch (const Error& e) {
    refused = std::string(e.what()).find("[all_reduce_sum]") != std::string::npos;
  }
  expect(refused, "all_reduce_sum refuses an int64 tensor");

  // Every rank's result, summed: rank 0 reports the whole job.
  Tensor f = Tensor::from_vector({(double)failures}, {1}, DType::Float64);
  c.all_reduce_sum(f);
  c.barrier();
  if (r == 0) {
    if (f.to_vector()[0] == 0) std::printf("dist check: %d ranks passed\n", n);
    else std::printf("dist check: %g failures over %d ranks\n", f.to_vector()[0], n);
  }
  return failures == 0 ? 0 : 1;
}
