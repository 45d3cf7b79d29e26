// A Mega layer's configuration from JSON, in the format of the reference cases' config.json
// (see tests/data/ref/README.md). Every key is checked: an unknown key or value is an error.
#pragma once
#include <optional>
#include <string>
#include <vector>
#include "core/json.h"
#include "mega/layers.h"

namespace megagrad {

struct LayerCaseConfig {
  MegaLayerConfig layer;
  int64_t seq_len = 0, batch = 0;          // L, B of the case's input
  bool with_padding = false;
  std::vector<int64_t> pad_lengths;        // right-pad count per batch element (may be empty)
  double param_noise = 0.0;                // provenance: noise added to the official init
  // Decoder layers with cross-attention (the official MegaDecoderLayer with its
  // GatedCrossAttention; cases xa_*, xb_*, xc_*): the source the cross-attention reads.
  bool cross_attention = false;            // key "cross_attention"
  int64_t src_len = 0;                     // S, key "src_len"
  std::vector<int64_t> src_pad_lengths;    // right-pad count of the source per batch element (may be empty)
};

// Keys starting with '_' are provenance and are skipped. `what` names the source in errors.
// Errors name the key: "[config] <what>: <key>: expected an integer, got string "5"". With a
// `path` (the object's place in a larger configuration, e.g. "model"), keys are named by their
// path, "model.embed_dim", and `what` may be "" (no source to name).
LayerCaseConfig parse_layer_config(const Json& json, std::string_view what);
LayerCaseConfig parse_layer_config(const Json& json, std::string_view what, std::string_view path);
LayerCaseConfig load_layer_config(const std::string& path);

// The layer keys of a MegaLayerConfig (every one, truncation null when unset), which
// parse_layer_config reads back to the same configuration.
Json layer_config_to_json(const MegaLayerConfig& c);

}  // namespace megagrad
