// Where a Storage lives. The CPU is always there; CUDA devices only when built with CUDA.
#pragma once
#include <cstdint>
#include <string>
#include <fmt/format.h>

namespace megagrad {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool operator==(const Device&) const = default;
  std::string str() const { return type == DeviceType::CPU ? "cpu" : fmt::format("cuda:{}", index); }
};

}  // namespace megagrad

template <> struct fmt::formatter<megagrad::Device> : fmt::formatter<std::string> {
  auto format(const megagrad::Device& d, format_context& ctx) const {
    return fmt::formatter<std::string>::format(d.str(), ctx);
  }
};
