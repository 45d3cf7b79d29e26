// The four training tasks and the run configuration (defaults, merging, model construction).
#include "mega/train/tasks.h"
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "mega/config.h"
#include "mega/data/batch.h"
#include "mega/data/idx.h"
#include "mega/data/listops.h"
#include "mega/data/text.h"
#include "mega/models.h"
#include "mega/optim.h"
#include "mega/data/bible_parallel.h"
#include "mega/data/parallel.h"
#include "mega/seq2seq.h"
#include "mega/train/data_parallel.h"
#include "core/atomic_file.h"
#include "core/hash.h"

namespace megagrad {

namespace {

// ---------------------------------------------------------------- configuration

Json model_defaults(const std::string& task) {
  Json m = Json::object();
  m.set("type", "mega"), m.set("layers", 2), m.set("embed_dim", 64), m.set("hidden_dim", 128);
  m.set("ffn_hidden_dim", 128), m.set("z_dim", 32), m.set("n_dim", 16), m.set("chunk_size", -1);
  m.set("truncation", nullptr), m.set("rel_pos_bias", "simple"), m.set("max_positions", 512);
  m.set("attention_activation", "softmax"), m.set("norm_type", "layernorm"), m.set("norm_affine", true);
  m.set("prenorm", true), m.set("dropout", 0.0), m.set("attention_dropout", 0.0), m.set("hidden_dropout", 0.0);
  if (task != "translate") m.set("classifier_dim", 128);
  m.set("heads", 4);
  if (task != "charlm" && task != "translate") {
    // The head of the official LRAModel: classifier_layers Linear+gelu blocks (official default 1)
    // and a projection without bias (bias=False in the official model.py): both as the official.
    m.set("classifier_layers", 1), m.set("projection_bias", false);
  }
  // The token id of padding. Official: 1 (fairseq's dictionary: <s> 0, <pad> 1, </s> 2, <unk> 3).
  // Ours: 0, the pad id of megagrad's data; with another id the data's tokens are renumbered
  // (listops_model_ids). Only token input has padding: not fmnist.
  if (task == "listops") m.set("padding_idx", 0);
  if (task == "fmnist") m.set("max_positions", 784), m.set("chunk_size", 196);
  if (task == "charlm") {
    m.set("layers", 4), m.set("embed_dim", 128), m.set("hidden_dim", 256), m.set("ffn_hidden_dim", 256);
    m.set("z_dim", 64), m.set("chunk_size", 64), m.set("max_positions", 64);
    // The Transformer decoder's (model type "transformer"; MegaLM has neither): learned positions
    // (a max_positions table; false: sinusoidal) and the output projection tied to the embedding.
    m.set("learned_positions", false), m.set("tie_weights", false);
  }
  if (task == "translate") {
    // Encoder and decoder of `layers` layers each (2 + 2), D 128: about 1.5 M parameters with the
    // shared 4000 x 128 embedding, trainable on a CPU. Sentences up to 256 pieces (the Bible's
    // longest verse, Esther 8:9, is well below with 4000 pieces). Dropout 0.1 as the official
    // translation models (their 0.1-0.3).
    m.set("embed_dim", 128), m.set("hidden_dim", 256), m.set("ffn_hidden_dim", 256), m.set("z_dim", 64);
    m.set("max_positions", 256), m.set("dropout", 0.1);
    // The Transformer baseline's feed-forward width: 512 gives about Mega's parameter count (its
    // layers are smaller than Mega's at one ffn width).
    m.set("transformer_ffn_dim", 512);
  }
  return m;
}

Json data_defaults(const std::string& task) {
  Json d = Json::object();
  d.set("seed", 0);
  if (task == "listops") {
    d.set("preset", "short"), d.set("dir", nullptr), d.set("eval_file", nullptr);
    // null: the preset's value
    d.set("min_len", nullptr), d.set("max_len", nullptr), d.set("num_train", nullptr);
  }
  if (task == "fmnist") d.set("dir", data::kFashionMnistDir), d.set("val_size", 5000);
  if (task == "charlm") d.set("file", nullptr), d.set("seq_len", 256), d.set("val_fraction", 0.05);
  if (task == "translate") {
    // src null: the Bible corpus (mega/data/bible_parallel.h, cached as TSV). Else a user's
    // parallel text: src and tgt line-aligned files, or src a TSV and tgt null; its last
    // test_size pairs are the test split, the valid_size before them validation.
    d.set("src", nullptr), d.set("tgt", nullptr), d.set("valid_size", 500), d.set("test_size", 500);
    // The joint SentencePiece model, trained on the training split's two sides.
    d.set("vocab_size", 4000), d.set("subword_type", "unigram");
    // false: a sentence longer than model.max_positions (pieces + eos) is an error naming it;
    // true: it is cut to max_positions - 1 pieces + eos.
    d.set("truncate", false);
  }
  return d;
}

Json train_defaults(const std::string& task) {
  Json t = Json::object();
  t.set("steps", 1500), t.set("batch_size", 32), t.set("accum", 1), t.set("lr", 3e-3), t.set("end_lr", 0.0);
  t.set("warmup", 150), t.set("beta1", 0.9), t.set("beta2", 0.98), t.set("eps", 1e-8), t.set("weight_decay", 0.01);
  t.set("clip", 1.0), t.set("log_every", 50), t.set("eval_every", 500), t.set("eval_batches", 0);
  t.set("checkpoint_every", 500), t.set("seed", 1);
  if (task == "fmnist") t.set("steps", 1000), t.set("eval_batches", 20);
  if (task == "charlm") t.set("steps", 2000), t.set("batch_size", 16), t.set("eval_batches", 20), t.set("lr", 2e-3);
  if (task == "translate") {
    t.set("steps", 3000), t.set("batch_size", 64), t.set("lr", 2e-3), t.set("warmup", 300), t.set("eval_batches", 0);
    t.set("label_smoothing", 0.1);  // fairseq's label_smoothed_cross_entropy, as the official training
  }
  return t;
}

// One section ("model", "data", "train") of a run configuration. Every error names the key's
// path: "[json] train.steps: expected an integer, got string "5"".
struct Section {
  const Json& j;
  std::string path;
  Section(const Json& cfg, std::string_view key) : j(json_member(cfg, "", key)), path(key) {
    MG_CHECK(j.is_object(), "json", "{}: expected an object, got {}", path, j.describe());
  }
  const Json& at(std::string_view k) const { return json_member(j, path, k); }
  bool null(std::string_view k) const { return at(k).is_null(); }
  int64_t i(std::string_view k) const { return json_int(j, path, k); }
  double d(std::string_view k) const { return json_double(j, path, k); }
  bool b(std::string_view k) const { return json_bool(j, path, k); }
  const std::string& s(std::string_view k) const { return json_string(j, path, k); }
  std::string name(std::string_view k) const { return json_path(path, k); }
};

}  // namespace

bool is_model_level_key(const std::string& k) {
  return k == "type" || k == "layers" || k == "classifier_dim" || k == "heads" || k == "classifier_layers" ||
         k == "projection_bias" || k == "padding_idx" || k == "learned_positions" || k == "tie_weights" ||
         k == "transformer_ffn_dim";
}

namespace {

// The model section as a layer config: the keys of mega/config.h minus the model-level ones.
MegaLayerConfig layer_config(const Section& model, bool decoder) {
  Json layer = Json::object();
  for (const auto& [k, v] : model.j.items())
    if (!is_model_level_key(k)) layer.set(k, v);
  layer.set("bidirectional", !decoder), layer.set("causal", decoder);
  LayerCaseConfig parsed = parse_layer_config(layer, "", model.path);
  // The reference cases' decoder layer with cross-attention is no model of these tasks.
  MG_CHECK(!parsed.cross_attention, "config", "{}: no task here has an encoder for a cross-attention to read",
           json_path(model.path, "cross_attention"));
  return parsed.layer;
}

// What a key may hold when its default is null (any other key takes the type of its default).
std::string_view nullable_kind(std::string_view key) {
  if (key == "truncation" || key == "min_len" || key == "max_len" || key == "num_train") return "an integer";
  if (key == "dir" || key == "eval_file" || key == "file" || key == "src" || key == "tgt") return "a string";
  return "";
}

// The type check of merge_run_config: `v` must have the type of the default `base`.
void check_type(const Json& base, const Json& v, const std::string& what, const std::string& path) {
  std::string_view expected;
  bool ok = true;
  if (base.is_integer()) expected = "an integer", ok = v.is_integer();
  else if (base.is_number()) expected = "a number", ok = v.is_number();
  else if (base.is_string()) expected = "a string", ok = v.is_string();
  else if (base.is_bool()) expected = "true or false", ok = v.is_bool();
  else if (base.is_object()) expected = "an object", ok = v.is_object();
  else if (base.is_null()) {
    std::string_view kind = nullable_kind(path.substr(path.rfind('.') + 1));
    if (kind == "an integer") expected = "null or an integer", ok = v.is_null() || v.is_integer();
    if (kind == "a string") expected = "null or a string", ok = v.is_null() || v.is_string();
  }
  MG_CHECK(ok, "config", "{}: {}: expected {}, got {}", what, path, expected, v.describe());
}

Json merge_impl(const Json& base, const Json& over, const std::string& what, const std::string& path) {
  MG_CHECK(over.is_object(), "config", "{}: {}expected an object, got {}", what,
           path.empty() ? "" : path + ": ", over.describe());
  Json out = base;
  for (const auto& [k, v] : over.items()) {
    if (!k.empty() && k[0] == '_') continue;  // comments
    const Json* b = base.find(k);
    MG_CHECK(b != nullptr, "config", "{}: unknown key \"{}\"", path.empty() ? what : what + "." + path, k);
    const std::string key_path = json_path(path, k);
    check_type(*b, v, what, key_path);
    // A configuration written for another task has other data keys ("file" for charlm, "dir"
    // for listops): name the conflict instead of failing later on a missing key.
    if (path.empty() && k == "task" && b->is_string())
      MG_CHECK(v.get_string() == b->get_string(), "config",
               "{}: \"task\" is \"{}\", but the run is for task \"{}\" (its defaults, or --task {}): the model, "
               "data and train keys of one task do not fit another; use --task {} or drop \"task\" from {}",
               what, v.get_string(), b->get_string(), b->get_string(), v.get_string(), what);
    out.set(k, b->is_object() ? merge_impl(*b, v, what, key_path) : v);
  }
  return out;
}

// The generated ListOps data of the data section (its preset, with min_len, max_len and
// num_train when they are set), checked but not generated.
data::ListOpsConfig listops_config(const Section& d) {
  const int64_t seed = d.i("seed");
  MG_CHECK(seed >= 0, "config", "{} must be >= 0, got {}", d.name("seed"), seed);
  data::ListOpsConfig lc = data::listops_preset(d.s("preset"), (uint64_t)seed);
  if (!d.null("min_len")) lc.min_len = d.i("min_len");
  if (!d.null("max_len")) lc.max_len = d.i("max_len");
  if (!d.null("num_train")) lc.num_train = d.i("num_train");
  MG_CHECK(lc.num_train >= 1, "config", "{} must be >= 1 (the training split), got {}", d.name("num_train"),
           lc.num_train);
  try {
    data::validate_listops_config(lc);
  } catch (const Error& e) {
    fail("config", "{} (min_len {}, max_len {}): {}", d.path, lc.min_len, lc.max_len, e.what());
  }
  return lc;
}

// ListOps' ids as the model sees them with padding_idx `pad`. The data's pad (0) becomes `pad`;
// the other ids keep their order and skip `pad` (k -> k below pad, k + 1 from it), so that with
// the official pad id 1 the tokens are 2..16 and id 0 is unused, as fairseq's <s>. pad 0: as is.
int64_t listops_model_id(int64_t id, int64_t pad) {
  if (pad == data::kListOpsPad) return id;
  if (id == data::kListOpsPad) return pad;
  return id < pad ? id : id + 1;
}
int64_t listops_model_vocab(int64_t pad) { return data::kListOpsVocabSize + (pad == data::kListOpsPad ? 0 : 1); }

// The bytes of a vector, for data fingerprints.
template <typename T>
std::string_view bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)};
}

