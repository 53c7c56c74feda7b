// ModelConfig: built-in configs are valid and match spec 00; bad configs are refused with an
// error naming the field.
#include "dsv4/config/model_config.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "support/expect_errors.hpp"

namespace dsv4 {
namespace {

using testing_support::config_error_field;

TEST(ModelConfig, BuiltinsValidate) {
  for (const auto& name : builtin_config_names()) {
    EXPECT_NO_THROW(validate_config(builtin_config(name))) << name;
  }
}

// The number of CSA (compress ratio 4), HCA (128) and SWA (0) layers of a config's main stack.
std::array<int, 3> csa_hca_swa(const ModelConfig& c) {
  std::array<int, 3> n{};
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const auto r = c.compress_ratio(l);
    ++n[r == 4 ? 0 : r == 128 ? 1 : 2];
  }
  return n;
}

TEST(ModelConfig, ReleasedScheduleMatchesSpec00) {
  // spec 00 §0.4.4: Pro has CSA 30, HCA 31 (layers 0, 1 and odd 3..59), MTP SWA.
  const ModelConfig pro = builtin_config("v4-pro");
  EXPECT_EQ(csa_hca_swa(pro), (std::array<int, 3>{30, 31, 0}));
  EXPECT_EQ(pro.compress_ratio(pro.n_layers), 0);
  EXPECT_EQ(csa_hca_swa(builtin_config("v4-flash")), (std::array<int, 3>{21, 20, 2}));
}

TEST(ModelConfig, TinyKeepsEveryPathAlive) {
  const ModelConfig t = builtin_config("tiny");
  EXPECT_EQ(t.compress_ratios, (std::vector<std::int64_t>{0, 128, 4, 128, 4, 0, 0}));
  EXPECT_LT(t.window_size, 130);
  EXPECT_GE(t.max_seq_len, 2 * 128 + 1);  // prompts can cross two ratio-128 blocks
}

// The required keys (spec 00 §0.5.4) at V4-Flash widths, two layers, no MTP.
nlohmann::json flash2() {
  return {{"vocab_size", 129280},
          {"dim", 4096},
          {"moe_inter_dim", 2048},
          {"n_layers", 2},
          {"n_hash_layers", 1},
          {"n_mtp_layers", 0},
          {"n_heads", 64},
          {"n_routed_experts", 256},
          {"n_activated_experts", 6},
          {"q_lora_rank", 1024},
          {"head_dim", 512},
          {"rope_head_dim", 64},
          {"o_groups", 8},
          {"o_lora_rank", 1024},
          {"index_n_heads", 64},
          {"index_head_dim", 128},
          {"compress_ratios", {0, 4}}};
}

std::string field_with(const char* key, const nlohmann::json& v) {
  nlohmann::json j = flash2();
  j[key] = v;
  return config_error_field(j.dump());
}

TEST(ModelConfig, BadDimensionsNameTheField) {
  EXPECT_EQ(field_with("dim", 200), "dim");                       // act_quant block 128
  EXPECT_EQ(field_with("index_head_dim", 96), "index_head_dim");  // Hadamard size
  EXPECT_EQ(field_with("head_dim", 500), "head_dim");             // KV fp8 block 64
  EXPECT_EQ(field_with("moe_inter_dim", 100), "moe_inter_dim");
  EXPECT_EQ(field_with("compress_ratios", {0}), "compress_ratios");
  EXPECT_EQ(field_with("compress_ratios", {3, 0}), "compress_ratios");
  EXPECT_EQ(field_with("score_func", "relu"), "score_func");
  EXPECT_EQ(field_with("dim", "big"), "dim");
  EXPECT_EQ(config_error_field("not json"), "<file>");
  EXPECT_EQ(config_error_field(flash2().dump()), "<no error>");
}

TEST(ModelConfig, HuggingFaceKeysMap) {
  nlohmann::json j = flash2();
  for (const char* k : {"dim", "n_layers", "n_mtp_layers", "n_hash_layers", "n_heads"}) j.erase(k);
  j.update(nlohmann::json::parse(
      R"({"hidden_size": 4096, "num_hidden_layers": 2, "num_nextn_predict_layers": 0, "num_hash_layers": 1,
          "num_attention_heads": 64, "rope_scaling": {"factor": 8, "original_max_position_embeddings": 1024,
          "beta_fast": 16, "beta_slow": 2}, "routed_scaling_factor": 1.5, "scoring_func": "sigmoid"})"));
  const ModelConfig c = parse_config_json(j.dump(), "hf.json");
  EXPECT_EQ(c.dim, 4096);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 64);
  EXPECT_EQ(c.rope_factor, 8.0);
  EXPECT_EQ(c.original_seq_len, 1024);
  EXPECT_EQ(c.beta_fast, 16.0);
  EXPECT_EQ(c.route_scale, 1.5);
  EXPECT_EQ(c.score_func, ScoreFunc::kSigmoid);
}

TEST(ModelConfig, UnknownNameOrPath) {
  EXPECT_THROW(load_config("/nonexistent/config.json"), ConfigError);
  EXPECT_THROW(builtin_config("v5"), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
