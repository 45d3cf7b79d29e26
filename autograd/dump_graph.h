// Writes the graph recorded behind a tensor as Graphviz DOT, for looking at what backward()
// will walk:   dump_graph(loss, "loss.dot");   then   dot -Tsvg loss.dot -o loss.svg
#pragma once
#include <string>
#include "core/tensor.h"

namespace megagrad {

// One DOT node per recorded op (its name and output shape; the op that made `t` is drawn with a
// double border) and per leaf that requires grad (its name, else its shape), and one edge
// input -> op for every input that needs a gradient. Inputs that need none (constants, targets)
// are not part of the recorded graph and are not drawn.
//
// The file is written atomically (a temporary file renamed over `path`). Throws
// "[dump_graph] ..." when t is undefined, has no graph (requires_grad is false), or the file
// cannot be written.
void dump_graph(const Tensor& t, const std::string& path);

// The same DOT text, as a string.
std::string graph_to_dot(const Tensor& t);

}  // namespace megagrad
