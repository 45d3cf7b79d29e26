#include "mega/ref_check.h"
#include <cmath>
#include <set>
#include "autograd/ops.h"
#include "core/safetensors.h"
#include "mega/config.h"

namespace megagrad {

bool RefCheckResult::passed() const {
  for (const RefCheckRow& r : rows)
    if (!(r.error <= tolerance) || !r.problem.empty()) return false;  // NaN fails
  return !rows.empty();
}

namespace {
constexpr std::string_view kOp = "ref-check";

// "[3, 0, 1]": the flat index i in a tensor of this shape.
std::string index_str(int64_t i, const Shape& shape) {
  std::string out = "[";
  std::vector<int64_t> idx = shape.empty() ? std::vector<int64_t>{} : unravel_index(i, shape);
  for (size_t k = 0; k < idx.size(); ++k) out += fmt::format("{}{}", k ? ", " : "", idx[k]);
  return out + "]";
}

// max |ours - ref| / max |ref| over tensors of the same shape (ours already in the reference's
// layout). The shapes are compared first; a non-finite value on either side makes the error
// infinite and is named (std::max would skip a NaN and pass the check).
RefCheckRow compare(const std::string& name, const Tensor& ours, const Tensor& ref, const std::string& file) {
  MG_CHECK(ours.shape() == ref.shape(), kOp, "{}: {} is {} in the reference but {} here", file, name,
           shape_str(ref.shape()), shape_str(ours.shape()));
  std::vector<double> a = ours.to_vector(), b = ref.to_vector();
  MG_CHECK(a.size() == b.size(), kOp, "{}: {} has {} values in the reference but {} here", file, name, b.size(),
           a.size());
  RefCheckRow row{name, 0, ""};
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(b[i]) || !std::isfinite(a[i])) {
      const bool ref_side = !std::isfinite(b[i]);
      row.problem = fmt::format("{} {}{} is {}", ref_side ? "the reference" : "our", name,
                                index_str((int64_t)i, ref.shape()), ref_side ? b[i] : a[i]);
      row.error = INFINITY;
      return row;
    }
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  row.error = scale > 0 ? diff / scale : diff;
  return row;
}

bool is_data_name(const std::string& n) {
  return n == "x" || n == "G" || n == "out" || n == "loss" || n == "padding_mask" || n == "attn_mask" ||
         n.rfind("grad.", 0) == 0 || n.rfind("inter.", 0) == 0;
}
}  // namespace

RefCheckResult ref_check(const std::string& dir, DType dtype) {
  constexpr std::string_view op = kOp;
  LayerCaseConfig cfg = load_layer_config(dir + "/config.json");
  std::string file = dir + (dtype == DType::Float64 ? "/ref_f64.safetensors" : "/ref_f32.safetensors");
  SafeTensors st = load_safetensors(file);

  MegaLayer layer(cfg.layer, 0);
  layer.to(dtype);
  NamedTensors weights;
  for (auto& [name, t] : st.tensors) {
    MG_CHECK(t.dtype() == dtype, op, "{}: tensor {} is {}, expected {}", file, name, t.desc(), dtype_name(dtype));
    if (!is_data_name(name)) weights.emplace_back(name, t);
    // An input (a weight, x, G, the padding mask) that is not finite makes the case meaningless.
    // The additive attn_mask holds -inf where attention is masked: only NaN and +inf are wrong there.
    if (name.rfind("grad.", 0) != 0 && name != "out" && name != "loss" && name.rfind("inter.", 0) != 0) {
      std::vector<double> v = t.to_vector();
      for (size_t i = 0; i < v.size(); ++i)
        MG_CHECK(std::isfinite(v[i]) || (name == "attn_mask" && v[i] == -INFINITY), op,
                 "{}: the reference input {}{} is {}", file, name, index_str((int64_t)i, t.shape()), v[i]);
    }
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

  if (mask.defined())
    MG_CHECK(mask.shape() == (Shape{B, L}), op, "{}: padding_mask is {}, config says ({},{})", file,
             shape_str(mask.shape()), B, L);
  // G must have out's shape: a broadcast would silently weight another loss.
  MG_CHECK(st.at("G").shape() == (Shape{L, B, D}), op, "{}: G is {} in the reference but ({}, {}, {}) here", file,
           shape_str(st.at("G").shape()), L, B, D);

  Tensor out = layer.forward(x, mask);                       // (B, L, D)
  Tensor G = st.at("G").permute({1, 0, 2});                  // (B, L, D) view
  Tensor loss = sum(mul(out, G));
  loss.backward();

  RefCheckResult res{dtype, dtype == DType::Float64 ? 1e-8 : 1e-4, {}};
  res.rows.push_back(compare("out", out.permute({1, 0, 2}), st.at("out"), file));
  res.rows.push_back(compare("loss", loss.reshape({1}), st.at("loss"), file));
  res.rows.push_back(compare("grad.x", x.grad().permute({1, 0, 2}), st.at("grad.x"), file));
  for (auto& [name, p] : layer.named_parameters()) {
    std::string gname = "grad." + name;
    MG_CHECK(st.contains(gname), op, "{}: no reference gradient {}", file, gname);
    MG_CHECK(p.grad().defined(), op, "parameter {} received no gradient", name);
    res.rows.push_back(compare(gname, p.grad(), st.at(gname), file));
  }
  return res;
}

}  // namespace megagrad
