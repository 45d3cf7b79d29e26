// Compares a Mega layer with a reference case computed by the authors' PyTorch code
// (tests/data/ref/<case>/: config.json, ref_f64.safetensors, ref_f32.safetensors).
#pragma once
#include <string>
#include <vector>
#include "core/dtype.h"

namespace megagrad {

struct RefCheckRow {
  std::string name;  // "out", "grad.x", "grad.mega_layer.move.alpha", ...
  double error = 0;  // max |ours - ref| / max |ref|; infinite when a value is not finite
  // "" or the first non-finite value on either side, e.g. "the reference grad.x[3, 0, 1] is nan"
  // (the index in the reference's layout): such a row fails, whatever the other values.
  std::string problem;
};

struct RefCheckResult {
  DType dtype;
  double tolerance;  // 1e-8 (float64) or 1e-4 (float32)
  std::vector<RefCheckRow> rows;
  bool passed() const;
};

// Builds the layer from config.json, loads the weights and the input of ref_<dtype>.safetensors,
// runs forward and backward of loss = sum(out * G), and measures every error. Throws
// "[ref-check] ..." for a malformed case (unknown tensor, missing gradient, a reference tensor
// whose shape differs from ours: the message names the tensor and both shapes). A NaN or an
// infinity on either side fails that row (RefCheckRow::problem names it): it is never skipped.
RefCheckResult ref_check(const std::string& case_dir, DType dtype);

}  // namespace megagrad
