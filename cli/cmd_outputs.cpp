// `dsv4 outputs`: every output a run records (and a golden holds), in execution order, from the one
// description of them — the typed output table (ref/model output_table.hpp) — with, per output, its
// module, role, official dtype and the recorded tensors its module reads (what `dsv4 diff` needs
// from a candidate to localise it). Nothing runs: the list follows from the config and the schedule.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/cli_guard.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/model/output_table.hpp"

namespace dsv4::cli {

namespace {

constexpr const char* kFooter = R"(
Example (the schedule of the committed golden goldens/tiny-s1-p6-d2.h5):
  dsv4 outputs --config tiny --prompt-len 6 --decode-steps 2
  dsv4 outputs --config tiny --prompt-len 6 --decode-steps 2 --json

Lists every output a run of the config records under its canonical name <step>/<module>/<output>
(oracle/README.md, Dump convention) for a prefill of --prompt-len tokens and --decode-steps
one-token decode steps, in execution order: per step the embedding, each layer's sites (hc_attn,
attn_norm, attn, hc_attn post, hc_ffn, ffn_norm, ffn.gate, ffn, the block), the head (hc_head,
norm, head), then mtp.0 where it runs (every step but the last). It is the list a golden of that
schedule holds and an engine's dump should hold; nothing is run.

Per output: the module that computes it; its role (value; decision ids: top-k lists and expert
ids, compared as sets; scores and margins: decision data, never required; choice scores: written
by the golden only, not recorded); its dtype in the official model (bfloat16, float32; int64 for
ids); and the inputs its module reads — the tensors `dsv4 diff --teacher-forced` takes from the
candidate to recompute the module and localise a bug ("tokens": the golden's token ids; a name
ending in '?' is optional). Outputs marked "not localised" are judged inside their module.

--json prints {"format": "dsv4-outputs", "steps": [...], "outputs": [{"name", "step", "module",
"output", "site", "role", "golden_role", "official_dtype", "recorded", "localised", "decision",
"inputs": [{"name", "optional"}]}, ...]}.

Exit status: 0; 2 bad input (an unknown config, a bad schedule: one line on stderr).)";

struct OutputsArgs {
  std::string config;
  std::int64_t prompt_len = 6;
  std::int64_t decode_steps = 2;
  bool json = false;
};

const char* site_kind_name(SiteKind k) {
  switch (k) {
    case SiteKind::kEmbed:
      return "embed";
    case SiteKind::kHcPre:
      return "hc_pre";
    case SiteKind::kRmsNorm:
      return "rmsnorm";
    case SiteKind::kAttention:
      return "attention";
    case SiteKind::kHcPost:
      return "hc_post";
    case SiteKind::kGate:
      return "gate";
    case SiteKind::kMoe:
      return "moe";
    case SiteKind::kHcHead:
      return "hc_head";
    case SiteKind::kHead:
      return "head";
    case SiteKind::kMtpInput:
      return "mtp_input";
  }
  return "?";
}

const char* decision_name(DecisionKind d) {
  switch (d) {
    case DecisionKind::kNone:
      return nullptr;
    case DecisionKind::kTopk:
      return "topk";
    case DecisionKind::kExperts:
      return "experts";
  }
  return nullptr;
}

struct Input {
  std::string name;
  bool optional = false;
};

// The canonical name of input `in` of a site (output_table.hpp SiteDesc::inputs) in step `step`,
// scope `prefix` ("layers.3", "mtp.0", "" for a model site), block `block` (−1 outside blocks).
Input resolve_input(const ModelConfig& c, const std::string& step, const std::string& prefix, std::int64_t block,
                    std::string_view in) {
  Input r;
  if (in.ends_with('?')) {
    r.optional = true;
    in.remove_suffix(1);
  }
  const std::string last_layer_out = step + "/layers." + std::to_string(c.n_layers - 1) + "/out";
  if (in == "tokens") {
    r.name = "tokens";
  } else if (in == "<block input>") {
    // layer 0 reads the embedding, expanded to the hc streams: the diff recomputes it from the
    // tokens; an MTP block reads its input state; a later layer the previous layer's output.
    if (block >= c.n_layers)
      r.name = step + "/" + prefix + "/in";
    else if (block == 0)
      r.name = "tokens";
    else
      r.name = step + "/layers." + std::to_string(block - 1) + "/out";
  } else if (in == "<last layer out>") {
    r.name = last_layer_out;
  } else if (in == "<mtp block out>") {
    r.name = step + "/" + prefix + "/out";
  } else {
    const auto slash = in.find('/');
    r.name = step + "/" + module_path(prefix, in.substr(0, slash)) + "/" + std::string(in.substr(slash + 1));
  }
  return r;
}

nlohmann::ordered_json describe(const ModelConfig& c, const StepPlan& st, const std::string& prefix, std::int64_t block,
                                const SiteDesc& s, const OutputDesc& o) {
  const std::string module = module_path(prefix, o.module);
  const std::string name = st.name + "/" + module + "/" + std::string(o.output);
  nlohmann::ordered_json j;
  j["name"] = name;
  j["step"] = st.name;
  j["module"] = module;
  j["output"] = std::string(o.output);
  j["site"] = site_kind_name(s.kind);
  j["role"] = output_role_name(o.role);
  j["golden_role"] = golden_role_name(golden_role_of(name));
  j["official_dtype"] = std::string(dtype_name(o.official));
  j["recorded"] = o.role != OutputRole::kChoiceScores;
  j["localised"] = o.localised;
  const char* d = decision_name(o.decision);
  j["decision"] = d == nullptr ? nlohmann::ordered_json() : nlohmann::ordered_json(d);
  nlohmann::ordered_json ins = nlohmann::ordered_json::array();
  for (const std::string_view in : s.inputs) {
    const Input r = resolve_input(c, st.name, prefix, block, in);
    ins.push_back({{"name", r.name}, {"optional", r.optional}});
  }
  j["inputs"] = ins;
  return j;
}

