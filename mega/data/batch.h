// Datasets of token sequences, padding into batches, and a seeded, resumable batch order.
//
// Conventions shared by every megagrad dataset: token id 0 is padding (the models' padding_idx),
// ids are int64 in batches, and padding masks are float (B, L) with 1 at pads, in the dtype of
// the model's activations (what MegaEncoderLayer::forward takes).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>
#include "core/json.h"
#include "core/tensor.h"

namespace megagrad::data {

// Sequences of small token ids (< 256) stored back to back, plus one integer label each:
// compact enough for LRA ListOps (about 10^8 tokens) in memory.
struct SequenceDataset {
  std::vector<uint8_t> tokens;         // all sequences, concatenated
  std::vector<int64_t> offsets{0};     // sequence i is tokens[offsets[i], offsets[i+1])
  std::vector<int64_t> labels;         // one per sequence

  int64_t size() const { return (int64_t)labels.size(); }
  int64_t length(int64_t i) const { return offsets[i + 1] - offsets[i]; }
  std::span<const uint8_t> sequence(int64_t i) const {
    return {tokens.data() + offsets[i], (size_t)length(i)};
  }
  void add(std::span<const uint8_t> seq, int64_t label);
  int64_t max_length() const;
};

struct PadOptions {
  int64_t pad_id = 0;
  int64_t length = 0;       // the padded length L; 0: the longest sequence in the batch
  int64_t multiple_of = 1;  // L is rounded up to a multiple of this (e.g. the chunk size)
  DType mask_dtype = DType::Float32;
};

struct PaddedBatch {
  Tensor tokens;        // (B, L) int64, right-padded with pad_id
  Tensor padding_mask;  // (B, L) mask_dtype, 1 at pads, 0 at tokens
  Tensor labels;        // (B) int64 (make_batch only; undefined from pad_batch)
  std::vector<int64_t> lengths;  // the unpadded length of each row
};

// Pads sequences (right-padding) into one batch. A sequence longer than options.length is an
// error (never silently truncated); so are an empty list, a negative pad id or multiple_of < 1.
PaddedBatch pad_batch(const std::vector<std::vector<int64_t>>& seqs, const PadOptions& options = {});
PaddedBatch pad_batch(const std::vector<std::span<const uint8_t>>& seqs, const PadOptions& options = {});
// The examples `indices` of `ds` as a padded batch with their labels.
PaddedBatch make_batch(const SequenceDataset& ds, std::span<const int64_t> indices,
                       const PadOptions& options = {});

// Batches of example indices over epochs. With shuffle, epoch e visits the examples in the order
// of a Fisher-Yates permutation drawn from Philox4x32-10 with key `seed` and counters (e, i), so
// the order depends only on (seed, epoch): the same on every machine and thread count. Batches
// never straddle two epochs; the last batch of an epoch is smaller unless drop_last, which
// skips it.
//
// The position (epoch, index into the epoch's order) is the whole state: save it with
// state_json() in a checkpoint and load_state_json() continues with exactly the batches that
// would have followed.
class BatchIterator {
 public:
  BatchIterator(int64_t size, int64_t batch_size, uint64_t seed, bool shuffle = true, bool drop_last = false);

  std::vector<int64_t> next();  // the next batch's indices
  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }  // examples of this epoch already served
  int64_t batches_per_epoch() const;
  // The order in which epoch `e` visits the examples.
  std::vector<int64_t> epoch_order(int64_t e) const;

  // {"size", "batch_size", "seed" (a decimal string: JSON numbers cannot hold every uint64),
  //  "shuffle", "drop_last", "epoch", "position"}.
  Json state_json() const;
  // Restores a saved position. The saved size, batch size, seed, shuffle and drop_last must equal
  // this iterator's (otherwise the batches would differ): a mismatch is an error naming it.
  void load_state_json(const Json& state);
  void set_position(int64_t epoch, int64_t position);  // checked like load_state_json

 private:
  int64_t size_, batch_size_;
  uint64_t seed_;
  bool shuffle_, drop_last_;
  int64_t epoch_ = 0, position_ = 0;
  std::vector<int64_t> order_;  // epoch_order(epoch_)
  int64_t epoch_end() const { return drop_last_ ? size_ / batch_size_ * batch_size_ : size_; }
};

// A uniform integer in [0, n) from 64 random bits: floor(bits * n / 2^64). Its bias, below
// n / 2^64, is far below anything measurable; it is the same on every machine.
inline uint64_t bounded(uint64_t bits, uint64_t n) { return (uint64_t)(((unsigned __int128)bits * n) >> 64); }

// 64 random bits for (seed, stream, counter) from Philox4x32-10 (core/rng.h).
uint64_t philox64(uint64_t seed, uint64_t stream, uint64_t counter);

}  // namespace megagrad::data
