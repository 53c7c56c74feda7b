// spec 00 §0.5.4 (resource limits); the parameter shapes are those of spec 00 §0.6.
#include "dsv4/config/resource_limits.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace dsv4 {

namespace {

// Parameters of one block (attention + MoE + hyper-connections) with compress ratio r.
double block_params(const ModelConfig& c, std::int64_t r, bool hash) {
  const double d = static_cast<double>(c.dim), H = static_cast<double>(c.n_heads);
  const double hd = static_cast<double>(c.head_dim), dc = static_cast<double>(c.q_lora_rank);
  const double G = static_cast<double>(c.o_groups), dg = static_cast<double>(c.o_lora_rank);
  const double hc = static_cast<double>(c.hc_mult), E = static_cast<double>(c.n_routed_experts);
  const double de = static_cast<double>(c.moe_inter_dim);
  const double cI = static_cast<double>(c.index_head_dim), nI = static_cast<double>(c.index_n_heads);
  double p = 2.0 * ((2.0 + hc) * hc * hc * d + (2.0 + hc) * hc + 3.0) + 2.0 * d;          // hc_attn/hc_ffn, norms
  p += dc * d + dc + H * hd * dc + hd * d + hd + G * dg * (H * hd / G) + d * G * dg + H;  // attention
  if (r > 0) {
    const double coff = r == 4 ? 2.0 : 1.0;
    p += static_cast<double>(r) * coff * hd + 2.0 * coff * hd * d + hd;  // compressor
  }
  if (r == 4) p += nI * cI * dc + nI * d + 4.0 * 2.0 * cI + 2.0 * 2.0 * cI * d + cI;    // indexer
  p += E * d + (hash ? static_cast<double>(c.vocab_size * c.n_activated_experts) : E);  // gate
  p += (E + static_cast<double>(c.n_shared_experts)) * 3.0 * de * d;                    // experts
  return p;
}

double model_params(const ModelConfig& c) {
  const double d = static_cast<double>(c.dim), hc = static_cast<double>(c.hc_mult);
  double p = 2.0 * static_cast<double>(c.vocab_size) * d + d + hc * hc * d + hc + 1.0;  // embed, head, norm, hc_head
  for (std::int64_t l = 0; l < c.n_layers + c.n_mtp_layers; ++l) {
    const std::int64_t r = l < static_cast<std::int64_t>(c.compress_ratios.size()) ? c.compress_ratio(l) : 0;
    p += block_params(c, r, l < c.n_hash_layers);
    if (l >= c.n_layers) p += 2.0 * d * d + 3.0 * d + hc * hc * d + hc + 1.0;  // MTP e_proj, h_proj, norms, hc_head
  }
  return p;
}

}  // namespace

std::string MemoryEstimate::largest_term() const {
  const double m = std::max({weights, caches, outputs, working});
  if (m == weights)
    return "the weights (lower dim, vocab_size, n_routed_experts, moe_inter_dim, n_layers or the head sizes)";
  if (m == caches) return "the KV caches (lower max_seq_len or the batch)";
  if (m == outputs) return "the recorded outputs (lower the prompt length, the decode steps or the batch)";
  return "one module's working set (lower the prompt length or the batch)";
}

MemoryEstimate estimate_run_memory(const ModelConfig& c, std::int64_t batch, std::int64_t tokens, int modes) {
  MemoryEstimate e;
  const double B = static_cast<double>(std::max<std::int64_t>(batch, 1));
  const double L = static_cast<double>(std::max<std::int64_t>(tokens, 1));
  const double M = static_cast<double>(std::max(modes, 1));
  const double d = static_cast<double>(c.dim), hc = static_cast<double>(c.hc_mult);
  const double H = static_cast<double>(c.n_heads), hd = static_cast<double>(c.head_dim);
  const double V = static_cast<double>(c.vocab_size), E = static_cast<double>(c.n_routed_experts);
  const double S = static_cast<double>(c.max_seq_len), cI = static_cast<double>(c.index_head_dim);
  const double layers = static_cast<double>(c.n_layers + c.n_mtp_layers);
  // Weights: storage (mostly ≤ 1 byte: fp8, fp4) + the exact float64 value of every element (10
  // bytes per parameter held), and while they are made the generator's temporaries: 20 bytes per
  // parameter at the peak (measured: flash-slice, 1.43 G parameters, killed at 24.3 GB RSS while
  // still making them; tiny, golden generate of 142 tokens: peak RSS 296 MB, estimate 350 MB).
  // Golden generate holds one copy at a time (it makes them again for its second mode).
  e.weights = model_params(c) * 20.0;
  // Caches per sequence and layer: window + compressed entries (+ indexer keys) and the
  // compressor's state, float64, with exact mode's bounds beside the values.
  double cache = 0;
  for (std::int64_t l = 0; l < c.n_layers + c.n_mtp_layers; ++l) {
    const std::int64_t r = l < static_cast<std::int64_t>(c.compress_ratios.size()) ? c.compress_ratio(l) : 0;
    double rows = static_cast<double>(c.window_size) * hd;
    if (r > 0) rows += (S / static_cast<double>(r)) * hd + 2.0 * static_cast<double>(r) * (d + 2.0 * hd);
    if (r == 4) rows += (S / 4.0) * cI + 8.0 * (d + 2.0 * cI);
    cache += rows;
  }
  e.caches = cache * 8.0 * 2.0 * B;
  // Recorded outputs per token: every module output of every layer (spec: the output table) and
  // the logits of the head and the MTP heads, float64, for every mode.
  const double per_layer = 4.0 * hc * d + 6.0 * d + static_cast<double>(c.q_lora_rank) + 2.0 * hd +
                           static_cast<double>(c.o_groups * c.o_lora_rank) + 3.0 * E +
                           3.0 * static_cast<double>(c.index_topk + c.window_size) + 2.0 * hc * hc;
  e.outputs = M * B * L * (layers * per_layer + (1.0 + static_cast<double>(c.n_mtp_layers)) * (V + 2.0 * d)) * 8.0;
  // Working set of the widest module call over the whole prompt: the head's logits, the query and
  // output heads of attention, the expert intermediates, the indexer's score matrix.
  const double widest = std::max({V, H * hd, hc * d * (2.0 + hc), E + 3.0 * static_cast<double>(c.moe_inter_dim)});
  e.working = B * L * widest * 8.0 * 4.0 + B * L * (L / 4.0) * static_cast<double>(c.index_n_heads > 0) * 8.0 * 2.0;
  return e;
}

std::optional<double> available_memory_bytes() {
  if (const char* env = std::getenv("DSV4_MEMORY_LIMIT"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end != env && *end == '\0' && v >= 0) return v;
  }
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream ls(line.substr(13));
    double kb = 0;
    if (ls >> kb) return kb * 1024.0;
  }
  return std::nullopt;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"bytes", "kB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (bytes >= 1000.0 && u < 6) {
    bytes /= 1000.0;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.3g %s", bytes, units[u]);
  return buf;
}

void check_memory(const MemoryEstimate& e, const std::string& what) {
  const std::optional<double> avail = available_memory_bytes();
  if (!avail || e.total() <= *avail) return;
  throw ResourceError("not enough memory: " + what + " needs about " + human_bytes(e.total()) + " (weights " +
                      human_bytes(e.weights) + ", caches " + human_bytes(e.caches) + ", outputs " +
                      human_bytes(e.outputs) + ", working " + human_bytes(e.working) + "), " + human_bytes(*avail) +
                      " available; the largest part is " + e.largest_term());
}

}  // namespace dsv4
