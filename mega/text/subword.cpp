#include "mega/text/subword.h"
#include "core/error.h"

#if MEGAGRAD_HAS_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <mutex>
#include <unordered_map>
// Exported by libsentencepiece but declared in no installed header: the training log's level
// (0 info, 1 warning, 2 error). Training prints pages of INFO lines otherwise.
namespace sentencepiece::logging {
void SetMinLogLevel(int v);
}
#endif

namespace megagrad::text {

namespace {
constexpr const char* kOp = "subword";
}

bool sentencepiece_built() { return MEGAGRAD_HAS_SENTENCEPIECE; }

std::string sentencepiece_build_info() {
#if MEGAGRAD_HAS_SENTENCEPIECE
  return "built: yes (SentencePiece " MEGAGRAD_SENTENCEPIECE_VERSION "; subword tokenizer, mega/text/subword.cpp)";
#else
  return "not built (no SentencePiece at configure time: Debian's libsentencepiece-dev)";
#endif
}

#if MEGAGRAD_HAS_SENTENCEPIECE

struct SubwordTokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  std::string bytes;
};

namespace {
class VectorIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorIterator(const std::vector<std::string>& v) : v_(v) {}
  bool done() const override { return i_ >= v_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return v_[i_]; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  const std::vector<std::string>& v_;
  size_t i_ = 0;
};

// SentencePiece's trainer and its random seed are process-wide: one training at a time.
std::mutex& train_mutex() {
  static std::mutex m;
  return m;
}

std::shared_ptr<SubwordTokenizer::Impl> load(std::string bytes) {
  auto impl = std::make_shared<SubwordTokenizer::Impl>();
  sentencepiece::util::Status st = impl->sp.LoadFromSerializedProto(bytes);
  MG_CHECK(st.ok(), kOp, "not a SentencePiece model ({} bytes): {}", bytes.size(), st.ToString());
  const sentencepiece::SentencePieceProcessor& sp = impl->sp;
  MG_CHECK(sp.pad_id() == SubwordTokenizer::kPad && sp.bos_id() == SubwordTokenizer::kBos &&
               sp.eos_id() == SubwordTokenizer::kEos && sp.unk_id() == SubwordTokenizer::kUnk,
           kOp,
           "the model's special ids are pad {}, bos {}, eos {}, unk {}; megagrad's are pad 0, bos 1, eos 2, unk 3 "
           "(train it with SubwordTokenizer::train)",
           sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id());
  impl->bytes = std::move(bytes);
  return impl;
}
}  // namespace

SubwordTokenizer SubwordTokenizer::train(const std::vector<std::string>& sentences, const SubwordOptions& opt) {
  MG_CHECK(!sentences.empty(), kOp, "no training sentences");
  MG_CHECK(opt.vocab_size >= 5, kOp, "vocab_size {} is too small: 4 ids are pad, bos, eos and unk", opt.vocab_size);
  MG_CHECK(opt.model_type == "unigram" || opt.model_type == "bpe", kOp,
           "model type \"{}\" is not \"unigram\" or \"bpe\"", opt.model_type);
  MG_CHECK(opt.character_coverage > 0 && opt.character_coverage <= 1, kOp, "character_coverage {} is not in (0, 1]",
           opt.character_coverage);
  MG_CHECK(opt.num_threads >= 1, kOp, "num_threads must be at least 1, got {}", opt.num_threads);
  MG_CHECK(opt.max_sentence_length >= 1, kOp, "max_sentence_length must be positive, got {}", opt.max_sentence_length);
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", opt.model_type},
      {"vocab_size", std::to_string(opt.vocab_size)},
      {"character_coverage", fmt::format("{}", opt.character_coverage)},
      {"pad_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"unk_id", "3"},
      {"input_sentence_size", "0"},  // every sentence: no sampling
      {"shuffle_input_sentence", "false"},
      {"num_threads", std::to_string(opt.num_threads)},
      {"max_sentence_length", std::to_string(opt.max_sentence_length)},
  };
  std::string bytes;
  {
    std::lock_guard<std::mutex> lock(train_mutex());
    sentencepiece::logging::SetMinLogLevel(2);
    sentencepiece::SetRandomGeneratorSeed(opt.seed);
    VectorIterator it(sentences);
    sentencepiece::util::Status st = sentencepiece::SentencePieceTrainer::Train(args, &it, &bytes);
    MG_CHECK(st.ok(), kOp, "SentencePiece training failed ({} sentences, vocab_size {}, {}): {}", sentences.size(),
             opt.vocab_size, opt.model_type, st.ToString());
  }
  SubwordTokenizer t;
  t.impl_ = load(std::move(bytes));
  return t;
}

