// The fused cross-attention (mega/cross_attention/) and the GatedCrossAttention module:
// float64 gradchecks of the op (the registered cases), agreement with the composed reference
// (output and every gradient, float64 and float32, L < S and L > S, padding, dropout, several
// blocks), only the wanted gradients, error messages, the official module's output on the
// reference cases, and the composed ops on a CUDA device. The whole decoder layer against the
// official code: tests/test_ref_cases.cpp.
#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <string>
#include <fmt/ranges.h>
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/registry.h"
#include "core/atomic_file.h"
#include "core/json.h"
#include "core/parallel.h"
#include "core/safetensors.h"
#include "mega/config.h"
#include "mega/cross_attention/cross_attention.h"
#include "mega/decoder_layer.h"
#include "mega/ref_check.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace megagrad;
using Act = AttentionActivation;

namespace {

using test::max_rel_diff;

struct Case {
  Act act;
  bool rotary;
  int64_t L, S;
  std::vector<int64_t> pads = {};  // source right padding per batch element; empty: no mask
  double dropout = 0.0;
};

std::string describe(const Case& c, DType dt) {
  std::string s = fmt::format("{} {} {} L={} S={}", dtype_name(dt), attention_activation_name(c.act),
                              c.rotary ? "rotary" : "simple", c.L, c.S);
  if (!c.pads.empty()) s += fmt::format(" pads={}", fmt::join(c.pads, ","));
  if (c.dropout > 0) s += fmt::format(" dropout={}", c.dropout);
  return s;
}

struct Inputs {
  Tensor q, k, v, mask;
  RelPosBias bias;
  CrossAttentionOptions opt;
  std::vector<Tensor*> leaves() {
    if (bias.kind == RelPosBias::Kind::Rotary) return {&q, &k, &v, &bias.alpha, &bias.beta};
    return {&q, &k, &v, &bias.weight};
  }
};

Inputs make_inputs(const Case& c, DType dt, int64_t Z = 6, int64_t H = 5, uint64_t seed = 21) {
  const int64_t B = c.pads.empty() ? 2 : (int64_t)c.pads.size();
  Generator g(seed);
  Inputs in;
  const double qstd = c.act == Act::Softmax ? 1.0 : 3.0;  // laplace/relu2 divide by the key count
  in.q = normal({B, c.L, Z}, 0, qstd, dt, &g).requires_grad_();
  in.k = normal({B, c.S, Z}, 0, 1.0, dt, &g).requires_grad_();
  in.v = randn({B, c.S, H}, dt, &g).requires_grad_();
  if (!c.pads.empty()) in.mask = test::right_padding(c.S, c.pads, dt);
  in.opt.activation = c.act;
  in.opt.max_positions = std::max(c.L, c.S) + 3;
  in.opt.dropout = c.dropout;
  in.opt.training = c.dropout > 0;
  if (c.rotary) {
    in.bias.kind = RelPosBias::Kind::Rotary;
    in.bias.alpha = normal({1, Z}, 0, 0.7, dt, &g).requires_grad_();
    in.bias.beta = normal({1, Z}, 0, 0.7, dt, &g).requires_grad_();
  } else {
    in.bias.weight = normal({2 * in.opt.max_positions - 1}, 0, 0.5, dt, &g).requires_grad_();
  }
  return in;
}

template <typename F>
std::vector<Tensor> run_with_grads(Inputs& in, const Tensor& G, F&& f) {
  for (Tensor* t : in.leaves()) t->zero_grad();
  Tensor out = f(in);
  sum(mul(out, G)).backward();
  std::vector<Tensor> res{out.detach()};
  for (Tensor* t : in.leaves()) res.push_back(t->grad());
  return res;
}

void compare_with_reference(const Case& c, DType dt, double tol) {
  Inputs in = make_inputs(c, dt);
  Generator gG(12);
  Tensor G = randn({in.q.size(0), c.L, in.v.size(2)}, dt, &gG);
  Generator gen_fused(77), gen_ref(77);  // the same dropout mask for both
  auto fused = run_with_grads(in, G, [&](Inputs& x) {
    CrossAttentionOptions o = x.opt;
    o.generator = &gen_fused;
    return cross_attention(x.q, x.k, x.v, x.mask, x.bias, o);
  });
  auto ref = run_with_grads(in, G, [&](Inputs& x) {
    CrossAttentionOptions o = x.opt;
    o.generator = &gen_ref;
    return cross_attention_reference(x.q, x.k, x.v, x.mask, x.bias, o);
  });
  const char* names[] = {"out", "dq", "dk", "dv", c.rotary ? "dalpha" : "dweight", "dbeta"};
  INFO(describe(c, dt));
  for (size_t i = 0; i < fused.size(); ++i) {
    INFO(names[i]);
    REQUIRE(fused[i].defined());
    REQUIRE(ref[i].defined());
    const double e = max_rel_diff(fused[i], ref[i]);  // INFINITY on a NaN
    INFO("max |fused - reference| / max |reference| = " << e);
    CHECK(e < tol);
  }
}

std::vector<Case> small_cases() {
  std::vector<Case> cs;
  for (Act a : {Act::Softmax, Act::Laplace, Act::Relu2})
    for (bool rot : {false, true}) {
      cs.push_back({a, rot, 5, 9});                    // L < S
      cs.push_back({a, rot, 11, 4});                   // L > S
      cs.push_back({a, rot, 7, 7, {0, 3, 6}});         // padding
      cs.push_back({a, rot, 6, 10, {2, 0}, 0.3});      // dropout and padding
      cs.push_back({a, rot, 4, 5, {5, 1}});            // a source that is all padding
    }
  return cs;
}

// Several query and key blocks (256 x 256): partial blocks, the online softmax across key
// blocks, key blocks that are all padding (skipped).
std::vector<Case> block_cases() {
  return {
      {Act::Softmax, false, 300, 520, {0, 300}},  // b=1: the keys 256.. are padding, the last block all padding
      {Act::Laplace, true, 600, 270, {0, 20}},
      {Act::Relu2, false, 260, 300},
      {Act::Softmax, true, 270, 300, {0, 10}, 0.25},
  };
}

std::vector<std::string> cross_case_dirs() {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(std::string(MEGAGRAD_TEST_DATA) + "/ref_cross"))
    if (e.is_directory() && fs::exists(e.path() / "config.json")) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("cross_attention: float64 gradchecks of every input", "[cross_attention][gradcheck]") {
  // The registered cases (mega/cross_attention/cross_attention_gradcheck.cpp, also run by
  // `megagrad gradcheck`): q, k, v, the simple weight or rotary alpha and beta, each activation,
  // L < S, L > S, L = S, source padding, an all-padding source, dropout, a transposed q.
  int n = 0;
  for (const GradcheckCase& c : all_gradcheck_cases()) {
    if (c.op != "cross_attention") continue;
    ++n;
    GradcheckResult r = run_gradcheck_case(c);
    INFO(c.label << ": " << r.report());
    CHECK(r.passed);  // false on a NaN
    CHECK(r.max_error <= c.tolerance);  // |analytic - numeric| / max(1, |numeric|), 1e-6
  }
  CHECK(n >= 15);
}

TEST_CASE("cross_attention: fused equals the composed reference (float64)", "[cross_attention]") {
  // The same math in another order (blocks, online softmax, Toeplitz bias): float64 rounding.
  for (const Case& c : small_cases()) compare_with_reference(c, DType::Float64, 1e-10);
  for (const Case& c : block_cases()) compare_with_reference(c, DType::Float64, 1e-10);
}

TEST_CASE("cross_attention: fused equals the composed reference (float32)", "[cross_attention]") {
  // float32 sums of up to 520 terms on both sides: a few float32 ulps of the largest value.
  for (const Case& c : small_cases()) compare_with_reference(c, DType::Float32, 1e-5);
  for (const Case& c : block_cases()) compare_with_reference(c, DType::Float32, 1e-5);
}

TEST_CASE("cross_attention: an all-padding source gives zeros, not NaN", "[cross_attention]") {
  Inputs in = make_inputs({Act::Softmax, false, 4, 5, {0, 5}}, DType::Float64);
  Tensor h = cross_attention(in.q, in.k, in.v, in.mask, in.bias, in.opt);
  CHECK(test::max_abs_diff(h.select(0, 1), Tensor::zeros({4, 5}, DType::Float64)) == 0);  // INFINITY on NaN
  CHECK(test::max_abs_diff(h.select(0, 0), Tensor::zeros({4, 5}, DType::Float64)) > 0);
}

TEST_CASE("cross_attention: softmax: the keys' gradient sums to zero over the source", "[cross_attention]") {
  // Adding one vector to every key adds q_i . c to every score of row i, which the softmax
  // ignores: sum_j dk_j = 0 per batch element, so a bias of k_proj gets no gradient (ref_check
  // measures the official case's grad.cross_attn.k_proj.bias accordingly).
  Inputs in = make_inputs({Act::Softmax, true, 6, 9, {0, 3}}, DType::Float64);
  Generator gG(5);
  Tensor G = randn({2, 6, 5}, DType::Float64, &gG);
  sum(mul(cross_attention(in.q, in.k, in.v, in.mask, in.bias, in.opt), G)).backward();
  const Tensor dk = in.k.grad();
  const double total = test::max_abs_diff(sum(dk, {1}), Tensor::zeros({2, 6}, DType::Float64));
  const double scale = test::max_abs_diff(dk, Tensor::zeros(dk.shape(), DType::Float64));
  INFO("max |sum_j dk_j| = " << total << ", max |dk| = " << scale);
  CHECK(scale > 1e-3);
  CHECK(total < 1e-13 * scale);  // rounding only
}

TEST_CASE("cross_attention: computes only the gradients that are needed", "[cross_attention]") {
  Inputs in = make_inputs({Act::Laplace, false, 6, 9, {0, 2}}, DType::Float64);
  in.q.requires_grad_(false);
  in.bias.weight.requires_grad_(false);
  sum(square(cross_attention(in.q, in.k, in.v, in.mask, in.bias, in.opt))).backward();
  CHECK(!in.q.grad().defined());
  CHECK(!in.bias.weight.grad().defined());
  REQUIRE(in.k.grad().defined());
  REQUIRE(in.v.grad().defined());
  Inputs all = make_inputs({Act::Laplace, false, 6, 9, {0, 2}}, DType::Float64);
  sum(square(cross_attention(all.q, all.k, all.v, all.mask, all.bias, all.opt))).backward();
  CHECK(max_rel_diff(in.k.grad(), all.k.grad()) < 1e-14);  // the same sums in the same order
  CHECK(max_rel_diff(in.v.grad(), all.v.grad()) < 1e-14);
}

TEST_CASE("cross_attention: results do not depend on the thread count", "[cross_attention]") {
  Inputs in = make_inputs({Act::Softmax, true, 300, 280, {0, 40}, 0.2}, DType::Float32, 16, 24);
  Generator gG(3);
  Tensor G = randn({2, 300, 24}, DType::Float32, &gG);
  auto run = [&](int threads) {
    set_num_threads(threads);
    Generator gen(9);
    CrossAttentionOptions o = in.opt;
    o.generator = &gen;
    auto r = run_with_grads(in, G, [&](Inputs& x) { return cross_attention(x.q, x.k, x.v, x.mask, x.bias, o); });
    std::vector<std::vector<double>> v;
    for (auto& t : r) v.push_back(t.to_vector());
    return v;
  };
  const int before = get_num_threads();
  auto one = run(1), two = run(2);
  set_num_threads(before);
  CHECK(one == two);
}

TEST_CASE("cross_attention: bad input gives clear errors", "[cross_attention][errors]") {
  const DType f64 = DType::Float64;
  Inputs in = make_inputs({Act::Softmax, false, 5, 7}, f64);
  const Tensor &q = in.q, &k = in.k, &v = in.v;
  const CrossAttentionOptions& o = in.opt;  // max_positions 10
  auto call = [](const Tensor& q_, const Tensor& k_, const Tensor& v_, const Tensor& m_, const RelPosBias& b_,
                 const CrossAttentionOptions& o_) { return cross_attention(q_, k_, v_, m_, b_, o_); };
  using Catch::Contains;
  // q and k widths differ: both shapes named.
  REQUIRE_THROWS_WITH(call(q, k.narrow(2, 0, 4), v, Tensor(), in.bias, o),
                      Contains("[cross_attention]") && Contains("(2,5,6)") && Contains("(2,7,4)"));
  // Batch sizes differ.
  REQUIRE_THROWS_WITH(call(q, k.narrow(0, 0, 1), v, Tensor(), in.bias, o),
                      Contains("[cross_attention]") && Contains("(1,7,6)"));
  // v must have k's source length.
  REQUIRE_THROWS_WITH(call(q, k, v.narrow(1, 0, 6), Tensor(), in.bias, o),
                      Contains("[cross_attention] v must be (B, S, H)") && Contains("(2,6,5)") && Contains("(2,7,6)"));
  REQUIRE_THROWS_WITH(call(q.select(0, 0), k, v, Tensor(), in.bias, o), Contains("[cross_attention] q must be (B, L, Z)"));
  // dtypes.
  REQUIRE_THROWS_WITH(call(q, k.to(DType::Float32), v, Tensor(), in.bias, o),
                      Contains("[cross_attention]") && Contains("float32") && Contains("float64"));
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor::zeros({2, 7}, DType::Float32), in.bias, o),
                      Contains("[cross_attention] key_padding_mask") && Contains("float32"));
  REQUIRE_THROWS_WITH(call(Tensor::from_vector(std::vector<int64_t>{1, 2}, {1, 1, 2}), k, v, Tensor(), in.bias, o),
                      Contains("[cross_attention] expected a float tensor"));
  // The mask: (B, S), 0 or 1.
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor::zeros({2, 5}, f64), in.bias, o),
                      Contains("[cross_attention] key_padding_mask must be (B, S) = (2,7)") && Contains("(2,5)"));
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor::full({2, 7}, 0.5, f64), in.bias, o),
                      Contains("key_padding_mask must hold 0 or 1"));
  // A target or source longer than max_positions (simple bias).
  Inputs longer = make_inputs({Act::Softmax, false, 5, 12}, f64);
  longer.opt.max_positions = 10;
  longer.bias.weight = Tensor::zeros({19}, f64);
  REQUIRE_THROWS_WITH(call(longer.q, longer.k, longer.v, Tensor(), longer.bias, longer.opt),
                      Contains("[cross_attention] target length L=5 or source length S=12 exceeds max_positions 10"));
  RelPosBias short_w{RelPosBias::Kind::Simple, Tensor::zeros({5}, f64), {}, {}};
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor(), short_w, o), Contains("[cross_attention]") && Contains("(19)"));
  Inputs rot = make_inputs({Act::Laplace, true, 5, 7}, f64, 5);
  REQUIRE_THROWS_WITH(call(rot.q, rot.k, rot.v, Tensor(), rot.bias, rot.opt),
                      Contains("[cross_attention]") && Contains("odd Z = 5"));
  CrossAttentionOptions bad = o;
  bad.dropout = 1.0;
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor(), in.bias, bad), Contains("[cross_attention] dropout must be in [0, 1)"));
  RelPosBias no_weight;
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor(), no_weight, o), Contains("weight") && Contains("undefined"));
#if MEGAGRAD_HAS_CUDA
  if (cuda_available())
    REQUIRE_THROWS_WITH(call(q, k.cuda(), v, Tensor(), in.bias, o),
                        Contains("[cross_attention]") && Contains("cpu") && Contains("cuda"));
