// Train a Mega classifier from C++ with the public API alone: a model from its config, a data
// loop of your own, AdamW with gradient clipping, and a checkpoint written, loaded into a fresh
// model and optimizer, and trained on from there exactly as the original would have been.
// The task, generated here: a sequence of 1s and 2s; are there more 2s than 1s?
// Run (after `make`):   ./build/train_mega        options: --steps N (150), --checkpoint FILE
//                                                (runs/examples/train_mega.safetensors)
// Exits 1 when the validation loss did not fall or the reloaded copy differs.
#include <megagrad/megagrad.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace megagrad;

constexpr int64_t kLength = 15;  // odd: no ties

struct Batch {
  Tensor tokens;  // (B, L) int64, ids 1 and 2 (0 is padding_idx, unused here)
  Tensor labels;  // (B) int64: 1 when 2s outnumber 1s
};

Batch make_batch(int64_t size, Generator& gen) {
  std::vector<double> coin = rand({size, kLength}, DType::Float64, &gen).to_vector();
  std::vector<int64_t> tokens, labels;
  for (int64_t i = 0; i < size; ++i) {
    int64_t twos = 0;
    for (int64_t j = 0; j < kLength; ++j) {
      tokens.push_back(coin[i * kLength + j] < 0.5 ? 1 : 2);
      twos += tokens.back() == 2;
    }
    labels.push_back(2 * twos > kLength);
  }
  return {Tensor::from_vector(tokens, {size, kLength}), Tensor::from_vector(labels, {size})};
}

// Loss and accuracy without recording a graph, with dropout (none here) off.
std::pair<double, double> evaluate(MegaClassifier& model, const Batch& b) {
  no_grad guard;
  model.eval();
  Tensor logits = model.forward(b.tokens);
  model.train();
  std::vector<int64_t> pred = argmax(logits, 1).to_int_vector(), truth = b.labels.to_int_vector();
  double correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == truth[i];
  return {cross_entropy(logits, b.labels).item(), correct / (double)pred.size()};
}

// One training step on one batch: forward, backward, clip, update. Returns the loss.
double train_step(MegaClassifier& model, AdamW& opt, const Batch& b) {
  opt.zero_grad();
  Tensor loss = cross_entropy(model.forward(b.tokens), b.labels);
  loss.backward();
  clip_grad_norm(opt.params(), 1.0);
  opt.step();
  return loss.item();
}

int main(int argc, char** argv) {
  fix_openblas_core_or_reexec(argc, argv);
  int steps = 150;
  std::string checkpoint = "runs/examples/train_mega.safetensors";  // runs/ is git-ignored
  for (int i = 1; i < argc; i += 2) {
    std::string flag = argv[i];
    if (i + 1 < argc && flag == "--steps") steps = std::atoi(argv[i + 1]);
    else if (i + 1 < argc && flag == "--checkpoint") checkpoint = argv[i + 1];
    else steps = 0;  // unknown: the usage below
  }
  if (steps < 1)
    return std::fprintf(stderr, "usage: %s [--steps N >= 1] [--checkpoint FILE]\n", argv[0]), 2;
  try {
    ClassifierConfig cfg;  // one small bidirectional Mega layer, then mean pooling and a head
    cfg.layer.embed_dim = 16, cfg.layer.hidden_dim = 32, cfg.layer.ffn_hidden_dim = 32;
    cfg.layer.z_dim = 8, cfg.layer.n_dim = 4, cfg.layer.max_positions = kLength;
    cfg.num_layers = 1, cfg.vocab_size = 3, cfg.classifier_dim = 16, cfg.num_classes = 2;
    MegaClassifier model(cfg, /*seed*/ 1);
    AdamW opt(model.named_parameters(), {.lr = 3e-3, .weight_decay = 0.01});
    std::printf("Mega classifier, %lld parameters; task: more 2s than 1s in %lld tokens?\n",
                (long long)model.num_parameters(), (long long)kLength);

    Generator data(2024);  // the data loop: a fresh batch of 32 every step, one fixed validation set
    Batch valid = make_batch(512, data);
    auto [first_loss, first_acc] = evaluate(model, valid);
    std::printf("step %4d  valid loss %.4f  accuracy %.1f%%\n", 0, first_loss, 100 * first_acc);
    double valid_loss = first_loss;
    for (int step = 1; step <= steps; ++step) {
      double loss = train_step(model, opt, make_batch(32, data));
      if (step % std::max(1, steps / 5) == 0 || step == steps) {
        auto [l, acc] = evaluate(model, valid);
        valid_loss = l;
        std::printf("step %4d  train loss %.4f  valid loss %.4f  accuracy %.1f%%\n", step, loss, l,
                    100 * acc);
      }
    }
    if (!(valid_loss < first_loss)) throw std::runtime_error("the validation loss did not fall");

    // The checkpoint: weights and optimizer state in one checksummed safetensors file.
    std::filesystem::create_directories(std::filesystem::absolute(checkpoint).parent_path());
    Checkpoint out;
    out.model = model.state_dict(), out.optimizer = opt.state_dict();
    out.meta["step"] = std::to_string(steps);  // free-form strings: what your resume needs
    save_checkpoint(checkpoint, out);
    Checkpoint ck = load_checkpoint(checkpoint);
    MegaClassifier copy(cfg, /*seed*/ 99);  // other initial weights, all overwritten by the load
    AdamW copy_opt(copy.named_parameters(), {.lr = 3e-3, .weight_decay = 0.01});
    copy.load_state_dict(ck.model);
    copy_opt.load_state_dict(ck.optimizer);
    std::printf("checkpoint %s: %zu weight and %zu optimizer tensors, step %s\n", checkpoint.c_str(),
                ck.model.size(), ck.optimizer.size(), ck.meta.at("step").c_str());

    // Both train one more step on the same batch: a resumed run continues bit for bit.
    Batch next = make_batch(32, data);
    train_step(model, opt, next);
    train_step(copy, copy_opt, next);
    NamedTensors mine = model.state_dict(), theirs = copy.state_dict();
    for (size_t i = 0; i < mine.size(); ++i)
      if (mine[i].second.to_vector() != theirs[i].second.to_vector())
        throw std::runtime_error("after one more step, the reloaded copy differs in " + mine[i].first);
    double last = evaluate(model, valid).first;
    std::printf("one more step each: all %zu weights equal bit for bit\n", mine.size());
    std::printf("train_mega: valid loss %.4f -> %.4f, checkpoint reloaded exactly\n", first_loss, last);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_mega: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
