// The CUDA backend's public face. With a CPU-only build these report "no CUDA".
#pragma once
#include <string>
#include <vector>

namespace megagrad {

// Was megagrad built with the CUDA backend?
bool cuda_built();
// Built with CUDA, and at least one device usable (a machine without a GPU or driver: false).
bool cuda_available();
int cuda_device_count();
// One line per device ("NVIDIA H200, sm_90, 139 GiB"), or why there are none.
std::vector<std::string> cuda_device_descriptions();
std::string cuda_status();  // e.g. "no device: CUDA driver version is insufficient"

}  // namespace megagrad
