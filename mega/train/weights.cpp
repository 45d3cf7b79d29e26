#include "mega/train/weights.h"
#include <filesystem>
#include <set>
#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "core/shape.h"
#include "mega/train/checkpoint.h"
#include "mega/train/tasks.h"

namespace megagrad {

namespace {
constexpr const char* kExport = "export";
constexpr size_t kListLimit = 12;  // names per list in a mismatch error

// "[load_safetensors] x: ..." or "[load_checkpoint] x: ..." -> "x: ...", for rethrowing under
// the command's own name.
std::string without_op(const Error& e) {
  std::string_view m = e.what();
  if (m.starts_with("[")) {
    const size_t close = m.find("] ");
    if (close != std::string_view::npos) m.remove_prefix(close + 2);
  }
  return std::string(m);
}

// "a, b, c" with at most kListLimit items, then "... and N more".
std::string name_list(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < kListLimit; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > kListLimit) out += fmt::format(", ... and {} more", items.size() - kListLimit);
  return out;
}

bool is_float(DType t) { return t == DType::Float32 || t == DType::Float64; }
}  // namespace

std::string serialize_weights(const NamedTensors& model, const Json& config,
                              const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> meta = extra;
  for (const char* key : {"format", "config"})
    MG_CHECK(!meta.count(key), "save_weights", "metadata key '{}' is set by serialize_weights", key);
  meta["format"] = std::string(kWeightsFormat);
  meta["config"] = config.dump();
  NamedTensors cpu;
  cpu.reserve(model.size());
  for (const auto& [n, t] : model) cpu.emplace_back(n, t.detach().cpu());
  return serialize_safetensors_checksummed(cpu, std::move(meta));  // refuses a "checksum" in extra
}

ExportSummary export_weights(const std::string& checkpoint, const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  MG_CHECK(!fs::equivalent(checkpoint, out, ec), kExport,
           "{} is the checkpoint itself: give another file name for the weights", out);
  Checkpoint ck;
  try {
    ck = load_checkpoint_with_finite_weights(checkpoint, kExport);
  } catch (const Error& e) {
    std::string why = without_op(e);
    // Say what the file is when it is a weights file already, or some other safetensors file.
    if (why.find("not a megagrad checkpoint") != std::string::npos) {
      std::string format;
      try {
        format = load_safetensors(checkpoint).metadata["format"];
      } catch (const Error&) {
      }
      if (format == kWeightsFormat)
        fail(kExport, "{} is already a weights file ({}), not a checkpoint: there is nothing to export", checkpoint,
             kWeightsFormat);
      fail(kExport, "{} is not a megagrad checkpoint (its metadata 'format' is '{}', expected 'megagrad-checkpoint-2'): "
           "export reads the checkpoint.safetensors that `megagrad train` writes", checkpoint, format);
    }
    fail(kExport, "{}", why);
  }
  MG_CHECK(ck.meta.count("config"), kExport, "{}: no run configuration in the checkpoint", checkpoint);
  const Json config = Json::parse(ck.meta.at("config"), checkpoint + ": config");
  MG_CHECK(config.is_object() && config.contains("task") && config.contains("model"), kExport,
           "{}: the run configuration has no task or model", checkpoint);
  std::map<std::string, std::string> extra;
  extra["source"] = fs::path(checkpoint).filename().string();
  extra["megagrad_version"] = MEGAGRAD_VERSION;
  ExportSummary s;
  if (ck.meta.count("step")) extra["step"] = s.step = ck.meta.at("step");
  if (ck.meta.count("data")) {  // a character LM's vocabulary: what its ids mean
    const Json data = Json::parse(ck.meta.at("data"), checkpoint + ": data");
    if (data.is_object() && data.contains("vocab")) extra["vocab"] = data.at("vocab").dump();
  }
  write_file_atomic(out, serialize_weights(ck.model, config, extra), kExport);
  s.tensors = ck.model.size();
  for (const auto& [n, t] : ck.model) s.parameters += t.numel();
  s.task = config.at("task").is_string() ? config.at("task").get_string() : "?";
  const Json& m = config.at("model");
  s.model_type = m.is_object() && m.contains("type") && m.at("type").is_string() ? m.at("type").get_string() : "?";
  return s;
}