// ---------------------------------------------------------------- classification tasks

// Shared by ListOps and Fashion-MNIST: a classifier over (B, L) inputs, cross-entropy, accuracy.
class ClassifierTask : public TrainTask {
 public:
  Json complete_config(const Json& saved) const override { return complete_run_config(saved); }
 public:
  Module& model() override { return *model_; }
  std::string metric_name() const override { return "accuracy"; }
  double train_metric(const StepStats& s) const override { return s.count ? 100.0 * (double)s.correct / (double)s.count : 0; }
  Json data_state() const override { return iterator_ ? iterator_->state_json() : Json(); }
  void load_data_state(const Json& j) override {
    if (iterator_) iterator_->load_state_json(j);
  }

  Tensor next_train_loss(StepStats& st) override {
    MG_CHECK(iterator_ != nullptr, "train", "this task was built for evaluation only (no training data)");
    std::vector<int64_t> idx = iterator_->next();
    // The whole batch, then this rank's rows: padded as the whole batch is, so that each row is
    // computed as in one process.
    auto [input, labels] = batch("train", idx);
    const Share share = share_of((int64_t)idx.size());
    if (share.rows == 0) return Tensor();
    input = take_share(input, share).to(device_), labels = take_share(labels, share).to(device_);
    BatchShardScope masks(default_generator(), share.first, share.rows, share.total);
    Tensor logits = forward(input);
    count(logits, labels, st);
    st.tokens += input.numel();
    return share_of_mean(cross_entropy(logits, labels), share);
  }

  EvalResult evaluate(const std::string& split, int64_t max_batches) override {
    const int64_t n = split_size(split);
    MG_CHECK(n > 0, "eval", "the {} split has no examples ({}): an accuracy over 0 predictions means nothing", split,
             split_source(split));
    MG_CHECK(batch_size_ >= 1, "eval", "batch_size must be >= 1, got {}", batch_size_);
    no_grad g;
    model_->eval();
    StepStats st;
    double loss_sum = 0;
    int64_t batches = 0;
    for (int64_t b0 = 0; b0 < n && (max_batches == 0 || batches < max_batches); b0 += batch_size_, ++batches) {
      std::vector<int64_t> idx((size_t)std::min(batch_size_, n - b0));
      std::iota(idx.begin(), idx.end(), b0);
      auto [input, labels] = batch(split, idx);
      const Share share = share_of((int64_t)idx.size());  // data parallel: each rank its rows
      if (share.rows == 0) continue;
      input = take_share(input, share).to(device_), labels = take_share(labels, share).to(device_);
      Tensor logits = forward(input);
      count(logits, labels, st);
      loss_sum += cross_entropy(logits, labels).item() * (double)share.rows;
    }
    std::vector<double> sums{loss_sum, (double)st.correct, (double)st.count};
    sum_over_ranks(sums);
    loss_sum = sums[0], st.correct = (int64_t)sums[1], st.count = (int64_t)sums[2];
    model_->train();
    return {loss_sum / (double)std::max<int64_t>(st.count, 1), train_metric(st), st.count};
  }

 protected:
  virtual std::pair<Tensor, Tensor> batch(const std::string& split, const std::vector<int64_t>& idx) = 0;
  virtual int64_t split_size(const std::string& split) const = 0;
  // Where a split comes from, for messages (a file, "generated", ...).
  virtual std::string split_source(const std::string& split) const = 0;
  Tensor forward(const Tensor& input) {
    if (auto* m = dynamic_cast<MegaClassifier*>(model_.get())) return m->forward(input);
    return static_cast<TransformerClassifier*>(model_.get())->forward(input);
  }
  static void count(const Tensor& logits, const Tensor& labels, StepStats& st) {
    std::vector<int64_t> pred = argmax(logits.detach().cpu(), 1).to_int_vector(), y = labels.to_int_vector();
    for (size_t i = 0; i < y.size(); ++i) st.correct += pred[i] == y[i];
    st.count += (int64_t)y.size();
  }
  // The model of the "model" section for token input (vocab) or real-valued input (vocab 0).
  // padding_idx: the model's pad id (token input only).
  void build_model(const Section& model, int64_t vocab, int64_t classes, uint64_t seed, int64_t padding_idx = 0) {
    const std::string type = model.s("type");
    if (type == "mega") {
      ClassifierConfig c;
      c.layer = layer_config(model, false);
      c.num_layers = model.i("layers"), c.vocab_size = vocab, c.real_valued_input = vocab == 0;
      c.classifier_dim = model.i("classifier_dim"), c.num_classes = classes;
      c.classifier_layers = model.i("classifier_layers"), c.projection_bias = model.b("projection_bias");
      c.padding_idx = padding_idx;
      model_ = std::make_unique<MegaClassifier>(c, seed);
    } else if (type == "transformer") {
      MG_CHECK(vocab > 0, "train", "the Transformer baseline needs token input");
      TransformerConfig c;
      c.padding_idx = padding_idx;
      c.embed_dim = model.i("embed_dim"), c.ffn_dim = model.i("ffn_hidden_dim");
      c.num_heads = model.i("heads"), c.num_layers = model.i("layers"), c.vocab_size = vocab;
      c.max_positions = model.i("max_positions"), c.classifier_dim = model.i("classifier_dim");
      c.num_classes = classes, c.dropout = model.d("dropout");
      model_ = std::make_unique<TransformerClassifier>(c, seed);
    } else {
      fail("train", "model type must be \"mega\" or \"transformer\", got \"{}\"", type);
    }
  }
  std::unique_ptr<Module> model_;
  std::unique_ptr<data::BatchIterator> iterator_;
  int64_t batch_size_ = 32, chunk_ = 1;
};

