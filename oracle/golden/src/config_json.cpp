// spec 00 §0.5.2: ModelArgs keys, written in declaration order.
#include "dsv4/golden/config_json.hpp"

#include <nlohmann/json.hpp>

namespace dsv4 {

namespace {

const char* score_func_name(ScoreFunc f) {
  switch (f) {
    case ScoreFunc::kSoftmax:
      return "softmax";
    case ScoreFunc::kSigmoid:
      return "sigmoid";
    case ScoreFunc::kSqrtSoftplus:
      return "sqrtsoftplus";
  }
  return "?";
}

// Every field in one list so that writing and comparing can never disagree.
template <class F>
void each_field(const ModelConfig& c, F&& f) {
  f("max_batch_size", c.max_batch_size);
  f("max_seq_len", c.max_seq_len);
  f("vocab_size", c.vocab_size);
  f("dim", c.dim);
  f("moe_inter_dim", c.moe_inter_dim);
  f("n_layers", c.n_layers);
  f("n_hash_layers", c.n_hash_layers);
  f("n_mtp_layers", c.n_mtp_layers);
  f("n_heads", c.n_heads);
  f("n_routed_experts", c.n_routed_experts);
  f("n_shared_experts", c.n_shared_experts);
  f("n_activated_experts", c.n_activated_experts);
  f("score_func", std::string(score_func_name(c.score_func)));
  f("route_scale", c.route_scale);
  f("swiglu_limit", c.swiglu_limit);
  f("q_lora_rank", c.q_lora_rank);
  f("head_dim", c.head_dim);
  f("rope_head_dim", c.rope_head_dim);
  f("o_groups", c.o_groups);
  f("o_lora_rank", c.o_lora_rank);
  f("window_size", c.window_size);
  f("compress_ratios", c.compress_ratios);
  f("rope_theta", c.rope_theta);
  f("compress_rope_theta", c.compress_rope_theta);
  f("rope_factor", c.rope_factor);
  f("original_seq_len", c.original_seq_len);
  f("beta_fast", c.beta_fast);
  f("beta_slow", c.beta_slow);
  f("index_n_heads", c.index_n_heads);
  f("index_head_dim", c.index_head_dim);
  f("index_topk", c.index_topk);
  f("hc_mult", c.hc_mult);
  f("hc_sinkhorn_iters", c.hc_sinkhorn_iters);
  f("hc_eps", c.hc_eps);
  f("norm_eps", c.norm_eps);
  f("dtype", c.dtype);
  f("scale_fmt", c.scale_fmt);
  f("expert_dtype", c.expert_dtype);
}

}  // namespace

std::string config_to_json(const ModelConfig& c) {
  nlohmann::ordered_json j;
  j["dsv4_name"] = c.name;
  each_field(c, [&](const char* key, const auto& v) { j[key] = v; });
  if (c.scale_fmt.empty()) {  // the official spelling of fp32 scales: scale_dtype "fp8" would force ue8m0
    j["scale_fmt"] = nullptr;
    j["scale_dtype"] = "fp32";
  }
  return j.dump();
}

bool same_model(const ModelConfig& a, const ModelConfig& b) {
  nlohmann::ordered_json ja, jb;
  each_field(a, [&](const char* key, const auto& v) { ja[key] = v; });
  each_field(b, [&](const char* key, const auto& v) { jb[key] = v; });
  return ja == jb;
}

}  // namespace dsv4
