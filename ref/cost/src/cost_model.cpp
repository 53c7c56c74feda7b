// spec 08 (efficiency model): §8.1 entry formats, §8.2 KV bytes, §8.3 FLOPs, §8.4 recipe.
#include "dsv4/cost/cost_model.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "dsv4/cache/kv_cache.hpp"

namespace dsv4::cost {

namespace {
double D(std::int64_t v) { return static_cast<double>(v); }
std::int64_t kappa(std::int64_t ratio) { return ratio == 4 ? 2 : 1; }  // overlap (spec 02 §2.6)
}  // namespace

// ----------------------------------------------------------------------------------- layers

LayerCounts layer_counts(const ModelConfig& c) {
  LayerCounts n;
  const auto total = static_cast<std::int64_t>(c.compress_ratios.size());
  for (std::int64_t l = 0; l < total; ++l) {
    const bool mtp = l >= c.n_layers;
    switch (cache::attn_kind(c.compress_ratio(l))) {
      case cache::AttnKind::kSWA:
        ++(mtp ? n.mtp_swa : n.swa);
        break;
      case cache::AttnKind::kCSA:
        ++(mtp ? n.mtp_csa : n.csa);
        break;
      case cache::AttnKind::kHCA:
        ++(mtp ? n.mtp_hca : n.hca);
        break;
    }
  }
  return n;
}

// ----------------------------------------------------------------------- V4 parameters (00 §0.6)

double v4_attn_fp8_params(const ModelConfig& c) {
  const double wq_a = D(c.q_lora_rank) * D(c.dim);
  const double wq_b = D(c.n_heads * c.head_dim) * D(c.q_lora_rank);
  const double wkv = D(c.head_dim) * D(c.dim);
  const double wo_b = D(c.dim) * D(c.o_groups * c.o_lora_rank);
  return wq_a + wq_b + wkv + wo_b;
}

double v4_attn_wo_a_params(const ModelConfig& c) {
  return D(c.o_groups * c.o_lora_rank) * D(c.n_heads * c.head_dim / c.o_groups);
}

double v4_compressor_params(const ModelConfig& c, std::int64_t ratio) {
  if (ratio == 0) return 0;
  return 2.0 * D(kappa(ratio) * c.head_dim) * D(c.dim);  // wkv + wgate
}

double v4_indexer_params(const ModelConfig& c) {
  const double wq_b = D(c.index_n_heads * c.index_head_dim) * D(c.q_lora_rank);
  const double weights_proj = D(c.index_n_heads) * D(c.dim);
  const double compressor = 2.0 * D(2 * c.index_head_dim) * D(c.dim);  // ratio 4, overlap
  return wq_b + weights_proj + compressor;
}

double v4_moe_params(const ModelConfig& c) {
  const double gate = D(c.n_routed_experts) * D(c.dim);
  const double expert = 3.0 * D(c.dim) * D(c.moe_inter_dim);  // w1, w3, w2
  return gate + D(c.n_activated_experts + c.n_shared_experts) * expert;
}

double v4_mhc_params(const ModelConfig& c) {
  const double mix = D((2 + c.hc_mult) * c.hc_mult);
  return 2.0 * mix * D(c.hc_mult * c.dim);  // hc_attn_fn + hc_ffn_fn
}

double v4_head_params(const ModelConfig& c) {
  return D(c.vocab_size) * D(c.dim) + D(c.hc_mult) * D(c.hc_mult * c.dim);  // head + hc_head_fn
}

double v4_active_params(const ModelConfig& c) {
  double n = v4_head_params(c);
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const std::int64_t r = c.compress_ratio(l);
    n += v4_attn_fp8_params(c) + v4_attn_wo_a_params(c) + v4_compressor_params(c, r) + v4_moe_params(c) +
         v4_mhc_params(c);
    if (r == 4) n += v4_indexer_params(c);
  }
  return n;
}

// ------------------------------------------------------------------------------ V4 FLOPs (§8.3)

double v4_flops_attn_projections(const ModelConfig& c) { return 2.0 * D(c.n_layers) * v4_attn_fp8_params(c); }

double v4_flops_wo_a(const ModelConfig& c) { return 2.0 * D(c.n_layers) * v4_attn_wo_a_params(c); }

double v4_flops_compressor(const ModelConfig& c) {
  double f = 0;
  for (std::int64_t l = 0; l < c.n_layers; ++l) f += 2.0 * v4_compressor_params(c, c.compress_ratio(l));
  return f;
}

