// core/safetensors and core/atomic_file: the official reference files, bit-exact round trips,
// a table of corrupted files (each must fail with a clear error), and crash-safe writes.
#include <catch2/catch.hpp>
#include <sys/resource.h>
#include <unistd.h>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include "backends/cpu/allocator.h"
#include "core/atomic_file.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "tests/test_util.h"

using namespace megagrad;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {
const std::string kCase = std::string(MEGAGRAD_TEST_DATA) + "/ref/i_tiny_softmax_simple_layernorm";

// A fresh directory, removed with everything in it at the end of the test.
using TempDir = test::TempDir;

std::vector<std::string> temp_files_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
  return out;
}

void write_plain(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), (std::streamsize)bytes.size());
  REQUIRE(f.good());
}

std::string le64(uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += (char)((n >> (8 * i)) & 0xFF);
  return s;
}

// A safetensors file from its parts: length field, header text, data bytes.
std::string make_file(std::string_view header, std::string_view data) {
  return le64(header.size()) + std::string(header) + std::string(data);
}

// The tensor's elements as row-major bytes (independent of its strides).
std::string bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), (size_t)c.numel() * dtype_size(c.dtype()));
}

void require_bit_equal(const Tensor& a, const Tensor& b) {
  REQUIRE(a.dtype() == b.dtype());
  REQUIRE(a.shape() == b.shape());
  REQUIRE(bytes_of(a) == bytes_of(b));
}

Tensor random_bits_tensor(const Shape& shape, DType dtype, uint64_t seed) {
  Tensor t = Tensor::empty(shape, dtype);
  std::mt19937_64 rng(seed);
  auto* p = static_cast<unsigned char*>(t.raw_data());
  size_t n = (size_t)t.numel() * dtype_size(dtype);
  for (size_t i = 0; i < n; ++i) p[i] = (unsigned char)(dtype == DType::Bool ? rng() % 2 : rng());
  return t;
}
}  // namespace

TEST_CASE("safetensors: loads the official reference files", "[safetensors]") {
  Json cfg = Json::parse(read_file(kCase + "/config.json", "test", 1 << 20));
  std::map<std::string, SafeTensors> loaded;
  for (const char* file : {"ref_f32.safetensors", "ref_f64.safetensors"}) {
    INFO(file);
    std::string path = kCase + "/" + file;
    SafeTensors st = load_safetensors(path);
    REQUIRE(st.source == path);
    DType want = std::string(file) == "ref_f32.safetensors" ? DType::Float32 : DType::Float64;
    // Names, order and shapes as listed by config.json (written by the same Python run).
    const Json& listing = cfg.at("_files").at(file).at("tensors");
    REQUIRE(st.tensors.size() == listing.size());
    size_t i = 0;
    for (const auto& [name, shape] : listing.items()) {
      const auto& [got_name, t] = st.tensors[i++];
      INFO(name);
      REQUIRE(got_name == name);
      Shape expect;
      for (const Json& d : shape.elements()) expect.push_back(d.get_int());
      REQUIRE(t.shape() == expect);
      REQUIRE(t.dtype() == want);
      REQUIRE(t.is_contiguous());
      REQUIRE(t.device().is_cpu());
      REQUIRE(st.contains(name));
    }
    // The loss value config.json records (a Python float) is the stored scalar, exactly.
    REQUIRE(st.at("loss").item() == cfg.at("_files").at(file).at("loss").get_double());
    // __metadata__: strings; "config" is itself JSON that matches config.json.
    REQUIRE(st.metadata.at("dtype") == (want == DType::Float32 ? "f32" : "f64"));
    REQUIRE(st.metadata.at("official_commit") == cfg.at("_official_commit").get_string());
    Json meta_cfg = Json::parse(st.metadata.at("config"), "__metadata__.config");
    for (const auto& [k, v] : meta_cfg.items()) REQUIRE(v.dump() == cfg.at(k).dump());
    // Reading from memory gives the same result as reading the file.
    SafeTensors mem = parse_safetensors(read_file(path, "test", 1 << 20), file);
    REQUIRE(mem.tensors.size() == st.tensors.size());
    for (size_t j = 0; j < st.tensors.size(); ++j) {
      REQUIRE(mem.tensors[j].first == st.tensors[j].first);
      require_bit_equal(mem.tensors[j].second, st.tensors[j].second);
    }
    REQUIRE(mem.metadata == st.metadata);
    loaded.emplace(file, std::move(st));
  }
  // The inputs and parameters are float32 values in both files: the F32 and F64 decodings of
  // the two files must agree exactly.
  const SafeTensors &f32 = loaded.at("ref_f32.safetensors"), &f64 = loaded.at("ref_f64.safetensors");
  const size_t n_f32 = cfg.at("_files").at("ref_f32.safetensors").at("tensors").size();
  int compared = 0;
  for (const auto& [name, t] : f32.tensors) {
    if (name.starts_with("grad.") || name.starts_with("inter.") || name == "out" || name == "loss") continue;
    INFO(name);
    REQUIRE(t.to_vector() == f64.at(name).to_vector());
    ++compared;
  }
  REQUIRE(compared == 24);  // x, G and 22 parameters

  REQUIRE_THROWS_WITH(f32.at("mega_layer.nope"), Contains("[safetensors]") && Contains("\"mega_layer.nope\"") &&
                                                   Contains("ref_f32.safetensors") &&
                                                   Contains(fmt::format("({} tensors: x, G, out,", n_f32)));
  REQUIRE_FALSE(f32.contains("mega_layer.nope"));
}