WeightsFile load_weights_file(const std::string& path, std::string_view op) {
  WeightsFile w;
  w.path = path;
  std::string bytes;
  SafeTensors st;
  FileChecksum sum = FileChecksum::absent;
  try {
    bytes = read_file(path, op, (size_t)1 << 40);
    st = parse_safetensors(bytes, path);  // the structure: sizes, offsets, dtypes, header JSON
    sum = verify_file_checksum(bytes, path);
  } catch (const Error& e) {
    fail(op, "{}", without_op(e));
  }
  const auto fmt_it = st.metadata.find("format");
  const std::string format = fmt_it == st.metadata.end() ? "" : fmt_it->second;
  if (format.starts_with("megagrad-checkpoint"))
    fail(op, "{} is a training checkpoint ({}: weights and optimizer state), not a weights file: "
         "`megagrad export {} OUT.safetensors` writes its weights", path, format, path);
  MG_CHECK(format.empty() || format == kWeightsFormat, op,
           "{}: unknown format '{}' in the metadata (megagrad reads '{}' files and safetensors files without a format)",
           path, format, kWeightsFormat);
  if (format == kWeightsFormat) {
    MG_CHECK(sum == FileChecksum::verified, op, "{}: a {} file without its checksum: it was changed after it was written",
             path, kWeightsFormat);
    MG_CHECK(st.metadata.count("config"), op, "{}: a {} file without its run configuration", path, kWeightsFormat);
    Json cfg;
    try {
      cfg = Json::parse(st.metadata.at("config"), path + ": config");
    } catch (const Error& e) {
      fail(op, "{}", without_op(e));
    }
    MG_CHECK(cfg.is_object() && cfg.contains("task"), op, "{}: the run configuration in the metadata has no task", path);
    w.config = std::move(cfg);
  }
  w.verified = sum == FileChecksum::verified;
  if (auto bad = first_non_finite(st.tensors)) fail(op, "{}: the weights are not finite ({})", path, *bad);
  w.tensors = std::move(st.tensors);
  w.metadata = std::move(st.metadata);
  w.widened = std::move(st.widened);
  return w;
}

void check_weights_match(const NamedTensors& file, const NamedTensors& model, std::string_view op,
                         const std::string& path) {
  std::map<std::string, const Tensor*> in_file, in_model;
  for (const auto& [n, t] : file) in_file[n] = &t;
  for (const auto& [n, t] : model) in_model[n] = &t;
  std::vector<std::string> missing, unexpected, shapes, dtypes;
  for (const auto& [n, t] : model) {  // model order: the order of the model's parameters
    auto it = in_file.find(n);
    if (it == in_file.end()) {
      missing.push_back(n);
      continue;
    }
    const Tensor& f = *it->second;
    if (f.shape() != t.shape())
      shapes.push_back(fmt::format("{} {} in file, {} in model", n, shape_str(f.shape()), shape_str(t.shape())));
    else if (is_float(t.dtype()) != is_float(f.dtype()))
      dtypes.push_back(fmt::format("{} {} in file, {} in model", n, dtype_name(f.dtype()), dtype_name(t.dtype())));
  }
  for (const auto& [n, t] : file)
    if (!in_model.count(n)) unexpected.push_back(n);
  if (missing.empty() && unexpected.empty() && shapes.empty() && dtypes.empty()) return;
  std::vector<std::string> parts;
  if (!missing.empty()) parts.push_back(fmt::format("missing tensors ({}): {}", missing.size(), name_list(missing)));
  if (!unexpected.empty())
    parts.push_back(fmt::format("unexpected tensors ({}): {}", unexpected.size(), name_list(unexpected)));
  if (!shapes.empty()) parts.push_back(fmt::format("shape mismatch ({}): {}", shapes.size(), name_list(shapes)));
  if (!dtypes.empty()) parts.push_back(fmt::format("dtype mismatch ({}): {}", dtypes.size(), name_list(dtypes)));
  std::string all;
  for (const std::string& p : parts) all += (all.empty() ? "" : "; ") + p;
  fail(op, "{}: the tensors do not match the model ({} in the file, {} in the model): {}", path, file.size(),
       model.size(), all);
}

void load_weights_into(Module& model, const WeightsFile& w, std::string_view op) {
  check_weights_match(w.tensors, model.state_dict(), op, w.path);
  model.load_state_dict(w.tensors);  // copy_ converts float64 <-> float32 and moves to the device
}

std::string weights_warning(const WeightsFile& w) {
  if (w.verified && w.config) return "";
  if (w.verified)
    return fmt::format("{} carries a valid checksum but no run configuration: its names and shapes were checked "
                       "against the model of the given configuration", w.path);
  return fmt::format("{} is unverified: it has no megagrad checksum or configuration (a file from elsewhere, e.g. "
                     "converted official weights); only its names and shapes were checked against the model of the "
                     "given configuration", w.path);
}

std::vector<std::string> model_config_differences(const Json& from_file, const Json& run) {
  const Json a = complete_run_config(from_file), b = complete_run_config(run);
  std::vector<std::string> out;
  if (a.at("task").dump() != b.at("task").dump())
    out.push_back(fmt::format("task: {} -> {}", a.at("task").dump(), b.at("task").dump()));
  const Json &ma = a.at("model"), &mb = b.at("model");
  std::set<std::string> keys;
  for (const auto& [k, v] : ma.items()) keys.insert(k);
  for (const auto& [k, v] : mb.items()) keys.insert(k);
  for (const std::string& k : keys) {
    const std::string va = ma.contains(k) ? ma.at(k).dump() : "(none)", vb = mb.contains(k) ? mb.at(k).dump() : "(none)";
    if (va != vb) out.push_back(fmt::format("model.{}: {} -> {}", k, va, vb));
  }
  return out;
}

}  // namespace megagrad
