// dump_graph: the recorded graph as Graphviz DOT. The walk is iterative (an explicit stack), so
// a graph of 100,000 ops does not overflow the call stack.
#include "autograd/dump_graph.h"
#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <unordered_map>
#include <vector>
#include "autograd/node.h"

namespace megagrad {

namespace {

// A DOT double-quoted string: escape backslashes and quotes, keep newlines as \n.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string leaf_label(const Node& n) {
  auto leaf = n.leaf.lock();
  if (!leaf) return "leaf (freed)\n" + shape_str(n.output_shape);
  std::string shape = shape_str(leaf->shape) + " " + std::string(dtype_name(leaf->dtype));
  return leaf->name.empty() ? "leaf\n" + shape : leaf->name + "\n" + shape;
}

}  // namespace

std::string graph_to_dot(const Tensor& t) {
  MG_CHECK(t.defined(), "dump_graph", "the tensor is undefined");
  MG_CHECK(t.requires_grad(), "dump_graph",
           "tensor {} has no recorded graph (requires_grad is false; was it computed under "
           "no_grad, or from inputs that do not require grad?)",
           t.desc());

  // The root: the op that made t, or t's own accumulator when t is a leaf. A leaf that was never
  // used by an op has no accumulator yet; draw it alone.
  std::string out = "digraph megagrad {\n  rankdir=BT;\n  node [fontname=\"Helvetica\"];\n";
  std::shared_ptr<Node> root = t.is_leaf() ? t.impl().grad_accumulator : t.grad_fn();
  if (!root) {
    std::string shape = shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype()));
    out += fmt::format("  n0 [label={}, shape=box, style=filled, fillcolor=lightblue, peripheries=2];\n",
                       quoted((t.name().empty() ? "leaf" : t.name()) + "\n" + shape));
    return out + "}\n";
  }

  // Number the nodes in depth-first order from the root; each node is emitted once, with the
  // edges from its inputs.
  std::unordered_map<const Node*, int> id;
  std::vector<const Node*> stack{root.get()};
  id[root.get()] = 0;
  std::string edges;
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    int nid = id.at(n);
    std::string extra = n == root.get() ? ", peripheries=2" : "";
    if (n->is_accumulator()) {
      out += fmt::format("  n{} [label={}, shape=box, style=filled, fillcolor=lightblue{}];\n", nid,
                         quoted(leaf_label(*n)), extra);
      continue;
    }
    std::string label = std::string(n->op) + "\n" + shape_str(n->output_shape);
    if (n == root.get() && !t.name().empty()) label = t.name() + " = " + label;
    if (n->released) label += "\n(freed by backward)";
    out += fmt::format("  n{} [label={}, shape=ellipse{}];\n", nid, quoted(label), extra);
    for (size_t i = 0; i < n->next.size(); ++i) {
      const Node* c = n->next[i].get();
      if (!c) continue;
      auto [it, inserted] = id.try_emplace(c, (int)id.size());
      if (inserted) stack.push_back(c);
      edges += fmt::format("  n{} -> n{} [label=\"{}\"];\n", it->second, nid, i);
    }
  }
  return out + edges + "}\n";
}

void dump_graph(const Tensor& t, const std::string& path) {
  std::string dot = graph_to_dot(t);
  // Write next to the target, then rename: a reader never sees a half-written file.
  std::string tmp = fmt::format("{}.tmp.{}", path, (long)getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("dump_graph", "cannot open {} for writing: {}", tmp, std::strerror(errno));
    f << dot;
    f.flush();
    if (!f) {
      int e = errno;
      std::remove(tmp.c_str());
      fail("dump_graph", "cannot write {}: {}", tmp, std::strerror(e));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    fail("dump_graph", "cannot rename {} to {}: {}", tmp, path, std::strerror(e));
  }
}

}  // namespace megagrad
