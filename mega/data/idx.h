// IDX files (the MNIST format) and Fashion-MNIST as sequences of 784 pixels.
//
// IDX: magic 00 00 <type> <ndims>, then ndims big-endian uint32 sizes, then the data, row-major.
// Only type 0x08 (unsigned bytes, what MNIST and Fashion-MNIST use) is read; every other field
// is checked: the magic, the type, 1 <= ndims <= 16, the header length, the product of the sizes
// (overflow), and that the data fills the rest of the file exactly. Files may be gzip-compressed
// (detected by their magic; decoded by mega/data/gzip.h, no zlib needed).
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>
#include "core/tensor.h"

namespace megagrad::data {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // prod(dims) bytes, row-major
};

// Errors: "[idx] <what>: <problem>".
IdxArray parse_idx(std::string_view bytes, std::string_view what);
IdxArray read_idx(const std::string& path);  // plain or gzip

// Images (N, rows, cols) with labels (N), as read from an IDX pair.
struct ImageSet {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // N * rows * cols
  std::vector<uint8_t> labels;  // N, each < num_classes
  int64_t pixels_per_image() const { return rows * cols; }
};

// Reads an images file (3 dims) and a labels file (1 dim) and checks that they agree and that
// every label is below num_classes.
ImageSet load_idx_images(const std::string& images_path, const std::string& labels_path, int64_t num_classes = 10);

// Where Debian's package dataset-fashion-mnist installs the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct FashionMnist {
  ImageSet train, test;  // 60000 and 10000 images of 28 x 28
};

// Reads train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte from `dir`, each plain or with ".gz" (the plain file is preferred).
// A missing file is an error naming the Debian package to install.
FashionMnist load_fashion_mnist(const std::string& dir = kFashionMnistDir);
const std::array<std::string_view, 10>& fashion_mnist_classes();  // "T-shirt/top", "Trouser", ...

// Images `indices` as sequences of rows*cols pixels in row-major (raster) order:
// real values in [0, 1] (pixel / 255), float (B, rows*cols) for real-valued input ...
Tensor image_pixels(const ImageSet& set, std::span<const int64_t> indices, DType dtype = DType::Float32);
// ... or int64 tokens pixel + offset, (B, rows*cols). With the default offset 1 the tokens are
// 1..256 (vocabulary 257) and id 0 stays free for padding: a model with padding_idx 0 would
// otherwise treat every black pixel as a pad. Offset 0 gives the raw values 0..255.
Tensor image_tokens(const ImageSet& set, std::span<const int64_t> indices, int64_t offset = 1);
Tensor image_labels(const ImageSet& set, std::span<const int64_t> indices);  // (B) int64

}  // namespace megagrad::data
