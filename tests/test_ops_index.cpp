// Tests of the indexing and joining ops (autograd/ops_index.cpp): forwards against naive loops
// over multi-indices, backwards against naive accumulation, both float types, non-contiguous
// inputs, the threaded paths, and the errors for bad input.
#include <catch2/catch.hpp>
#include <set>
#include "autograd/gradcheck.h"
#include "autograd/gradcheck_cases.h"
#include "autograd/ops.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "tests/test_util.h"

using namespace megagrad;

namespace {

Tensor rnd(const Shape& s, uint64_t seed, DType dt = DType::Float64) {
  Generator g(seed);
  return uniform(s, -1.0, 1.0, dt, &g);
}

// Random int64 values in [0, n) (from a seeded uniform).
Tensor rnd_index(const Shape& s, int64_t n, uint64_t seed) {
  std::vector<double> u = rnd(s, seed).to_vector();
  std::vector<int64_t> v;
  for (double x : u) v.push_back(std::min<int64_t>(n - 1, (int64_t)((x + 1.0) * 0.5 * (double)n)));
  return Tensor::from_vector(v, s);
}


// Every element of `got` (any dtype) against f(multi-index).
template <typename F>
void require_elements(const Tensor& got, const Shape& shape, F expected, double tol = 0.0) {
  REQUIRE(got.shape() == shape);
  std::vector<double> v = got.to_vector();
  for (int64_t i = 0; i < numel_of(shape); ++i) {
    std::vector<int64_t> p = unravel_index(i, shape);
    double e = expected(p);
    INFO("element " << i);
    if (tol == 0.0) REQUIRE(v[(size_t)i] == e);
    else REQUIRE(v[(size_t)i] == Approx(e).margin(tol));
  }
}

Tensor bools(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s, DType::Bool); }

}  // namespace

// ---------------------------------------------------------------- cat

TEST_CASE("cat: forward matches naive loops in every dim, with a non-contiguous input", "[index]") {
  for (int64_t dim : {0, 1, 2, -1}) {
    int64_t d = dim < 0 ? dim + 3 : dim;
    Shape sa{2, 3, 4}, sb{2, 3, 4}, sc{2, 3, 4};
    sa[(size_t)d] = 1, sb[(size_t)d] = 3, sc[(size_t)d] = 2;
    Tensor a = rnd(sa, 1);
    Shape sb_perm{sb[2], sb[0], sb[1]};
    Tensor b = rnd(sb_perm, 2).permute({1, 2, 0});  // (sb) but strided
    REQUIRE(!b.is_contiguous());
    Tensor c = rnd(sc, 3);
    Tensor out = cat({a, b, c}, dim);
    Shape so = sa;
    so[(size_t)d] = 6;
    require_elements(out, so, [&](std::vector<int64_t> p) {
      int64_t k = p[(size_t)d];
      if (k < 1) return a.at(p);
      if (k < 4) { p[(size_t)d] = k - 1; return b.at(p); }
      p[(size_t)d] = k - 4;
      return c.at(p);
    });
  }
}

TEST_CASE("cat: float32, int64 and bool; a single input; empty inputs", "[index]") {
  Tensor a = rnd({2, 2}, 4, DType::Float32), b = rnd({2, 3}, 5, DType::Float32);
  Tensor f = cat({a, b}, 1);
  REQUIRE(f.dtype() == DType::Float32);
  require_elements(f, {2, 5}, [&](std::vector<int64_t> p) {
    return p[1] < 2 ? a.at(p) : b.at({p[0], p[1] - 2});
  });

  Tensor i = cat({Tensor::from_vector(std::vector<int64_t>{1, 2}, {2}), Tensor::from_vector(std::vector<int64_t>{7}, {1})}, 0);
  REQUIRE(i.dtype() == DType::Int64);
  REQUIRE(i.to_int_vector() == std::vector<int64_t>{1, 2, 7});

  Tensor m = cat({bools({1, 0}, {2, 1}), bools({0, 0, 1, 1}, {2, 2})}, 1);
  REQUIRE(m.dtype() == DType::Bool);
  REQUIRE(m.to_vector() == std::vector<double>{1, 0, 0, 0, 1, 1});

  Tensor one = rnd({3, 2}, 6);
  Tensor c1 = cat({one}, 0);
  REQUIRE(c1.storage() != one.storage());  // a copy, as torch.cat
  REQUIRE(c1.to_vector() == one.to_vector());

  Tensor e = cat({Tensor::zeros({0, 2}, DType::Float64), one, Tensor::zeros({0, 2}, DType::Float64)}, 0);
  REQUIRE(e.to_vector() == one.to_vector());
}

