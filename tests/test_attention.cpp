// The fused attention (mega/attention/): agreement with the composed reference (output and every
// gradient, float64 and float32), the official attention weights of the reference cases,
// dropout, thread-count independence, error messages, and memory linear in L.
// (The float64 gradchecks run in test_gradcheck.cpp through the registered cases.)
#include <catch2/catch.hpp>
#include <malloc.h>
#include <ctime>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <fmt/ranges.h>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/parallel.h"
#include "core/safetensors.h"
#include "mega/attention/attention.h"
#include "mega/config.h"
#include "tests/test_util.h"

using namespace megagrad;
using Act = AttentionActivation;

namespace {

using test::max_rel_diff;

struct Case {
  Act act;
  bool rotary;
  int64_t L, chunk;
  bool causal = false;
  std::vector<int64_t> pads = {};  // empty: no padding mask; else one entry per batch element
  double dropout = 0.0;
};

std::string describe(const Case& c, DType dt) {
  std::string s = fmt::format("{} {} {} L={} chunk={}", dtype_name(dt), attention_activation_name(c.act),
                              c.rotary ? "rotary" : "simple", c.L, c.chunk);
  if (c.causal) s += " causal";
  if (!c.pads.empty()) s += fmt::format(" pads={}", fmt::join(c.pads, ","));
  if (c.dropout > 0) s += fmt::format(" dropout={}", c.dropout);
  return s;
}

// Leaves of one problem: q, k, v, and the bias parameters.
struct Inputs {
  Tensor q, k, v, mask;
  RelPosBias bias;
  AttentionOptions opt;
  std::vector<Tensor*> leaves() {
    if (bias.kind == RelPosBias::Kind::Rotary) return {&q, &k, &v, &bias.alpha, &bias.beta};
    return {&q, &k, &v, &bias.weight};
  }
};

Inputs make_inputs(const Case& c, DType dt, int64_t Z = 6, int64_t H = 5, uint64_t seed = 11) {
  const int64_t B = c.pads.empty() ? 2 : (int64_t)c.pads.size();
  Generator g(seed);
  Inputs in;
  // laplace/relu2 divide q k^T by the key count: a wider q keeps the scores spread around the
  // laplace's centre (0.707) and on both sides of relu2's kink.
  const double qstd = c.act == Act::Softmax ? 1.0 : 3.0;
  in.q = normal({B, c.L, Z}, 0, qstd, dt, &g).requires_grad_();
  in.k = normal({B, c.L, Z}, 0, 1.0, dt, &g).requires_grad_();
  in.v = randn({B, c.L, H}, dt, &g).requires_grad_();
  if (!c.pads.empty()) in.mask = test::right_padding(c.L, c.pads, dt);
  in.opt.activation = c.act;
  in.opt.chunk_size = c.chunk;
  in.opt.causal = c.causal;
  in.opt.max_positions = c.L + 3;
  in.opt.dropout = c.dropout;
  in.opt.training = c.dropout > 0;
  if (c.rotary) {
    in.bias.kind = RelPosBias::Kind::Rotary;
    in.bias.alpha = normal({1, Z}, 0, 0.7, dt, &g).requires_grad_();
    in.bias.beta = normal({1, Z}, 0, 0.7, dt, &g).requires_grad_();
  } else {
    const int64_t M = c.chunk > 0 ? c.chunk : in.opt.max_positions;
    in.bias.weight = normal({2 * M - 1}, 0, 0.5, dt, &g).requires_grad_();
  }
  return in;
}

// Output and gradients of sum(f(...) * G) for every leaf.
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
  // Same generator state for both: they draw the same dropout mask.
  Generator gen_fused(77), gen_ref(77);
  auto fused = run_with_grads(in, G, [&](Inputs& x) {
    AttentionOptions o = x.opt;
    o.generator = &gen_fused;
    return attention(x.q, x.k, x.v, x.mask, x.bias, o);
  });
  auto ref = run_with_grads(in, G, [&](Inputs& x) {
    AttentionOptions o = x.opt;
    o.generator = &gen_ref;
    return attention_reference(x.q, x.k, x.v, x.mask, x.bias, o);
  });
  const char* names[] = {"out", "dq", "dk", "dv", c.rotary ? "dalpha" : "dweight", "dbeta"};
  INFO(describe(c, dt));
  for (size_t i = 0; i < fused.size(); ++i) {
    INFO(names[i]);
    REQUIRE(fused[i].defined());
    REQUIRE(ref[i].defined());
    double e = max_rel_diff(fused[i], ref[i]);
    INFO("max |fused - reference| / max |reference| = " << e);
    CHECK(e < tol);
  }
}

