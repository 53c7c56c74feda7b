// `dsv4 weights export|list`: the weights a golden is made with, as a checkpoint an outside engine
// loads, and the document of every checkpoint tensor (oracle/README.md §Checkpoints).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "commands.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/cli_guard.hpp"
#include "dsv4/golden/config_json.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/atomic_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/safetensors.hpp"
#include "dsv4/model/checkpoint.hpp"

namespace dsv4::cli {

namespace {

constexpr const char* kExportFooter = R"(
Example:
  dsv4 weights export --config tiny --seed 1 --naming official --out tiny-s1/
  dsv4 golden generate --config tiny --weights tiny-s1/model.safetensors --prompt-len 6 --decode-steps 2 --out g.h5

Writes the seeded synthetic weights that `dsv4 golden generate --seed S` (and `dsv4 run --seed S`)
use — ModelWeights::synthetic — as a checkpoint an engine can load:
  DIR/model.safetensors  every parameter in the published checkpoints' dtypes (spec 00 §0.6): FP8
                         E4M3 with E8M0 128x128 scales, packed FP4 experts with E8M0 1x32 scales
                         (official naming: F4 of the logical shape; hf: I8 bytes [n, k/2]), wo_a
                         in FP8 with its scale for hf as the published files (bf16 for official, as
                         the converted checkpoint), bf16 for the embedding, head, norm weights, gate,
                         weights_proj and the compressors' wkv/wgate, fp32 for hc_*, attn_sink, ape
                         and gate.bias, tid2eid int64; __metadata__ holds weights_content_sha256;
  DIR/config.json        the config in the official inference ModelArgs keys;
  DIR/hf_config.json     (--naming hf) the config in the Hugging Face config.json keys.
A golden generated from DIR/model.safetensors has datasets bit-identical to one generated with
--seed S, and records the same weights content SHA-256 (printed here). `dsv4 weights list` names
every tensor without writing any. Existing files are not replaced unless --force.
Exit status: 0 written; 2 bad input (nothing written).)";

constexpr const char* kListFooter = R"(
Example:
  dsv4 weights list --config v4-flash --naming hf --json

Every tensor of the config's checkpoint in the published dtypes — exactly what `dsv4 weights
export` writes (name, shape, dtype as safetensors codes; F4 shapes count 4-bit elements) — without
making any weights, so it is instant for the full-size configs. --markdown prints the table of
oracle/README.md: both namings side by side, the routed experts folded as experts.{0..E-1}.
Exit status: 0; 2 bad input.)";

CheckpointNaming naming_from(const std::string& s) {
  if (s == "official") return CheckpointNaming::kOfficial;
  if (s == "hf") return CheckpointNaming::kHuggingFace;
  throw InputError("--naming", "'" + s + "' is none of official, hf");
}

std::int64_t tensor_bytes(const CheckpointTensorInfo& t) {
  std::int64_t n = 1;
  for (const std::int64_t d : t.shape) n *= d;
  return n * static_cast<std::int64_t>(safetensors_dtype_bits(safetensors_dtype_code(t.dtype)).value_or(8)) / 8;
}

// The Hugging Face config.json of a config (spec 00 §0.5.1 keys; runtime-only ModelArgs fields
// such as max_batch_size are not Hugging Face keys).
std::string hf_config_json(const ModelConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {"DeepseekV4ForCausalLM"};
  j["model_type"] = "deepseek_v4";
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = 0;
  j["eos_token_id"] = 1;
  j["expert_dtype"] = c.expert_dtype;
  j["hc_eps"] = c.hc_eps;
  j["hc_mult"] = c.hc_mult;
  j["hc_sinkhorn_iters"] = c.hc_sinkhorn_iters;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.dim;
  j["index_head_dim"] = c.index_head_dim;
  j["index_n_heads"] = c.index_n_heads;
  j["index_topk"] = c.index_topk;
  j["max_position_embeddings"] = c.max_seq_len;
  j["moe_intermediate_size"] = c.moe_inter_dim;
  j["n_routed_experts"] = c.n_routed_experts;
  j["n_shared_experts"] = c.n_shared_experts;
  j["norm_topk_prob"] = true;
  j["num_attention_heads"] = c.n_heads;
  j["num_experts_per_tok"] = c.n_activated_experts;
  j["num_hidden_layers"] = c.n_layers;
  j["num_hash_layers"] = c.n_hash_layers;
  j["num_key_value_heads"] = 1;
  j["num_nextn_predict_layers"] = c.n_mtp_layers;
  j["o_groups"] = c.o_groups;
  j["o_lora_rank"] = c.o_lora_rank;
  j["q_lora_rank"] = c.q_lora_rank;
  j["qk_rope_head_dim"] = c.rope_head_dim;
  if (c.dtype == "fp8") {
    nlohmann::ordered_json q;
    q["activation_scheme"] = "dynamic";
    q["fmt"] = "e4m3";
    q["quant_method"] = "fp8";
    if (!c.scale_fmt.empty()) q["scale_fmt"] = c.scale_fmt;
    q["weight_block_size"] = {128, 128};
    j["quantization_config"] = q;
  }
  j["rms_norm_eps"] = c.norm_eps;
  j["rope_scaling"] = {{"type", "yarn"},
                       {"factor", c.rope_factor},
                       {"original_max_position_embeddings", c.original_seq_len},
                       {"beta_fast", c.beta_fast},
                       {"beta_slow", c.beta_slow}};
  j["rope_theta"] = c.rope_theta;
  j["compress_rope_theta"] = c.compress_rope_theta;
  j["routed_scaling_factor"] = c.route_scale;
  j["scoring_func"] = nlohmann::ordered_json::parse(config_to_json(c)).at("score_func");
  j["sliding_window"] = c.window_size;
  j["swiglu_limit"] = c.swiglu_limit;
  j["tie_word_embeddings"] = false;
  j["topk_method"] = "noaux_tc";
  j["torch_dtype"] = "bfloat16";
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  j["compress_ratios"] = c.compress_ratios;
  return j.dump(2) + "\n";
}

// config_to_json without dsv4's own "dsv4_name": the official inference ModelArgs keys only.
std::string official_config_json(const ModelConfig& c) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(config_to_json(c));
  j.erase("dsv4_name");
  return j.dump(2) + "\n";
}

void write_text(const std::string& path, const std::string& text) {
  AtomicFile out(path);
  out.write(std::as_bytes(std::span<const char>(text.data(), text.size())));
  out.commit();
}

struct ExportArgs {
  std::string config, naming = "official", out;
  std::uint64_t seed = 0;
  bool force = false;
};

int run_export(const ExportArgs& a) {
  const CheckpointNaming naming = naming_from(a.naming);
  const ModelConfig c = load_config(a.config);
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(a.out, ec) && !fs::is_directory(a.out, ec))
    throw InputError("--out", a.out + " exists and is not a directory");
  const std::string st = (fs::path(a.out) / "model.safetensors").string();
  const std::string cj = (fs::path(a.out) / "config.json").string();
  const std::string hj = naming == CheckpointNaming::kHuggingFace ? (fs::path(a.out) / "hf_config.json").string() : "";
  for (const std::string& p : {st, cj, hj})
    if (!p.empty() && !a.force && fs::symlink_status(p, ec).type() != fs::file_type::not_found)
      throw InputError("--out", p + " exists (pass --force to replace it)");
  check_output_paths({{"--out", st}, {"--out", cj}, {"--out", hj}}, {{"--config", a.config}});
  // The synthetic weights are held in double (8 bytes a parameter) plus the file's form: refuse
  // what cannot fit rather than be killed mid-way.
  std::int64_t params = 0, file_bytes = 0;
  for (const CheckpointTensorInfo& t : published_checkpoint_tensors(c, naming)) {
    std::int64_t n = 1;
    for (const std::int64_t d : t.shape) n *= d;
    params += n;
    file_bytes += tensor_bytes(t);
  }
  const double need = 10.0 * static_cast<double>(params) + 2.0 * static_cast<double>(file_bytes);
  const double avail = static_cast<double>(::sysconf(_SC_AVPHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  if (avail > 0 && need > avail)
    throw InputError("--config", "exporting the " + std::to_string(params) + " parameters of '" + c.name +
                                     "' needs about " + std::to_string(static_cast<long long>(need / 1e9)) +
                                     " GB of memory, " + std::to_string(static_cast<long long>(avail / 1e9)) +
                                     " GB are available (use a smaller config)");
  fs::create_directories(a.out, ec);
  if (ec) throw InputError("--out", "cannot create directory " + a.out + ": " + ec.message());

  const ModelWeights w = make_weights(c, WeightsSpec{a.seed, ""});
  const std::string sha = weights_content_sha256(c, w);
  const std::map<std::string, Tensor> tensors = model_weight_tensors(c, w, naming, CheckpointForm::kPublished);
  SafetensorsWriteOptions opts;
  opts.metadata = {{"format", "pt"},
                   {"weights_content_sha256", sha},
                   {"dsv4_weights", "synthetic seed " + std::to_string(a.seed) + ", generator version " +
                                        std::to_string(kSyntheticWeightsVersion) + ", config " + c.name}};
  write_safetensors(st, tensors, opts);
  write_text(cj, official_config_json(c));
  if (!hj.empty()) write_text(hj, hf_config_json(c));
  std::printf("wrote %s: %zu tensors (%s naming), %.1f MB\n", st.c_str(), tensors.size(), a.naming.c_str(),
              static_cast<double>(fs::file_size(st)) / 1e6);
  std::printf("wrote %s%s%s\n", cj.c_str(), hj.empty() ? "" : ", ", hj.c_str());
  std::printf("weights content SHA-256 %s (the golden's weights.content_sha256 for --seed %llu)\n", sha.c_str(),
              static_cast<unsigned long long>(a.seed));
  return 0;
}

struct ListArgs {
  std::string config, naming = "official";
  bool json = false, markdown = false;
};

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string t = "[";
  for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

// `layers.3.ffn.experts.5.w1.weight` → `layers.3.ffn.experts.{0..E-1}.w1.weight`; the others unchanged.
std::string fold_experts(const std::string& name, std::int64_t experts) {
  for (const char* key : {".experts.", ".mlp.experts."}) {
    const std::size_t at = name.find(key);
    if (at == std::string::npos) continue;
    const std::size_t b = at + std::string(key).size(), e = name.find('.', b);
    if (e == std::string::npos) continue;
    return name.substr(0, b) + "{0.." + std::to_string(experts - 1) + "}" + name.substr(e);
  }
  return name;
}

int run_list(const ListArgs& a) {
  const CheckpointNaming naming = naming_from(a.naming);
  const ModelConfig c = load_config(a.config);
  const std::vector<CheckpointTensorInfo> list = published_checkpoint_tensors(c, naming);
  std::int64_t bytes = 0;
  for (const CheckpointTensorInfo& t : list) bytes += tensor_bytes(t);
  if (a.json) {
    nlohmann::ordered_json j;
    j["config"] = c.name;
    j["naming"] = a.naming;
    j["tensor_count"] = list.size();
    j["bytes"] = bytes;
    j["tensors"] = nlohmann::ordered_json::array();
    for (const CheckpointTensorInfo& t : list)
      j["tensors"].push_back({{"name", t.name}, {"shape", t.shape}, {"dtype", safetensors_dtype_code(t.dtype)}});
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  if (a.markdown) {
    const std::vector<CheckpointTensorInfo> hf = published_checkpoint_tensors(c, CheckpointNaming::kHuggingFace);
    const std::vector<CheckpointTensorInfo> off = published_checkpoint_tensors(c, CheckpointNaming::kOfficial);
    std::printf("| official name | shape | dtype | Hugging Face name | shape | dtype |\n|---|---|---|---|---|---|\n");
    std::set<std::string> printed;  // the folded experts' rows repeat once per expert
    const auto cell = [&](const CheckpointTensorInfo* t) {
      if (t == nullptr) return std::string("— | | ");
      return "`" + fold_experts(t->name, c.n_routed_experts) + "` | " + shape_text(t->shape) + " | " +
             std::string(safetensors_dtype_code(t->dtype)) + " ";
    };
    const auto row = [&](const CheckpointTensorInfo* o, const CheckpointTensorInfo* h) {
      const std::string r = "| " + cell(o) + "| " + cell(h) + "|";
      if (printed.insert(r).second) std::printf("%s\n", r.c_str());
    };
    // The same visit order in both namings; a tensor of one naming only (the Hugging Face FP8
    // wo_a's scale) gets a row of its own.
    std::set<std::string> official;
    for (const CheckpointTensorInfo& o : off) official.insert(o.name);
    std::size_t j = 0;
    for (const CheckpointTensorInfo& o : off) {
      while (j < hf.size() && official.count(official_name_from_hf(hf[j].name)) == 0) row(nullptr, &hf[j++]);
      const bool pair = j < hf.size() && official_name_from_hf(hf[j].name) == o.name;
      row(&o, pair ? &hf[j++] : nullptr);
    }
    for (; j < hf.size(); ++j) row(nullptr, &hf[j]);
    std::printf("\n%zu tensors, %lld bytes (%s).\n", list.size(), static_cast<long long>(bytes), c.name.c_str());
    return 0;
  }
  std::size_t wn = 0, ws = 0;
  for (const CheckpointTensorInfo& t : list) {
    wn = std::max(wn, t.name.size());
    ws = std::max(ws, shape_text(t.shape).size());
  }
  for (const CheckpointTensorInfo& t : list)
    std::printf("%-*s  %-*s  %s\n", static_cast<int>(wn), t.name.c_str(), static_cast<int>(ws),
                shape_text(t.shape).c_str(), std::string(safetensors_dtype_code(t.dtype)).c_str());
  std::printf("%zu tensors, %lld bytes (%s, %s naming)\n", list.size(), static_cast<long long>(bytes), c.name.c_str(),
              a.naming.c_str());
  return 0;
}

}  // namespace

void register_weights(CLI::App& app) {
  auto* cmd = app.add_subcommand("weights", "Checkpoints of the synthetic weights: export them, list every tensor");
  cmd->require_subcommand(1);

  auto e = std::make_shared<ExportArgs>();
  auto* ex = cmd->add_subcommand("export", "Write the weights a golden of --config and --seed is made with");
  ex->add_option("--config", e->config, "built-in config name (tiny, …) or a config.json")->required();
  ex->add_option("--seed", e->seed, "seed of the synthetic weights (as golden generate --seed)")->capture_default_str();
  ex->add_option("--naming", e->naming, "tensor names: official (inference code) or hf (Hugging Face)")
      ->capture_default_str();
  ex->add_option("--out", e->out, "directory to write model.safetensors and config.json into")->required();
  ex->add_flag("--force", e->force, "replace existing files in --out");
  ex->footer(kExportFooter);
  ex->callback([e]() { set_exit_code(run_guarded("weights export", [&] { return run_export(*e); })); });

  auto l = std::make_shared<ListArgs>();
  auto* li = cmd->add_subcommand("list", "Every checkpoint tensor of a config: name, shape, dtype");
  li->add_option("--config", l->config, "built-in config name (tiny, …) or a config.json")->required();
  li->add_option("--naming", l->naming, "tensor names: official (inference code) or hf (Hugging Face)")
      ->capture_default_str();
  li->add_flag("--json", l->json, "print JSON: {config, naming, tensor_count, bytes, tensors: [{name, shape, dtype}]}");
  li->add_flag("--markdown", l->markdown, "print the markdown table of oracle/README.md (both namings)");
  li->footer(kListFooter);
  li->callback([l]() { set_exit_code(run_guarded("weights list", [&] { return run_list(*l); })); });
}

}  // namespace dsv4::cli