TEST_CASE("cat: large contiguous inputs (row copies, threaded) match naive", "[index]") {
  Tensor a = rnd({300, 1000}, 7, DType::Float32), b = rnd({300, 517}, 8, DType::Float32);
  Tensor out = cat({a, b}, 1);
  std::vector<double> va = a.to_vector(), vb = b.to_vector(), vo = out.to_vector();
  REQUIRE(out.shape() == Shape{300, 1517});
  bool ok = true;
  for (int64_t r = 0; r < 300; ++r)
    for (int64_t c = 0; c < 1517; ++c)
      ok = ok && vo[(size_t)(r * 1517 + c)] == (c < 1000 ? va[(size_t)(r * 1000 + c)] : vb[(size_t)(r * 517 + c - 1000)]);
  REQUIRE(ok);
}

TEST_CASE("cat: backward gives each input its slice; only inputs that need grad", "[index]") {
  Tensor x = rnd({3, 2}, 9).requires_grad_();
  Tensor y = rnd({3, 4}, 10);  // no grad wanted
  Tensor z = rnd({3, 1}, 11).requires_grad_();
  Tensor out = cat({x, y, z, x}, 1);  // x twice: its two slices add up
  Tensor R = rnd({3, 9}, 12);
  out.backward(R);
  REQUIRE(!y.grad().defined());
  require_elements(x.grad(), {3, 2}, [&](std::vector<int64_t> p) { return R.at({p[0], p[1]}) + R.at({p[0], p[1] + 7}); }, 1e-15);
  require_elements(z.grad(), {3, 1}, [&](std::vector<int64_t> p) { return R.at({p[0], 6}); });
}

TEST_CASE("cat: bad input names the op and every mismatched shape", "[index]") {
  Tensor a = rnd({2, 3}, 13), b = rnd({3, 3}, 14), c = rnd({2, 5}, 15), d = rnd({4, 1}, 16);
  REQUIRE_NOTHROW(cat({a, c}, 1));
  REQUIRE_THROWS_WITH(cat({a, b, c, d}, 1), Catch::Contains("[cat]") && Catch::Contains("tensor 1 is (3,3)") &&
                                                 Catch::Contains("tensor 3 is (4,1)") && Catch::Contains("(2,3)") &&
                                                 !Catch::Contains("(2,5)"));
  REQUIRE_THROWS_WITH(cat({a, rnd({2, 3, 1}, 17)}, 0), Catch::Contains("[cat]") && Catch::Contains("(2,3,1)"));
  REQUIRE_THROWS_WITH(cat({a, rnd({2, 3}, 18, DType::Float32)}, 0),
                      Catch::Contains("[cat]") && Catch::Contains("float64") && Catch::Contains("float32"));
  REQUIRE_THROWS_WITH(cat({}, 0), Catch::Contains("[cat]") && Catch::Contains("non-empty"));
  REQUIRE_THROWS_WITH(cat({a, a}, 2), Catch::Contains("[cat]") && Catch::Contains("dim 2"));
  REQUIRE_THROWS_WITH(cat({Tensor::scalar(1.0), Tensor::scalar(2.0)}, 0), Catch::Contains("[cat]") && Catch::Contains("0-dim"));
  REQUIRE_THROWS_WITH(cat({a, Tensor()}, 0), Catch::Contains("[cat]") && Catch::Contains("tensor 1"));
}