std::vector<Case> small_cases() {
  std::vector<Case> cs;
  for (Act a : {Act::Softmax, Act::Laplace, Act::Relu2})
    for (bool rot : {false, true}) {
      cs.push_back({a, rot, 16, -1});                                  // one chunk
      cs.push_back({a, rot, 16, 4});                                   // 4 chunks
      cs.push_back({a, rot, 16, 4, true});                             // causal, chunked
      cs.push_back({a, rot, 16, -1, true, {0, 5}});                    // causal, padding
      cs.push_back({a, rot, 16, 4, false, {0, 6, 3}});                 // an all-padding chunk
      cs.push_back({a, rot, 16, 4, false, {}, 0.3});                   // dropout
    }
  cs.push_back({Act::Softmax, false, 16, 32});                          // chunk > L: one chunk, M = 32
  cs.push_back({Act::Laplace, true, 16, 16, true, {2, 0}, 0.2});
  return cs;
}

// Several query and key blocks per chunk (blocks are 256 x 256): partial blocks, the online
// softmax across key blocks, causal clipping, key blocks that are all padding (skipped).
std::vector<Case> block_cases() {
  return {
      {Act::Softmax, false, 300, -1, true},
      {Act::Softmax, true, 600, 300, false, {0, 310}},       // b=1: chunk 1 is all padding
      {Act::Laplace, true, 300, -1, false, {0, 50}},          // b=1: keys 256.. all padding
      {Act::Softmax, false, 600, -1, false, {344, 0}},        // b=0: two key blocks all padding
      {Act::Relu2, false, 600, 300, true, {290, 0}},
      {Act::Softmax, false, 520, 260, false, {0, 270}, 0.25},
  };
}

}  // namespace

TEST_CASE("attention: fused equals the composed reference in small cases (float64)", "[attention]") {
  // The same math in a different order (blocks, online softmax, Toeplitz bias): float64 rounding.
  for (const Case& c : small_cases()) compare_with_reference(c, DType::Float64, 1e-10);
}

TEST_CASE("attention: fused equals the composed reference with several blocks per chunk (float64)", "[attention]") {
  for (const Case& c : block_cases()) compare_with_reference(c, DType::Float64, 1e-10);
}

TEST_CASE("attention: fused equals the composed reference (float32)", "[attention]") {
  // float32 sums of up to 300 terms on both sides: agreement to a few float32 ulps of the largest
  // value.
  for (const Case& c : small_cases()) compare_with_reference(c, DType::Float32, 1e-5);
  for (const Case& c : block_cases()) compare_with_reference(c, DType::Float32, 1e-5);
}

