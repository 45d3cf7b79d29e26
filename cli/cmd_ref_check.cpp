// megagrad ref-check CASE_DIR: builds the layer or the whole LRA classifier of a reference case
// (config.json), loads the official weights and input, runs forward and backward of
// loss = sum(out * G) (or sum(logits * G)) in float64 and float32, and prints the error of the
// output and of every gradient against the official values.
#include <algorithm>
#include <cstdio>
#include "cli/commands.h"
#include "mega/ref_check.h"

namespace megagrad::cli {

int cmd_ref_check(const std::vector<std::string>& args) {
  Options opts("ref-check", {{"--dtype", "T", "float64, float32 or both (default both)"}, threads_option()});
  opts.positionals(1, "CASE_DIR");
  opts.parse(args);
  if (opts.help()) {
    std::printf("usage: megagrad ref-check CASE_DIR [options]\n\n"
                "CASE_DIR holds config.json, ref_f64.safetensors and ref_f32.safetensors, computed by\n"
                "the official Mega code: one layer (e.g. tests/data/ref/ii_tiny_chunk4_padding) or, with\n"
                "\"kind\": \"lra_classifier\" in config.json, the whole LRA classifier on padded token ids\n"
                "(e.g. tests/data/ref_models/m1_lra_postnorm_softmax). Prints the max error of out\n"
                "(logits), grad.x (layers) and every grad.<param>, relative to that tensor's largest\n"
                "value. Exit code 1 when an error exceeds 1e-8 (float64) or 1e-4 (float32).\n\n%s",
                opts.options_help().c_str());
    return 0;
  }
  if (opts.positional().empty()) throw UsageError("megagrad ref-check: missing CASE_DIR (see: megagrad ref-check --help)");
  apply_threads(opts);
  std::string which = opts.get("--dtype").value_or("both");
  std::vector<DType> dtypes;
  if (which == "float64" || which == "both") dtypes.push_back(DType::Float64);
  if (which == "float32" || which == "both") dtypes.push_back(DType::Float32);
  if (dtypes.empty())
    throw UsageError(fmt::format("megagrad ref-check: --dtype must be float64, float32 or both, got '{}'", which));

  const std::string dir = opts.positional()[0];
  std::vector<RefCheckResult> results;
  for (DType dt : dtypes) results.push_back(ref_check(dir, dt));
  // The rows are the same for both dtypes (the model's parameters, in order).
  int width = 44;  // the whole model's names are longer than a layer's
  for (const RefCheckRow& row : results[0].rows) width = std::max(width, (int)row.name.size());
  std::printf("ref-check %s (%s)\n\n%-*s", dir.c_str(), results[0].kind.c_str(), width, "tensor");
  for (auto& r : results) std::printf(" %12s", dtype_name(r.dtype).data());
  std::printf("\n");
  for (size_t i = 0; i < results[0].rows.size(); ++i) {
    std::printf("%-*s", width, results[0].rows[i].name.c_str());
    for (auto& r : results) {
      const RefCheckRow& row = r.rows[i];
      std::printf(" %10.2e%s", row.error, row.error <= r.tolerance && row.problem.empty() ? "  " : " !");
    }
    std::printf("\n");
  }
  bool ok = true;
  std::printf("\n");
  for (auto& r : results)
    for (auto& row : r.rows)
      if (!row.problem.empty()) std::printf("%s: %s\n", dtype_name(r.dtype).data(), row.problem.c_str());
  for (auto& r : results)
    for (auto& row : r.rows)
      if (!row.note.empty()) std::printf("%s: note: %s\n", dtype_name(r.dtype).data(), row.note.c_str());
  for (auto& r : results) {
    double worst = 0;
    for (auto& row : r.rows)
      if (!(row.error <= worst)) worst = row.error;  // a NaN is the worst, not skipped
    std::printf("%s: worst %.2e, tolerance %.0e: %s\n", dtype_name(r.dtype).data(), worst, r.tolerance,
                r.passed() ? "PASS" : "FAIL");
    ok = ok && r.passed();
  }
  return ok ? 0 : 1;
}

}  // namespace megagrad::cli