// The outputs of the sites of `scope` in block `block` (or −1) of one step, in the table's order.
void add_sites(nlohmann::ordered_json& out, const ModelConfig& c, const StepPlan& st, SiteScope scope,
               const std::string& prefix, std::int64_t block, bool (*keep)(const SiteDesc&)) {
  for (const SiteDesc& s : output_sites()) {
    if (s.scope != scope || (keep != nullptr && !keep(s))) continue;
    for (const OutputDesc& o : s.outputs) {
      if (scope == SiteScope::kBlock && !present_in_block(o.presence, c, block, st.start_pos, st.length)) continue;
      // Choice scores exist for score-routed gates only (hash-routed layers choose by tid2eid;
      // the golden writes ŝ = s + b where the layer has a bias: oracle/golden golden.cpp).
      if (o.role == OutputRole::kChoiceScores && block < c.n_hash_layers) continue;
      out.push_back(describe(c, st, prefix, block, s, o));
    }
  }
}

int run_outputs(const OutputsArgs& a) {
  if (a.prompt_len <= 0) throw InputError("--prompt-len", "must be positive");
  if (a.decode_steps < 0) throw InputError("--decode-steps", "must be non-negative");
  const ModelConfig c = load_config(a.config);
  const auto plan = plan_steps(c, 1, a.prompt_len + a.decode_steps, a.decode_steps);
  nlohmann::ordered_json outs = nlohmann::ordered_json::array();
  for (const StepPlan& st : plan) {
    add_sites(outs, c, st, SiteScope::kModel, "", -1, [](const SiteDesc& s) { return s.kind == SiteKind::kEmbed; });
    for (std::int64_t l = 0; l < c.n_layers; ++l)
      add_sites(outs, c, st, SiteScope::kBlock, "layers." + std::to_string(l), l, nullptr);
    add_sites(outs, c, st, SiteScope::kModel, "", -1, [](const SiteDesc& s) { return s.kind != SiteKind::kEmbed; });
    if (st.mtp) {  // mtp.0 only: the reference runs the first MTP module (oracle/golden model_run.hpp)
      const std::string p = "mtp.0";
      add_sites(outs, c, st, SiteScope::kMtp, p, c.n_layers,
                [](const SiteDesc& s) { return s.kind == SiteKind::kMtpInput; });
      add_sites(outs, c, st, SiteScope::kBlock, p, c.n_layers, nullptr);
      add_sites(outs, c, st, SiteScope::kMtp, p, c.n_layers,
                [](const SiteDesc& s) { return s.kind != SiteKind::kMtpInput; });
    }
  }
  if (a.json) {
    nlohmann::ordered_json j;
    j["format"] = "dsv4-outputs";
    j["format_version"] = 1;
    j["config"] = a.config;
    j["prompt_len"] = a.prompt_len;
    j["decode_steps"] = a.decode_steps;
    j["steps"] = nlohmann::ordered_json::parse(steps_json(plan));
    j["outputs"] = outs;
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  std::printf("%zu outputs of config %s, prompt %lld + %lld decode steps, in execution order\n", outs.size(),
              a.config.c_str(), static_cast<long long>(a.prompt_len), static_cast<long long>(a.decode_steps));
  std::printf("%-44s %-13s %-9s  %s\n", "name", "role", "dtype", "inputs of its module");
  for (const auto& o : outs) {
    std::string ins;
    for (const auto& i : o["inputs"]) {
      if (!ins.empty()) ins += ", ";
      ins += i["name"].get<std::string>() + (i["optional"].get<bool>() ? "?" : "");
    }
    std::string role = o["role"].get<std::string>();
    if (!o["recorded"].get<bool>()) role += " (golden only)";
    if (!o["localised"].get<bool>()) ins += "  (not localised)";
    std::printf("%-44s %-13s %-9s  %s\n", o["name"].get<std::string>().c_str(), role.c_str(),
                o["official_dtype"].get<std::string>().c_str(), ins.c_str());
  }
  return 0;
}

}  // namespace

void register_outputs(CLI::App& app) {
  auto a = std::make_shared<OutputsArgs>();
  auto* cmd = app.add_subcommand("outputs",
                                 "list every recorded output (canonical name, module, role, official dtype, the "
                                 "inputs its module needs) in execution order");
  cmd->add_option("--config", a->config, "built-in config name (tiny, …) or a config.json")->required();
  cmd->add_option("--prompt-len", a->prompt_len, "tokens in the prefill")->capture_default_str();
  cmd->add_option("--decode-steps", a->decode_steps, "one-token decode steps after it")->capture_default_str();
  cmd->add_flag("--json", a->json, "print JSON (format dsv4-outputs) instead of a table");
  cmd->footer(kFooter);
  cmd->callback([a]() { set_exit_code(run_guarded("outputs", [&] { return run_outputs(*a); })); });
}

}  // namespace dsv4::cli