double v4_flops_indexer_projections(const ModelConfig& c) {
  return 2.0 * D(layer_counts(c).csa) * v4_indexer_params(c);
}

double v4_flops_indexer_scores(const ModelConfig& c, std::int64_t L) {
  return D(layer_counts(c).csa) * 2.0 * D(c.index_n_heads) * D(c.index_head_dim) * D(L / 4);
}

double v4_attended_entries(const ModelConfig& c, std::int64_t ratio, std::int64_t L) {
  const double window = D(std::min(L, c.window_size));
  switch (cache::attn_kind(ratio)) {
    case cache::AttnKind::kSWA:
      return window;
    case cache::AttnKind::kCSA:
      return window + D(std::min(L / 4, c.index_topk));
    case cache::AttnKind::kHCA:
      return window + D(L / 128);
  }
  return window;
}

double v4_flops_core_attention(const ModelConfig& c, std::int64_t L) {
  double entries = 0;
  for (std::int64_t l = 0; l < c.n_layers; ++l) entries += v4_attended_entries(c, c.compress_ratio(l), L);
  return 4.0 * D(c.head_dim) * D(c.n_heads) * entries;  // QK (c MACs) + PV (c MACs) per head
}

double v4_flops_moe(const ModelConfig& c) { return 2.0 * D(c.n_layers) * v4_moe_params(c); }
double v4_flops_mhc(const ModelConfig& c) { return 2.0 * D(c.n_layers) * v4_mhc_params(c); }
double v4_flops_head(const ModelConfig& c) { return 2.0 * v4_head_params(c); }

// --------------------------------------------------------------------------------- V4 KV (§8.2)

namespace {
std::int64_t layer_end(const ModelConfig& c, bool include_mtp) {
  return include_mtp ? static_cast<std::int64_t>(c.compress_ratios.size()) : c.n_layers;
}
}  // namespace

double v4_kv_window_bytes(const ModelConfig& c, std::int64_t L, bool with_scales, bool include_mtp) {
  const double per = D(std::min(L, c.window_size) * cache::main_entry_bytes(c, with_scales));
  return D(layer_end(c, include_mtp)) * per;
}

double v4_kv_compressed_bytes(const ModelConfig& c, std::int64_t ratio, std::int64_t L, bool with_scales,
                              bool include_mtp) {
  if (ratio == 0) return 0;
  std::int64_t layers = 0;
  for (std::int64_t l = 0; l < layer_end(c, include_mtp); ++l) layers += c.compress_ratio(l) == ratio ? 1 : 0;
  return D(layers) * D(L / ratio) * D(cache::main_entry_bytes(c, with_scales));
}

double v4_kv_indexer_bytes(const ModelConfig& c, std::int64_t L, bool with_scales, bool include_mtp) {
  std::int64_t layers = 0;
  for (std::int64_t l = 0; l < layer_end(c, include_mtp); ++l) layers += c.compress_ratio(l) == 4 ? 1 : 0;
  return D(layers) * D(L / 4) * D(cache::indexer_entry_bytes(c, with_scales));
}

double v4_kv_bytes(const ModelConfig& c, std::int64_t L, bool with_scales, bool include_mtp) {
  return v4_kv_window_bytes(c, L, with_scales, include_mtp) +
         v4_kv_compressed_bytes(c, 4, L, with_scales, include_mtp) +
         v4_kv_compressed_bytes(c, 128, L, with_scales, include_mtp) +
         v4_kv_indexer_bytes(c, L, with_scales, include_mtp);
}

double v4_state_bytes(const ModelConfig& c, bool include_mtp) {
  double b = 0;
  for (std::int64_t l = 0; l < layer_end(c, include_mtp); ++l) {
    const std::int64_t r = c.compress_ratio(l);
    if (r == 0) continue;
    const double main = D(kappa(r) * r) * D(kappa(r) * c.head_dim);  // [κm, κc]
    const double idx = r == 4 ? D(2 * 4) * D(2 * c.index_head_dim) : 0.0;
    b += 2.0 * (main + idx) * 4.0;  // kv_state + score_state, fp32
  }
  return b;
}

// ------------------------------------------------------------------------------------- V3.2

