// spec 00 §0.5 (V4-Pro / V4-Flash hyper-parameters) and §0.7 (tiny test configuration).
#include "dsv4/config/model_config.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace dsv4 {

namespace {

// compress_ratios of the released models (spec 00 §0.4.4): the first two layers, then
// alternating 4, 128 starting with 4, the last layer 4, the MTP block 0.
std::vector<std::int64_t> released_ratios(std::int64_t n_layers, std::int64_t first_two) {
  std::vector<std::int64_t> r{first_two, first_two};
  for (std::int64_t l = 2; l < n_layers - 1; ++l) r.push_back((l % 2 == 0) ? 4 : 128);
  r.push_back(4);
  r.push_back(0);
  return r;
}

ModelConfig v4_flash() {
  ModelConfig c;
  c.name = "v4-flash";
  c.vocab_size = 129280;
  c.dim = 4096;
  c.moe_inter_dim = 2048;
  c.n_layers = 43;
  c.n_heads = 64;
  c.n_routed_experts = 256;
  c.n_activated_experts = 6;
  c.route_scale = 1.5;
  c.q_lora_rank = 1024;
  c.o_groups = 8;
  c.o_lora_rank = 1024;
  c.index_topk = 512;
  c.compress_ratios = released_ratios(43, 0);
  return c;
}

ModelConfig v4_pro() {
  ModelConfig c = v4_flash();
  c.name = "v4-pro";
  c.dim = 7168;
  c.moe_inter_dim = 3072;
  c.n_layers = 61;
  c.n_heads = 128;
  c.n_routed_experts = 384;
  c.route_scale = 2.5;
  c.q_lora_rank = 1536;
  c.o_groups = 16;
  c.index_topk = 1024;
  c.compress_ratios = released_ratios(61, 128);
  return c;
}

// spec 00 §0.7.
ModelConfig tiny() {
  ModelConfig c;
  c.name = "tiny";
  c.max_batch_size = 2;
  c.max_seq_len = 512;
  c.vocab_size = 1024;
  c.dim = 256;
  c.moe_inter_dim = 128;
  c.n_layers = 6;
  c.n_hash_layers = 3;
  c.n_heads = 8;
  c.n_routed_experts = 8;
  c.n_activated_experts = 2;
  c.route_scale = 2.5;
  c.q_lora_rank = 128;
  c.head_dim = 128;
  c.rope_head_dim = 64;
  c.o_groups = 2;
  c.o_lora_rank = 128;
  c.window_size = 16;
  c.compress_ratios = {0, 128, 4, 128, 4, 0, 0};
  c.index_n_heads = 4;
  c.index_head_dim = 128;
  c.index_topk = 8;
  return c;
}

// The real attention dimensions of a released model in a 3-layer model (SWA, CSA, HCA + SWA MTP)
// with a small vocabulary and 8 experts, so that one layer fits a CPU reference run.
ModelConfig slice_of(const ModelConfig& full, const std::string& name) {
  ModelConfig c = full;
  c.name = name;
  c.max_batch_size = 1;
  c.max_seq_len = 8192;
  c.vocab_size = 4096;
  c.n_layers = 3;
  c.n_hash_layers = 1;
  c.n_routed_experts = 8;
  c.compress_ratios = {0, 4, 128, 0};
  return c;
}

}  // namespace

const std::vector<std::string>& builtin_config_names() {
  static const std::vector<std::string> names{"tiny", "tiny16", "flash-slice", "pro-slice", "v4-flash", "v4-pro"};
  return names;
}

ModelConfig builtin_config(std::string_view name) {
  if (name == "tiny") return tiny();
  if (name == "tiny16") {
    ModelConfig c = tiny();
    c.name = "tiny16";
    c.n_heads = 16;
    return c;
  }
  if (name == "flash-slice") return slice_of(v4_flash(), "flash-slice");
  if (name == "pro-slice") return slice_of(v4_pro(), "pro-slice");
  if (name == "v4-flash") return v4_flash();
  if (name == "v4-pro") return v4_pro();
  throw std::invalid_argument("unknown built-in config '" + std::string(name) + "'");
}

namespace {

using nlohmann::json;

template <class T>
void read_field(const json& j, const char* key, T& out) {
  if (!j.contains(key)) return;
  try {
    out = j.at(key).get<T>();
  } catch (const json::exception& e) {
    throw ConfigError(key, std::string("wrong type: ") + e.what());
  }
}

}  // namespace

