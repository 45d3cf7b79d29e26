// Gradcheck cases for the index ops. TODO(owner of this file): add the cases.
#include "autograd/gradcheck_cases.h"

namespace megagrad {
void add_index_cases(std::vector<GradcheckCase>& cases) { (void)cases; }
}  // namespace megagrad
