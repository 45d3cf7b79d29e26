// The three training tasks and the run configuration (defaults, merging, model construction).
#include "mega/train/tasks.h"
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "mega/config.h"
#include "mega/data/batch.h"
#include "mega/data/idx.h"
#include "mega/data/listops.h"
#include "mega/data/text.h"
#include "mega/models.h"

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
  m.set("classifier_dim", 128), m.set("heads", 4);
  if (task == "fmnist") m.set("max_positions", 784), m.set("chunk_size", 196);
  if (task == "charlm") {
    m.set("layers", 4), m.set("embed_dim", 128), m.set("hidden_dim", 256), m.set("ffn_hidden_dim", 256);
    m.set("z_dim", 64), m.set("chunk_size", 64), m.set("max_positions", 64);
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
  return t;
}

// The model section as a layer config: the keys of mega/config.h minus the model-level ones.
MegaLayerConfig layer_config(const Json& model, bool decoder) {
  Json layer = Json::object();
  for (const auto& [k, v] : model.items())
    if (k != "type" && k != "layers" && k != "classifier_dim" && k != "heads") layer.set(k, v);
  layer.set("bidirectional", !decoder), layer.set("causal", decoder);
  return parse_layer_config(layer, "model").layer;
}

int64_t get_int(const Json& j, const char* key) { return j.at(key).get_int(); }

// ---------------------------------------------------------------- classification tasks

