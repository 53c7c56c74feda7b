// The MTP block (spec 05 §5.5; official code `MTPBlock.forward`): a full Block of layer id
// n_layers (sliding-window attention, score-routed MoE) fed by the main model's final residual
// state and the embedding of the next tokens, with its own hc_head and norm and the main model's
// embedding and head (shared).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/block.hpp"
#include "dsv4/model/head.hpp"

namespace dsv4 {

struct MtpWeights {
  LinearWeight e_proj;     // FP8 (bf16 when cfg.dtype == "bf16") [d, d]
  LinearWeight h_proj;     // FP8 [d, d]
  Vec enorm, hnorm, norm;  // fp32 [d]
  HcHeadWeights hc_head;
  BlockWeights block;  // layer id n_layers + index
  static MtpWeights synthetic(const ModelConfig& c, std::int64_t index, std::uint64_t seed);
};

struct MtpOutput {
  Mat x_in;  // [s, n·d] bf16(e_proj(enorm(embed)) + h_proj(hnorm(H))) — the block's input state
  BlockOutput block;
  HeadOutput head;
};

class MtpBlock {
 public:
  MtpBlock(Precision prec, const ModelConfig& cfg, std::int64_t index, MtpWeights weights);
  AttentionState allocate_state() const { return block_.allocate_state(); }

  // spec 05 §5.5 steps 1–5 for one sequence: h [s, n·d] the main model's final state (before its
  // hc_head), token_ids the s tokens paired with it (callers pass the ids shifted left by one);
  // embed and head are the main model's.
  MtpOutput forward(const Mat& h, const std::vector<std::int64_t>& token_ids, std::int64_t start_pos,
                    AttentionState& st, const Mat& embed, const LinearWeight& head) const;

  // spec 05 §5.5 steps 1–3 alone: the block's input state X = bf16(e_proj(enorm(embed[ids])) +
  // h_proj(hnorm(H))) [s, n·d] (MtpOutput::x_in; the teacher-forced diff checks it on its own).
  Mat input_state(const Mat& h, const std::vector<std::int64_t>& token_ids, const Mat& embed) const;

 private:
  Precision prec_;
  ModelConfig cfg_;
  LinearWeight e_proj_, h_proj_;
  Vec enorm_, hnorm_, norm_;
  HcHeadWeights hc_head_;
  Block block_;
};

}  // namespace dsv4
