#include "mega/config.h"
#include <set>
#include "core/atomic_file.h"

namespace megagrad {

namespace {
template <typename T>
T pick(const std::string& name, const std::string& value, std::initializer_list<std::pair<const char*, T>> choices) {
  std::string names;
  for (auto& [choice, v] : choices) {
    if (value == choice) return v;
    names += names.empty() ? choice : std::string(", ") + choice;
  }
  fail("config", "{}: must be one of {}, got \"{}\"", name, names, value);
}
}  // namespace

LayerCaseConfig parse_layer_config(const Json& j, std::string_view what) { return parse_layer_config(j, what, ""); }

LayerCaseConfig parse_layer_config(const Json& j, std::string_view what, std::string_view path) {
  // "<what>: <path>" (either part may be empty): the prefix of every message.
  const std::string where = what.empty() ? std::string(path.empty() ? "layer config" : path)
                            : path.empty() ? std::string(what)
                                           : fmt::format("{}: {}", what, path);
  // The name of a key in messages: "<what>: <key>" or "<what>: <path>.<key>" or "<path>.<key>".
  auto name_of = [&](const std::string& key) {
    std::string p = json_path(path, key);
    return what.empty() ? p : fmt::format("{}: {}", what, p);
  };
  MG_CHECK(j.is_object(), "config", "{}: expected a JSON object, got {}", where, j.describe());
  LayerCaseConfig c;
  MegaLayerConfig& L = c.layer;
  std::set<std::string> seen;
  for (const auto& item : j.items()) {
    // Not a structured binding: clang before 16 cannot capture one in the lambdas below.
    const std::string& key = item.first;
    const Json& v = item.second;
    if (!key.empty() && key[0] == '_') continue;  // provenance
    const std::string name = name_of(key);
    auto integer = [&] {
      MG_CHECK(v.is_integer(), "config", "{}: expected an integer, got {}", name, v.describe());
      return v.get_int();
    };
    auto boolean = [&] {
      MG_CHECK(v.is_bool(), "config", "{}: expected true or false, got {}", name, v.describe());
      return v.get_bool();
    };
    auto number = [&] {
      MG_CHECK(v.is_number(), "config", "{}: expected a number, got {}", name, v.describe());
      return v.get_double();
    };
    auto string = [&]() -> std::string {
      MG_CHECK(v.is_string(), "config", "{}: expected a string, got {}", name, v.describe());
      return v.get_string();
    };
    if (key == "embed_dim") L.embed_dim = integer();
    else if (key == "hidden_dim") L.hidden_dim = integer();
    else if (key == "ffn_hidden_dim") L.ffn_hidden_dim = integer();
    else if (key == "z_dim") L.z_dim = integer();
    else if (key == "n_dim") L.n_dim = integer();
    else if (key == "chunk_size") L.chunk_size = integer();
    else if (key == "truncation") L.truncation = v.is_null() ? std::nullopt : std::optional<int64_t>(integer());
    else if (key == "rel_pos_bias")
      L.rel_pos_bias = pick(name, string(), {std::pair{"simple", RelPosBias::Kind::Simple},
                                                  std::pair{"rotary", RelPosBias::Kind::Rotary}});
    else if (key == "max_positions") L.max_positions = integer();
    else if (key == "attention_activation")
      L.attention_activation = pick(name, string(), {std::pair{"softmax", AttentionActivation::Softmax},
                                                          std::pair{"laplace", AttentionActivation::Laplace},
                                                          std::pair{"relu2", AttentionActivation::Relu2}});
    else if (key == "norm_type")
      L.norm_type = pick(name, string(), {std::pair{"layernorm", NormType::LayerNorm},
                                               std::pair{"scalenorm", NormType::ScaleNorm},
                                               std::pair{"rmsnorm", NormType::RMSNorm},
                                               std::pair{"batchnorm", NormType::BatchNorm}});
    else if (key == "norm_affine") L.norm_affine = boolean();
    else if (key == "prenorm") L.prenorm = boolean();
    else if (key == "bidirectional") L.bidirectional = boolean();
    else if (key == "causal") L.causal = boolean();
    else if (key == "dropout") L.dropout = number();
    else if (key == "attention_dropout") L.attention_dropout = number();
    else if (key == "hidden_dropout") L.hidden_dropout = number();
    else if (key == "activation") pick(name, string(), {std::pair{"silu", 0}});
    else if (key == "seq_len") c.seq_len = integer();
    else if (key == "batch") c.batch = integer();
    else if (key == "with_padding") c.with_padding = boolean();
    else if (key == "pad_lengths") {
      if (!v.is_null()) {
        MG_CHECK(v.is_array(), "config", "{}: expected null or an array, got {}", name, v.describe());
        for (const Json& e : v.elements()) {
          MG_CHECK(e.is_integer() && e.get_int() >= 0, "config", "{}: expected integers >= 0, holds {}", name,
                   e.describe());
          c.pad_lengths.push_back(e.get_int());
        }
      }
    } else if (key == "param_noise") c.param_noise = number();
    else if (key == "cross_attention") c.cross_attention = boolean();
    else if (key == "src_len") c.src_len = integer();
    else if (key == "src_pad_lengths") {
      if (!v.is_null()) {
        MG_CHECK(v.is_array(), "config", "{}: expected null or an array, got {}", name, v.describe());
        for (const Json& e : v.elements()) {
          MG_CHECK(e.is_integer() && e.get_int() >= 0, "config", "{}: expected integers >= 0, holds {}", name,
                   e.describe());
          c.src_pad_lengths.push_back(e.get_int());
        }
      }
    }
    else fail("config", "{}: unknown key \"{}\"", where, key);
    seen.insert(key);
  }
  for (const char* required : {"embed_dim", "hidden_dim", "z_dim", "n_dim"})
    MG_CHECK(seen.count(required), "config", "{}: missing key \"{}\"", where, required);
  try {
    L.validate();
  } catch (const Error& e) {
    fail("config", "{}: {}", where, e.what());
  }
  MG_CHECK(c.seq_len >= 0 && c.batch >= 0, "config", "{}: seq_len and batch must be >= 0", where);
  MG_CHECK(c.src_len >= 0, "config", "{}: src_len must be >= 0, got {}", where, c.src_len);
  MG_CHECK(c.cross_attention || (!seen.count("src_len") && !seen.count("src_pad_lengths")), "config",
           "{}: src_len and src_pad_lengths describe the source of a cross-attention: they need \"cross_attention\": true",
           where);
  MG_CHECK(!c.cross_attention || !L.bidirectional, "config",
           "{}: cross_attention: a decoder layer's, so it needs \"bidirectional\": false", where);
  return c;
}

LayerCaseConfig load_layer_config(const std::string& path) {
  std::string text = read_file(path, "config", 16 << 20);
  return parse_layer_config(Json::parse(text, path), path);
}

Json layer_config_to_json(const MegaLayerConfig& c) {
  Json j = Json::object();
  j.set("embed_dim", c.embed_dim), j.set("hidden_dim", c.hidden_dim), j.set("ffn_hidden_dim", c.ffn_hidden_dim);
  j.set("z_dim", c.z_dim), j.set("n_dim", c.n_dim), j.set("chunk_size", c.chunk_size);
  j.set("truncation", c.truncation ? Json(*c.truncation) : Json());
  j.set("rel_pos_bias", c.rel_pos_bias == RelPosBias::Kind::Simple ? "simple" : "rotary");
  j.set("max_positions", c.max_positions);
  j.set("attention_activation", attention_activation_name(c.attention_activation));
  j.set("norm_type", c.norm_type == NormType::LayerNorm    ? "layernorm"
                     : c.norm_type == NormType::ScaleNorm ? "scalenorm"
                     : c.norm_type == NormType::RMSNorm   ? "rmsnorm"
                                                          : "batchnorm");
  j.set("norm_affine", c.norm_affine), j.set("prenorm", c.prenorm), j.set("bidirectional", c.bidirectional);
  j.set("causal", c.causal), j.set("dropout", c.dropout), j.set("attention_dropout", c.attention_dropout);
  j.set("hidden_dropout", c.hidden_dropout);
  return j;
}

}  // namespace megagrad
