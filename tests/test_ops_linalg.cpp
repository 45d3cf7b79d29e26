// matmul and linear against naive loops: plain, transposed and strided operands, batches,
// broadcast batches, float32 and float64, gradients, errors, and the no-copy promise.
#include <catch2/catch.hpp>
#include "autograd/gradcheck.h"
#include "autograd/gradcheck_cases.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "backends/cpu/blas.h"
#include "core/parallel.h"

using namespace megagrad;

namespace {

Tensor rnd(const Shape& s, uint64_t seed, DType dt = DType::Float64) {
  Generator g(seed);
  return uniform(s, -1.0, 1.0, dt, &g);
}

// C = A @ B for 2D tensors of any strides, through at().
std::vector<double> naive_mm(const Tensor& a, const Tensor& b) {
  int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  std::vector<double> c((size_t)(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += a.at({i, k}) * b.at({k, j});
      c[(size_t)(i * N + j)] = s;
    }
  return c;
}

void require_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    REQUIRE(got[i] == Approx(want[i]).margin(tol).epsilon(tol));
  }
}

// Batched reference: operand batch index -> 2D slice, broadcasting size-1 batch dims.
Tensor slice_batch(const Tensor& t, const Shape& full, int64_t flat) {
  int64_t nb = t.dim() - 2;
  std::vector<int64_t> idx(full.size());
  for (size_t d = full.size(); d-- > 0;) {
    idx[d] = flat % full[d];
    flat /= full[d];
  }
  Tensor s = t;
  for (int64_t d = 0; d < nb; ++d) {
    int64_t fd = (int64_t)full.size() - nb + d;
    s = s.select(0, t.size(d) == 1 ? 0 : idx[(size_t)fd]);
  }
  return s;
}

std::vector<double> naive_bmm(const Tensor& a, const Tensor& b, const Shape& full) {
  std::vector<double> out;
  for (int64_t i = 0; i < numel_of(full); ++i) {
    auto c = naive_mm(slice_batch(a, full, i), slice_batch(b, full, i));
    out.insert(out.end(), c.begin(), c.end());
  }
  return out;
}

// Operands matmul/linear copied so far (autograd/ops_linalg.cpp).
int64_t copies() { return detail::linalg_operand_copies(); }
int64_t copies_made_by(const std::function<void()>& f) {
  int64_t before = copies();
  f();
  return copies() - before;
}

}  // namespace

// gemm() splits C over the threads (backends/cpu/blas.cpp): every element must come out bit for
// bit as on one thread, for both split directions, transposes, and sizes around the split bounds
// (2^20 multiply-adds a block, 64 rows or columns, OpenBLAS's 100^3 small-kernel bound).
template <typename T>
void check_gemm_thread_independence() {
  struct Shape3 { int64_t m, n, k; };
  const Shape3 shapes[] = {{128, 64, 64}, {130, 90, 100}, {300, 70, 60}, {64, 700, 40}, {1000, 20, 60},
                           {3200, 128, 64}, {129, 1025, 17}, {257, 33, 300}, {100, 100, 100}, {2048, 96, 8}};
  const int before = get_num_threads();
  for (const Shape3& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        std::vector<T> a((size_t)(s.m * s.k)), b((size_t)(s.k * s.n)), c0((size_t)(s.m * s.n), T(0.5));
        for (size_t i = 0; i < a.size(); ++i) a[i] = T(std::sin(0.37 * (double)i));
        for (size_t i = 0; i < b.size(); ++i) b[i] = T(std::cos(0.11 * (double)i));
        const int64_t lda = ta ? s.m : s.k, ldb = tb ? s.k : s.n;
        std::vector<std::vector<T>> out;
        for (int threads : {1, 2, 3}) {
          set_num_threads(threads);
          std::vector<T> c = c0;
          gemm(ta, tb, s.m, s.n, s.k, T(1.25), a.data(), lda, b.data(), ldb, T(0.5), c.data(), s.n);
          out.push_back(c);
        }
        INFO("m " << s.m << " n " << s.n << " k " << s.k << " ta " << ta << " tb " << tb);
        CHECK(out[0] == out[1]);
        CHECK(out[0] == out[2]);
      }
  set_num_threads(before);
}

TEST_CASE("gemm: results do not depend on the thread count, bit for bit", "[linalg][parallel]") {
  check_gemm_thread_independence<float>();
  check_gemm_thread_independence<double>();
}