class ListOpsTask : public ClassifierTask {
 public:
  explicit ListOpsTask(const Json& cfg) {
    const Section d(cfg, "data"), t(cfg, "train");
    // A TSV file with the header and no rows is an error here, not an accuracy over 0 examples.
    auto read = [](const std::string& path, const char* role) {
      data::SequenceDataset ds = data::read_listops_tsv(path);
      MG_CHECK(ds.size() > 0, "listops", "{}: no examples (only the header): the {} is empty", path, role);
      return ds;
    };
    if (!d.null("eval_file")) {  // evaluation of a checkpoint on one TSV file: no training data
      const std::string file = d.s("eval_file");
      data_.val = data_.test = read(file, "evaluation data");
      source_ = "ListOps from " + file;
      sources_ = {"none: evaluation only", file, file};
    } else if (d.null("dir")) {
      const std::string preset = d.s("preset");
      const data::ListOpsConfig lc = listops_config(d);
      data_ = data::generate_listops(lc);
      source_ = fmt::format("ListOps, generated ('{}' preset, lengths {}-{}, seed {})", preset, lc.min_len, lc.max_len,
                            d.i("seed"));
      sources_ = {source_, source_, source_};
    } else {
      namespace fs = std::filesystem;
      const std::string dir = d.s("dir");
      auto pick = [&](const char* split) {
        for (std::string name : {std::string(split) + ".tsv", "basic_" + std::string(split) + ".tsv"})
          if (fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
        fail("train", "no {}.tsv or basic_{}.tsv in {}", split, split, dir);
      };
      sources_ = {pick("train"), pick("val"), pick("test")};
      data_.train = read(sources_[0], "training split");
      data_.val = read(sources_[1], "validation split");
      data_.test = read(sources_[2], "test split");
      source_ = "ListOps from " + dir;
    }
    batch_size_ = t.i("batch_size");
    const Section m(cfg, "model");
    chunk_ = std::max<int64_t>(1, m.i("chunk_size"));
    pad_ = m.i("padding_idx");
    build_model(m, listops_model_vocab(pad_), data::kListOpsClasses, (uint64_t)t.i("seed"), pad_);
    if (data_.train.size() > 0)
      iterator_ = std::make_unique<data::BatchIterator>(data_.train.size(), batch_size_, (uint64_t)t.i("seed"));
  }
  std::string describe() const override {
    auto majority = [](const data::SequenceDataset& ds) {
      std::vector<int64_t> n(10, 0);
      for (int64_t y : ds.labels) ++n[(size_t)y];
      return 100.0 * (double)*std::max_element(n.begin(), n.end()) / (double)std::max<int64_t>(ds.size(), 1);
    };
    const int64_t longest = std::max({data_.train.max_length(), data_.val.max_length(), data_.test.max_length()});
    return fmt::format("{}: {} train / {} val / {} test sequences, lengths up to {}; validation majority class {:.1f}%",
                       source_, data_.train.size(), data_.val.size(), data_.test.size(), longest, majority(data_.val));
  }
  std::pair<double, std::string> baseline() const override {  // the validation split's majority class, as describe()
    std::vector<int64_t> n(10, 0);
    for (int64_t y : data_.val.labels) ++n[(size_t)y];
    const double top = (double)*std::max_element(n.begin(), n.end());
    return {100.0 * top / (double)std::max<int64_t>(data_.val.size(), 1), "majority class"};
  }
  uint64_t data_fingerprint() const override {
    uint64_t h = fnv1a(describe());
    for (const data::SequenceDataset* ds : {&data_.train, &data_.val, &data_.test}) {
      h = fnv1a(bytes_of(ds->tokens), h);
      h = fnv1a(bytes_of(ds->labels), h);
    }
    return h;
  }

 protected:
  const data::SequenceDataset& split(const std::string& s) const {
    if (s == "train") return data_.train;
    if (s == "val") return data_.val;
    if (s == "test") return data_.test;
    fail("train", "unknown split '{}'", s);
  }
  std::pair<Tensor, Tensor> batch(const std::string& s, const std::vector<int64_t>& idx) override {
    data::PadOptions po;
    po.multiple_of = chunk_;
    data::PaddedBatch b = data::make_batch(split(s), idx, po);
    if (pad_ == data::kListOpsPad) return {b.tokens, b.labels};
    std::vector<int64_t> ids = b.tokens.to_int_vector();
    for (int64_t& id : ids) id = listops_model_id(id, pad_);
    return {Tensor::from_vector(ids, b.tokens.shape()), b.labels};
  }
  int64_t split_size(const std::string& s) const override { return split(s).size(); }
  std::string split_source(const std::string& s) const override {
    return s == "train" ? sources_[0] : s == "val" ? sources_[1] : sources_[2];
  }
  data::ListOpsData data_;
  std::string source_;
  std::array<std::string, 3> sources_;  // where train, val and test come from
  int64_t pad_ = data::kListOpsPad;     // the model's padding_idx
};

class FashionMnistTask : public ClassifierTask {
 public:
  explicit FashionMnistTask(const Json& cfg) {
    const Section d(cfg, "data"), t(cfg, "train");
    dir_ = d.s("dir");
    data_ = data::load_fashion_mnist(dir_);
    val_size_ = d.i("val_size");
    MG_CHECK(val_size_ > 0 && val_size_ < data_.train.count, "train", "data.val_size must be in (0, {}), got {}",
             data_.train.count, val_size_);
    batch_size_ = t.i("batch_size");
    build_model(Section(cfg, "model"), 0, 10, (uint64_t)t.i("seed"));
    iterator_ = std::make_unique<data::BatchIterator>(data_.train.count - val_size_, batch_size_, (uint64_t)t.i("seed"));
  }
  std::string describe() const override {
    return fmt::format("sequential Fashion-MNIST: {} train / {} val / {} test images as sequences of 784 pixels; chance 10%",
                       data_.train.count - val_size_, val_size_, data_.test.count);
  }
  std::pair<double, std::string> baseline() const override { return {10.0, "chance"}; }
  uint64_t data_fingerprint() const override {
    uint64_t h = fnv1a(describe());
    for (const data::ImageSet* set : {&data_.train, &data_.test})
      h = fnv1a(bytes_of(set->labels), fnv1a(bytes_of(set->pixels), h));
    return h;
  }