#endif
}

TEST_CASE("cross_attention: the module reproduces the official GatedCrossAttention output", "[cross_attention][ref]") {
  // The cases store the cross-attention's input (inter.mega_layer.out, the self-attention
  // sub-layer's output) and its output (inter.cross_attn.out), both (L, B, D) time-major.
  const std::vector<std::string> dirs = cross_case_dirs();
  REQUIRE(dirs.size() == 4);
  for (const std::string& dir : dirs) {
    LayerCaseConfig cfg = load_layer_config(dir + "/config.json");
    REQUIRE(cfg.cross_attention);
    for (DType dt : {DType::Float64, DType::Float32}) {
      SafeTensors st = load_safetensors(dir + (dt == DType::Float64 ? "/ref_f64.safetensors" : "/ref_f32.safetensors"));
      Generator gen(1);
      GatedCrossAttention ca(cfg.layer, cfg.layer.max_positions, gen);
      ca.to(dt);
      NamedTensors w;
      for (auto& [name, t] : st.tensors)
        if (name.rfind("cross_attn.", 0) == 0) w.emplace_back(name.substr(11), t);
      ca.load_state_dict(w, /*strict=*/true);
      Tensor query = st.at("inter.mega_layer.out").permute({1, 0, 2});
      Tensor mem = st.at("mem").permute({1, 0, 2});
      Tensor mask = st.contains("src_padding_mask") ? st.at("src_padding_mask") : Tensor();
      Tensor out = ca.forward(query, mem, mask).permute({1, 0, 2});
      const double e = max_rel_diff(out, st.at("inter.cross_attn.out"));
      INFO(dir << " " << dtype_name(dt) << ": max |ours - official| / max |official| = " << e);
      // ref_f64 is float64 throughout; ref_f32 is the official float32 (softmax, sin/cos tables).
      CHECK(e < (dt == DType::Float64 ? 1e-12 : 1e-5));
    }
  }
}

