#include "mega/data/idx.h"
#include <filesystem>
#include "core/atomic_file.h"
#include "core/error.h"
#include "mega/data/gzip.h"

namespace megagrad::data {

namespace {
constexpr const char* kOp = "idx";

const char* idx_type_name(uint8_t t) {
  switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return nullptr;
  }
}

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(d[i]);
  }
  s += ')';
  return s;
}
}  // namespace

IdxArray parse_idx(std::string_view bytes, std::string_view what) {
  const uint8_t* p = (const uint8_t*)bytes.data();
  const size_t n = bytes.size();
  MG_CHECK(n >= 4, kOp, "{}: {} bytes, too short for an IDX header", what, n);
  MG_CHECK(p[0] == 0 && p[1] == 0, kOp,
           "{}: not an IDX file (magic {:02x} {:02x} {:02x} {:02x}, expected 00 00 08 <ndims>)", what, p[0], p[1],
           p[2], p[3]);
  const char* type = idx_type_name(p[2]);
  MG_CHECK(type, kOp, "{}: unknown IDX data type {:#04x}", what, p[2]);
  MG_CHECK(p[2] == 0x08, kOp, "{}: IDX data type {:#04x} ({}) is not supported, only 0x08 (unsigned byte)", what,
           p[2], type);
  const int ndims = p[3];
  MG_CHECK(ndims >= 1 && ndims <= 16, kOp, "{}: {} dimensions, expected 1 to 16", what, ndims);
  const size_t header = 4 + 4 * (size_t)ndims;
  MG_CHECK(n >= header, kOp, "{}: {} bytes, too short for the header of {} dimensions ({} bytes)", what, n, ndims,
           header);
  IdxArray a;
  uint64_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    const uint8_t* q = p + 4 + 4 * d;
    uint64_t size = (uint64_t)q[0] << 24 | (uint64_t)q[1] << 16 | (uint64_t)q[2] << 8 | q[3];
    a.dims.push_back((int64_t)size);
    bool overflow = __builtin_mul_overflow(count, size, &count);
    MG_CHECK(!overflow && count <= n - header, kOp,
             "{}: the sizes {}{} need more than the {} data bytes in the file (truncated or corrupt)", what,
             dims_str(a.dims), d + 1 < ndims ? "..." : "", n - header);
  }
  MG_CHECK(count == n - header, kOp, "{}: sizes {} need {} data bytes but the file has {} (trailing bytes)", what,
           dims_str(a.dims), count, n - header);
  a.data.assign(p + header, p + n);
  return a;
}

IdxArray read_idx(const std::string& path) {
  std::string bytes = read_file(path, kOp, size_t(4) << 30);
  if (is_gzip(bytes)) bytes = gunzip(bytes, path);
  return parse_idx(bytes, path);
}

ImageSet load_idx_images(const std::string& images_path, const std::string& labels_path, int64_t num_classes) {
  IdxArray im = read_idx(images_path), lb = read_idx(labels_path);
  MG_CHECK(im.dims.size() == 3, kOp, "{}: images must have 3 dimensions (count, rows, cols), got {}", images_path,
           dims_str(im.dims));
  MG_CHECK(lb.dims.size() == 1, kOp, "{}: labels must have 1 dimension, got {}", labels_path, dims_str(lb.dims));
  MG_CHECK(im.dims[0] == lb.dims[0], kOp, "{} has {} images but {} has {} labels", images_path, im.dims[0],
           labels_path, lb.dims[0]);
  MG_CHECK(im.dims[1] > 0 && im.dims[2] > 0, kOp, "{}: empty images {}", images_path, dims_str(im.dims));
  for (size_t i = 0; i < lb.data.size(); ++i)
    MG_CHECK(lb.data[i] < num_classes, kOp, "{}: label {} of image {} is not below {} classes", labels_path,
             lb.data[i], i, num_classes);
  ImageSet s;
  s.count = im.dims[0], s.rows = im.dims[1], s.cols = im.dims[2];
  s.pixels = std::move(im.data);
  s.labels = std::move(lb.data);
  return s;
}

FashionMnist load_fashion_mnist(const std::string& dir) {
  namespace fs = std::filesystem;
  auto find = [&](const std::string& name) {
    for (const std::string& f : {name, name + ".gz"})
      if (fs::is_regular_file(fs::path(dir) / f)) return (fs::path(dir) / f).string();
    fail("fashion_mnist",
         "{} not found (nor {}.gz): install Debian's package dataset-fashion-mnist (apt-get install "
         "dataset-fashion-mnist), which puts the four IDX files in {}, or pass the directory that holds them",
         (fs::path(dir) / name).string(), name, kFashionMnistDir);
  };
  const std::string train_images = find("train-images-idx3-ubyte"), train_labels = find("train-labels-idx1-ubyte");
  const std::string test_images = find("t10k-images-idx3-ubyte"), test_labels = find("t10k-labels-idx1-ubyte");
  FashionMnist f;
  f.train = load_idx_images(train_images, train_labels);
  f.test = load_idx_images(test_images, test_labels);
  for (const ImageSet* s : {&f.train, &f.test})
    MG_CHECK(s->rows == 28 && s->cols == 28, "fashion_mnist", "{}: images are {}x{}, expected 28x28", dir, s->rows,
             s->cols);
  return f;
}

const std::array<std::string_view, 10>& fashion_mnist_classes() {
  static const std::array<std::string_view, 10> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                         "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

namespace {
void check_indices(const ImageSet& s, std::span<const int64_t> idx, const char* op) {
  MG_CHECK(!idx.empty(), op, "no images selected");
  for (int64_t i : idx) MG_CHECK(i >= 0 && i < s.count, op, "index {} out of range for {} images", i, s.count);
}
}  // namespace

Tensor image_pixels(const ImageSet& s, std::span<const int64_t> idx, DType dtype) {
  check_indices(s, idx, "image_pixels");
  MG_CHECK(is_floating(dtype), "image_pixels", "dtype must be float32 or float64, got {}", dtype);
  const int64_t B = (int64_t)idx.size(), P = s.pixels_per_image();
  Tensor out = Tensor::empty({B, P}, dtype);
  auto fill = [&]<typename T>(T* o) {
    for (int64_t b = 0; b < B; ++b) {
      const uint8_t* px = s.pixels.data() + idx[b] * P;
      for (int64_t p = 0; p < P; ++p) o[b * P + p] = (T)px[p] / T(255);
    }
  };
  if (dtype == DType::Float32) fill(out.data_ptr<float>());
  else fill(out.data_ptr<double>());
  return out;
}

Tensor image_tokens(const ImageSet& s, std::span<const int64_t> idx, int64_t offset) {
  check_indices(s, idx, "image_tokens");
  MG_CHECK(offset >= 0, "image_tokens", "offset {} is negative", offset);
  const int64_t B = (int64_t)idx.size(), P = s.pixels_per_image();
  Tensor out = Tensor::empty({B, P}, DType::Int64);
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* px = s.pixels.data() + idx[b] * P;
    for (int64_t p = 0; p < P; ++p) o[b * P + p] = px[p] + offset;
  }
  return out;
}

Tensor image_labels(const ImageSet& s, std::span<const int64_t> idx) {
  check_indices(s, idx, "image_labels");
  std::vector<int64_t> l;
  for (int64_t i : idx) l.push_back(s.labels[i]);
  return Tensor::from_vector(l, {(int64_t)l.size()});
}

}  // namespace megagrad::data
