// Incremental decoding of a decoder layer's attention: a block of new queries attends to the
// keys of the current chunk seen so far (cached in LayerState) and to the block's own keys,
// causally. Written as plain loops in double: a decoding step touches O(C (Z + H)) numbers, and
// the loops say exactly which mask applies where (spec section 3).
//
// Legend: B batch, m new tokens, c cached tokens of the current chunk, Z shared width, H value
// width, C chunk size (or max_positions without chunking).
#include <cmath>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "mega/attention/activation.h"
#include "mega/attention/rotary_bias.h"
#include "mega/layers.h"

namespace megagrad {

namespace {

// bias[i][j] for in-chunk positions i, j < n (rows >= i0 only are used). Both kinds depend on
// j - i only; the rotary table is the fused op's (rotary_bias.h).
std::vector<double> bias_matrix(const RelPosBias& b, int64_t M, int64_t n) {
  std::vector<double> out((size_t)(n * n));
  if (b.kind == RelPosBias::Kind::Simple) {
    std::vector<double> w = b.weight.to_vector();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) out[(size_t)(i * n + j)] = w[(size_t)(M - 1 + j - i)];
    return out;
  }
  const std::vector<double> rel = rotary_bias_table(b.alpha, b.beta, n);  // rel[n-1 + j - i]
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) out[(size_t)(i * n + j)] = rel[(size_t)(n - 1 + j - i)];
  return out;
}
}  // namespace

Tensor MovingAverageGatedAttention::attention_incremental(const Tensor& q, const Tensor& k, const Tensor& v,
                                                          const Tensor& mask, LayerState& st) const {
  constexpr std::string_view op = "mega_incremental";
  MG_CHECK(cfg.causal, op, "incremental decoding needs a causal decoder layer");
  const int64_t B = q.size(0), m = q.size(1), Z = cfg.z_dim, H = cfg.hidden_dim;
  const bool chunked = cfg.chunk_size > 0;
  const int64_t C = chunked ? cfg.chunk_size : cfg.max_positions;
  MG_CHECK(chunked || st.pos + m <= cfg.max_positions, op,
           "sequence length {} exceeds max_positions {}", st.pos + m, cfg.max_positions);
  const std::vector<double> qv = q.to_vector(), kv = k.to_vector(), vv = v.to_vector();
  const std::vector<double> mv = mask.defined() ? mask.to_vector() : std::vector<double>((size_t)(B * m), 0.0);
  const RelPosBias rb = rel_pos_bias();
  std::vector<double> out((size_t)(B * m * H), 0.0);

  for (int64_t s0 = 0; s0 < m;) {
    // One segment: the new tokens that fall into the current chunk.
    const int64_t i0 = st.pos % C;  // in-chunk position of the segment's first token
    if (i0 == 0) st.keys = Tensor(), st.values = Tensor(), st.key_pad = Tensor();
    const int64_t len = std::min(m - s0, C - i0), n = i0 + len;
    // Keys, values and key padding of the chunk so far: the cache, then the segment.
    std::vector<double> K((size_t)(B * n * Z)), V((size_t)(B * n * H)), P((size_t)(B * n));
    std::vector<double> ck = st.keys.defined() ? st.keys.to_vector() : std::vector<double>();
    std::vector<double> cv = st.values.defined() ? st.values.to_vector() : std::vector<double>();
    std::vector<double> cp = st.key_pad.defined() ? st.key_pad.to_vector() : std::vector<double>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < n; ++j) {
        const bool cached = j < i0;
        const int64_t src = cached ? b * i0 + j : b * m + s0 + (j - i0);
        for (int64_t z = 0; z < Z; ++z) K[(size_t)((b * n + j) * Z + z)] = cached ? ck[(size_t)(src * Z + z)] : kv[(size_t)(src * Z + z)];
        for (int64_t h = 0; h < H; ++h) V[(size_t)((b * n + j) * H + h)] = cached ? cv[(size_t)(src * H + h)] : vv[(size_t)(src * H + h)];
        P[(size_t)(b * n + j)] = cached ? cp[(size_t)src] : mv[(size_t)src];
      }
    const std::vector<double> bias = bias_matrix(rb, C, n);

    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = i0; i < n; ++i) {  // query at in-chunk position i
        const double* qi = &qv[(size_t)((b * m + s0 + i - i0) * Z)];
        std::vector<double> w((size_t)(i + 1), 0.0);
        if (cfg.attention_activation == AttentionActivation::Softmax) {
          // Keys j <= i; pads get -inf unless every visible key of the chunk is a pad.
          bool all_pad = true;
          for (int64_t j = 0; j <= i; ++j) all_pad = all_pad && P[(size_t)(b * n + j)] != 0;
          double mx = -INFINITY;
          for (int64_t j = 0; j <= i; ++j) {
            double s = 0;
            for (int64_t z = 0; z < Z; ++z) s += qi[z] * K[(size_t)((b * n + j) * Z + z)];
            s = s / std::sqrt((double)Z) + bias[(size_t)(i * n + j)];
            w[(size_t)j] = (!all_pad && P[(size_t)(b * n + j)] != 0) ? -INFINITY : s;
            mx = std::max(mx, w[(size_t)j]);
          }
          double total = 0;
          for (double& x : w) total += (x = std::exp(x - mx));
          for (double& x : w) x /= total;
        } else {
          // Element attention: S = q k / (i + 1) + bias (the causal count wins over padding),
          // P = f(S) on non-pad keys j <= i.
          for (int64_t j = 0; j <= i; ++j) {
            if (P[(size_t)(b * n + j)] != 0) continue;
            double s = 0;
            for (int64_t z = 0; z < Z; ++z) s += qi[z] * K[(size_t)((b * n + j) * Z + z)];
            s = s / (double)(i + 1) + bias[(size_t)(i * n + j)];
            w[(size_t)j] = cfg.attention_activation == AttentionActivation::Relu2
                               ? std::pow(std::max(s, 0.0), 2)
                               : 0.5 * (1 + std::erf((s - kLaplaceMu) / (kLaplaceSigma * std::sqrt(2.0))));
          }
        }
        double* o = &out[(size_t)((b * m + s0 + i - i0) * H)];
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t h = 0; h < H; ++h) o[h] += w[(size_t)j] * V[(size_t)((b * n + j) * H + h)];
      }
    // The chunk so far becomes the cache.
    st.keys = Tensor::from_vector(K, {B, n, Z}, DType::Float64);
    st.values = Tensor::from_vector(V, {B, n, H}, DType::Float64);
    st.key_pad = Tensor::from_vector(P, {B, n}, DType::Float64);
    st.pos += len;
    s0 += len;
  }
  return Tensor::from_vector(out, {B, m, H}, q.dtype());
}

}  // namespace megagrad
