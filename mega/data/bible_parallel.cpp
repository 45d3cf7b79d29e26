#include "mega/data/bible_parallel.h"
#include <algorithm>
#include <filesystem>
#include <memory>
#include <fmt/ranges.h>
#include "core/error.h"
#include "mega/data/text.h"
#include "mega/text/utf8.h"

#if MEGAGRAD_HAS_SWORD
#include <markupfiltmgr.h>
#include <swlog.h>
#include <swmgr.h>
#include <swmodule.h>
#include <versekey.h>
#include <versificationmgr.h>
#endif

namespace megagrad::data {

namespace {
constexpr const char* kOp = "bible_parallel";

// The Debian package of a module, for the "not installed" message.
std::string package_hint(const std::string& module) {
  if (module == "spaRV1909eb") return " (Debian: apt-get install sword-text-sparv)";
  if (module == "engKJV2006eb") return " (Debian: apt-get install sword-text-kjv)";
  return "";
}

#if MEGAGRAD_HAS_SWORD
// Removes the " <G5547>" / " <H2416>" that SWORD's plain renderer prints for a Strong's lemma
// without its "strong:" prefix, with the spaces before it. Returns how many it removed.
int64_t remove_strongs(std::string& s) {
  int64_t removed = 0;
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '<' && i + 2 < s.size() && (s[i + 1] == 'G' || s[i + 1] == 'H') && s[i + 2] >= '0' && s[i + 2] <= '9') {
      size_t j = i + 2;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
      while (j < s.size() && s[j] >= 'a' && s[j] <= 'z') ++j;
      if (j < s.size() && s[j] == '>') {
        while (!out.empty() && out.back() == ' ') out.pop_back();
        i = j + 1;
        ++removed;
        continue;
      }
    }
    out += s[i++];
  }
  s = std::move(out);
  return removed;
}

// Removes USFM character markers that the KJV module keeps in plain text ("\nd LORD": the divine
// name, 27 verses): a backslash, letters, optional digits and '*'. Returns how many it removed.
int64_t remove_usfm(std::string& s) {
  int64_t removed = 0;
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] >= 'a' && s[i + 1] <= 'z') {
      size_t j = i + 1;
      while (j < s.size() && s[j] >= 'a' && s[j] <= 'z') ++j;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
      if (j < s.size() && s[j] == '*') ++j;
      i = j;
      ++removed;
      continue;
    }
    out += s[i++];
  }
  s = std::move(out);
  return removed;
}

// One space between words, none at the ends (ASCII whitespace and NO-BREAK SPACE); the "¶"
// paragraph sign dropped.
std::string normalise(std::string_view s) {
  std::string out;
  bool space = false;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    size_t n = text::utf8_decode(s, i, &cp);
    if (n == 0) n = 1, cp = 0xFFFD;  // invalid bytes are kept as they are and refused by the caller
    if (cp == 0xB6) {                // ¶
      i += n;
      continue;
    }
    if (text::py_isspace(cp)) {
      space = true;
    } else {
      if (space && !out.empty()) out += ' ';
      space = false;
      out.append(s.substr(i, n));
    }
    i += n;
  }
  return out;
}

struct ModuleReader {
  sword::SWModule* mod;
  std::string name;
  // The verse's plain text: a canonical preverse title (psalm superscription) first, then the
  // verse, cleaned as described in the header.
  std::string verse(sword::VerseKey& key, BibleStats& st) {
    mod->setKey(key);
    std::string body = mod->stripText();
    std::string title;
    sword::AttributeTypeList& attrs = mod->getEntryAttributes();
    auto heading = attrs.find("Heading");
    if (heading != attrs.end()) {
      auto pre = heading->second.find("Preverse");
      if (pre != heading->second.end())
        for (const auto& kv : pre->second) {
          std::string raw = kv.second.c_str();
          if (raw.find("canonical=\"true\"") == std::string::npos) continue;
          title += std::string(" ") + mod->stripText(raw.c_str());
        }
    }
    if (!title.empty()) {
      body = title + " " + body;
      ++st.titles_moved;
    }
    st.strongs_removed += remove_strongs(body);
    st.usfm_removed += remove_usfm(body);
    std::string out = normalise(body);
    size_t bad = text::utf8_invalid_at(out);
    MG_CHECK(bad == std::string::npos, kOp, "{} in {}: invalid UTF-8 at byte {}", key.getOSISRef(), name, bad + 1);
    MG_CHECK(out.find_first_of("<>\\") == std::string::npos, kOp, "{} in {}: markup left after stripping: \"{}\"",
             key.getOSISRef(), name, out.substr(0, 200));
    return out;
  }
};
#endif
}  // namespace

