// A real Spanish -> English parallel corpus, offline, from Debian's public-domain SWORD Bibles:
// Reina-Valera 1909 (package sword-text-sparv, module spaRV1909eb) and the King James Version
// (package sword-text-kjv, module engKJV2006eb), read with libsword (libsword-dev).
//
// Verses align by book, chapter and verse: both modules declare the KJV versification (checked:
// a pair of modules with different versifications is refused). Each verse is rendered as plain
// text by libsword (stripText with the Strong's numbers, footnotes, headings and red-letter
// options off), then cleaned:
//   - the Spanish module has words whose Strong's lemma lacks the "strong:" prefix
//     (lemma="G5547"), which SWORD's plain renderer prints as " <G5547>" even with Strong's
//     numbers off: these are removed (4,362 of them);
//   - the KJV module keeps the USFM marker "\nd" (divine name) before "LORD" in 27 verses:
//     removed;
//   - the KJV's paragraph sign "¶" is removed (layout, not text);
//   - a canonical psalm title, which the KJV module keeps as a heading before verse 1 while the
//     Reina-Valera prints it inside verse 1, is put in front of verse 1 (on both sides, whichever
//     module has it as a heading), so that the two verse 1s say the same thing;
//   - whitespace runs become one space, and the ends are trimmed.
// The result is checked: no '<', '>' or backslash is left (any markup left is an error naming the verse),
// and the text is valid UTF-8. A verse empty in one module (verses that one translation merges
// into its neighbour, e.g. Spanish Numbers 12:16, 3 John 1:15) is skipped and counted.
//
// Splits by book, so that validation and test hold unseen text: Mark is validation, John is test,
// every other book is training. With Debian 12's modules: 31,084 pairs of the 31,102 KJV verses
// (18 verses empty in the Spanish module): train 29,527, valid 678 (Mark), test 879 (John); 116
// psalm titles moved. Reading both modules takes about 5 s.
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include "mega/data/parallel.h"

namespace megagrad::data {

struct BibleOptions {
  std::string src_module = "spaRV1909eb";   // Debian: sword-text-sparv
  std::string tgt_module = "engKJV2006eb";  // Debian: sword-text-kjv
  std::string valid_book = "Mark";          // OSIS book ids
  std::string test_book = "John";
  // A SWORD folder (holding mods.d/ and modules/); "" lets libsword search as usual ($SWORD_PATH,
  // ~/.sword, /usr/share/sword).
  std::string sword_path;
};

struct BibleStats {
  int64_t verses = 0;            // verses of the versification visited
  int64_t pairs = 0;             // pairs kept (train + valid + test)
  int64_t skipped = 0;           // verses empty in one module or both
  std::vector<std::string> skipped_verses;  // "Num.12.16 (empty in spaRV1909eb)"
  int64_t strongs_removed = 0;   // " <G5547>" remnants removed
  int64_t usfm_removed = 0;      // "\nd" markers removed
  int64_t titles_moved = 0;      // psalm titles put in front of verse 1
};

struct BibleCorpus {
  ParallelSplits splits;  // SentencePair::where is the OSIS reference, "John.3.16"
  BibleStats stats;
};

// Whether this build has libsword, and a line for `megagrad info`.
bool sword_built();
std::string sword_build_info();
// Whether both modules are installed (false with the reason in *why when not, or when the build
// has no libsword); tests skip on false.
bool bible_modules_available(const BibleOptions& opt = {}, std::string* why = nullptr);

// Reads both modules (a few seconds). Errors: "[bible_parallel] ..." naming the missing module and
// its Debian package, a versification mismatch, markup left in a verse, or an empty split; in a
// build without libsword, "[bible_parallel] built without SWORD: install libsword-dev and rebuild".
BibleCorpus load_bible_parallel(const BibleOptions& opt = {});

// The same splits, cached as TSV files (parallel.h's format) in
// <dir>/bible/<src_module>-<tgt_module>/{train,valid,test}.tsv, written atomically; later calls
// read the files (and so need no libsword; SentencePair::where is then "file:line"). dir "" is
// default_cache_dir() (text.h). The files are not checked against the modules: after a module
// update, delete the folder.
ParallelSplits bible_parallel_splits(const std::string& dir = "", const BibleOptions& opt = {});

}  // namespace megagrad::data
