// oracle/README.md §Dump convention: the run of `dsv4 run`, golden generation and the demo.
#include "dsv4/golden/model_run.hpp"

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "dsv4/checkpoint/checkpoint_file.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/model/checkpoint.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4 {

ModelWeights make_weights(const ModelConfig& c, const WeightsSpec& w) {
  if (w.seed) return ModelWeights::synthetic(c, *w.seed);
  return load_checkpoint_file(c, w.file);
}

RunWeights make_run_weights(const ModelConfig& c, const WeightsSpec& w) {
  RunWeights r{make_weights(c, w), ""};
  r.content_sha256 = weights_content_sha256(c, r.weights);
  return r;
}

namespace {

std::string content_sha256(const std::map<std::string, Tensor>& tensors) {
  Sha256 h;
  const auto field = [&](std::string_view s) {
    h.update(std::to_string(s.size()) + ":");
    h.update(s);
  };
  for (const auto& [name, t] : tensors) {
    field(name);
    field(dtype_name(t.dtype()));
    field(t.shape_string());
    h.update(std::to_string(t.nbytes()) + ":");
    h.update(std::span<const std::byte>(t.bytes(), t.nbytes()));
  }
  return h.hex();
}

}  // namespace

// model_weight_tensors is the one parameter list (visit_model_parameters order, official names).
std::string weights_content_sha256(const ModelConfig& c, ModelWeights& w) {
  return content_sha256(model_weight_tensors(c, w));
}

std::string weights_content_sha256(const ModelConfig& c, const ModelWeights& w) {
  return content_sha256(model_weight_tensors(c, w));
}

void check_tokens(const std::vector<std::vector<std::int64_t>>& tokens, std::int64_t vocab_size,
                  const std::string& where) {
  if (tokens.empty()) throw InputError(where, "no sequences");
  for (std::size_t b = 0; b < tokens.size(); ++b) {
    if (tokens[b].empty()) throw InputError(where, "sequence " + std::to_string(b) + " is empty");
    if (tokens[b].size() != tokens.front().size()) throw InputError(where, "sequences differ in length");
    for (std::size_t i = 0; i < tokens[b].size(); ++i) {
      const std::int64_t t = tokens[b][i];
      if (t < 0 || t >= vocab_size)
        throw InputError(where, "token id " + std::to_string(t) + " at [" + std::to_string(b) + ", " +
                                    std::to_string(i) + "] is outside the vocabulary [0, " +
                                    std::to_string(vocab_size) + ")");
    }
  }
}

std::vector<std::vector<std::int64_t>> read_tokens_npy(const std::string& path, std::int64_t vocab_size) {
  const Tensor t = read_npy(path);
  if (t.dtype() != DType::kI32 && t.dtype() != DType::kI64)
    throw InputError(path, "token ids must be int32 or int64, got " + std::string(dtype_name(t.dtype())));
  if (t.rank() != 1 && t.rank() != 2)
    throw InputError(path, "token ids must have shape [b, L] or [L], got " + t.shape_string());
  const std::int64_t b = t.rank() == 2 ? t.dim(0) : 1;
  const std::int64_t l = t.shape().back();
  if (b == 0 || l == 0) throw InputError(path, "token ids are empty (shape " + t.shape_string() + ")");
  std::vector<std::vector<std::int64_t>> out(static_cast<std::size_t>(b));
  for (std::int64_t i = 0; i < b; ++i) {
    auto& row = out[static_cast<std::size_t>(i)];
    row.reserve(static_cast<std::size_t>(l));
    for (std::int64_t j = 0; j < l; ++j) {
      const auto k = static_cast<std::size_t>(i * l + j);
      row.push_back(t.dtype() == DType::kI32 ? t.values<std::int32_t>()[k] : t.values<std::int64_t>()[k]);
    }
  }
  check_tokens(out, vocab_size, path);
  return out;
}