// Shared by ListOps and Fashion-MNIST: a classifier over (B, L) inputs, cross-entropy, accuracy.
class ClassifierTask : public TrainTask {
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
    auto [input, labels] = batch("train", idx);
    input = input.to(device_), labels = labels.to(device_);
    Tensor logits = forward(input);
    count(logits, labels, st);
    st.tokens += input.numel();
    return cross_entropy(logits, labels);
  }

  EvalResult evaluate(const std::string& split, int64_t max_batches) override {
    no_grad g;
    model_->eval();
    const int64_t n = split_size(split);
    StepStats st;
    double loss_sum = 0;
    int64_t batches = 0;
    for (int64_t b0 = 0; b0 < n && (max_batches == 0 || batches < max_batches); b0 += batch_size_, ++batches) {
      std::vector<int64_t> idx((size_t)std::min(batch_size_, n - b0));
      std::iota(idx.begin(), idx.end(), b0);
      auto [input, labels] = batch(split, idx);
      input = input.to(device_), labels = labels.to(device_);
      Tensor logits = forward(input);
      count(logits, labels, st);
      loss_sum += cross_entropy(logits, labels).item() * (double)idx.size();
    }
    model_->train();
    return {loss_sum / (double)std::max<int64_t>(st.count, 1), train_metric(st), st.count};
  }

 protected:
  virtual std::pair<Tensor, Tensor> batch(const std::string& split, const std::vector<int64_t>& idx) = 0;
  virtual int64_t split_size(const std::string& split) const = 0;
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
  void build_model(const Json& model, int64_t vocab, int64_t classes, uint64_t seed) {
    const std::string type = model.at("type").get_string();
    if (type == "mega") {
      ClassifierConfig c;
      c.layer = layer_config(model, false);
      c.num_layers = get_int(model, "layers"), c.vocab_size = vocab, c.real_valued_input = vocab == 0;
      c.classifier_dim = get_int(model, "classifier_dim"), c.num_classes = classes;
      model_ = std::make_unique<MegaClassifier>(c, seed);
    } else if (type == "transformer") {
      MG_CHECK(vocab > 0, "train", "the Transformer baseline needs token input");
      TransformerConfig c;
      c.embed_dim = get_int(model, "embed_dim"), c.ffn_dim = get_int(model, "ffn_hidden_dim");
      c.num_heads = get_int(model, "heads"), c.num_layers = get_int(model, "layers"), c.vocab_size = vocab;
      c.max_positions = get_int(model, "max_positions"), c.classifier_dim = get_int(model, "classifier_dim");
      c.num_classes = classes, c.dropout = model.at("dropout").get_double();
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
    const Json& d = cfg.at("data");
    const Json& t = cfg.at("train");
    if (!d.at("eval_file").is_null()) {  // evaluation of a checkpoint on one TSV file: no training data
      data_.val = data_.test = data::read_listops_tsv(d.at("eval_file").get_string());
      source_ = "ListOps from " + d.at("eval_file").get_string();
    } else if (d.at("dir").is_null()) {
      const std::string preset = d.at("preset").get_string();
      data::ListOpsConfig lc = data::listops_preset(preset, (uint64_t)get_int(d, "seed"));
      if (!d.at("min_len").is_null()) lc.min_len = get_int(d, "min_len");
      if (!d.at("max_len").is_null()) lc.max_len = get_int(d, "max_len");
      if (!d.at("num_train").is_null()) lc.num_train = get_int(d, "num_train");
      data_ = data::generate_listops(lc);
      source_ = fmt::format("ListOps, generated ('{}' preset, lengths {}-{}, seed {})", preset, lc.min_len, lc.max_len,
                            get_int(d, "seed"));
    } else {
      namespace fs = std::filesystem;
      const std::string dir = d.at("dir").get_string();
      auto pick = [&](const char* split) {
        for (std::string name : {std::string(split) + ".tsv", "basic_" + std::string(split) + ".tsv"})
          if (fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
        fail("train", "no {}.tsv or basic_{}.tsv in {}", split, split, dir);
      };
      data_.train = data::read_listops_tsv(pick("train"));
      data_.val = data::read_listops_tsv(pick("val"));
      data_.test = data::read_listops_tsv(pick("test"));
      source_ = "ListOps from " + dir;
    }
    batch_size_ = get_int(t, "batch_size");
    const Json& m = cfg.at("model");
    chunk_ = std::max<int64_t>(1, get_int(m, "chunk_size"));
    build_model(m, data::kListOpsVocabSize, data::kListOpsClasses, (uint64_t)get_int(t, "seed"));
    if (data_.train.size() > 0)
      iterator_ = std::make_unique<data::BatchIterator>(data_.train.size(), batch_size_, (uint64_t)get_int(t, "seed"));
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
    return {b.tokens, b.labels};
  }
  int64_t split_size(const std::string& s) const override { return split(s).size(); }
  data::ListOpsData data_;
  std::string source_;
};

class FashionMnistTask : public ClassifierTask {
 public:
  explicit FashionMnistTask(const Json& cfg) {
    const Json& d = cfg.at("data");
    const Json& t = cfg.at("train");
    data_ = data::load_fashion_mnist(d.at("dir").get_string());
    val_size_ = get_int(d, "val_size");
    MG_CHECK(val_size_ > 0 && val_size_ < data_.train.count, "train", "val_size must be in (0, {})", data_.train.count);
    batch_size_ = get_int(t, "batch_size");
    build_model(cfg.at("model"), 0, 10, (uint64_t)get_int(t, "seed"));
    iterator_ = std::make_unique<data::BatchIterator>(data_.train.count - val_size_, batch_size_, (uint64_t)get_int(t, "seed"));
  }
  std::string describe() const override {
    return fmt::format("sequential Fashion-MNIST: {} train / {} val / {} test images as sequences of 784 pixels; chance 10%",
                       data_.train.count - val_size_, val_size_, data_.test.count);
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
  data::FashionMnist data_;
  int64_t val_size_ = 5000;
};

// ---------------------------------------------------------------- character LM

class CharLMTask : public TrainTask {
 public:
  explicit CharLMTask(const Json& cfg) : gen_((uint64_t)get_int(cfg.at("train"), "seed")) {
    const Json& d = cfg.at("data");
    const Json& t = cfg.at("train");
    file_ = d.at("file").is_null() ? data::ensure_kjv_corpus() : d.at("file").get_string();
    text_ = data::load_text(file_, d.at("val_fraction").get_double());
    seq_len_ = get_int(d, "seq_len"), batch_size_ = get_int(t, "batch_size");
    LMConfig c;
    const Json& m = cfg.at("model");
    MG_CHECK(m.at("type").get_string() == "mega", "train", "charlm trains a Mega language model (model type \"mega\")");
    c.layer = layer_config(m, true);
    c.num_layers = get_int(m, "layers"), c.vocab_size = text_.vocab.size();
    model_ = std::make_unique<MegaLM>(c, (uint64_t)get_int(t, "seed"));
  }
  Module& model() override { return *model_; }
  std::string metric_name() const override { return "bpc"; }
  double train_metric(const StepStats& s) const override { return s.batches ? s.loss_sum / (double)s.batches / std::log(2.0) : 0; }
  Tensor next_train_loss(StepStats& st) override {
    data::LMBatch b = data::sample_windows(text_.train, batch_size_, seq_len_, gen_);
    Tensor loss = lm_loss(b);
    st.tokens += b.inputs.numel(), st.loss_sum += loss.item(), st.batches += 1;
    return loss;
  }
  EvalResult evaluate(const std::string& split, int64_t max_batches) override {
    MG_CHECK(split == "val", "train", "the text task has train and val splits only, not '{}'", split);
    no_grad g;
    model_->eval();
    const int64_t windows = data::num_eval_windows(text_.val, seq_len_);
    double loss_sum = 0;
    int64_t n = 0, batches = 0;
    for (int64_t w = 0; w < windows && (max_batches == 0 || batches < max_batches); w += batch_size_, ++batches) {
      data::LMBatch b = data::eval_windows(text_.val, seq_len_, w, std::min(batch_size_, windows - w));
      loss_sum += lm_loss(b).item() * (double)b.targets.numel();
      n += b.targets.numel();
    }
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
    MG_CHECK(data::CharVocab::from_json(j.at("vocab")).to_json().dump() == text_.vocab.to_json().dump(), "train",
             "the checkpoint's character vocabulary differs from {}'s", file_);
    gen_.set_state(parse_uint64(j.at("sampler_seed").get_string(), "sampler_seed", "data state"),
                   parse_uint64(j.at("sampler_offset").get_string(), "sampler_offset", "data state"));
  }
  std::string describe() const override {
    return fmt::format("character LM on {}: {} train / {} val characters, vocabulary {}; uniform guess {:.2f} bpc", file_,
                       text_.train.size(), text_.val.size(), text_.vocab.size() - 1,
                       std::log2((double)text_.vocab.size() - 1));
  }
  MegaLM& lm() { return *model_; }
  const data::CharVocab& vocab() const { return text_.vocab; }

 private:
  Tensor lm_loss(const data::LMBatch& b) {
    Tensor logits = model_->forward(b.inputs.to(device_));  // (B, T, V)
    const int64_t V = logits.size(2);
    return cross_entropy(logits.reshape({-1, V}), b.targets.to(device_).reshape({-1}));
  }
  Generator gen_;
  std::string file_;
  data::TextData text_;
  int64_t seq_len_ = 256, batch_size_ = 16;
  std::unique_ptr<MegaLM> model_;
};

}  // namespace

std::string generate_from_checkpoint(const Checkpoint& ck, const std::string& prompt, int64_t length,
                                     double temperature, int64_t top_k, uint64_t seed) {
  MG_CHECK(ck.meta.count("config") && ck.meta.count("data"), "generate", "not a training checkpoint");
  Json cfg = Json::parse(ck.meta.at("config"), "checkpoint config");
  MG_CHECK(cfg.at("task").get_string() == "charlm", "generate", "the checkpoint is a '{}' model, not a language model",
           cfg.at("task").get_string());
  data::CharVocab vocab = data::CharVocab::from_json(Json::parse(ck.meta.at("data"), "checkpoint data").at("vocab"));
  LMConfig c;
  const Json& m = cfg.at("model");
  c.layer = layer_config(m, true);
  c.num_layers = get_int(m, "layers"), c.vocab_size = vocab.size();
  MegaLM lm(c, 0);
  lm.load_state_dict(ck.model);
  lm.eval();
  std::vector<int64_t> ids = vocab.encode_ids(prompt);
  MG_CHECK(!ids.empty(), "generate", "the prompt is empty");
  std::vector<int64_t> out = lm.generate(ids, length, temperature, top_k, seed);
  return vocab.decode(out);
}

Json default_run_config(const std::string& task) {
  MG_CHECK(task == "listops" || task == "fmnist" || task == "charlm", "train",
           "unknown task '{}' (tasks: listops, fmnist, charlm)", task);
  Json j = Json::object();
  j.set("task", task), j.set("model", model_defaults(task)), j.set("data", data_defaults(task));
  j.set("train", train_defaults(task));
  return j;
}

Json merge_run_config(const Json& base, const Json& over, const std::string& what) {
  MG_CHECK(over.is_object(), "config", "{}: expected an object", what);
  Json out = base;
  for (const auto& [k, v] : over.items()) {
    if (!k.empty() && k[0] == '_') continue;  // comments
    const Json* b = base.find(k);
    MG_CHECK(b != nullptr, "config", "{}: unknown key \"{}\"", what, k);
    out.set(k, b->is_object() ? merge_run_config(*b, v, what + "." + k) : v);
  }
  return out;
}

std::unique_ptr<TrainTask> make_task(const Json& cfg) {
  const std::string task = cfg.at("task").get_string();
  if (task == "listops") return std::make_unique<ListOpsTask>(cfg);
  if (task == "fmnist") return std::make_unique<FashionMnistTask>(cfg);
  if (task == "charlm") return std::make_unique<CharLMTask>(cfg);
  fail("train", "unknown task '{}'", task);
}

TrainOptions train_options(const Json& cfg) {
  const Json& t = cfg.at("train");
  TrainOptions o;
  o.steps = get_int(t, "steps"), o.accum = get_int(t, "accum"), o.lr = t.at("lr").get_double();
  o.end_lr = t.at("end_lr").get_double(), o.warmup = get_int(t, "warmup");
  o.beta1 = t.at("beta1").get_double(), o.beta2 = t.at("beta2").get_double(), o.eps = t.at("eps").get_double();
  o.weight_decay = t.at("weight_decay").get_double(), o.clip = t.at("clip").get_double();
  o.log_every = get_int(t, "log_every"), o.eval_every = get_int(t, "eval_every");
  o.eval_batches = get_int(t, "eval_batches"), o.checkpoint_every = get_int(t, "checkpoint_every");
  o.seed = (uint64_t)get_int(t, "seed");
  o.config = cfg;
  o.title = fmt::format("{} ({} model)", cfg.at("task").get_string(), cfg.at("model").at("type").get_string());
  return o;
}

}  // namespace megagrad
