// Weights in and out (mega/train/weights.h, core/safetensors.h): F16/BF16 values against their
// definitions, F16/BF16 files, export of a checkpoint (weights only, configuration, checksum),
// loading a weights file into a model, and the errors that name the tensors.
#include <catch2/catch.hpp>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "core/shape.h"
#include "mega/train/checkpoint.h"
#include "mega/train/tasks.h"
#include "mega/train/weights.h"
#include "tests/test_util.h"

using namespace megagrad;
using Catch::Contains;

namespace {

std::string le64(uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += (char)((n >> (8 * i)) & 0xFF);
  return s;
}
std::string le16s(const std::vector<uint16_t>& v) {
  std::string s;
  for (uint16_t x : v) s += (char)(x & 0xFF), s += (char)(x >> 8);
  return s;
}
std::string le32f(const std::vector<float>& v) {
  std::string s;
  for (float f : v) {
    const uint32_t b = std::bit_cast<uint32_t>(f);
    for (int i = 0; i < 4; ++i) s += (char)((b >> (8 * i)) & 0xFF);
  }
  return s;
}
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), (std::streamsize)bytes.size());
  REQUIRE(f.good());
}
std::vector<float> floats_of(const Tensor& t) {
  REQUIRE(t.dtype() == DType::Float32);
  Tensor c = t.contiguous();
  std::vector<float> v((size_t)c.numel());
  std::memcpy(v.data(), c.raw_data(), v.size() * sizeof(float));
  return v;
}
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  Tensor ca = a.detach().cpu().contiguous(), cb = b.detach().cpu().contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), (size_t)ca.numel() * dtype_size(ca.dtype())) == 0;
}

// F16 and BF16 from their definitions (IEEE 754 binary16; bfloat16 = the top half of a binary32),
// computed in double by a formula independent of the code under test.
double f16_reference(uint16_t h) {
  const int sign = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
  double v = e == 0 ? std::ldexp(m / 1024.0, -14) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1 + m / 1024.0, e - 15);
  return sign ? -v : v;
}
double bf16_reference(uint16_t h) {
  const int sign = h >> 15, e = (h >> 7) & 0xFF, m = h & 0x7F;
  double v = e == 0 ? std::ldexp(m / 128.0, -126) : e == 255 ? (m ? NAN : INFINITY) : std::ldexp(1 + m / 128.0, e - 127);
  return sign ? -v : v;
}

// A tiny ListOps run configuration (a 1-layer Mega, or the Transformer).
Json tiny_config(const std::string& type = "mega") {
  Json cfg = Json::parse(R"({"task": "listops",
    "model": {"layers": 1, "embed_dim": 8, "hidden_dim": 16, "ffn_hidden_dim": 16, "z_dim": 4, "n_dim": 2,
              "classifier_dim": 8, "max_positions": 64, "heads": 2},
    "data": {"num_train": 16, "max_len": 30},
    "train": {"steps": 2, "batch_size": 4}})");
  Json m = cfg.at("model");
  m.set("type", type);
  cfg.set("model", m);
  return complete_run_config(cfg);
}

