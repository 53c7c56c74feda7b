// oracle/diff/include/dsv4/diff/dump_getters.hpp
#include "dsv4/diff/dump_getters.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "dsv4/golden/model_run.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/model/checkpoint.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4::diff {

RecordedTensor recorded_from_tensor(const Tensor& t, const std::string& name) {
  RecordedTensor r;
  const auto n = static_cast<std::size_t>(t.numel());
  r.values.resize(n);
  switch (t.dtype()) {
    case DType::kF64:
      for (std::size_t i = 0; i < n; ++i) r.values[i] = t.values<double>()[i];
      break;
    case DType::kF32:
      for (std::size_t i = 0; i < n; ++i) r.values[i] = t.values<float>()[i];
      break;
    case DType::kBF16:
      for (std::size_t i = 0; i < n; ++i) r.values[i] = bf16_to_float(t.values<std::uint16_t>()[i]);
      break;
    case DType::kI64:
      r.integral = true;
      for (std::size_t i = 0; i < n; ++i) r.values[i] = static_cast<double>(t.values<std::int64_t>()[i]);
      break;
    case DType::kI32:
      r.integral = true;
      for (std::size_t i = 0; i < n; ++i) r.values[i] = t.values<std::int32_t>()[i];
      break;
    default:
      throw InputError(name, "dtype " + std::string(dtype_name(t.dtype())) + " is not a float or integer output");
  }
  r.shape = batched_shape(t.shape(), name);
  return r;
}

std::vector<std::int64_t> batched_shape(const std::vector<std::int64_t>& s, const std::string& name) {
  if (s.size() == 3) return s;
  if (s.size() == 2) return {1, s[0], s[1]};
  if (s.size() == 1) return {1, 1, s[0]};
  throw InputError(name, "rank " + std::to_string(s.size()) + ", expected [batch, rows, cols]");
}

namespace {

// The last tensors a getter returned, by name, within a byte budget: the teacher-forced diff asks
// for one tensor several times (as a module's output, as the next modules' input, and the golden's
// for its shape), and each read re-reads, decompresses and (a golden's) re-hashes it. The tensors
// returned are the same values either way; at real widths, where one tensor exceeds the budget,
// nothing is kept.
class RecentTensors {
 public:
  static constexpr std::size_t kBudgetBytes = std::size_t{128} << 20;
  std::optional<std::optional<RecordedTensor>> find(const std::string& name) {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [n, t] : kept_)
      if (n == name) return t;
    return std::nullopt;
  }
  void keep(const std::string& name, const std::optional<RecordedTensor>& t) {
    const std::size_t bytes = t ? t->values.size() * sizeof(double) : 0;
    if (bytes > kBudgetBytes) return;
    const std::lock_guard<std::mutex> lock(mutex_);
    kept_.emplace_back(name, t);
    bytes_ += bytes;
    while (bytes_ > kBudgetBytes) {
      bytes_ -= kept_.front().second ? kept_.front().second->values.size() * sizeof(double) : 0;
      kept_.pop_front();
    }
  }

 private:
  std::mutex mutex_;
  std::deque<std::pair<std::string, std::optional<RecordedTensor>>> kept_;  // oldest first
  std::size_t bytes_ = 0;
};

// `read` behind a RecentTensors cache.
TensorGetter remembering(std::function<std::optional<RecordedTensor>(const std::string&)> read) {
  auto recent = std::make_shared<RecentTensors>();
  return [recent, read = std::move(read)](const std::string& name) -> std::optional<RecordedTensor> {
    if (std::optional<std::optional<RecordedTensor>> hit = recent->find(name)) return std::move(*hit);
    std::optional<RecordedTensor> t = read(name);
    recent->keep(name, t);
    return t;
  };
}

}  // namespace

TensorGetter candidate_getter(const MappedTensorSource& source, const Golden* golden) {
  return remembering([&source, golden](const std::string& name) -> std::optional<RecordedTensor> {
    if (!source.contains(name)) return std::nullopt;
    const GoldenEntry* e = golden != nullptr ? golden->find("exact/" + name) : nullptr;
    if (e == nullptr) return recorded_from_tensor(source.read(name), name);
    std::int64_t elements = 1;  // bounded by the golden's output before it is read (issue 14 item 3)
    for (std::int64_t d : e->shape) elements *= d;
    return recorded_from_tensor(source.read(name, elements), name);
  });
}

TensorGetter golden_getter(const Golden& golden, const std::string& precision) {
  return remembering([&golden, precision](const std::string& name) -> std::optional<RecordedTensor> {
    const GoldenEntry* e = golden.find(precision + "/" + name);
    if (e == nullptr) return std::nullopt;
    RecordedTensor r;
    r.shape = e->shape;
    r.values = golden.values(precision, name);
    return r;
  });
}