TEST_CASE("matmul 2D matches a triple loop", "[linalg]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    Tensor a = rnd({5, 7}, 1, dt), b = rnd({7, 3}, 2, dt);
    Tensor c = matmul(a, b);
    REQUIRE(c.shape() == Shape{5, 3});
    REQUIRE(c.dtype() == dt);
    require_close(c.to_vector(), naive_mm(a, b), dt == DType::Float32 ? 1e-5 : 1e-12);
  }
}

TEST_CASE("matmul reads transposed and strided operands correctly", "[linalg]") {
  Tensor at_ = rnd({7, 5}, 3).t();   // (5,7), stride[0] == 1: BLAS Trans
  Tensor bt = rnd({3, 7}, 4).t();    // (7,3) transposed
  Tensor bs = rnd({7, 3, 2}, 5).select(2, 0);  // (7,3) with column stride 2: copied
  Tensor an = rnd({10, 7}, 6).narrow(0, 2, 5);  // row slice: NoTrans with an offset
  Tensor ac = rnd({5, 9}, 7).narrow(1, 1, 7);   // column slice: lda 9 > 7
  require_close(matmul(at_, bt).to_vector(), naive_mm(at_, bt), 1e-12);
  require_close(matmul(at_, bs).to_vector(), naive_mm(at_, bs), 1e-12);
  require_close(matmul(an, bt).to_vector(), naive_mm(an, bt), 1e-12);
  require_close(matmul(ac, bs).to_vector(), naive_mm(ac, bs), 1e-12);
  // A row and a column vector as matrices.
  Tensor row = rnd({1, 7}, 8), col = rnd({7, 1}, 9);
  require_close(matmul(row, col).to_vector(), naive_mm(row, col), 1e-12);
  require_close(matmul(col, row).to_vector(), naive_mm(col, row), 1e-12);
  // An expanded (stride 0) operand.
  Tensor e = rnd({1, 3}, 10).expand({7, 3});
  require_close(matmul(at_, e).to_vector(), naive_mm(at_, e), 1e-12);
}

TEST_CASE("matmul batched and broadcast batches match per-matrix loops", "[linalg]") {
  struct Case { Shape a, b, full; };
  for (auto [sa, sb, full] : {Case{{3, 4, 5}, {3, 5, 2}, {3}}, Case{{3, 4, 5}, {5, 2}, {3}},
                              Case{{4, 5}, {3, 5, 2}, {3}}, Case{{2, 1, 4, 5}, {3, 5, 2}, {2, 3}},
                              Case{{1, 4, 5}, {2, 5, 2}, {2}}}) {
    INFO(shape_str(sa) << " @ " << shape_str(sb));
    for (DType dt : {DType::Float64, DType::Float32}) {
      Tensor a = rnd(sa, 11, dt), b = rnd(sb, 12, dt);
      Tensor c = matmul(a, b);
      Shape want = full;
      want.push_back(sa[sa.size() - 2]);
      want.push_back(sb.back());
      REQUIRE(c.shape() == want);
      require_close(c.to_vector(), naive_bmm(a, b, full), dt == DType::Float32 ? 1e-5 : 1e-12);
    }
  }
  // Batched operands that are transposed views: last two dims swapped, and batch/row swapped.
  Tensor a1 = rnd({3, 5, 4}, 13).transpose(1, 2);  // (3,4,5)
  Tensor a2 = rnd({4, 3, 5}, 14).transpose(0, 1);  // (3,4,5), rows not back to back
  Tensor b1 = rnd({3, 2, 5}, 15).transpose(1, 2);  // (3,5,2)
  require_close(matmul(a1, b1).to_vector(), naive_bmm(a1, b1, {3}), 1e-12);
  require_close(matmul(a2, b1).to_vector(), naive_bmm(a2, b1, {3}), 1e-12);
  Tensor w = rnd({5, 2}, 16);
  require_close(matmul(a2, w).to_vector(), naive_bmm(a2, w, {3}), 1e-12);
}

