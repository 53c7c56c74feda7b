// ref/model/include/dsv4/model/recorder.hpp
#include "dsv4/model/recorder.hpp"

#include <stdexcept>
#include <utility>

#include "dsv4/model/output_table.hpp"

namespace dsv4 {

void MemoryRecorder::record(const std::string& name, RecordedTensor value) {
  if (!describe_output(name))
    throw std::invalid_argument("recorder: " + name +
                                " is no output of the output table (dsv4/model/output_table.hpp describes each)");
  std::int64_t n = 1;
  for (const std::int64_t d : value.shape) {
    if (d < 0) throw std::invalid_argument("recorder: " + name + ": negative dimension");
    n *= d;
  }
  if (n != static_cast<std::int64_t>(value.values.size()))
    throw std::invalid_argument("recorder: " + name + ": shape does not match the number of values");
  if (!entries_.emplace(name, std::move(value)).second)
    throw std::invalid_argument("recorder: " + name + " recorded twice");
  order_.push_back(name);
}

const RecordedTensor& MemoryRecorder::at(const std::string& name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) throw std::out_of_range("recorder: no output named " + name);
  return it->second;
}

void record_batch(Recorder* rec, const std::string& name, const std::vector<Mat>& per_sequence) {
  if (rec == nullptr || per_sequence.empty()) return;
  const std::int64_t rows = per_sequence.front().rows(), cols = per_sequence.front().cols();
  RecordedTensor t;
  t.shape = {static_cast<std::int64_t>(per_sequence.size()), rows, cols};
  t.values.reserve(static_cast<std::size_t>(t.shape[0] * rows * cols));
  for (const Mat& m : per_sequence) {
    if (m.rows() != rows || m.cols() != cols)
      throw std::invalid_argument("recorder: " + name + ": sequences of one batch differ in shape");
    t.values.insert(t.values.end(), m.data(), m.data() + m.size());
  }
  rec->record(name, std::move(t));
}

void record_batch_indices(Recorder* rec, const std::string& name,
                          const std::vector<std::vector<std::int64_t>>& per_sequence, std::int64_t cols) {
  if (rec == nullptr || per_sequence.empty()) return;
  if (cols <= 0) throw std::invalid_argument("recorder: " + name + ": cols must be positive");
  const std::size_t n = per_sequence.front().size();
  if (n % static_cast<std::size_t>(cols) != 0)
    throw std::invalid_argument("recorder: " + name + ": index table is not a multiple of cols");
  RecordedTensor t;
  t.integral = true;
  t.shape = {static_cast<std::int64_t>(per_sequence.size()), static_cast<std::int64_t>(n) / cols, cols};
  for (const auto& v : per_sequence) {
    if (v.size() != n) throw std::invalid_argument("recorder: " + name + ": sequences of one batch differ in shape");
    for (const std::int64_t i : v) t.values.push_back(static_cast<double>(i));
  }
  rec->record(name, std::move(t));
}

}  // namespace dsv4
