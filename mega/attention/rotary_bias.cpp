// The rotary bias's table, its backward and its composed form (rotary_bias.h).
#include "mega/attention/rotary_bias.h"
#include <cmath>
#include "autograd/ops.h"
#include "mega/attention/rotary_coeffs.h"

namespace megagrad {

std::vector<double> rotary_theta(int64_t Z) {
  const int64_t half = Z / 2;
  std::vector<double> th((size_t)half);
  for (int64_t kk = 0; kk < half; ++kk) th[(size_t)kk] = rotary_theta_at(kk, half);
  return th;
}

// With x = x1 + i x2 as complex numbers, rot(a)_i . rot(b)_j = Re(a conj(b) e^{i theta (i-j)}), so
// with e = j - i
//   rel(e) = sum_k (a1 b1 + a2 b2) cos(theta_k e) - (a1 b2 - a2 b1) sin(theta_k e).
std::vector<double> rotary_bias_table(const Tensor& alpha, const Tensor& beta, int64_t C) {
  std::vector<double> a = alpha.to_vector(), b = beta.to_vector();
  const int64_t Z = (int64_t)a.size(), half = Z / 2;
  std::vector<double> th = rotary_theta(Z), rel((size_t)(2 * C - 1));
  std::vector<RotaryPQ> pq((size_t)half);
  for (int64_t kk = 0; kk < half; ++kk)
    pq[(size_t)kk] = rotary_pq(a[(size_t)kk], a[(size_t)(kk + half)], b[(size_t)kk], b[(size_t)(kk + half)]);
  // e and -e share their cosines, and their sines differ in sign: half the trigonometric calls.
  for (int64_t e = 0; e < C; ++e) {
    double pc = 0, qs = 0;  // sum_k P_k cos(theta_k e), sum_k Q_k sin(theta_k e)
    for (int64_t kk = 0; kk < half; ++kk) rotary_rel_term(pq[(size_t)kk], th[(size_t)kk], e, pc, qs);
    rel[(size_t)(C - 1 + e)] = pc - qs;
    rel[(size_t)(C - 1 - e)] = pc + qs;
  }
  return rel;
}

// With Gc_k = sum_e drel(e) cos(theta_k e), Gs_k = sum_e drel(e) sin(theta_k e): dP = Gc, dQ = -Gs,
// then through P = a1 b1 + a2 b2 and Q = a1 b2 - a2 b1 to the halves of alpha and beta.
std::pair<std::vector<double>, std::vector<double>> rotary_bias_table_backward(const Tensor& alpha,
                                                                               const Tensor& beta,
                                                                               const std::vector<double>& drel,
                                                                               int64_t C) {
  std::vector<double> a = alpha.to_vector(), b = beta.to_vector();
  const int64_t Z = (int64_t)a.size(), half = Z / 2;
  std::vector<double> th = rotary_theta(Z), da((size_t)Z), db((size_t)Z);
  for (int64_t kk = 0; kk < half; ++kk) {
    const RotaryGrads g = rotary_grads(drel.data(), C, th[(size_t)kk], a[(size_t)kk], a[(size_t)(kk + half)],
                                       b[(size_t)kk], b[(size_t)(kk + half)]);
    da[(size_t)kk] = g.da1;
    da[(size_t)(kk + half)] = g.da2;
    db[(size_t)kk] = g.db1;
    db[(size_t)(kk + half)] = g.db2;
  }
  return {da, db};
}

Tensor rotary_bias_composed(const Tensor& alpha, const Tensor& beta, int64_t C) {
  const int64_t Z = alpha.size(1), half = Z / 2;
  const DType dt = alpha.dtype();
  std::vector<double> th = rotary_theta(Z), cosv((size_t)(C * half)), sinv((size_t)(C * half));
  for (int64_t i = 0; i < C; ++i)
    for (int64_t kk = 0; kk < half; ++kk) {
      cosv[(size_t)(i * half + kk)] = std::cos((double)i * th[(size_t)kk]);
      sinv[(size_t)(i * half + kk)] = std::sin((double)i * th[(size_t)kk]);
    }
  Tensor cs = Tensor::from_vector(cosv, {C, half}, dt), sn = Tensor::from_vector(sinv, {C, half}, dt);
  if (!alpha.device().is_cpu()) cs = cs.to(alpha.device()), sn = sn.to(alpha.device());  // the composed ops on a GPU
  auto rot = [&](const Tensor& x) {  // (1, Z) -> (C, Z)
    Tensor x1 = x.narrow(1, 0, half), x2 = x.narrow(1, half, half);
    return cat({sub(mul(x1, cs), mul(x2, sn)), add(mul(x2, cs), mul(x1, sn))}, 1);
  };
  return matmul(rot(alpha), rot(beta).t());
}

}  // namespace megagrad
