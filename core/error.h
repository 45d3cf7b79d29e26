// Errors: every failure is a megagrad::Error whose message starts with the op's name in brackets,
// e.g. "[matmul] shapes (3,4) and (5,6) do not match".
#pragma once
#include <stdexcept>
#include <string>
#include <fmt/format.h>

namespace megagrad {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// fail("matmul", "shapes {} and {} do not match", a, b) throws "[matmul] shapes ... do not match".
template <typename... Args>
[[noreturn]] void fail(std::string_view op, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format("[{}] {}", op, fmt::format(f, std::forward<Args>(args)...)));
}

}  // namespace megagrad

// MG_CHECK(cond, "op", "format", args...): throws megagrad::Error when cond is false.
#define MG_CHECK(cond, op, ...)                 \
  do {                                          \
    if (!(cond)) ::megagrad::fail(op, __VA_ARGS__); \
  } while (0)