TEST_CASE("cross_attention: the module's parameters carry the official names and init", "[cross_attention]") {
  MegaLayerConfig c;
  c.embed_dim = 8, c.hidden_dim = 16, c.ffn_hidden_dim = 16, c.z_dim = 4, c.n_dim = 2;
  c.bidirectional = false, c.causal = true, c.max_positions = 32;
  MegaDecoderLayer layer(c, 5, 40);
  std::vector<std::string> names;
  for (auto& [name, t] : layer.named_parameters())
    if (name.rfind("cross_attn.", 0) == 0) names.push_back(name + " " + shape_str(t.shape()));
  CHECK(names == std::vector<std::string>{
                     "cross_attn.norm.norm.weight (8)", "cross_attn.norm.norm.bias (8)", "cross_attn.k_proj.weight (4,8)",
                     "cross_attn.k_proj.bias (4)", "cross_attn.v_proj.weight (8,8)", "cross_attn.v_proj.bias (8)",
                     "cross_attn.q_proj.weight (20,8)", "cross_attn.q_proj.bias (20)", "cross_attn.h_proj.weight (8,8)",
                     "cross_attn.h_proj.bias (8)", "cross_attn.rel_pos_bias.rel_pos_bias (79)"});
  // Weights normal(0, 0.02), biases 0.
  std::vector<double> qw = layer.cross_attn->q_proj->weight.to_vector();
  double s2 = 0;
  for (double x : qw) s2 += x * x;
  CHECK(std::sqrt(s2 / (double)qw.size()) == Approx(0.02).epsilon(0.25));
  CHECK(test::max_abs_diff(layer.cross_attn->q_proj->bias, Tensor::zeros({20})) == 0);
  MegaLayerConfig enc = c;
  enc.bidirectional = true, enc.causal = false;
  REQUIRE_THROWS_WITH(MegaDecoderLayer(enc, 5), Catch::Contains("[mega]") && Catch::Contains("unidirectional"));
}

