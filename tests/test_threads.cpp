// Thread safety: two models trained at once in two threads give exactly what each gives alone.
// `make test-tsan` runs these tests under ThreadSanitizer (README: "Threads").
#include <catch2/catch.hpp>
#include <atomic>
#include <thread>
#include "autograd/ops.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "mega/layers.h"
#include "mega/optim.h"

using namespace megagrad;

namespace {
// A small training run of one Mega layer (dropout on: it draws from the thread's default
// generator) on random regression data; returns the loss of every step.
std::vector<double> train_small(uint64_t seed, int steps) {
  MegaLayerConfig c;
  c.embed_dim = 16, c.hidden_dim = 32, c.ffn_hidden_dim = 32, c.z_dim = 8, c.n_dim = 4, c.chunk_size = 8;
  c.dropout = 0.1, c.attention_dropout = 0.1, c.hidden_dropout = 0.1;
  MegaLayer layer(c, seed);
  AdamW opt(layer.named_parameters());
  manual_seed(seed);  // this thread's dropout masks
  Generator data(seed + 100);
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    Tensor x = normal({4, 32, 16}, 0, 1, DType::Float32, &data);
    Tensor target = normal({4, 32, 16}, 0, 1, DType::Float32, &data);
    Tensor loss = mean(square(sub(layer.forward(x), target)));
    opt.zero_grad();
    loss.backward();
    opt.step();
    losses.push_back(loss.item());
  }
  return losses;
}
}  // namespace

TEST_CASE("threads: two models train in two threads at once, each as it does alone", "[threads]") {
  const int steps = 6;
  std::vector<double> alone1 = train_small(1, steps), alone2 = train_small(2, steps);
  REQUIRE(alone1 != alone2);
  std::vector<double> t1, t2;
  std::thread a([&] { t1 = train_small(1, steps); });
  std::thread b([&] { t2 = train_small(2, steps); });
  a.join();
  b.join();
  // Same values bit for bit: the threads share the pool and the allocator, never their state.
  REQUIRE(t1 == alone1);
  REQUIRE(t2 == alone2);
}

TEST_CASE("threads: each thread has its own default generator", "[threads]") {
  manual_seed(5);
  uint64_t mine = default_generator().advance(10);
  uint64_t other_offset = 1, other_seed = 1;
  std::thread([&] {
    other_seed = default_generator().seed();
    other_offset = default_generator().offset();
  }).join();
  REQUIRE(mine == 0);
  REQUIRE(default_generator().offset() == 10);
  REQUIRE(other_seed == 0);  // a new thread starts from seed 0, offset 0
  REQUIRE(other_offset == 0);
}

TEST_CASE("threads: set_num_threads while another thread runs parallel loops", "[threads]") {
  const int before = get_num_threads();
  std::atomic<bool> stop{false};
  int64_t wrong = 0, loops = 0;  // Catch2's assertions are not thread-safe: the worker counts
  std::thread worker([&] {
    Tensor x = Tensor::ones({1 << 18});
    for (; !stop || loops < 3; ++loops) wrong += sum(x).item() != double(1 << 18);
  });
  for (int n : {1, 2, 3, 1, before}) set_num_threads(n);
  stop = true;
  worker.join();
  REQUIRE(loops >= 3);
  REQUIRE(wrong == 0);
  REQUIRE(get_num_threads() == before);
}
