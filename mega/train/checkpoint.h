// Training checkpoints: one safetensors file holding the model ("model.<official name>"), the
// optimizer state ("optim.<name>") and the metadata a bit-identical resume needs (step, data
// position, RNG state, the run's configuration as JSON).
//
// Format 2 (metadata "format": "megagrad-checkpoint-2") carries the whole-file checksum of
// core/safetensors.h: every byte, the metadata included, so an edited step, seed or activation is
// refused like a flipped weight. Format 1 files (checksum over the tensors only) still load, with
// Checkpoint::unverified saying that their metadata is not covered; saving them again (any
// resumed run does) writes format 2. Writes are atomic (temp file, fsync, rename): a crash
// mid-write leaves the previous checkpoint intact.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include "mega/module.h"

namespace megagrad {

struct Checkpoint {
  NamedTensors model;                          // names without the "model." prefix
  NamedTensors optimizer;                      // names without the "optim." prefix
  std::map<std::string, std::string> meta;     // free-form strings (step, rng, config, ...)
  // Set by load_checkpoint: empty when every byte was verified, else what is not (format 1).
  std::string unverified;
};

// A decimal number that is the whole of `text` (no sign, no spaces) in [0, 2^64); else
// "[train] <where>: bad <what> '<text>'". For checkpoint metadata, which a person may edit.
uint64_t parse_uint64(const std::string& text, std::string_view what, const std::string& where);

// The bytes of a checkpoint file. Separate from the write, so that the trainer can keep a
// checkpoint in memory until it is known to be good.
std::string serialize_checkpoint(const Checkpoint& ckpt);
void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
// Throws "[load_checkpoint] <path>: ..." for a file that is not a megagrad checkpoint, a checksum
// mismatch, or anything the safetensors reader rejects.
Checkpoint load_checkpoint(const std::string& path);

// load_checkpoint, then "[<op>] <path>: the weights are not finite (<first_non_finite>)" for a
// model with a NaN or Inf weight: eval and generate refuse it instead of printing "loss nan".
Checkpoint load_checkpoint_with_finite_weights(const std::string& path, std::string_view op);

// The first value that is NaN or Inf, as "<name>: NaN at [i, j] (k of n values are not finite)";
// nullopt when every value of every floating-point tensor is finite.
std::optional<std::string> first_non_finite(const NamedTensors& tensors);

}  // namespace megagrad
