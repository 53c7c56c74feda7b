// spec 00 §0.5 (V4-Pro / V4-Flash hyper-parameters) and §0.7 (tiny test configuration).
#include "dsv4/config/model_config.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
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

// ---- config.json (spec 00 §0.5.4: which keys are required, the official defaults, the ranges) ----

// A config.json is a few kilobytes; nothing larger is read, and nothing nests deeper than
// quantization_config.weight_block_size (depth 3).
constexpr std::uintmax_t kMaxConfigBytes = std::uintmax_t{1} << 20;
constexpr int kMaxConfigDepth = 3;

// Parses refusing duplicate keys (nlohmann keeps the last one silently) and nesting deeper than a
// config has — the same rules as oracle/io's strict_json, through nlohmann's parser callback.
json parse_strict(const std::string& text, const std::string& source) {
  std::vector<std::set<std::string>> keys;  // per open container (arrays hold an unused set)
  std::vector<std::string> path;
  std::string last_key;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxConfigDepth)
          throw ConfigError(last_key.empty() ? "<file>" : last_key, source + ": nested deeper than a config.json (" +
                                                                        std::to_string(kMaxConfigDepth) + " levels)");
        keys.emplace_back();
        path.push_back(last_key);
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!keys.empty()) keys.pop_back();
        if (!path.empty()) path.pop_back();
        break;
      case json::parse_event_t::key:
        last_key = parsed.get<std::string>();
        if (!keys.empty() && !keys.back().insert(last_key).second) {
          std::string where;
          for (std::size_t i = 1; i < path.size(); ++i) where += path[i] + ".";
          throw ConfigError(where + last_key, source + ": duplicate key (JSON leaves its meaning undefined)");
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    std::string what = e.what();
    if (const auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    throw ConfigError("<file>", source + " is not valid JSON: " + what);
  }
}

// Ranges (spec 00 §0.5.4): every count and size is bounded so that no product of them overflows
// 64 bits and a hostile value is refused before any work; the released models sit far inside.
struct IntRange {
  std::int64_t lo, hi;
};

std::int64_t as_int(const json& v, const std::string& key, IntRange r) {
  if (!v.is_number_integer())
    throw ConfigError(key, std::string("must be an integer, got ") +
                               (v.is_number() ? "the non-integer " + v.dump() : std::string(v.type_name())));
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(r.hi))
    throw ConfigError(key, v.dump() + " is outside [" + std::to_string(r.lo) + ", " + std::to_string(r.hi) + "]");
  const std::int64_t x = v.get<std::int64_t>();
  if (x < r.lo || x > r.hi)
    throw ConfigError(key,
                      std::to_string(x) + " is outside [" + std::to_string(r.lo) + ", " + std::to_string(r.hi) + "]");
  return x;
}

double as_real(const json& v, const std::string& key) {
  if (!v.is_number()) throw ConfigError(key, std::string("must be a number, got ") + v.type_name());
  const double x = v.get<double>();
  if (!std::isfinite(x)) throw ConfigError(key, "must be finite");
  return x;
}

std::string as_string(const json& v, const std::string& key) {
  if (!v.is_string()) throw ConfigError(key, std::string("must be a string, got ") + v.type_name());
  return v.get<std::string>();
}

constexpr std::int64_t k2p(int e) { return std::int64_t{1} << e; }

// One ModelArgs field: its official key, the Hugging Face key that means the same (or nullptr),
// whether it is required, and how it is read.
struct Field {
  const char* key;
  const char* hf_key;
  bool required;
  std::function<void(const json&, ModelConfig&)> read;
};

template <std::int64_t ModelConfig::*M>
Field int_field(const char* key, const char* hf, bool required, IntRange r) {
  return {key, hf, required, [key, r](const json& v, ModelConfig& c) { c.*M = as_int(v, key, r); }};
}
template <double ModelConfig::*M>
Field real_field(const char* key, const char* hf) {
  return {key, hf, false, [key](const json& v, ModelConfig& c) { c.*M = as_real(v, key); }};
}