TEST_CASE("matmul gradients match dC B^T and A^T dC, summed over broadcast batches", "[linalg]") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    Tensor a = rnd({3, 4, 5}, 17, dt).requires_grad_();
    Tensor b = rnd({5, 2}, 18, dt).requires_grad_();
    Tensor g = rnd({3, 4, 2}, 19, dt);
    matmul(a, b).backward(g);
    // dA[i] = g[i] b^T; dB = sum_i a[i]^T g[i]
    std::vector<double> da, db(10, 0.0);
    for (int64_t i = 0; i < 3; ++i) {
      auto d = naive_mm(g.select(0, i), b.detach().t());
      da.insert(da.end(), d.begin(), d.end());
      auto e = naive_mm(a.detach().select(0, i).t(), g.select(0, i));
      for (size_t k = 0; k < e.size(); ++k) db[k] += e[k];
    }
    double tol = dt == DType::Float32 ? 1e-5 : 1e-12;
    REQUIRE(a.grad().shape() == a.shape());
    REQUIRE(b.grad().shape() == b.shape());
    require_close(a.grad().to_vector(), da, tol);
    require_close(b.grad().to_vector(), db, tol);
  }
  // Only the needed gradient is computed.
  Tensor a = rnd({2, 3}, 20).requires_grad_();
  Tensor b = rnd({3, 2}, 21);
  sum(matmul(a, b)).backward();
  REQUIRE(a.grad().defined());
  REQUIRE_FALSE(b.grad().defined());
}

TEST_CASE("matmul with empty dims", "[linalg]") {
  Tensor c = matmul(rnd({3, 0}, 22), rnd({0, 2}, 23));
  REQUIRE(c.shape() == Shape{3, 2});
  for (double v : c.to_vector()) REQUIRE(v == 0.0);
  REQUIRE(matmul(rnd({0, 4}, 24), rnd({4, 2}, 25)).shape() == Shape{0, 2});
  REQUIRE(matmul(rnd({0, 2, 4}, 26), rnd({4, 3}, 27)).shape() == Shape{0, 2, 3});
}

TEST_CASE("matmul errors name the op, the shapes, dtypes and devices", "[linalg]") {
  REQUIRE_THROWS_WITH(matmul(rnd({3, 4}, 1), rnd({5, 6}, 2)),
                      Catch::Contains("[matmul]") && Catch::Contains("shapes (3,4) and (5,6) do not match"));
  REQUIRE_THROWS_WITH(matmul(rnd({2, 3, 4}, 1), rnd({3, 4, 5}, 2)),
                      Catch::Contains("[matmul]") && Catch::Contains("(2,3,4) and (3,4,5)") &&
                          Catch::Contains("batch"));
  REQUIRE_THROWS_WITH(matmul(rnd({4}, 1), rnd({4, 2}, 2)),
                      Catch::Contains("[matmul]") && Catch::Contains("(4) and (4,2)"));
  REQUIRE_THROWS_WITH(matmul(rnd({3, 4}, 1, DType::Float32), rnd({4, 2}, 2, DType::Float64)),
                      Catch::Contains("[matmul]") && Catch::Contains("float32") && Catch::Contains("float64"));
  REQUIRE_THROWS_WITH(matmul(Tensor::zeros({3, 4}, DType::Int64), Tensor::zeros({4, 2}, DType::Int64)),
                      Catch::Contains("[matmul]") && Catch::Contains("int64"));
  REQUIRE_THROWS_WITH(matmul(Tensor(), rnd({4, 2}, 2)), Catch::Contains("[matmul]"));
}

TEST_CASE("matmul and linear read contiguous and transposed operands in place", "[linalg]") {
  Tensor a = rnd({64, 32}, 1, DType::Float32), b = rnd({32, 48}, 2, DType::Float32);
  Tensor at_ = rnd({32, 64}, 3, DType::Float32).t(), bt = rnd({48, 32}, 4, DType::Float32).t();
  Tensor a3 = rnd({4, 16, 32}, 5, DType::Float32), b3 = rnd({4, 32, 48}, 6, DType::Float32);
  Tensor w = rnd({48, 32}, 7, DType::Float32), bias = rnd({48}, 8, DType::Float32);
  REQUIRE(copies_made_by([&] { matmul(a, b); }) == 0);
  REQUIRE(copies_made_by([&] { matmul(at_, bt); }) == 0);
  REQUIRE(copies_made_by([&] { matmul(a3, b3); }) == 0);
  REQUIRE(copies_made_by([&] { matmul(a3.transpose(1, 2), a3); }) == 0);
  REQUIRE(copies_made_by([&] { matmul(rnd({16, 4, 32}, 9, DType::Float32).transpose(0, 1), bt); }) == 0);
  REQUIRE(copies_made_by([&] { linear(a3, w, bias); }) == 0);
  REQUIRE(copies_made_by([&] { linear(at_, w, bias); }) == 0);
  // A column stride of 2 cannot go to BLAS: exactly that operand is copied.
  Tensor s = rnd({32, 48, 2}, 10, DType::Float32).select(2, 0);
  REQUIRE(copies_made_by([&] { matmul(a, s); }) == 1);
  // Backward goes through transposed views: no copies either.
  Tensor x = rnd({4, 16, 32}, 11, DType::Float32).requires_grad_();
  Tensor wg = rnd({48, 32}, 12, DType::Float32).requires_grad_(), bg = rnd({48}, 13, DType::Float32).requires_grad_();
  Tensor y1 = linear(x, wg, bg), y2 = matmul(x, b.detach().requires_grad_());
  Tensor y3 = matmul(x.transpose(1, 2), rnd({4, 16, 8}, 14, DType::Float32).requires_grad_());
  REQUIRE(copies_made_by([&] {
            y1.backward(rnd({4, 16, 48}, 15, DType::Float32));
            y2.backward(rnd({4, 16, 48}, 16, DType::Float32));
            y3.backward(rnd({4, 32, 8}, 17, DType::Float32));
          }) == 0);
}

