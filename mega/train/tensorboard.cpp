#include "mega/train/tensorboard.h"
#include <unistd.h>
#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <system_error>
#include "core/error.h"

namespace megagrad {

namespace {
const std::array<uint32_t, 256> kCrc32cTable = [] {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}();

// Protocol-buffer wire format, the few pieces an Event needs.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) out += (char)(uint8_t)(v | 0x80), v >>= 7;
  out += (char)(uint8_t)v;
}
void put_key(std::string& out, int field, int wire_type) { put_varint(out, (uint64_t)(field << 3 | wire_type)); }
template <typename T>
void put_le(std::string& out, T v) {  // fixed32 / fixed64: little-endian
  uint8_t b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) std::reverse(b, b + sizeof(T));
  out.append((const char*)b, sizeof(T));
}
void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}
// Event fields: 1 wall_time (double), 2 step (int64), 3 file_version (string), 5 summary, 7 session_log.
// Like protobuf itself, a zero step is left out (the default), so the bytes equal its output.
std::string event_head(double wall_time, int64_t step) {
  std::string e;
  put_key(e, 1, 1), put_le(e, wall_time);
  if (step != 0) put_key(e, 2, 0), put_varint(e, (uint64_t)step);
  return e;
}
double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

uint32_t crc32c(std::string_view bytes, uint32_t crc) {
  crc = ~crc;
  for (unsigned char c : bytes) crc = kCrc32cTable[(crc ^ c) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(std::string_view bytes) {
  const uint32_t c = crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

std::string tfrecord(std::string_view data) {
  std::string r, len;
  put_le(len, (uint64_t)data.size());
  r += len;
  put_le(r, masked_crc32c(len));
  r.append(data);
  put_le(r, masked_crc32c(data));
  return r;
}

std::string tb_file_version_event(double wall_time) {
  std::string e = event_head(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string tb_scalar_event(double wall_time, int64_t step, std::string_view tag, float value) {
  std::string v;  // Summary.Value: 1 tag, 2 simple_value (float)
  put_bytes(v, 1, tag);
  put_key(v, 2, 5), put_le(v, value);
  std::string summary;  // Summary: 1 repeated value
  put_bytes(summary, 1, v);
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::string tb_session_start_event(double wall_time, int64_t step) {
  std::string log;  // SessionLog: 1 status, START = 1
  put_key(log, 1, 0), put_varint(log, 1);
  std::string e = event_head(wall_time, step);
  put_bytes(e, 7, log);
  return e;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir, int64_t resumed_at_step, std::FILE* warn_to)
    : warn_to_(warn_to) {
  namespace fs = std::filesystem;
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  host[sizeof host - 1] = 0;
  const double t = now_s();
  path_ = (fs::path(dir) / fmt::format("events.out.tfevents.{}.{}", (int64_t)t, host)).string();
  std::error_code ec;
  // A resume within the same second as the start must not write over its file.
  if (fs::exists(path_, ec)) path_ += fmt::format(".{}", getpid());
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    give_up(fmt::format("cannot create the folder {}: {}", dir, ec ? ec.message() : "a file of that name is in the way"));
    return;
  }
  f_ = std::fopen(path_.c_str(), "wb");
  if (!f_) {
    give_up(fmt::format("cannot create {}: {}", path_, std::strerror(errno)));
    return;
  }
  write(tb_file_version_event(t));
  if (resumed_at_step >= 0) write(tb_session_start_event(t, resumed_at_step + 1));
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (f_) std::fclose(f_);
}

void TensorBoardWriter::give_up(const std::string& why) {
  if (warn_to_) std::fprintf(warn_to_, "megagrad: warning: tensorboard: %s; training goes on without TensorBoard events\n", why.c_str());
  if (f_) std::fclose(f_);
  f_ = nullptr;
}

void TensorBoardWriter::write(const std::string& event) {
  if (!f_) return;
  const std::string rec = tfrecord(event);
  if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size())
    give_up(fmt::format("cannot write {}: {}", path_, std::strerror(errno)));
}

void TensorBoardWriter::flush() {
  if (f_ && std::fflush(f_) != 0) give_up(fmt::format("cannot write {}: {}", path_, std::strerror(errno)));
}

void TensorBoardWriter::add_scalar(std::string_view tag, int64_t step, double value) {
  write(tb_scalar_event(now_s(), step, tag, (float)value));
}

void TensorBoardWriter::add_metrics(const Json& record) {
  if (!f_ || !record.is_object()) return;
  const Json* step = record.find("step");
  const Json* split = record.find("split");
  if (!step || !step->is_integer() || !split || !split->is_string()) return;
  for (const auto& [key, v] : record.items())
    if (v.is_number() && key != "step" && key != "elapsed_s") add_scalar(split->get_string() + "/" + key, step->get_int(), v.get_double());
  flush();
}

}  // namespace megagrad
