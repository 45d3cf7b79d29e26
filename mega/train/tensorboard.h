// TensorBoard event files, written by hand (no protobuf dependency): `tensorboard --logdir runs`
// then shows the scalars of every run under runs/ side by side.
//
// An event file is a sequence of TFRecords: uint64 length (little-endian), masked CRC32C of those
// 8 bytes, the serialised Event protobuf, masked CRC32C of it. The first Event carries
// file_version "brain.Event:2"; the others a step, a wall time and Summary{value{tag, simple_value}}.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include "core/json.h"

namespace megagrad {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses; crc32c("123456789")
// is 0xE3069283. `crc` continues an earlier value (0 to start).
uint32_t crc32c(std::string_view bytes, uint32_t crc = 0);
// TFRecord's masked CRC: a CRC stored next to data that itself holds CRCs stays distinguishable.
uint32_t masked_crc32c(std::string_view bytes);
// One TFRecord (length, masked CRC of the length, data, masked CRC of the data).
std::string tfrecord(std::string_view data);
// Serialised Event protobufs.
std::string tb_file_version_event(double wall_time);
std::string tb_scalar_event(double wall_time, int64_t step, std::string_view tag, float value);
// SessionLog{status: START} at `step`: TensorBoard drops the events of steps >= step read before
// it, so a resumed run's curves do not show the steps the interrupted run logged after its checkpoint.
std::string tb_session_start_event(double wall_time, int64_t step);

// Writes dir/events.out.tfevents.<unix time>.<host>. Never throws after construction and never
// stops training: a file that cannot be created or written (a directory in the way, a full or
// read-only disk) gives one warning on `warn_to` and the writer goes quiet.
class TensorBoardWriter {
 public:
  // resumed_at_step >= 0: the run resumes after that step (see tb_session_start_event).
  explicit TensorBoardWriter(const std::string& dir, int64_t resumed_at_step = -1, std::FILE* warn_to = stderr);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(std::string_view tag, int64_t step, double value);
  // A metrics.jsonl record {"step": s, "split": "train", "loss": ..., ...}: every number in it
  // except step and elapsed_s becomes the scalar "<split>/<key>" (train/loss, val/accuracy, ...).
  void add_metrics(const Json& record);
  void flush();
  bool ok() const { return f_ != nullptr; }
  const std::string& path() const { return path_; }

 private:
  void write(const std::string& event);
  void give_up(const std::string& why);
  std::string path_;
  std::FILE* f_ = nullptr;
  std::FILE* warn_to_;
};

}  // namespace megagrad
