// A tour of megagrad's reverse-mode autodiff, in five stops:
//   1. a forward pass records a graph: each op leaves a Node (its backward closure, an edge per input);
//   2. print that graph, and write it as Graphviz DOT with dump_graph;
//   3. the backward by hand (the chain rule written out), checked against the engine's backward();
//   4. an op of your own: a forward, then record() attaches its backward closure;
//   5. gradcheck: its backward against finite differences, and a wrong backward caught.
// Run (after `make`):   ./build/autodiff_tour     option: --dot FILE (runs/examples/autodiff_tour.dot)
// Draw the graph:       dot -Tsvg runs/examples/autodiff_tour.dot -o graph.svg
// Exits 1 when a check fails, so the test suite runs it as a test.
#include <megagrad/megagrad.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace megagrad;

// Stop 2: walk from the output's grad_fn along the `next` edges, as the engine does. Leaves show
// up as "accumulate_grad" nodes: the node that adds a gradient into the leaf's .grad. (A node
// reached along two paths would print twice; the engine runs it once, with the two gradients summed.)
void print_graph(const std::shared_ptr<Node>& node, int depth = 0) {
  if (!node) return;  // an input that needs no gradient (x here) has no edge
  std::string what(node->op);
  if (auto leaf = node->leaf.lock()) what += " -> " + leaf->name + ".grad";
  std::printf("  %*s%s %s\n", 2 * depth, "", what.c_str(), shape_str(node->output_shape).c_str());
  for (const auto& input : node->next) print_graph(input, depth + 1);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  no_grad guard;
  return max(abs(a - b)).item();
}

// Stop 4: softplus(x) = log(1 + exp(x)), written stably as relu(x) + log(1 + exp(-|x|)).
// Its forward is made of library ops run under no_grad, so they record nothing: the graph gets
// one "softplus" node whose backward is ours, d softplus/dx = sigmoid(x). `slope` scales that
// derivative: 1 is right, anything else is the kind of bug gradcheck exists to find.
Tensor softplus(const Tensor& x, const char* op = "softplus", double slope = 1.0) {
  Tensor y;
  {
    no_grad guard;
    y = relu(x) + log(exp(-abs(x)) + 1.0);
  }
  if (needs_grad(x)) {
    Tensor saved = x.detach();  // capture data only: a captured output would own its own node (a cycle)
    record(op, {x}, y, [saved, slope](const Tensor& grad_output) {
      return std::vector<Tensor>{grad_output * sigmoid(saved) * slope};  // one gradient per input
    });
  }
  return y;
}

int main(int argc, char** argv) {
  fix_openblas_core_or_reexec(argc, argv);
  std::string dot_path = "runs/examples/autodiff_tour.dot";  // runs/ is git-ignored
  if (argc == 3 && std::strcmp(argv[1], "--dot") == 0) dot_path = argv[2];
  else if (argc != 1) return std::fprintf(stderr, "usage: %s [--dot FILE]\n", argv[0]), 2;
  try {
    // ---- 1. A forward pass: loss = mean(tanh(x W^T + b)^2), in float64 so that checks can be tight.
    Generator gen(7);
    Tensor x = randn({4, 3}, DType::Float64, &gen).set_name("x");  // data: no grad
    Tensor W = randn({2, 3}, DType::Float64, &gen).requires_grad_().set_name("W");
    Tensor b = randn({2}, DType::Float64, &gen).requires_grad_().set_name("b");
    Tensor z = linear(x, W, b);  // (4,2)
    Tensor h = tanh(z);
    Tensor loss = mean(square(h)).set_name("loss");
    std::printf("1. forward: loss = mean(tanh(x W^T + b)^2) = %.6f\n", loss.item());

    // ---- 2. The graph behind loss.
    std::printf("2. the graph backward() will walk, from loss to the leaves:\n");
    print_graph(loss.grad_fn());
    std::filesystem::create_directories(std::filesystem::absolute(dot_path).parent_path());
    dump_graph(loss, dot_path);
    std::printf("   written as Graphviz DOT to %s\n", dot_path.c_str());

    // ---- 3. The backward by hand, one chain-rule step per op, last op first.
    Tensor dW_hand, db_hand;
    {
      no_grad guard;  // the hand computation is not part of any graph
      Tensor hd = h.detach();
      Tensor dh = hd * (2.0 / (double)hd.numel());  // d mean(h^2) / dh = 2h / N
      Tensor dz = dh * (1.0 - square(hd));            // tanh' = 1 - tanh^2
      dW_hand = matmul(dz.t(), x);                    // z = x W^T + b:  dL/dW = dz^T x
      db_hand = sum(dz, {0});                         //                 dL/db = sum of dz's rows
    }
    loss.backward();  // the engine: the same steps, in topological order, into W.grad and b.grad
    double err = std::max(max_abs_diff(dW_hand, W.grad()), max_abs_diff(db_hand, b.grad()));
    const double kHandTolerance = 1e-12;  // the same float64 sums in another order
    std::printf("3. by hand vs backward(): W.grad, b.grad differ by at most %.2e (tolerance %.0e)\n",
                err, kHandTolerance);
    std::printf("   W.grad = %s\n", W.grad().str().c_str());
    if (!(err <= kHandTolerance))
      throw std::runtime_error("the hand backward disagrees with the engine");

    // ---- 4. An op of our own. record() refuses names it does not know, so register it first.
    register_custom_op("softplus");
    register_custom_op("softplus_buggy");
    Tensor s = Tensor::from_vector({-3.0, -1.0, 0.0, 1.0, 3.0}, {5}, DType::Float64);
    s.requires_grad_().set_name("s");
    Tensor y = softplus(s);
    Tensor total = sum(y);
    std::printf("4. an op of our own, one node in the graph:\n");
    print_graph(total.grad_fn());
    total.backward();
    std::printf("   softplus(%s)\n   = %s\n   s.grad = %s (sigmoid)\n", s.str().c_str(), y.str().c_str(),
                s.grad().str().c_str());

    // ---- 5. gradcheck: analytic gradients against central differences on random inputs.
    Tensor u = normal({3, 4}, 0, 2, DType::Float64, &gen).requires_grad_();
    GradcheckResult good = gradcheck([](const std::vector<Tensor>& in) { return softplus(in[0]); }, {u});
    GradcheckResult bad = gradcheck(
        [](const std::vector<Tensor>& in) { return softplus(in[0], "softplus_buggy", 1.01); }, {u});
    std::printf("5. gradcheck softplus:               %s\n", good.report().c_str());
    std::printf("   gradcheck softplus, slope off 1%%: %s\n", bad.report().c_str());
    if (!good.passed) throw std::runtime_error("gradcheck failed on the correct softplus");
    if (bad.passed) throw std::runtime_error("gradcheck missed the wrong softplus backward");
    std::printf("autodiff tour: all checks passed\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "autodiff_tour: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
