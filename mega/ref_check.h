// Compares megagrad with reference cases computed by the authors' PyTorch code. A case folder
// holds config.json, ref_f64.safetensors and ref_f32.safetensors; config.json says what it is:
//   - no "kind": one Mega layer (tests/data/ref/<case>/, see its README);
//   - "kind": "lra_classifier": the whole official LRA classifier, MegaLRAEncoder + the LRAModel
//     head, on a padded batch of token ids (tests/data/ref_models/<case>/).
#pragma once
#include <string>
#include <vector>
#include "core/dtype.h"
#include "core/json.h"
#include "mega/models.h"

namespace megagrad {

struct RefCheckRow {
  std::string name;  // "out", "grad.x", "grad.mega_layer.move.alpha", "logits", ...
  double error = 0;  // max |ours - ref| / max |ref|; infinite when a value is not finite
  // "" or the first non-finite value on either side, e.g. "the reference grad.x[3, 0, 1] is nan"
  // (the index in the reference's layout): such a row fails, whatever the other values.
  std::string problem;
  // "" or how the row was measured when not as above, e.g. for a gradient that is exactly zero
  // in exact arithmetic (see ref_check.cpp, compare_structural_zero).
  std::string note;
};

struct RefCheckResult {
  DType dtype;
  double tolerance;  // 1e-8 (float64) or 1e-4 (float32)
  std::vector<RefCheckRow> rows;
  std::string kind = "layer";  // "layer" or "lra_classifier"
  bool passed() const;
};

// Builds the layer or model from config.json, loads the weights and the input of
// ref_<dtype>.safetensors, runs forward and backward of loss = sum(out * G) (a layer) or
// sum(logits * G) (a model), and measures every error: out/logits, loss, grad.x (a layer) and
// grad.<param> for every parameter. Throws "[ref-check] ..." for a malformed case (unknown
// tensor, missing gradient, a reference tensor whose shape differs from ours: the message names
// the tensor and both shapes). A NaN or an infinity on either side fails that row
// (RefCheckRow::problem names it): it is never skipped.
RefCheckResult ref_check(const std::string& case_dir, DType dtype);

// The configuration of an "lra_classifier" case (the keys of shared/ref/README.md, 'Whole
// models'). Every key is checked: an unknown key or value is an error "[config] <what>: <key>:
// ...". The case files do not say whether sentence_projection_layer has a bias: ref_check takes
// it from the weights (model.projection_bias is false here).
struct LraCaseConfig {
  ClassifierConfig model;
  int64_t seq_len = 0, batch = 0;
  std::vector<int64_t> lengths;  // from the "lengths" key when it is not null
  double param_noise = 0.0;      // provenance
};
LraCaseConfig parse_lra_case_config(const Json& json, std::string_view what);

}  // namespace megagrad
