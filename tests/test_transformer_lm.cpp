// TransformerLM, the causal Transformer decoder (MegaLM's baseline): causality, padding, float64
// gradchecks of the whole small model and of its loss, generation, the charlm task's
// configuration of it, and a short training run whose loss falls, with eval and generate on its
// checkpoint.
#include <fstream>
#include <set>
#include <catch2/catch.hpp>
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "mega/models.h"
#include "mega/train/checkpoint.h"
#include "mega/train/tasks.h"
#include "tests/test_util.h"

using namespace megagrad;
using Catch::Matchers::Contains;
using test::max_abs_diff;

namespace {
TransformerLMConfig tiny(bool learned, bool tied) {
  TransformerLMConfig c;
  c.embed_dim = 8, c.ffn_dim = 12, c.num_heads = 2, c.num_layers = 2, c.vocab_size = 9, c.max_positions = 16;
  c.learned_positions = learned, c.tie_weights = tied;
  return c;
}

// Noise on every parameter, so that no weight sits at its symmetric initial value (zero biases,
// unit norms) where a wrong gradient could still pass.
void add_noise(Module& m, uint64_t seed) {
  no_grad g;
  Generator gen(seed);
  for (auto& [n, p] : m.named_parameters()) p.add_(normal(p.shape(), 0, 0.3, p.dtype(), &gen));
}

Tensor tokens(std::vector<int64_t> v, int64_t B) { return Tensor::from_vector(v, {B, (int64_t)v.size() / B}); }
}  // namespace

TEST_CASE("TransformerLM: names, tied and untied output, learned and sinusoidal positions", "[models][transformer_lm]") {
  for (bool learned : {false, true})
    for (bool tied : {false, true}) {
      TransformerLM lm(tiny(learned, tied), 1);
      std::set<std::string> names;
      for (auto& [n, p] : lm.named_parameters()) names.insert(n);
      INFO("learned " << learned << " tied " << tied);
      CHECK(names.count("decoder.embed_tokens.weight") == 1);
      CHECK(names.count("decoder.layers.1.qkv.weight") == 1);
      CHECK(names.count("decoder.layers.0.fc2.bias") == 1);
      CHECK(names.count("decoder.final_norm.norm.weight") == 1);
      CHECK(names.count("decoder.embed_positions.weight") == (learned ? 1u : 0u));
      CHECK(names.count("decoder.output_projection.weight") == (tied ? 0u : 1u));
    }
  // Tying removes exactly the (V, D) projection; learned positions add exactly (max_positions, D).
  auto count = [](const TransformerLMConfig& c) {
    int64_t n = 0;
    for (auto& [name, p] : TransformerLM(c, 1).named_parameters()) n += p.numel();
    return n;
  };
  CHECK(count(tiny(false, false)) - count(tiny(false, true)) == 9 * 8);
  CHECK(count(tiny(true, false)) - count(tiny(false, false)) == 16 * 8);
}

TEST_CASE("TransformerLM: causal (float64, exact), right padding changes nothing before it", "[models][transformer_lm]") {
  for (bool learned : {false, true}) {
    TransformerLM lm(tiny(learned, !learned), 2);
    lm.to(DType::Float64);
    add_noise(lm, 3);
    lm.eval();
    no_grad g;
    INFO("learned positions " << learned);
    const std::vector<int64_t> seq{1, 5, 2, 8, 3, 3, 7, 4, 6, 2, 1, 4, 5, 8, 2, 3};  // two rows of 8
    Tensor full = lm.forward(tokens(seq, 2));
    REQUIRE(full.shape() == Shape{2, 8, 9});
    // Changing the token at position k (in row 1) leaves positions < k of both rows exactly as
    // they were, and changes position k itself (so the test can fail).
    for (int64_t k = 1; k < 8; ++k) {
      std::vector<int64_t> other = seq;
      other[(size_t)(8 + k)] = other[(size_t)(8 + k)] % 8 + 1;
      Tensor o = lm.forward(tokens(other, 2));
      CHECK(max_abs_diff(o.narrow(1, 0, k), full.narrow(1, 0, k)) == 0.0);
      CHECK(max_abs_diff(o.narrow(0, 0, 1), full.narrow(0, 0, 1)) == 0.0);
      CHECK(max_abs_diff(o.narrow(0, 1, 1).narrow(1, k, 1), full.narrow(0, 1, 1).narrow(1, k, 1)) > 1e-6);
    }
    // Right padding (id 0) and a row of its own: the real positions' logits are unchanged.
    Tensor row = lm.forward(tokens({1, 5, 2, 8, 3}, 1));
    Tensor padded = lm.forward(tokens({1, 5, 2, 8, 3, 0, 0}, 1));
    CHECK(max_abs_diff(padded.narrow(1, 0, 5), row) < 1e-12);
    CHECK(max_abs_diff(row, full.narrow(0, 0, 1).narrow(1, 0, 5)) < 1e-12);
  }
}

