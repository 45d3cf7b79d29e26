// "4.00 PiB", "512 B": byte counts in error messages. Plain C++17, so that CUDA sources can
// include it (defined in core/storage.cpp).
#pragma once
#include <cstddef>
#include <string>

namespace megagrad {
std::string human_bytes(size_t n);
}  // namespace megagrad