TensorGetter golden_exact_getter(const Golden& golden) { return golden_getter(golden, "exact"); }

namespace {

// The golden's record of its weights (manifest "weights"): its content hash and, for a checkpoint,
// the file's name and SHA-256.
struct WeightsRecord {
  std::optional<std::uint64_t> seed;
  std::string file, file_sha256, content_sha256;
};

WeightsRecord weights_record(const Golden& g) {
  WeightsRecord r;
  r.seed = g.weights_seed();
  const nlohmann::json w = nlohmann::json::parse(g.weights_json());
  r.file = w.value("file", "");
  r.file_sha256 = w.value("file_sha256", "");
  r.content_sha256 = w.value("content_sha256", "");
  return r;
}

}  // namespace

ModelWeights golden_weights(const Golden& g, const std::string& weights_file) {
  const WeightsRecord rec = weights_record(g);
  if (weights_file.empty()) {
    if (rec.seed) return make_weights(g.config(), WeightsSpec{rec.seed, ""});
    throw InputError("--weights", "required: the golden " + g.path() + " was made from the checkpoint '" + rec.file +
                                      "' (weights content SHA-256 " + rec.content_sha256 +
                                      "); pass that file with --weights to recompute its modules");
  }
  ModelWeights w;
  try {
    w = make_weights(g.config(), WeightsSpec{std::nullopt, weights_file});
  } catch (const CheckpointError& e) {
    throw InputError(weights_file, std::string("not the golden's weights: ") + e.what());
  }
  if (rec.content_sha256.empty()) {  // a golden written before the content hash existed: the file's hash
    const std::string file_sha = sha256_file_hex(weights_file);
    if (rec.file_sha256.empty() || file_sha != rec.file_sha256)
      throw InputError("--weights", weights_file + " has SHA-256 " + file_sha + ", the golden's weights file '" +
                                        rec.file + "' had " + rec.file_sha256);
    return w;
  }
  const std::string content = weights_content_sha256(g.config(), w);
  if (content != rec.content_sha256)
    throw InputError("--weights", weights_file + " holds weights of content SHA-256 " + content +
                                      ", the golden was made with weights of content SHA-256 " + rec.content_sha256 +
                                      (rec.file.empty() ? std::string(" (synthetic, seed ") +
                                                              std::to_string(rec.seed.value_or(0)) + ")"
                                                        : " ('" + rec.file + "')"));
  return w;
}

RunSchedule golden_schedule(const Golden& g) {
  RunSchedule s;
  s.tokens = g.tokens();
  s.decode_steps = g.decode_steps();
  s.prompt_len = g.steps().front().length;  // the golden's own plan: prefill, then one token per decode step
  return s;
}

DiffReport diff_against_golden(const Golden& g, const MappedTensorSource& cand, std::optional<DType> fmt,
                               const std::string& weights_file) {
  return diff_against_golden(g, cand, golden_weights(g, weights_file), fmt);
}

DiffReport diff_against_golden(const Golden& g, const MappedTensorSource& cand, const ModelWeights& w,
                               std::optional<DType> fmt) {
  return teacher_forced_diff(g.config(), w, golden_schedule(g), candidate_getter(cand, &g), golden_exact_getter(g), {},
                             fmt);
}

LocalVerdicts local_verdicts_of(const DiffReport& r) {
  LocalVerdicts v;
  for (const ModuleResult& m : r.modules) {
    if (!m.checked) continue;
    // A module can appear twice in a step (the attention's outputs before and after wo_a): both
    // must pass.
    const std::string key = m.step + "/" + m.module;
    const auto it = v.find(key);
    if (it == v.end() || (it->second.pass && !m.pass)) v[key] = LocalVerdict{m.pass, m.pass ? "module PASS" : m.reason};
    for (const OutputResult& o : m.outputs)
      if (o.present) v[o.name] = LocalVerdict{o.pass, o.reason};
  }
  return v;
}

std::function<LocalVerdicts()> certify_local_judge(const Golden& g, const MappedTensorSource& cand,
                                                   const std::string& weights_file) {
  if (weights_file.empty() && g.weights_seed()) {  // synthetic: made when first needed (cheap to skip)
    return [&g, &cand]() -> LocalVerdicts { return local_verdicts_of(diff_against_golden(g, cand)); };
  }
  // A checkpoint (or a --weights file): loaded and verified now, so a wrong file is bad input
  // before anything is judged.
  auto w = std::make_shared<const ModelWeights>(golden_weights(g, weights_file));
  return [&g, &cand, w]() -> LocalVerdicts { return local_verdicts_of(diff_against_golden(g, cand, *w)); };
}

}  // namespace dsv4::diff