std::vector<std::vector<std::int64_t>> synthetic_tokens(std::int64_t n, std::int64_t vocab_size, std::uint64_t seed) {
  if (n <= 0) throw InputError("--prompt-len", "must be positive, got " + std::to_string(n));
  // Stream 0x70CE5 ("tokens") of the seed; word 0 of counter i modulo the vocabulary (the bias of
  // 2^32 mod V is irrelevant for test inputs).
  const CounterRng rng(seed, 0x70CE5);
  std::vector<std::int64_t> t;
  for (std::int64_t i = 0; i < n; ++i)
    t.push_back(static_cast<std::int64_t>(rng.words(static_cast<std::uint64_t>(i))[0] %
                                          static_cast<std::uint64_t>(vocab_size)));
  return {t};
}

std::vector<StepPlan> plan_steps(const ModelConfig& c, std::int64_t batch, std::int64_t length,
                                 std::int64_t decode_steps) {
  if (decode_steps < 0) throw InputError("--decode-steps", "must be non-negative, got " + std::to_string(decode_steps));
  if (decode_steps >= length)
    throw InputError("--decode-steps", std::to_string(decode_steps) + " decode steps need more than " +
                                           std::to_string(decode_steps) + " tokens per sequence, the tokens have " +
                                           std::to_string(length));
  if (batch > c.max_batch_size)
    throw InputError("--tokens", std::to_string(batch) + " sequences exceed the config's max_batch_size " +
                                     std::to_string(c.max_batch_size));
  if (length > c.max_seq_len)
    throw InputError("--tokens", std::to_string(length) + " tokens per sequence exceed the config's max_seq_len " +
                                     std::to_string(c.max_seq_len));
  const bool has_mtp = c.n_mtp_layers > 0;
  const std::int64_t prefill = length - decode_steps;
  std::vector<StepPlan> plan;
  // Step i covers positions [start, start + len); the next token of the last one, start + len, is in
  // T when start + len < length.
  plan.push_back({"prefill", 0, prefill, has_mtp && prefill < length});
  for (std::int64_t i = 0; i < decode_steps; ++i) {
    const std::int64_t pos = prefill + i;
    plan.push_back({"decode" + std::to_string(i), pos, 1, has_mtp && pos + 1 < length});
  }
  return plan;
}

std::string steps_json(const std::vector<StepPlan>& plan) {
  nlohmann::ordered_json j = nlohmann::ordered_json::array();
  for (const StepPlan& st : plan)
    j.push_back({{"step", st.name}, {"start_pos", st.start_pos}, {"length", st.length}, {"mtp", st.mtp}});
  return j.dump();
}

void run_plan(const Transformer& model, const std::vector<std::vector<std::int64_t>>& tokens,
              const std::vector<StepPlan>& plan, Recorder& rec, const StepProgressFn& progress) {
  std::vector<SequenceState> states;
  for (std::size_t b = 0; b < tokens.size(); ++b) states.push_back(model.new_sequence());
  for (const StepPlan& st : plan) {
    std::vector<std::vector<std::int64_t>> ids, next;
    for (const auto& seq : tokens) {
      const auto first = seq.begin() + st.start_pos;
      ids.emplace_back(first, first + st.length);
      if (st.mtp) next.emplace_back(first + 1, first + 1 + st.length);
    }
    const ProgressFn p = progress ? ProgressFn([&](const std::string& m) { progress(st.name, m); }) : ProgressFn();
    model.forward(ids, st.start_pos, states, &rec, st.name, st.mtp ? &next : nullptr, p);
  }
}

void check_runner_batch(const OfficialRunner& r, std::int64_t batch) {
  if (batch > r.max_batch)
    throw InputError("--device", r.device + " runs " + std::to_string(r.max_batch) + " sequence" +
                                     (r.max_batch == 1 ? "" : "s") +
                                     " at most ([L] or [1, L] tokens); the input holds " + std::to_string(batch));
}

}  // namespace dsv4