// A checkpoint of a freshly built tiny model (weights perturbed so that they are not the init).
std::string write_checkpoint(const test::TempDir& d, const Json& cfg, NamedTensors* model_out = nullptr) {
  std::unique_ptr<TrainTask> t = make_task(cfg);
  Checkpoint ck;
  ck.model = t->model().state_dict();
  for (auto& [n, w] : ck.model) {
    w = w.detach().cpu().clone().contiguous();
    REQUIRE(w.dtype() == DType::Float32);
    static_cast<float*>(w.raw_data())[0] += 0.25f;
  }
  ck.optimizer.emplace_back("step", Tensor::full({1}, 3.0));
  ck.meta["step"] = "2";
  ck.meta["config"] = cfg.dump();
  ck.meta["data"] = t->data_state().dump();
  ck.meta["rng"] = "1 0";
  const std::string path = d.file("checkpoint.safetensors");
  save_checkpoint(path, ck);
  if (model_out) *model_out = ck.model;
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("weights: F16 and BF16 known values", "[weights]") {
  // Exact values, given as bits.
  CHECK(bf16_to_f32(0x3F80) == 1.0f);
  CHECK(bf16_to_f32(0xBF80) == -1.0f);
  CHECK(bf16_to_f32(0x4049) == 3.140625f);
  CHECK(bf16_to_f32(0x0001) == std::ldexp(1.0f, -133));  // the smallest BF16 subnormal
  CHECK(bf16_to_f32(0x7F7F) == std::ldexp(255.0f, 120));  // the largest finite BF16
  CHECK(f16_to_f32(0x3C00) == 1.0f);
  CHECK(f16_to_f32(0xC000) == -2.0f);
  CHECK(f16_to_f32(0x3555) == 0.333251953125f);
  CHECK(f16_to_f32(0x7BFF) == 65504.0f);                  // the largest finite F16
  CHECK(f16_to_f32(0x0400) == std::ldexp(1.0f, -14));     // the smallest normal
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));     // the smallest subnormal
  CHECK(f16_to_f32(0x03FF) == std::ldexp(1023.0f, -24));  // the largest subnormal
  // Signed zeros keep their sign.
  CHECK(std::bit_cast<uint32_t>(f16_to_f32(0x8000)) == 0x80000000u);
  CHECK(std::bit_cast<uint32_t>(bf16_to_f32(0x8000)) == 0x80000000u);
  CHECK(std::bit_cast<uint32_t>(f16_to_f32(0x0000)) == 0u);
  // Infinities keep their sign; every NaN (quiet or signalling, any payload or sign) stays NaN.
  CHECK(f16_to_f32(0x7C00) == INFINITY);
  CHECK(f16_to_f32(0xFC00) == -INFINITY);
  CHECK(bf16_to_f32(0x7F80) == INFINITY);
  CHECK(bf16_to_f32(0xFF80) == -INFINITY);
  for (uint16_t nan : {0x7E00, 0x7C01, 0xFE00, 0x7FFF}) CHECK(std::isnan(f16_to_f32(nan)));
  for (uint16_t nan : {0x7FC0, 0x7F81, 0xFFC0, 0x7FFF}) CHECK(std::isnan(bf16_to_f32(nan)));
  CHECK(std::bit_cast<uint32_t>(f16_to_f32(0x7E00)) == 0x7FC00000u);  // the quiet bit stays the quiet bit
  CHECK(std::signbit(f16_to_f32(0xFE00)));
}

TEST_CASE("weights: every F16 and BF16 value converts exactly", "[weights]") {
  int64_t bad_f16 = 0, bad_bf16 = 0;
  for (uint32_t b = 0; b <= 0xFFFF; ++b) {
    const double want16 = f16_reference((uint16_t)b), wantb = bf16_reference((uint16_t)b);
    const float got16 = f16_to_f32((uint16_t)b), gotb = bf16_to_f32((uint16_t)b);
    // Equal as numbers, with the same sign (zeros), NaN for NaN.
    auto same = [](double want, float got) {
      return std::isnan(want) ? std::isnan(got) : (double)got == want && std::signbit(got) == std::signbit(want);
    };
    bad_f16 += !same(want16, got16);
    bad_bf16 += !same(wantb, gotb);
  }
  CHECK(bad_f16 == 0);
  CHECK(bad_bf16 == 0);
}

