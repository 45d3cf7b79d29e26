// Tensors on a CUDA device: storage from the caching allocator, copies between host and device,
// modules moved in place, and host code refusing device memory. Without a device (this machine,
// CI) the allocation itself is a clear error and the rest is a visible skip.
#include <catch2/catch.hpp>
#include "tests/cuda_test_util.h"
#include "autograd/ops.h"
#include "backends/cuda/allocator.h"
#include "backends/cuda/cuda.h"
#include "core/rng.h"
#include "mega/layers.h"

using namespace megagrad;
using Catch::Matchers::Contains;

TEST_CASE("cuda tensor: without a device, allocating one is a clear error", "[cuda]") {
  if (cuda_available()) return test::skip("a CUDA device is present: the tests below allocate on it");
  REQUIRE_THROWS_WITH(Tensor::zeros({2}, DType::Float32, Device::cuda()),
                      Contains("[cuda_alloc] cuda:0 is not available"));
  REQUIRE_THROWS_WITH(Tensor::ones({3}).cuda(), Contains("[cuda_alloc] cuda:0 is not available"));
}

TEST_CASE("cuda tensor: host <-> device copies round-trip every dtype", "[cuda]") {
  if (test::skip_without_cuda()) return;
  for (DType dt : {DType::Float32, DType::Float64}) {
    Tensor a = normal({3, 1000, 7}, 0, 1, dt);
    Tensor d = a.cuda();
    REQUIRE(d.device() == Device::cuda(0));
    REQUIRE(d.dtype() == dt);
    REQUIRE(d.shape() == a.shape());
    REQUIRE(d.cpu().to_vector() == a.to_vector());  // bytes copied: exact
    REQUIRE(d.to(Device::cuda(0)).same(d));          // already there: itself
  }
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{5, -3, 1LL << 40}, {3});
  REQUIRE(idx.cuda().cpu().to_int_vector() == idx.to_int_vector());
  // A view: copied as its own contiguous elements (the transpose of a contiguous CPU tensor).
  Tensor m = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float64);
  REQUIRE(m.t().cuda().cpu().to_vector() == std::vector<double>{1, 4, 2, 5, 3, 6});
  // Zero-filled allocation, and the empty tensor.
  REQUIRE(Tensor::zeros({4097}, DType::Float32, Device::cuda()).cpu().to_vector() == std::vector<double>(4097, 0.0));
  REQUIRE(Tensor::zeros({0, 3}, DType::Float32, Device::cuda()).cpu().numel() == 0);
  // Element access and printing copy to the host first.
  REQUIRE(m.cuda().at({1, 2}) == 6.0);
  REQUIRE(m.cuda().str() == m.str());
}

TEST_CASE("cuda tensor: host code refuses device memory, and moving a graph's tensor is an error", "[cuda]") {
  if (test::skip_without_cuda()) return;
  Tensor d = Tensor::ones({4}).cuda();
  REQUIRE_THROWS_WITH(d.data_ptr<float>(), Contains("[data_ptr]") && Contains("cuda:0"));
  REQUIRE_THROWS_WITH(d.raw_data(), Contains("[data_ptr]"));
  REQUIRE(d.device_data_ptr<float>() != nullptr);
  Tensor w = Tensor::ones({4});
  w.requires_grad_();
  REQUIRE_THROWS_WITH(w.cuda(), Contains("[to]") && Contains("not recorded in the graph"));
}

TEST_CASE("cuda tensor: module.to(device) moves every parameter in place", "[cuda]") {
  if (test::skip_without_cuda()) return;
  MegaLayerConfig c;
  c.embed_dim = 8, c.hidden_dim = 16, c.ffn_hidden_dim = 16, c.z_dim = 4, c.n_dim = 2;
  MegaLayer layer(c, 3);
  NamedTensors before = layer.state_dict();
  std::vector<std::vector<double>> values;
  for (auto& [n, t] : before) values.push_back(t.to_vector());
  const int64_t allocated_before = (int64_t)cuda_memory_stats().allocated;
  layer.to(Device::cuda());
  REQUIRE((int64_t)cuda_memory_stats().allocated > allocated_before);
  NamedTensors after = layer.state_dict();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    INFO(after[i].first);
    REQUIRE(after[i].second.same(before[i].second));  // the same handles, now on the device
    REQUIRE(after[i].second.device() == Device::cuda(0));
    REQUIRE(after[i].second.requires_grad() == before[i].second.requires_grad());
    REQUIRE(after[i].second.to_vector() == values[i]);
  }
  layer.to(Device::cpu());
  for (size_t i = 0; i < after.size(); ++i) REQUIRE(before[i].second.device().is_cpu());
}