TEST_CASE("cross_attention: on a CUDA device the composed ops run there and match the cpu", "[cuda][cross_attention]") {
  if (test::skip_without_cuda()) return;
  for (const Case& c : {Case{Act::Softmax, false, 7, 12, {0, 5}}, Case{Act::Laplace, true, 12, 6, {1, 0}},
                        Case{Act::Relu2, false, 9, 9, {0, 9}}}) {
    for (DType dt : {DType::Float64, DType::Float32}) {
      Inputs cpu_in = make_inputs(c, dt);
      Generator gG(12);
      Tensor G = randn({cpu_in.q.size(0), c.L, cpu_in.v.size(2)}, dt, &gG);
      auto cpu = run_with_grads(cpu_in, G, [](Inputs& x) { return cross_attention(x.q, x.k, x.v, x.mask, x.bias, x.opt); });
      Inputs dev_in = make_inputs(c, dt);
      for (Tensor* t : dev_in.leaves()) *t = t->detach().cuda().requires_grad_();
      if (dev_in.mask.defined()) dev_in.mask = dev_in.mask.cuda();
      Tensor Gd = G.cuda();
      for (Tensor* t : dev_in.leaves()) t->zero_grad();
      Tensor out = cross_attention(dev_in.q, dev_in.k, dev_in.v, dev_in.mask, dev_in.bias, dev_in.opt);
      REQUIRE(out.device() == Device::cuda(0));
      sum(mul(out, Gd)).backward();
      std::vector<Tensor> gpu{out.detach()};
      for (Tensor* t : dev_in.leaves()) gpu.push_back(t->grad());
      INFO(describe(c, dt));
      for (size_t i = 0; i < gpu.size(); ++i) {
        REQUIRE(gpu[i].defined());
        CHECK(gpu[i].device() == Device::cuda(0));
        const double e = max_rel_diff(gpu[i].cpu(), cpu[i]);
        INFO("tensor " << i << ": max |gpu - cpu| / max |cpu| = " << e);
        CHECK(e < (dt == DType::Float64 ? 1e-10 : 1e-5));  // the same math, other order
      }
    }
  }
}