double v32_attn_params(const V32Dims& v) {
  const double qk_head = D(v.qk_nope_head_dim + v.qk_rope_head_dim);
  const double wq_a = D(v.q_lora_rank) * D(v.dim);
  const double wq_b = D(v.n_heads) * qk_head * D(v.q_lora_rank);
  const double wkv_a = D(v.kv_lora_rank + v.qk_rope_head_dim) * D(v.dim);
  // wkv_b; in decode it is absorbed into the query (nope part) and the output (value part), which
  // costs the same MACs as applying it: n_heads·(qk_nope + v_head)·kv_lora_rank.
  const double wkv_b = D(v.n_heads) * D(v.qk_nope_head_dim + v.v_head_dim) * D(v.kv_lora_rank);
  const double wo = D(v.dim) * D(v.n_heads * v.v_head_dim);
  return wq_a + wq_b + wkv_a + wkv_b + wo;
}

double v32_indexer_params(const V32Dims& v) {
  const double wq_b = D(v.index_n_heads * v.index_head_dim) * D(v.q_lora_rank);
  const double wk = D(v.index_head_dim) * D(v.dim);
  const double weights_proj = D(v.index_n_heads) * D(v.dim);
  return wq_b + wk + weights_proj;
}

namespace {
double v32_moe_layer_params(const V32Dims& v) {
  return D(v.n_routed_experts) * D(v.dim) +
         D(v.n_activated_experts + v.n_shared_experts) * 3.0 * D(v.dim) * D(v.moe_inter_dim);
}
double v32_dense_layer_params(const V32Dims& v) { return 3.0 * D(v.dim) * D(v.dense_inter_dim); }
double v32_head_params(const V32Dims& v) { return D(v.vocab_size) * D(v.dim); }
}  // namespace

double v32_active_params(const V32Dims& v) {
  const double per_layer = v32_attn_params(v) + v32_indexer_params(v);
  return D(v.n_layers) * per_layer + D(v.n_dense_layers) * v32_dense_layer_params(v) +
         D(v.n_layers - v.n_dense_layers) * v32_moe_layer_params(v) + v32_head_params(v);
}

double v32_flops_indexer_scores(const V32Dims& v, std::int64_t L) {
  return D(v.n_layers) * 2.0 * D(v.index_n_heads) * D(v.index_head_dim) * D(L);
}

double v32_flops_core_attention(const V32Dims& v, std::int64_t L) {
  // Absorbed MLA decode: QK over the kv_lora_rank + rope latent (576), PV over the latent (512).
  const double macs_per_entry = D(v.n_heads) * D(v.kv_lora_rank + v.qk_rope_head_dim + v.kv_lora_rank);
  return D(v.n_layers) * 2.0 * macs_per_entry * D(std::min(L, v.index_topk));
}

double v32_kv_bytes(const V32Dims& v, std::int64_t L) {
  return D(v.n_layers) * D(v.mla_entry_bytes + v.indexer_entry_bytes) * D(L);
}

// -------------------------------------------------------------------------------------- GQA

double gqa_kv_bytes(const GqaDims& g, std::int64_t L) {
  return D(g.n_layers) * 2.0 * D(g.n_kv_heads) * D(g.head_dim) * D(g.bytes_per_value) * D(L);
}

double gqa_flops_attention(const GqaDims& g, std::int64_t L) {
  return D(g.n_layers) * 4.0 * D(g.head_dim) * D(g.n_q_heads) * D(L);
}

// ------------------------------------------------------------------------------- breakdowns

double FlopsBreakdown::raw_total() const {
  double s = 0;
  for (const auto& t : terms) s += t.raw;
  return s;
}
double FlopsBreakdown::equiv_total() const {
  double s = 0;
  for (const auto& t : terms) s += t.equiv();
  return s;
}
double FlopsBreakdown::equiv_of(const std::string& prefix) const {
  double s = 0;
  for (const auto& t : terms) {
    if (t.name.rfind(prefix, 0) == 0) s += t.equiv();
  }
  return s;
}
double KvBreakdown::total() const {
  double s = 0;
  for (const auto& t : terms) s += t.bytes;
  return s;
}

