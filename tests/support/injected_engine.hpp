// A stand-in for a foreign engine in the audit's tests (issue 17 item 5): the reference's forward
// (embedding → blocks → head, as Transformer::forward, spec 05 §5.1–§5.3; no MTP) with one module
// of its own — layer `layer`'s FFN hc_post, the block's output state recorded as
// `layers.<layer>/out` (spec 04 §4.4): X'_k = post_k·f + Σ_j comb[j,k]·X_j per token, stream k
// and feature, its n + 1 fp32 products added in bf16 partial sums in an order the engine picks per
// call (a rotation of the terms): fixed, by the batch size, by run-to-run noise (per token and
// stream, from the run's seed) or by the phase (prefill / decode). Everything downstream runs on
// that state, so later tensors move as consequences. The reference's Transformer has no hook for
// this (ref/ is not the tests' to change), hence this loop over its public pieces.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/block.hpp"
#include "dsv4/model/head.hpp"
#include "dsv4/model/recorder.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4::testing_support {

enum class SumOrder { kFixed, kByBatchSize, kRunNoise, kByPhase };

class InjectedEngine {
 public:
  InjectedEngine(const ModelConfig& c, ModelWeights w, std::int64_t layer, SumOrder order, std::uint64_t run_seed = 0)
      : c_(c), prec_(Mode::kOfficial), layer_(layer), order_(order), run_seed_(run_seed) {
    embed_ = std::move(w.embed);
    hc_head_ = std::move(w.hc_head);
    norm_ = std::move(w.norm);
    head_ = std::move(w.head);
    for (std::int64_t l = 0; l < c.n_layers; ++l)
      blocks_.emplace_back(prec_, c, l, std::move(w.layers[static_cast<std::size_t>(l)]));
  }

  // A prefill of the first `prompt` tokens of each row, then one decode step per remaining token;
  // every output recorded under prefill/…, decode0/…, …
  MemoryRecorder run(const std::vector<std::vector<std::int64_t>>& tokens, std::int64_t prompt) const {
    MemoryRecorder rec;
    std::vector<std::vector<AttentionState>> states(tokens.size());
    for (auto& s : states)
      for (const Block& b : blocks_) s.push_back(b.allocate_state());
    std::vector<std::vector<std::int64_t>> ids;
    for (const auto& t : tokens) ids.emplace_back(t.begin(), t.begin() + prompt);
    forward(ids, 0, states, rec, "prefill");
    const auto length = static_cast<std::int64_t>(tokens.front().size());
    for (std::int64_t p = prompt; p < length; ++p) {
      for (std::size_t i = 0; i < tokens.size(); ++i) ids[i] = {tokens[i][static_cast<std::size_t>(p)]};
      forward(ids, p, states, rec, "decode" + std::to_string(p - prompt));
    }
    return rec;
  }

 private:
  void forward(const std::vector<std::vector<std::int64_t>>& ids, std::int64_t start_pos,
               std::vector<std::vector<AttentionState>>& states, MemoryRecorder& rec, const std::string& step) const {
    const std::size_t b = ids.size();
    std::vector<Mat> h, x;
    for (const auto& t : ids) {
      h.push_back(embed_tokens(embed_, t));
      x.push_back(expand_streams(h.back(), c_.hc_mult));
    }
    record_batch(&rec, step + "/embed/out", h);
    for (const Block& blk : blocks_) {
      std::vector<BlockOutput> outs;
      for (std::size_t i = 0; i < b; ++i)
        outs.push_back(blk.forward(x[i], ids[i], start_pos, states[i][static_cast<std::size_t>(blk.layer())]));
      if (blk.layer() == layer_)
        for (BlockOutput& o : outs) o.x_out = own_hc_post(o, b, ids.front().size() > 1, start_pos);
      record_block(&rec, step, "layers." + std::to_string(blk.layer()), outs);
      for (std::size_t i = 0; i < b; ++i) x[i] = std::move(outs[i].x_out);
    }
    std::vector<Mat> hc, norm, logits;
    for (std::size_t i = 0; i < b; ++i) {
      HeadOutput o = head_forward(prec_, c_, x[i], hc_head_, norm_, head_);
      hc.push_back(std::move(o.hc_head));
      norm.push_back(std::move(o.norm));
      logits.push_back(std::move(o.logits));
    }
    record_batch(&rec, step + "/hc_head/out", hc);
    record_batch(&rec, step + "/norm/out", norm);
    record_batch(&rec, step + "/head/out", logits);
  }

  // The first term of the sum at position pos, stream k, in a call of batch size b.
  std::int64_t rotation(std::size_t b, bool prefill, std::int64_t pos, std::int64_t k) const {
    const std::int64_t terms = c_.hc_mult + 1;
    switch (order_) {
      case SumOrder::kFixed:
        return 0;
      case SumOrder::kByBatchSize:
        return static_cast<std::int64_t>(b) % terms;
      case SumOrder::kByPhase:
        return prefill ? 0 : 2;
      case SumOrder::kRunNoise: {
        std::uint64_t z = run_seed_ * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(pos * 64 + k);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return static_cast<std::int64_t>((z ^ (z >> 31)) % static_cast<std::uint64_t>(terms));
      }
    }
    return 0;
  }

  Mat own_hc_post(const BlockOutput& o, std::size_t b, bool prefill, std::int64_t start_pos) const {
    const std::int64_t n = c_.hc_mult, d = c_.dim;
    const Mat& f = o.ffn.out;
    const Mat& res = o.x_mid;
    Mat out(res.rows(), res.cols());
    std::vector<float> terms(static_cast<std::size_t>(n + 1));
    for (Eigen::Index t = 0; t < res.rows(); ++t)
      for (std::int64_t k = 0; k < n; ++k) {
        const std::int64_t r = rotation(b, prefill, start_pos + t, k);
        for (std::int64_t delta = 0; delta < d; ++delta) {
          terms[0] = static_cast<float>(o.hc_ffn.post(t, k)) * static_cast<float>(f(t, delta));
          for (std::int64_t j = 0; j < n; ++j)
            terms[static_cast<std::size_t>(j + 1)] =
                static_cast<float>(o.hc_ffn.comb(t, j * n + k)) * static_cast<float>(res(t, j * d + delta));
          float acc = 0.0F;
          for (std::int64_t q = 0; q <= n; ++q)
            acc = round_bf16(acc + terms[static_cast<std::size_t>((q + r) % (n + 1))]);
          out(t, k * d + delta) = acc;
        }
      }
    return out;
  }

  ModelConfig c_;
  Precision prec_;
  std::int64_t layer_;
  SumOrder order_;
  std::uint64_t run_seed_;
  Mat embed_;
  HcHeadWeights hc_head_;
  Vec norm_;
  LinearWeight head_;
  std::vector<Block> blocks_;
};

}  // namespace dsv4::testing_support
