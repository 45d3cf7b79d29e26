// safetensors reader and writer. The reader validates the whole header against the data section
// before reading any tensor data, then copies each tensor's bytes once, into its own storage.
#include "core/safetensors.h"
#include "core/hash.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>
#include <set>
#include "core/atomic_file.h"
#include "core/json.h"

namespace megagrad {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swapping");

namespace {
constexpr std::string_view kLoad = "load_safetensors";
constexpr std::string_view kSave = "save_safetensors";

// A dtype code of the file: the tensor's dtype in memory, and the bytes of one element in the
// file. F16 and BF16 are widened to float32 as they are read (2 bytes in the file, 4 in memory).
struct FileDType {
  DType dtype;
  Half half;  // Half::none: the file holds the in-memory dtype itself
};
std::optional<FileDType> dtype_from_code(std::string_view code) {
  if (code == "F32") return FileDType{DType::Float32, Half::none};
  if (code == "F64") return FileDType{DType::Float64, Half::none};
  if (code == "I64") return FileDType{DType::Int64, Half::none};
  if (code == "BOOL") return FileDType{DType::Bool, Half::none};
  if (code == "F16") return FileDType{DType::Float32, Half::f16};
  if (code == "BF16") return FileDType{DType::Float32, Half::bf16};
  return std::nullopt;
}
std::string_view dtype_code(DType t) {
  switch (t) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int64: return "I64";
    case DType::Bool: return "BOOL";
  }
  return "?";
}
std::string_view half_code(Half h) { return h == Half::f16 ? "F16" : "BF16"; }

// n little-endian 16-bit floats at src, widened to float32 at dst.
void widen_halves(const char* src, uint64_t n, Half half, float* dst) {
  const auto* p = reinterpret_cast<const unsigned char*>(src);
  for (uint64_t i = 0; i < n; ++i) {
    const uint16_t bits = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
    dst[i] = half == Half::f16 ? f16_to_f32(bits) : bf16_to_f32(bits);
  }
}

// One tensor of a validated header: `nbytes` = end - begin = numel * element size in the file.
struct Entry {
  std::string name;
  DType dtype;
  Half half;  // F16/BF16 in the file, widened to dtype (float32) when read
  Shape shape;
  uint64_t begin, end;
};
struct Header {
  std::vector<Entry> entries;  // header order
  std::map<std::string, std::string> metadata;
};

std::string clip(std::string s, size_t n = 80) { return s.size() <= n ? s : s.substr(0, n) + "..."; }

// The header length N from the first 8 bytes, checked against the file size.
uint64_t header_length(const unsigned char* first8, uint64_t file_size, std::string_view what) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | first8[i];
  if (n > kSafetensorsMaxHeader)
    fail(kLoad, "{}: header length {} is more than the limit of {} bytes (not a safetensors file?)", what, n,
         kSafetensorsMaxHeader);
  if (n > file_size - 8)
    fail(kLoad, "{}: header length {} exceeds the {} bytes after the length field (truncated file?)", what, n,
         file_size - 8);
  return n;
}

Entry parse_entry(const std::string& name, const Json& info, uint64_t data_size, std::string_view what) {
  auto bad = [&]<typename... Args>(fmt::format_string<Args...> f, Args&&... args) {
    fail(kLoad, "{}: tensor \"{}\": {}", what, name, fmt::format(f, std::forward<Args>(args)...));
  };
  if (name.empty()) fail(kLoad, "{}: a tensor has an empty name", what);
  if (!info.is_object()) bad("expected an object {{dtype, shape, data_offsets}}, got {}", info.describe());
  for (const auto& [key, v] : info.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets") bad("unknown field \"{}\"", key);
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) bad("missing field \"{}\"", key);

  Entry e{name, DType::Float32, Half::none, {}, 0, 0};
  const Json& dt = info.at("dtype");
  if (!dt.is_string()) bad("dtype must be a string, got {}", dt.describe());
  std::optional<FileDType> dtype = dtype_from_code(dt.get_string());
  if (!dtype)
    bad("dtype \"{}\" is not supported (supported: F32, F64, I64, BOOL, and F16, BF16 read as float32)",
        clip(dt.get_string()));
  e.dtype = dtype->dtype;
  e.half = dtype->half;

  const Json& sh = info.at("shape");
  bool shape_ok = sh.is_array();
  if (shape_ok)
    for (const Json& d : sh.elements()) shape_ok = shape_ok && d.is_integer() && d.get_int() >= 0;
  if (!shape_ok) bad("shape must be an array of non-negative integers, got {}", clip(sh.dump()));
  for (const Json& d : sh.elements()) e.shape.push_back(d.get_int());
  // numel * dtype size, refusing overflow (a zero dimension makes it 0 whatever the others are).
  uint64_t nbytes = e.half == Half::none ? dtype_size(e.dtype) : 2;
  if (std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end()) nbytes = 0;
  for (int64_t d : e.shape)
    if (nbytes && __builtin_mul_overflow(nbytes, (uint64_t)d, &nbytes))
      bad("shape {} is too large: its byte count overflows", shape_str(e.shape));

  const Json& off = info.at("data_offsets");
  bool off_ok = off.is_array() && off.size() == 2;
  if (off_ok)
    for (const Json& o : off.elements()) off_ok = off_ok && o.is_integer() && o.get_int() >= 0;
  if (!off_ok) bad("data_offsets must be two non-negative integers [begin, end], got {}", clip(off.dump()));
  e.begin = (uint64_t)off.at(0).get_int();
  e.end = (uint64_t)off.at(1).get_int();
  if (e.begin > e.end) bad("data_offsets [{}, {}]: begin is after end", e.begin, e.end);
  if (e.end - e.begin != nbytes)
    bad("data_offsets [{}, {}] hold {} bytes, but shape {} of {} needs {}", e.begin, e.end, e.end - e.begin,
        shape_str(e.shape), dt.get_string(), nbytes);
  if (e.end > data_size)
    bad("data_offsets [{}, {}] go beyond the data section of {} bytes (truncated file?)", e.begin, e.end,
        data_size);
  return e;
}