// ---------------------------------------------------------------- split

TEST_CASE("split: pieces of the given sizes, as views; backward through them", "[index]") {
  Tensor x = rnd({2, 6}, 20).requires_grad_();
  std::vector<Tensor> parts = split(x, {1, 3, 0, 2}, 1);
  REQUIRE(parts.size() == 4);
  std::vector<int64_t> starts{0, 1, 4, 4}, sizes{1, 3, 0, 2};
  for (size_t k = 0; k < parts.size(); ++k) {
    REQUIRE(parts[k].storage() == x.storage());  // no copy
    require_elements(parts[k], {2, sizes[k]}, [&](std::vector<int64_t> p) { return x.at({p[0], p[1] + starts[k]}); });
  }
  // d/dx sum(p0 * 2) + sum(p1 * 3) + sum(p3 * 5): the scale of the piece each column went to.
  Tensor l = sum(parts[0] * 2.0) + sum(parts[1] * 3.0) + sum(parts[3] * 5.0);
  l.backward();
  std::vector<double> scale{2, 3, 3, 3, 5, 5};
  require_elements(x.grad(), {2, 6}, [&](std::vector<int64_t> p) { return scale[(size_t)p[1]]; });

  std::vector<Tensor> rows = split(rnd({5, 2}, 21, DType::Float32), {2, 3}, -2);
  REQUIRE(rows[0].shape() == Shape{2, 2});
  REQUIRE(rows[1].shape() == Shape{3, 2});
}

TEST_CASE("split: sizes that do not add up are refused", "[index]") {
  Tensor x = rnd({2, 6}, 22);
  REQUIRE_THROWS_WITH(split(x, {2, 3}, 1), Catch::Contains("[split]") && Catch::Contains("sum to 5") &&
                                               Catch::Contains("(2,6)") && Catch::Contains("size 6"));
  REQUIRE_THROWS_WITH(split(x, {-1, 7}, 1), Catch::Contains("[split]") && Catch::Contains("negative"));
  REQUIRE_THROWS_WITH(split(x, {2}, 2), Catch::Contains("[split]"));
}

// ---------------------------------------------------------------- index_select

TEST_CASE("index_select: forward matches naive loops in every dim", "[index]") {
  Tensor x64 = rnd({3, 4, 5}, 30);
  Tensor xt = rnd({5, 3, 4}, 31).permute({1, 2, 0});  // (3,4,5), non-contiguous
  Tensor x32 = rnd({3, 4, 5}, 32, DType::Float32);
  for (const Tensor& x : {x64, xt, x32}) {
    for (int64_t d = 0; d < 3; ++d) {
      Tensor idx = rnd_index({7}, x.shape()[(size_t)d], 33 + (uint64_t)d);
      std::vector<int64_t> iv = idx.to_int_vector();
      Tensor out = index_select(x, d, idx);
      REQUIRE(out.dtype() == x.dtype());
      Shape so = x.shape();
      so[(size_t)d] = 7;
      require_elements(out, so, [&](std::vector<int64_t> p) {
        p[(size_t)d] = iv[(size_t)p[(size_t)d]];
        return x.at(p);
      });
    }
  }
  // A strided index (stride 2), an empty index, an int64 source.
  Tensor strided = Tensor::from_vector(std::vector<int64_t>{3, 0, 1, 2, 2, 2}, {3, 2}).t().select(0, 0);  // [3,1,2]
  REQUIRE(strided.strides()[0] == 2);
  Tensor o = index_select(x64, 1, strided);
  require_elements(o, {3, 3, 5}, [&](std::vector<int64_t> p) {
    int64_t m[3] = {3, 1, 2};
    p[1] = m[p[1]];
    return x64.at(p);
  });
  REQUIRE(index_select(x64, 0, Tensor::from_vector(std::vector<int64_t>{}, {0})).shape() == Shape{0, 4, 5});
  Tensor ints = Tensor::from_vector(std::vector<int64_t>{10, 11, 12}, {3});
  REQUIRE(index_select(ints, 0, Tensor::from_vector(std::vector<int64_t>{2, 2, 0}, {3})).to_int_vector() ==
          std::vector<int64_t>{12, 12, 10});
}

