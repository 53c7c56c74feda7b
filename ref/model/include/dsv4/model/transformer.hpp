// The whole V4 forward (spec 05; official code `Transformer.forward`): embed → stream expansion →
// blocks → hc_head → norm → logits of the last position, plus the MTP block. Prefill
// (start_pos 0, s tokens) and decode (one token at start_pos > 0) for a batch of sequences that
// share start_pos (spec 05 §5.6), each with its own caches.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dsv4/model/block.hpp"
#include "dsv4/model/head.hpp"
#include "dsv4/model/mtp.hpp"
#include "dsv4/model/recorder.hpp"

namespace dsv4 {

struct ModelWeights {
  Mat embed;  // bf16 values [V, d]
  std::vector<BlockWeights> layers;
  HcHeadWeights hc_head;
  Vec norm;                     // fp32 [d]
  LinearWeight head;            // fp32 (bf16-valued) [V, d]
  std::vector<MtpWeights> mtp;  // n_mtp_layers
  // Seeded synthetic weights for any config (distributions: synthetic_weights.hpp and each
  // component's `synthetic`).
  static ModelWeights synthetic(const ModelConfig& c, std::uint64_t seed);
};

// One sequence's caches and states: one AttentionState per layer and per MTP block.
struct SequenceState {
  std::vector<AttentionState> layers;
  std::vector<AttentionState> mtp;
  std::int64_t next_pos = 0;
};

struct ModelOutput {
  std::vector<Mat> logits;       // per sequence [1, V]
  std::vector<Mat> mtp_logits;   // per sequence [1, V] of mtp.0 (empty when MTP did not run)
  std::vector<Mat> final_state;  // per sequence [s, n·d] the last block's output (MTP input)
};

// Called after each block / head with a short description ("layers.3", "head", "mtp.0").
using ProgressFn = std::function<void(const std::string&)>;

class Transformer {
 public:
  // Throws std::invalid_argument / ConfigError naming the field on a bad config or weight.
  Transformer(Precision prec, const ModelConfig& cfg, ModelWeights weights);

  const ModelConfig& config() const { return cfg_; }
  SequenceState new_sequence() const;

  // One call of the official forward for a batch: ids[b] holds the s tokens of sequence b
  // (s equal across the batch; s = 1 when start_pos > 0). start_pos must equal every state's
  // next_pos. When mtp_ids is given (ids of the next positions, same shape), mtp.0 runs on the
  // final state with them. Outputs are recorded under `<step>/…` (recorder.hpp) when rec is set.
  ModelOutput forward(const std::vector<std::vector<std::int64_t>>& ids, std::int64_t start_pos,
                      std::vector<SequenceState>& states, Recorder* rec = nullptr, const std::string& step = "",
                      const std::vector<std::vector<std::int64_t>>* mtp_ids = nullptr,
                      const ProgressFn& progress = {}) const;

 private:
  Precision prec_;
  ModelConfig cfg_;
  Mat embed_;
  std::vector<Block> blocks_;
  HcHeadWeights hc_head_;
  Vec norm_;
  LinearWeight head_;
  std::vector<MtpBlock> mtp_;
};

}  // namespace dsv4