TEST_CASE("safetensors: the writer produces the documented bytes", "[safetensors]") {
  // Written by hand from the format description, not by the writer.
  Tensor a = Tensor::from_vector({1.0, -2.0}, {2}, DType::Float32);
  Tensor m = Tensor::from_vector(std::vector<int64_t>{3}, {1});
  std::string header = R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("m":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}})";
  REQUIRE(header.size() == 133);
  header += "   ";  // padded to 136, a multiple of 8
  std::string expect = le64(136) + header + std::string("\x00\x00\x80\x3F\x00\x00\x00\xC0", 8) +
                       std::string("\x03\x00\x00\x00\x00\x00\x00\x00", 8);
  REQUIRE(serialize_safetensors({{"a", a}, {"m", m}}, {{"k", "v"}}) == expect);
  // No metadata: no "__metadata__" key.
  REQUIRE(serialize_safetensors({{"a", a}}).substr(8, 20) == R"({"a":{"dtype":"F32",)");
}

TEST_CASE("safetensors: save/load round-trips bit-exactly", "[safetensors]") {
  TempDir dir;
  Tensor f32 = random_bits_tensor({3, 5}, DType::Float32, 1);  // random bit patterns: NaNs, denormals, -0 ...
  Tensor f64 = random_bits_tensor({4, 3}, DType::Float64, 2);
  Tensor i64 = Tensor::from_vector(std::vector<int64_t>{INT64_MIN, -1, 0, 1, INT64_MAX, 42}, {2, 3});
  Tensor b = random_bits_tensor({7}, DType::Bool, 3);
  Tensor special = Tensor::from_vector({0.0, -0.0, HUGE_VAL, -HUGE_VAL, std::nan(""), 5e-324}, {6}, DType::Float64);
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32", f32},
      {"f64.transposed", f64.t()},             // non-contiguous: written row-major
      {"i64.column", i64.narrow(1, 1, 1)},     // a view with an offset
      {"i64.transposed", i64.t()},
      {"bool", b},
      {"bool.view", b.narrow(0, 2, 3)},
      {"scalar", Tensor::scalar(2.5, DType::Float64)},
      {"empty", Tensor::zeros({0, 3})},
      {"expanded", Tensor::scalar(7.0).expand({2, 2})},
      {"special", special},
      {"unicode \xC3\xA9 \"quoted\"", Tensor::ones({1})},
  };
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "line\nbreak \xF0\x9F\x98\x80 \"q\""}, {"", ""}};
  std::string path = dir.file("rt.safetensors");
  save_safetensors(path, tensors, meta);
  REQUIRE(temp_files_in(dir.path).empty());

  SafeTensors st = load_safetensors(path);
  REQUIRE(st.metadata == meta);
  REQUIRE(st.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO(tensors[i].first);
    REQUIRE(st.tensors[i].first == tensors[i].first);
    require_bit_equal(st.tensors[i].second, tensors[i].second);
    REQUIRE(st.tensors[i].second.is_contiguous());
  }
  // Read int64 through data_ptr: Tensor::to_int_vector goes through double and loses INT64_MAX.
  const int64_t* it = st.at("i64.transposed").data_ptr<int64_t>();
  REQUIRE(std::vector<int64_t>(it, it + 6) == std::vector<int64_t>{INT64_MIN, 1, -1, INT64_MAX, 0, 42});
  const int64_t* col = st.at("i64.column").data_ptr<int64_t>();
  REQUIRE(std::vector<int64_t>(col, col + 2) == std::vector<int64_t>{-1, INT64_MAX});
  REQUIRE(st.at("scalar").dim() == 0);

  // The header is padded with spaces so that the data starts at a multiple of 8.
  std::string bytes = read_file(path, "test", 1 << 20);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  REQUIRE(n % 8 == 0);
  Json::parse(bytes.substr(8, n));  // padding is JSON whitespace
  // Writing what was read reproduces the same bytes.
  REQUIRE(serialize_safetensors(st.tensors, st.metadata) == bytes);
  REQUIRE(serialize_safetensors(parse_safetensors(bytes).tensors, meta) == bytes);

  // The reference file survives load -> save -> load unchanged.
  SafeTensors ref = load_safetensors(kCase + "/ref_f64.safetensors");
  save_safetensors(dir.file("ref.safetensors"), ref.tensors, ref.metadata);
  SafeTensors again = load_safetensors(dir.file("ref.safetensors"));
  REQUIRE(again.metadata == ref.metadata);
  REQUIRE(again.tensors.size() == ref.tensors.size());
  for (size_t i = 0; i < ref.tensors.size(); ++i) {
    REQUIRE(again.tensors[i].first == ref.tensors[i].first);
    require_bit_equal(again.tensors[i].second, ref.tensors[i].second);
  }
  // Overwriting an existing file works and leaves no temp files.
  save_safetensors(path, {{"x", Tensor::ones({2})}});
  REQUIRE(load_safetensors(path).tensors.size() == 1);
  REQUIRE(temp_files_in(dir.path).empty());
}