TEST_CASE("attention: reproduces the official attention weights of the reference cases", "[attention][ref]") {
  // The official code stores its attention weights (inter.attn_weights, (B, chunks, C, C), after
  // masking) and the output of mx_proj, from which q and k follow (spec section 2):
  //   z = silu(base[:, :, D:D+Z]);  q = z gamma[0] + beta[0];  k = z gamma[1] + beta[1].
  // With v = the identity (H = L), h = P V holds the weights: h[b, cC+i, cC+j] = P_c[i, j].
  namespace fs = std::filesystem;
  std::vector<std::string> dirs;
  for (auto& e : fs::directory_iterator(std::string(MEGAGRAD_TEST_DATA) + "/ref"))
    if (e.is_directory() && fs::exists(e.path() / "config.json")) dirs.push_back(e.path().string());
  std::sort(dirs.begin(), dirs.end());
  REQUIRE(dirs.size() == 14);
  for (const std::string& dir : dirs) {
    LayerCaseConfig cfg = load_layer_config(dir + "/config.json");
    const MegaLayerConfig& lc = cfg.layer;
    for (DType dt : {DType::Float64, DType::Float32}) {
      SafeTensors st = load_safetensors(dir + (dt == DType::Float64 ? "/ref_f64.safetensors" : "/ref_f32.safetensors"));
      const int64_t B = cfg.batch, L = cfg.seq_len, D = lc.embed_dim, Z = lc.z_dim;
      Tensor base = st.at("inter.mega_layer.mx_proj").permute({1, 0, 2});  // (B, L, 2D+Z+H)
      Tensor z = silu(base.narrow(2, D, Z));
      const Tensor &gamma = st.at("mega_layer.gamma"), &beta = st.at("mega_layer.beta");
      Tensor q = add(mul(z, gamma.select(0, 0)), beta.select(0, 0));
      Tensor k = add(mul(z, gamma.select(0, 1)), beta.select(0, 1));
      std::vector<double> eye((size_t)(B * L * L), 0.0);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < L; ++t) eye[(size_t)((b * L + t) * L + t)] = 1.0;
      Tensor v = Tensor::from_vector(eye, {B, L, L}, dt);
      RelPosBias bias;
      bias.kind = lc.rel_pos_bias;
      if (bias.kind == RelPosBias::Kind::Rotary)
        bias.alpha = st.at("mega_layer.rel_pos_bias.alpha"), bias.beta = st.at("mega_layer.rel_pos_bias.beta");
      else
        bias.weight = st.at("mega_layer.rel_pos_bias.rel_pos_bias");
      AttentionOptions o;
      o.activation = lc.attention_activation;
      o.chunk_size = lc.chunk_size;
      o.causal = lc.causal;
      o.max_positions = lc.max_positions;
      Tensor h = attention(q, k, v, cfg.with_padding ? st.at("padding_mask") : Tensor(), bias, o);
      const Tensor& ref = st.at("inter.attn_weights");
      const int64_t NC = ref.size(1), C = ref.size(2);
      std::vector<double> hv = h.to_vector(), ours((size_t)(B * NC * C * C));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < NC; ++c)
          for (int64_t i = 0; i < C; ++i)
            for (int64_t j = 0; j < C; ++j)
              ours[(size_t)(((b * NC + c) * C + i) * C + j)] = hv[(size_t)((b * L + c * C + i) * L + c * C + j)];
      // ref_f64 is float64 throughout; ref_f32 has the official float32 sin/cos tables.
      double e = max_rel_diff(Tensor::from_vector(ours, ref.shape(), DType::Float64), ref);
      INFO(dir << " " << dtype_name(dt) << ": max |ours - official| / max |official| = " << e);
      CHECK(e < (dt == DType::Float64 ? 1e-12 : 1e-5));
    }
  }
}

