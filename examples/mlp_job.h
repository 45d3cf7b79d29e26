// The two-layer MLP job shared by examples/mlp.cpp and `megagrad demo`: a noisy 2-D spiral of
// C classes, fitted by
//     logits = linear(tanh(linear(x, W1, b1)), W2, b2),   loss = cross_entropy(logits, y)
// with full-batch Adam written inline under no_grad.
//
// Shapes: P points (C classes of N each), H hidden units.
//   X (P,2)  y (P) int64  W1 (H,2)  b1 (H)  W2 (C,H)  b2 (C)  logits (P,C)
//
// A header (not a .cpp) because CMake turns every examples/*.cpp into a program of its own.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>
#include "autograd/dump_graph.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/rng.h"

namespace megagrad::mlp_job {

struct Options {
  int steps = 800;
  uint64_t seed = 0;
  int points_per_class = 200;  // N
  int classes = 3;             // C
  int hidden = 64;             // H
  double lr = 0.02;            // Adam step size
  int print_every = 0;         // 0: about ten lines over the run
  std::string dump_graph;      // when set: the first step's graph, as Graphviz DOT, to this file
};

struct Result {
  double first_loss = 0, final_loss = 0;
  double train_accuracy = 0;  // in [0, 1]
  double test_accuracy = 0;   // on a second spiral drawn with other noise
  double chance = 0;          // 1 / C
  int steps = 0;
  double seconds = 0;
};

struct Data {
  Tensor x;  // (P,2) float32
  Tensor y;  // (P) int64
};

// Class c's arm: radius r = i/N from 0 to 1, angle from 4c to 4(c+1) radians plus N(0, 0.2)
// noise (the CS231n spiral). Noise comes from (seed, i): the data do not depend on threads.
inline Data make_spiral(int n, int classes, uint64_t seed) {
  std::vector<double> xs;
  std::vector<int64_t> ys;
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < n; ++i) {
      double r = (double)i / (n - 1);
      double noise = normal_at(seed, (uint64_t)(c * n + i), 0.0, 0.2);
      double theta = 4.0 * c + 4.0 * r + noise;
      xs.push_back(r * std::sin(theta));
      xs.push_back(r * std::cos(theta));
      ys.push_back(c);
    }
  return {Tensor::from_vector(xs, {(int64_t)ys.size(), 2}), Tensor::from_vector(ys, {(int64_t)ys.size()})};
}

// A parameter (leaf that requires grad) with PyTorch's nn.Linear init: U(-1/sqrt(in), 1/sqrt(in)).
inline Tensor make_param(const Shape& shape, int64_t fan_in, Generator& g, const char* name) {
  double bound = 1.0 / std::sqrt((double)fan_in);
  Tensor p = uniform(shape, -bound, bound, DType::Float32, &g);
  p.requires_grad_();
  p.set_name(name);
  return p;
}

// Adam (Kingma & Ba 2015), bias-corrected, no weight decay: m and v are running means of g and
// g^2; the step is lr * m_hat / (sqrt(v_hat) + eps).
class Adam {
 public:
  Adam(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
    for (const Tensor& p : params_) {
      m_.push_back(Tensor::zeros(p.shape(), p.dtype()));
      v_.push_back(Tensor::zeros(p.shape(), p.dtype()));
    }
  }

  void step() {
    no_grad guard;  // the update itself is not part of any graph
    ++t_;
    const double bc1 = 1 - std::pow(kBeta1, t_), bc2 = 1 - std::pow(kBeta2, t_);
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor g = params_[i].grad();
      if (!g.defined()) continue;
      m_[i].mul_(kBeta1).add_(g, 1 - kBeta1);
      v_[i].mul_(kBeta2).add_(square(g), 1 - kBeta2);
      Tensor m_hat = m_[i] / bc1, v_hat = v_[i] / bc2;
      params_[i].add_(m_hat / (sqrt(v_hat) + kEps), -lr_);
    }
  }

  void zero_grad() {
    for (Tensor& p : params_) p.zero_grad();
  }

 private:
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
  std::vector<Tensor> params_, m_, v_;
  double lr_;
  int t_ = 0;
};

// Trains and prints the loss every few steps, then returns the numbers (the caller prints the
// result line).
inline Result run(const Options& o, std::FILE* out = stdout) {
  MG_CHECK(o.steps >= 1 && o.points_per_class >= 2 && o.classes >= 2 && o.hidden >= 1, "mlp",
           "bad options: steps {}, points per class {}, classes {}, hidden {}", o.steps,
           o.points_per_class, o.classes, o.hidden);
  auto t0 = std::chrono::steady_clock::now();
  Data d = make_spiral(o.points_per_class, o.classes, o.seed);
  Generator g(o.seed + 1);
  Tensor w1 = make_param({o.hidden, 2}, 2, g, "W1"), b1 = make_param({o.hidden}, 2, g, "b1");
  Tensor w2 = make_param({o.classes, o.hidden}, o.hidden, g, "W2"),
         b2 = make_param({o.classes}, o.hidden, g, "b2");
  Adam opt({w1, b1, w2, b2}, o.lr);
  auto model = [&](const Tensor& x) { return linear(tanh(linear(x, w1, b1)), w2, b2); };

  int every = o.print_every > 0 ? o.print_every : std::max(1, o.steps / 10);
  std::fprintf(out, "spiral: %lld points, %d classes; MLP 2 -> %d (tanh) -> %d; Adam lr %g\n",
               (long long)d.y.numel(), o.classes, o.hidden, o.classes, o.lr);
  Result r;
  r.steps = o.steps;
  r.chance = 1.0 / o.classes;
  for (int step = 0; step < o.steps; ++step) {
    Tensor loss = cross_entropy(model(d.x), d.y);
    if (step == 0 && !o.dump_graph.empty()) {
      loss.set_name("loss");
      megagrad::dump_graph(loss, o.dump_graph);
      std::fprintf(out, "graph of one step written to %s\n", o.dump_graph.c_str());
    }
    opt.zero_grad();
    loss.backward();
    opt.step();
    double l = loss.item();
    if (step == 0) r.first_loss = l;
    if (step % every == 0 || step == o.steps - 1)
      std::fprintf(out, "step %5d/%d  loss %.4f\n", step + 1, o.steps, l);
  }

  // Final loss and accuracy with the trained weights, on the training points and on held-out
  // points (the same spiral with fresh noise).
  no_grad guard;
  auto accuracy = [&](const Data& data) {
    Tensor logits = model(data.x);
    std::vector<int64_t> pred = argmax(logits, 1).to_int_vector(), truth = data.y.to_int_vector();
    int64_t correct = 0;
    for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == truth[i];
    return (double)correct / (double)pred.size();
  };
  r.final_loss = cross_entropy(model(d.x), d.y).item();
  r.train_accuracy = accuracy(d);
  r.test_accuracy = accuracy(make_spiral(o.points_per_class, o.classes, o.seed + 0x9E3779B97F4A7C15ull));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// "final train accuracy 99.7%, held-out 98.5% (chance 33.3%); loss 1.0432 -> 0.0160 in 800 steps, 0.6 s"
inline void print_result(const Result& r, std::FILE* out = stdout) {
  std::fprintf(out,
               "final train accuracy %.1f%%, held-out %.1f%% (chance %.1f%%); loss %.4f -> %.4f in "
               "%d steps, %.1f s\n",
               100 * r.train_accuracy, 100 * r.test_accuracy, 100 * r.chance, r.first_loss,
               r.final_loss, r.steps, r.seconds);
}

}  // namespace megagrad::mlp_job