 protected:
  // The last val_size training images are the validation split.
  std::pair<Tensor, Tensor> batch(const std::string& s, const std::vector<int64_t>& idx) override {
    std::vector<int64_t> j = idx;
    const data::ImageSet* set = &data_.train;
    if (s == "val") for (int64_t& i : j) i += data_.train.count - val_size_;
    if (s == "test") set = &data_.test;
    return {data::image_pixels(*set, j), data::image_labels(*set, j)};
  }
  int64_t split_size(const std::string& s) const override {
    return s == "train" ? data_.train.count - val_size_ : s == "val" ? val_size_ : data_.test.count;
  }
  std::string split_source(const std::string&) const override { return "Fashion-MNIST in " + dir_; }
  data::FashionMnist data_;
  std::string dir_;
  int64_t val_size_ = 5000;
};

// ---------------------------------------------------------------- character LM

// The language model of a charlm configuration's model section: MegaLM ("mega") or TransformerLM
// ("transformer", with the classifier's Transformer keys: layers, embed_dim, ffn_hidden_dim,
// heads, max_positions, dropout; and learned_positions, tie_weights).
std::unique_ptr<Module> make_lm(const Json& cfg, int64_t vocab, uint64_t seed) {
  const Section m(cfg, "model");
  const std::string type = m.s("type");
  if (type == "mega") {
    LMConfig c;
    c.layer = layer_config(m, true);
    c.num_layers = m.i("layers"), c.vocab_size = vocab;
    return std::make_unique<MegaLM>(c, seed);
  }
  MG_CHECK(type == "transformer", "train", "{}: model type must be \"mega\" or \"transformer\", got \"{}\"",
           m.name("type"), type);
  TransformerLMConfig c;
  c.embed_dim = m.i("embed_dim"), c.ffn_dim = m.i("ffn_hidden_dim"), c.num_heads = m.i("heads");
  c.num_layers = m.i("layers"), c.vocab_size = vocab, c.max_positions = m.i("max_positions");
  c.learned_positions = m.b("learned_positions"), c.tie_weights = m.b("tie_weights"), c.dropout = m.d("dropout");
  return std::make_unique<TransformerLM>(c, seed);
}

Tensor lm_forward(Module& model, const Tensor& tokens) {
  if (auto* t = dynamic_cast<TransformerLM*>(&model)) return t->forward(tokens);
  return dynamic_cast<MegaLM&>(model).forward(tokens);
}

class CharLMTask : public TrainTask {
 public:
  Json complete_config(const Json& saved) const override { return complete_run_config(saved); }
 public:
  explicit CharLMTask(const Json& cfg) : gen_((uint64_t)json_int(Section(cfg, "train").j, "train", "seed")) {
    const Section d(cfg, "data"), t(cfg, "train");
    file_ = d.null("file") ? data::ensure_kjv_corpus() : d.s("file");
    text_ = data::load_text(file_, d.d("val_fraction"));
    seq_len_ = d.i("seq_len"), batch_size_ = t.i("batch_size");
    model_ = make_lm(cfg, text_.vocab.size(), (uint64_t)t.i("seed"));
  }
  Module& model() override { return *model_; }
  std::string metric_name() const override { return "bpc"; }
  double train_metric(const StepStats& s) const override { return s.batches ? s.loss_sum / (double)s.batches / std::log(2.0) : 0; }
  Tensor next_train_loss(StepStats& st) override {
    data::LMBatch b = data::sample_windows(text_.train, batch_size_, seq_len_, gen_);  // the whole batch on every rank
    const Share share = share_of(b.inputs.size(0));
    if (share.rows == 0) return Tensor();
    b.inputs = take_share(b.inputs, share), b.targets = take_share(b.targets, share);
    BatchShardScope masks(default_generator(), share.first, share.rows, share.total);
    Tensor loss = share_of_mean(lm_loss(b), share);  // every row has seq_len targets: the rows' share is exact
    st.tokens += b.inputs.numel(), st.loss_sum += loss.item(), st.batches += 1;
    return loss;
  }
  EvalResult evaluate(const std::string& split, int64_t max_batches) override {
    MG_CHECK(split == "val", "train", "the text task has train and val splits only, not '{}'", split);
    const int64_t windows = data::num_eval_windows(text_.val, seq_len_);
    MG_CHECK(windows > 0, "eval", "the val split of {} has {} characters: too few for one window of seq_len {} + 1",
             file_, text_.val.size(), seq_len_);
    no_grad g;
    model_->eval();
    double loss_sum = 0;
    int64_t n = 0, batches = 0;
    for (int64_t w = 0; w < windows && (max_batches == 0 || batches < max_batches); w += batch_size_, ++batches) {
      data::LMBatch b = data::eval_windows(text_.val, seq_len_, w, std::min(batch_size_, windows - w));
      const Share share = share_of(b.inputs.size(0));  // data parallel: each rank its rows
      if (share.rows == 0) continue;
      b.inputs = take_share(b.inputs, share), b.targets = take_share(b.targets, share);
      loss_sum += lm_loss(b).item() * (double)b.targets.numel();
      n += b.targets.numel();
    }
    std::vector<double> sums{loss_sum, (double)n};
    sum_over_ranks(sums);
    loss_sum = sums[0], n = (int64_t)sums[1];
    model_->train();
    double loss = loss_sum / (double)std::max<int64_t>(n, 1);
    return {loss, loss / std::log(2.0), n};
  }
  Json data_state() const override {
    Json j = Json::object();
    j.set("sampler_seed", std::to_string(gen_.seed())), j.set("sampler_offset", std::to_string(gen_.offset()));
    j.set("vocab", text_.vocab.to_json());
    return j;
  }
  void load_data_state(const Json& j) override {
    MG_CHECK(data::CharVocab::from_json(json_member(j, "data", "vocab")).to_json().dump() == text_.vocab.to_json().dump(), "train",
             "the checkpoint's character vocabulary differs from {}'s", file_);
    gen_.set_state(parse_uint64(json_string(j, "data", "sampler_seed"), "sampler_seed", "data state"),
                   parse_uint64(json_string(j, "data", "sampler_offset"), "sampler_offset", "data state"));
  }
  std::string describe() const override {
    return fmt::format("character LM on {}: {} train / {} val characters, vocabulary {}; uniform guess {:.2f} bpc", file_,
                       text_.train.size(), text_.val.size(), text_.vocab.size() - 1,
                       std::log2((double)text_.vocab.size() - 1));
  }
  std::pair<double, std::string> baseline() const override {
    return {std::log2((double)text_.vocab.size() - 1), "uniform guess"};
  }
  uint64_t data_fingerprint() const override {
    return fnv1a(bytes_of(text_.val), fnv1a(bytes_of(text_.train), fnv1a(describe())));
  }
  const data::CharVocab& vocab() const { return text_.vocab; }

 private:
  Tensor lm_loss(const data::LMBatch& b) {
    Tensor logits = lm_forward(*model_, b.inputs.to(device_));  // (B, T, V)
    const int64_t V = logits.size(2);
    return cross_entropy(logits.reshape({-1, V}), b.targets.to(device_).reshape({-1}));
  }
  Generator gen_;
  std::string file_;
  data::TextData text_;
  int64_t seq_len_ = 256, batch_size_ = 16;
  std::unique_ptr<Module> model_;  // MegaLM or TransformerLM
};


// ---------------------------------------------------------------- translation

// The encoder-decoder of a translate configuration: MegaSeq2Seq ("mega": encoder and decoder of
// model.layers layers each, the layer keys of mega/config.h) or TransformerSeq2Seq
// ("transformer": embed_dim, heads, transformer_ffn_dim, max_positions, dropout); one joint
// vocabulary, all embeddings shared (--share-all-embeddings).
std::unique_ptr<Module> make_seq2seq(const Json& cfg, int64_t vocab, uint64_t seed) {
  const Section m(cfg, "model");
  const std::string type = m.s("type");
  if (type == "mega") {
    Seq2SeqConfig c;
    c.encoder = layer_config(m, false), c.decoder = layer_config(m, true);
    c.encoder_layers = c.decoder_layers = m.i("layers");
    c.vocab_size = vocab, c.share_all_embeddings = true;
    return std::make_unique<MegaSeq2Seq>(c, seed);
  }
  MG_CHECK(type == "transformer", "train", "{}: model type must be \"mega\" or \"transformer\", got \"{}\"",
           m.name("type"), type);
  TransformerSeq2SeqConfig c;
  c.embed_dim = m.i("embed_dim"), c.ffn_dim = m.i("transformer_ffn_dim"), c.num_heads = m.i("heads");
  c.encoder_layers = c.decoder_layers = m.i("layers"), c.vocab_size = vocab;
  c.max_source_positions = c.max_target_positions = m.i("max_positions");
  c.dropout = m.d("dropout"), c.share_all_embeddings = true;
  return std::make_unique<TransformerSeq2Seq>(c, seed);
}

Tensor seq2seq_forward(Module& model, const Tensor& src, const Tensor& prev) {
  if (auto* t = dynamic_cast<TransformerSeq2Seq*>(&model)) return t->forward(src, prev);
  return dynamic_cast<MegaSeq2Seq&>(model).forward(src, prev);
}

std::string to_hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out(bytes.size() * 2, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    const auto b = (unsigned char)bytes[i];
    out[2 * i] = digits[b >> 4], out[2 * i + 1] = digits[b & 15];
  }
  return out;
}
std::string from_hex(std::string_view hex, std::string_view what) {
  MG_CHECK(hex.size() % 2 == 0, "translate", "{}: odd number of hex digits ({})", what, hex.size());
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    fail("translate", "{}: '{}' is not a hex digit", what, c);
  };
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = (char)(nibble(hex[2 * i]) * 16 + nibble(hex[2 * i + 1]));
  return out;
}

// The tokenizer kept in a translate task's data state (so in its checkpoints).
text::SubwordTokenizer tokenizer_from_state(const Json& state, int64_t vocab, const std::string& what) {
  MG_CHECK(state.is_object() && state.contains("tokenizer"), "translate",
           "{}: no tokenizer in the checkpoint's data state (not a translate checkpoint)", what);
  text::SubwordTokenizer tok =
      text::SubwordTokenizer::from_bytes(from_hex(json_string(state, "data", "tokenizer"), what + ": tokenizer"));
  MG_CHECK(tok.vocab_size() == vocab, "translate", "{}: the tokenizer has {} pieces, the model's vocabulary {}", what,
           tok.vocab_size(), vocab);
  return tok;
}

