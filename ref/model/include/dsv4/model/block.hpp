// One V4 block (spec 05 §5.2; official code `Block.forward`): hc_pre → attn_norm → Attention →
// hc_post, then hc_pre → ffn_norm → MoE → hc_post, on the residual state X [s, n·d] of one
// sequence (stream-major rows, spec 04 §4.1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/attention.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/model/moe.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/model/recorder.hpp"

namespace dsv4 {

struct BlockWeights {
  HcWeights hc_attn;
  Vec attn_norm;  // fp32 [d]
  AttentionWeights attn;
  HcWeights hc_ffn;
  Vec ffn_norm;  // fp32 [d]
  MoeWeights ffn;
  // Deterministic synthetic weights of layer `layer` (the MTP block is layer n_layers).
  static BlockWeights synthetic(const ModelConfig& c, std::int64_t layer, std::uint64_t seed);
};

// Everything one block computes for one sequence in one call, in execution order.
struct BlockOutput {
  HcPreOutput hc_attn;  // y, post, comb of the attention site
  Mat attn_norm;        // [s, d]
  AttentionOutput attn;
  Mat x_mid;  // [s, n·d] state after the attention hc_post
  HcPreOutput hc_ffn;
  Mat ffn_norm;  // [s, d]
  MoeOutput ffn;
  Mat x_out;  // [s, n·d] the block's output state
};

class Block {
 public:
  // Throws std::invalid_argument naming the field on a bad shape.
  Block(Precision prec, const ModelConfig& cfg, std::int64_t layer, BlockWeights weights);

  std::int64_t layer() const { return layer_; }
  AttentionState allocate_state() const { return Attention::allocate_state(cfg_, layer_); }

  // spec 05 §5.2 for one sequence: x [s, n·d]; start_pos 0 = prefill of s tokens, else one token
  // at position start_pos (= st.next_pos). token_ids: the s tokens (hash routing).
  BlockOutput forward(const Mat& x, const std::vector<std::int64_t>& token_ids, std::int64_t start_pos,
                      AttentionState& st) const;

 private:
  Precision prec_;
  ModelConfig cfg_;
  std::int64_t layer_;
  HcWeights hc_attn_, hc_ffn_;
  Vec attn_norm_, ffn_norm_;
  Attention attn_;
  Moe ffn_;
};

// Records a batch of block outputs under `<step>/<prefix>…` (prefix `layers.N` or `mtp.0`), in
// execution order:
//   <prefix>.hc_attn/{y,post,comb}, <prefix>.attn_norm/out, <prefix>.attn/out,
//   <prefix>.attn.q_norm/out, <prefix>.attn.wo_a/out, <prefix>.attn/kv,
//   <prefix>.attn.indexer/out (top-k lists, CSA), <prefix>.attn.compressor/out (entries of the call),
//   <prefix>.attn.indexer/{scores,margin} (CSA: reference scores [s, entries], −∞ masked; margin
//   [s, 4] = k-th score, best unselected, gap, error bound),
//   <prefix>.hc_attn/out (the state after the attention site's hc_post),
//   <prefix>.hc_ffn/{y,post,comb}, <prefix>.ffn_norm/out, <prefix>.ffn.gate/{out0,out1},
//   <prefix>.ffn.gate/{scores,margin} (original scores [s, E]; margin of the biased-score cut),
//   <prefix>.ffn/out, <prefix>/out (the block's output state).
void record_block(Recorder* rec, const std::string& step, const std::string& prefix,
                  const std::vector<BlockOutput>& batch);

}  // namespace dsv4
