// CPU-only build: the CUDA queries answer "not built".
#include "backends/cuda/cuda.h"

namespace megagrad {
bool cuda_built() { return false; }
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
std::vector<std::string> cuda_device_descriptions() { return {}; }
std::string cuda_status() { return "not built with CUDA"; }
}  // namespace megagrad