// Official inference keys (ModelArgs) take precedence; Hugging Face keys are mapped as in
// spec 00 §0.5.1.
ModelConfig parse_config_json(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw ConfigError("<file>", source + " is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw ConfigError("<file>", source + " is not a JSON object");
  ModelConfig c;
  c.name = source;
  // Hugging Face names first.
  read_field(j, "hidden_size", c.dim);
  read_field(j, "moe_intermediate_size", c.moe_inter_dim);
  read_field(j, "num_hidden_layers", c.n_layers);
  read_field(j, "num_hash_layers", c.n_hash_layers);
  read_field(j, "num_nextn_predict_layers", c.n_mtp_layers);
  read_field(j, "num_attention_heads", c.n_heads);
  read_field(j, "num_experts_per_tok", c.n_activated_experts);
  read_field(j, "routed_scaling_factor", c.route_scale);
  read_field(j, "qk_rope_head_dim", c.rope_head_dim);
  read_field(j, "sliding_window", c.window_size);
  read_field(j, "rms_norm_eps", c.norm_eps);
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const json& rs = j["rope_scaling"];
    read_field(rs, "factor", c.rope_factor);
    read_field(rs, "original_max_position_embeddings", c.original_seq_len);
    read_field(rs, "beta_fast", c.beta_fast);
    read_field(rs, "beta_slow", c.beta_slow);
  }
  // Official inference names.
  read_field(j, "max_batch_size", c.max_batch_size);
  read_field(j, "max_seq_len", c.max_seq_len);
  read_field(j, "vocab_size", c.vocab_size);
  read_field(j, "dim", c.dim);
  read_field(j, "moe_inter_dim", c.moe_inter_dim);
  read_field(j, "n_layers", c.n_layers);
  read_field(j, "n_hash_layers", c.n_hash_layers);
  read_field(j, "n_mtp_layers", c.n_mtp_layers);
  read_field(j, "n_heads", c.n_heads);
  read_field(j, "n_routed_experts", c.n_routed_experts);
  read_field(j, "n_shared_experts", c.n_shared_experts);
  read_field(j, "n_activated_experts", c.n_activated_experts);
  read_field(j, "route_scale", c.route_scale);
  read_field(j, "swiglu_limit", c.swiglu_limit);
  read_field(j, "q_lora_rank", c.q_lora_rank);
  read_field(j, "head_dim", c.head_dim);
  read_field(j, "rope_head_dim", c.rope_head_dim);
  read_field(j, "o_groups", c.o_groups);
  read_field(j, "o_lora_rank", c.o_lora_rank);
  read_field(j, "window_size", c.window_size);
  read_field(j, "compress_ratios", c.compress_ratios);
  read_field(j, "rope_theta", c.rope_theta);
  read_field(j, "compress_rope_theta", c.compress_rope_theta);
  read_field(j, "rope_factor", c.rope_factor);
  read_field(j, "original_seq_len", c.original_seq_len);
  read_field(j, "beta_fast", c.beta_fast);
  read_field(j, "beta_slow", c.beta_slow);
  read_field(j, "index_n_heads", c.index_n_heads);
  read_field(j, "index_head_dim", c.index_head_dim);
  read_field(j, "index_topk", c.index_topk);
  read_field(j, "hc_mult", c.hc_mult);
  read_field(j, "hc_sinkhorn_iters", c.hc_sinkhorn_iters);
  read_field(j, "hc_eps", c.hc_eps);
  read_field(j, "norm_eps", c.norm_eps);
  read_field(j, "dtype", c.dtype);
  read_field(j, "expert_dtype", c.expert_dtype);
  std::string score;
  read_field(j, "scoring_func", score);
  read_field(j, "score_func", score);
  if (!score.empty()) {
    if (score == "softmax")
      c.score_func = ScoreFunc::kSoftmax;
    else if (score == "sigmoid")
      c.score_func = ScoreFunc::kSigmoid;
    else if (score == "sqrtsoftplus")
      c.score_func = ScoreFunc::kSqrtSoftplus;
    else
      throw ConfigError("score_func", "unknown scoring function '" + score + "'");
  }
  if (j.contains("scale_fmt")) {
    if (j["scale_fmt"].is_null())
      c.scale_fmt.clear();
    else
      read_field(j, "scale_fmt", c.scale_fmt);
  }
  validate_config(c);
  return c;
}