namespace {

CostReport evaluate_v4(const ModelConfig& c, std::int64_t L, const CostOptions& o) {
  const PrecisionWeights& w = o.weights;
  CostReport r;
  r.model = c.name;
  r.context = L;
  auto& f = r.flops.terms;
  f.push_back(
      {"attention projections (fp8: wq_a, wq_b, wkv, wo_b)", "08 §8.3 / 00 §0.6", v4_flops_attn_projections(c), w.fp8});
  f.push_back({"attention projections (bf16 grouped wo_a)", "08 §8.3", v4_flops_wo_a(c), w.bf16});
  f.push_back({"compressor (wkv, wgate)", "08 §8.3 / 02 §2.6", v4_flops_compressor(c), w.other_lin});
  f.push_back({"indexer projections (wq_b, weights_proj, compressor)", "08 §8.3 / 02 §2.7",
               v4_flops_indexer_projections(c), w.fp8});
  f.push_back({"indexer scores (fp4 x fp4)", "08 §8.3", v4_flops_indexer_scores(c, L), w.fp4_fp4});
  f.push_back({"core attention (window + selected/compressed)", "08 §8.3", v4_flops_core_attention(c, L), w.bf16});
  f.push_back({"MoE (gate, routed + shared experts)", "08 §8.3 / 03", v4_flops_moe(c), w.fp8});
  f.push_back({"mHC (hc_attn_fn, hc_ffn_fn)", "08 §8.3 / 04", v4_flops_mhc(c), w.other_lin});
  f.push_back({"head (hc_head_fn, head)", "08 §8.3 / 05", v4_flops_head(c), w.other_lin});

  const LayerCounts n = layer_counts(c);
  const bool m = o.include_mtp;
  const double win_entries = D(std::min(L, c.window_size)) * D(m ? c.compress_ratios.size() : c.n_layers);
  auto& k = r.kv.terms;
  k.push_back(
      {"window (SWA ring, all layers)", "08 §8.2", win_entries, v4_kv_window_bytes(c, L, o.with_scale_bytes, m)});
  k.push_back({"CSA compressed entries (m=4)", "08 §8.2", D(n.csa + (m ? n.mtp_csa : 0)) * D(L / 4),
               v4_kv_compressed_bytes(c, 4, L, o.with_scale_bytes, m)});
  k.push_back({"HCA compressed entries (m=128)", "08 §8.2", D(n.hca + (m ? n.mtp_hca : 0)) * D(L / 128),
               v4_kv_compressed_bytes(c, 128, L, o.with_scale_bytes, m)});
  k.push_back({"indexer keys (fp4, CSA)", "08 §8.2", D(n.csa + (m ? n.mtp_csa : 0)) * D(L / 4),
               v4_kv_indexer_bytes(c, L, o.with_scale_bytes, m)});
  r.kv.state_bytes = v4_state_bytes(c, m);
  return r;
}

CostReport evaluate_v32(const V32Dims& v, std::int64_t L, const CostOptions& o) {
  const PrecisionWeights& w = o.weights;
  CostReport r;
  r.model = "v3.2";
  r.context = L;
  auto& f = r.flops.terms;
  f.push_back({"attention projections (MLA, fp8)", "08 §8.3", 2.0 * D(v.n_layers) * v32_attn_params(v), w.fp8});
  f.push_back(
      {"indexer projections (wq_b, wk, weights_proj)", "08 §8.3", 2.0 * D(v.n_layers) * v32_indexer_params(v), w.fp8});
  f.push_back({"indexer scores (fp8, all L tokens)", "08 §8.3", v32_flops_indexer_scores(v, L), w.fp8});
  f.push_back({"core attention (MLA, top-2048)", "08 §8.3", v32_flops_core_attention(v, L), w.bf16});
  f.push_back({"MoE / dense FFN", "08 §8.3",
               2.0 * (D(v.n_dense_layers) * v32_dense_layer_params(v) +
                      D(v.n_layers - v.n_dense_layers) * v32_moe_layer_params(v)),
               w.fp8});
  f.push_back({"head", "08 §8.3", 2.0 * v32_head_params(v), w.other_lin});
  auto& k = r.kv.terms;
  k.push_back(
      {"MLA latent entries (656 B)", "08 §8.1-8.2", D(v.n_layers) * D(L), D(v.n_layers) * D(v.mla_entry_bytes) * D(L)});
  k.push_back({"indexer keys (fp8, 132 B)", "08 §8.1-8.2", D(v.n_layers) * D(L),
               D(v.n_layers) * D(v.indexer_entry_bytes) * D(L)});
  (void)o;
  return r;
}

CostReport evaluate_gqa(const GqaDims& g, std::int64_t L, const CostOptions& o) {
  CostReport r;
  r.model = "gqa8";
  r.context = L;
  r.flops.terms.push_back({"linear layers (as " + g.paired_with + ")", "[C] cost_model.hpp", g.linear_flops, 1.0});
  r.flops.terms.push_back(
      {"core attention (full, bf16)", "[C] cost_model.hpp", gqa_flops_attention(g, L), o.weights.bf16});
  r.kv.terms.push_back({"K and V (bf16, 8 heads x 128)", "08 §8.2", D(g.n_layers) * D(L), gqa_kv_bytes(g, L)});
  return r;
}

}  // namespace

