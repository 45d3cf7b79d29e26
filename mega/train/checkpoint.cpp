#include "mega/train/checkpoint.h"
#include <charconv>
#include <cstring>
#include "core/safetensors.h"

namespace megagrad {

namespace {
constexpr const char* kFormat = "megagrad-checkpoint-1";

struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(const void* p, size_t n) {
    const unsigned char* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  void add(const std::string& s) { add(s.data(), s.size() + 1); }
};
}  // namespace

uint64_t parse_uint64(const std::string& text, std::string_view what, const std::string& where) {
  uint64_t v = 0;
  const char *b = text.data(), *e = b + text.size();
  auto [end, ec] = std::from_chars(b, e, v);
  MG_CHECK(!text.empty() && ec == std::errc() && end == e, "train", "{}: bad {} '{}'", where, what, text);
  return v;
}

std::string tensors_checksum(const NamedTensors& tensors) {
  Fnv f;
  for (const auto& [name, t] : tensors) {
    f.add(name);
    f.add(std::string(dtype_name(t.dtype())));
    for (int64_t d : t.shape()) f.add(&d, sizeof d);
    Tensor c = t.detach().cpu().contiguous();
    f.add(c.raw_data(), (size_t)c.numel() * dtype_size(c.dtype()));
  }
  return fmt::format("{:016x}", f.h);
}

void save_checkpoint(const std::string& path, const Checkpoint& ck) {
  NamedTensors all;
  for (const auto& [n, t] : ck.model) all.emplace_back("model." + n, t);
  for (const auto& [n, t] : ck.optimizer) all.emplace_back("optim." + n, t);
  std::map<std::string, std::string> meta = ck.meta;
  MG_CHECK(!meta.count("format") && !meta.count("checksum"), "save_checkpoint",
           "metadata keys 'format' and 'checksum' are reserved");
  meta["format"] = kFormat;
  meta["checksum"] = tensors_checksum(all);
  save_safetensors(path, all, meta);
}

Checkpoint load_checkpoint(const std::string& path) {
  SafeTensors st = load_safetensors(path);
  auto fmt_it = st.metadata.find("format");
  MG_CHECK(fmt_it != st.metadata.end() && fmt_it->second == kFormat, "load_checkpoint",
           "{}: not a megagrad checkpoint (metadata 'format' is '{}', expected '{}')", path,
           fmt_it == st.metadata.end() ? "" : fmt_it->second, kFormat);
  auto sum_it = st.metadata.find("checksum");
  MG_CHECK(sum_it != st.metadata.end(), "load_checkpoint", "{}: no checksum in the metadata", path);
  std::string actual = tensors_checksum(st.tensors);
  MG_CHECK(actual == sum_it->second, "load_checkpoint",
           "{}: checksum mismatch (stored {}, computed {}): the file is corrupted", path, sum_it->second, actual);
  Checkpoint ck;
  for (auto& [n, t] : st.tensors) {
    if (n.rfind("model.", 0) == 0) ck.model.emplace_back(n.substr(6), t);
    else if (n.rfind("optim.", 0) == 0) ck.optimizer.emplace_back(n.substr(6), t);
    else fail("load_checkpoint", "{}: unexpected tensor '{}' (neither model. nor optim.)", path, n);
  }
  ck.meta = st.metadata;
  ck.meta.erase("format");
  ck.meta.erase("checksum");
  return ck;
}

}  // namespace megagrad