// A sentence's ids with eos last: refused when longer than `limit`, or cut to limit - 1 pieces.
// `hint` ends the message of a sentence too long.
std::vector<int64_t> sentence_ids(const text::SubwordTokenizer& tok, const std::string& s, int64_t limit,
                                  bool truncate, const std::string& where, const char* side,
                                  const char* hint = "raise model.max_positions, or set data.truncate to cut such "
                                                     "sentences") {
  std::vector<int64_t> ids = tok.encode(s);
  MG_CHECK(!ids.empty(), "translate", "{}: the {} is empty (no subword piece): nothing to translate", where, side);
  if ((int64_t)ids.size() + 1 > limit) {
    MG_CHECK(truncate, "translate",
             "{}: the {} is {} subword tokens with eos, longer than the model's {} positions (model.max_positions); {}",
             where, side, ids.size() + 1, limit, hint);
    ids.resize((size_t)(limit - 1));
  }
  ids.push_back(text::SubwordTokenizer::kEos);
  return ids;
}

int64_t default_max_len(int64_t src_len, int64_t max_positions, int64_t max_len) {
  return max_len > 0 ? std::min(max_len, max_positions) : std::min(2 * src_len + 10, max_positions);
}

std::string decode_to_text(Module& model, const text::SubwordTokenizer& tok, const std::vector<int64_t>& src,
                           int64_t beam, int64_t max_len, int64_t max_positions, int64_t* generated = nullptr) {
  DecodeOptions o;
  o.beam = beam, o.max_len = default_max_len((int64_t)src.size(), max_positions, max_len);
  Hypothesis h = beam == 1 ? greedy_decode(model, src, o) : beam_search(model, src, o).front();
  if (generated) *generated += (int64_t)h.tokens.size();
  return tok.decode(h.tokens);
}

class TranslateTask : public TrainTask {
 public:
  Json complete_config(const Json& saved) const override { return complete_run_config(saved); }
  explicit TranslateTask(const Json& cfg) {
    const Section d(cfg, "data"), t(cfg, "train"), m(cfg, "model");
    if (d.null("src")) {
      splits_ = data::bible_parallel_splits();
      source_ = "the Bible, Spanish (Reina-Valera 1909) -> English (KJV); Mark validation, John test";
    } else {
      const std::string src = d.s("src");
      std::vector<data::SentencePair> pairs =
          d.null("tgt") ? data::read_parallel_tsv(src) : data::read_parallel_files(src, d.s("tgt"));
      const int64_t nv = d.i("valid_size"), nt = d.i("test_size");
      MG_CHECK((int64_t)pairs.size() > nv + nt, "translate",
               "{}: {} pairs, but data.valid_size {} + data.test_size {} leave none to train on", src, pairs.size(), nv,
               nt);
      splits_ = data::split_tail(std::move(pairs), (size_t)nv, (size_t)nt);
      source_ = d.null("tgt") ? src : src + " -> " + d.s("tgt");
    }
    MG_CHECK(!splits_.valid.empty(), "translate", "{}: the validation split is empty (data.valid_size)", source_);
    vocab_ = d.i("vocab_size"), subword_type_ = d.s("subword_type"), truncate_ = d.b("truncate");
    max_positions_ = m.i("max_positions"), batch_size_ = t.i("batch_size"), seed_ = (uint64_t)t.i("seed");
    label_smoothing_ = t.d("label_smoothing");
    model_ = make_seq2seq(cfg, vocab_, seed_);
  }
  Module& model() override { return *model_; }
  std::string metric_name() const override { return "accuracy"; }
  double train_metric(const StepStats& s) const override {
    return s.count ? 100.0 * (double)s.correct / (double)s.count : 0;
  }

  Tensor next_train_loss(StepStats& st) override {
    ready("train");
    const std::vector<int64_t>& rows = batches_.at("train")[(size_t)iterator_->next()[0]];
    Batch b = make("train", rows);
    const Share share = share_of((int64_t)rows.size());
    if (share.rows == 0) return Tensor();
    b.src = take_share(b.src, share).to(device_), b.prev = take_share(b.prev, share).to(device_);
    b.tgt = take_share(b.tgt, share).to(device_);
    BatchShardScope masks(default_generator(), share.first, share.rows, share.total);
    Tensor logits = seq2seq_forward(*model_, b.src, b.prev);
    LabelSmoothedLoss l = label_smoothed_cross_entropy(logits, b.tgt, label_smoothing_, text::SubwordTokenizer::kPad);
    count(logits, b.tgt, st);
    st.tokens += l.ntokens;
    const double n = (double)std::max<int64_t>(l.ntokens, 1);
    return share_of_mean(mul_scalar(l.loss, 1.0 / n), share);
  }

  // The label-smoothed loss per target token (the training criterion) and the token accuracy.
  EvalResult evaluate(const std::string& split, int64_t max_batches) override {
    ready(split);
    no_grad g;
    model_->eval();
    StepStats st;
    double loss_sum = 0;
    const auto& bs = batches_.at(key(split));
    for (size_t i = 0; i < bs.size() && (max_batches == 0 || (int64_t)i < max_batches); ++i) {
      Batch b = make(key(split), bs[i]);
      const Share share = share_of((int64_t)bs[i].size());  // data parallel: each rank its rows
      if (share.rows == 0) continue;
      b.src = take_share(b.src, share).to(device_), b.prev = take_share(b.prev, share).to(device_);
      b.tgt = take_share(b.tgt, share).to(device_);
      Tensor logits = seq2seq_forward(*model_, b.src, b.prev);
      loss_sum += label_smoothed_cross_entropy(logits, b.tgt, label_smoothing_, text::SubwordTokenizer::kPad).loss.item();
      count(logits, b.tgt, st);
    }
    std::vector<double> sums{loss_sum, (double)st.correct, (double)st.count};
    sum_over_ranks(sums);
    loss_sum = sums[0], st.correct = (int64_t)sums[1], st.count = (int64_t)sums[2];
    model_->train();
    return {loss_sum / (double)std::max<int64_t>(st.count, 1), train_metric(st), st.count};
  }

  Json data_state() const override {
    Json j = Json::object();
    const_cast<TranslateTask*>(this)->ready("");  // the tokenizer travels with every checkpoint
    j.set("tokenizer", to_hex(tok_.to_bytes()));
    if (iterator_) j.set("batches", iterator_->state_json());
    else if (pending_) j.set("batches", *pending_);
    return j;
  }
  // Adopts the checkpoint's tokenizer (a resumed run keeps its ids whatever the data now gives)
  // and, once the training batches exist, their position.
  void load_data_state(const Json& j) override {
    tok_ = tokenizer_from_state(j, vocab_, "data state");
    encoded_.clear(), batches_.clear(), iterator_.reset();
    pending_.reset();
    if (const Json* b = j.find("batches")) pending_ = *b;
  }
  std::string describe() const override {
    return fmt::format("translation, {}: {} train / {} val / {} test pairs; joint {} vocabulary of {} pieces; {} "
                       "parameters",
                       source_, splits_.train.size(), splits_.valid.size(), splits_.test.size(), subword_type_, vocab_,
                       model_->num_parameters());
  }
  // The token accuracy of always predicting the validation targets' most frequent token.
  std::pair<double, std::string> baseline() const override {
    auto* self = const_cast<TranslateTask*>(this);
    self->ready("val");
    std::map<int64_t, int64_t> n;
    int64_t total = 0;
    for (const auto& ids : encoded_.at("val").tgt) {
      for (int64_t id : ids) ++n[id];
      total += (int64_t)ids.size();
    }
    int64_t top = 0;
    for (const auto& kv : n) top = std::max(top, kv.second);
    return {100.0 * (double)top / (double)std::max<int64_t>(total, 1), "most frequent token"};
  }
  uint64_t data_fingerprint() const override {
    uint64_t h = fnv1a(describe());
    for (const auto* split : {&splits_.train, &splits_.valid, &splits_.test})
      for (const auto& p : *split) h = fnv1a(p.tgt, fnv1a(p.src, h));
    return h;
  }

  void set_run_dir(const std::string& dir, bool write) { run_dir_ = dir, write_cache_ = write; }
  void prepare() { ready("train"), ready("val"); }

  TranslationScores scores(const std::string& split, int64_t beam, int64_t max_len, int64_t limit) {
    ready("");
    const auto& ps = pairs(split);
    TranslationScores out;
    no_grad g;
    model_->eval();
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < ps.size() && (limit == 0 || (int64_t)i < limit); ++i) {
      std::vector<int64_t> src = sentence_ids(tok_, ps[i].src, max_positions_, truncate_, ps[i].where, "source");
      out.sources.push_back(ps[i].src), out.references.push_back(ps[i].tgt);
      out.hypotheses.push_back(decode_to_text(*model_, tok_, src, beam, max_len, max_positions_, &out.generated_tokens));
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    model_->train();
    out.bleu = text::corpus_bleu(out.hypotheses, out.references);
    out.chrf = text::corpus_chrf(out.hypotheses, out.references);
    return out;
  }

