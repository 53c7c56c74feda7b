// oracle/diff/include/dsv4/diff/dump_getters.hpp
#include "dsv4/diff/dump_getters.hpp"

#include <cstdint>

#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/input_error.hpp"
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
  const auto& s = t.shape();
  if (s.size() == 3) {
    r.shape = s;
  } else if (s.size() == 2) {
    r.shape = {1, s[0], s[1]};
  } else if (s.size() == 1) {
    r.shape = {1, 1, s[0]};
  } else {
    throw InputError(name, "rank " + std::to_string(s.size()) + ", expected [batch, rows, cols]");
  }
  return r;
}

TensorGetter candidate_getter(const MappedTensorSource& source) {
  return [&source](const std::string& name) -> std::optional<RecordedTensor> {
    if (!source.contains(name)) return std::nullopt;
    return recorded_from_tensor(source.read(name), name);
  };
}

TensorGetter golden_exact_getter(const Golden& golden) {
  return [&golden](const std::string& name) -> std::optional<RecordedTensor> {
    const GoldenEntry* e = golden.find("exact/" + name);
    if (e == nullptr) return std::nullopt;
    RecordedTensor r;
    r.shape = e->shape;
    r.values = golden.values("exact", name);
    return r;
  };
}

DiffReport diff_against_golden(const Golden& g, const MappedTensorSource& cand, std::optional<DType> fmt) {
  const std::optional<std::uint64_t> seed = g.weights_seed();
  if (!seed)
    throw InputError(g.path(),
                     "the golden's weights are a checkpoint file, not seeded synthetic weights: "
                     "the teacher-forced diff does not support them yet");
  const ModelWeights w = make_weights(g.config(), WeightsSpec{seed, ""});
  RunSchedule s;
  s.tokens = g.tokens();
  s.decode_steps = g.decode_steps();
  s.prompt_len = g.steps().front().length;  // the golden's own plan: prefill, then one token per decode step
  return teacher_forced_diff(g.config(), w, s, candidate_getter(cand), golden_exact_getter(g), {}, fmt);
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

std::function<LocalVerdicts()> certify_local_judge(const Golden& g, const MappedTensorSource& cand) {
  return [&g, &cand]() -> LocalVerdicts {
    if (!g.weights_seed()) return {};
    return local_verdicts_of(diff_against_golden(g, cand));
  };
}

}  // namespace dsv4::diff
