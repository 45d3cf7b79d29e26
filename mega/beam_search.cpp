// Greedy and beam search on the incremental state of a seq2seq model (beam_search.h).
#include "mega/beam_search.h"
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "mega/seq2seq.h"

namespace megagrad {

namespace {
constexpr std::string_view kOp = "beam_search";

void check(const std::vector<int64_t>& src, const DecodeOptions& opt) {
  MG_CHECK(!src.empty(), kOp, "the source is empty: nothing to translate");
  MG_CHECK(opt.beam >= 1, kOp, "beam must be >= 1, got {}", opt.beam);
  MG_CHECK(opt.max_len >= 1, kOp, "max_len must be >= 1, got {}", opt.max_len);
}

// Row-wise log-softmax of logits (n, 1, V) in double, with padding and bos excluded (-inf): the
// searches never emit them. Past the last allowed step only eos is left.
std::vector<std::vector<double>> step_logprobs(const Tensor& logits, const DecodeOptions& opt, bool force_eos) {
  const int64_t n = logits.size(0), V = logits.size(2);
  const std::vector<double> l = logits.to_vector();
  std::vector<std::vector<double>> out((size_t)n, std::vector<double>((size_t)V));
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < n; ++r) {
    const double* x = l.data() + r * V;
    double mx = -inf;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, x[v]);
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(x[v] - mx);
    const double lse = mx + std::log(s);
    for (int64_t v = 0; v < V; ++v) out[(size_t)r][(size_t)v] = x[v] - lse;
    for (int64_t v = 0; v < V; ++v)
      if (v == opt.pad || v == opt.bos || (force_eos && v != opt.eos)) out[(size_t)r][(size_t)v] = -inf;
  }
  return out;
}

Hypothesis finish(std::vector<int64_t> tokens, double logprob, const DecodeOptions& opt) {
  Hypothesis h;
  h.score = logprob / std::pow((double)tokens.size(), opt.len_penalty);
  h.tokens = std::move(tokens), h.logprob = logprob;
  return h;
}

Tensor column(const std::vector<int64_t>& ids) { return Tensor::from_vector(ids, {(int64_t)ids.size(), 1}); }

template <class M>
int64_t target_positions(const M& m) {
  if constexpr (std::is_same_v<M, MegaSeq2Seq>) return m.cfg.max_target_positions();
  else return m.cfg.max_target_positions;
}

template <class M>
Hypothesis greedy_impl(M& m, const std::vector<int64_t>& src, const DecodeOptions& opt) {
  no_grad g;
  const int64_t max_len = std::min(opt.max_len, target_positions(m));
  auto st = m.begin(Tensor::from_vector(src, {1, (int64_t)src.size()}));
  std::vector<int64_t> out;
  double lp = 0;
  int64_t last = opt.bos;
  while (true) {
    const bool force = (int64_t)out.size() + 1 >= max_len;
    const std::vector<double> row = step_logprobs(m.forward_incremental(column({last}), st), opt, force)[0];
    // The first maximum, as beam search's stable order picks it.
    last = (int64_t)(std::max_element(row.begin(), row.end()) - row.begin());
    lp += row[(size_t)last];
    out.push_back(last);
    if (last == opt.eos) break;
  }
  return finish(std::move(out), lp, opt);
}

