// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011). Element i of a draw depends
// only on (seed, offset + i), never on how the loop is split over threads, so results do not
// change with the thread count, and the CUDA backend can produce the same streams.
#pragma once
#include <array>
#include <cstdint>
#include <string_view>
#include "core/tensor.h"

namespace megagrad {

// Four 32-bit random words for (key, counter).
std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter_hi, uint64_t counter_lo);

// Uniform in [0, 1) from 32 random bits (float: 24 bits; double: 53 bits from two words).
inline double uint_to_unit(uint32_t hi, uint32_t lo) {
  uint64_t bits = ((uint64_t)hi << 21) ^ (uint64_t)lo;
  return (double)(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// A seed plus a running offset: each draw of n numbers consumes offsets [offset, offset + n).
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }
  // Reserves n counters and returns the first.
  uint64_t advance(uint64_t n) {
    uint64_t o = offset_;
    offset_ += n;
    return o;
  }

  // Data parallelism: this process computes rows [first_row, first_row + rows) of a global batch
  // of total_rows. Set for the forward pass of a shard (BatchShardScope), it makes the random
  // masks of that pass (dropout, attention dropout) the rows' part of the masks the whole batch
  // would draw in one process, so N ranks train as one process does, and every rank's generator
  // stays at the same offset. rows == total_rows: no shard (advance_batch is advance).
  void set_batch_shard(int64_t first_row, int64_t rows, int64_t total_rows);
  // Reserves the counters of a tensor of n elements whose outermost dimension runs over this
  // process's rows of the batch (e.g. (B, L, D), (B * chunks, C, C)): those of the global batch.
  // Returns this shard's first counter. Error when n is not a multiple of the shard's rows.
  uint64_t advance_batch(uint64_t n, std::string_view op);

 private:
  uint64_t seed_ = 0, offset_ = 0;
  int64_t shard_first_ = 0, shard_rows_ = 0, shard_total_ = 0;  // shard_rows_ 0: no shard
};

// Sets the batch shard of a generator for a scope, and clears it after.
class BatchShardScope {
 public:
  BatchShardScope(Generator& g, int64_t first_row, int64_t rows, int64_t total_rows) : g_(g) {
    g_.set_batch_shard(first_row, rows, total_rows);
  }
  ~BatchShardScope() { g_.set_batch_shard(0, 0, 0); }
  BatchShardScope(const BatchShardScope&) = delete;
  BatchShardScope& operator=(const BatchShardScope&) = delete;

 private:
  Generator& g_;
};

// The calling thread's default generator (seed 0 until manual_seed in that thread). A Generator
// is not synchronised: one thread at a time may draw from it.
Generator& default_generator();
void manual_seed(uint64_t seed);

// Element i gets a value from (seed, first + i).
double uniform_at(uint64_t seed, uint64_t counter, double lo, double hi);
double normal_at(uint64_t seed, uint64_t counter, double mean, double std);  // Box-Muller

// New tensors (leaves). `gen` defaults to the default generator.
Tensor rand(const Shape& shape, DType dtype = DType::Float32, Generator* gen = nullptr);
Tensor randn(const Shape& shape, DType dtype = DType::Float32, Generator* gen = nullptr);
Tensor uniform(const Shape& shape, double lo, double hi, DType dtype = DType::Float32,
               Generator* gen = nullptr);
Tensor normal(const Shape& shape, double mean, double std, DType dtype = DType::Float32,
              Generator* gen = nullptr);
// In place (no autograd), for parameter initialisation.
void uniform_(Tensor& t, double lo, double hi, Generator* gen = nullptr);
void normal_(Tensor& t, double mean, double std, Generator* gen = nullptr);

}  // namespace megagrad
