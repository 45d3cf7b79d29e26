#include "mega/data/text.h"
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include "core/atomic_file.h"
#include "core/error.h"
#include "mega/data/batch.h"

extern char** environ;

namespace megagrad::data {

namespace {
constexpr const char* kOp = "text";

std::string show_byte(uint8_t b) {
  if (b >= 0x20 && b < 0x7f) return fmt::format("'{}' (0x{:02x})", (char)b, b);
  return fmt::format("0x{:02x}", b);
}
}  // namespace

// ---- vocabulary ----

CharVocab CharVocab::from_text(std::string_view text) {
  MG_CHECK(!text.empty(), kOp, "cannot build a vocabulary from an empty text");
  bool present[256] = {false};
  for (char c : text) present[(uint8_t)c] = true;
  CharVocab v;
  for (int b = 0; b < 256; ++b)
    if (present[b]) {
      v.chars_.push_back((uint8_t)b);
      v.to_id_[b] = (int16_t)v.chars_.size();
    }
  return v;
}

CharVocab CharVocab::bytes() {
  CharVocab v;
  for (int b = 0; b < 256; ++b) {
    v.chars_.push_back((uint8_t)b);
    v.to_id_[b] = (int16_t)(b + 1);
  }
  return v;
}

uint8_t CharVocab::byte(int64_t id) const {
  MG_CHECK(id >= 1 && id < size(), kOp, "id {} is not a character (vocabulary of {} ids, 0 = padding)", id, size());
  return chars_[id - 1];
}

std::vector<uint8_t> CharVocab::encode(std::string_view text) const {
  MG_CHECK(size() <= 256, kOp, "a vocabulary of {} ids does not fit bytes: use encode_ids", size());
  std::vector<uint8_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    int16_t id = to_id_[(uint8_t)text[i]];
    MG_CHECK(id > 0, kOp, "byte {} at position {} is not in the vocabulary", show_byte((uint8_t)text[i]), i);
    out[i] = (uint8_t)id;
  }
  return out;
}

std::vector<int64_t> CharVocab::encode_ids(std::string_view text) const {
  std::vector<int64_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    int16_t id = to_id_[(uint8_t)text[i]];
    MG_CHECK(id > 0, kOp, "byte {} at position {} is not in the vocabulary", show_byte((uint8_t)text[i]), i);
    out[i] = id;
  }
  return out;
}

std::string CharVocab::decode(std::span<const int64_t> ids) const {
  std::string s(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) s[i] = (char)byte(ids[i]);
  return s;
}

Json CharVocab::to_json() const {
  Json chars = Json::array();
  for (uint8_t c : chars_) chars.push_back((int64_t)c);
  Json j = Json::object();
  j.set("chars", std::move(chars));
  return j;
}

CharVocab CharVocab::from_json(const Json& j) {
  MG_CHECK(j.is_object() && j.size() == 1 && j.contains("chars"), kOp,
           "a character vocabulary is {{\"chars\": [...]}}, got {}", j.describe());
  CharVocab v;
  for (const Json& e : j.at("chars").elements()) {
    int64_t b = e.get_int();
    MG_CHECK(b >= 0 && b < 256, kOp, "vocabulary byte {} is not in 0..255", b);
    MG_CHECK(v.chars_.empty() || b > v.chars_.back(), kOp,
             "vocabulary bytes must be distinct and increasing, got {} after {}", b, v.chars_.back());
    v.chars_.push_back((uint8_t)b);
    v.to_id_[b] = (int16_t)v.chars_.size();
  }
  MG_CHECK(!v.chars_.empty(), kOp, "empty character vocabulary");
  return v;
}

// ---- splits and windows ----

TextData make_text_data(std::string_view text, double val_fraction, bool byte_vocab, std::string_view what) {
  MG_CHECK(val_fraction >= 0 && val_fraction < 1, kOp, "val_fraction {} is not in [0, 1)", val_fraction);
  MG_CHECK(!text.empty(), kOp, "{} is empty", what);
  TextData d;
  d.vocab = byte_vocab ? CharVocab::bytes() : CharVocab::from_text(text);
  size_t n_val = (size_t)std::floor((double)text.size() * val_fraction);
  size_t n_train = text.size() - n_val;
  d.train = d.vocab.encode_ids(text.substr(0, n_train));
  d.val = d.vocab.encode_ids(text.substr(n_train));
  return d;
}

TextData load_text(const std::string& path, double val_fraction, bool byte_vocab) {
  return make_text_data(read_file(path, kOp, size_t(2) << 30), val_fraction, byte_vocab, path);
}

namespace {
LMBatch windows(std::span<const int64_t> ids, int64_t T, const std::vector<int64_t>& starts) {
  const int64_t B = (int64_t)starts.size();
  LMBatch out;
  out.inputs = Tensor::empty({B, T}, DType::Int64);
  out.targets = Tensor::empty({B, T}, DType::Int64);
  int64_t* x = out.inputs.data_ptr<int64_t>();
  int64_t* y = out.targets.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    std::copy_n(ids.data() + starts[b], T, x + b * T);
    std::copy_n(ids.data() + starts[b] + 1, T, y + b * T);
  }
  return out;
}

