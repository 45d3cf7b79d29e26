#include "mega/data/batch.h"
#include <algorithm>
#include <limits>
#include "core/error.h"
#include "core/rng.h"

namespace megagrad::data {

uint64_t philox64(uint64_t seed, uint64_t stream, uint64_t counter) {
  auto r = philox4x32(seed, stream, counter);
  return (uint64_t)r[0] << 32 | r[1];
}

void SequenceDataset::add(std::span<const uint8_t> seq, int64_t label) {
  tokens.insert(tokens.end(), seq.begin(), seq.end());
  offsets.push_back((int64_t)tokens.size());
  labels.push_back(label);
}

int64_t SequenceDataset::max_length() const {
  int64_t m = 0;
  for (int64_t i = 0; i < size(); ++i) m = std::max(m, length(i));
  return m;
}

namespace {

// B rows of lengths `lens`; row b's tokens come from get(b, t).
template <typename Get>
PaddedBatch pad_rows(const std::vector<int64_t>& lens, const PadOptions& o, Get get) {
  constexpr const char* op = "pad_batch";
  MG_CHECK(!lens.empty(), op, "no sequences to pad");
  MG_CHECK(o.pad_id >= 0, op, "pad id {} is negative", o.pad_id);
  MG_CHECK(o.multiple_of >= 1, op, "multiple_of must be at least 1, got {}", o.multiple_of);
  MG_CHECK(o.length >= 0, op, "length must be 0 (the longest sequence) or positive, got {}", o.length);
  MG_CHECK(is_floating(o.mask_dtype), op, "the padding mask must be float32 or float64, got {}", o.mask_dtype);
  const int64_t B = (int64_t)lens.size();
  int64_t longest = *std::max_element(lens.begin(), lens.end());
  int64_t L = o.length;
  if (L == 0) {
    L = std::max<int64_t>(longest, 1);
  } else if (longest > L) {
    int64_t b = std::find(lens.begin(), lens.end(), longest) - lens.begin();
    fail(op, "sequence {} has {} tokens, longer than the batch length {}", b, longest, L);
  }
  L = (L + o.multiple_of - 1) / o.multiple_of * o.multiple_of;
  PaddedBatch out;
  out.lengths = lens;
  out.tokens = Tensor::full({B, L}, (double)o.pad_id, DType::Int64);
  out.padding_mask = Tensor::ones({B, L}, o.mask_dtype);
  int64_t* tok = out.tokens.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < lens[b]; ++t) tok[b * L + t] = get(b, t);
  auto clear_mask = [&]<typename T>(T* m) {
    for (int64_t b = 0; b < B; ++b) std::fill(m + b * L, m + b * L + lens[b], T(0));
  };
  if (o.mask_dtype == DType::Float32) clear_mask(out.padding_mask.data_ptr<float>());
  else clear_mask(out.padding_mask.data_ptr<double>());
  return out;
}

}  // namespace

PaddedBatch pad_batch(const std::vector<std::vector<int64_t>>& seqs, const PadOptions& options) {
  std::vector<int64_t> lens;
  for (const auto& s : seqs) lens.push_back((int64_t)s.size());
  return pad_rows(lens, options, [&](int64_t b, int64_t t) { return seqs[b][t]; });
}

PaddedBatch pad_batch(const std::vector<std::span<const uint8_t>>& seqs, const PadOptions& options) {
  std::vector<int64_t> lens;
  for (const auto& s : seqs) lens.push_back((int64_t)s.size());
  return pad_rows(lens, options, [&](int64_t b, int64_t t) { return (int64_t)seqs[b][t]; });
}

PaddedBatch make_batch(const SequenceDataset& ds, std::span<const int64_t> indices, const PadOptions& options) {
  std::vector<std::span<const uint8_t>> seqs;
  std::vector<int64_t> labels;
  for (int64_t i : indices) {
    MG_CHECK(i >= 0 && i < ds.size(), "make_batch", "index {} out of range for a dataset of {} examples", i, ds.size());
    seqs.push_back(ds.sequence(i));
    labels.push_back(ds.labels[i]);
  }
  PaddedBatch out = pad_batch(seqs, options);
  out.labels = Tensor::from_vector(labels, {(int64_t)labels.size()});
  return out;
}

// ---- BatchIterator ----

namespace {
constexpr const char* kIt = "batch_iterator";
constexpr uint64_t kShuffleStream = 0x5348554646000000ull;  // "SHUFF": keeps clear of other draws
}  // namespace

