// A layer of your own: derive from Module, register parameters, a buffer and submodules (their
// names join with '.' into state_dict names, as in PyTorch), write forward(), train it, and save
// and load its state_dict. The layer, a gated residual block:
//     y = x + gain * sigmoid(gate(x)) * tanh(value(x))
// stacked in a small regressor fitted to y = sin(x0) + x1 * x2.
// Run (after `make`):   ./build/custom_layer      option: --steps N (200)
// Writes runs/examples/custom_layer.safetensors.
// Exits 1 when the loss did not fall or the reloaded model differs.
#include <megagrad/megagrad.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace megagrad;

class GatedResidual : public Module {
 public:
  GatedResidual(int64_t dim, Generator& gen)
      : value(register_module("value", std::make_shared<Linear>(dim, dim, gen, 0.3))),
        gate(register_module("gate", std::make_shared<Linear>(dim, dim, gen, 0.3))),
        gain(register_parameter("gain", Tensor::full({dim}, 0.5))),  // trained: requires grad
        // Saved and loaded, never trained (PyTorch's BatchNorm keeps the same counter).
        num_batches_tracked(register_buffer("num_batches_tracked", Tensor::zeros({}, DType::Int64))) {}

  Tensor forward(const Tensor& x) {
    ForwardScope scope(this);  // anomaly mode then names "blocks.1" in its messages
    if (is_training()) num_batches_tracked.set({}, num_batches_tracked.item() + 1);
    return x + gain * sigmoid(gate->forward(x)) * tanh(value->forward(x));
  }

  std::shared_ptr<Linear> value, gate;
  Tensor& gain;
  Tensor& num_batches_tracked;
};

// in -> embed -> GatedResidual x depth -> head -> one number. Container "blocks" numbers its
// children, so the names read blocks.0.gate.weight, blocks.1.gain, ...
class Regressor : public Module {
 public:
  Regressor(int64_t in, int64_t dim, int depth, uint64_t seed) : gen_(seed) {
    embed = register_module("embed", std::make_shared<Linear>(in, dim, gen_, 0.3));
    auto list = register_module("blocks", std::make_shared<Container>());
    for (int i = 0; i < depth; ++i)
      blocks.push_back(list->add_module(std::to_string(i), std::make_shared<GatedResidual>(dim, gen_)));
    head = register_module("head", std::make_shared<Linear>(dim, 1, gen_, 0.3));
  }

  Tensor forward(const Tensor& x) {  // x (B, in) -> (B)
    ForwardScope scope(this);
    Tensor h = embed->forward(x);
    for (auto& block : blocks) h = block->forward(h);
    return head->forward(h).reshape({x.size(0)});
  }

  std::shared_ptr<Linear> embed, head;
  std::vector<std::shared_ptr<GatedResidual>> blocks;

 private:
  Generator gen_;  // draws the initial weights, in registration order
};

// The function to learn, y = sin(x0) + x1 * x2, row by row: x (B, 3) -> y (B).
Tensor target(const Tensor& x) {
  std::vector<double> v = x.to_vector(), y;
  for (size_t i = 0; i < v.size(); i += 3) y.push_back(std::sin(v[i]) + v[i + 1] * v[i + 2]);
  return Tensor::from_vector(y, {x.size(0)});
}

int main(int argc, char** argv) {
  fix_openblas_core_or_reexec(argc, argv);
  int steps = argc == 3 && std::string(argv[1]) == "--steps" ? std::atoi(argv[2]) : argc == 1 ? 200 : 0;
  if (steps < 1) return std::fprintf(stderr, "usage: %s [--steps N >= 1]\n", argv[0]), 2;
  try {
    Regressor model(/*in*/ 3, /*dim*/ 16, /*depth*/ 2, /*seed*/ 1);
    std::printf("state_dict of Regressor (%lld parameters):\n", (long long)model.num_parameters());
    for (const auto& entry : model.state_dict())
      std::printf("  %-28s %s\n", entry.first.c_str(), entry.second.desc().c_str());

    Generator data(5);  // one fixed training set
    Tensor x = randn({256, 3}, DType::Float32, &data);
    Tensor y = target(x);
    AdamW opt(model.named_parameters(), {.lr = 1e-2, .weight_decay = 0});
    double first = 0, last = 0;
    for (int step = 1; step <= steps; ++step) {
      opt.zero_grad();
      Tensor loss = mean(square(model.forward(x) - y));
      loss.backward();
      opt.step();
      last = loss.item();
      if (step == 1) first = last;
      if (step == 1 || step % std::max(1, steps / 5) == 0 || step == steps)
        std::printf("step %4d  mse %.4f\n", step, last);
    }
    if (!(last < first)) throw std::runtime_error("the loss did not fall");

    // The state_dict round trip: to a safetensors file, then into a model with other weights.
    const std::string path = "runs/examples/custom_layer.safetensors";  // runs/ is git-ignored
    std::filesystem::create_directories("runs/examples");
    save_safetensors(path, model.state_dict());
    Regressor copy(3, 16, 2, /*seed*/ 42);
    copy.load_state_dict(load_safetensors(path).tensors);  // strict: every name, every shape
    no_grad guard;
    model.eval(), copy.eval();  // eval mode: forward leaves num_batches_tracked alone
    double diff = max(abs(model.forward(x) - copy.forward(x))).item();
    std::printf("saved and reloaded %s: outputs differ by %g, blocks.0.num_batches_tracked = %g\n",
                path.c_str(), diff, copy.blocks[0]->num_batches_tracked.item());
    if (diff != 0 || copy.blocks[0]->num_batches_tracked.item() != steps)
      throw std::runtime_error("the reloaded model differs from the saved one");
    std::printf("custom_layer: mse %.4f -> %.4f, state_dict reloaded exactly\n", first, last);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_layer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
