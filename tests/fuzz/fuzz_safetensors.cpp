// Fuzz target: the safetensors reader (core/safetensors.h), the checkpoint reader
// (mega/train/checkpoint.h) and the weights-file reader (mega/train/weights.h), which read a
// safetensors file and check its metadata and checksum.
//
// Input: one mode byte, then the payload.
//   even mode: the payload is the whole file;
//   odd mode:  the payload is "<header JSON> NUL <data section>", and the target writes the 8-byte
//              header length itself, so that mutations of the header reach the JSON and tensor
//              validation instead of mostly breaking the length field.
// Checks, for every input:
//   - parse_safetensors (bytes in memory) and load_safetensors (the same bytes in a scratch file)
//     each return or throw megagrad::Error, and agree: both reject, or both return the same
//     tensors (names in order, dtypes, shapes, bytes) and metadata;
//   - an accepted file is written back by serialize_safetensors, and those bytes parse to the same
//     tensors and metadata (the writer accepts whatever the reader accepts);
//   - load_checkpoint and load_weights_file (mega/train/weights.h) on the scratch file each return
//     or throw megagrad::Error.
// Anything else (another exception type, a sanitizer report, a mismatch, a huge allocation from
// a size field, a hang) is a bug.
#include <cstdint>
#include <cstring>
#include <optional>
#include "core/safetensors.h"
#include "mega/train/checkpoint.h"
#include "mega/train/weights.h"
#include "tests/fuzz/fuzz_util.h"

using namespace megagrad;

namespace {

std::string le64(uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += (char)((n >> (8 * i)) & 0xFF);
  return s;
}

std::string_view bytes_of(const Tensor& t) {
  return {static_cast<const char*>(t.raw_data()), (size_t)t.numel() * dtype_size(t.dtype())};
}

// Aborts unless a and b hold the same tensors, in the same order, and the same metadata.
void require_same(const SafeTensors& a, const SafeTensors& b, const char* what) {
  if (a.tensors.size() != b.tensors.size())
    fuzz::bug("%s: %zu tensors vs %zu", what, a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& [na, ta] = a.tensors[i];
    const auto& [nb, tb] = b.tensors[i];
    if (na != nb) fuzz::bug("%s: tensor %zu is \"%s\" vs \"%s\"", what, i, na.c_str(), nb.c_str());
    if (ta.dtype() != tb.dtype() || ta.shape() != tb.shape())
      fuzz::bug("%s: tensor \"%s\" differs in dtype or shape", what, na.c_str());
    if (!ta.is_contiguous() || !tb.is_contiguous()) fuzz::bug("%s: tensor \"%s\" is not contiguous", what, na.c_str());
    if (bytes_of(ta) != bytes_of(tb)) fuzz::bug("%s: tensor \"%s\" differs in its bytes", what, na.c_str());
  }
  if (a.metadata != b.metadata) fuzz::bug("%s: the metadata differ", what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string file;
  if (data[0] % 2 == 0) {
    file = payload;
  } else {
    size_t nul = payload.find('\0');
    std::string_view header = payload.substr(0, nul);
    std::string_view rest = nul == std::string_view::npos ? std::string_view() : payload.substr(nul + 1);
    file = le64(header.size()) + std::string(header) + std::string(rest);
  }

  std::optional<SafeTensors> in_memory, from_file;
  fuzz::accepts("parse_safetensors", [&] { in_memory = parse_safetensors(file, "fuzz input"); });
  const std::string path = fuzz::write_scratch("safetensors", file);
  fuzz::accepts("load_safetensors", [&] { from_file = load_safetensors(path); });
  if (in_memory.has_value() != from_file.has_value())
    fuzz::bug("parse_safetensors %s the input but load_safetensors %s it", in_memory ? "accepts" : "rejects",
              from_file ? "accepts" : "rejects");

  if (in_memory) {
    require_same(*in_memory, *from_file, "parse_safetensors vs load_safetensors");
    std::string again;
    if (!fuzz::accepts("serialize_safetensors",
                       [&] { again = serialize_safetensors(in_memory->tensors, in_memory->metadata); }))
      fuzz::bug("serialize_safetensors rejects what parse_safetensors accepted");
    std::optional<SafeTensors> reread;
    if (!fuzz::accepts("parse_safetensors (rewritten)", [&] { reread = parse_safetensors(again, "rewritten"); }))
      fuzz::bug("parse_safetensors rejects the bytes serialize_safetensors wrote");
    require_same(*in_memory, *reread, "read vs written and read again");
    // A missing name is a clean error, a present one is found.
    fuzz::accepts("SafeTensors::at", [&] { (void)in_memory->at("\x01 not a tensor"); });
    for (const auto& [name, t] : in_memory->tensors)
      if (!in_memory->contains(name) || &in_memory->at(name) != &t) fuzz::bug("tensor \"%s\" not found", name.c_str());
  }

  fuzz::accepts("load_checkpoint", [&] { (void)load_checkpoint(path); });
  fuzz::accepts("load_weights_file", [&] { (void)load_weights_file(path, "fuzz"); });
  return 0;
}
