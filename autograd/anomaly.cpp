#include "autograd/anomaly.h"
#include <cmath>
#include <vector>
#include "core/dispatch.h"

namespace megagrad {

namespace {
thread_local bool t_anomaly_enabled = false;
thread_local std::vector<const NamedScope*> t_scopes;
}  // namespace

bool AnomalyMode::is_enabled() { return t_anomaly_enabled; }
void AnomalyMode::set_enabled(bool enabled) { t_anomaly_enabled = enabled; }

ForwardScope::ForwardScope(const NamedScope* scope) { t_scopes.push_back(scope); }
ForwardScope::~ForwardScope() { t_scopes.pop_back(); }

std::string current_scope_path() { return t_scopes.empty() ? std::string() : t_scopes.back()->scope_path(); }

void check_finite(const Tensor& t, std::string_view context, std::string_view role) {
  if (!t.defined() || !is_floating(t.dtype())) return;
  Tensor c = t.device().is_cpu() ? t.detach().contiguous() : t.detach().cpu();  // a GPU tensor: checked on a host copy
  int64_t n = c.numel(), bad = 0, first = -1;
  bool first_is_nan = false;
  dispatch_float("anomaly", c.dtype(), [&]<typename T>() {
    const T* p = c.data_ptr<T>();
    for (int64_t i = 0; i < n; ++i) {
      if (std::isfinite(p[i])) continue;
      if (bad++ == 0) {
        first = i;
        first_is_nan = std::isnan(p[i]);
      }
    }
  });
  if (bad == 0) return;
  std::string index;
  for (int64_t i : unravel_index(first, c.shape())) {
    if (!index.empty()) index += ',';
    index += std::to_string(i);
  }
  fail("anomaly", "{} produced {} in {} {} (first at [{}]; {} of {} values are not finite)", context,
       first_is_nan ? "NaN" : "Inf", role, t.desc(), index, bad, n);
}

}  // namespace megagrad