bool sword_built() { return MEGAGRAD_HAS_SWORD; }

std::string sword_build_info() {
#if MEGAGRAD_HAS_SWORD
  return "built: yes (libsword " MEGAGRAD_SWORD_VERSION "; the Bible parallel corpus, mega/data/bible_parallel.cpp)";
#else
  return "not built (no libsword at configure time: Debian's libsword-dev)";
#endif
}

#if MEGAGRAD_HAS_SWORD
namespace {
std::unique_ptr<sword::SWMgr> open_sword(const BibleOptions& opt) {
  sword::SWLog::getSystemLog()->setLogLevel(sword::SWLog::LOG_ERROR);
  auto* filters = new sword::MarkupFilterMgr(sword::FMT_PLAIN);  // owned by the manager
  std::unique_ptr<sword::SWMgr> mgr =
      opt.sword_path.empty() ? std::make_unique<sword::SWMgr>(filters)
                             : std::make_unique<sword::SWMgr>(opt.sword_path.c_str(), true, filters);
  // Plain text: no Strong's numbers, footnotes or red letters. Headings on, so that libsword
  // files the preverse titles as entry attributes (they never enter the stripped text).
  mgr->setGlobalOption("Strong's Numbers", "Off");
  mgr->setGlobalOption("Footnotes", "Off");
  mgr->setGlobalOption("Cross-references", "Off");
  mgr->setGlobalOption("Words of Christ in Red", "Off");
  mgr->setGlobalOption("Headings", "On");
  return mgr;
}

sword::SWModule* find_module(sword::SWMgr& mgr, const std::string& name, std::string* why) {
  sword::SWModule* m = mgr.getModule(name.c_str());
  if (!m) {
    *why = fmt::format("SWORD module {} is not installed{}", name, package_hint(name));
    return nullptr;
  }
  return m;
}

std::string versification(sword::SWModule* m) {
  const char* v = m->getConfigEntry("Versification");
  return v && *v ? v : "KJV";  // SWORD's default
}
}  // namespace
#endif

bool bible_modules_available(const BibleOptions& opt, std::string* why) {
  std::string reason;
#if MEGAGRAD_HAS_SWORD
  std::unique_ptr<sword::SWMgr> mgr = open_sword(opt);
  bool ok = find_module(*mgr, opt.src_module, &reason) && find_module(*mgr, opt.tgt_module, &reason);
#else
  (void)opt;
  bool ok = false;
  reason = "built without SWORD: install libsword-dev and rebuild";
#endif
  if (why) *why = reason;
  return ok;
}

