// The NCCL communicator (backends/dist/nccl.h) across the ranks of one mpirun launch on one host:
//   mpirun -np 2 build/megagrad_nccl_check      (ctest: nccl_communicator_2_ranks; bench/gpu_check.sh)
//   mpirun -np 2 build/megagrad_nccl_check --agreement      (ctest: nccl_agreement_2_ranks)
// --agreement: the checks before each collective, on CPU tensors (no GPU or NCCL needed): when
// one rank's input is wrong or the ranks' inputs differ, every rank throws, and all go on.
// With at least as many GPUs as ranks: every collective on CUDA tensors against what the ranks'
// inputs make it, and bad input (ranks that disagree, one rank that refuses) throwing on every
// rank instead of hanging. With fewer GPUs than ranks: every rank must refuse to share a GPU.
// Without a GPU: "nccl check: skipped" (ctest shows it as skipped).
// Rank 0 prints "nccl check: N ranks passed" only when every rank passed (the result is summed).
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include "backends/cuda/cuda.h"
#include "backends/dist/nccl.h"
#include "core/error.h"
#include "core/tensor.h"
#include "tests/dist/expect.h"

using namespace megagrad;

using dist_test::expect;
using dist_test::failures;

namespace {
// The message `f` throws, or "" when it does not throw.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

// Every rank checks its own CPU tensor as the NCCL communicator would (as if it drove cuda:0),
// then they agree: the error this rank throws, or "".
std::string agreement_error(std::string_view op, const Tensor& t, int root) {
  const bool sum = op == "all_reduce_sum";
  return error_of([&] {
    dist::detail::agree_on_collective(dist::world(), op, t, root, sum,
                                      dist::detail::collective_problem(t, root, sum, dist::world().size(), 0));
  });
}

int agreement_check() {
  dist::Communicator& w = dist::world();
  const int r = w.rank(), n = w.size();
  Tensor same = Tensor::zeros({4}, DType::Float32);
  expect(agreement_error("all_reduce_sum", same, 0).empty(), "equal inputs agree");
  expect(agreement_error("broadcast", same, n - 1).empty(), "equal broadcasts agree");
  // Element counts that differ.
  const std::string e1 = agreement_error("all_reduce_sum", Tensor::zeros({r == 0 ? 3 : 4}, DType::Float32), 0);
  expect(has(e1, "[all_reduce_sum] ranks disagree: rank 0: 3 float32 elements on the CPU, rank 1: 4 float32"),
         "uneven counts, got: " + e1);
  // Dtypes that differ (a broadcast of any dtype).
  const std::string e2 =
      agreement_error("broadcast", Tensor::zeros({4}, r == 0 ? DType::Float64 : DType::Float32), 0);
  expect(has(e2, "[broadcast] ranks disagree: rank 0: 4 float64 elements on the CPU from root 0, rank 1: 4 float32"),
         "dtypes that differ, got: " + e2);
  // Roots that differ.
  const std::string e3 = agreement_error("broadcast", same, r == 0 ? 0 : 1);
  expect(has(e3, "[broadcast] ranks disagree") && has(e3, "from root 1"), "roots that differ, got: " + e3);
  // One rank's bad input: it names its own error, the others name that rank.
  const std::string e4 = agreement_error("all_reduce_sum", Tensor::zeros({4}, r == 0 ? DType::Int64 : DType::Float32), 0);
  expect(r == 0 ? has(e4, "[all_reduce_sum] expected a float32 or float64 tensor, got (4) int64 cpu (rank 0 of")
                : has(e4, "[all_reduce_sum] rank 0 refused the collective"),
         "one rank's bad dtype, got: " + e4);
  Tensor m = Tensor::zeros({3, 4}, DType::Float32);
  const std::string e5 = agreement_error("all_reduce_sum", r == n - 1 ? m.t() : m, 0);
  expect(r == n - 1 ? has(e5, "(4,3) float32 cpu is not contiguous")
                    : has(e5, fmt::format("[all_reduce_sum] rank {} refused the collective", n - 1)),
         "one rank's transposed view, got: " + e5);
  const std::string e6 = agreement_error("broadcast", same, r == n - 1 ? n : 0);
  expect(r == n - 1 ? has(e6, fmt::format("[broadcast] root rank {} is not in [0, {})", n, n))
                    : has(e6, fmt::format("[broadcast] rank {} refused the collective", n - 1)),
         "one rank's root out of range, got: " + e6);
  // Every rank got here: none is left waiting. The count of failures, summed over MPI.
  Tensor all_failures = Tensor::scalar(failures, DType::Float64);
  w.all_reduce_sum(all_failures);
  if (r == 0 && all_failures.item() == 0) std::printf("nccl agreement check: %d ranks passed\n", n);
  return all_failures.item() == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  dist::Communicator& w = dist::world();
  const int r = w.rank(), n = w.size();
  if (argc > 1 && std::string(argv[1]) == "--agreement") return agreement_check();
  if (!dist::built_with_nccl() || !cuda_available()) {
    if (r == 0) std::printf("nccl check: skipped: %s\n", dist::built_with_nccl() ? cuda_status().c_str() : "built without NCCL");
    return 0;
  }

  // Fewer GPUs than ranks on this host (one H200: any 2 ranks): NCCL would hang; every rank throws.
  if (n > cuda_device_count()) {
    const std::string e = error_of([] { dist::nccl_world(); });
    expect(has(e, "[nccl] ranks ") && has(e, "would share one GPU"), "refuses to share a GPU, got: " + e);
    Tensor bad = Tensor::scalar(failures, DType::Float64);
    w.all_reduce_sum(bad);  // MPI: still usable after the refusal
    if (r == 0 && bad.item() == 0) std::printf("nccl check: %d ranks refused to share a GPU, as NCCL requires\n", n);
    return bad.item() == 0 ? 0 : 1;
  }

  dist::Communicator& c = dist::nccl_world();
  const int dev = dist::nccl_device();
  expect(c.name() == "NCCL" && c.rank() == r && c.size() == n, "rank and size are MPI's");

  for (DType dt : {DType::Float32, DType::Float64}) {
    // all_reduce_sum: rank r holds (r + 1) (i + 1); the sum is (i + 1) n (n + 1) / 2, exact.
    std::vector<double> v(1 << 16), want(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      v[i] = (r + 1.0) * (double)(i % 1000 + 1);
      want[i] = (double)(i % 1000 + 1) * n * (n + 1) / 2.0;
    }
    Tensor t = Tensor::from_vector(v, {64, 1024}, dt).cuda(dev);
    c.all_reduce_sum(t);
    expect(t.cpu().to_vector() == want, std::string("all_reduce_sum ") + std::string(dtype_name(dt)));
    // broadcast from the last rank.
    Tensor b = Tensor::from_vector({(double)r, 2.0 * r, 3.0 * r}, {3}, dt).cuda(dev);
    c.broadcast(b, n - 1);
    expect(b.cpu().to_vector() == std::vector<double>{(double)(n - 1), 2.0 * (n - 1), 3.0 * (n - 1)},
           std::string("broadcast ") + std::string(dtype_name(dt)));
  }
  // The non-blocking form (the trainer's gradient buckets), on the GPU and on the CPU (MPI).
  Tensor dev_bucket = Tensor::full({1000}, r + 1.0, DType::Float32, Device::cuda(dev));
  Tensor host_bucket = Tensor::full({1000}, r + 1.0, DType::Float64);
  auto p1 = c.start_all_reduce_sum(dev_bucket);
  auto p2 = c.start_all_reduce_sum(host_bucket);
  p1->wait(), p2->wait();
  expect(dev_bucket.cpu().to_vector() == std::vector<double>(1000, n * (n + 1) / 2.0), "start_all_reduce_sum on the GPU");
  expect(host_bucket.to_vector() == std::vector<double>(1000, n * (n + 1) / 2.0), "start_all_reduce_sum on the CPU");
  // CPU tensors go to MPI.
  Tensor host = Tensor::from_vector({(double)r + 1}, {1}, DType::Float64);
  c.all_reduce_sum(host);
  expect(host.item() == n * (n + 1) / 2.0, "all_reduce_sum of a CPU tensor (MPI)");

  if (n > 1) {
    // Element counts that differ: every rank throws (NCCL would read past the shorter buffer).
    Tensor uneven = Tensor::zeros({r == 0 ? 3 : 4}, DType::Float32, Device::cuda(dev));
    const std::string e1 = error_of([&] { c.all_reduce_sum(uneven); });
    expect(has(e1, "[all_reduce_sum] ranks disagree: rank 0: 3 float32 elements on CUDA, rank 1: 4"),
           "uneven counts, got: " + e1);
    // One rank's bad input: it names its own error, the others name the rank.
    Tensor maybe_bad = r == 0 ? Tensor::zeros({4}, DType::Int64, Device::cuda(dev))
                              : Tensor::zeros({4}, DType::Float32, Device::cuda(dev));
    const std::string e2 = error_of([&] { c.all_reduce_sum(maybe_bad); });
    expect(r == 0 ? has(e2, "[all_reduce_sum] expected a float32 or float64 tensor, got (4) int64")
                  : has(e2, "[all_reduce_sum] rank 0 refused the collective"),
           "one rank's bad dtype, got: " + e2);
    // Broadcast roots that differ.
    Tensor b = Tensor::zeros({2}, DType::Float32, Device::cuda(dev));
    const std::string e3 = error_of([&] { c.broadcast(b, r == 0 ? 0 : 1); });
    expect(has(e3, "[broadcast] ranks disagree") && has(e3, "from root 1"), "roots that differ, got: " + e3);
  }
  // After the refusals, the communicator still works.
  Tensor ok = Tensor::ones({8}, DType::Float32, Device::cuda(dev));
  c.all_reduce_sum(ok);
  expect(ok.cpu().to_vector() == std::vector<double>(8, (double)n), "all_reduce_sum after the refusals");

  Tensor all_failures = Tensor::scalar(failures, DType::Float64);
  w.all_reduce_sum(all_failures);
  if (r == 0 && all_failures.item() == 0) std::printf("nccl check: %d ranks passed\n", n);
  return all_failures.item() == 0 ? 0 : 1;
}
