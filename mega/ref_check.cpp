#include "mega/ref_check.h"
#include <cmath>
#include <set>
#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "mega/config.h"
#include "mega/decoder_layer.h"

namespace megagrad {

bool RefCheckResult::passed() const {
  for (const RefCheckRow& r : rows)
    if (!(r.error <= tolerance) || !r.problem.empty()) return false;  // NaN fails
  return !rows.empty();
}

namespace {
constexpr std::string_view kOp = "ref-check";

// "[3, 0, 1]": the flat index i in a tensor of this shape.
std::string index_str(int64_t i, const Shape& shape) {
  std::string out = "[";
  std::vector<int64_t> idx = shape.empty() ? std::vector<int64_t>{} : unravel_index(i, shape);
  for (size_t k = 0; k < idx.size(); ++k) out += fmt::format("{}{}", k ? ", " : "", idx[k]);
  return out + "]";
}

// max |ours - ref| / max |ref| over tensors of the same shape (ours already in the reference's
// layout). The shapes are compared first; a non-finite value on either side makes the error
// infinite and is named (std::max would skip a NaN and pass the check).
RefCheckRow compare(const std::string& name, const Tensor& ours, const Tensor& ref, const std::string& file) {
  MG_CHECK(ours.shape() == ref.shape(), kOp, "{}: {} is {} in the reference but {} here", file, name,
           shape_str(ref.shape()), shape_str(ours.shape()));
  std::vector<double> a = ours.to_vector(), b = ref.to_vector();
  MG_CHECK(a.size() == b.size(), kOp, "{}: {} has {} values in the reference but {} here", file, name, b.size(),
           a.size());
  RefCheckRow row{name, 0, "", ""};
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(b[i]) || !std::isfinite(a[i])) {
      const bool ref_side = !std::isfinite(b[i]);
      row.problem = fmt::format("{} {}{} is {}", ref_side ? "the reference" : "our", name,
                                index_str((int64_t)i, ref.shape()), ref_side ? b[i] : a[i]);
      row.error = INFINITY;
      return row;
    }
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  row.error = scale > 0 ? diff / scale : diff;
  return row;
}

// A gradient that is exactly zero in exact arithmetic, so that both sides hold only rounding
// noise and max |ref| is no scale to measure against. The one such tensor of the cases is the
// cross-attention's k_proj bias under softmax: adding a vector c to every key adds q_i . c to
// every score of row i, which the softmax ignores, so d loss / d bias = 0 (the official float64
// file holds values of ~1e-15 beside a weight gradient of ~13; its float32 file ~7e-7). The row is
// measured against `scale_ref` (max |ref| of the gradient of the same Linear's weight) instead,
// and only after checking that the reference is indeed noise at that scale (<= 1e-6 of it): a
// reference that is not zero is compared as every other tensor.
RefCheckRow compare_structural_zero(const std::string& name, const Tensor& ours, const Tensor& ref,
                                    const Tensor& scale_ref, const std::string& file, std::string_view why) {
  RefCheckRow row = compare(name, ours, ref, file);
  if (!row.problem.empty()) return row;
  double ref_max = 0, scale = 0, diff = 0;
  std::vector<double> a = ours.to_vector(), b = ref.to_vector(), w = scale_ref.to_vector();
  for (double x : b) ref_max = std::max(ref_max, std::abs(x));
  for (double x : w) scale = std::isfinite(x) ? std::max(scale, std::abs(x)) : INFINITY;
  if (!(scale < INFINITY) || scale == 0 || ref_max > 1e-6 * scale) return row;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
  row.error = diff / scale;
  row.note = fmt::format("{} is zero in exact arithmetic ({}): max |ref| {:.1e} is rounding noise, so the error is "
                         "relative to max |ref| {:.2e} of the weight's gradient", name, why, ref_max, scale);
  return row;
}

bool is_data_name(const std::string& n) {
  return n == "x" || n == "G" || n == "out" || n == "loss" || n == "padding_mask" || n == "attn_mask" ||
         n == "mem" || n == "src_padding_mask" || n.rfind("grad.", 0) == 0 || n.rfind("inter.", 0) == 0;
}

bool is_model_data_name(const std::string& n) {
  return n == "tokens" || n == "lengths" || n == "G" || n == "logits" || n == "loss" || n.rfind("grad.", 0) == 0 ||
         n.rfind("inter.", 0) == 0;
}

// Every tensor of a case must have the case's dtype, and its inputs (weights, x, G, tokens, the
// masks) must be finite: a non-finite input makes the case meaningless. The additive attn_mask
// holds -inf where attention is masked: only NaN and +inf are wrong there.
void check_inputs(const SafeTensors& st, DType dtype, const std::string& file) {
  for (auto& [name, t] : st.tensors) {
    MG_CHECK(t.dtype() == dtype, kOp, "{}: tensor {} is {}, expected {}", file, name, t.desc(), dtype_name(dtype));
    if (name.rfind("grad.", 0) == 0 || name == "out" || name == "logits" || name == "loss" ||
        name.rfind("inter.", 0) == 0)
      continue;
    std::vector<double> v = t.to_vector();
    for (size_t i = 0; i < v.size(); ++i)
      MG_CHECK(std::isfinite(v[i]) || (name == "attn_mask" && v[i] == -INFINITY), kOp,
               "{}: the reference input {}{} is {}", file, name, index_str((int64_t)i, t.shape()), v[i]);
  }
}

RefCheckResult ref_check_layer(const std::string& dir, DType dtype);
RefCheckResult ref_check_model(const std::string& dir, const Json& config, DType dtype);
}  // namespace