template <class M>
std::vector<Hypothesis> beam_impl(M& m, const std::vector<int64_t>& src, const DecodeOptions& opt) {
  no_grad g;
  const int64_t K = opt.beam, max_len = std::min(opt.max_len, target_positions(m));
  auto st = m.begin(Tensor::from_vector(src, {1, (int64_t)src.size()}));
  struct Live {
    std::vector<int64_t> tokens;
    double logprob;
  };
  std::vector<Live> live(1, Live{{}, 0.0});
  std::vector<Hypothesis> done;  // the K best finished, best first
  auto by_score = [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; };
  while (!live.empty()) {
    std::vector<int64_t> last;
    for (const Live& h : live) last.push_back(h.tokens.empty() ? opt.bos : h.tokens.back());
    const bool force = (int64_t)live[0].tokens.size() + 1 >= max_len;  // every live one has this length
    const auto lp = step_logprobs(m.forward_incremental(column(last), st), opt, force);
    const int64_t V = (int64_t)lp[0].size(), n = (int64_t)live.size() * V;
    // The 2K best candidates (row-major order breaks ties: the lower row, then the lower id).
    std::vector<int64_t> idx((size_t)n);
    std::iota(idx.begin(), idx.end(), 0);
    auto cand_score = [&](int64_t c) { return live[(size_t)(c / V)].logprob + lp[(size_t)(c / V)][(size_t)(c % V)]; };
    const int64_t take = std::min<int64_t>(2 * K, n);
    std::partial_sort(idx.begin(), idx.begin() + take, idx.end(), [&](int64_t a, int64_t b) {
      const double sa = cand_score(a), sb = cand_score(b);
      return sa > sb || (sa == sb && a < b);
    });
    std::vector<Live> next;
    std::vector<int64_t> order;
    for (int64_t j = 0; j < take && (int64_t)next.size() < K; ++j) {
      const int64_t c = idx[(size_t)j], row = c / V, tok = c % V;
      const double s = cand_score(c);
      if (!std::isfinite(s)) break;  // only excluded tokens are left
      std::vector<int64_t> tokens = live[(size_t)row].tokens;
      tokens.push_back(tok);
      if (tok == opt.eos) {
        if (j < K) done.push_back(finish(std::move(tokens), s, opt));
        continue;
      }
      next.push_back({std::move(tokens), s});
      order.push_back(row);
    }
    std::stable_sort(done.begin(), done.end(), by_score);
    if ((int64_t)done.size() > K) done.resize((size_t)K);
    live = std::move(next);
    // fairseq stops at K finished. Length normalisation lets a longer hypothesis overtake them,
    // so the search goes on while a live one, finished by eos at probability 1 next, would score
    // above the K-th finished (the best it can hope for at its next length). K = 1 stops at once,
    // as greedy search does.
    if ((int64_t)done.size() == K && K == 1) break;
    if ((int64_t)done.size() == K) {
      double best_live = -std::numeric_limits<double>::infinity();
      for (const Live& h : live)
        best_live = std::max(best_live, h.logprob / std::pow((double)h.tokens.size() + 1, opt.len_penalty));
      if (best_live <= done.back().score) break;
    }
    if (!live.empty()) m.reorder_incremental_state(st, Tensor::from_vector(order, {(int64_t)order.size()}));
  }
  MG_CHECK(!done.empty(), kOp, "no hypothesis finished (source of {} tokens, max_len {})", src.size(), max_len);
  return done;
}

template <class M>
Hypothesis score_impl(M& m, const std::vector<int64_t>& src, const std::vector<int64_t>& tgt, const DecodeOptions& opt) {
  no_grad g;
  std::vector<int64_t> prev{opt.bos};
  prev.insert(prev.end(), tgt.begin(), tgt.end() - 1);
  Tensor logits = m.forward(Tensor::from_vector(src, {1, (int64_t)src.size()}),
                            Tensor::from_vector(prev, {1, (int64_t)prev.size()}));
  const std::vector<double> l = log_softmax(logits.to(DType::Float64), 2).to_vector();
  const int64_t V = logits.size(2);
  double lp = 0;
  for (size_t t = 0; t < tgt.size(); ++t) lp += l[t * (size_t)V + (size_t)tgt[t]];
  return finish(tgt, lp, opt);
}

template <class F>
auto dispatch(Module& model, F&& f) {
  if (auto* m = dynamic_cast<MegaSeq2Seq*>(&model)) return f(*m);
  if (auto* t = dynamic_cast<TransformerSeq2Seq*>(&model)) return f(*t);
  fail(kOp, "the model is not an encoder-decoder (MegaSeq2Seq or TransformerSeq2Seq)");
}
}  // namespace

Hypothesis greedy_decode(Module& model, const std::vector<int64_t>& src, const DecodeOptions& opt) {
  check(src, opt);
  return dispatch(model, [&](auto& m) { return greedy_impl(m, src, opt); });
}

std::vector<Hypothesis> beam_search(Module& model, const std::vector<int64_t>& src, const DecodeOptions& opt) {
  check(src, opt);
  return dispatch(model, [&](auto& m) { return beam_impl(m, src, opt); });
}

Hypothesis score_hypothesis(Module& model, const std::vector<int64_t>& src, const std::vector<int64_t>& tgt,
                            const DecodeOptions& opt) {
  check(src, opt);
  MG_CHECK(!tgt.empty(), kOp, "the hypothesis is empty");
  return dispatch(model, [&](auto& m) { return score_impl(m, src, tgt, opt); });
}

}  // namespace megagrad