 private:
  struct Encoded {
    std::vector<std::vector<int64_t>> src, tgt;  // pieces + eos
  };
  struct Batch {
    Tensor src, prev, tgt;
  };
  static std::string key(const std::string& split) {
    MG_CHECK(split == "train" || split == "val" || split == "test", "translate",
             "unknown split '{}' (train, val or test)", split);
    return split;
  }
  const std::vector<data::SentencePair>& pairs(const std::string& split) const {
    const std::string k = key(split);
    return k == "train" ? splits_.train : k == "val" ? splits_.valid : splits_.test;
  }

  // The tokenizer: the run folder's cached one when it was trained on this training split with
  // these options, else trained now (and cached). SentencePiece is deterministic at one thread.
  void ensure_tokenizer() {
    if (tok_.loaded()) return;
    namespace fs = std::filesystem;
    const std::vector<std::string> text = data::joint_sentences(splits_.train);
    uint64_t h = fnv1a(fmt::format("{} {}", vocab_, subword_type_));
    for (const std::string& s : text) h = fnv1a(s, fnv1a("\n", h));
    const std::string stamp = fmt::format("{:016x}", h);
    const fs::path model_file = fs::path(run_dir_) / "tokenizer.model", info = fs::path(run_dir_) / "tokenizer.json";
    std::error_code ec;
    if (!run_dir_.empty() && fs::exists(model_file, ec) && fs::exists(info, ec)) {
      try {
        const Json j = Json::parse(read_file(info.string(), "translate", 1 << 16), info.string());
        if (j.contains("training_text") && j.at("training_text").get_string() == stamp) {
          tok_ = text::SubwordTokenizer::from_bytes(read_file(model_file.string(), "translate", 1 << 28));
          if (tok_.vocab_size() == vocab_) return;
        }
      } catch (const Error&) {  // a damaged cache is retrained, never trusted
      }
      tok_ = text::SubwordTokenizer();
    }
    text::SubwordOptions o;
    o.vocab_size = vocab_, o.model_type = subword_type_;
    try {
      tok_ = text::SubwordTokenizer::train(text, o);
    } catch (const Error& e) {
      fail("translate", "training the subword model ({} pieces, {}) on the {} training pairs of {}: {}", vocab_,
           subword_type_, splits_.train.size(), source_, e.what());
    }
    if (!run_dir_.empty() && write_cache_) {
      fs::create_directories(run_dir_, ec);
      write_file_atomic(model_file.string(), tok_.to_bytes(), "translate");
      Json j = Json::object();
      j.set("training_text", stamp), j.set("vocab_size", vocab_), j.set("model_type", subword_type_);
      j.set("pairs", (int64_t)splits_.train.size()), j.set("source", source_);
      write_file_atomic(info.string(), j.dump(2) + "\n", "translate");
    }
  }

  // The tokenizer, and a split's ids and length-sorted batches ("": the tokenizer only).
  void ready(const std::string& split) {
    ensure_tokenizer();
    if (split.empty() || encoded_.count(split)) return;
    const auto& ps = pairs(split);
    MG_CHECK(!ps.empty(), "translate", "the {} split of {} is empty", split, source_);
    Encoded e;
    for (const auto& p : ps) {
      e.src.push_back(sentence_ids(tok_, p.src, max_positions_, truncate_, p.where, "source"));
      e.tgt.push_back(sentence_ids(tok_, p.tgt, max_positions_, truncate_, p.where, "target"));
    }
    // Batches of similar lengths (less padding): the pairs sorted by source then target length,
    // cut into batch_size runs; training visits the batches in a shuffled, resumable order.
    std::vector<int64_t> order(ps.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      const auto la = std::make_pair(e.src[(size_t)a].size(), e.tgt[(size_t)a].size());
      const auto lb = std::make_pair(e.src[(size_t)b].size(), e.tgt[(size_t)b].size());
      return la < lb;
    });
    std::vector<std::vector<int64_t>> bs;
    for (size_t i = 0; i < order.size(); i += (size_t)batch_size_)
      bs.emplace_back(order.begin() + (ptrdiff_t)i, order.begin() + (ptrdiff_t)std::min(order.size(), i + (size_t)batch_size_));
    encoded_[split] = std::move(e);
    batches_[split] = std::move(bs);
    if (split == "train") {
      iterator_ = std::make_unique<data::BatchIterator>((int64_t)batches_[split].size(), 1, seed_);
      if (pending_) iterator_->load_state_json(*pending_);
      pending_.reset();
    }
  }

  // Rows of a split, padded: src (B, S) pieces + eos, prev (B, T) bos + pieces, tgt (B, T)
  // pieces + eos.
  Batch make(const std::string& split, const std::vector<int64_t>& rows) const {
    const Encoded& e = encoded_.at(split);
    size_t S = 0, T = 0;
    for (int64_t r : rows) S = std::max(S, e.src[(size_t)r].size()), T = std::max(T, e.tgt[(size_t)r].size());
    const size_t B = rows.size();
    std::vector<int64_t> src(B * S, 0), prev(B * T, 0), tgt(B * T, 0);
    for (size_t i = 0; i < B; ++i) {
      const auto& s = e.src[(size_t)rows[i]];
      const auto& t = e.tgt[(size_t)rows[i]];
      std::copy(s.begin(), s.end(), src.begin() + (ptrdiff_t)(i * S));
      std::copy(t.begin(), t.end(), tgt.begin() + (ptrdiff_t)(i * T));
      prev[i * T] = text::SubwordTokenizer::kBos;
      std::copy(t.begin(), t.end() - 1, prev.begin() + (ptrdiff_t)(i * T + 1));
    }
    return {Tensor::from_vector(src, {(int64_t)B, (int64_t)S}), Tensor::from_vector(prev, {(int64_t)B, (int64_t)T}),
            Tensor::from_vector(tgt, {(int64_t)B, (int64_t)T})};
  }
  static void count(const Tensor& logits, const Tensor& tgt, StepStats& st) {
    const std::vector<int64_t> pred = argmax(logits.detach().cpu(), 2).to_int_vector(), y = tgt.cpu().to_int_vector();
    for (size_t i = 0; i < y.size(); ++i)
      if (y[i] != text::SubwordTokenizer::kPad) st.correct += pred[i] == y[i], st.count += 1;
  }

  data::ParallelSplits splits_;
  std::string source_, subword_type_, run_dir_;
  bool truncate_ = false, write_cache_ = false;
  int64_t vocab_ = 4000, max_positions_ = 256, batch_size_ = 64;
  uint64_t seed_ = 1;
  double label_smoothing_ = 0.1;
  text::SubwordTokenizer tok_;
  std::map<std::string, Encoded> encoded_;
  std::map<std::string, std::vector<std::vector<int64_t>>> batches_;
  std::unique_ptr<data::BatchIterator> iterator_;
  std::optional<Json> pending_;  // a loaded batch position, until the training batches exist
  std::unique_ptr<Module> model_;
};
}  // namespace

void set_task_run_dir(TrainTask& task, const std::string& dir, bool write) {
  if (auto* t = dynamic_cast<TranslateTask*>(&task)) t->set_run_dir(dir, write);
}

void prepare_task_data(TrainTask& task) {
  if (auto* t = dynamic_cast<TranslateTask*>(&task)) t->prepare();
}

TranslationScores translation_scores(TrainTask& task, const std::string& split, int64_t beam, int64_t max_len,
                                     int64_t limit) {
  auto* t = dynamic_cast<TranslateTask*>(&task);
  MG_CHECK(t != nullptr, "translate", "BLEU needs a translate task");
  MG_CHECK(beam >= 1, "translate", "beam must be >= 1, got {}", beam);
  return t->scores(split, beam, max_len, limit);
}

Translator::Translator(const Checkpoint& ck, const std::string& what) {
  MG_CHECK(ck.meta.count("config") && ck.meta.count("data"), "translate",
           "{}: not a training checkpoint (no run configuration or data state)", what);
  const Json cfg = Json::parse(ck.meta.at("config"), what + ": config");
  const std::string task = json_string(cfg, "", "task");
  MG_CHECK(task == "translate", "translate",
           "{}: a '{}' checkpoint, not a translation model (train one with megagrad train --task translate)", what,
           task);
  const Json full = complete_run_config(cfg);
  const int64_t vocab = json_int(json_member(full, "", "data"), "data", "vocab_size");
  tok_ = tokenizer_from_state(Json::parse(ck.meta.at("data"), what + ": data"), vocab, what);
  max_positions_ = json_int(json_member(full, "", "model"), "model", "max_positions");
  model_ = make_seq2seq(full, vocab, 0);
  model_->load_state_dict(ck.model);
  model_->eval();
}

