// FNV-1a 64: the one non-cryptographic hash of the project (file checksums, data fingerprints
// and configuration hashes compared across ranks, host and GPU identities).
#pragma once
#include <cstdint>
#include <string_view>

namespace megagrad {

// The start value every checksum megagrad has written uses. It is not FNV's published offset basis
// (14695981039346656037: this one lost the last digit); files already carry checksums made with
// it, so it stays.
inline constexpr uint64_t kFnv1aOffset = 1469598103934665603ull;

// FNV-1a 64 of bytes, continuing from h (start: kFnv1aOffset).
inline uint64_t fnv1a(std::string_view bytes, uint64_t h = kFnv1aOffset) {
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace megagrad