TEST_CASE("safetensors: valid edge cases load", "[safetensors]") {
  // No tensors at all; only metadata; zero-size tensors anywhere; a header padded with spaces.
  REQUIRE(parse_safetensors(make_file("{}", "")).tensors.empty());
  SafeTensors m = parse_safetensors(make_file(R"({"__metadata__":{"a":"b"}}   )", ""));
  REQUIRE(m.metadata.at("a") == "b");
  SafeTensors z = parse_safetensors(make_file(
      R"({"z0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]},)"
      R"("z1":{"dtype":"I64","shape":[3,0],"data_offsets":[2,2]},"z2":{"dtype":"F64","shape":[0,4],"data_offsets":[2,2]}})",
      std::string("\x01\x00", 2)));
  REQUIRE(z.tensors.size() == 4);
  REQUIRE(z.at("a").to_vector() == std::vector<double>{1, 0});
  REQUIRE(z.at("z1").shape() == Shape{3, 0});
  // Tensors need not be stored in header order.
  SafeTensors r = parse_safetensors(make_file(
      R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
      std::string("\x00\x00\x80\x3F\x00\x00\x00\x40", 8)));
  REQUIRE(r.tensors[0].first == "b");
  REQUIRE(r.at("b").item() == 2.0);
  REQUIRE(r.at("a").item() == 1.0);
}