TEST_CASE("index_select: backward accumulates repeated indices", "[index]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    for (int64_t d = 0; d < 3; ++d) {
      Tensor x = rnd({4, 3, 5}, 40, dt).requires_grad_();
      std::vector<int64_t> iv{2, 0, 2, 2};
      for (auto& v : iv) v = v % x.shape()[(size_t)d];
      Tensor out = index_select(x, d, Tensor::from_vector(iv, {4}));
      Tensor R = rnd(out.shape(), 41, dt);
      out.backward(R);
      require_elements(x.grad(), x.shape(), [&](std::vector<int64_t> p) {
        double s = 0;  // every k that picked this slot along d
        for (size_t k = 0; k < iv.size(); ++k) {
          if (iv[k] != p[(size_t)d]) continue;
          std::vector<int64_t> q = p;
          q[(size_t)d] = (int64_t)k;
          s += R.at(q);
        }
        return s;
      }, dt == DType::Float32 ? 1e-5 : 1e-12);
    }
  }
}

TEST_CASE("index_select: large backward (threaded index_add) matches naive", "[index]") {
  // (O, N, I) = (37, 50, 1000), K = 300: threads split the (o, i) columns.
  Tensor x = rnd({37, 50, 1000}, 42, DType::Float32).requires_grad_();
  Tensor idx = rnd_index({300}, 50, 43);
  Tensor out = index_select(x, 1, idx);
  Tensor R = rnd(out.shape(), 44, DType::Float32);
  out.backward(R);
  std::vector<double> r = R.to_vector(), got = x.grad().to_vector();
  std::vector<double> want((size_t)x.numel(), 0.0);
  std::vector<int64_t> iv = idx.to_int_vector();
  for (int64_t o = 0; o < 37; ++o)
    for (int64_t k = 0; k < 300; ++k)
      for (int64_t i = 0; i < 1000; ++i)
        want[(size_t)((o * 50 + iv[(size_t)k]) * 1000 + i)] += r[(size_t)((o * 300 + k) * 1000 + i)];
  REQUIRE(test::max_abs_diff(got, want) < 1e-4);  // float32 sums of up to 300 terms
}

TEST_CASE("index_select: bad input names the op, the index and the size", "[index]") {
  Tensor x = rnd({4, 3}, 45);
  REQUIRE_THROWS_WITH(index_select(x, 0, Tensor::from_vector(std::vector<int64_t>{1, 5, 2}, {3})),
                      Catch::Contains("[index_select]") && Catch::Contains("index 5") && Catch::Contains("size 4") &&
                          Catch::Contains("(4,3)"));
  REQUIRE_THROWS_WITH(index_select(x, 1, Tensor::from_vector(std::vector<int64_t>{-1}, {1})),
                      Catch::Contains("[index_select]") && Catch::Contains("index -1") && Catch::Contains("size 3"));
  REQUIRE_THROWS_WITH(index_select(x, 0, Tensor::from_vector({1.0}, {1}, DType::Float64)),
                      Catch::Contains("[index_select]") && Catch::Contains("int64"));
  REQUIRE_THROWS_WITH(index_select(x, 0, Tensor::from_vector(std::vector<int64_t>{0, 1}, {1, 2})),
                      Catch::Contains("[index_select]") && Catch::Contains("(1,2)"));
  REQUIRE_THROWS_WITH(index_select(x, 2, Tensor::from_vector(std::vector<int64_t>{0}, {1})),
                      Catch::Contains("[index_select]") && Catch::Contains("dim 2"));
}

// ---------------------------------------------------------------- gather