TEST_CASE("attention: dropout zeroes a fraction p of the weights and scales the rest", "[attention]") {
  // With v = the identity, h = P~ (the dropped weights): each entry is 0 or P / (1-p).
  const int64_t L = 96;
  const double p = 0.3;
  for (Act act : {Act::Softmax, Act::Laplace}) {
    Inputs in = make_inputs({act, false, L, -1}, DType::Float64);
    std::vector<double> eye((size_t)(2 * L * L), 0.0);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t t = 0; t < L; ++t) eye[(size_t)((b * L + t) * L + t)] = 1.0;
    Tensor v = Tensor::from_vector(eye, {2, L, L}, DType::Float64);
    std::vector<double> clean = attention(in.q, in.k, v, Tensor(), in.bias, in.opt).to_vector();
    AttentionOptions o = in.opt;
    o.dropout = p, o.training = true;
    Generator gen(5);
    o.generator = &gen;
    std::vector<double> dropped = attention(in.q, in.k, v, Tensor(), in.bias, o).to_vector();
    CHECK(gen.offset() == (uint64_t)(2 * L * L));  // one counter per score
    int64_t zeros = 0, nonzero = 0, bad = 0;
    for (size_t i = 0; i < clean.size(); ++i) {
      if (clean[i] == 0) continue;
      ++nonzero;
      if (dropped[i] == 0) ++zeros;
      else if (!(std::abs(dropped[i] - clean[i] / (1 - p)) <= 1e-12 * std::abs(clean[i]))) ++bad;  // NaN: bad
    }
    INFO(attention_activation_name(act) << ": " << zeros << " of " << nonzero << " dropped");
    CHECK(bad == 0);
    REQUIRE(nonzero > 10000);
    // 18432 draws: the standard deviation of the fraction is 0.0034.
    CHECK(std::abs((double)zeros / (double)nonzero - p) < 0.02);
    // Deterministic in (seed, offset); the next call draws a different mask.
    Generator again(5);
    o.generator = &again;
    CHECK(attention(in.q, in.k, v, Tensor(), in.bias, o).to_vector() == dropped);
    CHECK(attention(in.q, in.k, v, Tensor(), in.bias, o).to_vector() != dropped);
    // Evaluation mode: no dropout, no draw.
    o.training = false;
    Generator unused(5);
    o.generator = &unused;
    CHECK(attention(in.q, in.k, v, Tensor(), in.bias, o).to_vector() == clean);
    CHECK(unused.offset() == 0);
  }
}

TEST_CASE("attention: results do not depend on the thread count", "[attention]") {
  for (const Case& c : {Case{Act::Softmax, true, 300, -1, true, {0, 40}, 0.2},
                        Case{Act::Laplace, false, 600, 300, false, {0, 350}}}) {
    Inputs in = make_inputs(c, DType::Float32, 16, 24);
    Generator gG(3);
    Tensor G = randn({2, c.L, 24}, DType::Float32, &gG);
    auto run = [&](int threads) {
      set_num_threads(threads);
      Generator gen(9);
      AttentionOptions o = in.opt;
      o.generator = &gen;
      auto r = run_with_grads(in, G, [&](Inputs& x) { return attention(x.q, x.k, x.v, x.mask, x.bias, o); });
      std::vector<std::vector<double>> v;
      for (auto& t : r) v.push_back(t.to_vector());
      return v;
    };
    int before = get_num_threads();
    auto one = run(1), two = run(2);
    set_num_threads(before);
    INFO(describe(c, DType::Float32));
    CHECK(one == two);
  }
}

TEST_CASE("attention: computes only the gradients that are needed", "[attention]") {
  Inputs in = make_inputs({Act::Softmax, false, 16, 4}, DType::Float64);
  in.q.requires_grad_(false);
  in.bias.weight.requires_grad_(false);
  Tensor out = attention(in.q, in.k, in.v, Tensor(), in.bias, in.opt);
  sum(square(out)).backward();
  CHECK(!in.q.grad().defined());
  CHECK(!in.bias.weight.grad().defined());
  REQUIRE(in.k.grad().defined());
  REQUIRE(in.v.grad().defined());
  // The same gradients as when everything wants one.
  Inputs all = make_inputs({Act::Softmax, false, 16, 4}, DType::Float64);
  sum(square(attention(all.q, all.k, all.v, Tensor(), all.bias, all.opt))).backward();
  CHECK(max_rel_diff(in.k.grad(), all.k.grad()) < 1e-14);
  CHECK(max_rel_diff(in.v.grad(), all.v.grad()) < 1e-14);
}

