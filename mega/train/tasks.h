// The training tasks: ListOps (generated or LRA TSV files), sequential Fashion-MNIST,
// character-level language modelling, and Spanish -> English translation (the Bible corpus or a
// user's parallel text), each a TrainTask (mega/train/trainer.h) built from a run configuration:
//
//   {"task": "listops" | "fmnist" | "charlm" | "translate",
//    "model": {"type": "mega" | "transformer", "layers": N, ... the layer keys of
//              mega/config.h (embed_dim, hidden_dim, ...), "classifier_dim": N, "heads": N,
//              listops and fmnist: "classifier_layers": N, "projection_bias": B (the official
//              LRAModel head), listops: "padding_idx": N (0; the official model's is 1),
//              charlm with "transformer" (TransformerLM): "learned_positions": B, "tie_weights": B,
//              translate with "transformer" (TransformerSeq2Seq): "transformer_ffn_dim": N},
//    "data":  {"preset": "short" | "lra", "seed": N, "dir": PATH, "file": PATH, "seq_len": N,
//              translate: "src": PATH, "tgt": PATH, "valid_size": N, "test_size": N, "vocab_size": N,
//              "subword_type": "unigram" | "bpe", "truncate": B},
//    "train": {"steps": N, "batch_size": N, "lr": X, "warmup": N, ...}}
//
// default_run_config(task) gives the built-in defaults; a user's --config file overrides any key.
#pragma once
#include <memory>
#include <string>
#include <vector>
#include "core/json.h"
#include "mega/beam_search.h"
#include "mega/text/bleu.h"
#include "mega/text/subword.h"
#include "mega/train/checkpoint.h"
#include "mega/train/trainer.h"

namespace megagrad {

// The defaults of a task ("listops", "fmnist", "charlm"); unknown task -> error.
Json default_run_config(const std::string& task);
// Named recipes: sets of overrides merged into default_run_config(task) before any --config file
// (megagrad train --recipe NAME). "cpu": the task's defaults (sized for a short CPU run);
// "official" (listops only): the paper's mega_lra_listop settings, as far as our keys express them
// (6 layers, D 80, H 160, Z 64, N 16, postnorm, truncation 1024, dropout 0.1, Adam lr 1e-3 with
// betas (0.9, 0.98), 3000 warmup steps, linear decay, batch 64, 90k steps, LRA-length data).
// An unknown name, or a recipe the task lacks, is an error naming the task's recipes.
Json recipe_overrides(const std::string& task, const std::string& name);
// The recipes of a task, e.g. {"cpu", "official"}.
std::vector<std::string> recipe_names(const std::string& task);
// default_run_config(task) with the recipe merged in, and "_recipe": name (a comment) recorded.
Json recipe_run_config(const std::string& task, const std::string& name);

// `base` with every key of `overrides` replaced, recursively for objects; unknown keys are errors
// (a misspelt option must not be silently ignored), and so is a value whose type is not its
// default's ("[config] x.json: train.steps: expected an integer, got string "5""; the keys whose
// default is null take null or an integer, or null or a string), and a "task" other than base's
// (a configuration written for another task).
Json merge_run_config(const Json& base, const Json& overrides, const std::string& what);

// `given` with every key it lacks at the task's default: what make_task builds from. A
// configuration from before a key existed (a checkpoint's) so keeps the model it was trained with
// (e.g. classifier_layers 1, padding_idx 0).
Json complete_run_config(const Json& given);
// The model-level keys of the model section ("type", "layers", "classifier_dim", ...); the others
// are the layer's (mega/config.h).
bool is_model_level_key(const std::string& key);

// Builds the task's model and data. out_dir is where the data may be cached.
std::unique_ptr<TrainTask> make_task(const Json& run_config);
// Samples `length` characters after `prompt` from a charlm checkpoint (its vocabulary is in the
// checkpoint's data state): MegaLM by incremental decoding, TransformerLM by a full forward per
// character over the last data.seq_len characters.
std::string generate_from_checkpoint(const Checkpoint& ck, const std::string& prompt, int64_t length,
                                     double temperature, int64_t top_k, uint64_t seed);
// ---- translate ----
// The task (MegaSeq2Seq or TransformerSeq2Seq, shared embeddings, label-smoothed cross-entropy;
// metric: token accuracy) trains a joint SentencePiece model on the training split's two sides
// when it first needs one, and keeps it in its data state, so in every checkpoint (covered by the
// checkpoint's checksum). A sentence is its pieces then eos (the decoder's input: bos then the
// pieces); one longer than model.max_positions is refused when the data is encoded, naming the
// pair, its length and the limit, unless data.truncate cuts it to max_positions - 1 pieces + eos.

// The run folder of a translate task (no-op for the other tasks): its tokenizer is cached there
// as tokenizer.model (with tokenizer.json recording what it was trained on), so that a new run
// in the same folder reuses it; only `write` processes (rank 0) write the files.
void set_task_run_dir(TrainTask& task, const std::string& dir, bool write);
// Translate: trains (or reads) the subword model and encodes the training and validation splits
// now, so that their errors (a vocabulary the text cannot fill, a sentence too long) come before
// train() writes any file. No-op for the other tasks.
void prepare_task_data(TrainTask& task);

// A translate checkpoint's model and tokenizer, for `megagrad translate`. Errors:
// "[translate] <what>: ..." for a checkpoint of another task ("a 'listops' checkpoint, not a
// translation model") or without a tokenizer.
class Translator {
 public:
  Translator(const Checkpoint& ck, const std::string& what);
  ~Translator();
  // A source sentence as ids (pieces, eos). Errors "[translate] <where>: ..." for an empty
  // sentence and for one longer than the model's positions (its length and the limit; never
  // truncated here). `unknown` (if given) receives the pieces that map to unk.
  std::vector<int64_t> encode_source(const std::string& sentence, const std::string& where,
                                     std::vector<std::string>* unknown = nullptr) const;
  // Greedy at beam 1, else beam search; max_len 0: min(2 * source length + 10, max_positions).
  std::string translate(const std::vector<int64_t>& src, int64_t beam, int64_t max_len) const;
  const text::SubwordTokenizer& tokenizer() const { return tok_; }
  Module& model() const { return *model_; }
  int64_t max_positions() const { return max_positions_; }

 private:
  std::unique_ptr<Module> model_;
  text::SubwordTokenizer tok_;
  int64_t max_positions_ = 0;
};

// A translate task's split ("val" or "test") translated by beam search (greedy at beam 1), its
// first `limit` pairs (0: all), scored with corpus BLEU (13a) and chrF as sacreBLEU does.
struct TranslationScores {
  text::BleuScore bleu;
  text::ChrfScore chrf;
  std::vector<std::string> sources, hypotheses, references;
  double seconds = 0;
  int64_t generated_tokens = 0;  // eos included
};
TranslationScores translation_scores(TrainTask& task, const std::string& split, int64_t beam, int64_t max_len,
                                     int64_t limit);

// TrainOptions from the "train" section (steps, lr, ...); out_dir and resume come from the caller.
TrainOptions train_options(const Json& run_config);
// Checks a whole run configuration without loading any data or building the model: the keys and
// their types (those of the task's defaults), the values train() and its optimizer and schedule
// accept, the model section (the layer configuration, the model-level keys) and the data section
// (e.g. ListOps' preset and lengths). Throws "[config] <path>: ..." naming the key, e.g.
// "[config] run config: train.steps: expected an integer, got string "5"" or
// "[config] train.steps must be >= 1, got 0". make_task calls it first.
void validate_run_config(const Json& run_config);

}  // namespace megagrad