namespace {
// A copy of the xa_noise case (float64) with tensor `name` replaced by `t` (undefined: dropped)
// and config.json rewritten by `edit`.
void copy_cross_case(const test::TempDir& dir, const std::string& name, const Tensor& t,
                     const std::function<void(Json&)>& edit = {}) {
  namespace fs = std::filesystem;
  const fs::path src = fs::path(MEGAGRAD_TEST_DATA) / "ref_cross" / "xa_tiny_cross_softmax_simple_srcpad_noise";
  Json cfg = Json::parse(read_file((src / "config.json").string(), "config", 1 << 20), "config.json");
  if (edit) edit(cfg);
  write_file_atomic((dir.path / "config.json").string(), cfg.dump(), "test");
  SafeTensors st = load_safetensors((src / "ref_f64.safetensors").string());
  std::vector<std::pair<std::string, Tensor>> kept;
  for (auto& [n, v] : st.tensors)
    if (n != name) kept.emplace_back(n, v);
    else if (t.defined()) kept.emplace_back(n, t);
  save_safetensors((dir.path / "ref_f64.safetensors").string(), kept, st.metadata);
}
}  // namespace

TEST_CASE("cross_attention: ref-check measures the k_proj bias as noise only when it is noise",
          "[cross_attention][ref][errors]") {
  test::TempDir dir("xattn_refcheck");
  auto kbias_row = [&]() {
    RefCheckResult r = ref_check(dir.path.string(), DType::Float64);
    for (const RefCheckRow& row : r.rows)
      if (row.name == "grad.cross_attn.k_proj.bias") return std::make_pair(r.passed(), row);
    FAIL("no row grad.cross_attn.k_proj.bias");
    return std::make_pair(false, RefCheckRow{});
  };
  copy_cross_case(dir, "", Tensor());  // unmodified: the official noise (~3e-15 beside 13)
  auto [ok, row] = kbias_row();
  CHECK(ok);
  CHECK(row.error < 1e-12);
  CHECK_THAT(row.note, Catch::Contains("zero in exact arithmetic"));
  // A reference that is not noise (1e-3 against a weight gradient of 13) is compared as any other
  // tensor: ours (~1e-16) is then 100% off, and the row fails.
  copy_cross_case(dir, "grad.cross_attn.k_proj.bias", Tensor::full({8}, 1e-3, DType::Float64));
  auto [ok2, row2] = kbias_row();
  CHECK_FALSE(ok2);
  CHECK(row2.error > 0.5);
  CHECK(row2.note.empty());
}