// Every ModelArgs field of the official inference code (model.py at 0ec3a03), in its order. A
// required field sets the shape of checkpoint tensors and its ModelArgs default is a placeholder
// of the debug model (spec 00 §0.5.2); the others take the official default when absent or null.
const std::vector<Field>& fields() {
  static const std::vector<Field> f{
      int_field<&ModelConfig::max_batch_size>("max_batch_size", nullptr, false, {1, k2p(12)}),
      int_field<&ModelConfig::max_seq_len>("max_seq_len", nullptr, false, {1, k2p(24)}),
      {"dtype", nullptr, false, [](const json& v, ModelConfig& c) { c.dtype = as_string(v, "dtype"); }},
      // scale_fmt, scale_dtype and expert_dtype are resolved after the loop (they interact).
      {"scale_fmt", nullptr, false, [](const json&, ModelConfig&) {}},
      {"expert_dtype", nullptr, false, [](const json&, ModelConfig&) {}},
      {"scale_dtype", nullptr, false, [](const json&, ModelConfig&) {}},
      int_field<&ModelConfig::vocab_size>("vocab_size", nullptr, true, {1, k2p(24)}),
      int_field<&ModelConfig::dim>("dim", "hidden_size", true, {1, k2p(16)}),
      int_field<&ModelConfig::moe_inter_dim>("moe_inter_dim", "moe_intermediate_size", true, {1, k2p(16)}),
      int_field<&ModelConfig::n_layers>("n_layers", "num_hidden_layers", true, {1, 1024}),
      int_field<&ModelConfig::n_hash_layers>("n_hash_layers", "num_hash_layers", false, {0, 1024}),
      int_field<&ModelConfig::n_mtp_layers>("n_mtp_layers", "num_nextn_predict_layers", false, {0, 16}),
      int_field<&ModelConfig::n_heads>("n_heads", "num_attention_heads", true, {1, 1024}),
      int_field<&ModelConfig::n_routed_experts>("n_routed_experts", nullptr, true, {1, 4096}),
      int_field<&ModelConfig::n_shared_experts>("n_shared_experts", nullptr, false, {0, 4096}),
      int_field<&ModelConfig::n_activated_experts>("n_activated_experts", "num_experts_per_tok", true, {1, 4096}),
      {"score_func", "scoring_func", false,
       [](const json& v, ModelConfig& c) {
         const std::string s = as_string(v, "score_func");
         if (s == "softmax")
           c.score_func = ScoreFunc::kSoftmax;
         else if (s == "sigmoid")
           c.score_func = ScoreFunc::kSigmoid;
         else if (s == "sqrtsoftplus")
           c.score_func = ScoreFunc::kSqrtSoftplus;
         else
           throw ConfigError("score_func", "unknown scoring function '" + s + "' (softmax, sigmoid, sqrtsoftplus)");
       }},
      real_field<&ModelConfig::route_scale>("route_scale", "routed_scaling_factor"),
      real_field<&ModelConfig::swiglu_limit>("swiglu_limit", nullptr),
      int_field<&ModelConfig::q_lora_rank>("q_lora_rank", nullptr, true, {1, k2p(16)}),
      int_field<&ModelConfig::head_dim>("head_dim", nullptr, true, {1, 4096}),
      int_field<&ModelConfig::rope_head_dim>("rope_head_dim", "qk_rope_head_dim", true, {1, 4096}),
      real_field<&ModelConfig::norm_eps>("norm_eps", "rms_norm_eps"),
      int_field<&ModelConfig::o_groups>("o_groups", nullptr, true, {1, 1024}),
      int_field<&ModelConfig::o_lora_rank>("o_lora_rank", nullptr, true, {1, k2p(16)}),
      int_field<&ModelConfig::window_size>("window_size", "sliding_window", false, {1, k2p(20)}),
      {"compress_ratios", nullptr, true,
       [](const json& v, ModelConfig& c) {
         if (!v.is_array()) throw ConfigError("compress_ratios", std::string("must be an array, got ") + v.type_name());
         if (v.size() > 2048) throw ConfigError("compress_ratios", "has more than 2048 entries");
         c.compress_ratios.clear();
         for (const json& e : v) c.compress_ratios.push_back(as_int(e, "compress_ratios", {0, 128}));
       }},
      real_field<&ModelConfig::compress_rope_theta>("compress_rope_theta", nullptr),
      int_field<&ModelConfig::original_seq_len>("original_seq_len", nullptr, false, {0, k2p(24)}),
      real_field<&ModelConfig::rope_theta>("rope_theta", nullptr),
      real_field<&ModelConfig::rope_factor>("rope_factor", nullptr),
      real_field<&ModelConfig::beta_fast>("beta_fast", nullptr),
      real_field<&ModelConfig::beta_slow>("beta_slow", nullptr),
      int_field<&ModelConfig::index_n_heads>("index_n_heads", nullptr, true, {1, 1024}),
      int_field<&ModelConfig::index_head_dim>("index_head_dim", nullptr, true, {1, 4096}),
      int_field<&ModelConfig::index_topk>("index_topk", nullptr, false, {1, k2p(20)}),
      int_field<&ModelConfig::hc_mult>("hc_mult", nullptr, false, {1, 16}),
      int_field<&ModelConfig::hc_sinkhorn_iters>("hc_sinkhorn_iters", nullptr, false, {1, 1000}),
      real_field<&ModelConfig::hc_eps>("hc_eps", nullptr),
  };
  return f;
}

