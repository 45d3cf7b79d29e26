// Built by tests/install/check_install.sh against an installed megagrad: one include, an op with
// its gradient, then a tiny Mega classifier trained a few AdamW steps on one batch.
#include <megagrad/megagrad.h>

#include <cmath>
#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  using namespace megagrad;
  fix_openblas_core_or_reexec(argc, argv);
  try {
    // d/dx sum(x exp(x)) = exp(x) (1 + x)
    Tensor x = Tensor::from_vector({0.5, -1.0, 2.0}, {3}, DType::Float64).requires_grad_();
    sum(x * exp(x)).backward();
    for (int64_t i = 0; i < 3; ++i) {
      double v = x.at({i}), want = std::exp(v) * (1 + v), got = x.grad().at({i});
      if (std::abs(got - want) > 1e-12) {
        std::fprintf(stderr, "downstream: error: grad[%lld] = %.17g, want %.17g\n", (long long)i, got, want);
        return 1;
      }
    }

    ClassifierConfig c;
    c.layer.embed_dim = 8, c.layer.hidden_dim = 16, c.layer.ffn_hidden_dim = 16, c.layer.z_dim = 4;
    c.layer.n_dim = 2, c.layer.max_positions = 16;
    c.num_layers = 1, c.vocab_size = 6, c.classifier_dim = 8, c.num_classes = 2;
    MegaClassifier model(c, 1);
    Tensor tokens = Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 4, 3, 2}, {2, 4});
    Tensor target = Tensor::from_vector(std::vector<int64_t>{0, 1}, {2});
    AdamW opt(model.named_parameters(), AdamWOptions{.lr = 1e-2, .weight_decay = 0});
    double first = 0, last = 0;
    for (int step = 0; step < 20; ++step) {
      opt.zero_grad();
      Tensor loss = cross_entropy(model.forward(tokens), target);
      loss.backward();
      opt.step();
      last = loss.item();
      if (step == 0) first = last;
    }
    if (!(last < first)) {
      std::fprintf(stderr, "downstream: error: loss did not fall (%.6f -> %.6f)\n", first, last);
      return 1;
    }
    std::printf("downstream: ok (megagrad %s, %s; loss %.4f -> %.4f)\n", MEGAGRAD_VERSION,
                build_target().c_str(), first, last);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "downstream: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
