// Helpers shared by the test files: comparisons of whole tensors, the visible skip, and a
// temporary directory.
#pragma once
#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>
#include <catch2/catch.hpp>
#include "core/tensor.h"
#include "mega/data/listops.h"

namespace megagrad::test {

// Comparisons. Each returns a distance to compare with `< tol` or `<= tol`. A NaN or an
// infinity on either side (or a size mismatch) gives INFINITY, never NaN: NaN would pass
// `!(d > tol)`, and std::max(m, NaN) keeps m, so a NaN tensor used to compare equal to anything.
// A test that expects non-finite values passes NonFinite::MustMatch: then NaN matches NaN and
// an infinity the same infinity, and anything else non-finite still gives INFINITY.
enum class NonFinite { Fail, MustMatch };

namespace detail {
// Whether a non-finite pair is accepted (it is then left out of the distance).
inline bool nonfinite_ok(double a, double b, NonFinite nf) {
  return nf == NonFinite::MustMatch && ((std::isnan(a) && std::isnan(b)) || a == b);
}
// Names the first bad element in the next assertion's message (Catch2 shows it on failure).
inline double nonfinite_at(size_t i, double a, double b) {
  UNSCOPED_INFO("non-finite value at element " << i << ": " << a << " vs " << b);
  return INFINITY;
}
inline double size_mismatch(size_t na, size_t nb) {
  UNSCOPED_INFO("sizes differ: " << na << " vs " << nb << " elements");
  return INFINITY;
}
}  // namespace detail

// The larger of m and v for loops that fold element errors; INFINITY once v is NaN or
// infinite (std::max(m, NaN) returns m and would hide the NaN).
inline double max_or_inf(double m, double v) { return std::isfinite(v) ? std::max(m, v) : INFINITY; }

// max |x - y|.
inline double max_abs_diff(const std::vector<double>& x, const std::vector<double>& y,
                           NonFinite nf = NonFinite::Fail) {
  if (x.size() != y.size()) return detail::size_mismatch(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) {
      if (detail::nonfinite_ok(x[i], y[i], nf)) continue;
      return detail::nonfinite_at(i, x[i], y[i]);
    }
    m = max_or_inf(m, std::abs(x[i] - y[i]));  // finite - finite may still overflow to inf
  }
  return m;
}

// max |x - y| relative to max |y| (y is the reference; 0 when both are all zeros).
inline double max_rel_diff(const std::vector<double>& x, const std::vector<double>& y,
                           NonFinite nf = NonFinite::Fail) {
  double m = max_abs_diff(x, y, nf);
  if (!(m < INFINITY)) return INFINITY;
  double scale = 0;
  for (double v : y)
    if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
  return m == 0 ? 0 : m / std::max(scale, 1e-300);
}

inline double max_abs_diff(const Tensor& a, const Tensor& b, NonFinite nf = NonFinite::Fail) {
  return max_abs_diff(a.to_vector(), b.to_vector(), nf);
}
inline double max_rel_diff(const Tensor& a, const Tensor& b, NonFinite nf = NonFinite::Fail) {
  return max_rel_diff(a.to_vector(), b.to_vector(), nf);
}

// A (B, L) key padding mask (1 = padded) with pads[b] padded positions at the right end of row b.
inline Tensor right_padding(int64_t L, const std::vector<int64_t>& pads, DType dt) {
  const int64_t B = (int64_t)pads.size();
  std::vector<double> m((size_t)(B * L), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = L - pads[(size_t)b]; t < L; ++t) m[(size_t)(b * L + t)] = 1.0;
  return Tensor::from_vector(m, {B, L}, dt);
}

// A test that cannot run here (no CUDA device, say) calls skip(why) and returns. The listener
// in main.cpp then counts the test case as skipped, not passed: the binary exits 77 (ctest's
// SKIP_RETURN_CODE, shown as ***Skipped) when every test case it ran was skipped, and prints
// the skipped ones' names otherwise. Catch2 v2 has no SKIP of its own.
inline bool& test_case_skipped() {  // set by skip(), cleared by the listener per test case
  static bool flag = false;
  return flag;
}
inline void skip(const std::string& why) {
  WARN("SKIPPED: " << why);
  test_case_skipped() = true;
}

// ListOps generated with `lc` and written as LRA TSV files train.tsv, val.tsv and test.tsv in
// `dir` (a folder that exists): the data of the tiny training runs in the tests.
inline void write_listops_splits(const std::string& dir, const data::ListOpsConfig& lc) {
  const data::ListOpsData ld = data::generate_listops(lc);
  data::write_listops_tsv(dir + "/train.tsv", ld.train);
  data::write_listops_tsv(dir + "/val.tsv", ld.val);
  data::write_listops_tsv(dir + "/test.tsv", ld.test);
}

// A fresh directory, removed with everything in it at the end of the test.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag = "test") {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("megagrad_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

}  // namespace megagrad::test