TEST_CASE("gather: forward matches naive loops in every dim", "[index]") {
  Tensor x64 = rnd({3, 4, 5}, 50);
  Tensor xt = rnd({5, 3, 4}, 51).permute({1, 2, 0});
  Tensor x32 = rnd({3, 4, 5}, 52, DType::Float32);
  for (const Tensor& x : {x64, xt, x32}) {
    for (int64_t d = 0; d < 3; ++d) {
      Shape si{2, 4, 3};  // smaller than x in the other dims ...
      si[(size_t)d] = 6;  // ... any size along d
      Tensor idx = rnd_index(si, x.shape()[(size_t)d], 53 + (uint64_t)d);
      Tensor out = gather(x, d, idx);
      require_elements(out, si, [&](std::vector<int64_t> p) {
        p[(size_t)d] = (int64_t)idx.at(p);
        return x.at(p);
      });
      // A non-contiguous index gives the same values.
      Tensor idx_t = idx.transpose(0, 2).contiguous().transpose(0, 2);
      REQUIRE(!idx_t.is_contiguous());
      REQUIRE(gather(x, d, idx_t).to_vector() == out.to_vector());
    }
  }
}

TEST_CASE("gather: backward scatter-adds, repeated indices accumulate", "[index]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    for (int64_t d = 0; d < 3; ++d) {
      Tensor x = rnd({3, 4, 5}, 60, dt).requires_grad_();
      Shape si{3, 2, 4};
      si[(size_t)d] = 7;
      Tensor idx = rnd_index(si, x.shape()[(size_t)d], 61 + (uint64_t)d);
      Tensor out = gather(x, d, idx);
      Tensor R = rnd(si, 62, dt);
      out.backward(R);
      // Naive scatter-add over every element of the index.
      std::vector<double> want((size_t)x.numel(), 0.0);
      Strides xs = contiguous_strides(x.shape());
      for (int64_t i = 0; i < numel_of(si); ++i) {
        std::vector<int64_t> p = unravel_index(i, si);
        double r = R.at(p);
        p[(size_t)d] = (int64_t)idx.at(p);
        int64_t off = 0;
        for (size_t k = 0; k < 3; ++k) off += p[k] * xs[k];
        want[(size_t)off] += r;
      }
      require_elements(x.grad(), x.shape(), [&](std::vector<int64_t> p) {
        int64_t off = 0;
        for (size_t k = 0; k < 3; ++k) off += p[k] * xs[k];
        return want[(size_t)off];
      }, dt == DType::Float32 ? 1e-5 : 1e-12);
    }
  }
}

TEST_CASE("gather: large backward (threaded scatter-add) and an expanded gradient", "[index]") {
  // Sizes chosen so that for_each_row splits the rows over threads (when there are several).
  for (int64_t d : {0, 1}) {
    Tensor x = rnd({120, 200}, 63).requires_grad_();
    Shape si = d == 0 ? Shape{700, 190} : Shape{100, 900};
    Tensor idx = rnd_index(si, x.shape()[(size_t)d], 64);
    Tensor out = gather(x, d, idx);
    sum(out).backward();  // the gradient reaching gather is an expanded (stride 0) tensor of ones
    std::vector<double> want((size_t)x.numel(), 0.0);
    std::vector<int64_t> iv = idx.to_int_vector();
    for (int64_t i = 0; i < si[0]; ++i)
      for (int64_t j = 0; j < si[1]; ++j) {
        int64_t v = iv[(size_t)(i * si[1] + j)];
        want[(size_t)(d == 0 ? v * 200 + j : i * 200 + v)] += 1.0;
      }
    REQUIRE(x.grad().to_vector() == want);
  }
}

