// Whole-file reads and crash-safe whole-file writes (checkpoints, safetensors, reports).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace megagrad {

// Writes `bytes` to `path` so that readers (and a crash at any moment) see either the old file or
// the complete new one: the data goes to a temp file next to it ("<path>.tmp.<pid>.<n>"), which
// is fsynced and renamed over `path`, and then the directory is fsynced. On any failure (missing
// directory, path is a directory, short write, full disk ...) the temp file is removed, the old
// file is left untouched, and "[<op>] cannot write <path>: <reason>" is thrown.
void write_file_atomic(const std::string& path, std::string_view bytes, std::string_view op);

// For tests that kill a writer mid-write: when set, write_file_atomic writes the temp file in two
// halves and calls the hook after each write with the bytes written so far and the total.
using AtomicWriteHook = void (*)(size_t written, size_t total);
void set_atomic_write_hook_for_tests(AtomicWriteHook hook);

// Reads a whole regular file. Throws "[<op>] cannot read <path>: <reason>" (missing, a directory,
// I/O error) or "[<op>] <path> is N bytes, more than the limit of M bytes".
std::string read_file(const std::string& path, std::string_view op, size_t max_bytes);

}  // namespace megagrad