// Validates the header text against a data section of data_size bytes.
Header parse_header(std::string_view text, uint64_t data_size, std::string_view what) {
  Json h;
  try {
    h = Json::parse(text, "header");
  } catch (const Error& err) {
    std::string_view msg = err.what();
    if (msg.starts_with("[json] ")) msg.remove_prefix(7);
    fail(kLoad, "{}: invalid JSON: {}", what, msg);
  }
  if (!h.is_object()) fail(kLoad, "{}: the header must be a JSON object, got {}", what, h.describe());

  Header out;
  for (const auto& [name, info] : h.items()) {
    if (name != "__metadata__") {
      out.entries.push_back(parse_entry(name, info, data_size, what));
      continue;
    }
    if (!info.is_object()) fail(kLoad, "{}: __metadata__ must be an object, got {}", what, info.describe());
    for (const auto& [k, v] : info.items()) {
      if (!v.is_string())
        fail(kLoad, "{}: __metadata__ value of \"{}\" must be a string, got {}", what, k, v.describe());
      out.metadata[k] = v.get_string();
    }
  }

  // The tensors must tile the data section exactly: no overlaps, no holes, nothing after the end.
  std::vector<size_t> order(out.entries.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const Entry &x = out.entries[a], &y = out.entries[b];
    return std::pair(x.begin, x.end) < std::pair(y.begin, y.end);
  });
  uint64_t covered = 0;    // bytes [0, covered) belong to tensors seen so far
  const Entry* last = nullptr;  // the tensor that ends at `covered`
  for (size_t i : order) {
    const Entry& e = out.entries[i];
    if (e.begin < covered)
      fail(kLoad, "{}: tensors \"{}\" [{}, {}] and \"{}\" [{}, {}] overlap", what, last->name, last->begin,
           last->end, e.name, e.begin, e.end);
    if (e.begin > covered)
      fail(kLoad, "{}: data bytes [{}, {}) before tensor \"{}\" are not covered by any tensor (a hole)", what,
           covered, e.begin, e.name);
    if (e.end > covered || !last) covered = e.end, last = &e;
  }
  if (covered != data_size)
    fail(kLoad, "{}: data bytes [{}, {}) at the end are not covered by any tensor (a hole)", what, covered,
         data_size);
  return out;
}

// A BOOL tensor's bytes must be 0 or 1: anything else is not a valid C++ bool.
void check_bools(const Entry& e, const Tensor& t, std::string_view what) {
  const auto* p = static_cast<const unsigned char*>(t.raw_data());
  for (uint64_t i = 0; i < e.end - e.begin; ++i)
    if (p[i] > 1)
      fail(kLoad, "{}: tensor \"{}\": BOOL element {} has byte value {} (must be 0 or 1)", what, e.name, i, p[i]);
}

// Reads exactly n bytes at offset, or throws.
void pread_exact(int fd, void* dst, uint64_t n, uint64_t offset, const std::string& path) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, std::min<uint64_t>(n, uint64_t(1) << 30), (off_t)offset);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail(kLoad, "cannot read {}: {}", path, std::strerror(errno));
    if (r == 0) fail(kLoad, "cannot read {}: unexpected end of file (did it shrink while loading?)", path);
    p += r, n -= (uint64_t)r, offset += (uint64_t)r;
  }
}

