// safetensors files (https://github.com/huggingface/safetensors): weights, reference cases and
// checkpoints. Layout: an 8-byte little-endian header length N, N bytes of JSON header (padded
// with spaces), then the raw little-endian row-major data of every tensor. The header maps each
// tensor name to {"dtype": "F32"|"F64"|"I64"|"BOOL", "shape": [...], "data_offsets": [begin, end]}
// (offsets relative to the end of the header) and may hold "__metadata__": {string: string}.
//
// The reader trusts nothing: every header field, size, offset, overlap and gap is checked, and the
// first problem is reported as "[load_safetensors] <file>: tensor "<name>": <problem>".
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#include "core/tensor.h"

namespace megagrad {

struct SafeTensors {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in header order; CPU, contiguous
  std::map<std::string, std::string> metadata;
  std::string source;  // the file name (or what) it came from, for error messages

  bool contains(std::string_view name) const;
  // Throws "[safetensors] <source>: no tensor "<name>" (N tensors: a, b, ...)".
  const Tensor& at(std::string_view name) const;
};

// The largest header accepted (the official limit).
inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

// Reads a file. The data is read straight into each tensor's storage (no intermediate buffer).
SafeTensors load_safetensors(const std::string& path);
// Parses bytes already in memory; `what` names them in error messages.
SafeTensors parse_safetensors(std::string_view bytes, std::string_view what = "safetensors");

// The bytes of a safetensors file: tensors in the given order, each written row-major
// (non-contiguous ones through .contiguous()), header padded with spaces to a multiple of 8.
// Tensors must be on the CPU, float32/float64/int64/bool, with unique non-empty names other
// than "__metadata__"; errors are "[save_safetensors] ...".
std::string serialize_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});
// serialize_safetensors + write_file_atomic.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace megagrad
