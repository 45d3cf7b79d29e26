// gunzip on zlib's inflate. zlib parses and checks each member (header, deflate data, CRC-32,
// size); this file feeds it the input in pieces that fit its 32-bit counters, walks
// from member to member, enforces the output limit and words zlib's errors for the user.
#include "mega/data/gzip.h"
#include <zlib.h>
#include <algorithm>
#include <climits>
#include <vector>
#include "core/error.h"

namespace megagrad::data {

namespace {

constexpr const char* kOp = "gzip";
// The most input bytes handed to zlib in one call (its avail_in is 32-bit).
constexpr size_t kMaxPiece = size_t(1) << 30;

uint32_t le32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

// zlib's message for a bad member, in the words of the rest of megagrad's readers. `h` is the
// member's first byte (the fixed 10-byte header is there: every member has at least 18 bytes).
std::string explain(const char* zmsg, const uint8_t* h) {
  const std::string m = zmsg ? zmsg : "unknown error";
  if (m == "incorrect data check") return "CRC-32 mismatch: the file is corrupt";
  if (m == "incorrect length check") return "size mismatch: the trailer's size is not the decompressed size";
  if (m == "header crc mismatch") return "header CRC mismatch: the file is corrupt";
  if (m == "unknown compression method") return fmt::format("compression method {}, expected 8 (deflate)", h[2]);
  if (m == "unknown header flags set") return fmt::format("reserved header flags set ({:#04x})", h[3]);
  return "corrupt compressed data (zlib: " + m + ")";
}

}  // namespace

bool is_gzip(std::string_view bytes) {
  return bytes.size() >= 2 && (uint8_t)bytes[0] == 0x1f && (uint8_t)bytes[1] == 0x8b;
}

uint32_t crc32(std::string_view bytes, uint32_t crc) {
  return (uint32_t)::crc32_z(crc, (const Bytef*)bytes.data(), (z_size_t)bytes.size());
}

std::string gunzip(std::string_view bytes, std::string_view what, size_t max_output) {
  const uint8_t* p = (const uint8_t*)bytes.data();
  const size_t n = bytes.size();
  if (n == 0) fail(kOp, "{}: empty input, not gzip data", what);
  std::string out;
  // A single-member file ends with its size mod 2^32: a good guess for the allocation. The
  // trailer is only a hint until zlib has checked the data: never reserve more than deflate can
  // expand (1032:1), so a corrupt trailer cannot make us ask for gigabytes.
  if (n >= 18) out.reserve(std::min({(size_t)le32(p + n - 4), max_output, n * 1032, size_t(256) << 20}));

  z_stream zs{};
  // 16 + MAX_WBITS: a gzip wrapper only (no zlib or raw deflate), with the largest window.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail(kOp, "{}: zlib cannot start (out of memory)", what);
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&zs};

  // zlib writes into this piece, appended to `out` after each call: growing `out` itself would
  // zero-fill it first, and a corrupt trailer's size hint would make that cost tens of megabytes.
  std::vector<char> piece(size_t(256) << 10);
  size_t pos = 0;  // the next input byte zlib has not consumed
  for (int member = 1; pos < n; ++member) {
    const uint8_t* h = p + pos;
    const size_t left = n - pos;
    // The start of every member, checked here so that the error says which member and why
    // (zlib would only say that it needs more input, or "incorrect header check").
    if (left < 18) {
      if (member == 1) fail(kOp, "{}: {} bytes, too short for gzip data (at least 18)", what, left);
      fail(kOp, "{}: {} bytes after member {} are too short for another gzip member", what, left, member - 1);
    }
    if (h[0] != 0x1f || h[1] != 0x8b)
      fail(kOp, "{}: not gzip data (member {} starts with {:02x} {:02x}, expected 1f 8b)", what, member, h[0], h[1]);
    if (member > 1 && inflateReset(&zs) != Z_OK) fail(kOp, "{}: zlib cannot reset its stream", what);
    const std::string in_member = member > 1 ? fmt::format(" (member {})", member) : "";
    for (;;) {
      if (out.size() > max_output)
        fail(kOp, "{}: the decompressed data exceeds the limit of {} bytes", what, max_output);
      // Room for one byte more than the limit allows, so that going over it is seen.
      const size_t room = max_output - out.size();
      const size_t ask = std::min(piece.size(), room == SIZE_MAX ? room : room + 1);
      zs.next_out = (Bytef*)piece.data();
      zs.avail_out = (uInt)ask;
      zs.next_in = (Bytef*)(p + pos);  // zlib reads, never writes, its input
      zs.avail_in = (uInt)std::min(n - pos, kMaxPiece);
      const int ret = inflate(&zs, Z_NO_FLUSH);
      pos = (size_t)((const uint8_t*)zs.next_in - p);
      out.append(piece.data(), ask - zs.avail_out);
      if (ret == Z_STREAM_END) break;  // zlib has checked this member's CRC-32 and size
      if (ret == Z_DATA_ERROR || ret == Z_NEED_DICT) fail(kOp, "{}: {}{}", what, explain(zs.msg, h), in_member);
      if (ret == Z_MEM_ERROR) fail(kOp, "{}: zlib ran out of memory{}", what, in_member);
      // Z_OK or Z_BUF_ERROR: zlib wants more input or more room. All input read and room left
      // over means the member stops short of its end.
      if (ret != Z_OK && ret != Z_BUF_ERROR) fail(kOp, "{}: zlib error {}{}", what, ret, in_member);
      if (pos == n && zs.avail_out > 0) fail(kOp, "{}: the compressed data is truncated{}", what, in_member);
    }
    if (out.size() > max_output) fail(kOp, "{}: the decompressed data exceeds the limit of {} bytes", what, max_output);
  }
  return out;
}

}  // namespace megagrad::data
