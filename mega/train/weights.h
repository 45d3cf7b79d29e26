// Weights-only files: a model's tensors without the optimizer state, for sharing and for starting
// from (megagrad export, train --init-from, eval --weights).
//
// A megagrad weights file is a safetensors file holding the model's state_dict under its own names
// (the official fairseq names for the Mega models, mega/models.h documents the Transformer
// baselines' names), and the metadata
//   "format":  "megagrad-weights-1"
//   "config":  the run configuration (JSON) the model was built from (mega/train/tasks.h)
//   "checksum": the whole-file checksum of core/safetensors.h, the same as checkpoints carry
//   and, from export, "step", "source" (the checkpoint's file) and "megagrad_version" (and
//   "vocab", a character LM's vocabulary).
// A file from elsewhere (e.g. official weights converted by tools/convert_fairseq_mega.py) has no
// "format": it is read as plain safetensors, is "unverified" (no checksum, no configuration), and
// needs the run configuration from the user. F16/BF16 tensors are read as float32.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include "core/json.h"
#include "mega/module.h"

namespace megagrad {

inline constexpr std::string_view kWeightsFormat = "megagrad-weights-1";

// The bytes of a weights file: `model` (CPU or device tensors) under their names, with the
// metadata above ("format", "config", "checksum" are set here; `extra` adds the others and must
// not hold those three).
std::string serialize_weights(const NamedTensors& model, const Json& config,
                              const std::map<std::string, std::string>& extra = {});

struct ExportSummary {
  size_t tensors = 0;
  int64_t parameters = 0;  // values in all tensors
  std::string step;        // the checkpoint's step ("" if it has none)
  std::string task, model_type;
};
// megagrad export: reads the checkpoint (checksum, finite weights), writes its model tensors and
// configuration to `out` atomically (write_file_atomic). Errors are "[export] ...": a file that
// is not a megagrad checkpoint (a weights file, a foreign safetensors file, a corrupted one), a
// checkpoint without a configuration, `out` naming the checkpoint itself.
ExportSummary export_weights(const std::string& checkpoint, const std::string& out);

struct WeightsFile {
  std::string path;
  NamedTensors tensors;          // in file order; F16/BF16 widened to float32
  std::optional<Json> config;    // the run configuration: megagrad weights files only
  bool verified = false;         // the whole-file checksum was there and matched
  std::map<std::string, std::string> metadata;  // all of it, "config" and "checksum" included
  std::vector<std::pair<std::string, std::string>> widened;  // (name, "F16" | "BF16")
};

// Reads a weights file and checks what the file alone can tell: the safetensors structure, the
// checksum (a megagrad weights file must have one, and its configuration), and that every weight
// is finite. A training checkpoint is refused with the way to export it. Errors are
// "[<op>] <path>: ...".
WeightsFile load_weights_file(const std::string& path, std::string_view op);

// Compares the file's tensors with the model's state_dict and throws one error that lists every
// problem by name: "[<op>] <path>: the tensors do not match the model: missing tensors (2): a, b;
// unexpected tensors (1): c; shape mismatch (1): x (3,4) in file, (4,4) in model; dtype mismatch
// (1): y int64 in file, float32 in model". Long lists are cut after 12 names ("... and N more").
void check_weights_match(const NamedTensors& file, const NamedTensors& model, std::string_view op,
                         const std::string& path);

// check_weights_match, then copies the values into the model (converted to its dtypes).
void load_weights_into(Module& model, const WeightsFile& w, std::string_view op);

// One line for stderr about a file that is not verified (no checksum) or carries no configuration,
// "" for a verified megagrad weights file. Names the converted F16/BF16 tensors, if any.
std::string weights_warning(const WeightsFile& w);

// The keys of two run configurations' "model" sections that differ, as "key: a -> b" (both
// completed to their task's defaults first); empty when they are the same model.
std::vector<std::string> model_config_differences(const Json& from_file, const Json& run);

}  // namespace megagrad
