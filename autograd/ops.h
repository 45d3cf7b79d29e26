// The differentiable ops. Each one checks its inputs (errors name the op, shapes, dtypes and
// devices), computes its output with a kernel from backends/, and, when a gradient is needed,
// records a backward closure written right below it in the same .cpp file.
//
// Binary ops broadcast numpy-style. Both operands must have the same dtype and device.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>
#include "core/rng.h"
#include "core/tensor.h"

namespace megagrad {

// ---- elementwise binary (autograd/ops_elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);  // a + s
Tensor mul_scalar(const Tensor& a, double s);  // a * s
Tensor pow(const Tensor& a, double exponent);  // a ** exponent

// ---- elementwise unary (autograd/ops_elementwise.cpp) ----
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact: x * Phi(x)
Tensor erf(const Tensor& x);

// ---- reductions (autograd/ops_reduce.cpp); empty dims = all dims ----
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Gradient flows to the first maximal (minimal) element.
Tensor max(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor min(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Variance with Bessel's correction by default (correction = 1), as torch.var.
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false,
           int64_t correction = 1);
// Sums a broadcast gradient back down to `shape` (not recorded; used by backward closures).
Tensor sum_to(const Tensor& g, const Shape& shape);

// ---- linear algebra (autograd/ops_linalg.cpp), through OpenBLAS ----
// Both operands have 2+ dims; leading (batch) dims broadcast numpy-style: (M,K)@(K,N),
// (B,M,K)@(B,K,N), (B,M,K)@(K,N), (2,1,M,K)@(3,K,N). Transposed operands are read without a copy.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) @ weight (out, in)^T + bias (out); x may be 1-D; bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- neural-network ops (autograd/ops_nn.cpp) ----
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// logits (N,C), target int64 (N). Mean over targets != ignore_index. With label smoothing e, the
// target distribution is (1-e) one-hot + e/C, as torch.nn.functional.cross_entropy. When every
// target is ignored the loss is NaN and the gradient zero, as in torch.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0);
// Normalises over the last dim; weight and bias (that dim's size) may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// weight (V,D), indices int64 of any shape -> (..., D). Backward scatter-adds into weight.
Tensor embedding(const Tensor& weight, const Tensor& indices);
// Zeroes each element with probability p and scales the rest by 1/(1-p). The mask comes from
// (generator seed, offset) so it does not depend on the thread count. Identity when !training.
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* gen = nullptr);

// ---- indexing and joining (autograd/ops_index.cpp) ----
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index int64 (K)
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);        // as torch.gather
// cond bool, broadcast with a and b.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);  // mask bool, broadcast

// ---- comparisons (not differentiable; return bool tensors) (autograd/ops_elementwise.cpp) ----
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor argmax(const Tensor& x, int64_t dim);  // int64, ties to the first index

namespace detail {
// How many times matmul/linear copied an operand because BLAS could not read its layout
// (tests use it to prove contiguous and transposed operands are read in place).
int64_t linalg_operand_copies();
}  // namespace detail

// ---- operators ----
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add_scalar(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add_scalar(a, -s); }
inline Tensor operator-(double s, const Tensor& a) { return add_scalar(neg(a), s); }
inline Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul_scalar(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul_scalar(a, 1.0 / s); }
inline Tensor operator/(double s, const Tensor& a) { return mul_scalar(pow(a, -1.0), s); }

}  // namespace megagrad
