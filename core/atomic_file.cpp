// POSIX implementation: open/write/fsync/rename, with every error checked.
#include "core/atomic_file.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include "core/error.h"

namespace megagrad {

namespace {
std::atomic<uint64_t> g_temp_counter{0};
std::atomic<AtomicWriteHook> g_write_hook{nullptr};

std::string parent_dir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}
}  // namespace

void set_atomic_write_hook_for_tests(AtomicWriteHook hook) { g_write_hook = hook; }

void write_file_atomic(const std::string& path, std::string_view bytes, std::string_view op) {
  std::string tmp = fmt::format("{}.tmp.{}.{}", path, (long)::getpid(), g_temp_counter++);
  int fd = -1;
  // Closes and removes the temp file, then throws with the errno of the failed step.
  auto fail_write = [&](int err, std::string_view step) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    fail(op, "cannot write {}: {} ({})", path, std::strerror(err), step);
  };
  fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    int err = errno;
    fail(op, "cannot write {}: {} (creating the temp file {})", path, std::strerror(err), tmp);
  }
  size_t done = 0;
  const AtomicWriteHook hook = g_write_hook;
  while (done < bytes.size()) {
    size_t chunk = std::min<size_t>(bytes.size() - done, size_t(1) << 30);
    if (hook && done == 0) chunk = std::max<size_t>(1, bytes.size() / 2);
    ssize_t w = ::write(fd, bytes.data() + done, chunk);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) fail_write(errno, "writing the temp file");
    if (w == 0) fail_write(ENOSPC, "writing the temp file");  // no progress: treat as a full disk
    done += (size_t)w;
    if (hook) hook(done, bytes.size());
  }
  if (::fsync(fd) != 0) fail_write(errno, "fsync of the temp file");
  int rc = ::close(fd);  // close may report delayed write errors (NFS, quotas)
  fd = -1;
  if (rc != 0) fail_write(errno, "closing the temp file");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail_write(errno, "renaming the temp file over it");
  // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL).
  std::string dir = parent_dir(path);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;  // the data is written and renamed; only the durability of the rename is unknown
  rc = ::fsync(dfd);
  int err = errno;
  ::close(dfd);
  if (rc != 0 && err != EINVAL && err != EROFS)
    fail(op, "cannot write {}: {} (fsync of directory {}; the new file is in place but may not survive a crash)",
         path, std::strerror(err), dir);
}

std::string read_file(const std::string& path, std::string_view op, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    fail(op, "cannot read {}: {}", path, std::strerror(err));
  }
  auto fail_read = [&](int err) {
    ::close(fd);
    fail(op, "cannot read {}: {}", path, std::strerror(err));
  };
  auto too_large = [&](uint64_t size, bool at_least) {
    ::close(fd);
    fail(op, "{} is {}{} bytes, more than the limit of {} bytes", path, at_least ? "at least " : "", size,
         max_bytes);
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail_read(errno);
  if (S_ISDIR(st.st_mode)) fail_read(EISDIR);
  if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_bytes) too_large((uint64_t)st.st_size, false);
  std::string out;
  out.resize(S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096);  // +1 to see EOF in one go
  size_t got = 0;
  for (;;) {
    if (got == out.size()) out.resize(out.size() * 2);
    ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail_read(errno);
    if (r == 0) break;
    got += (size_t)r;
    if (got > max_bytes) too_large(got, true);  // the file grew, or is not a regular file
  }
  ::close(fd);
  out.resize(got);
  return out;
}

}  // namespace megagrad