BibleCorpus load_bible_parallel(const BibleOptions& opt) {
#if MEGAGRAD_HAS_SWORD
  std::unique_ptr<sword::SWMgr> mgr = open_sword(opt);
  std::string why;
  sword::SWModule* src = find_module(*mgr, opt.src_module, &why);
  MG_CHECK(src, kOp, "{}", why);
  sword::SWModule* tgt = find_module(*mgr, opt.tgt_module, &why);
  MG_CHECK(tgt, kOp, "{}", why);
  const std::string v11n = versification(src);
  MG_CHECK(v11n == versification(tgt), kOp,
           "{} uses the {} versification and {} the {}: verses would not align by reference", opt.src_module, v11n,
           opt.tgt_module, versification(tgt));

  // The split books must be books of the versification (checked before reading any verse).
  const sword::VersificationMgr::System* sys =
      sword::VersificationMgr::getSystemVersificationMgr()->getVersificationSystem(v11n.c_str());
  MG_CHECK(sys != nullptr, kOp, "libsword does not know the {} versification of {}", v11n, opt.src_module);
  std::vector<std::string> books;
  for (int b = 0; b < sys->getBookCount(); ++b) books.push_back(sys->getBook(b)->getOSISName());
  for (const std::string* book : {&opt.valid_book, &opt.test_book})
    MG_CHECK(std::find(books.begin(), books.end(), *book) != books.end(), kOp,
             "no book \"{}\" in the {} versification (its OSIS book ids: {})", *book, v11n, fmt::join(books, " "));
  MG_CHECK(opt.valid_book != opt.test_book, kOp, "the validation and test books are both {}", opt.test_book);

  BibleCorpus out;
  BibleStats& st = out.stats;
  ModuleReader rs{src, opt.src_module}, rt{tgt, opt.tgt_module};
  sword::VerseKey key;
  key.setVersificationSystem(v11n.c_str());
  key.setAutoNormalize(true);
  key.setIntros(false);
  bool saw_valid = false, saw_test = false;
  for (key.setPosition(sword::TOP); !key.popError(); key.increment()) {
    if (key.getChapter() < 1 || key.getVerse() < 1) continue;  // module and book introductions
    ++st.verses;
    std::string s = rs.verse(key, st), t = rt.verse(key, st);
    const std::string ref = key.getOSISRef();
    if (s.empty() || t.empty()) {
      ++st.skipped;
      st.skipped_verses.push_back(fmt::format("{} (empty in {})", ref,
                                              s.empty() && t.empty() ? opt.src_module + " and " + opt.tgt_module
                                              : s.empty()            ? opt.src_module
                                                                     : opt.tgt_module));
      continue;
    }
    const std::string book = key.getOSISBookName();
    std::vector<SentencePair>* split = &out.splits.train;
    if (book == opt.valid_book) split = &out.splits.valid, saw_valid = true;
    else if (book == opt.test_book) split = &out.splits.test, saw_test = true;
    split->push_back({std::move(s), std::move(t), ref});
    ++st.pairs;
  }
  MG_CHECK(saw_valid, kOp, "no verse of the validation book \"{}\" (OSIS book ids: Gen, Matt, Mark, John, ...)",
           opt.valid_book);
  MG_CHECK(saw_test, kOp, "no verse of the test book \"{}\" (OSIS book ids: Gen, Matt, Mark, John, ...)",
           opt.test_book);
  MG_CHECK(!out.splits.train.empty(), kOp, "no training verse is left");
  return out;
#else
  (void)opt;
  fail(kOp, "built without SWORD: install libsword-dev and rebuild (the Bible corpus {} -> {})", opt.src_module,
       opt.tgt_module);
#endif
}

ParallelSplits bible_parallel_splits(const std::string& dir, const BibleOptions& opt) {
  namespace fs = std::filesystem;
  const fs::path folder = fs::path(dir.empty() ? default_cache_dir() : dir) / "bible" /
                          (opt.src_module + "-" + opt.tgt_module + "-" + opt.valid_book + "-" + opt.test_book);
  const std::string train = (folder / "train.tsv").string(), valid = (folder / "valid.tsv").string(),
                    test = (folder / "test.tsv").string();
  // test.tsv is written last: when it exists, the other two are complete.
  if (fs::exists(test) && fs::exists(valid) && fs::exists(train))
    return ParallelSplits{read_parallel_tsv(train), read_parallel_tsv(valid), read_parallel_tsv(test)};
  BibleCorpus c = load_bible_parallel(opt);
  std::error_code ec;
  fs::create_directories(folder, ec);
  MG_CHECK(!ec, kOp, "cannot create the cache folder {}: {}", folder.string(), ec.message());
  write_parallel_tsv(train, c.splits.train);
  write_parallel_tsv(valid, c.splits.valid);
  write_parallel_tsv(test, c.splits.test);
  return std::move(c.splits);
}

}  // namespace megagrad::data