// Closes a file descriptor on every exit path.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float32 (a normal number there)
    const float v = std::ldexp((float)mantissa, -24);
    return sign ? -v : v;
  }
  if (exponent == 31) bits = sign | 0x7F800000u | (mantissa << 13);  // Inf, or NaN with its payload
  else bits = sign | ((exponent + 112) << 23) | (mantissa << 13);     // rebias 15 -> 127
  return std::bit_cast<float>(bits);
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

bool SafeTensors::contains(std::string_view name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return true;
  return false;
}

const Tensor& SafeTensors::at(std::string_view name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  std::string names;
  for (size_t i = 0; i < tensors.size() && i < 8; ++i) names += fmt::format("{}{}", i ? ", " : "", tensors[i].first);
  if (tensors.size() > 8) names += ", ...";
  fail("safetensors", "{}: no tensor \"{}\" ({} tensors: {})", source.empty() ? "safetensors" : source, name,
       tensors.size(), names);
}

SafeTensors parse_safetensors(std::string_view bytes, std::string_view what) {
  if (bytes.size() < 8)
    fail(kLoad, "{}: file is {} bytes, shorter than the 8-byte header length", what, bytes.size());
  uint64_t n = header_length(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), what);
  std::string_view data = bytes.substr(8 + n);
  Header h = parse_header(bytes.substr(8, n), data.size(), what);
  SafeTensors out;
  out.source = std::string(what);
  out.metadata = std::move(h.metadata);
  for (const Entry& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.half != Half::none) {
      widen_halves(data.data() + e.begin, (e.end - e.begin) / 2, e.half, static_cast<float*>(t.raw_data()));
      out.widened.emplace_back(e.name, std::string(half_code(e.half)));
    } else {
      std::memcpy(t.raw_data(), data.data() + e.begin, e.end - e.begin);
    }
    if (e.dtype == DType::Bool) check_bools(e, t, what);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

SafeTensors load_safetensors(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) fail(kLoad, "cannot read {}: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail(kLoad, "cannot read {}: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(kLoad, "cannot read {}: not a regular file", path);
  uint64_t size = (uint64_t)st.st_size;
  if (size < 8) fail(kLoad, "{}: file is {} bytes, shorter than the 8-byte header length", path, size);
  unsigned char first8[8];
  pread_exact(f.fd, first8, 8, 0, path);
  uint64_t n = header_length(first8, size, path);
  std::string header(n, '\0');
  pread_exact(f.fd, header.data(), n, 8, path);
  Header h = parse_header(header, size - 8 - n, path);
  SafeTensors out;
  out.source = path;
  out.metadata = std::move(h.metadata);
  std::vector<char> halves;  // F16/BF16 bytes on their way to float32, a block at a time
  for (const Entry& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);  // uninitialised: the read below fills it
    if (e.half != Half::none) {
      constexpr uint64_t kBlock = uint64_t(1) << 20;  // elements per read
      const uint64_t count = (e.end - e.begin) / 2;
      auto* dst = static_cast<float*>(t.raw_data());
      halves.resize(2 * std::min(count, kBlock));
      for (uint64_t i = 0; i < count; i += kBlock) {
        const uint64_t k = std::min(count - i, kBlock);
        pread_exact(f.fd, halves.data(), 2 * k, 8 + n + e.begin + 2 * i, path);
        widen_halves(halves.data(), k, e.half, dst + i);
      }
      out.widened.emplace_back(e.name, std::string(half_code(e.half)));
    } else {
      pread_exact(f.fd, t.raw_data(), e.end - e.begin, 8 + n + e.begin, path);
    }
    if (e.dtype == DType::Bool) check_bools(e, t, path);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

std::string serialize_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) {
    Json m = Json::object();
    for (const auto& [k, v] : metadata) m.set(k, Json(v));
    header.set("__metadata__", std::move(m));
  }
  std::set<std::string_view> seen;
  std::vector<Tensor> data;  // contiguous, in order
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty()) fail(kSave, "a tensor has an empty name");
    if (name == "__metadata__") fail(kSave, "\"__metadata__\" is reserved and cannot name a tensor");
    if (!seen.insert(name).second) fail(kSave, "duplicate tensor name \"{}\"", name);
    if (!t.defined()) fail(kSave, "tensor \"{}\" is undefined", name);
    if (!t.device().is_cpu()) fail(kSave, "tensor \"{}\" is {}: move it to the CPU first", name, t.desc());
    Tensor c = t.detach().cpu().contiguous();  // device tensors are saved from a host copy
    uint64_t nbytes = (uint64_t)c.numel() * dtype_size(c.dtype());
    Json shape = Json::array();
    for (int64_t d : c.shape()) shape.push_back(Json(d));
    Json info = Json::object();
    info.set("dtype", Json(std::string(dtype_code(c.dtype()))));
    info.set("shape", std::move(shape));
    info.set("data_offsets", Json(Json::Array{Json(offset), Json(offset + nbytes)}));
    header.set(name, std::move(info));
    data.push_back(std::move(c));
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // so the data starts 8-byte aligned
  std::string out;
  out.reserve(8 + text.size() + offset);
  for (int i = 0; i < 8; ++i) out += (char)((uint64_t)text.size() >> (8 * i) & 0xFF);
  out += text;
  for (const Tensor& c : data)
    out.append(static_cast<const char*>(c.raw_data()), (size_t)c.numel() * dtype_size(c.dtype()));
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata), kSave);
}