TEST_CASE("weights: F16 and BF16 safetensors tensors are read as float32", "[weights]") {
  test::TempDir d("weights_half");
  // h: F16 1, -2, the smallest subnormal, Inf, NaN; b: BF16 1, 3.140625, the smallest subnormal; f: F32.
  const std::string header =
      R"({"__metadata__":{"k":"v"},"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},)"
      R"("b":{"dtype":"BF16","shape":[3,1],"data_offsets":[10,16]},"f":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})";
  const std::string data = le16s({0x3C00, 0xC000, 0x0001, 0x7C00, 0x7E00}) + le16s({0x3F80, 0x4049, 0x0001}) +
                           le32f({0.5f, -7.0f});
  const std::string bytes = le64(header.size()) + header + data;
  write_bytes(d.file("half.safetensors"), bytes);
  for (int from_file = 0; from_file < 2; ++from_file) {
    INFO((from_file ? "load_safetensors" : "parse_safetensors"));
    SafeTensors st = from_file ? load_safetensors(d.file("half.safetensors")) : parse_safetensors(bytes, "half");
    REQUIRE(st.tensors.size() == 3);
    const Tensor &h = st.at("h"), &b = st.at("b");
    REQUIRE(h.dtype() == DType::Float32);
    REQUIRE(b.dtype() == DType::Float32);
    REQUIRE(b.shape() == Shape{3, 1});
    std::vector<float> hv = floats_of(h), bv = floats_of(b);
    CHECK(hv[0] == 1.0f);
    CHECK(hv[1] == -2.0f);
    CHECK(hv[2] == std::ldexp(1.0f, -24));
    CHECK(hv[3] == INFINITY);
    CHECK(std::isnan(hv[4]));
    CHECK(bv == std::vector<float>{1.0f, 3.140625f, std::ldexp(1.0f, -133)});
    CHECK(floats_of(st.at("f")) == std::vector<float>{0.5f, -7.0f});
    CHECK(st.widened == std::vector<std::pair<std::string, std::string>>{{"h", "F16"}, {"b", "BF16"}});
    CHECK(st.metadata.at("k") == "v");
    // Written back (as F32) and read again: the same float32 bits.
    SafeTensors again = parse_safetensors(serialize_safetensors(st.tensors, st.metadata), "again");
    CHECK(again.widened.empty());
    for (size_t i = 0; i < st.tensors.size(); ++i) CHECK(same_bits(st.tensors[i].second, again.tensors[i].second));
  }
  // The checks still hold: the F16 byte count, and the data bound.
  const std::string short_h = R"({"h":{"dtype":"F16","shape":[5],"data_offsets":[0,8]}})";
  CHECK_THROWS_WITH(parse_safetensors(le64(short_h.size()) + short_h + std::string(8, '\0'), "x"),
                    Contains("tensor \"h\": data_offsets [0, 8] hold 8 bytes, but shape (5) of F16 needs 10"));
  const std::string beyond = R"({"b":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})";
  CHECK_THROWS_WITH(parse_safetensors(le64(beyond.size()) + beyond + std::string(6, '\0'), "x"),
                    Contains("go beyond the data section of 6 bytes"));
  write_bytes(d.file("short.safetensors"), le64(beyond.size()) + beyond + std::string(6, '\0'));
  CHECK_THROWS_WITH(load_safetensors(d.file("short.safetensors")), Contains("go beyond the data section"));
}

