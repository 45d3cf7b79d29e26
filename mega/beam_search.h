// Decoding an encoder-decoder (MegaSeq2Seq or TransformerSeq2Seq, mega/seq2seq.h) on its
// incremental state: greedy search, and beam search with length normalisation as fairseq's
// SequenceGenerator (beam_size K, lenpen 1, no unk penalty):
//   - each step extends the K live hypotheses by every token but padding and bos, and keeps the
//     2K best by summed log-probability;
//   - a candidate ending in eos is finished only if it is among the K best of the step (so that
//     K = 1 is greedy search exactly), scored by its summed log-probability over its length
//     (tokens including eos) to the power lenpen;
//   - the other candidates, best first, fill the K live slots; the state follows them through
//     reorder_incremental_state;
//   - finished hypotheses beyond the K best are dropped; the search stops when K are finished
//     (fairseq's rule) and, for K > 1, no live hypothesis followed by eos at probability 1 would
//     score above the K-th: with length normalisation a longer hypothesis can still overtake the
//     first K to finish (fairseq would return those; on small noisy models this made beam 2 score
//     below greedy). At max_len tokens eos is forced.
// One source sentence at a time; ids as mega/text/subword.h (0 pad, 1 bos, 2 eos).
#pragma once
#include <cstdint>
#include <vector>
#include "mega/module.h"

namespace megagrad {

struct DecodeOptions {
  int64_t beam = 4;
  int64_t max_len = 200;     // generated tokens, eos included; at most the model's target positions
  double len_penalty = 1.0;  // score = sum log p / length^len_penalty
  int64_t bos = 1, eos = 2, pad = 0;
};

struct Hypothesis {
  std::vector<int64_t> tokens;  // without bos, ending in eos
  double logprob = 0;           // summed log-probability of tokens
  double score = 0;             // logprob / length^len_penalty
};

// src: the source ids (eos last, no padding). Throws "[beam_search] ..." for a model that is no
// seq2seq model, an empty source, beam < 1 or max_len < 1.
Hypothesis greedy_decode(Module& model, const std::vector<int64_t>& src, const DecodeOptions& opt);
// The finished hypotheses, best score first (at least one).
std::vector<Hypothesis> beam_search(Module& model, const std::vector<int64_t>& src, const DecodeOptions& opt);
// The model's score of `tgt` (ending in eos) for `src` by one teacher-forced forward: what the
// searches maximise, computed independently of them (tests).
Hypothesis score_hypothesis(Module& model, const std::vector<int64_t>& src, const std::vector<int64_t>& tgt,
                            const DecodeOptions& opt);

}  // namespace megagrad