// The official ModelArgs defaults (model.py at 0ec3a03) of the optional fields.
ModelConfig official_defaults() {
  ModelConfig c;
  c.max_batch_size = 4;
  c.max_seq_len = 4096;
  c.dtype = "fp8";
  c.scale_fmt = "ue8m0";
  c.n_hash_layers = 0;
  c.n_mtp_layers = 1;
  c.n_shared_experts = 1;
  c.score_func = ScoreFunc::kSqrtSoftplus;
  c.route_scale = 1.0;
  c.swiglu_limit = 0.0;
  c.norm_eps = 1e-6;
  c.window_size = 128;
  c.compress_rope_theta = 40000.0;
  c.original_seq_len = 0;
  c.rope_theta = 10000.0;
  c.rope_factor = 40.0;
  c.beta_fast = 32.0;
  c.beta_slow = 1.0;
  c.index_topk = 512;
  c.hc_mult = 4;
  c.hc_sinkhorn_iters = 20;
  c.hc_eps = 1e-6;
  return c;
}

// Hugging Face keys that the inference code does not read (spec 00 §0.5.1, "—" and parenthesised
// rows): accepted and ignored, except the four that would describe another architecture.
const std::set<std::string>& hf_ignored_keys() {
  static const std::set<std::string> k{"architectures",
                                       "model_type",
                                       "attention_dropout",
                                       "bos_token_id",
                                       "eos_token_id",
                                       "initializer_range",
                                       "max_position_embeddings",
                                       "norm_topk_prob",
                                       "quantization_config",
                                       "topk_method",
                                       "torch_dtype",
                                       "transformers_version",
                                       "use_cache"};
  return k;
}

bool same_rope_field(const ModelConfig& a, const ModelConfig& b, const std::string& key) {
  if (key == "rope_factor") return a.rope_factor == b.rope_factor;
  if (key == "original_seq_len") return a.original_seq_len == b.original_seq_len;
  if (key == "beta_fast") return a.beta_fast == b.beta_fast;
  return a.beta_slow == b.beta_slow;
}

void check_hf_fixed(const json& j) {
  const auto fixed = [&](const char* key, const json& want, const char* why) {
    if (!j.contains(key) || j.at(key).is_null()) return;
    if (j.at(key) != want) throw ConfigError(key, "must be " + want.dump() + " (" + why + "), got " + j.at(key).dump());
  };
  fixed("attention_bias", false, "the V4 linears have no bias");
  fixed("num_key_value_heads", 1, "V4 attention has one shared KV head");
  fixed("tie_word_embeddings", false, "V4 has separate embed and head weights");
  fixed("hidden_act", "silu", "the V4 experts are SwiGLU");
}

void read_rope_scaling(const json& rs, ModelConfig& c, std::set<std::string>& given) {
  if (rs.is_null()) return;
  if (!rs.is_object()) throw ConfigError("rope_scaling", std::string("must be an object, got ") + rs.type_name());
  const std::map<std::string, std::string> names{{"factor", "rope_factor"},
                                                 {"original_max_position_embeddings", "original_seq_len"},
                                                 {"beta_fast", "beta_fast"},
                                                 {"beta_slow", "beta_slow"}};
  for (const auto& [k, v] : rs.items()) {
    if (k == "type") {
      if (!v.is_null() && v != "yarn") throw ConfigError("rope_scaling.type", "must be \"yarn\", got " + v.dump());
      continue;
    }
    const auto it = names.find(k);
    if (it == names.end())
      throw ConfigError("rope_scaling." + k,
                        "unknown key (rope_scaling holds type, factor, "
                        "original_max_position_embeddings, beta_fast, beta_slow)");
    if (v.is_null()) continue;
    const std::string& field = it->second;
    if (field == "original_seq_len")
      c.original_seq_len = as_int(v, "rope_scaling." + k, {0, k2p(24)});
    else if (field == "rope_factor")
      c.rope_factor = as_real(v, "rope_scaling." + k);
    else if (field == "beta_fast")
      c.beta_fast = as_real(v, "rope_scaling." + k);
    else
      c.beta_slow = as_real(v, "rope_scaling." + k);
    given.insert(field);
  }
}

}  // namespace

