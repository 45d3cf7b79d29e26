#include "mega/ref_check.h"
#include <cmath>
#include <set>
#include "autograd/ops.h"
#include "core/safetensors.h"
#include "mega/config.h"

namespace megagrad {

bool RefCheckResult::passed() const {
  for (const RefCheckRow& r : rows)
    if (!(r.error <= tolerance)) return false;  // NaN fails
  return !rows.empty();
}

namespace {
double relative_error(const Tensor& ours, const Tensor& ref) {
  std::vector<double> a = ours.to_vector(), b = ref.to_vector();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    if (std::isnan(a[i])) diff = INFINITY;
    scale = std::max(scale, std::abs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

bool is_data_name(const std::string& n) {
  return n == "x" || n == "G" || n == "out" || n == "loss" || n == "padding_mask" || n == "attn_mask" ||
         n.rfind("grad.", 0) == 0 || n.rfind("inter.", 0) == 0;
}
}  // namespace

RefCheckResult ref_check(const std::string& dir, DType dtype) {
  constexpr std::string_view op = "ref-check";
  LayerCaseConfig cfg = load_layer_config(dir + "/config.json");
  std::string file = dir + (dtype == DType::Float64 ? "/ref_f64.safetensors" : "/ref_f32.safetensors");
  SafeTensors st = load_safetensors(file);

  MegaLayer layer(cfg.layer, 0);
  layer.to(dtype);
  NamedTensors weights;
  for (auto& [name, t] : st.tensors) {
    MG_CHECK(t.dtype() == dtype, op, "{}: tensor {} is {}, expected {}", file, name, t.desc(), dtype_name(dtype));
    if (!is_data_name(name)) weights.emplace_back(name, t);
  }
  layer.load_state_dict(weights, /*strict=*/true);

  const Tensor& x_ref = st.at("x");  // (L, B, D), time-major
  const int64_t L = cfg.seq_len, B = cfg.batch, D = cfg.layer.embed_dim;
  MG_CHECK(x_ref.shape() == (Shape{L, B, D}), op, "{}: x is {}, config says ({},{},{})", file, x_ref.desc(), L, B, D);
  Tensor x = x_ref.permute({1, 0, 2}).contiguous();
  x.requires_grad_();
  Tensor mask = st.contains("padding_mask") ? st.at("padding_mask") : Tensor();
  MG_CHECK(mask.defined() == cfg.with_padding, op, "{}: with_padding is {} but padding_mask is {}", file,
           cfg.with_padding, mask.defined() ? "present" : "absent");

  Tensor out = layer.forward(x, mask);                       // (B, L, D)
  Tensor G = st.at("G").permute({1, 0, 2});                  // (B, L, D) view
  Tensor loss = sum(mul(out, G));
  loss.backward();

  RefCheckResult res{dtype, dtype == DType::Float64 ? 1e-8 : 1e-4, {}};
  res.rows.push_back({"out", relative_error(out.permute({1, 0, 2}), st.at("out"))});
  res.rows.push_back({"loss", relative_error(loss.reshape({1}), st.at("loss"))});
  res.rows.push_back({"grad.x", relative_error(x.grad().permute({1, 0, 2}), st.at("grad.x"))});
  for (auto& [name, p] : layer.named_parameters()) {
    std::string gname = "grad." + name;
    MG_CHECK(st.contains(gname), op, "{}: no reference gradient {}", file, gname);
    MG_CHECK(p.grad().defined(), op, "parameter {} received no gradient", name);
    res.rows.push_back({gname, relative_error(p.grad(), st.at(gname))});
  }
  return res;
}

}  // namespace megagrad