void check_window(std::span<const int64_t> ids, int64_t T, const char* op) {
  MG_CHECK(T >= 1, op, "window length must be positive, got {}", T);
  MG_CHECK((int64_t)ids.size() >= T + 1, op, "the text has {} tokens, fewer than a window of {} plus its target",
           ids.size(), T);
}
}  // namespace

LMBatch sample_windows(std::span<const int64_t> ids, int64_t batch, int64_t seq_len, Generator& gen) {
  check_window(ids, seq_len, "sample_windows");
  MG_CHECK(batch >= 1, "sample_windows", "batch must be positive, got {}", batch);
  const uint64_t starts_count = ids.size() - seq_len;  // s in [0, n - T - 1]
  uint64_t first = gen.advance((uint64_t)batch);
  std::vector<int64_t> starts(batch);
  for (int64_t b = 0; b < batch; ++b)
    starts[b] = (int64_t)bounded(philox64(gen.seed(), 0, first + b), starts_count);
  return windows(ids, seq_len, starts);
}

int64_t num_eval_windows(std::span<const int64_t> ids, int64_t seq_len) {
  MG_CHECK(seq_len >= 1, "eval_windows", "window length must be positive, got {}", seq_len);
  return ids.empty() ? 0 : ((int64_t)ids.size() - 1) / seq_len;
}

LMBatch eval_windows(std::span<const int64_t> ids, int64_t seq_len, int64_t first, int64_t count) {
  check_window(ids, seq_len, "eval_windows");
  int64_t total = num_eval_windows(ids, seq_len);
  MG_CHECK(first >= 0 && count >= 1 && first + count <= total, "eval_windows",
           "windows [{}, {}) out of range: the text has {} windows of {}", first, first + count, total, seq_len);
  std::vector<int64_t> starts;
  for (int64_t k = first; k < first + count; ++k) starts.push_back(k * seq_len);
  return windows(ids, seq_len, starts);
}

// ---- the default corpus ----

std::string default_cache_dir() {
  if (const char* d = std::getenv("MEGAGRAD_CACHE"); d && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/megagrad";
  if (const char* d = std::getenv("HOME"); d && *d) return std::string(d) + "/.cache/megagrad";
  return "/tmp/megagrad-cache";
}

namespace {
constexpr const char* kKjv = "kjv";
constexpr size_t kKjvMinBytes = 4'000'000;  // bible-kjv 4.38 prints 4,298,239 bytes

std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t pos = 0;
  while (pos <= dirs.size()) {
    size_t end = dirs.find(':', pos);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(pos, end - pos);
    pos = end + 1;
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (std::filesystem::is_regular_file(candidate) && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  std::string usr_bin = "/usr/bin/" + name;  // where Debian installs it, should PATH lack it
  if (std::filesystem::is_regular_file(usr_bin) && ::access(usr_bin.c_str(), X_OK) == 0) return usr_bin;
  return "";
}

// Runs argv (argv[0] a full path) and returns its standard output; error on a failed start or a
// non-zero exit.
std::string run_capture(const std::vector<std::string>& args) {
  int fds[2];
  MG_CHECK(::pipe(fds) == 0, kKjv, "pipe failed: {}", std::strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0].c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    fail(kKjv, "cannot run {}: {}", args[0], std::strerror(rc));
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t k = ::read(fds[0], buf, sizeof buf);
    if (k > 0) out.append(buf, (size_t)k);
    else if (k == 0 || errno != EINTR) break;
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  MG_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, kKjv, "{} failed (exit status {})", args[0],
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return out;
}
}  // namespace

std::string ensure_kjv_corpus(const std::string& dir_in) {
  namespace fs = std::filesystem;
  const std::string dir = dir_in.empty() ? default_cache_dir() : dir_in;
  const std::string path = (fs::path(dir) / "kjv.txt").string();
  std::error_code ec;
  if (fs::is_regular_file(path, ec) && fs::file_size(path, ec) >= kKjvMinBytes) return path;
  std::string bible = find_program("bible");
  MG_CHECK(!bible.empty(), kKjv,
           "the program `bible` was not found on the PATH: install Debian's package bible-kjv "
           "(apt-get install bible-kjv) to make the default corpus, or pass a text file");
  std::string text = run_capture({bible, "-l79", "gen1:1-rev22:21"});
  MG_CHECK(text.size() >= kKjvMinBytes, kKjv,
           "`{} -l79 gen1:1-rev22:21` printed {} bytes, expected about 4.3 MB: is bible-kjv complete?", bible,
           text.size());
  fs::create_directories(dir, ec);
  MG_CHECK(fs::is_directory(dir), kKjv, "cannot create the cache directory {}: {}", dir, ec.message());
  write_file_atomic(path, text, kKjv);
  return path;
}

}  // namespace megagrad::data
