// The single-process pieces of data-parallel training (mega/train/data_parallel.h): the
// post-accumulate-grad hook its buckets start from, random masks drawn per batch shard, and
// GradientSync over one rank. (Across processes: tests/dist/train_check.cpp, ctest mpi_train_2_ranks.)
#include <catch2/catch.hpp>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/rng.h"
#include "mega/train/data_parallel.h"

using namespace megagrad;
using Catch::Contains;

TEST_CASE("post-accumulate-grad hook: once per backward, after every path's share is summed", "[data_parallel]") {
  Tensor w = Tensor::from_vector({1.0, 2.0}, {2}, DType::Float64).requires_grad_();
  std::vector<std::vector<double>> seen;
  w.set_post_accumulate_grad_hook([&](const Tensor& leaf) { seen.push_back(leaf.grad().to_vector()); });
  // w reaches the loss along two paths: d/dw of sum(3w) + sum(w^2) = 3 + 2w.
  add(sum(mul_scalar(w, 3.0)), sum(mul(w, w))).backward();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == std::vector<double>{5.0, 7.0});
  sum(w).backward();  // a second pass: the hook sees the accumulated .grad
  REQUIRE(seen.size() == 2);
  CHECK(seen[1] == std::vector<double>{6.0, 8.0});
  w.set_post_accumulate_grad_hook(nullptr);  // removed
  sum(w).backward();
  CHECK(seen.size() == 2);
  Tensor y = mul_scalar(w, 2.0);
  REQUIRE_THROWS_WITH(y.set_post_accumulate_grad_hook([](const Tensor&) {}),
                      Contains("[set_post_accumulate_grad_hook]") && Contains("leaf"));
}

TEST_CASE("batch shards: each shard's dropout mask is its rows of the whole batch's mask", "[data_parallel]") {
  // A (7, 3, 5) batch split 3 + 4, as 2 ranks split it: the shards' masks, stacked, are the mask
  // one process draws, and every shard's generator ends at the same offset as the whole batch's.
  Tensor x = Tensor::ones({7, 3, 5}, DType::Float64);
  Generator whole(11);
  const std::vector<double> want = dropout(x, 0.5, true, &whole).to_vector();
  std::vector<double> got;
  for (auto [first, rows] : {std::pair<int64_t, int64_t>{0, 3}, {3, 4}}) {
    Generator g(11);
    BatchShardScope scope(g, first, rows, 7);
    const std::vector<double> part = dropout(x.narrow(0, first, rows), 0.5, true, &g).to_vector();
    got.insert(got.end(), part.begin(), part.end());
    CHECK(g.offset() == whole.offset());
  }
  CHECK(got == want);
  // Outside a scope the generator draws as before; a mask whose size is no multiple of the shard's
  // rows (its outer dimension is not the batch) is an error, not a silently different mask.
  Generator g(11);
  {
    BatchShardScope scope(g, 0, 3, 7);
    REQUIRE_THROWS_WITH(dropout(Tensor::ones({5}, DType::Float64), 0.5, true, &g),
                        Contains("[dropout]") && Contains("shard of 3 rows"));
  }
  CHECK(g.advance_batch(10, "test") == 0);
  REQUIRE_THROWS_WITH(BatchShardScope(g, 5, 3, 7), Contains("[set_batch_shard]"));
}

TEST_CASE("GradientSync over one rank: the gradients are unchanged, and undefined ones stay undefined",
          "[data_parallel]") {
  Tensor a = Tensor::from_vector({1.0, -2.0, 3.0}, {3}, DType::Float64).requires_grad_();
  Tensor b = Tensor::from_vector({4.0}, {1}, DType::Float32).requires_grad_();
  Tensor unused = Tensor::from_vector({0.5}, {1}, DType::Float64).requires_grad_();
  GradientSync sync({{"a", a}, {"b", b}, {"unused", unused}}, dist::single_process(), 8);
  CHECK(sync.num_buckets() == 3);  // 8 bytes: a (24 bytes) alone, b alone (float32: another kind), unused alone
  sync.arm();
  add(sum(mul(a, a)), sum(mul_scalar(b, 3.0)).to(DType::Float64)).backward();
  sync.finish();
  CHECK(a.grad().to_vector() == std::vector<double>{2.0, -4.0, 6.0});
  CHECK(b.grad().to_vector() == std::vector<double>{3.0});
  CHECK(!unused.grad().defined());
  REQUIRE_THROWS_WITH(sync.finish(), Contains("finish() without arm()"));
}