SubwordTokenizer SubwordTokenizer::from_bytes(std::string_view bytes) {
  MG_CHECK(!bytes.empty(), kOp, "empty model bytes");
  SubwordTokenizer t;
  t.impl_ = load(std::string(bytes));
  return t;
}

#define MG_SUBWORD_LOADED() MG_CHECK(impl_ != nullptr, kOp, "no model: train one or load one with from_bytes")

std::string SubwordTokenizer::to_bytes() const {
  MG_SUBWORD_LOADED();
  return impl_->bytes;
}

int64_t SubwordTokenizer::vocab_size() const {
  MG_SUBWORD_LOADED();
  return impl_->sp.GetPieceSize();
}

std::vector<int64_t> SubwordTokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  MG_SUBWORD_LOADED();
  std::vector<int> ids;
  sentencepiece::util::Status st = impl_->sp.Encode(text, &ids);
  MG_CHECK(st.ok(), kOp, "cannot encode \"{}\": {}", text.substr(0, 80), st.ToString());
  std::vector<int64_t> out;
  out.reserve(ids.size() + 2);
  if (add_bos) out.push_back(kBos);
  out.insert(out.end(), ids.begin(), ids.end());
  if (add_eos) out.push_back(kEos);
  return out;
}

std::vector<std::string> SubwordTokenizer::encode_pieces(std::string_view text) const {
  MG_SUBWORD_LOADED();
  std::vector<std::string> pieces;
  sentencepiece::util::Status st = impl_->sp.Encode(text, &pieces);
  MG_CHECK(st.ok(), kOp, "cannot encode \"{}\": {}", text.substr(0, 80), st.ToString());
  return pieces;
}

std::string SubwordTokenizer::decode(std::span<const int64_t> ids) const {
  MG_SUBWORD_LOADED();
  const int64_t v = impl_->sp.GetPieceSize();
  std::vector<int> in;
  in.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    MG_CHECK(ids[i] >= 0 && ids[i] < v, kOp, "id {} at position {} is outside the vocabulary of {}", ids[i], i, v);
    if (ids[i] != kPad && ids[i] != kBos && ids[i] != kEos) in.push_back((int)ids[i]);
  }
  std::string out;
  sentencepiece::util::Status st = impl_->sp.Decode(in, &out);
  MG_CHECK(st.ok(), kOp, "cannot decode {} ids: {}", in.size(), st.ToString());
  return out;
}

std::string SubwordTokenizer::id_to_piece(int64_t id) const {
  MG_SUBWORD_LOADED();
  MG_CHECK(id >= 0 && id < impl_->sp.GetPieceSize(), kOp, "id {} is outside the vocabulary of {}", id,
           impl_->sp.GetPieceSize());
  return impl_->sp.IdToPiece((int)id);
}

int64_t SubwordTokenizer::piece_to_id(std::string_view piece) const {
  MG_SUBWORD_LOADED();
  return impl_->sp.PieceToId(piece);
}

#else  // no SentencePiece

struct SubwordTokenizer::Impl {};

namespace {
[[noreturn]] void missing() { fail(kOp, "built without SentencePiece: install libsentencepiece-dev and rebuild"); }
}  // namespace

SubwordTokenizer SubwordTokenizer::train(const std::vector<std::string>&, const SubwordOptions&) { missing(); }
SubwordTokenizer SubwordTokenizer::from_bytes(std::string_view) { missing(); }
std::string SubwordTokenizer::to_bytes() const { missing(); }
int64_t SubwordTokenizer::vocab_size() const { missing(); }
std::vector<int64_t> SubwordTokenizer::encode(std::string_view, bool, bool) const { missing(); }
std::vector<std::string> SubwordTokenizer::encode_pieces(std::string_view) const { missing(); }
std::string SubwordTokenizer::decode(std::span<const int64_t>) const { missing(); }
std::string SubwordTokenizer::id_to_piece(int64_t) const { missing(); }
int64_t SubwordTokenizer::piece_to_id(std::string_view) const { missing(); }

#endif

SubwordTokenizer::SubwordTokenizer() = default;
SubwordTokenizer::~SubwordTokenizer() = default;
SubwordTokenizer::SubwordTokenizer(SubwordTokenizer&&) noexcept = default;
SubwordTokenizer& SubwordTokenizer::operator=(SubwordTokenizer&&) noexcept = default;
SubwordTokenizer::SubwordTokenizer(const SubwordTokenizer&) = default;
SubwordTokenizer& SubwordTokenizer::operator=(const SubwordTokenizer&) = default;

}  // namespace megagrad::text
