// oracle/README.md §Dump convention.
#include "dsv4/golden/dump.hpp"

#include <algorithm>
#include <stdexcept>

#include "dsv4/golden/config_json.hpp"
#include "dsv4/golden/sha256.hpp"

namespace dsv4 {

Tensor recorded_to_tensor(const RecordedTensor& r) {
  if (r.integral) {
    Tensor t(DType::kI64, r.shape);
    std::transform(r.values.begin(), r.values.end(), t.values<std::int64_t>().begin(),
                   [](double v) { return static_cast<std::int64_t>(v); });
    return t;
  }
  Tensor t(DType::kF64, r.shape);
  std::copy(r.values.begin(), r.values.end(), t.values<double>().begin());
  return t;
}

std::size_t write_recorded(Hdf5File& f, const std::string& prefix, const MemoryRecorder& rec,
                           const Hdf5WriteOptions& opts) {
  for (const auto& [name, value] : rec.entries()) f.write(prefix + name, recorded_to_tensor(value), opts);
  return rec.entries().size();
}

void write_run_dump(const std::string& path, const RunDumpInfo& info, const MemoryRecorder& rec,
                    const std::string& content_sha256) {
  Hdf5File f = Hdf5File::create(path);
  write_recorded(f, "", rec);
  f.set_attr("/", "dsv4_format", "dsv4-dump");
  f.set_attr("/", "dsv4_format_version", std::int64_t{1});
  f.set_attr("/", "config", config_to_json(info.config));
  f.set_attr("/", "mode", mode_name(info.mode));
  if (info.weights.seed) {
    f.set_attr("/", "weights", "synthetic");
    f.set_attr("/", "weights_seed", std::to_string(*info.weights.seed));
    f.set_attr("/", "weights_generator_version", kSyntheticWeightsVersion);
  } else {
    f.set_attr("/", "weights", "file");
    f.set_attr("/", "weights_file", info.weights.file);
    f.set_attr("/", "weights_sha256", sha256_file_hex(info.weights.file));
  }
  if (!content_sha256.empty()) f.set_attr("/", "weights_content_sha256", content_sha256);
  std::vector<std::int64_t> flat;
  for (const auto& s : info.tokens) flat.insert(flat.end(), s.begin(), s.end());
  f.set_attr("/", "tokens", flat);
  f.set_attr(
      "/", "tokens_shape",
      std::vector<std::int64_t>{static_cast<std::int64_t>(info.tokens.size()),
                                static_cast<std::int64_t>(info.tokens.empty() ? 0 : info.tokens.front().size())});
  f.set_attr("/", "decode_steps", info.decode_steps);
  f.set_attr("/", "steps", steps_json(info.plan));
  f.commit();
}

}  // namespace dsv4
