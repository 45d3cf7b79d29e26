// Subword tokenizer: a thin wrapper over SentencePiece (Debian: libsentencepiece-dev).
//
// Ids are fixed, whatever the model:
//   0 <pad>  padding (megagrad's padding id everywhere: the models' padding_idx)
//   1 <s>    beginning of sentence (bos)
//   2 </s>   end of sentence (eos)
//   3 <unk>  unknown: a character never seen in training encodes to it, never an error
// and ids 4 .. vocab_size-1 are the learned pieces.
//
// Training is in memory (no file is written anywhere): the sentences given, nothing sampled or
// shuffled (input_sentence_size 0, shuffle off), SentencePiece's random generator seeded with
// `seed`, and 1 training thread by default, so that the model's bytes are a function of the
// sentences and the options (tests/test_parallel_data.cpp checks it). With nothing sampled the
// seed does not change the model (checked too); the thread count does (SentencePiece 0.1.97,
// unigram and BPE alike, measured on 6,000 Bible sentences), so keep num_threads at 1 for models
// that must be the same on every machine. For translation, train one joint model on the training
// split only, both languages (data::joint_sentences).
//
// The model is its serialized SentencePiece ModelProto (to_bytes / from_bytes): store it in a
// checkpoint's metadata or beside it, and load it back to get the same ids.
//
// Without SentencePiece at build time, every function but sentencepiece_built() and
// sentencepiece_build_info() throws "[subword] built without SentencePiece: install
// libsentencepiece-dev and rebuild".
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace megagrad::text {

bool sentencepiece_built();
std::string sentencepiece_build_info();  // a line for `megagrad info`

struct SubwordOptions {
  int64_t vocab_size = 4000;            // including the 4 special ids
  std::string model_type = "unigram";   // "unigram" or "bpe"
  double character_coverage = 1.0;      // 1.0: every character of the training text gets a piece
  uint32_t seed = 0;                    // SentencePiece's random generator (nothing is sampled here)
  int num_threads = 1;                  // the trained model depends on the thread count
  int64_t max_sentence_length = 8192;   // bytes; longer training sentences are skipped by SentencePiece
};

class SubwordTokenizer {
 public:
  static constexpr int64_t kPad = 0, kBos = 1, kEos = 2, kUnk = 3;

  SubwordTokenizer();  // empty: every call but loaded() throws
  ~SubwordTokenizer();
  SubwordTokenizer(SubwordTokenizer&&) noexcept;
  SubwordTokenizer& operator=(SubwordTokenizer&&) noexcept;
  SubwordTokenizer(const SubwordTokenizer&);  // shares the (immutable) model
  SubwordTokenizer& operator=(const SubwordTokenizer&);

  // Errors: no sentences, a vocabulary too small (< 5) or larger than the text allows (SentencePiece's
  // message, e.g. "Vocabulary size is too large"), an unknown model type.
  static SubwordTokenizer train(const std::vector<std::string>& sentences, const SubwordOptions& opt = {});
  // The bytes of to_bytes(); errors for bytes that are not a model, or a model whose special ids
  // differ from the fixed ones above.
  static SubwordTokenizer from_bytes(std::string_view bytes);
  std::string to_bytes() const;

  bool loaded() const { return impl_ != nullptr; }
  int64_t vocab_size() const;
  // The pieces' ids, without bos/eos; with add_bos/add_eos, kBos first and/or kEos last.
  std::vector<int64_t> encode(std::string_view text, bool add_bos = false, bool add_eos = false) const;
  std::vector<std::string> encode_pieces(std::string_view text) const;
  // The text of the ids; pad, bos and eos are dropped, unk becomes " ⁇ " (SentencePiece's
  // surface); error for an id outside [0, vocab_size).
  std::string decode(std::span<const int64_t> ids) const;
  std::string id_to_piece(int64_t id) const;
  int64_t piece_to_id(std::string_view piece) const;  // kUnk for an unknown piece

  struct Impl;  // the SentencePiece processor and the model's bytes (subword.cpp)

 private:
  std::shared_ptr<const Impl> impl_;
};

}  // namespace megagrad::text
