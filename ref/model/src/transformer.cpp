// spec 05 §5.1–§5.3, §5.6 (official code `Transformer.forward`).
#include "dsv4/model/transformer.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/synthetic_weights.hpp"

namespace dsv4 {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw std::invalid_argument("transformer: " + field + ": " + why);
}

template <class Get>
std::vector<Mat> gather(std::size_t b, Get get) {
  std::vector<Mat> v;
  v.reserve(b);
  for (std::size_t i = 0; i < b; ++i) v.push_back(get(i));
  return v;
}

}  // namespace

ModelWeights ModelWeights::synthetic(const ModelConfig& c, std::uint64_t seed) {
  ModelWeights w;
  // Embedding rows of unit RMS-scale (N(0,1) bf16); head std 1/√d like every projection.
  w.embed = synthetic_bf16_matrix(seed, "embed", c.vocab_size, c.dim, 1.0);
  for (std::int64_t l = 0; l < c.n_layers; ++l) w.layers.push_back(BlockWeights::synthetic(c, l, seed));
  w.hc_head = HcHeadWeights::synthetic(c, seed ^ 0x4EAD4EADULL);
  w.norm = synthetic_norm_weight(seed, "norm", c.dim);
  w.head = LinearWeight::fp32_from(synthetic_bf16_matrix(seed, "head", c.vocab_size, c.dim, 1.0 / std::sqrt(c.dim)));
  for (std::int64_t i = 0; i < c.n_mtp_layers; ++i) w.mtp.push_back(MtpWeights::synthetic(c, i, seed));
  return w;
}

Transformer::Transformer(Precision prec, const ModelConfig& cfg, ModelWeights weights)
    : prec_(prec),
      cfg_(cfg),
      embed_(std::move(weights.embed)),
      hc_head_(std::move(weights.hc_head)),
      norm_(std::move(weights.norm)),
      head_(std::move(weights.head)) {
  validate_config(cfg);
  if (embed_.rows() != cfg.vocab_size || embed_.cols() != cfg.dim) bad("embed", "expected [vocab_size, dim]");
  if (head_.out_features() != cfg.vocab_size || head_.in_features() != cfg.dim)
    bad("head", "expected [vocab_size, dim]");
  if (norm_.size() != cfg.dim) bad("norm", "expected dim entries");
  if (static_cast<std::int64_t>(weights.layers.size()) != cfg.n_layers) bad("layers", "expected n_layers blocks");
  if (static_cast<std::int64_t>(weights.mtp.size()) != cfg.n_mtp_layers) bad("mtp", "expected n_mtp_layers blocks");
  blocks_.reserve(weights.layers.size());
  for (std::int64_t l = 0; l < cfg.n_layers; ++l)
    blocks_.emplace_back(prec, cfg, l, std::move(weights.layers[static_cast<std::size_t>(l)]));
  for (std::int64_t i = 0; i < cfg.n_mtp_layers; ++i)
    mtp_.emplace_back(prec, cfg, i, std::move(weights.mtp[static_cast<std::size_t>(i)]));
}

SequenceState Transformer::new_sequence() const {
  SequenceState s;
  for (const Block& b : blocks_) s.layers.push_back(b.allocate_state());
  for (const MtpBlock& m : mtp_) s.mtp.push_back(m.allocate_state());
  return s;
}

