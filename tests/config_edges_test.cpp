// ctest-labels: model
// Conformance of configs at the edges the official code allows (issue 13 item 0, spec 00 §0.5.4):
// each config.json is parsed and the whole model runs on it (prefill + decode, tiny widths) —
// index_head_dim = rope_head_dim (the indexer rotates every dim, its compressor has no nope part),
// one layer, no hash layers, no MTP, compress ratios 0/4/128 in every order, a batch of 1 and of
// max_batch_size, expert_dtype null.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/model/recorder.hpp"
#include "dsv4/model/transformer.hpp"

namespace dsv4 {
namespace {

// Tiny widths; index_head_dim = rope_head_dim = 64; no hash layers and official defaults elsewhere.
std::string config_json(const std::string& ratios, std::int64_t n_layers, std::int64_t n_mtp,
                        const std::string& extra = "") {
  return R"({"vocab_size": 256, "dim": 128, "moe_inter_dim": 128, "n_layers": )" + std::to_string(n_layers) +
         R"(, "n_mtp_layers": )" + std::to_string(n_mtp) +
         R"(, "n_heads": 2, "n_routed_experts": 4, "n_activated_experts": 2, "q_lora_rank": 128,
      "head_dim": 128, "rope_head_dim": 64, "o_groups": 2, "o_lora_rank": 64, "index_n_heads": 2,
      "index_head_dim": 64, "index_topk": 4, "window_size": 8, "max_seq_len": 160, "max_batch_size": 2,
      "expert_dtype": null, "swiglu_limit": 10.0, "original_seq_len": 64, "rope_factor": 4,
      "compress_ratios": )" +
         ratios + extra + "}";
}

// Runs prefill of `prompt` tokens and 2 decode steps for `batch` sequences; every output finite
// (but the scores and margins).
MemoryRecorder run(const ModelConfig& c, Mode mode, std::int64_t batch, std::int64_t prompt) {
  const Transformer model(Precision(mode), c, ModelWeights::synthetic(c, 7));
  std::vector<std::vector<std::int64_t>> toks;
  for (std::int64_t b = 0; b < batch; ++b) toks.push_back(synthetic_tokens(prompt + 2, c.vocab_size, 11 + b).front());
  const auto plan = plan_steps(c, batch, prompt + 2, 2);
  MemoryRecorder rec;
  run_plan(model, toks, plan, rec);
  for (const auto& [name, t] : rec.entries()) {
    EXPECT_EQ(t.shape.front(), batch) << name;
    // Scores and margins carry -inf where an entry is masked (not yet visible).
    if (name.ends_with("/scores") || name.ends_with("/margin")) continue;
    for (double v : t.values) {
      if (!std::isfinite(v)) {
        ADD_FAILURE() << name << " holds a non-finite value";
        break;
      }
    }
  }
  return rec;
}

TEST(ConfigEdges, IndexHeadDimEqualToRopeHeadDimRunsInBothModes) {
  const ModelConfig c = parse_config_json(config_json("[4, 128, 0]", 2, 1), "edge.json");
  ASSERT_EQ(c.index_head_dim, c.rope_head_dim);
  EXPECT_EQ(c.n_hash_layers, 0);
  EXPECT_EQ(c.expert_dtype, "fp8");
  for (Mode mode : {Mode::kExact, Mode::kOfficial}) {
    const MemoryRecorder rec = run(c, mode, 1, 30);
    // The CSA layer's indexer ran: top-k of 4 among 30 / 4 = 7 compressed entries.
    const RecordedTensor& ids = rec.at("prefill/layers.0.attn.indexer/out");
    EXPECT_EQ(ids.shape, (std::vector<std::int64_t>{1, 30, 4}));
    EXPECT_TRUE(std::any_of(ids.values.begin(), ids.values.end(), [](double v) { return v >= 0; }));
    EXPECT_TRUE(rec.entries().contains("decode1/layers.0.attn.indexer/out"));
    EXPECT_TRUE(rec.entries().contains("prefill/mtp.0.head/out"));
  }
}

TEST(ConfigEdges, OneLayerNoHashLayersNoMtp) {
  for (const char* ratio : {"[0]", "[4]", "[128]"}) {
    const ModelConfig c = parse_config_json(config_json(ratio, 1, 0), "edge.json");
    const MemoryRecorder rec = run(c, Mode::kOfficial, 1, 20);
    EXPECT_TRUE(rec.entries().contains("decode1/head/out")) << ratio;
    EXPECT_FALSE(rec.entries().contains("prefill/mtp.0.head/out")) << ratio;
  }
}

// Every order of the three attention kinds, past the first ratio-128 block (130 tokens), with a
// batch of max_batch_size (2) and of 1.
TEST(ConfigEdges, CompressRatiosInEveryOrderBatchOneAndMax) {
  std::vector<int> r{0, 4, 128};
  int n = 0;
  do {
    const std::string ratios =
        "[" + std::to_string(r[0]) + ", " + std::to_string(r[1]) + ", " + std::to_string(r[2]) + "]";
    const ModelConfig c = parse_config_json(config_json(ratios, 3, 0), "edge.json");
    const MemoryRecorder rec = run(c, Mode::kOfficial, n % 2 == 0 ? 2 : 1, 130);
    const auto hca = std::find(r.begin(), r.end(), 128) - r.begin();
    const RecordedTensor& kv = rec.at("prefill/layers." + std::to_string(hca) + ".attn.compressor/out");
    EXPECT_EQ(kv.shape[1], 1) << ratios;  // one ratio-128 entry after 130 tokens
    ++n;
  } while (std::next_permutation(r.begin(), r.end()));
  EXPECT_EQ(n, 6);
}

}  // namespace
}  // namespace dsv4
