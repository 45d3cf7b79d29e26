// safetensors files (https://github.com/huggingface/safetensors): weights, reference cases and
// checkpoints. Layout: an 8-byte little-endian header length N, N bytes of JSON header (padded
// with spaces), then the raw little-endian row-major data of every tensor. The header maps each
// tensor name to {"dtype": "F32"|"F64"|"I64"|"BOOL", "shape": [...], "data_offsets": [begin, end]}
// (offsets relative to the end of the header) and may hold "__metadata__": {string: string}.
//
// F16 and BF16 tensors (half-precision weights, e.g. from a model trained or saved in fp16) are
// read too, widened to float32 as they are read: exactly, since every F16 and BF16 value is a
// float32 value (subnormals included). Infinities keep their sign and NaNs stay NaN (sign and
// payload bits kept); the reader refuses neither, and the commands that use weights refuse
// non-finite ones by name (mega/train/checkpoint.h, first_non_finite). Nothing writes F16/BF16.
//
// The reader trusts nothing: every header field, size, offset, overlap and gap is checked, and the
// first problem is reported as "[load_safetensors] <file>: tensor "<name>": <problem>".
#pragma once
#include <cstdint>
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
  // The tensors that were F16 or BF16 in the file (now float32): (name, "F16" | "BF16").
  std::vector<std::pair<std::string, std::string>> widened;

  bool contains(std::string_view name) const;
  // Throws "[safetensors] <source>: no tensor "<name>" (N tensors: a, b, ...)".
  const Tensor& at(std::string_view name) const;
};

// The 16-bit float formats of a file, widened to float32 when read.
enum class Half { none, f16, bf16 };
// One IEEE binary16 (F16) or bfloat16 (BF16) value, given as its bits, as float32: exact for
// every value (F16 subnormals become normal float32 numbers), Inf stays Inf, NaN stays NaN.
float f16_to_f32(uint16_t bits);
float bf16_to_f32(uint16_t bits);

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

// ---- Whole-file checksums: every file megagrad writes (checkpoints, weight exports) carries one.
// The metadata key "checksum" holds 16 hex digits: FNV-1a 64 of every byte of the file, with
// those 16 digits read as '0'. The header length, every tensor entry, all metadata, the padding
// and every data byte are covered, so an edit anywhere but in the checksum itself is caught (and
// an edit of the checksum no longer matches the rest).
inline constexpr std::string_view kFileChecksumKey = "checksum";

// serialize_safetensors with metadata["checksum"] filled in; the caller must not set that key.
std::string serialize_safetensors_checksummed(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                              std::map<std::string, std::string> metadata);

enum class FileChecksum { verified, absent };
// Checks the whole-file checksum of a safetensors file in memory, if it has one. Throws
// "[load_safetensors] <what>: checksum mismatch ..." when it does not match, or when the header
// holds the key in a form megagrad never writes (so a checksum cannot be dodged by reformatting).
FileChecksum verify_file_checksum(std::string_view bytes, std::string_view what);
// load_safetensors + verify_file_checksum (the file is read whole, then parsed). `state`, when
// given, says whether the file had a checksum; a file without one is loaded unverified.
SafeTensors load_safetensors_verified(const std::string& path, FileChecksum* state = nullptr);

}  // namespace megagrad
