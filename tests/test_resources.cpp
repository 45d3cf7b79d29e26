// Resource failures: running out of memory gives an error with the requested size, and the
// process goes on working afterwards. (A full disk while saving: tests/test_safetensors.cpp.)
#include <catch2/catch.hpp>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstring>
#include <string>
#include "core/storage.h"
#include "core/tensor.h"

using namespace megagrad;
using Catch::Matchers::Contains;

TEST_CASE("resources: an allocation larger than the machine is an out-of-memory error with its size", "[resources]") {
  // 2^30 x 2^20 float32 = 4 PiB: no allocator can serve it.
  REQUIRE_THROWS_WITH(Tensor::empty({int64_t(1) << 30, int64_t(1) << 20}),
                      Contains("[alloc] out of memory: could not allocate 4.00 PiB (4503599627370496 bytes) on cpu"));
  REQUIRE_THROWS_WITH(Tensor::zeros({int64_t(1) << 30, int64_t(1) << 20}, DType::Float64),
                      Contains("8.00 PiB"));
  // The failure left nothing broken behind.
  Tensor t = Tensor::ones({1000});
  REQUIRE(t.at({999}) == 1.0);
}

TEST_CASE("resources: a shape whose byte count overflows is refused before allocating", "[resources]") {
  REQUIRE_THROWS_WITH(Tensor::empty({int64_t(1) << 40, int64_t(1) << 40}),
                      Contains("[empty] shape (1099511627776,1099511627776) of float32 needs more than 2^63 bytes"));
  REQUIRE_THROWS_WITH(Tensor::empty({int64_t(1) << 31, int64_t(1) << 31}, DType::Float64),
                      Contains("needs more than 2^63 bytes"));
}

TEST_CASE("human_bytes", "[resources]") {
  CHECK(human_bytes(0) == "0 B");
  CHECK(human_bytes(1023) == "1023 B");
  CHECK(human_bytes(1024) == "1.00 KiB");
  CHECK(human_bytes(1536) == "1.50 KiB");
  CHECK(human_bytes(size_t(3) << 29) == "1.50 GiB");
  CHECK(human_bytes(size_t(1) << 50) == "1.00 PiB");
}

#ifndef __SANITIZE_ADDRESS__  // ASan reserves terabytes of shadow memory: an address-space limit breaks it
TEST_CASE("resources: under an address-space limit, a 1 GiB tensor fails cleanly and smaller ones still work", "[resources]") {
  // In a child process (the limit must not reach the test runner): RLIMIT_AS = 768 MiB above what
  // the child already maps, then ask for 1 GiB.
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    std::string msg = "no error";
    try {
      long pages = 0;
      if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
        std::fclose(f);
      }
      rlimit lim{};
      lim.rlim_cur = lim.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (rlim_t(768) << 20);
      if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(3);
      try {
        Tensor big = Tensor::empty({int64_t(1) << 28});  // 1 GiB float32
        msg = "allocated";
      } catch (const Error& e) {
        msg = e.what();
      }
      Tensor small = Tensor::full({1 << 20}, 2.0);  // 4 MiB: still fine
      if (small.at({12345}) != 2.0) msg += " | small tensor wrong";
    } catch (const std::exception& e) {
      msg = std::string("unexpected: ") + e.what();
    }
    ssize_t w = write(fds[1], msg.data(), msg.size());
    (void)w;
    _exit(0);
  }
  close(fds[1]);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, (size_t)n);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  INFO(got);
  REQUIRE_THAT(got, Contains("[alloc] out of memory: could not allocate 1.00 GiB (1073741824 bytes) on cpu"));
  REQUIRE_THAT(got, !Contains("small tensor wrong"));
}
#endif
