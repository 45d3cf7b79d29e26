// The tensor core: creation, views that share storage, strides, copies, element access,
// printing, the random generator and the thread pool.
#include <catch2/catch.hpp>
#include <atomic>
#include <cmath>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/strided.h"

using namespace megagrad;

TEST_CASE("tensor: creation", "[tensor]") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.strides() == Strides{3, 1});
  CHECK(z.dtype() == DType::Float32);
  CHECK(z.numel() == 6);
  CHECK(z.to_vector() == std::vector<double>(6, 0.0));
  CHECK(Tensor::ones({4}, DType::Float64).to_vector() == std::vector<double>(4, 1.0));
  CHECK(Tensor::full({2}, 2.5).to_vector() == std::vector<double>{2.5, 2.5});
  CHECK(Tensor::arange(0, 5).to_vector() == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(Tensor::arange(1, 2, 0.25, DType::Float64).to_vector() == std::vector<double>{1, 1.25, 1.5, 1.75});
  Tensor i = Tensor::from_vector(std::vector<int64_t>{3, -1, 7}, {3});
  CHECK(i.dtype() == DType::Int64);
  CHECK(i.to_int_vector() == std::vector<int64_t>{3, -1, 7});
  CHECK(Tensor::scalar(4.0).dim() == 0);
  CHECK(Tensor::scalar(4.0).item() == 4.0);
  REQUIRE_THROWS_WITH(Tensor::from_vector(std::vector<double>{1.0, 2.0}, {3}), Catch::Contains("[from_vector]"));
  REQUIRE_THROWS_WITH(Tensor::zeros({2, -1}), Catch::Contains("negative dimension"));
}

TEST_CASE("tensor: views share storage and have the right strides", "[tensor]") {
  Tensor a = Tensor::arange(0, 24, 1, DType::Float64).reshape({2, 3, 4});
  Tensor t = a.transpose(0, 2);
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(t.strides() == Strides{1, 4, 12});
  CHECK(t.storage() == a.storage());
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.at({3, 2, 1}) == a.at({1, 2, 3}));
  Tensor p = a.permute({1, 2, 0});
  CHECK(p.at({2, 3, 1}) == a.at({1, 2, 3}));
  Tensor n = a.narrow(2, 1, 2);
  CHECK(n.shape() == Shape{2, 3, 2});
  CHECK(n.at({1, 2, 0}) == a.at({1, 2, 1}));
  CHECK(a.select(1, -1).at({0, 3}) == a.at({0, 2, 3}));
  Tensor e = Tensor::arange(0, 3).reshape({3, 1}).expand({2, 3, 4});
  CHECK(e.strides() == Strides{0, 1, 0});
  CHECK(e.at({1, 2, 3}) == 2.0);
  CHECK(a.unsqueeze(0).shape() == Shape{1, 2, 3, 4});
  CHECK(a.unsqueeze(-1).shape() == Shape{2, 3, 4, 1});
  CHECK(a.unsqueeze(1).squeeze(1).shape() == a.shape());
  // A write through a view shows in the base.
  n.set({0, 0, 0}, 100);
  CHECK(a.at({0, 0, 1}) == 100);
}

