// CPU-only build: the CUDA queries answer "not built", and the device memory and GEMM functions
// (backends/cuda/allocator.h, blas.h) exist but throw "... megagrad was built without CUDA", so
// that code calling them compiles in both builds and fails clearly here. Likewise core's
// cuda_backend() (core/backend.h) is bound here at link time, to a table that refuses every call.
#include <atomic>
#include "backends/cuda/allocator.h"
#include "backends/cuda/blas.h"
#include "backends/cuda/cuda.h"
#include "core/backend.h"
#include "core/error.h"

namespace megagrad {
bool cuda_built() { return false; }
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
std::vector<std::string> cuda_device_descriptions() { return {}; }
std::string cuda_status() { return "not built with CUDA"; }

namespace {
[[noreturn]] void not_built(const char* op, int device) {
  fail(op, "cuda:{} is not available: megagrad was built without CUDA", device);
}
std::atomic<bool> g_allow_tf32{false};
}  // namespace

// ---- allocator.h ----
void* cuda_alloc(size_t, int device) { not_built("cuda_alloc", device); }
// Nothing can have come from cuda_alloc; a non-null pointer is a bug.
void cuda_free(void* p) {
  if (p) fail("cuda_free", "{} was not returned by cuda_alloc (megagrad was built without CUDA)", p);
}
void empty_cuda_cache() {}
bool cuda_caching_enabled() { return false; }
CudaMemoryStats cuda_memory_stats(int) { return {}; }
void cuda_reset_peak_memory_stats(int) {}
void cuda_memcpy_h2d(void*, const void*, size_t, int device) { not_built("cuda_memcpy_h2d", device); }
void cuda_memcpy_d2h(void*, const void*, size_t, int device) { not_built("cuda_memcpy_d2h", device); }
void cuda_memcpy_d2d(void*, const void*, size_t, int device) { not_built("cuda_memcpy_d2d", device); }
void cuda_memset_zero(void*, size_t, int device) { not_built("cuda_memset_zero", device); }
void cuda_synchronize(int) {}  // no device, no work

// ---- blas.h ----
void cuda_gemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
               int64_t, float, float*, int64_t, int device) {
  not_built("cuda_gemm", device);
}
void cuda_gemm(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
               const double*, int64_t, double, double*, int64_t, int device) {
  not_built("cuda_gemm", device);
}
void cuda_gemm_strided_batched(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                               int64_t, const float*, int64_t, int64_t, float, float*, int64_t,
                               int64_t, int64_t, int device) {
  not_built("cuda_gemm_strided_batched", device);
}
void cuda_gemm_strided_batched(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                               int64_t, int64_t, const double*, int64_t, int64_t, double, double*,
                               int64_t, int64_t, int64_t, int device) {
  not_built("cuda_gemm_strided_batched", device);
}
void cuda_set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool cuda_allow_tf32() { return g_allow_tf32.load(); }
std::string cublas_status_name(int status) { return fmt::format("CUBLAS_STATUS_{}", status); }

// ---- core/backend.h ----
// No GPU tensor can exist (its allocation fails first, with cuda_alloc's message), so the other
// entries are never reached; they fail clearly all the same.
namespace {
[[noreturn]] void no_cuda() { fail("cuda", "megagrad was built without CUDA support"); }
struct NoCuda {
  static void* alloc(size_t bytes, int device, bool) { return cuda_alloc(bytes, device); }  // throws
  static void free(void* p, size_t, int) { cuda_free(p); }
  static void copy(void*, Device, const void*, Device, size_t) { no_cuda(); }
  static void fill(int, DType, StridedView, double) { no_cuda(); }
  static void convert(int, DType, StridedView, DType, StridedView) { no_cuda(); }
  static void add_scaled(int, DType, StridedView, StridedView, double) { no_cuda(); }
  static void scale(int, DType, StridedView, double) { no_cuda(); }
  static void philox_fill(int, DType, void*, int64_t, Dist, double, double, uint64_t, uint64_t) { no_cuda(); }
};
constexpr DeviceBackend kNoCudaBackend = backend_table<NoCuda>();
}  // namespace
const DeviceBackend& cuda_backend() { return kNoCudaBackend; }
}  // namespace megagrad