RefCheckResult ref_check(const std::string& dir, DType dtype) {
  const std::string path = dir + "/config.json";
  Json config = Json::parse(read_file(path, "config", 16 << 20), path);
  const Json* kind = config.is_object() ? config.find("kind") : nullptr;
  if (kind == nullptr) return ref_check_layer(dir, dtype);
  MG_CHECK(kind->is_string() && kind->get_string() == "lra_classifier", "config",
           "{}: kind: the cases known are layers (no \"kind\") and \"lra_classifier\", got {}", path,
           kind->describe());
  return ref_check_model(dir, config, dtype);
}

namespace {
RefCheckResult ref_check_layer(const std::string& dir, DType dtype) {
  constexpr std::string_view op = kOp;
  LayerCaseConfig cfg = load_layer_config(dir + "/config.json");
  std::string file = dir + (dtype == DType::Float64 ? "/ref_f64.safetensors" : "/ref_f32.safetensors");
  SafeTensors st = load_safetensors(file);

  // A decoder case with cross-attention read as a plain layer would fail on its first cross_attn.*
  // weight: name what is missing instead.
  for (const char* name : {"mem", "src_padding_mask", "grad.mem"})
    MG_CHECK(cfg.cross_attention || !st.contains(name), op, "{}: {} is there but config.json has no "
             "\"cross_attention\": true", file, name);
  // An encoder or decoder layer, or (cross_attention) the official MegaDecoderLayer with its
  // GatedCrossAttention, whose bias spans the same max_positions (the cases' one key for both).
  std::shared_ptr<Module> module;
  std::shared_ptr<MegaLayer> plain;
  std::shared_ptr<MegaDecoderLayer> decoder;
  if (cfg.cross_attention) module = decoder = std::make_shared<MegaDecoderLayer>(cfg.layer, 0);
  else module = plain = std::make_shared<MegaLayer>(cfg.layer, 0);
  Module& layer = *module;
  layer.to(dtype);
  check_inputs(st, dtype, file);
  NamedTensors weights;
  for (auto& [name, t] : st.tensors)
    if (!is_data_name(name)) weights.emplace_back(name, t);
  layer.load_state_dict(weights, /*strict=*/true);

  const Tensor& x_ref = st.at("x");  // (L, B, D), time-major
  const int64_t L = cfg.seq_len, B = cfg.batch, D = cfg.layer.embed_dim;
  MG_CHECK(x_ref.shape() == (Shape{L, B, D}), op, "{}: x is {}, config says ({},{},{})", file, x_ref.desc(), L, B, D);
  Tensor x = x_ref.permute({1, 0, 2}).contiguous();
  x.requires_grad_();
  Tensor mask = st.contains("padding_mask") ? st.at("padding_mask") : Tensor();
  MG_CHECK(mask.defined() == cfg.with_padding, op, "{}: with_padding is {} but padding_mask is {}", file,
           cfg.with_padding, mask.defined() ? "present" : "absent");

  if (mask.defined())
    MG_CHECK(mask.shape() == (Shape{B, L}), op, "{}: padding_mask is {}, config says ({},{})", file,
             shape_str(mask.shape()), B, L);
  // G must have out's shape: a broadcast would silently weight another loss.
  MG_CHECK(st.at("G").shape() == (Shape{L, B, D}), op, "{}: G is {} in the reference but ({}, {}, {}) here", file,
           shape_str(st.at("G").shape()), L, B, D);

  // The cross-attention's source: mem (S, B, D), time-major, and its key padding mask (B, S).
  Tensor mem, src_mask;
  if (cfg.cross_attention) {
    const int64_t S = cfg.src_len;
    MG_CHECK(st.contains("mem"), op, "{}: cross_attention is true but there is no mem (the encoder output)", file);
    MG_CHECK(st.at("mem").shape() == (Shape{S, B, D}), op, "{}: mem is {}, config says (src_len,batch,embed_dim) = "
             "({},{},{})", file, st.at("mem").desc(), S, B, D);
    mem = st.at("mem").permute({1, 0, 2}).contiguous();  // (B, S, D)
    mem.requires_grad_();
    src_mask = st.contains("src_padding_mask") ? st.at("src_padding_mask") : Tensor();
    MG_CHECK(src_mask.defined() == !cfg.src_pad_lengths.empty(), op, "{}: src_pad_lengths is {} but "
             "src_padding_mask is {}", file, cfg.src_pad_lengths.empty() ? "null" : "given",
             src_mask.defined() ? "present" : "absent");
    if (src_mask.defined()) {
      MG_CHECK(src_mask.shape() == (Shape{B, S}), op, "{}: src_padding_mask is {}, config says ({},{})", file,
               shape_str(src_mask.shape()), B, S);
      MG_CHECK((int64_t)cfg.src_pad_lengths.size() == B, op, "{}: src_pad_lengths has {} values, the batch {}", file,
               cfg.src_pad_lengths.size(), B);
    }
  }

  Tensor out = decoder ? decoder->forward(x, mem, mask, src_mask) : plain->forward(x, mask);  // (B, L, D)
  Tensor G = st.at("G").permute({1, 0, 2});                  // (B, L, D) view
  Tensor loss = sum(mul(out, G));
  loss.backward();

  RefCheckResult res{dtype, dtype == DType::Float64 ? 1e-8 : 1e-4, {}};
  res.rows.push_back(compare("out", out.permute({1, 0, 2}), st.at("out"), file));
  res.rows.push_back(compare("loss", loss.reshape({1}), st.at("loss"), file));
  res.rows.push_back(compare("grad.x", x.grad().permute({1, 0, 2}), st.at("grad.x"), file));
  std::set<std::string> ours{"grad.x"};
  if (decoder) {
    MG_CHECK(st.contains("grad.mem"), op, "{}: no reference gradient grad.mem", file);
    MG_CHECK(mem.grad().defined(), op, "mem received no gradient");
    res.rows.push_back(compare("grad.mem", mem.grad().permute({1, 0, 2}), st.at("grad.mem"), file));
    ours.insert("grad.mem");
  }
  for (auto& [name, p] : layer.named_parameters()) {
    std::string gname = "grad." + name;
    MG_CHECK(st.contains(gname), op, "{}: no reference gradient {}", file, gname);
    MG_CHECK(p.grad().defined(), op, "parameter {} received no gradient", name);
    if (decoder && cfg.layer.attention_activation == AttentionActivation::Softmax &&
        gname == "grad.cross_attn.k_proj.bias" && st.contains("grad.cross_attn.k_proj.weight"))
      res.rows.push_back(compare_structural_zero(gname, p.grad(), st.at(gname), st.at("grad.cross_attn.k_proj.weight"),
                                                 file, "softmax ignores a shift of every key by the same vector"));
    else
      res.rows.push_back(compare(gname, p.grad(), st.at(gname), file));
    ours.insert(gname);
  }
  for (auto& [name, t] : st.tensors)  // a reference gradient nothing here is compared with
    MG_CHECK(name.rfind("grad.", 0) != 0 || ours.count(name), op, "{}: the reference gradient {} is of no parameter "
             "of the layer", file, name);
  return res;
}

// The official LRA classifier (shared/ref/README.md, 'Whole models'): tokens (B, L) as floats,
// lengths (B), the weights under their state_dict names, logits (B, classes) and every gradient
// of loss = sum(logits * G).
RefCheckResult ref_check_model(const std::string& dir, const Json& config, DType dtype) {
  constexpr std::string_view op = kOp;
  LraCaseConfig cfg = parse_lra_case_config(config, dir + "/config.json");
  const std::string file = dir + (dtype == DType::Float64 ? "/ref_f64.safetensors" : "/ref_f32.safetensors");
  SafeTensors st = load_safetensors(file);
  check_inputs(st, dtype, file);
  // The case format has no key for it: the official LRAModel's projection has no bias, these
  // cases' one has. The weights say which (a strict load then refuses any other mismatch).
  cfg.model.projection_bias = st.contains("sentence_projection_layer.bias");
  MegaClassifier model(cfg.model, 0);
  model.to(dtype);
  NamedTensors weights;
  for (auto& [name, t] : st.tensors)
    if (!is_model_data_name(name)) weights.emplace_back(name, t);
  model.load_state_dict(weights, /*strict=*/true);

  const int64_t B = cfg.batch, L = cfg.seq_len, V = cfg.model.vocab_size, pad = cfg.model.padding_idx;
  const Tensor& tok_ref = st.at("tokens");
  MG_CHECK(tok_ref.shape() == (Shape{B, L}), op, "{}: tokens is {}, config says ({},{})", file, tok_ref.desc(), B, L);
  std::vector<double> tv = tok_ref.to_vector();
  std::vector<int64_t> ids(tv.size());
  for (size_t i = 0; i < tv.size(); ++i) {
    MG_CHECK(tv[i] == std::floor(tv[i]) && tv[i] >= 0 && tv[i] < (double)V, op,
             "{}: tokens{} is {}: not an id of the vocabulary of {}", file, index_str((int64_t)i, tok_ref.shape()),
             tv[i], V);
    ids[i] = (int64_t)tv[i];
  }
  // The official mean divides by `lengths`, ours by the number of unpadded positions: the same
  // only when lengths[b] counts the ids before the right padding of row b. Checked, not assumed.
  const Tensor& len_ref = st.at("lengths");
  MG_CHECK(len_ref.shape() == (Shape{B}), op, "{}: lengths is {}, config says ({})", file, len_ref.desc(), B);
  std::vector<double> lv = len_ref.to_vector();
  MG_CHECK(cfg.lengths.empty() || cfg.lengths.size() == lv.size(), op, "{}: config.json's lengths has {} values, the batch {}",
           file, cfg.lengths.size(), lv.size());
  for (int64_t b = 0; b < B; ++b) {
    int64_t n = 0;
    while (n < L && ids[(size_t)(b * L + n)] != pad) ++n;
    for (int64_t i = n; i < L; ++i)
      MG_CHECK(ids[(size_t)(b * L + i)] == pad, op, "{}: tokens[{}] has id {} at {} after the padding at {}: "
               "only right padding is supported", file, b, ids[(size_t)(b * L + i)], i, n);
    MG_CHECK(lv[(size_t)b] == (double)n, op, "{}: lengths[{}] is {} but row {} holds {} ids before its padding (id {})",
             file, b, lv[(size_t)b], b, n, pad);
    MG_CHECK(cfg.lengths.empty() || cfg.lengths[(size_t)b] == n, op, "{}: config.json's lengths[{}] is {}, the tokens' {}",
             file, b, cfg.lengths.empty() ? 0 : cfg.lengths[(size_t)b], n);
    MG_CHECK(n >= 1, op, "{}: row {} is all padding: the official mean divides by 0", file, b);
  }
  const int64_t C = cfg.model.num_classes;
  MG_CHECK(st.at("G").shape() == (Shape{B, C}), op, "{}: G is {} in the reference but ({}, {}) here", file,
           shape_str(st.at("G").shape()), B, C);

  Tensor logits = model.forward(Tensor::from_vector(ids, {B, L}));  // (B, C)
  Tensor loss = sum(mul(logits, st.at("G")));
  loss.backward();

  RefCheckResult res{dtype, dtype == DType::Float64 ? 1e-8 : 1e-4, {}, "lra_classifier"};
  res.rows.push_back(compare("logits", logits, st.at("logits"), file));
  res.rows.push_back(compare("loss", loss.reshape({1}), st.at("loss"), file));
  std::set<std::string> ours;
  for (auto& [name, p] : model.named_parameters()) {
    const std::string gname = "grad." + name;
    ours.insert(gname);
    MG_CHECK(st.contains(gname), op, "{}: no reference gradient {}", file, gname);
    MG_CHECK(p.grad().defined(), op, "parameter {} received no gradient", name);
    res.rows.push_back(compare(gname, p.grad(), st.at(gname), file));
  }
  for (auto& [name, t] : st.tensors)  // a reference gradient nothing here is compared with
    MG_CHECK(name.rfind("grad.", 0) != 0 || ours.count(name), op, "{}: the reference gradient {} is of no parameter "
             "of the model", file, name);
  return res;
}
}  // namespace

