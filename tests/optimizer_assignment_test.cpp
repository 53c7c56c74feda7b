// The optimizer of every parameter by official name (spec 06 §6.1, ref/train/optimizer_assignment.hpp):
// total over every tensor of every built-in config (both namings), each class where spec 06 puts it.
#include "dsv4/train/optimizer_assignment.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/checkpoint.hpp"

namespace dsv4 {
namespace {

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

TEST(OptimizerAssignment, NamedParameters) {
  const std::map<std::string, OptimizerKind> want{{"embed.weight", OptimizerKind::kAdamW},
                                                  {"head.weight", OptimizerKind::kAdamW},
                                                  {"norm.weight", OptimizerKind::kAdamW},
                                                  {"layers.0.attn_norm.weight", OptimizerKind::kAdamW},
                                                  {"layers.3.attn.q_norm.weight", OptimizerKind::kAdamW},
                                                  {"layers.3.attn.compressor.norm.weight", OptimizerKind::kAdamW},
                                                  {"mtp.0.enorm.weight", OptimizerKind::kAdamW},
                                                  {"layers.2.hc_attn_base", OptimizerKind::kAdamW},
                                                  {"layers.2.hc_ffn_scale", OptimizerKind::kAdamW},
                                                  {"hc_head_base", OptimizerKind::kAdamW},
                                                  {"mtp.0.hc_head_scale", OptimizerKind::kAdamW},
                                                  {"layers.1.attn.attn_sink", OptimizerKind::kAdamW},
                                                  {"layers.1.attn.indexer.compressor.ape", OptimizerKind::kAdamW},
                                                  {"layers.2.hc_attn_fn", OptimizerKind::kMuon},
                                                  {"hc_head_fn", OptimizerKind::kMuon},
                                                  {"layers.0.attn.wq_b.weight", OptimizerKind::kMuon},
                                                  {"layers.0.attn.wo_a.weight", OptimizerKind::kMuon},
                                                  {"layers.1.attn.compressor.wgate.weight", OptimizerKind::kMuon},
                                                  {"layers.1.attn.indexer.weights_proj.weight", OptimizerKind::kMuon},
                                                  {"layers.5.ffn.gate.weight", OptimizerKind::kMuon},
                                                  {"layers.5.ffn.experts.7.w2.weight", OptimizerKind::kMuon},
                                                  {"layers.5.ffn.shared_experts.w3.weight", OptimizerKind::kMuon},
                                                  {"mtp.0.e_proj.weight", OptimizerKind::kMuon},
                                                  {"layers.5.ffn.gate.bias", OptimizerKind::kNone},
                                                  {"layers.0.ffn.gate.tid2eid", OptimizerKind::kNone},
                                                  {"layers.0.attn.wq_a.scale", OptimizerKind::kNone},
                                                  {"layers.5.ffn.experts.7.w1.scale", OptimizerKind::kNone}};
  for (const auto& [name, kind] : want) EXPECT_EQ(optimizer_for(name).kind, kind) << name;
}

TEST(OptimizerAssignment, UnknownNamesAreRefused) {
  for (const char* bad : {"", "layers.0.attn.mystery", "scale", "layers.0.hc_attn_bias", "weight"}) {
    EXPECT_THROW(optimizer_for(bad), std::invalid_argument) << bad;
  }
}

// Every tensor of every built-in config is classified (official naming, and the Hugging Face
// naming mapped back); Muon takes only 2-D tensors, AdamW's are the vectors and tables of spec 06
// §6.1, the untrained ones are scales, router biases and tid2eid.
TEST(OptimizerAssignment, CoversEveryParameterOfEveryBuiltinConfig) {
  for (const std::string& config : builtin_config_names()) {
    const ModelConfig c = builtin_config(config);
    std::map<OptimizerKind, std::size_t> count;
    for (const CheckpointTensorInfo& t : published_checkpoint_tensors(c, CheckpointNaming::kOfficial)) {
      const OptimizerAssignment a = optimizer_for(t.name);
      ++count[a.kind];
      if (a.kind == OptimizerKind::kMuon) {
        EXPECT_EQ(t.shape.size(), 2u) << t.name;
        const std::int64_t blocks = muon_row_blocks(t.name, c);
        EXPECT_EQ(t.shape[0] % blocks, 0) << t.name;
        EXPECT_EQ(blocks, ends_with(t.name, ".wo_a.weight") ? c.o_groups : 1) << t.name;
      } else if (a.kind == OptimizerKind::kNone) {
        EXPECT_TRUE(ends_with(t.name, ".scale") || ends_with(t.name, ".gate.bias") || ends_with(t.name, ".tid2eid"))
            << t.name;
      } else {
        EXPECT_TRUE(t.shape.size() == 1 || t.name == "embed.weight" || t.name == "head.weight" ||
                    ends_with(t.name, ".ape"))
            << t.name;
      }
    }
    for (const CheckpointTensorInfo& t : published_checkpoint_tensors(c, CheckpointNaming::kHuggingFace)) {
      EXPECT_NO_THROW(optimizer_for(official_name_from_hf(t.name))) << t.name;
    }
    EXPECT_GT(count[OptimizerKind::kMuon], 0u);
    EXPECT_GT(count[OptimizerKind::kAdamW], 0u);
    std::printf("%s: %zu muon, %zu adamw, %zu untrained tensors\n", config.c_str(), count[OptimizerKind::kMuon],
                count[OptimizerKind::kAdamW], count[OptimizerKind::kNone]);
  }
}

}  // namespace
}  // namespace dsv4
