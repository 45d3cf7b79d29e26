// Compiled by tests/install/check_install.sh with only `pkg-config --cflags --libs megagrad`.
#include <megagrad/autograd/ops.h>
#include <megagrad/core/tensor.h>

#include <cstdio>

int main() {
  using namespace megagrad;
  Tensor a = Tensor::from_vector({1.0, 2.0, 3.0, 4.0}, {2, 2}, DType::Float64);
  double s = sum(matmul(a, a)).item();  // [[7, 10], [15, 22]]
  if (s != 54.0) {
    std::fprintf(stderr, "pkg-config program: error: sum(a @ a) = %g, want 54\n", s);
    return 1;
  }
  std::printf("pkg-config program: ok\n");
  return 0;
}
