// Shared by the fuzz targets: the contract every reader must keep ("return a valid result or
// throw megagrad::Error"), a way to report a broken invariant, and a scratch file for the readers
// that only take a path.
#pragma once
#include <fcntl.h>
#include <unistd.h>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>
#include "core/error.h"

namespace fuzz {

// A bug: print why and abort, which libFuzzer reports as a crash and saves the input.
[[noreturn]] inline void bug(const char* format, ...) {
  std::va_list args;
  va_start(args, format);
  std::fputs("\nFUZZ BUG: ", stderr);
  std::vfprintf(stderr, format, args);
  std::fputc('\n', stderr);
  va_end(args);
  std::abort();
}

// Runs f(). True when it returned, false when it threw megagrad::Error (a clean rejection). Any
// other exception (std::bad_alloc, std::out_of_range, ...) is a bug; an exception that is not a
// std::exception escapes, terminates the process, and is reported as a crash too.
// With MEGAGRAD_FUZZ_VERBOSE=1 in the environment it prints each outcome (to check what the seeds
// reach: `MEGAGRAD_FUZZ_VERBOSE=1 build-fuzz/fuzz_x tests/fuzz/corpus/fuzz_x/*`).
inline bool verbose() {
  static const bool v = [] {
    const char* e = std::getenv("MEGAGRAD_FUZZ_VERBOSE");
    return e && *e && *e != '0';
  }();
  return v;
}

template <typename F>
bool accepts(const char* what, F&& f) {
  try {
    f();
    if (verbose()) std::fprintf(stderr, "  %s: accepted\n", what);
    return true;
  } catch (const megagrad::Error& e) {
    if (verbose()) std::fprintf(stderr, "  %s: rejected: %.200s\n", what, e.what());
    return false;
  } catch (const std::exception& e) {
    bug("%s threw %s instead of megagrad::Error: %s", what, typeid(e).name(), e.what());
  }
}

// A scratch file of this process (/tmp/megagrad-fuzz-<pid>-<tag>) for the readers that only take
// a path: rewritten for every input, removed at exit. Each tag is one file, so one input may use
// several. The file stays open and is overwritten in place (pwrite, then ftruncate to the new
// length), never truncated to 0 and closed: on ext4 that pattern makes every close flush the file
// to disk (auto_da_alloc), which made the fuzzer 20 times slower.
struct ScratchFile {
  std::string path;
  int fd = -1;
};

inline ScratchFile& scratch_file(const char* tag) {
  static std::vector<ScratchFile>* files = [] {
    auto* v = new std::vector<ScratchFile>();  // leaked on purpose: the atexit handler uses it
    std::atexit([] {
      for (const ScratchFile& f : *files) ::unlink(f.path.c_str());
    });
    return v;
  }();
  std::string path = "/tmp/megagrad-fuzz-" + std::to_string(::getpid()) + "-" + tag;
  for (ScratchFile& f : *files)
    if (f.path == path) return f;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) bug("cannot create the scratch file %s", path.c_str());
  files->push_back({path, fd});
  return files->back();
}

// Makes the scratch file `tag` hold exactly `bytes` and returns its path.
inline std::string write_scratch(const char* tag, std::string_view bytes) {
  const ScratchFile& f = scratch_file(tag);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::pwrite(f.fd, bytes.data() + done, bytes.size() - done, (off_t)done);
    if (w <= 0) bug("cannot write the scratch file %s", f.path.c_str());
    done += (size_t)w;
  }
  if (::ftruncate(f.fd, (off_t)bytes.size()) != 0) bug("cannot truncate the scratch file %s", f.path.c_str());
  return f.path;
}

}  // namespace fuzz