Translator::~Translator() = default;

std::vector<int64_t> Translator::encode_source(const std::string& sentence, const std::string& where,
                                               std::vector<std::string>* unknown) const {
  MG_CHECK(sentence.find_first_not_of(" \t\r\n") != std::string::npos, "translate",
           "{}: the source is empty: nothing to translate", where);
  std::vector<int64_t> ids = sentence_ids(tok_, sentence, max_positions_, false, where, "source",
                                          "split it into shorter sentences");
  if (unknown) {
    const std::vector<std::string> pieces = tok_.encode_pieces(sentence);
    const std::vector<int64_t> raw = tok_.encode(sentence);
    for (size_t i = 0; i < raw.size() && i < pieces.size(); ++i)
      if (raw[i] == text::SubwordTokenizer::kUnk) unknown->push_back(pieces[i]);
  }
  return ids;
}

std::string Translator::translate(const std::vector<int64_t>& src, int64_t beam, int64_t max_len) const {
  MG_CHECK(beam >= 1, "translate", "beam must be >= 1, got {}", beam);
  return decode_to_text(*model_, tok_, src, beam, max_len, max_positions_);
}

std::string generate_from_checkpoint(const Checkpoint& ck, const std::string& prompt, int64_t length,
                                     double temperature, int64_t top_k, uint64_t seed) {
  MG_CHECK(ck.meta.count("config") && ck.meta.count("data"), "generate", "not a training checkpoint");
  Json cfg = Json::parse(ck.meta.at("config"), "checkpoint config");
  const std::string task = json_string(cfg, "", "task");
  MG_CHECK(task == "charlm", "generate", "the checkpoint is a '{}' model, not a language model", task);
  data::CharVocab vocab =
      data::CharVocab::from_json(json_member(Json::parse(ck.meta.at("data"), "checkpoint data"), "data", "vocab"));
  MG_CHECK(vocab.size() >= 2, "generate", "the checkpoint's vocabulary holds no character");
  const Json full = complete_run_config(cfg);  // a checkpoint from before a key existed
  std::unique_ptr<Module> lm = make_lm(full, vocab.size(), 0);
  lm->load_state_dict(ck.model);
  lm->eval();
  std::vector<int64_t> ids = vocab.encode_ids(prompt);
  MG_CHECK(!ids.empty(), "generate", "the prompt is empty");
  // The model's outputs are the vocabulary's ids: generate never samples the padding id 0 or an
  // id >= vocab.size(), so every sampled id is a character. MegaLM decodes incrementally; the
  // Transformer runs its full forward per token over the last seq_len characters (its training
  // window: positions beyond it were never trained).
  std::vector<int64_t> out;
  if (auto* t = dynamic_cast<TransformerLM*>(lm.get()))
    out = t->generate(ids, length, temperature, top_k, seed, json_int(json_member(full, "", "data"), "data", "seq_len"));
  else
    out = dynamic_cast<MegaLM&>(*lm).generate(ids, length, temperature, top_k, seed);
  for (size_t i = 0; i < out.size(); ++i)
    MG_CHECK(out[i] >= 1 && out[i] < vocab.size(), "generate", "sampled id {} at position {} is not a character "
             "(vocabulary of {} ids, 0 = padding)", out[i], i, vocab.size());
  return vocab.decode(out);
}

Json default_run_config(const std::string& task) {
  MG_CHECK(task == "listops" || task == "fmnist" || task == "charlm" || task == "translate", "train",
           "unknown task '{}' (tasks: listops, fmnist, charlm, translate)", task);
  Json j = Json::object();
  j.set("task", task), j.set("model", model_defaults(task));
  // Shown by --show-config next to the model; a comment ('_'), so never a setting.
  if (task == "listops") {
    Json notes = Json::array();
    for (const char* line :
         {"model defaults that differ from the official LRA ListOps model (fairseq/models/lra/model.py "
          "mega_lra_listop, examples/mega/README.lra.md):",
          "padding_idx 0 (official 1, fairseq's dictionary pad; the same model, the ids renumbered)",
          "prenorm true (official false: postnorm, no final norm)",
          "layers 2, embed_dim 64, hidden_dim 128, ffn_hidden_dim 128, z_dim 32, classifier_dim 128 "
          "(official 6, 80, 160, 160, 64, 160): sized for a short CPU run",
          "truncation null (official 1024), max_positions 512 (official 2002), dropout 0.0 (official 0.1)",
          "as the official: classifier_layers 1, projection_bias false, n_dim 16, layernorm, softmax, silu, "
          "mean pooling, gelu head",
          "tests/data/ref_models/ checks the official model itself: padding_idx 1, projection_bias true, "
          "classifier_layers 1 and 2"})
      notes.push_back(Json(line));
    j.set("_model_vs_official", notes);
  }
  if (task == "fmnist")
    j.set("_model_vs_official", "no official Fashion-MNIST model; the head is the official LRAModel's "
                                "(classifier_layers 1, projection_bias false, gelu)");
  j.set("data", data_defaults(task));
  j.set("train", train_defaults(task));
  return j;
}

std::vector<std::string> recipe_names(const std::string& task) {
  (void)default_run_config(task);  // an unknown task is an error
  if (task == "listops") return {"cpu", "official"};
  return {"cpu"};
}

Json recipe_overrides(const std::string& task, const std::string& name) {
  const std::vector<std::string> names = recipe_names(task);
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    fail("config", "unknown recipe \"{}\" for task {} (recipes: {})", name, task, list);
  }
  Json o = Json::object();
  if (name == "cpu") return o;  // the defaults: sized for a short CPU run
  // "official": examples/mega/README.lra.md (ListOps) and fairseq/models/lra/model.py
  // mega_lra_listop. Not expressible here (README, "Experiments"): fairseq's warmup from 1e-7
  // (ours from 0), the best-checkpoint selection on validation.
  Json m = Json::object();
  m.set("type", "mega");
  m.set("layers", 6), m.set("embed_dim", 80), m.set("hidden_dim", 160), m.set("ffn_hidden_dim", 160);
  m.set("z_dim", 64), m.set("n_dim", 16), m.set("chunk_size", -1), m.set("truncation", 1024);
  m.set("max_positions", 2002), m.set("rel_pos_bias", "simple"), m.set("attention_activation", "softmax");
  m.set("norm_type", "layernorm"), m.set("prenorm", false);
  m.set("dropout", 0.1), m.set("attention_dropout", 0.0), m.set("hidden_dropout", 0.0);
  m.set("classifier_dim", 160), m.set("classifier_layers", 1);
  Json t = Json::object();
  t.set("steps", 90000), t.set("batch_size", 64), t.set("lr", 1e-3), t.set("end_lr", 0.0), t.set("warmup", 3000);
  t.set("beta1", 0.9), t.set("beta2", 0.98), t.set("eps", 1e-8), t.set("weight_decay", 0.01), t.set("clip", 1.0);
  t.set("eval_every", 1000), t.set("checkpoint_every", 1000), t.set("log_every", 100);
  Json d = Json::object();
  d.set("preset", "lra");  // LRA's lengths (500-2000); --data DIR reads LRA's own files instead
  o.set("model", m), o.set("train", t), o.set("data", d);
  return o;
}

Json recipe_run_config(const std::string& task, const std::string& name) {
  Json cfg = merge_run_config(default_run_config(task), recipe_overrides(task, name), "recipe " + name);
  cfg.set("_recipe", name);
  if (name == "official")  // the notes of the defaults describe the CPU model, not this one
    cfg.set("_model_vs_official",
            "recipe official: the model and training of mega_lra_listop, but for padding_idx 0 (official 1: the "
            "same model, the ids renumbered); not expressible here: fairseq's warmup from lr 1e-7 (ours from 0) "
            "and its choice of the best checkpoint on validation");
  return cfg;
}

Json merge_run_config(const Json& base, const Json& over, const std::string& what) {
  return merge_impl(base, over, what, "");
}

Json complete_run_config(const Json& given) {
  return merge_run_config(default_run_config(json_string(given, "", "task")), given, "run config");
}

std::unique_ptr<TrainTask> make_task(const Json& given) {
  const Json cfg = complete_run_config(given);
  validate_run_config(cfg);
  const std::string task = json_string(cfg, "", "task");
  if (task == "listops") return std::make_unique<ListOpsTask>(cfg);
  if (task == "fmnist") return std::make_unique<FashionMnistTask>(cfg);
  if (task == "charlm") return std::make_unique<CharLMTask>(cfg);
  if (task == "translate") return std::make_unique<TranslateTask>(cfg);
  fail("train", "unknown task '{}'", task);
}

