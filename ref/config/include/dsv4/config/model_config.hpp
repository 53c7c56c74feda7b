// The model configuration: the official inference code's ModelArgs (spec 00 §0.5.2), built-in
// configurations (spec 00 §0.5, §0.7) and the reader for config.json files in either the
// official inference format or the Hugging Face format (spec 00 §0.5.1 gives the key mapping).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4 {

enum class ScoreFunc { kSoftmax, kSigmoid, kSqrtSoftplus };

struct ModelConfig {
  std::string name = "custom";
  std::int64_t max_batch_size = 4;
  std::int64_t max_seq_len = 4096;
  std::int64_t vocab_size = 129280;
  std::int64_t dim = 4096;
  std::int64_t moe_inter_dim = 2048;
  std::int64_t n_layers = 7;
  std::int64_t n_hash_layers = 3;
  std::int64_t n_mtp_layers = 1;
  std::int64_t n_heads = 64;
  // MoE
  std::int64_t n_routed_experts = 8;
  std::int64_t n_shared_experts = 1;
  std::int64_t n_activated_experts = 2;
  ScoreFunc score_func = ScoreFunc::kSqrtSoftplus;
  double route_scale = 1.0;
  double swiglu_limit = 10.0;
  // attention
  std::int64_t q_lora_rank = 1024;
  std::int64_t head_dim = 512;
  std::int64_t rope_head_dim = 64;
  std::int64_t o_groups = 8;
  std::int64_t o_lora_rank = 1024;
  std::int64_t window_size = 128;
  std::vector<std::int64_t> compress_ratios;  // n_layers + n_mtp_layers entries, each 0, 4 or 128
  // RoPE / YaRN
  double rope_theta = 10000.0;
  double compress_rope_theta = 160000.0;
  double rope_factor = 16.0;
  std::int64_t original_seq_len = 65536;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  // indexer
  std::int64_t index_n_heads = 64;
  std::int64_t index_head_dim = 128;
  std::int64_t index_topk = 512;
  // mHC
  std::int64_t hc_mult = 4;
  std::int64_t hc_sinkhorn_iters = 20;
  double hc_eps = 1e-6;
  double norm_eps = 1e-6;
  // numerics of the weights (spec 00 §0.5.2)
  std::string dtype = "fp8";         // "fp8" or "bf16": default Linear weight dtype
  std::string scale_fmt = "ue8m0";   // "ue8m0" or "" (fp32 scales)
  std::string expert_dtype = "fp4";  // "fp4", "fp8" or "bf16"

  std::int64_t compress_ratio(std::int64_t layer) const { return compress_ratios.at(static_cast<std::size_t>(layer)); }
  std::int64_t nope_head_dim() const { return head_dim - rope_head_dim; }
};

// Names accepted by builtin_config: "tiny", "tiny16" (16 heads), "flash-slice", "pro-slice",
// "v4-flash", "v4-pro".
const std::vector<std::string>& builtin_config_names();
// Throws std::invalid_argument naming the unknown config.
ModelConfig builtin_config(std::string_view name);
// A built-in name, or a path to a config.json (official inference keys or Hugging Face keys).
// Throws dsv4::ConfigError naming the offending field.
ModelConfig load_config(const std::string& name_or_path);
ModelConfig parse_config_json(const std::string& json_text, const std::string& source);

// Every constraint the reference relies on (quantiser blocks, Hadamard size, ratios, …).
// Throws ConfigError("<field>: <why>") on the first violation.
void validate_config(const ModelConfig& c);

class ConfigError : public std::runtime_error {
 public:
  ConfigError(const std::string& field, const std::string& why)
      : std::runtime_error("config field '" + field + "': " + why), field_(field) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

}  // namespace dsv4
