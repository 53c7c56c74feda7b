// spec 00 §0.5.4 (resource limits); the parameter shapes are those of spec 00 §0.6.
#include "dsv4/config/resource_limits.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace dsv4 {

namespace {

// Bytes per parameter of each way the reference holds a weight.
struct ParamBytes {
  double linear;  // the config's Linear dtype: fp8 codes + 128×128 e8m0 scales, or bf16
  double expert;  // the experts' dtype: fp4 codes + 1×32 scales, fp8 or bf16
  double wo_a;    // bf16, held twice (the weight and its per-group copies, attention.cpp)
  double gate;    // bf16, held with its fp32 widening (gate.cpp)
  double bf16, fp32, f64;
};

double dtype_bytes(const std::string& dtype) {
  if (dtype == "fp4") return 0.5 + 1.0 / 32.0;
  if (dtype == "fp8") return 1.0 + 1.0 / (128.0 * 128.0);
  return 2.0;
}

// What the model holds (ref/model: every Linear in its storage precision, LinearWeight; vectors,
// the hyper-connection matrices, ape and the embedding as float64).
ParamBytes resident_bytes(const ModelConfig& c) {
  return {dtype_bytes(c.dtype), dtype_bytes(c.expert_dtype), 4.0, 6.0, 2.0, 4.0, 8.0};
}

// The same parameters as the weights' content hash serialises them (model_weight_tensors as
// stored: the Linears in their dtypes, float64 as fp32).
ParamBytes hashed_bytes(const ModelConfig& c) {
  return {dtype_bytes(c.dtype), dtype_bytes(c.expert_dtype), 2.0, 2.0, 2.0, 4.0, 4.0};
}

// Bytes (parameters weighted by b) of one block (attention + MoE + hyper-connections) with
// compress ratio r (the shapes of spec 00 §0.6).
double block_params(const ModelConfig& c, std::int64_t r, bool hash, const ParamBytes& b) {
  const double d = static_cast<double>(c.dim), H = static_cast<double>(c.n_heads);
  const double hd = static_cast<double>(c.head_dim), dc = static_cast<double>(c.q_lora_rank);
  const double G = static_cast<double>(c.o_groups), dg = static_cast<double>(c.o_lora_rank);
  const double hc = static_cast<double>(c.hc_mult), E = static_cast<double>(c.n_routed_experts);
  const double de = static_cast<double>(c.moe_inter_dim);
  const double cI = static_cast<double>(c.index_head_dim), nI = static_cast<double>(c.index_n_heads);
  double p = b.f64 * (2.0 * ((2.0 + hc) * hc * hc * d + (2.0 + hc) * hc + 3.0) + 2.0 * d);  // hc_attn/hc_ffn, norms
  p += b.linear * (dc * d + H * hd * dc + hd * d + d * G * dg) + b.f64 * (dc + hd + H);     // wq_a, wq_b, wkv, wo_b
  p += b.wo_a * G * dg * (H * hd / G);                                                      // wo_a
  if (r > 0) {
    const double coff = r == 4 ? 2.0 : 1.0;
    p += b.f64 * (static_cast<double>(r) * coff * hd + hd) + b.fp32 * 2.0 * coff * hd * d;  // compressor
  }
  if (r == 4)
    p += b.linear * nI * cI * dc + b.bf16 * nI * d + b.f64 * (4.0 * 2.0 * cI + cI) + b.fp32 * 2.0 * 2.0 * cI * d;
  p += b.gate * E * d + b.f64 * (hash ? static_cast<double>(c.vocab_size * c.n_activated_experts) : E);  // gate
  p += b.expert * (E + static_cast<double>(c.n_shared_experts)) * 3.0 * de * d;                          // experts
  return p;
}

double model_params(const ModelConfig& c, const ParamBytes& b) {
  const double d = static_cast<double>(c.dim), hc = static_cast<double>(c.hc_mult);
  const double V = static_cast<double>(c.vocab_size);
  double p = b.f64 * V * d + b.fp32 * V * d + b.f64 * (d + hc * hc * d + hc + 1.0);  // embed, head, norm, hc_head
  for (std::int64_t l = 0; l < c.n_layers + c.n_mtp_layers; ++l) {
    const std::int64_t r = l < static_cast<std::int64_t>(c.compress_ratios.size()) ? c.compress_ratio(l) : 0;
    p += block_params(c, r, l < c.n_hash_layers, b);
    if (l >= c.n_layers)
      p += b.linear * 2.0 * d * d + b.f64 * (3.0 * d + hc * hc * d + hc + 1.0);  // MTP e_proj, h_proj, norms, hc_head
  }
  return p;
}

// The program, its libraries and the golden writer's buffers, whatever the run.
constexpr double kProgramBytes = 40e6;

// The largest single weight matrix (elements): exact mode decodes one at a time to float64.
double largest_weight(const ModelConfig& c) {
  const double d = static_cast<double>(c.dim), H = static_cast<double>(c.n_heads);
  const double hd = static_cast<double>(c.head_dim), dc = static_cast<double>(c.q_lora_rank);
  const double dg = static_cast<double>(c.o_lora_rank), G = static_cast<double>(c.o_groups);
  return std::max({static_cast<double>(c.vocab_size) * d, H * hd * dc, d * G * dg, G * dg * (H * hd / G),
                   3.0 * static_cast<double>(c.moe_inter_dim) * d});
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
  // Weights: what the model holds (every Linear in its storage precision: fp4/fp8 codes with their
  // scales, bf16, fp32; the rest float64) plus, while they are made, the tensors their content
  // hash reads. One copy at a time (golden generate makes them again for its second mode).
  e.weights = model_params(c, resident_bytes(c)) + model_params(c, hashed_bytes(c));
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
  // Exact mode decodes one weight at a time to float64 (LinearWeight::values). And the program
  // itself: 14 MB resident for `dsv4 --help`, tiny's golden of 8 tokens 75 MB at its peak.
  e.working = B * L * widest * 8.0 * 4.0 + B * L * (L / 4.0) * static_cast<double>(c.index_n_heads > 0) * 8.0 * 2.0 +
              largest_weight(c) * 8.0 + kProgramBytes;
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