// ---------------------------------------------------------------- whole-file checksum

namespace {
constexpr size_t kChecksumDigits = 16;

// FNV-1a 64 over bytes[0, size), with the kChecksumDigits bytes at `hole` read as '0'.
uint64_t fnv1a_with_hole(std::string_view bytes, size_t hole) {
  const uint64_t h = fnv1a(bytes.substr(0, hole));
  return fnv1a(bytes.substr(hole + kChecksumDigits), fnv1a(std::string_view("0000000000000000", kChecksumDigits), h));
}

// Where the checksum's digits stand in the file: the one `"checksum":"` in the header as our
// writer prints it. Inside a JSON string value every quote is escaped, so no metadata value or
// tensor entry can contain this text. npos when the header has none.
size_t checksum_position(std::string_view bytes, std::string_view what) {
  uint64_t n = header_length(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), what);
  std::string_view header = bytes.substr(8, n);
  const std::string needle = fmt::format("\"{}\":\"", kFileChecksumKey);
  size_t at = header.find(needle);
  if (at == std::string_view::npos) return std::string_view::npos;
  if (header.find(needle, at + 1) != std::string_view::npos)
    fail(kLoad, "{}: the header holds the key \"{}\" more than once", what, kFileChecksumKey);
  size_t pos = 8 + at + needle.size();
  if (pos + kChecksumDigits >= 8 + n || bytes[pos + kChecksumDigits] != '"')
    fail(kLoad, "{}: the checksum is not {} hex digits", what, kChecksumDigits);
  return pos;
}
}  // namespace

std::string serialize_safetensors_checksummed(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                              std::map<std::string, std::string> metadata) {
  if (metadata.count(std::string(kFileChecksumKey)))
    fail(kSave, "metadata key \"{}\" is reserved for the file's checksum", kFileChecksumKey);
  metadata[std::string(kFileChecksumKey)] = std::string(kChecksumDigits, '0');
  std::string bytes = serialize_safetensors(tensors, metadata);
  size_t pos = checksum_position(bytes, "serialize_safetensors_checksummed");
  std::string digits = fmt::format("{:016x}", fnv1a_with_hole(bytes, pos));
  bytes.replace(pos, kChecksumDigits, digits);
  return bytes;
}

FileChecksum verify_file_checksum(std::string_view bytes, std::string_view what) {
  // The structure first (sizes, offsets, JSON), without copying any tensor data.
  if (bytes.size() < 8)
    fail(kLoad, "{}: file is {} bytes, shorter than the 8-byte header length", what, bytes.size());
  const uint64_t n = header_length(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), what);
  const Header h = parse_header(bytes.substr(8, n), bytes.size() - 8 - n, what);
  auto it = h.metadata.find(std::string(kFileChecksumKey));
  size_t pos = checksum_position(bytes, what);
  if (it == h.metadata.end()) {
    if (pos != std::string_view::npos) fail(kLoad, "{}: the checksum is not in the metadata", what);
    return FileChecksum::absent;
  }
  if (pos == std::string_view::npos || it->second != bytes.substr(pos, kChecksumDigits))
    fail(kLoad, "{}: the checksum is not in the form megagrad writes (\"{}\":\"<{} hex digits>\")", what,
         kFileChecksumKey, kChecksumDigits);
  const std::string computed = fmt::format("{:016x}", fnv1a_with_hole(bytes, pos));
  if (computed != it->second)
    fail(kLoad, "{}: checksum mismatch (stored {}, computed {}): the file was changed or corrupted after it "
         "was written", what, it->second, computed);
  return FileChecksum::verified;
}

SafeTensors load_safetensors_verified(const std::string& path, FileChecksum* state) {
  const std::string bytes = read_file(path, kLoad, (size_t)1 << 40);
  FileChecksum s = verify_file_checksum(bytes, path);
  if (state) *state = s;
  return parse_safetensors(bytes, path);
}

}  // namespace megagrad
