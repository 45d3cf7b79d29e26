// dump_graph: the DOT file holds one node per op and per leaf, one edge per input that needs a
// gradient, and is written atomically.
#include <catch2/catch.hpp>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include "autograd/dump_graph.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"

using namespace megagrad;
namespace fs = std::filesystem;

namespace {

struct DotCounts {
  int nodes = 0, edges = 0;
  std::string text;
};

DotCounts read_dot(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  DotCounts c;
  c.text = ss.str();
  std::istringstream lines(c.text);
  std::string line;
  static const std::regex node_re(R"(^  n\d+ \[label=)"), edge_re(R"(^  n\d+ -> n\d+ )");
  while (std::getline(lines, line)) {
    if (std::regex_search(line, node_re)) ++c.nodes;
    if (std::regex_search(line, edge_re)) ++c.edges;
  }
  return c;
}

// A fresh folder per test, removed at its end.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("megagrad_dump_graph_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const char* name) const { return (path / name).string(); }
};

Tensor leaf(const Shape& s, const char* name, double v = 0.5) {
  Tensor t = Tensor::full(s, v, DType::Float64);
  t.requires_grad_();
  t.set_name(name);
  return t;
}

}  // namespace

TEST_CASE("dump_graph: ops, leaves and edges of sum(exp(x) * y)", "[dump_graph]") {
  Tensor x = leaf({2, 3}, "x"), y = leaf({3}, "y");
  Tensor l = sum(exp(x) * y);
  TempDir dir;
  std::string path = dir.file("simple.dot");
  dump_graph(l, path);
  DotCounts c = read_dot(path);
  INFO(c.text);
  // sum, mul, exp + leaves x, y; edges mul->sum, exp->mul, y->mul, x->exp.
  REQUIRE(c.nodes == 5);
  REQUIRE(c.edges == 4);
  REQUIRE(c.text.rfind("digraph", 0) == 0);
  REQUIRE(c.text.find("\"sum\\n()\"") != std::string::npos);
  REQUIRE(c.text.find("\"mul\\n(2,3)\"") != std::string::npos);
  REQUIRE(c.text.find("\"exp\\n(2,3)\"") != std::string::npos);
  REQUIRE(c.text.find("\"x\\n(2,3) float64\"") != std::string::npos);
  REQUIRE(c.text.find("\"y\\n(3) float64\"") != std::string::npos);
  REQUIRE(c.text.find("peripheries=2") != std::string::npos);  // the root is marked
  // No temporary file left behind.
  for (auto& e : fs::directory_iterator(dir.path))
    REQUIRE(e.path().filename().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("dump_graph: a leaf used twice is one node; constants are not drawn", "[dump_graph]") {
  Tensor x = leaf({4}, "x");
  Tensor k = Tensor::full({4}, 2.0, DType::Float64);  // needs no grad
  Tensor z = add(mul(x, x), mul(x, k));
  std::string dot = graph_to_dot(z);
  TempDir dir;
  std::string path = dir.file("shared.dot");
  dump_graph(z, path);
  DotCounts c = read_dot(path);
  INFO(c.text);
  REQUIRE(c.text == dot);
  // add, mul(x,x), mul(x,k), x; edges: 2 into add, 2 from x into the first mul, 1 into the second.
  REQUIRE(c.nodes == 4);
  REQUIRE(c.edges == 5);
}

TEST_CASE("dump_graph: a long chain is walked without recursion", "[dump_graph]") {
  Tensor x = leaf({1}, "x");
  Tensor y = x;
  const int n = 50000;
  for (int i = 0; i < n; ++i) y = add_scalar(y, 1.0);
  TempDir dir;
  std::string path = dir.file("chain.dot");
  dump_graph(y, path);
  DotCounts c = read_dot(path);
  REQUIRE(c.nodes == n + 1);
  REQUIRE(c.edges == n);
}

TEST_CASE("dump_graph: a lone leaf, names are escaped, freed graphs are marked", "[dump_graph]") {
  Tensor w = leaf({2}, "w \"quoted\"");
  DotCounts c;
  c.text = graph_to_dot(w);
  REQUIRE(c.text.find("w \\\"quoted\\\"") != std::string::npos);

  Tensor l = sum(square(w));
  l.set_name("loss");
  REQUIRE(graph_to_dot(l).find("\"loss = sum\\n()\"") != std::string::npos);
  l.backward();
  std::string after = graph_to_dot(l);
  REQUIRE(after.find("freed by backward") != std::string::npos);
}

TEST_CASE("dump_graph: clear errors", "[dump_graph]") {
  TempDir dir;
  Tensor plain = Tensor::ones({3});
  REQUIRE_THROWS_WITH(dump_graph(plain, dir.file("no.dot")),
                      Catch::StartsWith("[dump_graph] tensor (3) float32 cpu has no recorded graph"));
  REQUIRE_THROWS_WITH(dump_graph(Tensor(), dir.file("x.dot")), Catch::StartsWith("[dump_graph]"));
  REQUIRE(fs::is_empty(dir.path));  // failures leave no file behind
  Tensor x = leaf({2}, "x");
  Tensor y = exp(x);
  REQUIRE_THROWS_WITH(dump_graph(y, "/nonexistent_dir_megagrad/g.dot"),
                      Catch::StartsWith("[dump_graph] cannot open /nonexistent_dir_megagrad/g.dot.tmp."));
  {
    no_grad guard;
    Tensor z = exp(x);
    REQUIRE_THROWS_WITH(dump_graph(z, dir.file("z.dot")), Catch::Contains("no_grad"));
  }
}
