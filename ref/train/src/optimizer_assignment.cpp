// The optimizer of each parameter by official name (spec 06 §6.1). Rules: optimizer_assignment.hpp.
#include "dsv4/train/optimizer_assignment.hpp"

#include <stdexcept>
#include <string>

namespace dsv4 {
namespace {

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// The last dot-separated component ("layers.3.hc_attn_base" → "hc_attn_base").
std::string_view leaf(std::string_view s) {
  const std::size_t dot = s.rfind('.');
  return dot == std::string_view::npos ? s : s.substr(dot + 1);
}

// The module component before ".weight" ("layers.3.attn.q_norm.weight" → "q_norm").
std::string_view module_of_weight(std::string_view s) { return leaf(s.substr(0, s.size() - 7)); }

bool starts_with(std::string_view s, std::string_view head) { return s.substr(0, head.size()) == head; }

}  // namespace

const char* optimizer_kind_name(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::kMuon:
      return "muon";
    case OptimizerKind::kAdamW:
      return "adamw";
    case OptimizerKind::kNone:
      return "none";
  }
  return "?";
}

// spec 06 §6.1.
OptimizerAssignment optimizer_for(std::string_view name) {
  const std::string_view last = leaf(name);
  if (name == "embed.weight") return {OptimizerKind::kAdamW, "the embedding (report §2.4)"};
  if (name == "head.weight") return {OptimizerKind::kAdamW, "the prediction head (report §2.4)"};
  if (last == "scale" && name.size() > 6)
    return {OptimizerKind::kNone, "a quantised weight's block scales (spec 06 §6.8)"};
  if (ends_with(name, ".gate.bias"))
    return {OptimizerKind::kNone, "the router bias: auxiliary-loss-free update (spec 03 §3.4)"};
  if (ends_with(name, ".gate.tid2eid")) return {OptimizerKind::kNone, "the hash-routing table is fixed"};
  if (starts_with(last, "hc_") && (ends_with(last, "_base") || ends_with(last, "_scale"))) {
    return {OptimizerKind::kAdamW, "an mHC static bias or gating factor (report §2.4)"};
  }
  if (starts_with(last, "hc_") && ends_with(last, "_fn"))
    return {OptimizerKind::kMuon, "an mHC mixing matrix (report §2.4)"};
  if (last == "attn_sink") return {OptimizerKind::kAdamW, "attn_sink: a per-head vector, nothing to orthogonalise [C]"};
  if (last == "ape") return {OptimizerKind::kAdamW, "ape: a positional table like the embedding, not a linear map [C]"};
  if (ends_with(name, ".weight") || name == "norm.weight") {
    const std::string_view module = name == "norm.weight" ? std::string_view("norm") : module_of_weight(name);
    if (ends_with(module, "norm")) return {OptimizerKind::kAdamW, "an RMSNorm gain (report §2.4)"};
    return {OptimizerKind::kMuon, "a weight matrix (report §2.4: all other modules)"};
  }
  throw std::invalid_argument("optimizer_for: no optimizer rule for parameter '" + std::string(name) + "'");
}

// spec 02 §2.10: wo_a is o_groups independent maps.
std::int64_t muon_row_blocks(std::string_view name, const ModelConfig& c) {
  if (optimizer_for(name).kind != OptimizerKind::kMuon) {
    throw std::invalid_argument("muon_row_blocks: '" + std::string(name) + "' is not trained by Muon");
  }
  return ends_with(name, ".attn.wo_a.weight") ? c.o_groups : 1;
}

}  // namespace dsv4