TEST_CASE("TransformerLM: whole-model gradchecks and the loss's (float64)", "[models][transformer_lm][gradcheck]") {
  for (bool learned : {false, true}) {
    TransformerLMConfig c = tiny(learned, learned);  // sinusoidal untied, learned tied
    c.num_layers = 1, c.vocab_size = 7;
    TransformerLM lm(c, 4);
    lm.to(DType::Float64);
    add_noise(lm, 5);
    Tensor t = tokens({1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1, 0}, 2);  // with a padding key in row 1
    INFO("learned positions and tied weights: " << learned);
    GradcheckResult r = gradcheck([&](const std::vector<Tensor>&) { return lm.forward(t); }, lm.parameters());
    INFO("logits: " << r.report());
    CHECK(r.passed);
    // The training loss: next-character cross-entropy.
    Tensor inputs = t.narrow(1, 0, 5), targets = t.narrow(1, 1, 5).contiguous();
    GradcheckResult rl = gradcheck(
        [&](const std::vector<Tensor>&) { return cross_entropy(lm.forward(inputs).reshape({-1, 7}), targets.reshape({-1})); },
        lm.parameters());
    INFO("loss: " << rl.report());
    CHECK(rl.passed);
  }
}

TEST_CASE("TransformerLM: generation is seeded, greedy at top_k 1, and windows the context", "[models][transformer_lm]") {
  TransformerLM lm(tiny(true, false), 6);
  lm.to(DType::Float64);
  add_noise(lm, 7);
  lm.eval();
  std::vector<int64_t> g1 = lm.generate({1, 5}, 30, 1.0, 0, 42), g2 = lm.generate({1, 5}, 30, 1.0, 0, 42);
  CHECK(g1 == g2);
  REQUIRE(g1.size() == 30);  // runs past max_positions 16: the window keeps the last 16 tokens
  for (int64_t id : g1) CHECK((id >= 1 && id < 9));
  std::vector<int64_t> greedy = lm.generate({1, 5, 3}, 2, 1.0, 1, 7);
  no_grad g;
  Tensor l = lm.forward(tokens({1, 5, 3}, 1));
  CHECK(greedy[0] == argmax(l.select(1, 2), -1).to_int_vector()[0]);
  Tensor l2 = lm.forward(tokens({1, 5, 3, greedy[0]}, 1));
  CHECK(greedy[1] == argmax(l2.select(1, 3), -1).to_int_vector()[0]);
  // With a context of 2, the next token depends on the last 2 only.
  std::vector<int64_t> w = lm.generate({4, 1, 5, 3}, 1, 1.0, 1, 0, 2);
  CHECK(w[0] == argmax(lm.forward(tokens({5, 3}, 1)).select(1, 1), -1).to_int_vector()[0]);
}

TEST_CASE("TransformerLM: errors name the op and the shapes", "[models][transformer_lm]") {
  TransformerLM lm(tiny(true, false), 8);
  CHECK_THROWS_WITH(lm.forward(tokens({1, 99}, 1)), Contains("[TransformerLM]") && Contains("99"));
  CHECK_THROWS_WITH(lm.forward(Tensor::zeros({1, 17}, DType::Int64)),
                    Contains("[TransformerLM]") && Contains("(1,17)") && Contains("max_positions 16"));
  CHECK_THROWS_WITH(lm.forward(Tensor::zeros({2, 3})), Contains("[TransformerLM]") && Contains("int64"));
  TransformerLMConfig bad = tiny(false, false);
  bad.num_heads = 3;
  CHECK_THROWS_WITH(TransformerLM(bad, 1), Contains("[TransformerLM]") && Contains("embed_dim 8") && Contains("num_heads 3"));
  CHECK_THROWS_WITH(lm.generate({}, 3, 1.0, 0, 0), Contains("[generate]") && Contains("prompt"));
}

namespace {
void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

Json charlm_config(const std::string& file, const std::string& model_json, const std::string& train_json = "{}") {
  Json over = Json::parse(R"({"data": {"seq_len": 16}})");
  Json d = over.at("data");
  d.set("file", file);
  over.set("data", d);
  over.set("model", Json::parse(model_json));
  over.set("train", Json::parse(train_json));
  return merge_run_config(default_run_config("charlm"), over, "test");
}
}  // namespace