ModelConfig load_config(const std::string& name_or_path) {
  for (const auto& n : builtin_config_names()) {
    if (n == name_or_path) return builtin_config(n);
  }
  std::ifstream in(name_or_path, std::ios::binary);
  if (!in) {
    std::string names;
    for (const auto& n : builtin_config_names()) names += (names.empty() ? "" : ", ") + n;
    throw ConfigError("<file>",
                      "'" + name_or_path + "' is neither a built-in config (" + names + ") nor a readable file");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_config_json(ss.str(), name_or_path);
}

namespace {
void require(bool ok, const char* field, const std::string& why) {
  if (!ok) throw ConfigError(field, why);
}
bool power_of_two(std::int64_t v) { return v > 0 && (v & (v - 1)) == 0; }
}  // namespace

void validate_config(const ModelConfig& c) {
  const auto s = [](std::int64_t v) { return std::to_string(v); };
  require(c.vocab_size > 0, "vocab_size", "must be positive, got " + s(c.vocab_size));
  require(c.dim > 0 && c.dim % 128 == 0, "dim",
          "must be a positive multiple of 128 (act_quant block), got " + s(c.dim));
  require(c.n_layers > 0, "n_layers", "must be positive, got " + s(c.n_layers));
  require(c.n_mtp_layers >= 0, "n_mtp_layers", "must be non-negative");
  require(c.n_hash_layers >= 0 && c.n_hash_layers <= c.n_layers, "n_hash_layers", "must be in [0, n_layers]");
  require(c.n_heads > 0, "n_heads", "must be positive");
  require(c.head_dim > c.rope_head_dim && c.rope_head_dim > 0 && c.rope_head_dim % 2 == 0, "rope_head_dim",
          "must be even, positive and smaller than head_dim");
  require((c.head_dim - c.rope_head_dim) % 64 == 0, "head_dim",
          "head_dim - rope_head_dim must be a multiple of 64 (KV fp8 block), got " + s(c.head_dim - c.rope_head_dim));
  require(c.q_lora_rank > 0 && c.q_lora_rank % 128 == 0, "q_lora_rank",
          "must be a positive multiple of 128, got " + s(c.q_lora_rank));
  require(c.o_groups > 0 && c.n_heads % c.o_groups == 0, "o_groups", "must divide n_heads");
  require(c.o_lora_rank > 0 && (c.o_groups * c.o_lora_rank) % 128 == 0, "o_lora_rank",
          "o_groups * o_lora_rank must be a positive multiple of 128 (wo_b input)");
  require((c.n_heads * c.head_dim / c.o_groups) % 128 == 0, "head_dim",
          "n_heads*head_dim/o_groups must be a multiple of 128");
  require(c.window_size > 0, "window_size", "must be positive");
  require(static_cast<std::int64_t>(c.compress_ratios.size()) == c.n_layers + c.n_mtp_layers, "compress_ratios",
          "needs n_layers + n_mtp_layers = " + s(c.n_layers + c.n_mtp_layers) + " entries, got " +
              s(static_cast<std::int64_t>(c.compress_ratios.size())));
  for (std::int64_t r : c.compress_ratios) {
    require(r == 0 || r == 4 || r == 128, "compress_ratios", "entries must be 0, 4 or 128, got " + s(r));
  }
  require(c.index_n_heads > 0, "index_n_heads", "must be positive");
  require(power_of_two(c.index_head_dim) && c.index_head_dim % 32 == 0 && c.index_head_dim > c.rope_head_dim,
          "index_head_dim",
          "must be a power of two (Hadamard), a multiple of 32 (fp4 block) and larger than rope_head_dim, got " +
              s(c.index_head_dim));
  require(c.index_topk > 0, "index_topk", "must be positive");
  require(c.n_routed_experts > 0, "n_routed_experts", "must be positive");
  require(c.n_activated_experts > 0 && c.n_activated_experts <= c.n_routed_experts, "n_activated_experts",
          "must be in [1, n_routed_experts]");
  require(c.n_shared_experts == 1, "n_shared_experts", "the official code asserts exactly 1");
  require(c.moe_inter_dim > 0 && c.moe_inter_dim % 128 == 0, "moe_inter_dim",
          "must be a positive multiple of 128, got " + s(c.moe_inter_dim));
  require(c.hc_mult > 0, "hc_mult", "must be positive");
  require(c.hc_sinkhorn_iters >= 1, "hc_sinkhorn_iters", "must be at least 1");
  require(c.max_seq_len > 0, "max_seq_len", "must be positive");
  require(c.max_batch_size > 0, "max_batch_size", "must be positive");
  require(c.rope_theta > 0 && c.compress_rope_theta > 0, "rope_theta", "must be positive");
  require(c.original_seq_len >= 0, "original_seq_len", "must be non-negative");
  require(c.dtype == "fp8" || c.dtype == "bf16", "dtype", "must be \"fp8\" or \"bf16\"");
  require(c.expert_dtype == "fp4" || c.expert_dtype == "fp8" || c.expert_dtype == "bf16", "expert_dtype",
          "must be \"fp4\", \"fp8\" or \"bf16\"");
}

}  // namespace dsv4
