// The rotary relative position bias of Mega (module rel_pos_bias, kind rotary), built in one place
// for the fused attention op, its backward, its composed reference and incremental decoding.
//
// With theta_k = 10000^(-k/half) (half = Z/2) and rot(x)_i = [x1 cos(i theta) - x2 sin(i theta),
// x2 cos(i theta) + x1 sin(i theta)], bias[i, j] = rot(alpha)_i . rot(beta)_j depends on j - i
// only: a Toeplitz table rel(e), e = j - i (derivation: attention.md, "The bias is a Toeplitz
// table").
#pragma once
#include <cstdint>
#include <utility>
#include <vector>
#include "core/tensor.h"

namespace megagrad {

// theta_k = 10000^(-k/half), k < Z/2, in double, as the official sinusoid tables.
std::vector<double> rotary_theta(int64_t Z);

// The table for chunks of C positions, (2C-1) values: bias[i, j] = rel[C-1 + j - i], from alpha and
// beta (1, Z) (Z even), in double.
std::vector<double> rotary_bias_table(const Tensor& alpha, const Tensor& beta, int64_t C);

// The table's backward: the gradients of alpha and beta (Z values each) from drel (2C-1).
std::pair<std::vector<double>, std::vector<double>> rotary_bias_table_backward(const Tensor& alpha,
                                                                               const Tensor& beta,
                                                                               const std::vector<double>& drel,
                                                                               int64_t C);

// The (C, C) bias as the official module builds it, composed of primitive ops (differentiable in
// alpha and beta; for the composed reference).
Tensor rotary_bias_composed(const Tensor& alpha, const Tensor& beta, int64_t C);

}  // namespace megagrad