TEST_CASE("weights: export writes the model's weights only, with its configuration and a checksum", "[weights]") {
  for (const char* type : {"mega", "transformer"}) {
    INFO(type);
    test::TempDir d("weights_export");
    const Json cfg = tiny_config(type);
    NamedTensors model;
    const std::string ckpt = write_checkpoint(d, cfg, &model);
    const std::string out = d.file("w.safetensors");
    ExportSummary s = export_weights(ckpt, out);
    CHECK(s.tensors == model.size());
    CHECK(s.step == "2");
    CHECK(s.task == "listops");
    CHECK(s.model_type == type);

    WeightsFile w = load_weights_file(out, "test");
    CHECK(w.verified);
    REQUIRE(w.config.has_value());
    CHECK(w.config->dump() == cfg.dump());
    CHECK(w.metadata.at("format") == "megagrad-weights-1");
    CHECK(w.metadata.at("step") == "2");
    CHECK(w.metadata.at("source") == "checkpoint.safetensors");
    CHECK(weights_warning(w).empty());
    // The state_dict names, in order, with the same bits; no optimizer state.
    REQUIRE(w.tensors.size() == model.size());
    for (size_t i = 0; i < model.size(); ++i) {
      CHECK(w.tensors[i].first == model[i].first);
      CHECK(same_bits(w.tensors[i].second, model[i].second));
    }
    // The names are the official ones (Mega) or our documented ones (Transformer).
    SafeTensors raw = load_safetensors(out);
    const std::vector<std::string> expect =
        std::string(type) == "mega"
            ? std::vector<std::string>{"encoder.encoder.embed_tokens.embed.weight",
                                       "encoder.encoder.layers.0.mega_layer.move.alpha",
                                       "encoder.encoder.layers.0.mega_layer.v_proj.weight",
                                       "encoder.encoder.layers.0.nffn.fc2.bias",
                                       "encoder.encoder.final_norm.norm.weight", "classifier.0.0.weight",
                                       "sentence_projection_layer.weight"}
            : std::vector<std::string>{"embed_tokens.weight", "layers.0.qkv.weight", "layers.0.attn_norm.norm.bias",
                                       "layers.0.fc1.weight", "final_norm.norm.weight", "classifier.0.0.bias",
                                       "sentence_projection_layer.weight"};
    for (const std::string& n : expect) CHECK(raw.contains(n));
    for (const auto& [n, t] : raw.tensors) CHECK(n.rfind("optim.", 0) == std::string::npos);
    for (const auto& [n, t] : raw.tensors) CHECK(n.rfind("model.", 0) == std::string::npos);

    // Loaded into a freshly built model: every tensor takes the file's values.
    std::unique_ptr<TrainTask> t = make_task(*w.config);
    CHECK_FALSE(same_bits(t->model().state_dict()[0].second, model[0].second));  // a fresh init differs
    load_weights_into(t->model(), w, "test");
    NamedTensors loaded = t->model().state_dict();
    REQUIRE(loaded.size() == model.size());
    for (size_t i = 0; i < model.size(); ++i) CHECK(same_bits(loaded[i].second, model[i].second));
  }
}

TEST_CASE("weights: a changed byte, a checkpoint, an unknown format and NaN weights are refused", "[weights]") {
  test::TempDir d("weights_refuse");
  const Json cfg = tiny_config();
  const std::string ckpt = write_checkpoint(d, cfg);
  const std::string out = d.file("w.safetensors");
  export_weights(ckpt, out);
  std::string bytes = read_file(out, "test", 1 << 30);
  {  // the last data byte
    std::string flipped = bytes;
    flipped.back() = (char)(flipped.back() ^ 0x01);
    write_bytes(d.file("flipped.safetensors"), flipped);
    CHECK_THROWS_WITH(load_weights_file(d.file("flipped.safetensors"), "eval"),
                      Contains("[eval] " + d.file("flipped.safetensors") + ": checksum mismatch"));
  }
  {  // the configuration in the metadata (same length, so the structure stays valid)
    std::string edited = bytes;
    const size_t at = edited.find("\\\"layers\\\":1");
    REQUIRE(at != std::string::npos);
    edited[at + 11] = '2';
    write_bytes(d.file("edited.safetensors"), edited);
    CHECK_THROWS_WITH(load_weights_file(d.file("edited.safetensors"), "eval"), Contains("checksum mismatch"));
  }
  CHECK_THROWS_WITH(load_weights_file(ckpt, "init-from"),
                    Contains("[init-from] " + ckpt + " is a training checkpoint") && Contains("megagrad export"));
  // A file without a checksum that says it is a megagrad weights file.
  SafeTensors st = load_safetensors(out);
  std::map<std::string, std::string> meta = st.metadata;
  meta.erase("checksum");
  save_safetensors(d.file("nosum.safetensors"), st.tensors, meta);
  CHECK_THROWS_WITH(load_weights_file(d.file("nosum.safetensors"), "eval"), Contains("without its checksum"));
  save_safetensors(d.file("other.safetensors"), st.tensors, {{"format", "pt"}});
  CHECK_THROWS_WITH(load_weights_file(d.file("other.safetensors"), "eval"), Contains("unknown format 'pt'"));
  // A NaN weight is named with its index.
  NamedTensors nan = st.tensors;
  static_cast<float*>(nan[1].second.raw_data())[0] = NAN;
  save_safetensors(d.file("nan.safetensors"), nan);
  CHECK_THROWS_WITH(load_weights_file(d.file("nan.safetensors"), "eval"),
                    Contains("the weights are not finite (" + nan[1].first + ": NaN at ["));
  CHECK_THROWS_WITH(load_weights_file(d.file("missing.safetensors"), "eval"),
                    Contains("[eval] cannot read " + d.file("missing.safetensors")));
}