LraCaseConfig parse_lra_case_config(const Json& j, std::string_view what) {
  MG_CHECK(j.is_object(), "config", "{}: expected a JSON object, got {}", what, j.describe());
  LraCaseConfig c;
  ClassifierConfig& m = c.model;
  Json layer = Json::object();  // the layer keys, for parse_layer_config
  std::set<std::string> seen;
  for (const auto& item : j.items()) {
    const std::string& key = item.first;
    const Json& v = item.second;
    if (!key.empty() && key[0] == '_') continue;  // provenance
    auto integer = [&](int64_t lo) {
      MG_CHECK(v.is_integer(), "config", "{}: {}: expected an integer, got {}", what, key, v.describe());
      MG_CHECK(v.get_int() >= lo, "config", "{}: {}: must be >= {}, got {}", what, key, lo, v.get_int());
      return v.get_int();
    };
    auto string_is = [&](std::string_view expected, std::string_view why) {
      MG_CHECK(v.is_string() && v.get_string() == expected, "config", "{}: {}: only \"{}\" is supported ({}), got {}",
               what, key, expected, why, v.describe());
    };
    if (key == "kind") string_is("lra_classifier", "a whole LRA classifier");
    else if (key == "vocab_size") m.vocab_size = integer(1);
    else if (key == "padding_idx") m.padding_idx = integer(0);
    else if (key == "layers") m.num_layers = integer(1);
    else if (key == "sen_rep_type") string_is("mp", "the mean over the unpadded positions");
    else if (key == "classifier_layers") m.classifier_layers = integer(1);
    else if (key == "classifier_out_dim") m.classifier_dim = integer(1);
    else if (key == "classifier_activation") string_is("gelu", "the head's activation");
    else if (key == "num_classes") m.num_classes = integer(2);
    else if (key == "seq_len") c.seq_len = integer(1);
    else if (key == "batch") c.batch = integer(1);
    else if (key == "lengths") {
      if (!v.is_null()) {
        MG_CHECK(v.is_array(), "config", "{}: lengths: expected null or an array, got {}", what, v.describe());
        for (const Json& e : v.elements()) {
          MG_CHECK(e.is_integer() && e.get_int() >= 1, "config", "{}: lengths: expected integers >= 1, holds {}", what,
                   e.describe());
          c.lengths.push_back(e.get_int());
        }
      }
    } else if (key == "param_noise") {
      MG_CHECK(v.is_number(), "config", "{}: param_noise: expected a number, got {}", what, v.describe());
      c.param_noise = v.get_double();
    } else if (key == "embed_dim" || key == "hidden_dim" || key == "ffn_hidden_dim" || key == "z_dim" ||
               key == "n_dim" || key == "chunk_size" || key == "truncation" || key == "rel_pos_bias" ||
               key == "max_positions" || key == "attention_activation" || key == "norm_type" ||
               key == "norm_affine" || key == "prenorm" || key == "activation") {
      layer.set(key, v);
    } else {
      fail("config", "{}: unknown key \"{}\"", what, key);
    }
    seen.insert(key);
  }
  for (const char* required : {"kind", "vocab_size", "padding_idx", "layers", "classifier_layers", "classifier_out_dim",
                               "num_classes", "seq_len", "batch"})
    MG_CHECK(seen.count(required), "config", "{}: missing key \"{}\"", what, required);
  layer.set("bidirectional", true), layer.set("causal", false);  // the encoder's layers
  m.layer = parse_layer_config(layer, what).layer;
  MG_CHECK(m.padding_idx < m.vocab_size, "config", "{}: padding_idx {} is not an id of the vocabulary of {}", what,
           m.padding_idx, m.vocab_size);
  MG_CHECK(c.lengths.empty() || (int64_t)c.lengths.size() == c.batch, "config", "{}: lengths has {} values, batch is {}",
           what, c.lengths.size(), c.batch);
  return c;
}

}  // namespace megagrad