TEST_CASE("safetensors: corrupted files fail with a clear error", "[safetensors]") {
  const std::string good_data(16, '\0');
  // A file with tensors "a" and "b" (given as header JSON) and 16 data bytes.
  auto two = [&](const std::string& a, const std::string& b) {
    return make_file(R"({"a":)" + a + R"(,"b":)" + b + "}", good_data);
  };
  const std::string a_ok = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string b_ok = R"({"dtype":"I64","shape":[1],"data_offsets":[8,16]})";
  REQUIRE(parse_safetensors(two(a_ok, b_ok)).tensors.size() == 2);  // the baseline is valid

  std::string ref = read_file(kCase + "/ref_f32.safetensors", "test", 1 << 20);
  uint64_t ref_n = 0;
  std::memcpy(&ref_n, ref.data(), 8);

  struct Case {
    std::string name, bytes, expect;
  };
  const std::vector<Case> cases = {
      {"empty file", "", "file is 0 bytes, shorter than the 8-byte header length"},
      {"5-byte file", std::string("\x05\x00\x00\x00\x00", 5), "file is 5 bytes"},
      {"header length beyond the file", le64(1000) + "{}", "header length 1000 exceeds the 2 bytes"},
      {"header length over 100 MB", le64(200'000'000) + "{}", "header length 200000000 is more than the limit"},
      {"header length 2^64-1", le64(~uint64_t(0)) + "{}", "is more than the limit"},
      {"truncated in the header", ref.substr(0, 8 + ref_n - 1), "exceeds"},
      {"truncated in the data", ref.substr(0, ref.size() - 100), "go beyond the data section"},
      {"bad JSON", make_file(R"({"a":)", ""), "invalid JSON: header: line 1 col 6: unexpected end of input"},
      {"invalid UTF-8 in the header", make_file("{\"\xFF\":1}", ""), "invalid JSON"},
      {"header not an object", make_file("[1,2]", ""), "header must be a JSON object, got array"},
      {"tensor not an object", make_file(R"({"a":5})", ""), "tensor \"a\": expected an object"},
      {"missing field", make_file(R"({"a":{"dtype":"F32","shape":[0]}})", ""), "tensor \"a\": missing field \"data_offsets\""},
      {"unknown field", two(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"foo":1})", b_ok), "tensor \"a\": unknown field \"foo\""},
      {"unknown dtype", two(R"({"dtype":"I32","shape":[2],"data_offsets":[0,8]})", b_ok), "tensor \"a\": dtype \"I32\" is not supported"},
      {"F16 with the bytes of F32", two(R"({"dtype":"F16","shape":[2],"data_offsets":[0,8]})", b_ok), "tensor \"a\": data_offsets [0, 8] hold 8 bytes, but shape (2) of F16 needs 4"},
      {"BF16 beyond the data", two(R"({"dtype":"BF16","shape":[10],"data_offsets":[0,20]})", b_ok), "tensor \"a\": data_offsets [0, 20] go beyond"},
      {"dtype not a string", two(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})", b_ok), "tensor \"a\": dtype must be a string"},
      {"wrong dtype (size mismatch)", two(R"({"dtype":"F64","shape":[2],"data_offsets":[0,8]})", b_ok), "tensor \"a\": data_offsets [0, 8] hold 8 bytes, but shape (2) of F64 needs 16"},
      {"shape/offsets mismatch", two(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", b_ok), "tensor \"a\": data_offsets [0, 8] hold 8 bytes, but shape (3) of F32 needs 12"},
      {"negative dimension", two(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})", b_ok), "tensor \"a\": shape must be an array of non-negative integers, got [-2]"},
      {"fractional dimension", two(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})", b_ok), "shape must be an array of non-negative integers"},
      {"shape not an array", two(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})", b_ok), "shape must be an array"},
      {"byte count overflow", two(R"({"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]})", b_ok), "tensor \"a\": shape (4611686018427387904,4) is too large"},
      {"one offset", two(R"({"dtype":"F32","shape":[2],"data_offsets":[8]})", b_ok), "tensor \"a\": data_offsets must be two non-negative integers"},
      {"string offsets", two(R"({"dtype":"F32","shape":[2],"data_offsets":["0","8"]})", b_ok), "data_offsets must be two"},
      {"negative offset", two(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})", b_ok), "data_offsets must be two"},
      {"begin after end", two(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})", b_ok), "tensor \"a\": data_offsets [8, 0]: begin is after end"},
      {"out of bounds", two(a_ok, R"({"dtype":"I64","shape":[1],"data_offsets":[16,24]})"), "tensor \"b\": data_offsets [16, 24] go beyond the data section of 16 bytes"},
      {"overlap", two(a_ok, R"({"dtype":"I64","shape":[1],"data_offsets":[4,12]})"), "tensors \"a\" [0, 8] and \"b\" [4, 12] overlap"},
      {"zero-size tensor inside another", two(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", R"({"dtype":"I64","shape":[0],"data_offsets":[8,8]})"), "overlap"},
      {"hole between tensors", two(a_ok, R"({"dtype":"F32","shape":[1],"data_offsets":[12,16]})"), "data bytes [8, 12) before tensor \"b\" are not covered by any tensor"},
      {"hole at the start", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, '\0')), "data bytes [0, 4) before tensor \"a\""},
      {"trailing bytes", make_file(R"({"a":)" + a_ok + R"(,"b":)" + b_ok + "}", good_data + "xyz"), "data bytes [16, 19) at the end are not covered by any tensor"},
      {"data but no tensors", make_file("{}", "abc"), "data bytes [0, 3) at the end"},
      {"duplicate name", make_file(R"({"a":)" + a_ok + R"(,"a":)" + b_ok + "}", good_data), "invalid JSON: header: line 1 col 55: duplicate key \"a\""},
      {"non-string metadata", make_file(R"({"__metadata__":{"k":1}})", ""), "__metadata__ value of \"k\" must be a string, got integer 1"},
      {"metadata not an object", make_file(R"({"__metadata__":["x"]})", ""), "__metadata__ must be an object"},
      {"empty tensor name", make_file(R"({"":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})", ""), "a tensor has an empty name"},
      {"BOOL byte not 0/1", make_file(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\x01\x00\x02", 3)), "tensor \"m\": BOOL element 2 has byte value 2"},
  };
  TempDir dir;
  for (const Case& c : cases) {
    INFO(c.name);
    // From memory ...
    REQUIRE_THROWS_WITH(parse_safetensors(c.bytes, "mem.safetensors"),
                        Contains("[load_safetensors] mem.safetensors: ") && Contains(c.expect));
    // ... and from a file (a separate code path: reads with pread into the tensors).
    std::string path = dir.file("bad.safetensors");
    write_plain(path, c.bytes);
    REQUIRE_THROWS_WITH(load_safetensors(path), Contains("[load_safetensors] " + path + ": ") && Contains(c.expect));
  }
  REQUIRE_THROWS_WITH(load_safetensors(dir.file("missing.safetensors")),
                      Contains("[load_safetensors] cannot read") && Contains("missing.safetensors") &&
                          Contains("No such file"));
  REQUIRE_THROWS_WITH(load_safetensors(dir.path.string()), Contains("not a regular file"));
}