// spec 05 §5.1–§5.3, one call for a batch sharing start_pos (§5.6).
ModelOutput Transformer::forward(const std::vector<std::vector<std::int64_t>>& ids, std::int64_t start_pos,
                                 std::vector<SequenceState>& states, Recorder* rec, const std::string& step,
                                 const std::vector<std::vector<std::int64_t>>* mtp_ids,
                                 const ProgressFn& progress) const {
  const std::size_t b = ids.size();
  if (b == 0) bad("ids", "empty batch");
  if (states.size() != b) bad("states", "one state per sequence expected");
  const std::size_t s = ids.front().size();
  if (s == 0) bad("ids", "empty sequence");
  for (std::size_t i = 0; i < b; ++i) {
    if (ids[i].size() != s) bad("ids", "sequences of one call must have the same length");
    if (states[i].next_pos != start_pos)
      bad("start_pos", std::to_string(start_pos) + " but sequence " + std::to_string(i) + " is at position " +
                           std::to_string(states[i].next_pos));
  }
  if (start_pos < 0) bad("start_pos", "negative");
  if (start_pos > 0 && s != 1) bad("ids", "decode (start_pos > 0) takes one token per sequence");
  if (start_pos + static_cast<std::int64_t>(s) > cfg_.max_seq_len)
    bad("start_pos", "positions up to " + std::to_string(start_pos + static_cast<std::int64_t>(s) - 1) +
                         " exceed max_seq_len " + std::to_string(cfg_.max_seq_len));
  if (mtp_ids != nullptr && mtp_ids->size() != b) bad("mtp_ids", "one row per sequence expected");
  const std::string pre = step.empty() ? std::string() : step + "/";

  // §5.1: embedding and stream expansion.
  std::vector<Mat> x =
      gather(b, [&](std::size_t i) { return expand_streams(embed_tokens(embed_, ids[i]), cfg_.hc_mult); });
  if (rec != nullptr)
    record_batch(rec, pre + "embed/out", gather(b, [&](std::size_t i) { return embed_tokens(embed_, ids[i]); }));

  // §5.2: the blocks.
  for (const Block& blk : blocks_) {
    std::vector<BlockOutput> outs;
    outs.reserve(b);
    for (std::size_t i = 0; i < b; ++i)
      outs.push_back(blk.forward(x[i], ids[i], start_pos, states[i].layers[static_cast<std::size_t>(blk.layer())]));
    record_block(rec, step, "layers." + std::to_string(blk.layer()), outs);
    for (std::size_t i = 0; i < b; ++i) x[i] = std::move(outs[i].x_out);
    if (progress) progress("layers." + std::to_string(blk.layer()));
  }

  // §5.3: the head.
  ModelOutput out;
  std::vector<HeadOutput> heads;
  for (std::size_t i = 0; i < b; ++i) heads.push_back(head_forward(prec_, cfg_, x[i], hc_head_, norm_, head_));
  record_batch(rec, pre + "hc_head/out", gather(b, [&](std::size_t i) { return heads[i].hc_head; }));
  record_batch(rec, pre + "norm/out", gather(b, [&](std::size_t i) { return heads[i].norm; }));
  record_batch(rec, pre + "head/out", gather(b, [&](std::size_t i) { return heads[i].logits; }));
  for (std::size_t i = 0; i < b; ++i) out.logits.push_back(heads[i].logits);
  if (progress) progress("head");

  // §5.5: the MTP block on the final state with the next tokens.
  if (mtp_ids != nullptr && !mtp_.empty()) {
    std::vector<MtpOutput> m;
    for (std::size_t i = 0; i < b; ++i) {
      if ((*mtp_ids)[i].size() != s) bad("mtp_ids", "same length as ids expected");
      m.push_back(mtp_.front().forward(x[i], (*mtp_ids)[i], start_pos, states[i].mtp.front(), embed_, head_));
    }
    record_batch(rec, pre + "mtp.0/in", gather(b, [&](std::size_t i) { return m[i].x_in; }));
    std::vector<BlockOutput> blocks;
    for (auto& mo : m) blocks.push_back(mo.block);
    record_block(rec, step, "mtp.0", blocks);
    record_batch(rec, pre + "mtp.0.hc_head/out", gather(b, [&](std::size_t i) { return m[i].head.hc_head; }));
    record_batch(rec, pre + "mtp.0.norm/out", gather(b, [&](std::size_t i) { return m[i].head.norm; }));
    record_batch(rec, pre + "mtp.0.head/out", gather(b, [&](std::size_t i) { return m[i].head.logits; }));
    for (auto& mo : m) out.mtp_logits.push_back(mo.head.logits);
    if (progress) progress("mtp.0");
  }
  for (std::size_t i = 0; i < b; ++i) states[i].next_pos = start_pos + static_cast<std::int64_t>(s);
  out.final_state = std::move(x);
  return out;
}

}  // namespace dsv4