TEST_CASE("gather: a backward row longer than the grain adds into its slots on one thread", "[index]") {
  // Each row of the scatter-add (d innermost) has 70000 elements adding into 5 slots: cut into
  // segments over two threads, the additions would race.
  int before = get_num_threads();
  set_num_threads(2);
  Tensor x = rnd({2, 5}, 66).requires_grad_();
  Tensor idx = rnd_index({2, 70000}, 5, 67);
  sum(gather(x, 1, idx)).backward();
  std::vector<double> want(10, 0.0);
  std::vector<int64_t> iv = idx.to_int_vector();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 70000; ++j) want[(size_t)(i * 5 + iv[(size_t)(i * 70000 + j)])] += 1.0;
  set_num_threads(before);
  REQUIRE(x.grad().to_vector() == want);
}

TEST_CASE("gather: bad input names the op and the shapes", "[index]") {
  Tensor x = rnd({3, 4}, 65);
  auto I = [](std::vector<int64_t> v, Shape s) { return Tensor::from_vector(v, s); };
  REQUIRE_THROWS_WITH(gather(x, 1, I({0, 1, 2}, {3})),
                      Catch::Contains("[gather]") && Catch::Contains("(3)") && Catch::Contains("(3,4)"));
  REQUIRE_THROWS_WITH(gather(x, 1, I({0, 0, 0, 0}, {4, 1})),
                      Catch::Contains("[gather]") && Catch::Contains("(4,1)") && Catch::Contains("(3,4)") &&
                          Catch::Contains("dim 0"));
  REQUIRE_THROWS_WITH(gather(x, 0, I({0, 3}, {1, 2})),
                      Catch::Contains("[gather]") && Catch::Contains("index 3") && Catch::Contains("size 3"));
  REQUIRE_THROWS_WITH(gather(x, 1, I({-2}, {1, 1})),
                      Catch::Contains("[gather]") && Catch::Contains("index -2") && Catch::Contains("size 4"));
  REQUIRE_THROWS_WITH(gather(x, 0, Tensor::zeros({1, 1}, DType::Float64)),
                      Catch::Contains("[gather]") && Catch::Contains("int64"));
  REQUIRE_THROWS_WITH(gather(x, -3, I({0}, {1, 1})), Catch::Contains("[gather]") && Catch::Contains("dim -3"));
}

// ---------------------------------------------------------------- where

TEST_CASE("where: broadcasting forward and backward against naive loops", "[index]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    Tensor cond = bools({1, 0, 1}, {3, 1});
    Tensor a = rnd({3, 4}, 70, dt).requires_grad_();
    Tensor b = rnd({4}, 71, dt).requires_grad_();
    Tensor out = where(cond, a, b);
    REQUIRE(out.dtype() == dt);
    require_elements(out, {3, 4}, [&](std::vector<int64_t> p) {
      return cond.at({p[0], 0}) ? a.at(p) : b.at({p[1]});
    });
    Tensor R = rnd({3, 4}, 72, dt);
    out.backward(R);
    require_elements(a.grad(), {3, 4}, [&](std::vector<int64_t> p) { return cond.at({p[0], 0}) ? R.at(p) : 0.0; });
    require_elements(b.grad(), {4}, [&](std::vector<int64_t> p) {
      double s = 0;
      for (int64_t i = 0; i < 3; ++i) if (!cond.at({i, 0})) s += R.at({i, p[0]});
      return s;
    }, 1e-6);
  }
  // cond may be the largest operand; only b wants a gradient.
  Tensor cond = gt(rnd({2, 3}, 73), Tensor::zeros({}, DType::Float64));
  Tensor a = rnd({1, 3}, 74), b = rnd({}, 75).requires_grad_();
  Tensor out = where(cond, a, b);
  require_elements(out, {2, 3}, [&](std::vector<int64_t> p) { return cond.at(p) ? a.at({0, p[1]}) : b.item(); });
  out.backward(Tensor::ones({2, 3}, DType::Float64));
  double nfalse = 0;
  for (double c : cond.to_vector()) nfalse += c ? 0 : 1;
  REQUIRE(b.grad().item() == nfalse);
  REQUIRE(!a.grad().defined());
}