BatchIterator::BatchIterator(int64_t size, int64_t batch_size, uint64_t seed, bool shuffle, bool drop_last)
    : size_(size), batch_size_(batch_size), seed_(seed), shuffle_(shuffle), drop_last_(drop_last) {
  MG_CHECK(size > 0, kIt, "the dataset is empty");
  MG_CHECK(batch_size > 0, kIt, "batch size must be positive, got {}", batch_size);
  MG_CHECK(!drop_last || batch_size <= size, kIt,
           "batch size {} with drop_last leaves no batch in a dataset of {} examples", batch_size, size);
  order_ = epoch_order(0);
}

int64_t BatchIterator::batches_per_epoch() const {
  return drop_last_ ? size_ / batch_size_ : (size_ + batch_size_ - 1) / batch_size_;
}

std::vector<int64_t> BatchIterator::epoch_order(int64_t e) const {
  MG_CHECK(e >= 0, kIt, "epoch {} is negative", e);
  std::vector<int64_t> order(size_);
  for (int64_t i = 0; i < size_; ++i) order[i] = i;
  if (!shuffle_) return order;
  // Fisher-Yates: position i swaps with a uniform j in [0, i]. Stream (e), counter i.
  for (int64_t i = size_ - 1; i > 0; --i) {
    uint64_t j = bounded(philox64(seed_, kShuffleStream | (uint64_t)e, (uint64_t)i), (uint64_t)i + 1);
    std::swap(order[i], order[j]);
  }
  return order;
}

std::vector<int64_t> BatchIterator::next() {
  int64_t n = std::min(batch_size_, size_ - position_);
  // The last batch of an epoch increments it, which must not overflow (undefined behaviour): refused
  // before anything changes. Only a saved state with an absurd epoch gets here.
  MG_CHECK(position_ + n < epoch_end() || epoch_ < std::numeric_limits<int64_t>::max(), kIt,
           "epoch {} cannot be followed by another", epoch_);
  std::vector<int64_t> batch(order_.begin() + position_, order_.begin() + position_ + n);
  position_ += n;
  if (position_ >= epoch_end()) {  // keep the state canonical: (e, end) is (e + 1, 0)
    ++epoch_;
    position_ = 0;
    order_ = epoch_order(epoch_);
  }
  return batch;
}

Json BatchIterator::state_json() const {
  Json j = Json::object();
  j.set("size", size_);
  j.set("batch_size", batch_size_);
  j.set("seed", std::to_string(seed_));
  j.set("shuffle", shuffle_);
  j.set("drop_last", drop_last_);
  j.set("epoch", epoch_);
  j.set("position", position_);
  return j;
}

void BatchIterator::set_position(int64_t epoch, int64_t position) {
  MG_CHECK(epoch >= 0, kIt, "saved epoch {} is negative", epoch);
  MG_CHECK(position >= 0 && position < epoch_end() && position % batch_size_ == 0, kIt,
           "saved position {} is not the start of a batch (batch size {}, {} examples per epoch{})", position,
           batch_size_, size_, drop_last_ ? ", drop_last" : "");
  if (epoch != epoch_) order_ = epoch_order(epoch);
  epoch_ = epoch;
  position_ = position;
}

void BatchIterator::load_state_json(const Json& s) {
  MG_CHECK(s.is_object(), kIt, "saved state must be a JSON object, got {}", s.describe());
  for (const auto& item : s.items()) {
    const std::string& key = item.first;  // not a structured binding: clang < 16 cannot capture one
    static const char* known[] = {"size", "batch_size", "seed", "shuffle", "drop_last", "epoch", "position"};
    MG_CHECK(std::find_if(std::begin(known), std::end(known), [&](const char* k) { return key == k; }) !=
                 std::end(known),
             kIt, "unknown key \"{}\" in the saved state", key);
  }
  auto expect_int = [&](const char* key, int64_t mine) {
    int64_t saved = s.at(key).get_int();
    MG_CHECK(saved == mine, kIt, "saved state has {} {}, this iterator has {}", key, saved, mine);
  };
  auto expect_bool = [&](const char* key, bool mine) {
    bool saved = s.at(key).get_bool();
    MG_CHECK(saved == mine, kIt, "saved state has {} {}, this iterator has {}", key, saved, mine);
  };
  expect_int("size", size_);
  expect_int("batch_size", batch_size_);
  expect_bool("shuffle", shuffle_);
  expect_bool("drop_last", drop_last_);
  const std::string& seed = s.at("seed").get_string();
  MG_CHECK(seed == std::to_string(seed_), kIt, "saved state has seed \"{}\", this iterator has \"{}\"", seed, seed_);
  set_position(s.at("epoch").get_int(), s.at("position").get_int());
}

}  // namespace megagrad::data
