// Reading gzip files (RFC 1952), as Debian's dataset packages ship Fashion-MNIST, through zlib:
// the well-kept parser of untrusted compressed input. This wrapper adds what zlib leaves to its
// caller: concatenated members (decoded in order, as gzip -d does), a limit on the output (a guard
// against decompression bombs), and errors that name the source. zlib checks the header, every
// deflate block, the CRC-32 and the size of every member; a malformed or truncated file gives a
// megagrad::Error "[gzip] <what>: <problem>", never undefined behaviour.
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