TEST_CASE("charlm config: model type transformer is accepted; bad keys are [config] errors", "[transformer_lm][config]") {
  const Json ok = charlm_config("x.txt", R"({"type": "transformer"})");
  REQUIRE_NOTHROW(validate_run_config(ok));
  REQUIRE_NOTHROW(validate_run_config(charlm_config("x.txt", R"({"type": "transformer", "learned_positions": true,
                                                                  "max_positions": 16, "tie_weights": true})")));
  struct Case {
    const char* model;
    std::vector<std::string> expected;
  };
  const Case cases[] = {
      {R"({"type": "transformer", "heads": 3})", {"[config]", "model.embed_dim (128)", "model.heads (3)"}},
      {R"({"type": "transformer", "ffn_hidden_dim": 0})", {"[config]", "model.ffn_hidden_dim"}},
      {R"({"type": "transformer", "dropout": 1.0})", {"[config]", "model.dropout"}},
      {R"({"type": "transformer", "layers": 0})", {"[config]", "model.layers"}},
      {R"({"type": "transformer", "learned_positions": true, "max_positions": 8})",
       {"[config]", "model.max_positions (8)", "data.seq_len (16)"}},
      {R"({"type": "mega", "tie_weights": true})", {"[config]", "model.tie_weights", "only the Transformer"}},
      {R"({"type": "mega", "learned_positions": true})", {"[config]", "model.learned_positions"}},
      {R"({"type": "gru"})", {"[config]", "model type", "gru"}},
  };
  for (const Case& c : cases) {
    INFO(c.model);
    Json cfg = charlm_config("x.txt", c.model);
    try {
      validate_run_config(cfg);
      FAIL("no error");
    } catch (const Error& e) {
      for (const auto& s : c.expected) CHECK_THAT(e.what(), Contains(s));
    }
  }
  // Merging: a misspelt key and a wrong type are named.
  CHECK_THROWS_WITH(charlm_config("x.txt", R"({"type": "transformer", "tied": true})"),
                    Contains("[config]") && Contains("unknown key \"tied\""));
  CHECK_THROWS_WITH(charlm_config("x.txt", R"({"tie_weights": 1})"),
                    Contains("[config]") && Contains("model.tie_weights") && Contains("true or false"));
  // The ListOps configuration has no such keys.
  CHECK_THROWS_WITH(merge_run_config(default_run_config("listops"), Json::parse(R"({"model": {"tie_weights": true}})"), "x"),
                    Contains("unknown key \"tie_weights\""));
}

TEST_CASE("charlm with the Transformer: the loss falls; eval and generate work on its checkpoint", "[transformer_lm][train]") {
  test::TempDir dir("transformer_lm_train");
  std::string corpus;
  for (int i = 0; i < 40; ++i) corpus += "in the beginning god created the heaven and the earth. ";
  write_text(dir.file("corpus.txt"), corpus);
  const Json cfg = charlm_config(dir.file("corpus.txt"),
                                 R"({"type": "transformer", "layers": 1, "embed_dim": 16, "ffn_hidden_dim": 32, "heads": 2})",
                                 R"({"steps": 60, "batch_size": 8, "lr": 0.01, "warmup": 5, "eval_every": 60,
                                     "checkpoint_every": 60, "log_every": 20, "eval_batches": 4})");
  std::unique_ptr<TrainTask> task = make_task(cfg);
  REQUIRE(dynamic_cast<TransformerLM*>(&task->model()) != nullptr);
  const EvalResult before = task->evaluate("val", 4);
  TrainOptions o = train_options(cfg);
  o.out_dir = dir.file("run");
  TrainSummary s = train(*task, o);
  INFO("val loss before " << before.loss << ", after " << s.val.loss);
  REQUIRE(std::isfinite(s.val.loss));
  CHECK(s.val.loss < 0.6 * before.loss);  // ln(20 characters) ~ 3.0 at the start; a repeated sentence is easy
  // The checkpoint: eval rebuilds the Transformer from its configuration (as megagrad eval does).
  Checkpoint ck = load_checkpoint(dir.file("run/checkpoint.safetensors"));
  std::unique_ptr<TrainTask> again = make_task(Json::parse(ck.meta.at("config"), "config"));
  again->model().load_state_dict(ck.model);
  CHECK(std::abs(again->evaluate("val", 4).loss - task->evaluate("val", 4).loss) < 1e-6);
  // generate: seeded, and only characters of the corpus.
  const std::string a = generate_from_checkpoint(ck, "in the beginning ", 40, 0.8, 0, 3);
  CHECK(a == generate_from_checkpoint(ck, "in the beginning ", 40, 0.8, 0, 3));
  REQUIRE(a.size() == 40);
  const std::set<char> alphabet(corpus.begin(), corpus.end());
  for (char ch : a) CHECK(alphabet.count(ch) == 1);
}
