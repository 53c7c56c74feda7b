// The one recorder of module outputs (ref/README.md §Recorded outputs; oracle/README.md §Dump
// convention). Every module output of a run is recorded under its canonical name
//   <step>/<module path>/<output>
// step: `prefill` or `decode<i>`; module path: as in the official model (`layers.3.attn`,
// `layers.3.ffn.gate`, `mtp.0.attn`, `head`); output: `out`, or `out0`/`out1` for tuples, or a
// named intermediate (`y`, `post`, `comb` of the hyper-connection sites). The same recorder feeds
// `dsv4 run --dump`, golden generation and `dsv4 diff`.
//
// Shapes carry the batch: a per-sequence [s, c] output of a batch of b sequences is recorded as
// [b, s, c] (sequences in batch order).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

struct RecordedTensor {
  std::vector<std::int64_t> shape;
  std::vector<double> values;  // row-major; integer outputs (indices) are stored exactly
  bool integral = false;       // expert ids / top-k indices (−1 = no entry)
};

class Recorder {
 public:
  virtual ~Recorder() = default;
  // Throws std::invalid_argument when `name` is not an output the table describes
  // (dsv4/model/output_table.hpp), was already recorded, or the shape does not match the number of
  // values.
  virtual void record(const std::string& name, RecordedTensor value) = 0;
};

// Keeps every recorded tensor in memory, ordered by name.
class MemoryRecorder final : public Recorder {
 public:
  void record(const std::string& name, RecordedTensor value) override;
  const std::map<std::string, RecordedTensor>& entries() const { return entries_; }
  // Names in the order they were recorded (execution order of the run).
  const std::vector<std::string>& order() const { return order_; }
  const RecordedTensor& at(const std::string& name) const;  // std::out_of_range naming it

 private:
  std::map<std::string, RecordedTensor> entries_;
  std::vector<std::string> order_;
};

// Records nothing when `rec` is null. Per-sequence matrices of one batch → [b, rows, cols].
void record_batch(Recorder* rec, const std::string& name, const std::vector<Mat>& per_sequence);
// Per-sequence integer tables (rows × cols, row-major) of one batch → [b, rows, cols].
void record_batch_indices(Recorder* rec, const std::string& name,
                          const std::vector<std::vector<std::int64_t>>& per_sequence, std::int64_t cols);

}  // namespace dsv4