TEST_CASE("safetensors: save refuses bad names and tensors", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("x.safetensors");
  Tensor t = Tensor::ones({2});
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"a", t}, {"a", t}}), Contains("[save_safetensors]") && Contains("duplicate tensor name \"a\""));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"", t}}), Contains("[save_safetensors]") && Contains("empty name"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"__metadata__", t}}), Contains("[save_safetensors]") && Contains("reserved"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"u", Tensor()}}), Contains("[save_safetensors]") && Contains("\"u\" is undefined"));
  REQUIRE_FALSE(fs::exists(path));
  REQUIRE_THROWS_WITH(save_safetensors(dir.file("no/such/dir/x.safetensors"), {{"a", t}}),
                      Contains("[save_safetensors] cannot write") && Contains("No such file"));
}

TEST_CASE("safetensors: write_file_atomic keeps the old file on failure", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("f.bin");
  write_file_atomic(path, "OLD", "test_op");
  REQUIRE(read_file(path, "test", 100) == "OLD");
  write_file_atomic(path, std::string("new\0data", 8), "test_op");
  REQUIRE(read_file(path, "test", 100) == std::string("new\0data", 8));
  write_file_atomic(path, "OLD", "test_op");

  // Into a directory that does not exist.
  REQUIRE_THROWS_WITH(write_file_atomic(dir.file("nodir/f.bin"), "x", "test_op"),
                      Contains("[test_op] cannot write " + dir.file("nodir/f.bin") + ": No such file or directory"));
  // Over a path that is a directory (with something in it): refused, the directory untouched.
  fs::create_directories(dir.path / "sub");
  write_plain(dir.file("sub/keep"), "k");
  REQUIRE_THROWS_WITH(write_file_atomic(dir.file("sub"), "x", "test_op"),
                      Contains("[test_op] cannot write " + dir.file("sub") + ": Is a directory"));
  REQUIRE(read_file(dir.file("sub/keep"), "test", 10) == "k");

  // A write that runs out of space part-way (the file size limit makes write() stop short, then
  // fail with EFBIG, as a full disk would with ENOSPC).
  {
    struct rlimit old {};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 4096;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string error;
    try {
      write_file_atomic(path, std::string(1 << 20, 'n'), "test_op");
    } catch (const Error& e) {
      error = e.what();
    }
    setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    REQUIRE_THAT(error, Contains("[test_op] cannot write " + path + ": File too large"));
  }
  REQUIRE(read_file(path, "test", 100) == "OLD");
  REQUIRE(temp_files_in(dir.path).empty());
  REQUIRE(temp_files_in(dir.path / "sub").empty());

  // read_file's errors.
  REQUIRE_THROWS_WITH(read_file(dir.file("missing"), "test_op", 10),
                      Contains("[test_op] cannot read " + dir.file("missing") + ": No such file or directory"));
  REQUIRE_THROWS_WITH(read_file(path, "test_op", 2), Contains("[test_op] " + path + " is 3 bytes, more than the limit of 2 bytes"));
  REQUIRE_THROWS_WITH(read_file(dir.file("sub"), "test_op", 10), Contains("Is a directory"));
  REQUIRE(read_file(path, "test_op", 3) == "OLD");
}