TEST_CASE("tensor: reshape views when it can and copies when it must", "[tensor]") {
  Tensor a = Tensor::arange(0, 12).reshape({3, 4});
  Tensor v = a.reshape({2, 6});
  CHECK(v.storage() == a.storage());
  CHECK(a.reshape({-1}).shape() == Shape{12});
  Tensor t = a.t();
  Tensor c = t.reshape({12});  // transposed: not viewable
  CHECK(c.storage() != a.storage());
  CHECK(c.to_vector() == std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  REQUIRE_THROWS_WITH(t.view({12}), Catch::Contains("[view]") && Catch::Contains("reshape"));
  REQUIRE_THROWS_WITH(a.reshape({5, -1}), Catch::Contains("[reshape]") && Catch::Contains("(3,4)"));
  // A narrowed block whose rows are still back to back can be viewed.
  Tensor rows = Tensor::arange(0, 24).reshape({6, 4}).narrow(0, 2, 3);
  CHECK(rows.view({12}).at({0}) == 8.0);
  CHECK(t.contiguous().is_contiguous());
  CHECK(t.contiguous().to_vector() == c.to_vector());
}

TEST_CASE("tensor: copy_, to, clone and in-place updates", "[tensor]") {
  Tensor a = Tensor::from_vector({1.5, -2.25, 3}, {3}, DType::Float64);
  Tensor f = a.to(DType::Float32);
  CHECK(f.dtype() == DType::Float32);
  CHECK(f.to_vector() == std::vector<double>{1.5, -2.25, 3});
  CHECK(a.to(DType::Int64).to_int_vector() == std::vector<int64_t>{1, -2, 3});
  Tensor b = a.clone();
  b.set({0}, 9);
  CHECK(a.at({0}) == 1.5);
  Tensor m = Tensor::zeros({2, 3}, DType::Float64);
  m.copy_(a);  // broadcast (3) into (2,3)
  CHECK(m.at({1, 2}) == 3);
  m.add_(Tensor::ones({3}, DType::Float64), 2.0).mul_(0.5);
  CHECK(m.at({1, 1}) == Approx((-2.25 + 2) * 0.5));
  REQUIRE_THROWS_WITH(m.copy_(Tensor::zeros({4})), Catch::Contains("[copy_]"));
  REQUIRE_THROWS_WITH(m.add_(Tensor::zeros({3})), Catch::Contains("[add_]") && Catch::Contains("float32"));
}

TEST_CASE("tensor: element access checks its index", "[tensor]") {
  Tensor a = Tensor::zeros({2, 3});
  REQUIRE_THROWS_WITH(a.at({2, 0}), Catch::Contains("[at]") && Catch::Contains("(2,3)"));
  REQUIRE_THROWS_WITH(a.at({0}), Catch::Contains("[at]"));
  REQUIRE_THROWS_WITH(a.item(), Catch::Contains("[item]"));
  REQUIRE_THROWS_WITH(a.data_ptr<double>(), Catch::Contains("float64"));
  CHECK(a.at({-1, -1}) == 0);
}

TEST_CASE("tensor: printing", "[tensor]") {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  CHECK(a.str() == "tensor([[1, 2],\n        [3, 4]], dtype=float32)");
  CHECK(fmt::format("{}", Tensor::arange(0, 10, 1, DType::Int64)) ==
        "tensor([0, 1, 2, ..., 7, 8, 9], dtype=int64)");
  CHECK(a.desc() == "(2,2) float32 cpu");
  CHECK(Tensor().str() == "tensor(undefined)");
}

TEST_CASE("rng: counter-based draws are reproducible and do not depend on threads", "[tensor][rng]") {
  Generator g1(42), g2(42);
  Tensor a = randn({1000}, DType::Float64, &g1);
  Tensor b = randn({1000}, DType::Float64, &g2);
  CHECK(a.to_vector() == b.to_vector());
  Tensor c = randn({1000}, DType::Float64, &g1);  // the generator moved on
  CHECK(a.to_vector() != c.to_vector());
  // Element i depends on (seed, offset + i) only: 1 thread and 2 threads agree bit for bit.
  int before = get_num_threads();
  set_num_threads(1);
  Generator g3(7);
  std::vector<double> one = uniform({100000}, -1, 1, DType::Float32, &g3).to_vector();
  set_num_threads(2);
  Generator g4(7);
  std::vector<double> two = uniform({100000}, -1, 1, DType::Float32, &g4).to_vector();
  set_num_threads(before);
  CHECK(one == two);
  // Moments of 100,000 normals: mean 0 +- 0.02, std 1 +- 0.02 (5 standard errors).
  Generator g5(3);
  std::vector<double> v = normal({100000}, 0, 1, DType::Float64, &g5).to_vector();
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= (double)v.size();
  for (double x : v) s += (x - m) * (x - m);
  s = std::sqrt(s / (double)v.size());
  CHECK(std::abs(m) < 0.02);
  CHECK(std::abs(s - 1) < 0.02);
  for (double x : uniform({1000}, 2, 3, DType::Float64, &g5).to_vector()) REQUIRE((x >= 2 && x < 3));
}

TEST_CASE("parallel_for covers every index once, and propagates exceptions", "[tensor][parallel]") {
  int before = get_num_threads();
  set_num_threads(2);
  std::vector<std::atomic<int>> hits(100000);
  parallel_for(100000, 1000, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[(size_t)i]++;
  });
  bool all_once = true;
  for (auto& h : hits) all_once &= h.load() == 1;
  CHECK(all_once);
  REQUIRE_THROWS_WITH(parallel_for(100000, 1000, [](int64_t b, int64_t) {
                        if (b > 0) throw Error("[test] from a worker");
                      }),
                      Catch::Contains("from a worker"));
  set_num_threads(before);
  REQUIRE_THROWS_WITH(set_num_threads(0), Catch::Contains("[set_num_threads]"));
}

TEST_CASE("for_each_row cuts long rows into segments: every element once, at its offset", "[tensor][parallel]") {
  int before = get_num_threads();
  set_num_threads(2);
  // One merged row (contiguous, 5 grains and a bit), rows of several segments under a transposed
  // (unmergeable) layout, and a row that must stay whole (split_rows = false).
  struct Case { Shape shape; Strides strides; int64_t grain; bool split; };
  for (const Case& c : {Case{{5 * 1000 + 7}, {1}, 1000, true}, Case{{3, 2500}, {1, 3}, 1000, true},
                        Case{{4, 3, 900}, {2700, 1, 3}, 250, true}, Case{{2, 3000}, {1, 2}, 1000, false}}) {
    const int64_t n = numel_of(c.shape);
    std::vector<std::atomic<int>> hits((size_t)n);
    std::atomic<int64_t> longest{0}, calls{0};
    for_each_row<1>(c.shape, {Dims(c.strides)}, [&](auto off, int64_t len, auto in) {
      ++calls;
      for (int64_t x = longest.load(); len > x && !longest.compare_exchange_weak(x, len);) {}
      for (int64_t i = 0; i < len; ++i) hits[(size_t)(off[0] + i * in[0])]++;
    }, c.grain, c.split);
    bool all_once = true;
    for (auto& h : hits) all_once &= h.load() == 1;
    CHECK(all_once);
    if (c.split) CHECK(longest.load() <= c.grain);   // segments: threads get work even from one row
    else CHECK(longest.load() == 3000);              // whole rows
    if (c.split) CHECK(calls.load() >= n / c.grain);
  }
  set_num_threads(before);
}

TEST_CASE("elementwise results do not depend on the thread count", "[tensor][parallel]") {
  Generator g(11);
  Tensor a = randn({300, 1000}, DType::Float32, &g);
  Tensor b = randn({1000}, DType::Float32, &g);
  int before = get_num_threads();
  set_num_threads(1);
  std::vector<double> one = sum(mul(exp(a), b), {0}).to_vector();
  set_num_threads(2);
  std::vector<double> two = sum(mul(exp(a), b), {0}).to_vector();
  set_num_threads(before);
  CHECK(one == two);
}
