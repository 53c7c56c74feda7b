// The typed output table (output_table.hpp): one description per recorded output.
#include "dsv4/model/output_table.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <utility>

namespace dsv4 {

namespace {

constexpr auto kV = OutputRole::kValue;
constexpr auto kBf = DType::kBF16;
constexpr auto kFp = DType::kF32;

}  // namespace

const char* output_role_name(OutputRole r) {
  switch (r) {
    case OutputRole::kValue:
      return "value";
    case OutputRole::kDecisionIds:
      return "decision ids";
    case OutputRole::kScores:
      return "scores";
    case OutputRole::kMargins:
      return "margins";
    case OutputRole::kChoiceScores:
      return "choice scores";
  }
  return "?";
}

const std::vector<SiteDesc>& output_sites() {
  using S = SiteKind;
  constexpr auto B = SiteScope::kBlock, M = SiteScope::kModel, T = SiteScope::kMtp;
  constexpr auto kCompressed = Presence::kCompressed, kIndexed = Presence::kIndexed, kAll = Presence::kAlways;
  static const std::vector<SiteDesc> sites = {
      // ---- a step, top level: the embedding (spec 05 §5.1) ----
      {S::kEmbed, M, "embed", {{"embed", "out", kV, kBf}}, {"tokens"}},
      // ---- every block (spec 05 §5.2), in execution order ----
      {S::kHcPre,
       B,
       "hc_attn",
       {{"hc_attn", "y", kV, kBf}, {"hc_attn", "post", kV, kFp}, {"hc_attn", "comb", kV, kFp}},
       {"<block input>"}},
      {S::kRmsNorm, B, "attn_norm", {{"attn_norm", "out", kV, kBf}}, {"hc_attn/y"}},
      {S::kAttention,
       B,
       "attn",
       {{"attn.q_norm", "out", kV, kBf, kAll, DecisionKind::kNone, false},
        {"attn", "kv", kV, kBf},
        {"attn.compressor", "out", kV, kBf, kCompressed},
        {"attn.indexer", "scores", OutputRole::kScores, kBf, kIndexed, DecisionKind::kTopk},
        {"attn.indexer", "out", OutputRole::kDecisionIds, DType::kI64, kIndexed, DecisionKind::kTopk},
        {"attn.indexer", "margin", OutputRole::kMargins, DType::kF64, kIndexed, DecisionKind::kTopk, false},
        {"attn.wo_a", "out", kV, kBf},
        {"attn", "out", kV, kBf}},
       {"attn_norm/out", "attn.indexer/out?"}},
      {S::kHcPost,
       B,
       "hc_attn",
       {{"hc_attn", "out", kV, kBf}},
       {"attn/out", "<block input>", "hc_attn/post", "hc_attn/comb"}},
      {S::kHcPre,
       B,
       "hc_ffn",
       {{"hc_ffn", "y", kV, kBf}, {"hc_ffn", "post", kV, kFp}, {"hc_ffn", "comb", kV, kFp}},
       {"hc_attn/out"}},
      {S::kRmsNorm, B, "ffn_norm", {{"ffn_norm", "out", kV, kBf}}, {"hc_ffn/y"}},
      {S::kGate,
       B,
       "ffn.gate",
       {{"ffn.gate", "scores", OutputRole::kScores, kFp, kAll, DecisionKind::kExperts},
        {"ffn.gate", "choice_scores", OutputRole::kChoiceScores, kFp, kAll, DecisionKind::kExperts, false},
        {"ffn.gate", "out0", kV, kFp},
        {"ffn.gate", "out1", OutputRole::kDecisionIds, DType::kI64, kAll, DecisionKind::kExperts},
        {"ffn.gate", "margin", OutputRole::kMargins, DType::kF64, kAll, DecisionKind::kExperts, false}},
       {"ffn_norm/out"}},
      {S::kMoe, B, "ffn", {{"ffn", "out", kV, kBf}}, {"ffn_norm/out", "ffn.gate/out0", "ffn.gate/out1"}},
      {S::kHcPost, B, "", {{"", "out", kV, kBf}}, {"ffn/out", "hc_attn/out", "hc_ffn/post", "hc_ffn/comb"}},
      // ---- the head of a step (spec 05 §5.3) ----
      {S::kHcHead, M, "hc_head", {{"hc_head", "out", kV, kBf}}, {"<last layer out>"}},
      {S::kRmsNorm, M, "norm", {{"norm", "out", kV, kBf}}, {"hc_head/out"}},
      {S::kHead, M, "head", {{"head", "out", kV, kFp}}, {"norm/out"}},
      // ---- each MTP module (spec 05 §5.5): its input state, its block (the block sites), its head ----
      {S::kMtpInput, T, "", {{"", "in", kV, kBf}}, {"<last layer out>", "tokens"}},
      {S::kHcHead, T, "hc_head", {{"hc_head", "out", kV, kBf}}, {"<mtp block out>"}},
      {S::kRmsNorm, T, "norm", {{"norm", "out", kV, kBf}}, {"hc_head/out"}},
      {S::kHead, T, "head", {{"head", "out", kV, kFp}}, {"norm/out"}},
  };
  return sites;
}

std::string module_path(std::string_view prefix, std::string_view module) {
  if (prefix.empty()) return std::string(module);
  if (module.empty()) return std::string(prefix);
  return std::string(prefix) + "." + std::string(module);
}

bool present_in_block(Presence p, const ModelConfig& c, std::int64_t layer, std::int64_t start_pos,
                      std::int64_t length) {
  const std::int64_t ratio = c.compress_ratio(layer);
  switch (p) {
    case Presence::kAlways:
      return true;
    case Presence::kCompressed:  // entries completed: ⌊(start + len)/m⌋ − ⌊start/m⌋
      return ratio > 0 && (start_pos + length) / ratio > start_pos / ratio;
    case Presence::kIndexed:
      return ratio == 4;
  }
  return false;
}

namespace {

// "layers.<n>" / "mtp.<n>" at the start of a module path: the scope, n and the rest after it.
bool numbered_prefix(std::string_view path, std::string_view head, std::int64_t& n, std::string_view& rest) {
  if (path.substr(0, head.size()) != head) return false;
  const char* first = path.data() + head.size();
  const char* last = path.data() + path.size();
  const auto [end, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || end == first || n < 0 || (*first == '0' && end - first > 1)) return false;
  rest = std::string_view(end, static_cast<std::size_t>(last - end));
  if (!rest.empty() && rest.front() != '.') return false;
  if (!rest.empty()) rest.remove_prefix(1);
  return true;
}

const OutputDesc* find_in(const SiteDesc& s, std::string_view module, std::string_view output) {
  for (const OutputDesc& o : s.outputs)
    if (o.module == module && o.output == output) return &o;
  return nullptr;
}

}  // namespace

std::optional<OutputRef> describe_output(std::string_view canonical, const ModelConfig* c) {
  const auto first = canonical.find('/');
  const auto last = canonical.rfind('/');
  if (first == std::string_view::npos || first == last || first == 0 || last + 1 == canonical.size())
    return std::nullopt;
  OutputRef r;
  r.step = std::string(canonical.substr(0, first));
  r.module = std::string(canonical.substr(first + 1, last - first - 1));
  r.output = std::string(canonical.substr(last + 1));
  std::int64_t n = -1;
  std::string_view rest;
  std::vector<SiteScope> scopes;
  if (numbered_prefix(r.module, "layers.", n, rest)) {
    scopes = {SiteScope::kBlock};
    if (c != nullptr && n >= c->n_layers) return std::nullopt;
  } else if (numbered_prefix(r.module, "mtp.", n, rest)) {
    scopes = {SiteScope::kBlock, SiteScope::kMtp};
    if (c != nullptr && n >= c->n_mtp_layers) return std::nullopt;
  } else {
    rest = r.module;
    scopes = {SiteScope::kModel};
  }
  for (const SiteDesc& s : output_sites()) {
    bool in_scope = false;
    for (const SiteScope sc : scopes) in_scope = in_scope || s.scope == sc;
    if (!in_scope) continue;
    if (const OutputDesc* d = find_in(s, rest, r.output)) {
      r.site = &s;
      r.desc = d;
      if (s.scope != SiteScope::kModel) {
        const bool mtp = r.module.rfind("mtp.", 0) == 0;
        r.block = mtp ? (c != nullptr ? c->n_layers + n : -(n + 2)) : n;
      }
      return r;
    }
  }
  return std::nullopt;
}

std::int64_t step_rank(std::string_view step) {
  constexpr std::int64_t kOther = std::numeric_limits<std::int64_t>::max();
  if (step == "prefill") return 0;
  constexpr std::string_view kDecode = "decode";
  if (step.substr(0, kDecode.size()) != kDecode) return kOther;
  std::int64_t n = -1;
  const char* last = step.data() + step.size();
  const auto [end, ec] = std::from_chars(step.data() + kDecode.size(), last, n);
  return ec == std::errc() && end == last && n >= 0 && n < kOther - 1 ? n + 1 : kOther;
}

ExecutionKey execution_key(const OutputRef& r) {
  ExecutionKey k;
  k.step = step_rank(r.step);
  k.site = r.site - output_sites().data();
  k.output = r.desc - r.site->outputs.data();
  std::int64_t n = 0;
  std::string_view rest;
  if (numbered_prefix(r.module, "mtp.", n, rest)) {
    k.phase = 3;
    k.index = n;
    k.part = r.site->scope == SiteScope::kBlock ? 1 : (r.site->kind == SiteKind::kMtpInput ? 0 : 2);
  } else if (r.site->scope == SiteScope::kBlock) {
    k.phase = 1;
    k.index = r.block;
  } else {
    k.phase = r.site->kind == SiteKind::kEmbed ? 0 : 2;
  }
  return k;
}

void sort_in_execution_order(std::vector<std::string>& names) {
  std::vector<std::pair<std::optional<ExecutionKey>, std::string>> keyed;
  keyed.reserve(names.size());
  for (std::string& n : names) {
    const std::optional<OutputRef> r = describe_output(n);
    keyed.emplace_back(r ? std::optional<ExecutionKey>(execution_key(*r)) : std::nullopt, std::move(n));
  }
  std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
    if (a.first.has_value() != b.first.has_value()) return a.first.has_value();
    if (a.first && *a.first != *b.first) return *a.first < *b.first;
    return a.second < b.second;
  });
  for (std::size_t i = 0; i < names.size(); ++i) names[i] = std::move(keyed[i].second);
}

}  // namespace dsv4
