// The CPU Philox4x32-10 (core/rng.h) against Random123's published known answers. The CUDA
// kernels are checked bit for bit against this CPU function (test_cuda_kernels.cpp), so these
// vectors pin both to the published generator.
#include <catch2/catch.hpp>
#include <array>
#include <cstdint>
#include "core/rng.h"

using namespace megagrad;

TEST_CASE("rng: philox4x32 reproduces Random123's known-answer vectors", "[rng]") {
  // The three "philox4x32 10" lines (lines 27-29) of tests/kat_vectors in Random123,
  // https://github.com/DEShawResearch/random123 at commit 9545ff6413f258be2f04c1d319d99aaef7521150:
  //   counter (4 words), key (2 words) -> output (4 words), all hex uint32.
  struct Kat {
    std::array<uint32_t, 4> ctr;
    std::array<uint32_t, 2> key;
    std::array<uint32_t, 4> want;
  };
  const Kat kats[] = {
      {{0x00000000, 0x00000000, 0x00000000, 0x00000000}, {0x00000000, 0x00000000},
       {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    // philox4x32(key, counter_hi, counter_lo): word 0 of the counter is the low half of
    // counter_lo, word 3 the high half of counter_hi; key word 0 is the key's low half.
    const uint64_t key = (uint64_t)k.key[1] << 32 | k.key[0];
    const uint64_t lo = (uint64_t)k.ctr[1] << 32 | k.ctr[0], hi = (uint64_t)k.ctr[3] << 32 | k.ctr[2];
    const std::array<uint32_t, 4> got = philox4x32(key, hi, lo);
    INFO(std::hex << "counter " << k.ctr[0] << " " << k.ctr[1] << " " << k.ctr[2] << " " << k.ctr[3] << ", got "
                  << got[0] << " " << got[1] << " " << got[2] << " " << got[3]);
    CHECK(got == k.want);  // bit-exact
  }
}
