// Regressions from fuzzing the file readers (tests/fuzz/): each test feeds an input that once
// crashed a reader (or made a sanitizer report) and expects a clean megagrad::Error instead.
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include "core/error.h"
#include "core/json.h"
#include "mega/data/batch.h"
#include "mega/train/checkpoint.h"

using namespace megagrad;
using Catch::Contains;

namespace {
Json iterator_state(int64_t epoch, int64_t position) {
  Json s = Json::object();
  s.set("size", 10), s.set("batch_size", 3), s.set("seed", "7"), s.set("shuffle", true), s.set("drop_last", false);
  s.set("epoch", epoch), s.set("position", position);
  return s;
}
}  // namespace

// fuzz_json_config: a checkpoint's data state with epoch = INT64_MAX loaded fine, and the batch that
// ended that epoch incremented it: signed overflow (UBSan: "9223372036854775807 + 1 cannot be
// represented"). next() now refuses that batch, before changing anything.
TEST_CASE("fuzz: a saved batch position at the largest epoch is an error, not an overflow", "[fuzz][data]") {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::string text = R"({"size": 10, "batch_size": 3, "seed": "7", "shuffle": true, "drop_last": false,
                               "epoch": 9223372036854775807, "position": 9})";
  data::BatchIterator it(10, 3, 7);
  it.load_state_json(Json::parse(text));
  REQUIRE_THROWS_AS(it.next(), Error);
  REQUIRE_THROWS_WITH(it.next(), Contains("[batch_iterator] epoch 9223372036854775807 cannot be followed"));
  REQUIRE(it.epoch() == kMax);  // unchanged by the refused call
  REQUIRE(it.position() == 9);

  // Batches inside that epoch are still served; so is the boundary one epoch earlier.
  data::BatchIterator inside(10, 3, 7);
  inside.load_state_json(iterator_state(kMax, 3));
  REQUIRE(inside.next().size() == 3);
  REQUIRE(inside.position() == 6);
  data::BatchIterator before(10, 3, 7);
  before.load_state_json(iterator_state(kMax - 1, 9));
  std::vector<int64_t> last = before.next();  // 10 examples in batches of 3: the last holds one
  REQUIRE(last.size() == 1);
  REQUIRE(last[0] == before.epoch_order(kMax - 1)[9]);
  REQUIRE(before.epoch() == kMax);
  REQUIRE(before.position() == 0);
}

TEST_CASE("checkpoint metadata numbers: the whole text, or a megagrad error (never std::stoll's)", "[fuzz][train]") {
  REQUIRE(parse_uint64("0", "step", "ck") == 0);
  REQUIRE(parse_uint64("18446744073709551615", "step", "ck") == UINT64_MAX);
  for (const char* bad : {"", "-1", "12x", " 1", "1 ", "+1", "18446744073709551616", "0x10"})
    REQUIRE_THROWS_WITH(parse_uint64(bad, "step", "ck.safetensors"),
                        Catch::Contains("[train] ck.safetensors: bad step '" + std::string(bad) + "'"));
}
