#include "mega/train/checkpoint.h"
#include "core/hash.h"
#include <charconv>
#include <cmath>
#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "core/shape.h"

namespace megagrad {

namespace {
constexpr const char* kFormat = "megagrad-checkpoint-2";
constexpr const char* kFormat1 = "megagrad-checkpoint-1";  // tensors-only checksum; read, never written
constexpr const char* kOp = "load_checkpoint";

// Format 1's checksum: FNV-1a 64 over the tensors' names, dtypes, shapes and bytes, in order.
std::string format1_tensors_checksum(const NamedTensors& tensors) {
  uint64_t h = kFnv1aOffset;
  auto add = [&h](const void* p, size_t n) { h = fnv1a(std::string_view(static_cast<const char*>(p), n), h); };
  auto add_str = [&](const std::string& s) { add(s.data(), s.size() + 1); };
  for (const auto& [name, t] : tensors) {
    add_str(name);
    add_str(std::string(dtype_name(t.dtype())));
    for (int64_t d : t.shape()) add(&d, sizeof d);
    Tensor c = t.detach().cpu().contiguous();
    add(c.raw_data(), (size_t)c.numel() * dtype_size(c.dtype()));
  }
  return fmt::format("{:016x}", h);
}
}  // namespace

uint64_t parse_uint64(const std::string& text, std::string_view what, const std::string& where) {
  uint64_t v = 0;
  const char *b = text.data(), *e = b + text.size();
  auto [end, ec] = std::from_chars(b, e, v);
  MG_CHECK(!text.empty() && ec == std::errc() && end == e, "train", "{}: bad {} '{}'", where, what, text);
  return v;
}

std::string serialize_checkpoint(const Checkpoint& ck) {
  NamedTensors all;
  for (const auto& [n, t] : ck.model) all.emplace_back("model." + n, t.detach().cpu());
  for (const auto& [n, t] : ck.optimizer) all.emplace_back("optim." + n, t.detach().cpu());
  std::map<std::string, std::string> meta = ck.meta;
  MG_CHECK(!meta.count("format") && !meta.count(std::string(kFileChecksumKey)), "save_checkpoint",
           "metadata keys 'format' and '{}' are reserved", kFileChecksumKey);
  meta["format"] = kFormat;
  return serialize_safetensors_checksummed(all, std::move(meta));
}

void save_checkpoint(const std::string& path, const Checkpoint& ck) {
  write_file_atomic(path, serialize_checkpoint(ck), "save_checkpoint");
}

Checkpoint load_checkpoint(const std::string& path) {
  // "[load_safetensors] <path>: ..." -> "[load_checkpoint] <path>: ..." (and read_file's own
  // "[load_checkpoint] cannot read ..." keeps one prefix, not two)
  auto as_checkpoint_error = [](const Error& e) -> std::string {
    std::string_view m = e.what();
    for (std::string_view prefix : {"[load_safetensors] ", "[load_checkpoint] "})
      if (m.starts_with(prefix)) m.remove_prefix(prefix.size());
    return std::string(m);
  };
  std::string bytes;
  SafeTensors st;
  try {
    bytes = read_file(path, kOp, (size_t)1 << 40);
    st = parse_safetensors(bytes, path);  // the structure: sizes, offsets, header JSON
  } catch (const Error& e) {
    fail(kOp, "{}", as_checkpoint_error(e));
  }
  auto fmt_it = st.metadata.find("format");
  const std::string format = fmt_it == st.metadata.end() ? "" : fmt_it->second;
  MG_CHECK(format == kFormat || format == kFormat1, kOp,
           "{}: not a megagrad checkpoint (metadata 'format' is '{}', expected '{}')", path, format, kFormat);
  auto sum_it = st.metadata.find(std::string(kFileChecksumKey));
  MG_CHECK(sum_it != st.metadata.end(), kOp, "{}: no checksum in the metadata", path);
  Checkpoint ck;
  if (format == kFormat) {
    FileChecksum state = FileChecksum::absent;
    try {
      state = verify_file_checksum(bytes, path);
    } catch (const Error& e) {
      fail(kOp, "{}", as_checkpoint_error(e));
    }
    MG_CHECK(state == FileChecksum::verified, kOp, "{}: no whole-file checksum", path);
  } else {
    // Format 1: only the tensors were checksummed. Check them; say that the metadata is not.
    std::string actual = format1_tensors_checksum(st.tensors);
    MG_CHECK(actual == sum_it->second, kOp, "{}: checksum mismatch (stored {}, computed {}): the file is corrupted",
             path, sum_it->second, actual);
    ck.unverified = fmt::format(
        "{} is a format-1 checkpoint: its tensors are verified, its metadata (step, data position, RNG, "
        "configuration) is not. A run resumed from it saves format 2.", path);
  }
  for (auto& [n, t] : st.tensors) {
    if (n.rfind("model.", 0) == 0) ck.model.emplace_back(n.substr(6), t);
    else if (n.rfind("optim.", 0) == 0) ck.optimizer.emplace_back(n.substr(6), t);
    else fail(kOp, "{}: unexpected tensor '{}' (neither model. nor optim.)", path, n);
  }
  ck.meta = st.metadata;
  ck.meta.erase("format");
  ck.meta.erase(std::string(kFileChecksumKey));
  return ck;
}

Checkpoint load_checkpoint_with_finite_weights(const std::string& path, std::string_view op) {
  Checkpoint ck = load_checkpoint(path);
  if (auto bad = first_non_finite(ck.model)) fail(op, "{}: the weights are not finite ({})", path, *bad);
  return ck;
}

std::optional<std::string> first_non_finite(const NamedTensors& tensors) {
  for (const auto& [name, t] : tensors) {
    if (t.dtype() != DType::Float32 && t.dtype() != DType::Float64) continue;
    std::vector<double> v = t.detach().cpu().to_vector();
    int64_t bad = 0, first = -1;
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i])) bad += 1, first = first < 0 ? (int64_t)i : first;
    if (bad == 0) continue;
    std::string index;
    for (int64_t k : unravel_index(first, t.shape())) index += fmt::format("{}{}", index.empty() ? "" : ", ", k);
    return fmt::format("{}: {} at [{}] ({} of {} values are not finite)", name,
                       std::isnan(v[(size_t)first]) ? "NaN" : "Inf", index, bad, v.size());
  }
  return std::nullopt;
}

}  // namespace megagrad