TEST_CASE("cross_attention: ref-check refuses a cross-attention case it cannot read", "[cross_attention][ref][errors]") {
  test::TempDir dir("xattn_refcheck_bad");
  using Catch::Contains;
  // Without the cross_attention key, the case's mem and cross_attn.* belong to no layer.
  copy_cross_case(dir, "", Tensor(), [](Json& c) {
    Json out = Json::object();
    for (const auto& item : c.items())
      if (item.first != "cross_attention" && item.first != "src_len" && item.first != "src_pad_lengths")
        out.set(item.first, item.second);
    c = out;
  });
  REQUIRE_THROWS_WITH(ref_check(dir.path.string(), DType::Float64), Contains("[ref-check]") && Contains("mem"));
  // No mem.
  copy_cross_case(dir, "mem", Tensor());
  REQUIRE_THROWS_WITH(ref_check(dir.path.string(), DType::Float64), Contains("there is no mem"));
  // mem of another source length than src_len.
  copy_cross_case(dir, "mem", Tensor::zeros({11, 2, 8}, DType::Float64));
  REQUIRE_THROWS_WITH(ref_check(dir.path.string(), DType::Float64),
                      Contains("mem is (11,2,8)") && Contains("(12,2,8)"));
  // src_pad_lengths given but no mask.
  copy_cross_case(dir, "src_padding_mask", Tensor());
  REQUIRE_THROWS_WITH(ref_check(dir.path.string(), DType::Float64), Contains("src_padding_mask is absent"));
  // A key the format does not have.
  copy_cross_case(dir, "", Tensor(), [](Json& c) { c.set("src_lenght", 12); });
  REQUIRE_THROWS_WITH(ref_check(dir.path.string(), DType::Float64), Contains("unknown key \"src_lenght\""));
}