namespace {
// Resident memory now and its peak since the last reset (Linux /proc), in bytes; 0 if unknown.
size_t proc_status_kb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.starts_with(field)) return std::stoull(line.substr(std::strlen(field) + 1)) * 1024;
  return 0;
}
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return f.good();
}
}  // namespace

TEST_CASE("safetensors: loading a 100 MB file copies the data once", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("big.safetensors");
  const int64_t n = 25'000'000;  // 100 MB of float32
  {
    Tensor big = Tensor::arange(0, (double)n, 1, DType::Float32);
    save_safetensors(path, {{"big", big}, {"small", Tensor::ones({3})}});
  }
  empty_cpu_cache();  // else the freed 100 MB block is reused and the load shows no growth
  if (!reset_peak_rss() || proc_status_kb("VmHWM:") == 0) {
    test::skip("cannot reset the peak RSS (/proc/self/clear_refs): the memory check cannot run here");
    return;
  }
  size_t before = proc_status_kb("VmRSS:");
  SafeTensors st = load_safetensors(path);
  size_t peak = proc_status_kb("VmHWM:");
  const double data_mb = 100.0, grew_mb = (double)(peak - before) / 1e6;
  INFO("peak RSS grew by " << grew_mb << " MB for " << data_mb << " MB of data");
  // One copy (file -> tensor) costs ~100 MB; a staging buffer would double it.
  REQUIRE(grew_mb < 1.5 * data_mb);
  REQUIRE(grew_mb > 0.9 * data_mb);  // the check measures what it should
  REQUIRE(st.at("big").numel() == n);
  const float* p = st.at("big").data_ptr<float>();
  REQUIRE(p[0] == 0.0f);
  REQUIRE(p[12345678] == 12345678.0f);
  REQUIRE(p[16000000] == 16000000.0f);
}