TEST_CASE("linear matches x W^T + b", "[linalg]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    double tol = dt == DType::Float32 ? 1e-5 : 1e-12;
    Tensor x = rnd({2, 3, 4}, 1, dt), w = rnd({5, 4}, 2, dt), b = rnd({5}, 3, dt);
    Tensor y = linear(x, w, b);
    REQUIRE(y.shape() == Shape{2, 3, 5});
    std::vector<double> want;
    for (int64_t i = 0; i < 2; ++i) {
      auto r = naive_mm(x.select(0, i), w.t());
      for (size_t k = 0; k < r.size(); ++k) r[k] += b.at({(int64_t)(k % 5)});
      want.insert(want.end(), r.begin(), r.end());
    }
    require_close(y.to_vector(), want, tol);
    // Without bias, 2D and 1D inputs.
    Tensor x2 = rnd({3, 4}, 4, dt);
    require_close(linear(x2, w).to_vector(), naive_mm(x2, w.t()), tol);
    Tensor x1 = rnd({4}, 5, dt);
    Tensor y1 = linear(x1, w, b);
    REQUIRE(y1.shape() == Shape{5});
    auto r1 = naive_mm(x1.unsqueeze(0), w.t());
    for (size_t k = 0; k < 5; ++k) r1[k] += b.at({(int64_t)k});
    require_close(y1.to_vector(), r1, tol);
  }
}

TEST_CASE("linear gradients: dx = dy W, dW = dy^T x over all rows, db = row sum", "[linalg]") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    double tol = dt == DType::Float32 ? 1e-5 : 1e-12;
    Tensor x = rnd({2, 3, 4}, 1, dt).requires_grad_();
    Tensor w = rnd({5, 4}, 2, dt).requires_grad_();
    Tensor b = rnd({5}, 3, dt).requires_grad_();
    Tensor g = rnd({2, 3, 5}, 4, dt);
    linear(x, w, b).backward(g);
    Tensor x2 = x.detach().reshape({6, 4}), g2 = g.reshape({6, 5});
    require_close(x.grad().to_vector(), naive_mm(g2, w.detach()), tol);
    require_close(w.grad().to_vector(), naive_mm(g2.t(), x2), tol);
    std::vector<double> db(5, 0.0);
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t o = 0; o < 5; ++o) db[(size_t)o] += g2.at({r, o});
    require_close(b.grad().to_vector(), db, tol);
  }
}

TEST_CASE("linear errors", "[linalg]") {
  REQUIRE_THROWS_WITH(linear(rnd({3, 4}, 1), rnd({5, 6}, 2)),
                      Catch::Contains("[linear]") && Catch::Contains("(3,4)") && Catch::Contains("(5,6)"));
  REQUIRE_THROWS_WITH(linear(rnd({3, 4}, 1), rnd({5, 4}, 2), rnd({6}, 3)),
                      Catch::Contains("[linear]") && Catch::Contains("bias (6)"));
  REQUIRE_THROWS_WITH(linear(rnd({3, 4}, 1), rnd({4}, 2)), Catch::Contains("[linear]") && Catch::Contains("(out, in)"));
  REQUIRE_THROWS_WITH(linear(rnd({3, 4}, 1, DType::Float32), rnd({5, 4}, 2)),
                      Catch::Contains("[linear]") && Catch::Contains("float32") && Catch::Contains("float64"));
}

TEST_CASE("linalg gradcheck cases pass", "[linalg]") {
  std::vector<GradcheckCase> cases;
  add_linalg_cases(cases);
  REQUIRE(cases.size() >= 10);
  for (const auto& c : cases) {
    auto r = run_gradcheck_case(c);
    INFO(c.op << " / " << c.label << ": " << r.report());
    CHECK(r.passed);
  }
}