TEST_CASE("weights: a file from elsewhere loads unverified, and BF16 weights load as float32", "[weights]") {
  test::TempDir d("weights_foreign");
  const Json cfg = tiny_config();
  NamedTensors model;
  const std::string ckpt = write_checkpoint(d, cfg, &model);
  // The tensors alone, no metadata: as tools/convert_fairseq_mega.py writes them.
  save_safetensors(d.file("plain.safetensors"), model);
  WeightsFile w = load_weights_file(d.file("plain.safetensors"), "eval");
  CHECK_FALSE(w.verified);
  CHECK_FALSE(w.config.has_value());
  CHECK_THAT(weights_warning(w), Contains("is unverified"));

  // A BF16 copy, the top 16 bits of every float32 written by hand: loads as those bits.
  std::string header = "{", data;
  std::vector<uint32_t> expect_bits;
  for (const auto& [n, t] : model) {
    std::vector<float> v = floats_of(t);
    std::string shape;
    for (int64_t k : t.shape()) shape += (shape.empty() ? "" : ",") + std::to_string(k);
    header += fmt::format("{}\"{}\":{{\"dtype\":\"BF16\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                          header.size() > 1 ? "," : "", n, shape, data.size(), data.size() + 2 * v.size());
    for (float f : v) {
      const uint32_t b = std::bit_cast<uint32_t>(f);
      data += le16s({(uint16_t)(b >> 16)});
      expect_bits.push_back(b & 0xFFFF0000u);
    }
  }
  header += "}";
  write_bytes(d.file("bf16.safetensors"), le64(header.size()) + header + data);
  WeightsFile wb = load_weights_file(d.file("bf16.safetensors"), "eval");
  CHECK(wb.widened.size() == model.size());
  std::unique_ptr<TrainTask> t = make_task(cfg);
  load_weights_into(t->model(), wb, "eval");
  std::vector<uint32_t> got_bits;
  for (const auto& [n, p] : t->model().state_dict())
    for (float f : floats_of(p.detach().cpu())) got_bits.push_back(std::bit_cast<uint32_t>(f));
  CHECK(got_bits == expect_bits);
  size_t truncated = 0;  // the test's own check: BF16 lost bits of most values
  for (const auto& [n, p] : model)
    for (float f : floats_of(p)) truncated += (std::bit_cast<uint32_t>(f) & 0xFFFF) != 0;
  CHECK(truncated > 0);
}

TEST_CASE("weights: missing, unexpected and mis-shaped tensors are all named", "[weights]") {
  test::TempDir d("weights_mismatch");
  std::unique_ptr<TrainTask> t = make_task(tiny_config());
  const NamedTensors model = t->model().state_dict();
  REQUIRE(model.size() > 6);
  NamedTensors file = model;
  // Drop two, add one, reshape one, make one an integer tensor.
  const std::string gone1 = file[2].first, gone2 = file[5].first;
  file.erase(file.begin() + 5);
  file.erase(file.begin() + 2);
  file.emplace_back("encoder.encoder.layers.7.mega_layer.v_proj.weight", Tensor::zeros({3, 4}));
  const std::string reshaped = file[0].first;
  const Shape old_shape = file[0].second.shape();
  file[0].second = Tensor::zeros({old_shape[0] + 1, old_shape[1]});
  const std::string int_name = file[1].first;
  file[1].second = Tensor::zeros(file[1].second.shape(), DType::Int64);
  const std::string msg = error_of([&] { check_weights_match(file, model, "init-from", "w.safetensors"); });
  INFO(msg);
  CHECK_THAT(msg, Contains("[init-from] w.safetensors: the tensors do not match the model"));
  CHECK_THAT(msg, Contains("missing tensors (2): " + gone1 + ", " + gone2));
  CHECK_THAT(msg, Contains("unexpected tensors (1): encoder.encoder.layers.7.mega_layer.v_proj.weight"));
  CHECK_THAT(msg, Contains(fmt::format("shape mismatch (1): {} ({},{}) in file, {} in model", reshaped,
                                       old_shape[0] + 1, old_shape[1], shape_str(old_shape))));
  CHECK_THAT(msg, Contains("dtype mismatch (1): " + int_name + " int64 in file, float32 in model"));
  // Matching tensors pass.
  CHECK_NOTHROW(check_weights_match(model, model, "init-from", "w.safetensors"));

  // Another model: a 2-layer one misses every tensor of layer 1, and the lists are cut.
  Json two = tiny_config();
  Json m = two.at("model");
  m.set("layers", 2);
  two.set("model", m);
  std::unique_ptr<TrainTask> t2 = make_task(two);
  const std::string msg2 = error_of([&] { check_weights_match(model, t2->model().state_dict(), "eval", "w"); });
  INFO(msg2);
  size_t layer1 = 0;
  for (const auto& [n, x] : t2->model().state_dict()) layer1 += n.starts_with("encoder.encoder.layers.1.");
  REQUIRE(layer1 > 12);
  CHECK_THAT(msg2, Contains(fmt::format("missing tensors ({}): encoder.encoder.layers.1.", layer1)));
  CHECK_THAT(msg2, Contains(fmt::format("... and {} more", layer1 - 12)));
  CHECK_THAT(msg2, !Contains("unexpected"));
}

TEST_CASE("weights: export refuses what is not a checkpoint", "[weights]") {
  test::TempDir d("weights_export_refuse");
  const std::string ckpt = write_checkpoint(d, tiny_config());
  const std::string w = d.file("w.safetensors");
  export_weights(ckpt, w);
  CHECK_THROWS_WITH(export_weights(w, d.file("again.safetensors")),
                    Contains("[export] " + w + " is already a weights file"));
  save_safetensors(d.file("plain.safetensors"), {{"x", Tensor::zeros({2})}});
  CHECK_THROWS_WITH(export_weights(d.file("plain.safetensors"), d.file("o.safetensors")),
                    Contains("[export] " + d.file("plain.safetensors") + " is not a megagrad checkpoint"));
  write_bytes(d.file("text.txt"), "hello, not a safetensors file at all");
  CHECK_THROWS_WITH(export_weights(d.file("text.txt"), d.file("o.safetensors")),
                    Contains("[export] " + d.file("text.txt")));
  CHECK_THROWS_WITH(export_weights(d.file("nope.safetensors"), d.file("o.safetensors")),
                    Contains("[export] cannot read " + d.file("nope.safetensors")));
  CHECK_THROWS_WITH(export_weights(ckpt, ckpt), Contains("is the checkpoint itself"));
  CHECK_FALSE(std::filesystem::exists(d.file("o.safetensors")));
  CHECK_FALSE(std::filesystem::exists(d.file("again.safetensors")));
}

TEST_CASE("weights: model_config_differences names the keys", "[weights]") {
  const Json a = tiny_config();
  CHECK(model_config_differences(a, a).empty());
  Json b = a;
  Json m = b.at("model");
  m.set("attention_activation", "laplace");
  b.set("model", m);
  CHECK(model_config_differences(a, b) ==
        std::vector<std::string>{"model.attention_activation: \"softmax\" -> \"laplace\""});
}