// spec 00 §0.5.4: official inference keys (ModelArgs) or their Hugging Face spellings (§0.5.1).
ModelConfig parse_config_json(const std::string& json_text, const std::string& source) {
  const json j = parse_strict(json_text, source);
  if (!j.is_object()) throw ConfigError("<file>", source + " is not a JSON object");
  ModelConfig c = official_defaults();
  c.name = source;
  std::set<std::string> known{"dsv4_name",           "rope_scaling",        "attention_bias",
                              "num_key_value_heads", "tie_word_embeddings", "hidden_act"};
  std::set<std::string> given;  // official field names given a non-null value
  // rope_scaling first: the official keys of the same fields must then agree with it.
  ModelConfig from_rope = c;
  if (j.contains("rope_scaling")) read_rope_scaling(j.at("rope_scaling"), from_rope, given);
  c.rope_factor = from_rope.rope_factor;
  c.original_seq_len = from_rope.original_seq_len;
  c.beta_fast = from_rope.beta_fast;
  c.beta_slow = from_rope.beta_slow;
  for (const Field& f : fields()) {
    known.insert(f.key);
    if (f.hf_key != nullptr) known.insert(f.hf_key);
    const json* official = j.contains(f.key) && !j.at(f.key).is_null() ? &j.at(f.key) : nullptr;
    const json* hf =
        f.hf_key != nullptr && j.contains(f.hf_key) && !j.at(f.hf_key).is_null() ? &j.at(f.hf_key) : nullptr;
    if (official != nullptr && hf != nullptr && *official != *hf)
      throw ConfigError(f.key, "given as both '" + std::string(f.key) + "' = " + official->dump() + " and '" +
                                   f.hf_key + "' = " + hf->dump());
    const json* v = official != nullptr ? official : hf;
    if (v == nullptr) {
      if (f.required && !given.contains(f.key))
        throw ConfigError(f.key,
                          "missing: a required key (it sets the shape of checkpoint tensors; only the keys "
                          "listed in spec 00 §0.5.4 as optional take the official defaults)");
      continue;
    }
    if (given.contains(f.key)) {
      ModelConfig check = c;
      f.read(*v, check);
      if (!same_rope_field(check, c, f.key))
        throw ConfigError(f.key, "given both at the top level and in rope_scaling, with different values");
    }
    f.read(*v, c);
    given.insert(f.key);
  }
  // dtype-dependent fields (Transformer.__init__ of the official code): expert_dtype None means
  // the experts take the default Linear dtype; scale_dtype "fp8" forces scale_fmt "ue8m0".
  const auto opt_string = [&](const char* key) -> std::optional<std::string> {
    if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
    return as_string(j.at(key), key);
  };
  const std::optional<std::string> expert_dtype = opt_string("expert_dtype");
  c.expert_dtype = expert_dtype ? *expert_dtype : c.dtype;
  const std::string scale_dtype = opt_string("scale_dtype").value_or("fp8");
  if (scale_dtype != "fp8" && scale_dtype != "fp32")
    throw ConfigError("scale_dtype", "must be \"fp8\" or \"fp32\", got \"" + scale_dtype + "\"");
  const bool scale_fmt_given = j.contains("scale_fmt");
  const std::optional<std::string> scale_fmt = opt_string("scale_fmt");
  if (scale_fmt && *scale_fmt != "ue8m0")
    throw ConfigError("scale_fmt", "must be \"ue8m0\" or null, got \"" + *scale_fmt + "\"");
  if (scale_dtype == "fp8")
    c.scale_fmt = "ue8m0";
  else
    c.scale_fmt = scale_fmt_given ? scale_fmt.value_or("") : "ue8m0";
  if (j.contains("dsv4_name") && !j.at("dsv4_name").is_null()) c.name = as_string(j.at("dsv4_name"), "dsv4_name");
  check_hf_fixed(j);
  for (const auto& [k, v] : j.items()) {
    (void)v;
    if (!known.contains(k) && !hf_ignored_keys().contains(k))
      throw ConfigError(k,
                        "unknown key (not a ModelArgs field, a mapped Hugging Face key or one of the Hugging Face "
                        "keys spec 00 §0.5.4 lists as ignored)");
  }
  // The official code indexes compress_ratios by layer id and ignores entries past the MTP blocks.
  const std::int64_t used = c.n_layers + c.n_mtp_layers;
  if (static_cast<std::int64_t>(c.compress_ratios.size()) > used)
    c.compress_ratios.resize(static_cast<std::size_t>(used));
  validate_config(c);
  return c;
}