CostReport evaluate(const ModelDesc& m, std::int64_t context, const CostOptions& opt) {
  if (context <= 0) throw std::invalid_argument("context must be positive");
  CostReport r;
  switch (m.arch) {
    case Arch::kV4:
      r = evaluate_v4(m.v4, context, opt);
      break;
    case Arch::kV32:
      r = evaluate_v32(m.v32, context, opt);
      break;
    case Arch::kGqa:
      r = evaluate_gqa(m.gqa, context, opt);
      break;
  }
  r.model = m.name;
  return r;
}

// ------------------------------------------------------------------------------- resolution

ModelDesc v4_model(const ModelConfig& cfg) {
  ModelDesc d;
  d.arch = Arch::kV4;
  d.name = cfg.name;
  d.v4 = cfg;
  return d;
}

ModelDesc v32_model() {
  ModelDesc d;
  d.arch = Arch::kV32;
  d.name = "v3.2";
  return d;
}

ModelDesc gqa8_model(const ModelConfig& paired) {
  ModelDesc d;
  d.arch = Arch::kGqa;
  d.name = "gqa8";
  d.gqa.n_layers = paired.n_layers;
  d.gqa.n_q_heads = paired.n_heads;
  d.gqa.linear_flops = 2.0 * v4_active_params(paired);
  d.gqa.paired_with = paired.name;
  return d;
}

ModelDesc resolve_model(const std::string& name, const ModelDesc* paired) {
  if (name == "v3.2" || name == "v32" || name == "deepseek-v3.2") return v32_model();
  if (name == "gqa8") {
    if (paired != nullptr && paired->arch == Arch::kV4) return gqa8_model(paired->v4);
    return gqa8_model(builtin_config("v4-pro"));
  }
  if (name.rfind("gqa8:", 0) == 0) {
    const std::string inner = name.substr(5);
    if (inner.empty()) throw std::invalid_argument("gqa8: needs a V4 config after the colon, e.g. gqa8:v4-flash");
    return gqa8_model(load_config(inner));
  }
  bool builtin = false;
  for (const auto& n : builtin_config_names()) builtin = builtin || n == name;
  std::error_code ec;  // exists(), not opening it: opening a FIFO would wait for a writer
  if (!builtin && !std::filesystem::exists(name, ec)) {
    std::string known = "v3.2, gqa8, gqa8:<config>";
    for (const auto& n : builtin_config_names()) known += ", " + n;
    throw std::invalid_argument("unknown config '" + name + "': not one of " + known + ", and not a readable file");
  }
  return v4_model(load_config(name));
}

std::int64_t parse_context(const std::string& text) {
  if (text.empty()) throw std::invalid_argument("empty context length");
  std::size_t i = 0;
  std::int64_t v = 0;
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    const std::int64_t digit = text[i] - '0';
    if (v > (kMax - digit) / 10) throw std::invalid_argument("context length '" + text + "' overflows");
    v = v * 10 + digit;
    ++i;
  }
  if (i == 0)
    throw std::invalid_argument("context length '" + text + "' must start with a number (e.g. 1M, 128K, 4096)");
  std::int64_t mult = 1;
  if (i < text.size()) {
    const char s = static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
    if (s == 'K')
      mult = 1024;
    else if (s == 'M')
      mult = 1024 * 1024;
    else if (s == 'G')
      mult = std::int64_t{1024} * 1024 * 1024;
    else
      throw std::invalid_argument("context length '" + text + "': unknown suffix (use K, M or G)");
    ++i;
  }
  if (i != text.size()) throw std::invalid_argument("context length '" + text + "': trailing characters");
  if (v == 0) throw std::invalid_argument("context length must be positive");
  if (v > kMax / mult) throw std::invalid_argument("context length '" + text + "' overflows");
  return v * mult;
}

}  // namespace dsv4::cost
