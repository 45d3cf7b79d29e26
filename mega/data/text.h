// Character-level text for language modelling.
//
// Characters are bytes: a UTF-8 character outside ASCII becomes several tokens (the default
// corpus, the King James Bible, is pure ASCII: 73 distinct bytes). Two vocabularies:
//   CharVocab::from_text  the distinct bytes present in the whole file, in byte order, with ids
//                         1..V (small softmax; built from train + validation, so validation has
//                         no unknown characters);
//   CharVocab::bytes      all 256 bytes, id = byte + 1 (any text, vocabulary 257).
// Id 0 is padding in both, as everywhere in megagrad (the models' padding_idx).
//
// The text is split by position: the last val_fraction of the bytes (default 5%) is validation.
// Training windows are sampled at uniform random start positions from a seeded Generator
// (Philox4x32-10, core/rng.h): resumable by saving the generator's (seed, offset).
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>
#include "core/json.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace megagrad::data {

class CharVocab {
 public:
  CharVocab() { to_id_.fill(-1); }  // empty (only the pad id)
  static CharVocab from_text(std::string_view text);  // error for an empty text
  static CharVocab bytes();

  int64_t size() const { return (int64_t)chars_.size() + 1; }  // including the pad id 0
  // The id of a byte, or -1 when it is not in the vocabulary.
  int64_t id(uint8_t byte) const { return to_id_[byte]; }
  uint8_t byte(int64_t id) const;  // error for pad (0) and ids >= size()
  // Errors name the first byte that is not in the vocabulary and its position.
  std::vector<uint8_t> encode(std::string_view text) const;  // ids fit a byte for present-char vocabularies
  std::vector<int64_t> encode_ids(std::string_view text) const;
  std::string decode(std::span<const int64_t> ids) const;

  // {"chars": [byte values in id order]}, to store with a checkpoint (decode needs it).
  Json to_json() const;
  static CharVocab from_json(const Json& j);  // validated: distinct bytes 0-255, in increasing order

 private:
  std::vector<uint8_t> chars_;  // id - 1 -> byte
  std::array<int16_t, 256> to_id_;
};

struct TextData {
  CharVocab vocab;
  std::vector<int64_t> train, val;  // token ids
};

// Splits `text` (last val_fraction for validation; 0 <= val_fraction < 1) and encodes it.
// byte_vocab selects CharVocab::bytes() instead of from_text. `what` names the source in errors.
TextData make_text_data(std::string_view text, double val_fraction = 0.05, bool byte_vocab = false,
                        std::string_view what = "text");
TextData load_text(const std::string& path, double val_fraction = 0.05, bool byte_vocab = false);

struct LMBatch {
  Tensor inputs;   // (B, T) int64: ids[s, s + T)
  Tensor targets;  // (B, T) int64: ids[s + 1, s + T + 1), the next character of each input
};

// B windows at uniform random starts s in [0, n - T - 1]: draw b uses Philox counter
// gen.advance(B) + b. Error when the split has fewer than T + 1 tokens.
LMBatch sample_windows(std::span<const int64_t> ids, int64_t batch, int64_t seq_len, Generator& gen);
// Evaluation covers the split with consecutive windows that overlap by one token (window k
// starts at k * T): num_eval_windows = floor((n - 1) / T); eval_windows returns windows
// [first, first + count) of them.
int64_t num_eval_windows(std::span<const int64_t> ids, int64_t seq_len);
LMBatch eval_windows(std::span<const int64_t> ids, int64_t seq_len, int64_t first, int64_t count);

// The default corpus: the King James Bible as printed by `bible -l79 "gen1:1-rev22:21"` (Debian's
// package bible-kjv; 4.3 MB of ASCII; -l79 fixes the line width, which otherwise follows
// $COLUMNS). Cached as <dir>/kjv.txt, written atomically; later calls only check that it exists.
// dir "" is default_cache_dir(). Returns the file's path. Errors name the package when the
// `bible` program is missing.
std::string ensure_kjv_corpus(const std::string& dir = "");
// $MEGAGRAD_CACHE, else $XDG_CACHE_HOME/megagrad, else $HOME/.cache/megagrad, else
// /tmp/megagrad-cache.
std::string default_cache_dir();

}  // namespace megagrad::data