ModelConfig load_config(const std::string& name_or_path) {
  for (const auto& n : builtin_config_names()) {
    if (n == name_or_path) return builtin_config(n);
  }
  std::string names;
  for (const auto& n : builtin_config_names()) names += (names.empty() ? "" : ", ") + n;
  // Look before opening: opening a FIFO blocks until a writer comes.
  std::error_code ec;
  const auto st = std::filesystem::status(name_or_path, ec);
  if (ec || !std::filesystem::exists(st))
    throw ConfigError("<file>",
                      "'" + name_or_path + "' is neither a built-in config (" + names + ") nor a readable file");
  if (!std::filesystem::is_regular_file(st))
    throw ConfigError("<file>", "'" + name_or_path + "' is not a regular file (a config.json is expected)");
  const auto size = std::filesystem::file_size(name_or_path, ec);
  if (ec || size > kMaxConfigBytes)
    throw ConfigError("<file>", "'" + name_or_path + "' is larger than a config.json (" +
                                    std::to_string(kMaxConfigBytes) + " bytes at most)");
  std::ifstream in(name_or_path, std::ios::binary);
  if (!in)
    throw ConfigError("<file>",
                      "'" + name_or_path + "' is neither a built-in config (" + names + ") nor a readable file");
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
  // Ranges first (spec 00 §0.5.4): after them no product of two sizes overflows 64 bits.
  const auto in = [&](std::int64_t v, std::int64_t lo, std::int64_t hi, const char* field) {
    require(v >= lo && v <= hi, field, s(v) + " is outside [" + s(lo) + ", " + s(hi) + "]");
  };
  in(c.max_batch_size, 1, k2p(12), "max_batch_size");
  in(c.max_seq_len, 1, k2p(24), "max_seq_len");
  in(c.vocab_size, 1, k2p(24), "vocab_size");
  in(c.dim, 1, k2p(16), "dim");
  in(c.moe_inter_dim, 1, k2p(16), "moe_inter_dim");
  in(c.n_layers, 1, 1024, "n_layers");
  in(c.n_mtp_layers, 0, 16, "n_mtp_layers");
  in(c.n_heads, 1, 1024, "n_heads");
  in(c.n_routed_experts, 1, 4096, "n_routed_experts");
  in(c.q_lora_rank, 1, k2p(16), "q_lora_rank");
  in(c.head_dim, 1, 4096, "head_dim");
  in(c.rope_head_dim, 1, 4096, "rope_head_dim");
  in(c.o_groups, 1, 1024, "o_groups");
  in(c.o_lora_rank, 1, k2p(16), "o_lora_rank");
  in(c.window_size, 1, k2p(20), "window_size");
  in(c.original_seq_len, 0, k2p(24), "original_seq_len");
  in(c.index_n_heads, 1, 1024, "index_n_heads");
  in(c.index_head_dim, 1, 4096, "index_head_dim");
  in(c.index_topk, 1, k2p(20), "index_topk");
  in(c.hc_mult, 1, 16, "hc_mult");
  in(c.hc_sinkhorn_iters, 1, 1000, "hc_sinkhorn_iters");
  require(c.dim % 128 == 0, "dim", "must be a multiple of 128 (act_quant block), got " + s(c.dim));
  require(c.n_hash_layers >= 0 && c.n_hash_layers <= c.n_layers, "n_hash_layers", "must be in [0, n_layers]");
  require(c.head_dim > c.rope_head_dim && c.rope_head_dim % 2 == 0, "rope_head_dim",
          "must be even and smaller than head_dim");
  require((c.head_dim - c.rope_head_dim) % 64 == 0, "head_dim",
          "head_dim - rope_head_dim must be a multiple of 64 (KV fp8 block), got " + s(c.head_dim - c.rope_head_dim));
  require(c.q_lora_rank % 128 == 0, "q_lora_rank",
          "must be a multiple of 128 (act_quant block), got " + s(c.q_lora_rank));
  require(c.n_heads % c.o_groups == 0, "o_groups", "must divide n_heads");
  require((c.o_groups * c.o_lora_rank) % 128 == 0, "o_lora_rank",
          "o_groups * o_lora_rank must be a multiple of 128 (wo_b input)");
  require((c.n_heads * c.head_dim / c.o_groups) % 128 == 0, "head_dim",
          "n_heads*head_dim/o_groups must be a multiple of 128");
  require(static_cast<std::int64_t>(c.compress_ratios.size()) == c.n_layers + c.n_mtp_layers, "compress_ratios",
          "needs n_layers + n_mtp_layers = " + s(c.n_layers + c.n_mtp_layers) + " entries, got " +
              s(static_cast<std::int64_t>(c.compress_ratios.size())));
  for (std::int64_t r : c.compress_ratios) {
    require(r == 0 || r == 4 || r == 128, "compress_ratios", "entries must be 0, 4 or 128, got " + s(r));
  }
  // index_head_dim = rope_head_dim is valid: the official Indexer then rotates every dim.
  require(power_of_two(c.index_head_dim) && c.index_head_dim % 32 == 0 && c.index_head_dim >= c.rope_head_dim,
          "index_head_dim",
          "must be a power of two (Hadamard), a multiple of 32 (fp4 block) and at least rope_head_dim, got " +
              s(c.index_head_dim));
  require(c.n_activated_experts > 0 && c.n_activated_experts <= c.n_routed_experts, "n_activated_experts",
          "must be in [1, n_routed_experts]");
  require(c.n_shared_experts == 1, "n_shared_experts", "the official code asserts exactly 1");
  require(c.moe_inter_dim % 128 == 0, "moe_inter_dim", "must be a multiple of 128, got " + s(c.moe_inter_dim));
  const auto finite = [&](double v, const char* field) { require(std::isfinite(v), field, "must be finite"); };
  finite(c.route_scale, "route_scale");
  finite(c.swiglu_limit, "swiglu_limit");
  require(std::isfinite(c.rope_theta) && c.rope_theta > 1.0, "rope_theta",
          "must be finite and > 1 (the YaRN correction range divides by ln(rope_theta))");
  require(std::isfinite(c.compress_rope_theta) && c.compress_rope_theta > 1.0, "compress_rope_theta",
          "must be finite and > 1 (the YaRN correction range divides by ln(compress_rope_theta))");
  finite(c.rope_factor, "rope_factor");
  finite(c.beta_fast, "beta_fast");
  finite(c.beta_slow, "beta_slow");
  if (c.original_seq_len > 0) {
    require(c.rope_factor > 0.0, "rope_factor", "must be > 0 when original_seq_len > 0 (YaRN divides by it)");
    require(c.beta_fast > 0.0 && c.beta_slow > 0.0, "beta_fast",
            "beta_fast and beta_slow must be > 0 when original_seq_len > 0 (the official code takes log(L0 / (2π β)))");
  }
  require(std::isfinite(c.norm_eps) && c.norm_eps > 0.0, "norm_eps",
          "must be finite and > 0 (RMSNorm of the compressor's all-zero padding rows needs it)");
  require(std::isfinite(c.hc_eps) && c.hc_eps >= 0.0, "hc_eps", "must be finite and ≥ 0");
  require(c.dtype == "fp8" || c.dtype == "bf16", "dtype", "must be \"fp8\" or \"bf16\"");
  require(c.expert_dtype == "fp4" || c.expert_dtype == "fp8" || c.expert_dtype == "bf16", "expert_dtype",
          "must be \"fp4\", \"fp8\", \"bf16\" or null (the default Linear dtype)");
  require(c.scale_fmt == "ue8m0" || c.scale_fmt.empty(), "scale_fmt", "must be \"ue8m0\" or empty (fp32 scales)");
}

}  // namespace dsv4