TEST_CASE("where: bad input names the op, dtypes and shapes", "[index]") {
  Tensor a = rnd({3, 4}, 76), b = rnd({4}, 77);
  REQUIRE_THROWS_WITH(where(Tensor::ones({3, 1}, DType::Float64), a, b),
                      Catch::Contains("[where]") && Catch::Contains("bool") && Catch::Contains("float64"));
  REQUIRE_THROWS_WITH(where(bools({1}, {1}), a, rnd({4}, 78, DType::Float32)),
                      Catch::Contains("[where]") && Catch::Contains("float32"));
  REQUIRE_THROWS_WITH(where(bools({1, 0}, {2, 1}), a, b),
                      Catch::Contains("[where]") && Catch::Contains("(2,1)") && Catch::Contains("(3,4)") &&
                          Catch::Contains("(4)"));
  REQUIRE_THROWS_WITH(where(bools({1, 0, 1}, {3, 1}), a, rnd({3}, 79)), Catch::Contains("[where]"));
}

// ---------------------------------------------------------------- masked_fill

TEST_CASE("masked_fill: broadcast mask, forward and backward; non-contiguous x", "[index]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    Tensor mask = bools({0, 1, 1, 0}, {4});
    Tensor xb = rnd({4, 3}, 80, dt).requires_grad_();
    Tensor x = xb.t();  // (3,4), strided
    Tensor out = masked_fill(x, mask, -1.5);
    require_elements(out, {3, 4}, [&](std::vector<int64_t> p) { return mask.at({p[1]}) ? -1.5 : x.at(p); });
    Tensor R = rnd({3, 4}, 81, dt);
    out.backward(R);
    // xb.grad is (4,3): the transpose of R with the masked columns of x zeroed.
    require_elements(xb.grad(), {4, 3}, [&](std::vector<int64_t> p) { return mask.at({p[0]}) ? 0.0 : R.at({p[1], p[0]}); });
  }
  Tensor x = rnd({2, 3}, 82);
  Tensor m = bools({1, 0}, {2, 1});
  require_elements(masked_fill(x, m, 4.0), {2, 3}, [&](std::vector<int64_t> p) { return p[0] == 0 ? 4.0 : x.at(p); });
}

TEST_CASE("masked_fill: the mask must broadcast to x, not the other way", "[index]") {
  Tensor x = rnd({3, 1}, 83);
  REQUIRE_THROWS_WITH(masked_fill(x, bools(std::vector<double>(12, 1.0), {3, 4}), 0.0),
                      Catch::Contains("[masked_fill]") && Catch::Contains("(3,4)") && Catch::Contains("(3,1)"));
  REQUIRE_THROWS_WITH(masked_fill(rnd({3, 4}, 84), bools({1, 0, 1}, {3}), 0.0),
                      Catch::Contains("[masked_fill]") && Catch::Contains("(3)") && Catch::Contains("(3,4)"));
  REQUIRE_THROWS_WITH(masked_fill(x, Tensor::ones({3, 1}, DType::Float64), 0.0),
                      Catch::Contains("[masked_fill]") && Catch::Contains("bool"));
  REQUIRE_THROWS_WITH(masked_fill(Tensor::ones({2}, DType::Int64), bools({1, 0}, {2}), 0.0),
                      Catch::Contains("[masked_fill]") && Catch::Contains("int64"));
}

// ---------------------------------------------------------------- gradcheck

TEST_CASE("index ops: every gradcheck case passes and every op has one", "[index]") {
  std::vector<GradcheckCase> cases;
  add_index_cases(cases);
  std::set<std::string> ops;
  for (const GradcheckCase& c : cases) {
    GradcheckResult r = run_gradcheck_case(c);
    INFO(c.op << ": " << c.label << ": " << r.report());
    REQUIRE(r.passed);
    REQUIRE(r.elements_checked > 0);
    ops.insert(c.op);
  }
  REQUIRE(ops == std::set<std::string>{"cat", "index_select", "gather", "where", "masked_fill"});
}