TrainOptions train_options(const Json& cfg) {
  const Section t(cfg, "train");
  TrainOptions o;
  o.steps = t.i("steps"), o.accum = t.i("accum"), o.lr = t.d("lr");
  o.end_lr = t.d("end_lr"), o.warmup = t.i("warmup");
  o.beta1 = t.d("beta1"), o.beta2 = t.d("beta2"), o.eps = t.d("eps");
  o.weight_decay = t.d("weight_decay"), o.clip = t.d("clip");
  o.log_every = t.i("log_every"), o.eval_every = t.i("eval_every");
  o.eval_batches = t.i("eval_batches"), o.checkpoint_every = t.i("checkpoint_every");
  const int64_t seed = t.i("seed");
  MG_CHECK(seed >= 0, "config", "{} must be >= 0, got {}", t.name("seed"), seed);
  o.seed = (uint64_t)seed;
  o.config = cfg;
  o.title = fmt::format("{} ({} model)", json_string(cfg, "", "task"), Section(cfg, "model").s("type"));
  return o;
}

void validate_run_config(const Json& given) {
  const std::string task = json_string(given, "", "task");
  // The keys and their types: those of the task's defaults ("train.steps: expected an integer").
  // A key the configuration lacks (one from before the key existed) is checked as its default.
  const Json cfg = merge_run_config(default_run_config(task), given, "run config");
  const Section model(cfg, "model"), d(cfg, "data"), t(cfg, "train");

  // train: what train() and its optimizer and schedule check, before any data is loaded.
  TrainOptions o = train_options(cfg);
  auto at_least = [&](const char* key, int64_t v, int64_t lo) {
    MG_CHECK(v >= lo, "config", "{} must be >= {}, got {}", t.name(key), lo, v);
  };
  at_least("steps", o.steps, 1), at_least("accum", o.accum, 1), at_least("log_every", o.log_every, 1);
  at_least("eval_every", o.eval_every, 1), at_least("checkpoint_every", o.checkpoint_every, 1);
  at_least("eval_batches", o.eval_batches, 0), at_least("warmup", o.warmup, 0);
  at_least("batch_size", t.i("batch_size"), 1);
  auto finite_at_least_0 = [&](const char* key, double v) {
    MG_CHECK(std::isfinite(v) && v >= 0, "config", "{} must be finite and >= 0, got {}", t.name(key), v);
  };
  finite_at_least_0("lr", o.lr), finite_at_least_0("end_lr", o.end_lr), finite_at_least_0("eps", o.eps);
  finite_at_least_0("weight_decay", o.weight_decay), finite_at_least_0("clip", o.clip);
  for (const char* key : {"beta1", "beta2"}) {
    const double b = t.d(key);
    MG_CHECK(b >= 0 && b < 1, "config", "{} must be in [0, 1), got {}", t.name(key), b);
  }
  try {  // the optimizer's and the schedule's own checks, as train() builds them
    AdamWOptions ao;
    ao.lr = o.lr, ao.beta1 = o.beta1, ao.beta2 = o.beta2, ao.eps = o.eps, ao.weight_decay = o.weight_decay;
    AdamW opt({{"p", Tensor::zeros({1})}}, ao);
    LinearWarmupDecay schedule(o.lr, o.warmup < o.steps ? o.warmup : o.steps / 10, o.steps, o.end_lr);
  } catch (const Error& e) {
    fail("config", "train: {}", e.what());
  }

  // model: the layer configuration and the model-level keys.
  const std::string type = model.s("type");
  MG_CHECK(type == "mega" || type == "transformer", "config",
           "{}: model type must be \"mega\" or \"transformer\", got \"{}\"", model.name("type"), type);
  MG_CHECK(task != "fmnist" || type == "mega", "config",
           "{}: the Transformer baseline needs token input; fmnist feeds pixels (model type \"mega\")",
           model.name("type"));
  MG_CHECK(model.i("layers") >= 1, "config", "{} must be >= 1, got {}", model.name("layers"), model.i("layers"));
  if (task != "charlm" && task != "translate") {
    MG_CHECK(model.i("classifier_dim") >= 1, "config", "{} must be >= 1, got {}", model.name("classifier_dim"),
             model.i("classifier_dim"));
    MG_CHECK(model.i("classifier_layers") >= 1, "config", "{} must be >= 1, got {}", model.name("classifier_layers"),
             model.i("classifier_layers"));
    MG_CHECK(type == "mega" || (model.i("classifier_layers") == 1 && !model.b("projection_bias")), "config",
             "{} and {}: the Transformer baseline has one classifier layer and no projection bias",
             model.name("classifier_layers"), model.name("projection_bias"));
  }
  if (task == "listops") {  // the data's ids are renumbered around it: any id up to the vocabulary's size
    const int64_t pad = model.i("padding_idx");
    MG_CHECK(pad >= 0 && pad <= data::kListOpsVocabSize, "config", "{} must be in [0, {}], got {}",
             model.name("padding_idx"), data::kListOpsVocabSize, pad);
  }
  if (type == "mega") {
    (void)layer_config(model, task == "charlm");
    if (task == "translate") (void)layer_config(model, true);  // the decoder's layers too
  } else {
    const int64_t D = model.i("embed_dim"), heads = model.i("heads");
    MG_CHECK(D >= 1 && heads >= 1 && D % heads == 0, "config",
             "{} ({}) must be a positive multiple of {} ({}) for the Transformer", model.name("embed_dim"), D,
             model.name("heads"), heads);
    const char* ffn = task == "translate" ? "transformer_ffn_dim" : "ffn_hidden_dim";
    MG_CHECK(model.i(ffn) >= 1, "config", "{} must be >= 1 for the Transformer, got {}", model.name(ffn), model.i(ffn));
    MG_CHECK(model.i("max_positions") >= 1, "config", "{} must be >= 1, got {}", model.name("max_positions"),
             model.i("max_positions"));
    const double p = model.d("dropout");
    MG_CHECK(p >= 0 && p < 1, "config", "{} must be in [0, 1), got {}", model.name("dropout"), p);
  }
  if (task == "charlm") {
    if (type == "mega") {  // MegaLM has neither option: a set one must not be silently ignored
      for (const char* k : {"learned_positions", "tie_weights"})
        MG_CHECK(!model.b(k), "config", "{}: only the Transformer (model type \"transformer\") has this option; "
                 "MegaLM's positions are its EMA and relative bias, its output projection untied", model.name(k));
    } else if (model.b("learned_positions")) {
      MG_CHECK(model.i("max_positions") >= d.i("seq_len"), "config",
               "{} ({}) must be >= {} ({}): learned positions have no embedding past max_positions",
               model.name("max_positions"), model.i("max_positions"), d.name("seq_len"), d.i("seq_len"));
    }
  }

  // data: everything but the files.
  if (task == "listops") {
    if (d.null("eval_file") && d.null("dir")) (void)listops_config(d);  // generated data
  } else if (task == "translate") {
    MG_CHECK(d.i("valid_size") >= 1, "config", "{} must be >= 1 (training ends with a validation), got {}",
             d.name("valid_size"), d.i("valid_size"));
    MG_CHECK(d.i("test_size") >= 0, "config", "{} must be >= 0, got {}", d.name("test_size"), d.i("test_size"));
    MG_CHECK(d.i("vocab_size") >= 5, "config", "{} must be >= 5 (4 special ids and a piece), got {}",
             d.name("vocab_size"), d.i("vocab_size"));
    MG_CHECK(d.s("subword_type") == "unigram" || d.s("subword_type") == "bpe", "config",
             "{} must be \"unigram\" or \"bpe\", got \"{}\"", d.name("subword_type"), d.s("subword_type"));
    MG_CHECK(d.null("src") ? d.null("tgt") : true, "config", "{} needs {} (the source side)", d.name("tgt"),
             d.name("src"));
    MG_CHECK(model.i("max_positions") >= 2, "config", "{} must be >= 2 (a piece and eos), got {}",
             model.name("max_positions"), model.i("max_positions"));
    const double ls = t.d("label_smoothing");
    MG_CHECK(ls >= 0 && ls < 1, "config", "{} must be in [0, 1), got {}", t.name("label_smoothing"), ls);
  } else if (task == "fmnist") {
    MG_CHECK(d.i("val_size") >= 1, "config", "{} must be >= 1, got {}", d.name("val_size"), d.i("val_size"));
  } else {
    MG_CHECK(d.i("seq_len") >= 1, "config", "{} must be >= 1, got {}", d.name("seq_len"), d.i("seq_len"));
    const double f = d.d("val_fraction");  // training ends with an evaluation: the split cannot be empty
    MG_CHECK(f > 0 && f < 1, "config", "{} must be in (0, 1), got {}", d.name("val_fraction"), f);
  }
}

}  // namespace megagrad
