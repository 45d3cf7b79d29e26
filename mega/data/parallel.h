// Parallel text (source and target sentences, one pair per line) for translation: the reader of a
// user's own files, the TSV form the Bible corpus is cached in, and the splits a trainer uses.
//
// Two formats:
//   SRC.txt + TGT.txt  line-aligned: line i of one file translates line i of the other;
//   one TSV            source<TAB>target on each line, no header.
// Every line is checked: valid UTF-8, not empty (nor only whitespace) on either side, no tab inside
// a sentence (a TSV line has exactly one), and the two files have the same number of lines. A
// trailing "\r" (a CRLF file) and a UTF-8 byte-order mark at the start of a file are dropped; the
// final newline is optional. Nothing else is changed (tokenisation normalises whitespace later).
// Errors say where and why: "[parallel_data] data/train.tsv:17: no tab: expected source<TAB>target".
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace megagrad::data {

struct SentencePair {
  std::string src, tgt;
  std::string where;  // "John.3.16" (the Bible) or "file:line", for messages and reports
};

struct ParallelSplits {
  std::vector<SentencePair> train, valid, test;
};

// The line-aligned pair of files (src_what / tgt_what name them in errors).
std::vector<SentencePair> parse_parallel_lines(std::string_view src_text, std::string_view tgt_text,
                                               std::string_view src_what, std::string_view tgt_what);
std::vector<SentencePair> read_parallel_files(const std::string& src_path, const std::string& tgt_path);
// A TSV: source<TAB>target per line.
std::vector<SentencePair> parse_parallel_tsv(std::string_view text, std::string_view what);
std::vector<SentencePair> read_parallel_tsv(const std::string& path);

// A user's one file, split as the Bible is (contiguous blocks, so that held-out text is unseen
// text, not neighbours of training lines): the last n_test pairs are the test split, the n_valid
// before them validation, the rest training. Error unless at least one training pair is left.
ParallelSplits split_tail(std::vector<SentencePair> pairs, size_t n_valid, size_t n_test);

// Source and target sentences of `pairs`, interleaved: what a joint subword model trains on
// (text::SubwordTokenizer::train on the training split only).
std::vector<std::string> joint_sentences(const std::vector<SentencePair>& pairs);

// The TSV text of `pairs` (errors for a pair that the reader would refuse: an empty side, a tab,
// a newline or invalid UTF-8), and its atomic write (core/atomic_file.h).
std::string parallel_to_tsv(const std::vector<SentencePair>& pairs);
void write_parallel_tsv(const std::string& path, const std::vector<SentencePair>& pairs);

}  // namespace megagrad::data
