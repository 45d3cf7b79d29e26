// megagrad translate: translates sentences with a translate checkpoint (megagrad train --task
// translate): its SentencePiece model and weights, greedy search or beam search on the model's
// incremental state.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>
#include "cli/commands.h"
#include "mega/train/checkpoint.h"
#include "mega/train/tasks.h"

namespace megagrad::cli {

int cmd_translate(const std::vector<std::string>& args) {
  Options opts("translate", {{"--text", "TEXT", "the sentence to translate (default: standard input, one sentence per line)"},
                             {"--beam", "K", "beam size (default 4; 1: greedy search)"},
                             {"--max-len", "N", "at most N generated tokens per sentence, eos included (default: 2 x the source's + 10, within the model's positions)"},
                             threads_option()});
  opts.positionals(1, "CHECKPOINT");
  opts.parse(args);
  if (opts.help()) {
    std::printf("usage: megagrad translate CHECKPOINT --text \"...\" [options]\n"
                "       megagrad translate CHECKPOINT [options] < sentences.txt\n\n"
                "Translates with a checkpoint of megagrad train --task translate, which carries its subword\n"
                "model: beam search with length normalisation (fairseq's, lenpen 1) on the incremental\n"
                "decoding state, or greedy search at --beam 1. One translation per line on standard output.\n"
                "Every input line is checked before any is translated: an empty line, or one longer than the\n"
                "model's positions, is an error naming the line; characters the subword model never saw\n"
                "become <unk> (a warning on standard error says which).\n\n%s",
                opts.options_help().c_str());
    return 0;
  }
  apply_threads(opts);
  if (opts.positional().empty())
    throw UsageError("megagrad translate: missing CHECKPOINT (see: megagrad translate --help)");
  const int64_t beam = opts.get_int("--beam", 4, 1, 1000);
  const int64_t max_len = opts.get_int("--max-len", 0, 1, 1000000);
  const std::string path = opts.positional()[0];
  const Checkpoint ck = load_checkpoint_with_finite_weights(path, "translate");
  if (!ck.unverified.empty()) std::fprintf(stderr, "megagrad translate: warning: %s\n", ck.unverified.c_str());
  const Translator tr(ck, path);

  std::vector<std::string> lines;
  std::vector<std::string> where;
  if (auto text = opts.get("--text")) {
    lines.push_back(*text), where.push_back("--text");
  } else {
    std::string line;
    for (int64_t n = 1; std::getline(std::cin, line); ++n) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines.push_back(line), where.push_back(fmt::format("standard input, line {}", n));
    }
    MG_CHECK(!lines.empty(), "translate", "standard input is empty: nothing to translate (or give --text)");
  }
  std::vector<std::vector<int64_t>> sources;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::vector<std::string> unknown;
    sources.push_back(tr.encode_source(lines[i], where[i], &unknown));
    if (!unknown.empty()) {
      std::string list;
      for (const std::string& u : unknown) list += (list.empty() ? "'" : ", '") + u + "'";
      std::fprintf(stderr, "megagrad translate: %s: %zu piece(s) unknown to the subword model, translated as <unk>: %s\n",
                   where[i].c_str(), unknown.size(), list.c_str());
    }
  }
  for (const auto& src : sources) {
    std::printf("%s\n", tr.translate(src, beam, max_len).c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace megagrad::cli
