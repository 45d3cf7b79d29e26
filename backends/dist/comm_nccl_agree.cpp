// The checks the NCCL communicator makes before each collective (nccl.h, detail::). They need no
// GPU and no NCCL, so they are built in every configuration and tested on CPU tensors over MPI
// (tests/dist/nccl_check.cpp --agreement, ctest nccl_agreement_2_ranks), here as well as on GPUs.
#include <string>
#include <vector>
#include "backends/dist/nccl.h"
#include "core/dtype.h"
#include "core/error.h"

namespace megagrad::dist::detail {

namespace {

// What every rank must agree on, packed into all_gather's uint64: the dtype (bits 0-7), CUDA or
// CPU (bit 8), the root of a broadcast (bits 9-23) and the element count (bits 24-63).
// kRefused: this rank found its own input wrong.
constexpr uint64_t kRefused = ~uint64_t(0);
uint64_t pack(const Tensor& t, int root) {
  return ((uint64_t)t.numel() << 24) | ((uint64_t)(root & 0x7fff) << 9) | ((uint64_t)!t.device().is_cpu() << 8) |
         (uint64_t)t.dtype();
}
std::string unpack(uint64_t v, bool with_root) {
  std::string s = fmt::format("{} {} elements on {}", v >> 24, dtype_name((DType)(v & 0xff)),
                              (v >> 8) & 1 ? "CUDA" : "the CPU");
  if (with_root) s += fmt::format(" from root {}", (v >> 9) & 0x7fff);
  return s;
}

}  // namespace

std::string collective_problem(const Tensor& t, int root, bool sum, int world_size, int device) {
  if (root < 0 || root >= world_size) return fmt::format("root rank {} is not in [0, {})", root, world_size);
  if (!t.defined()) return "undefined tensor";
  if (sum && t.dtype() != DType::Float32 && t.dtype() != DType::Float64)
    return fmt::format("expected a float32 or float64 tensor, got {}", t.desc());
  if (!t.is_contiguous())
    return fmt::format("{} is not contiguous: the collective takes a flat buffer (use .contiguous())", t.desc());
  if (!t.device().is_cpu() && t.device().index != device)
    return fmt::format("{} is on {}, but this rank's NCCL communicator drives cuda:{}: one GPU per rank", t.desc(),
                       t.device(), device);
  return "";
}

void agree_on_collective(Communicator& w, std::string_view op, const Tensor& t, int root, bool sum,
                         const std::string& problem) {
  if (w.size() == 1) {
    MG_CHECK(problem.empty(), op, "{}", problem);
    return;
  }
  const std::vector<uint64_t> all = w.all_gather(problem.empty() ? pack(t, root) : kRefused);
  MG_CHECK(problem.empty(), op, "{} (rank {} of {})", problem, w.rank(), w.size());
  std::string list;
  bool same = true;
  for (size_t r = 0; r < all.size(); ++r) {
    MG_CHECK(all[r] != kRefused, op, "rank {} refused the collective (its own error says why); rank {} has {}", r,
             w.rank(), t.desc());
    same = same && all[r] == all[0];
    list += fmt::format("{}rank {}: {}", r ? ", " : "", r, unpack(all[r], !sum));
  }
  MG_CHECK(same, op, "ranks disagree: {}", list);
}

}  // namespace megagrad::dist::detail