TEST_CASE("attention: bad input gives clear errors", "[attention][errors]") {
  const DType f64 = DType::Float64;
  Inputs in = make_inputs({Act::Softmax, false, 16, 4}, f64);
  const Tensor &q = in.q, &k = in.k, &v = in.v;
  AttentionOptions o = in.opt;
  auto call = [&](const Tensor& q_, const Tensor& k_, const Tensor& v_, const Tensor& m_, const RelPosBias& b_,
                  const AttentionOptions& o_) { return attention(q_, k_, v_, m_, b_, o_); };
  // L not a multiple of the chunk size.
  Inputs odd = make_inputs({Act::Softmax, false, 10, 4}, f64);
  REQUIRE_THROWS_WITH(call(odd.q, odd.k, odd.v, Tensor(), odd.bias, odd.opt),
                      Catch::Contains("[attention] sequence length L=10 is not a multiple of the chunk size 4"));
  // A sequence longer than max_positions (simple bias, no chunking).
  Inputs longer = make_inputs({Act::Softmax, false, 40, -1}, f64);
  longer.opt.max_positions = 32;
  longer.bias.weight = Tensor::zeros({63}, f64);
  REQUIRE_THROWS_WITH(call(longer.q, longer.k, longer.v, Tensor(), longer.bias, longer.opt),
                      Catch::Contains("[attention] sequence length 40 exceeds max_positions 32"));
  // The simple weight must have 2M-1 entries.
  RelPosBias short_w{RelPosBias::Kind::Simple, Tensor::zeros({5}, f64), {}, {}};
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor(), short_w, o), Catch::Contains("[attention]") && Catch::Contains("(7)"));
  // Odd Z with the rotary bias.
  Inputs rot = make_inputs({Act::Laplace, true, 8, -1}, f64, 5);
  REQUIRE_THROWS_WITH(call(rot.q, rot.k, rot.v, Tensor(), rot.bias, rot.opt),
                      Catch::Contains("[attention]") && Catch::Contains("odd Z = 5"));
  // Shapes and dtypes of q, k, v and the mask.
  REQUIRE_THROWS_WITH(call(q, k.narrow(2, 0, 4), v, Tensor(), in.bias, o),
                      Catch::Contains("[attention]") && Catch::Contains("(2,16,4)") && Catch::Contains("(2,16,6)"));
  REQUIRE_THROWS_WITH(call(q, k, v.narrow(1, 0, 8), Tensor(), in.bias, o),
                      Catch::Contains("[attention]") && Catch::Contains("(2,8,5)"));
  REQUIRE_THROWS_WITH(call(q, k.to(DType::Float32), v, Tensor(), in.bias, o),
                      Catch::Contains("[attention]") && Catch::Contains("float32") && Catch::Contains("float64"));
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor::zeros({2, 15}, f64), in.bias, o),
                      Catch::Contains("padding_mask") && Catch::Contains("(2,16)") && Catch::Contains("(2,15)"));
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor::zeros({2, 16}, DType::Float32), in.bias, o),
                      Catch::Contains("padding_mask") && Catch::Contains("float32"));
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor::full({2, 16}, 0.5, f64), in.bias, o),
                      Catch::Contains("padding_mask must hold 0 or 1"));
  REQUIRE_THROWS_WITH(call(q.select(0, 0), k, v, Tensor(), in.bias, o), Catch::Contains("q must be (B, L, Z)"));
  AttentionOptions bad = o;
  bad.dropout = 1.0;
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor(), in.bias, bad), Catch::Contains("dropout must be in [0, 1)"));
  RelPosBias no_weight;
  REQUIRE_THROWS_WITH(call(q, k, v, Tensor(), no_weight, o), Catch::Contains("weight") && Catch::Contains("undefined"));
}

namespace {
int64_t proc_status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::strlen(key) + 1));
  return -1;
}
// How much the resident set grows at its peak while f runs, in bytes; empty when the kernel
// cannot reset the peak (VmHWM is reset to the current RSS by writing 5 to clear_refs).
std::optional<int64_t> peak_rss_growth(const std::function<void()>& f) {
  malloc_trim(0);  // freed memory back to the system, so that reuse cannot hide an allocation
  {
    std::ofstream cr("/proc/self/clear_refs");
    if (!cr) return {};
    cr << "5";
    cr.flush();
    if (!cr) return {};
  }
  const int64_t rss = proc_status_kb("VmRSS:");
  if (rss < 0 || proc_status_kb("VmHWM:") > rss + 256) return {};  // the reset did not happen
  f();
  return (proc_status_kb("VmHWM:") - rss) * 1024;
}
}  // namespace

