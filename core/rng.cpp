#include "core/rng.h"
#include <cmath>
#include "core/backend.h"

namespace megagrad {

void Generator::set_batch_shard(int64_t first_row, int64_t rows, int64_t total_rows) {
  MG_CHECK(rows == 0 || (rows >= 1 && first_row >= 0 && first_row + rows <= total_rows), "set_batch_shard",
           "rows [{}, {}) are not a part of a batch of {}", first_row, first_row + rows, total_rows);
  shard_first_ = first_row, shard_rows_ = rows == total_rows ? 0 : rows, shard_total_ = total_rows;
}

uint64_t Generator::advance_batch(uint64_t n, std::string_view op) {
  if (shard_rows_ == 0) return advance(n);
  MG_CHECK(n % (uint64_t)shard_rows_ == 0, op,
           "a random mask of {} elements in the forward pass of a data-parallel shard of {} rows: its outermost "
           "dimension must run over the rows, so its size must be a multiple of them",
           n, shard_rows_);
  const uint64_t per_row = n / (uint64_t)shard_rows_;
  return advance(per_row * (uint64_t)shard_total_) + per_row * (uint64_t)shard_first_;
}

std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter_hi, uint64_t counter_lo) {
  constexpr uint32_t M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;
  uint32_t c0 = (uint32_t)counter_lo, c1 = (uint32_t)(counter_lo >> 32);
  uint32_t c2 = (uint32_t)counter_hi, c3 = (uint32_t)(counter_hi >> 32);
  uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = (uint64_t)M0 * c0, p1 = (uint64_t)M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += W0;
    k1 += W1;
  }
  return {c0, c1, c2, c3};
}

Generator& default_generator() {
  // One per thread: two models trained in two threads draw their dropout masks independently
  // and reproducibly, with no lock and no race.
  thread_local Generator g(0);
  return g;
}
void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

double uniform_at(uint64_t seed, uint64_t counter, double lo, double hi) {
  auto r = philox4x32(seed, 0, counter);
  return lo + (hi - lo) * uint_to_unit(r[0], r[1]);
}

double normal_at(uint64_t seed, uint64_t counter, double mean, double std) {
  auto r = philox4x32(seed, 0, counter);
  double u1 = uint_to_unit(r[0], r[1]), u2 = uint_to_unit(r[2], r[3]);
  u1 = std::max(u1, 1e-300);  // log(0) guard
  return mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

namespace {
// Element i of t gets the draw for counter first + i, on t's device (the backend's Philox loop or
// kernel: the same stream on every device).
void fill_random(std::string_view op, Tensor& t, Generator* gen, Dist dist, double a, double b) {
  MG_CHECK(t.is_contiguous(), op, "needs a contiguous tensor, got {}", t.desc());
  Generator& g = gen ? *gen : default_generator();
  uint64_t seed = g.seed(), first = g.advance((uint64_t)t.numel());
  MG_CHECK(is_floating(t.dtype()), op, "expected a float32 or float64 tensor, got {}", dtype_name(t.dtype()));
  backend(t.device()).philox_fill(t.device().index, t.dtype(), t.raw_device_data(), t.numel(), dist, a, b, seed,
                                  first);
}
}  // namespace

void uniform_(Tensor& t, double lo, double hi, Generator* gen) {
  fill_random("uniform_", t, gen, Dist::Uniform, lo, hi);
}
void normal_(Tensor& t, double mean, double std, Generator* gen) {
  fill_random("normal_", t, gen, Dist::Normal, mean, std);
}

Tensor uniform(const Shape& shape, double lo, double hi, DType dtype, Generator* gen) {
  Tensor t = Tensor::empty(shape, dtype);
  uniform_(t, lo, hi, gen);
  return t;
}
Tensor normal(const Shape& shape, double mean, double std, DType dtype, Generator* gen) {
  Tensor t = Tensor::empty(shape, dtype);
  normal_(t, mean, std, gen);
  return t;
}
Tensor rand(const Shape& shape, DType dtype, Generator* gen) { return uniform(shape, 0, 1, dtype, gen); }
Tensor randn(const Shape& shape, DType dtype, Generator* gen) { return normal(shape, 0, 1, dtype, gen); }

}  // namespace megagrad
