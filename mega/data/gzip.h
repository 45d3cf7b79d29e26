// A small, validating gzip reader (RFC 1952 around RFC 1951 deflate), so that the .gz files of
// Debian's dataset packages (Fashion-MNIST) load without a new library dependency (zlib).
//
// Decoding only; every input byte is checked: header flags, block types, Huffman code tables
// (over-subscribed or incomplete codes), back-reference distances, stored-block lengths, the
// CRC-32 and the size of every member. A malformed or truncated file gives a megagrad::Error
// "[gzip] <what>: <problem>", never undefined behaviour. Concatenated members are decoded in order
// (as gzip -d does).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace megagrad::data {

// True when `bytes` starts with the gzip magic 1f 8b.
bool is_gzip(std::string_view bytes);

// The decompressed bytes. `what` names the source in errors (a file name); output larger than
// `max_output` bytes is an error (a guard against decompression bombs).
std::string gunzip(std::string_view bytes, std::string_view what, size_t max_output = size_t(1) << 32);

// CRC-32 (ISO-HDLC, as gzip and zlib), continuing from `crc` (0 to start).
uint32_t crc32(std::string_view bytes, uint32_t crc = 0);

}  // namespace megagrad::data