TEST_CASE("attention: memory stays linear in L (L = 2048 without chunking)", "[attention]") {
#if defined(__SANITIZE_ADDRESS__)
  test::skip("under AddressSanitizer: its shadow memory and quarantine make RSS meaningless");
  return;
#endif
  // One L x L float32 matrix is 16 MiB. The fused forward + backward keeps blocks of 256 x 256;
  // the composed reference materialises several L x L matrices, which shows that the measurement
  // sees such allocations.
  const int64_t L = 2048, LL = L * L * (int64_t)sizeof(float);
  Inputs in = make_inputs({Act::Softmax, false, L, -1, true}, DType::Float32, 16, 16);
  Generator gG(4);
  Tensor G = randn({2, L, 16}, DType::Float32, &gG);
  auto fused = [&] {
    run_with_grads(in, G, [](Inputs& x) { return attention(x.q, x.k, x.v, x.mask, x.bias, x.opt); });
  };
  auto ref = [&] {
    run_with_grads(in, G, [](Inputs& x) { return attention_reference(x.q, x.k, x.v, x.mask, x.bias, x.opt); });
  };
  fused();  // warm-up: thread pools and OpenBLAS buffers touch their pages once
  std::optional<int64_t> grow_fused = peak_rss_growth(fused);
  std::optional<int64_t> grow_ref = peak_rss_growth(ref);
  if (!grow_fused || !grow_ref) {
    test::skip("cannot reset the peak RSS (/proc/self/clear_refs): no memory measurement");
    return;
  }
  INFO("peak RSS growth: fused " << *grow_fused / 1024 << " KiB, reference " << *grow_ref / 1024
                                 << " KiB; one L x L float32 matrix is " << LL / 1024 << " KiB");
  CHECK(*grow_ref > LL);
  CHECK(*grow_fused < LL / 4);
}

TEST_CASE("attention: speed against the composed reference", "[.attention-bench]") {
  // Not run by default: `megagrad_tests "[.attention-bench]"`. B=4, L=2000, Z=64, H=160, one
  // chunk, softmax, one thread.
  const int64_t L = 2000;
  int before = get_num_threads();
  set_num_threads(1);
  for (DType dt : {DType::Float32, DType::Float64}) {
    Case c{Act::Softmax, false, L, -1, false, {0, 0, 0, 0}};
    Inputs in = make_inputs(c, dt, 64, 160);
    Generator gG(4);
    Tensor G = randn({4, L, 160}, dt, &gG);
    // The calling thread's CPU time (all work runs on it with one thread): robust to other
    // processes sharing the cores, which wall-clock time is not.
    auto cpu_ms = [] {
      timespec ts;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    };
    auto time_ms = [&](const std::function<void()>& f) {
      f();  // warm-up
      double best = 1e30;
      for (int r = 0; r < 3; ++r) {
        double t0 = cpu_ms();
        f();
        best = std::min(best, cpu_ms() - t0);
      }
      return best;
    };
    double fwd = time_ms([&] { no_grad g; attention(in.q, in.k, in.v, in.mask, in.bias, in.opt); });
    double fwd_ref = time_ms([&] { no_grad g; attention_reference(in.q, in.k, in.v, in.mask, in.bias, in.opt); });
    double both = time_ms([&] {
      run_with_grads(in, G, [](Inputs& x) { return attention(x.q, x.k, x.v, x.mask, x.bias, x.opt); });
    });
    double both_ref = time_ms([&] {
      run_with_grads(in, G, [](Inputs& x) { return attention_reference(x.q, x.k, x.v, x.mask, x.bias, x.opt); });
    });
    WARN(fmt::format("{}: forward fused {:.1f} ms, reference {:.1f} ms; forward+backward fused {:.1f} ms, "
                     "reference {:.1f} ms",
                     dtype_name(dt), fwd, fwd_ref, both, both_ref));
  }
  set_num_threads(before);
}
