// Training checkpoints: one safetensors file holding the model ("model.<official name>"), the
// optimizer state ("optim.<name>") and the metadata a bit-identical resume needs (step, data
// position, RNG state, the run's configuration as JSON). A checksum of every tensor's bytes is
// stored in the metadata and checked on load, so a corrupted file is an error, not a model with
// silently wrong weights. Writes are atomic (temp file, fsync, rename): a crash mid-write leaves
// the previous checkpoint intact.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include "mega/module.h"

namespace megagrad {

struct Checkpoint {
  NamedTensors model;                          // names without the "model." prefix
  NamedTensors optimizer;                      // names without the "optim." prefix
  std::map<std::string, std::string> meta;     // free-form strings (step, rng, config, ...)
};

// FNV-1a 64 over the tensors' names, dtypes, shapes and bytes, in order; 16 hex digits.
std::string tensors_checksum(const NamedTensors& tensors);

// A decimal number that is the whole of `text` (no sign, no spaces) in [0, 2^64); else
// "[train] <where>: bad <what> '<text>'". For checkpoint metadata, which a person may edit.
uint64_t parse_uint64(const std::string& text, std::string_view what, const std::string& where);

void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
// Throws "[load_checkpoint] <path>: ..." for a file that is not a megagrad checkpoint, a checksum
// mismatch, or anything the safetensors reader rejects.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace megagrad
