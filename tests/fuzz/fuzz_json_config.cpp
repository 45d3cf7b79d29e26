// Fuzz target: the strict JSON parser (core/json.h) and every reader of parsed JSON configuration
// or saved state.
//
// Input: the bytes of a JSON text (a reference case's config.json, a `megagrad train --config`
// file, or a checkpoint's data state).
// Checks:
//   - Json::parse returns or throws megagrad::Error;
//   - an accepted text round-trips: its compact and indented dumps parse back to values with the
//     same compact dump;
//   - the value goes through each reader below, and each returns or throws megagrad::Error:
//       parse_layer_config (mega/config.h, a reference case's config.json);
//       for each task, merge_run_config over default_run_config(task), then train_options and the
//       model section as a layer config (mega/train/tasks.h: what `megagrad train --config` reads
//       before it builds the task);
//       CharVocab::from_json and BatchIterator::load_state_json (mega/data: the data state of a
//       checkpoint), also on the value's members, so that the run-config-shaped seeds reach them.
// Anything else (another exception type, a sanitizer report, a round-trip mismatch, a hang) is a
// bug.
#include <cstdint>
#include <string>
#include "core/json.h"
#include "mega/config.h"
#include "mega/data/batch.h"
#include "mega/data/text.h"
#include "mega/train/tasks.h"
#include "tests/fuzz/fuzz_util.h"

using namespace megagrad;

namespace {

// The model section of a run configuration as a layer configuration, as mega/train/tasks.cpp
// builds it: the model-level keys dropped, the direction set by the task.
void model_as_layer_config(const Json& model, bool decoder) {
  Json layer = Json::object();
  for (const auto& kv : model.items())
    if (!is_model_level_key(kv.first)) layer.set(kv.first, kv.second);
  layer.set("bidirectional", !decoder), layer.set("causal", decoder);
  (void)parse_layer_config(layer, "model");
  (void)model.at("layers").get_int(), (void)model.at("type").get_string();
}

void state_readers(const Json& j) {
  fuzz::accepts("CharVocab::from_json", [&] {
    data::CharVocab v = data::CharVocab::from_json(j);
    if (data::CharVocab::from_json(v.to_json()).to_json().dump() != v.to_json().dump())
      fuzz::bug("CharVocab::from_json(to_json()) does not round-trip");
  });
  fuzz::accepts("BatchIterator::load_state_json", [&] {
    data::BatchIterator it(10, 3, 7, true, false);
    it.load_state_json(j);
    if (it.epoch() != j.at("epoch").get_int() || it.position() != j.at("position").get_int())
      fuzz::bug("BatchIterator::load_state_json accepted a state but is elsewhere");
    (void)it.next();
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Json j;
  if (!fuzz::accepts("Json::parse", [&] { j = Json::parse(text, "fuzz input"); })) return 0;

  // Round trip. Parsed numbers are finite (overflow is an error), so dump() cannot throw.
  std::string compact, pretty;
  if (!fuzz::accepts("Json::dump", [&] { compact = j.dump(), pretty = j.dump(2); }))
    fuzz::bug("dump() rejects a parsed value");
  for (const std::string* s : {&compact, &pretty}) {
    Json again;
    if (!fuzz::accepts("Json::parse (dumped)", [&] { again = Json::parse(*s, "dumped"); }))
      fuzz::bug("Json::parse rejects its own dump: %s", s->c_str());
    if (again.dump() != compact)
      fuzz::bug("dump/parse does not round-trip: %s vs %s", compact.c_str(), again.dump().c_str());
  }

  fuzz::accepts("parse_layer_config", [&] { (void)parse_layer_config(j, "fuzz input"); });

  for (const char* task : {"listops", "fmnist", "charlm"}) {
    fuzz::accepts("merge_run_config", [&] {
      Json cfg = merge_run_config(default_run_config(task), j, "fuzz input");
      (void)train_options(cfg);
      model_as_layer_config(cfg.at("model"), std::string(task) == "charlm");
    });
  }

  state_readers(j);
  if (j.is_object())
    for (const auto& kv : j.items()) state_readers(kv.second);
  return 0;
}
