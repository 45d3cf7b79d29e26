// All gradcheck cases of the library, gathered here at the top layer so that the fused Mega ops'
// cases (mega/*/) join the primitive ops' (autograd/).
#include "autograd/gradcheck_cases.h"
#include "mega/attention/attention_gradcheck.h"
#include "mega/cross_attention/cross_attention_gradcheck.h"
#include "mega/ema/ema_gradcheck.h"
#include "mega/gates/gates_gradcheck.h"

namespace megagrad {

std::vector<GradcheckCase> all_gradcheck_cases() {
  std::vector<GradcheckCase> cases;
  add_view_cases(cases);
  add_elementwise_cases(cases);
  add_reduce_cases(cases);
  add_linalg_cases(cases);
  add_nn_cases(cases);
  add_index_cases(cases);
  add_ema_cases(cases);
  add_attention_cases(cases);
  add_cross_attention_cases(cases);
  add_gates_cases(cases);
  return cases;
}

}  // namespace megagrad
