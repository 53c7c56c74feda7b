// Tests of the spec 08 efficiency model (ref/cost), the KV-cache allocator (ref/cache) and
// `dsv4 cost`.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "dsv4/cache/kv_cache.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/cost/cost_model.hpp"

namespace {

using namespace dsv4;
using namespace dsv4::cost;

constexpr std::int64_t k1M = std::int64_t{1} << 20;

double flops_ratio(const std::string& a, const std::string& b, std::int64_t L) {
  const ModelDesc ma = resolve_model(a);
  const ModelDesc mb = resolve_model(b, &ma);
  return evaluate(ma, L).flops.equiv_total() / evaluate(mb, L).flops.equiv_total();
}

double kv_ratio(const std::string& a, const std::string& b, std::int64_t L) {
  const ModelDesc ma = resolve_model(a);
  const ModelDesc mb = resolve_model(b, &ma);
  return evaluate(ma, L).kv.total() / evaluate(mb, L).kv.total();
}

// ------------------------------------------------------------------ the report's figure at 1M

// Report (abstract, §1, Figure 1): V4-Pro 27% of V3.2's single-token FLOPs ("3.7x lower") and 10%
// of its KV cache ("9.5x smaller"); V4-Flash 10% ("9.8x") and 7% ("13.7x"). The report rounds
// percentages to whole numbers and factors to one decimal.
// The figure's three numbers for `model` against V3.2 at 1M: FLOPs and KV as whole percentages,
// the FLOPs factor to one decimal. Returns the KV ratio, whose factor each test checks itself.
double expect_figure_vs_v32(const std::string& model, long flops_percent, long kv_percent, double flops_factor) {
  const double f = flops_ratio(model, "v3.2", k1M);
  const double k = kv_ratio(model, "v3.2", k1M);
  EXPECT_EQ(std::lround(100 * f), flops_percent) << model << " " << f;
  EXPECT_EQ(std::lround(100 * k), kv_percent) << model << " " << k;
  EXPECT_NEAR(1 / f, flops_factor, 0.05) << model << " " << 1 / f;
  return k;
}

TEST(CostReport, ProVsV32At1M) {
  // model: 27.14% FLOPs, 10.46% KV, 3.68x fewer FLOPs
  const double k = expect_figure_vs_v32("v4-pro", 27, 10, 3.7);
  // Model: 9.56x smaller, which rounds to 9.6, not the report's "9.5x". The report's factor is
  // consistent with truncation (or with an entry a few bytes larger, e.g. padding of the 583-byte
  // entry, which the report does not give). Without scale bytes the factor is 9.72x, so the scale
  // bytes are needed to come this close. Discrepancy: 0.06x (0.6%). Not tuned.
  EXPECT_NEAR(1 / k, 9.5, 0.1) << 1 / k;
  EXPECT_NEAR(1 / k, 9.56, 0.01) << 1 / k;
}

TEST(CostReport, FlashVsV32At1M) {
  // model: 10.21% FLOPs, 7.31% KV, 9.80x fewer FLOPs
  const double k = expect_figure_vs_v32("v4-flash", 10, 7, 9.8);
  EXPECT_NEAR(1 / k, 13.7, 0.05) << 1 / k;  // model: 13.69x
}

// "approximately 2%" of a BF16 GQA8 (head dim 128) baseline of the same depth.
TEST(CostReport, KvVsGqa8At1M) {
  const double pro = kv_ratio("v4-pro", "gqa8", k1M);
  const double flash = kv_ratio("v4-flash", "gqa8", k1M);
  EXPECT_EQ(std::lround(100 * pro), 2) << pro;      // model: 2.01%
  EXPECT_EQ(std::lround(100 * flash), 2) << flash;  // model: 1.99%
  EXPECT_NEAR(pro, 0.0201, 0.0001);
  EXPECT_NEAR(flash, 0.0199, 0.0001);
}

// Raw (unweighted) FLOPs do not reproduce Flash's 10% (spec 08 §8.3 table: 12.1%): the report's
// "equivalent FP8 FLOPs" weighting is needed. Guards against silently changing the accounting.
TEST(CostReport, RawFlopsDifferFromEquivalent) {
  const ModelDesc pro = resolve_model("v4-pro"), flash = resolve_model("v4-flash"), v32 = resolve_model("v3.2");
  const double v32raw = evaluate(v32, k1M).flops.raw_total();
  EXPECT_NEAR(evaluate(pro, k1M).flops.raw_total() / v32raw, 0.262, 0.001);
  EXPECT_NEAR(evaluate(flash, k1M).flops.raw_total() / v32raw, 0.121, 0.001);
}

// Spec 08 §8.3 uses the published 37B for V3.2's activated parameters; this model computes 37.48B
// from the shapes. With 37B substituted, the spec's table values come out exactly.
TEST(CostReport, SpecTableWithPublished37B) {
  const V32Dims v;
  const double v32 =
      evaluate(v32_model(), k1M).flops.equiv_total() - 2 * v32_active_params(v) + 2 * v.published_active_params;
  EXPECT_NEAR(v32 / 1e12, 1.192, 0.0005);
  const double pro = evaluate(resolve_model("v4-pro"), k1M).flops.equiv_total();
  const double flash = evaluate(resolve_model("v4-flash"), k1M).flops.equiv_total();
  EXPECT_NEAR(pro / 1e12, 0.324, 0.0005);
  EXPECT_NEAR(flash / 1e12, 0.122, 0.0005);
  EXPECT_NEAR(pro / v32, 0.272, 0.0005);
  EXPECT_NEAR(flash / v32, 0.102, 0.0005);
}

// Spec 08 §8.3: "At 128K the same accounting gives Pro 54.9% and Flash 16.3%" (with 37B); the
// computed 37.48B moves them by < 0.2 points. KV at 128K: Pro 10.5%, Flash 7.35%.
TEST(CostReport, At128K) {
  const std::int64_t L = 128 * 1024;
  EXPECT_NEAR(flops_ratio("v4-pro", "v3.2", L), 0.549, 0.003);
  EXPECT_NEAR(flops_ratio("v4-flash", "v3.2", L), 0.163, 0.002);
  EXPECT_NEAR(kv_ratio("v4-pro", "v3.2", L), 0.105, 0.001);
  EXPECT_NEAR(kv_ratio("v4-flash", "v3.2", L), 0.0735, 0.0005);
}

// The advantage grows with context (report: "the advantage grows"; spec 08 §8.3).
TEST(CostReport, RatiosFallWithContext) {
  double prev = 2;
  for (std::int64_t L = 4096; L <= k1M; L *= 2) {
    const double f = flops_ratio("v4-pro", "v3.2", L);
    EXPECT_LT(f, prev) << L;
    prev = f;
  }
}

// --------------------------------------------------------------------- individual terms

TEST(CostTerms, EntryBytes) {
  const ModelConfig pro = builtin_config("v4-pro");
  EXPECT_EQ(cache::main_entry_bytes(pro), 448 + 7 + 128);
  EXPECT_EQ(cache::main_entry_bytes(pro, false), 576);
  EXPECT_EQ(cache::indexer_entry_bytes(pro), 64 + 4);
  EXPECT_EQ(cache::indexer_entry_bytes(pro, false), 64);
  const ModelConfig tiny = builtin_config("tiny");  // head_dim 128: 64 nope + 64 rope
  EXPECT_EQ(cache::main_entry_bytes(tiny), 64 + 1 + 128);
}

TEST(CostTerms, LayerCounts) {
  const LayerCounts p = layer_counts(builtin_config("v4-pro"));
  EXPECT_EQ(p.csa, 30);
  EXPECT_EQ(p.hca, 31);
  EXPECT_EQ(p.swa, 0);
  EXPECT_EQ(p.mtp_swa, 1);
  const LayerCounts f = layer_counts(builtin_config("v4-flash"));
  EXPECT_EQ(f.csa, 21);
  EXPECT_EQ(f.hca, 20);
  EXPECT_EQ(f.swa, 2);
  EXPECT_EQ(f.mtp_swa, 1);
}

// Hand count from the shapes of spec 00 §0.6 (Pro): per layer attention 1536·7168 + 65536·1536 +
// 512·7168 + 7168·16384 (fp8) + 16384·4096 (wo_a); MoE 384·7168 + 7·3·7168·3072; mHC 2·24·28672;
// CSA extra 2·1024·7168 + 8192·1536 + 64·7168 + 2·256·7168; HCA extra 2·512·7168; head
// 129280·7168 + 4·28672.
TEST(CostTerms, ActiveParamsPro) {
  const ModelConfig c = builtin_config("v4-pro");
  const double attn = 1536.0 * 7168 + 65536.0 * 1536 + 512.0 * 7168 + 7168.0 * 16384;
  EXPECT_EQ(v4_attn_fp8_params(c), attn);
  EXPECT_EQ(v4_attn_wo_a_params(c), 16384.0 * 4096);
  const double moe = 384.0 * 7168 + 7 * 3.0 * 7168 * 3072;
  EXPECT_EQ(v4_moe_params(c), moe);
  const double mhc = 2 * 24.0 * 28672;
  const double csa = 2 * 1024.0 * 7168 + 8192.0 * 1536 + 64.0 * 7168 + 2 * 256.0 * 7168;
  const double hca = 2 * 512.0 * 7168;
  const double head = 129280.0 * 7168 + 4.0 * 28672;
  const double total = 61 * (attn + 16384.0 * 4096 + moe + mhc) + 30 * csa + 31 * hca + head;
  EXPECT_EQ(v4_active_params(c), total);
  EXPECT_NEAR(total / 1e9, 48.85, 0.005);  // spec 08 §8.3
  EXPECT_NEAR(v4_active_params(builtin_config("v4-flash")) / 1e9, 13.27, 0.005);
}

TEST(CostTerms, FlopsTermsProAt1M) {
  const ModelConfig c = builtin_config("v4-pro");
  // Σ_CSA 2·n_I·c_I·⌊L/4⌋ = 30·2·64·128·262144
  EXPECT_EQ(v4_flops_indexer_scores(c, k1M), 30.0 * 2 * 64 * 128 * 262144);
  // 4·c·H·(30·(128 + min(262144, 1024)) + 31·(128 + 8192))
  EXPECT_EQ(v4_flops_core_attention(c, k1M), 4.0 * 512 * 128 * (30 * (128 + 1024) + 31 * (128 + 8192)));
  EXPECT_EQ(v4_flops_wo_a(c), 2.0 * 61 * 16384 * 4096);
  EXPECT_EQ(v4_flops_compressor(c), 2.0 * (30 * 2 * 1024.0 * 7168 + 31 * 2 * 512.0 * 7168));
  EXPECT_EQ(v4_flops_head(c), 2.0 * (129280.0 * 7168 + 4.0 * 28672));
  EXPECT_EQ(v4_flops_mhc(c), 2.0 * 61 * 2 * 24 * 28672);
  // Spec 08 §8.3 breakdown for Pro at 1M: linear 0.106 T, indexer 0.064 T, core attention 0.153 T.
  const CostReport r = evaluate(resolve_model("v4-pro"), k1M);
  EXPECT_NEAR(r.flops.equiv_of("indexer scores") / 1e12, 0.064, 0.0005);
  EXPECT_NEAR(r.flops.equiv_of("core attention") / 1e12, 0.153, 0.0005);
  EXPECT_NEAR((r.flops.equiv_total() - r.flops.equiv_of("indexer scores") - r.flops.equiv_of("core attention")) / 1e12,
              0.106, 0.0005);
}

TEST(CostTerms, AttendedEntries) {
  const ModelConfig c = builtin_config("v4-flash");
  EXPECT_EQ(v4_attended_entries(c, 0, 100), 100);
  EXPECT_EQ(v4_attended_entries(c, 0, 5000), 128);
  EXPECT_EQ(v4_attended_entries(c, 4, 100), 100 + 25);
  EXPECT_EQ(v4_attended_entries(c, 4, 5000), 128 + 512);  // top-k caps at index_topk
  EXPECT_EQ(v4_attended_entries(c, 128, 100), 100);
  EXPECT_EQ(v4_attended_entries(c, 128, 5000), 128 + 39);
}

TEST(CostTerms, KvPro) {
  const ModelConfig c = builtin_config("v4-pro");
  // 30·(583·128 + 262144·651) + 31·(583·128 + 8192·583)
  EXPECT_EQ(v4_kv_bytes(c, k1M), 30.0 * (583 * 128 + 262144.0 * 651) + 31.0 * (583 * 128 + 8192.0 * 583));
  EXPECT_EQ(v4_kv_bytes(c, k1M), 5272278400.0);
  // Short context: only min(L, 128) window entries, ⌊L/4⌋, ⌊L/128⌋.
  EXPECT_EQ(v4_kv_bytes(c, 10), 61.0 * 10 * 583 + 30.0 * 2 * 651);
  // With the MTP block: + one SWA window.
  EXPECT_EQ(v4_kv_bytes(c, k1M, true, true) - v4_kv_bytes(c, k1M), 583.0 * 128);
}

// Spec 08 §8.2: asymptotic bytes per token Pro 30·651/4 + 31·583/128 = 5023.70, Flash
// 21·651/4 + 20·583/128 = 3508.84 (exactly 3508.84375; the shared spec printed 3508.9, ref/spec/README.md errata).
TEST(CostTerms, KvAsymptoticSlope) {
  const std::int64_t L = 1 << 20;
  const auto slope = [L](const char* n) {
    const ModelConfig c = builtin_config(n);
    return (v4_kv_bytes(c, 2 * L) - v4_kv_bytes(c, L)) / static_cast<double>(L);
  };
  EXPECT_DOUBLE_EQ(slope("v4-pro"), 30 * 651 / 4.0 + 31 * 583 / 128.0);
  EXPECT_NEAR(slope("v4-pro"), 5023.7, 0.01);
  EXPECT_DOUBLE_EQ(slope("v4-flash"), 21 * 651 / 4.0 + 20 * 583 / 128.0);
}

// Report §3.5.2: SWA entries of every layer are "approximately 8 times larger" than the compressed
// CSA/HCA main entries (spec 08 §8.2: 7.88x Pro, 7.95x Flash).
TEST(CostTerms, SwaVsCompressedVolume) {
  for (const auto& [name, expect] : {std::pair{"v4-pro", 7.88}, std::pair{"v4-flash", 7.95}}) {
    const ModelConfig c = builtin_config(name);
    const double swa_per_token = static_cast<double>(c.n_layers) * 583;
    const double comp = (v4_kv_compressed_bytes(c, 4, k1M) + v4_kv_compressed_bytes(c, 128, k1M)) / k1M;
    EXPECT_NEAR(swa_per_token / comp, expect, 0.005) << name;
  }
}

TEST(CostTerms, V32) {
  const V32Dims v;
  EXPECT_EQ(v32_kv_bytes(v, 1000), 48068.0 * 1000);
  EXPECT_EQ(v32_flops_indexer_scores(v, 1000), 61.0 * 2 * 64 * 128 * 1000);
  EXPECT_EQ(v32_flops_core_attention(v, 1000), 61.0 * 2 * 128 * (576 + 512) * 1000);
  EXPECT_EQ(v32_flops_core_attention(v, k1M), 61.0 * 2 * 128 * (576 + 512) * 2048);
  // MLA per layer: wq_a 1536·7168, wq_b 128·192·1536, wkv_a 576·7168, wkv_b 128·256·512, wo 7168·16384.
  EXPECT_EQ(v32_attn_params(v), 1536.0 * 7168 + 128.0 * 192 * 1536 + 576.0 * 7168 + 128.0 * 256 * 512 + 7168.0 * 16384);
  // Computed activated parameters (no embedding) 37.48B vs the published 37B.
  EXPECT_NEAR(v32_active_params(v) / 1e9, 37.476, 0.001);
  EXPECT_NEAR(v32_active_params(v) / v.published_active_params, 1.0, 0.015);
}

TEST(CostTerms, Gqa) {
  GqaDims g;
  g.n_layers = 61;
  EXPECT_EQ(gqa_kv_bytes(g, 1000), 4096.0 * 61 * 1000);
  const ModelDesc m = resolve_model("gqa8", nullptr);
  EXPECT_EQ(m.gqa.n_layers, 61);  // alone: V4-Pro's depth
  const ModelDesc flash = resolve_model("v4-flash");
  EXPECT_EQ(resolve_model("gqa8", &flash).gqa.n_layers, 43);
  EXPECT_EQ(resolve_model("gqa8:v4-flash").gqa.n_layers, 43);
}

TEST(CostTerms, ParseContext) {
  EXPECT_EQ(parse_context("1M"), 1048576);
  EXPECT_EQ(parse_context("1m"), 1048576);
  EXPECT_EQ(parse_context("128K"), 131072);
  EXPECT_EQ(parse_context("64k"), 65536);
  EXPECT_EQ(parse_context("4096"), 4096);
  EXPECT_EQ(parse_context("2G"), std::int64_t{2} << 30);
  for (const char* bad : {"", "M", "1.5M", "12Q", "0", "-5", "1MM", " 1M", "99999999999999999999", "9000000000000G"}) {
    EXPECT_THROW(parse_context(bad), std::invalid_argument) << bad;
  }
}

TEST(CostTerms, UnknownConfig) {
  EXPECT_THROW(resolve_model("v5-ultra"), std::invalid_argument);
  EXPECT_THROW(resolve_model("gqa8:"), std::invalid_argument);
}

// A config.json in the official format gives the same numbers as the built-in config.
TEST(CostTerms, ConfigJsonFile) {
  const auto path = std::filesystem::temp_directory_path() / "dsv4_cost_test_flash.json";
  {
    std::ofstream o(path);
    o << R"({"vocab_size":129280,"dim":4096,"moe_inter_dim":2048,"n_layers":43,"n_hash_layers":3,"n_heads":64,
      "n_routed_experts":256,"n_shared_experts":1,"n_activated_experts":6,"route_scale":1.5,"q_lora_rank":1024,
      "head_dim":512,"rope_head_dim":64,"o_groups":8,"o_lora_rank":1024,"window_size":128,"index_n_heads":64,
      "index_head_dim":128,"index_topk":512,"compress_ratios":[0,0,4,128,4,128,4,128,4,128,4,128,4,128,4,128,4,128,
      4,128,4,128,4,128,4,128,4,128,4,128,4,128,4,128,4,128,4,128,4,128,4,128,4,0]})";
  }
  const ModelDesc file = resolve_model(path.string());
  const ModelDesc builtin = resolve_model("v4-flash");
  EXPECT_EQ(evaluate(file, k1M).flops.equiv_total(), evaluate(builtin, k1M).flops.equiv_total());
  EXPECT_EQ(evaluate(file, k1M).kv.total(), evaluate(builtin, k1M).kv.total());
  std::filesystem::remove(path);
}

// --------------------------------------------------------------- KV-cache allocation check

TEST(KvCache, LayoutsTiny) {
  const ModelConfig c = builtin_config("tiny");  // ratios [0, 128, 4, 128, 4, 0, 0], window 16
  cache::KVCache kv(c, 512, 2);
  ASSERT_EQ(kv.num_layers(), 7);
  EXPECT_EQ(kv.kv(0).shape(), (std::vector<std::int64_t>{2, 16, 128}));
  EXPECT_EQ(kv.kv_state(0).numel(), 0);
  EXPECT_EQ(kv.indexer_kv(0).numel(), 0);
  EXPECT_EQ(kv.kv(1).shape(), (std::vector<std::int64_t>{2, 16 + 4, 128}));
  EXPECT_EQ(kv.kv_state(1).shape(), (std::vector<std::int64_t>{2, 128, 128}));
  EXPECT_EQ(kv.indexer_kv(1).numel(), 0);
  EXPECT_EQ(kv.kv(2).shape(), (std::vector<std::int64_t>{2, 16 + 128, 128}));
  EXPECT_EQ(kv.kv_state(2).shape(), (std::vector<std::int64_t>{2, 8, 256}));
  EXPECT_EQ(kv.score_state(2).shape(), (std::vector<std::int64_t>{2, 8, 256}));
  EXPECT_EQ(kv.indexer_kv(2).shape(), (std::vector<std::int64_t>{2, 128, 128}));
  EXPECT_EQ(kv.indexer_kv_state(2).shape(), (std::vector<std::int64_t>{2, 8, 256}));
  EXPECT_EQ(kv.kv(2).dtype(), DType::kBF16);
  EXPECT_EQ(kv.kv_state(2).dtype(), DType::kF32);
  EXPECT_EQ(kv.layout(6).kind, cache::AttnKind::kSWA);  // MTP block
  EXPECT_EQ(kv.ring_row(0, 37), 37 % 16);
  EXPECT_EQ(kv.compressed_row(2, 3), 16 + 3);
}

TEST(KvCache, InitialStateAndReset) {
  const ModelConfig c = builtin_config("tiny");
  cache::KVCache kv(c, 64, 2);
  const float ninf = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(kv.score_state_row(2, 1, 7)[255], ninf);
  EXPECT_EQ(kv.indexer_score_state_row(2, 0, 0)[0], ninf);
  EXPECT_EQ(kv.kv_state_row(2, 1, 7)[255], 0.0f);
  kv.kv_row(2, 1, kv.compressed_row(2, 1))[5] = 0x3f80;
  kv.kv_state_row(1, 1, 3)[2] = 1.5f;
  kv.score_state_row(1, 1, 3)[2] = 2.5f;
  kv.kv_state_row(1, 0, 3)[2] = 7.0f;  // other slot untouched by reset_slot(1)
  kv.reset_slot(1);
  EXPECT_EQ(kv.kv_row(2, 1, kv.compressed_row(2, 1))[5], 0);
  EXPECT_EQ(kv.kv_state_row(1, 1, 3)[2], 0.0f);
  EXPECT_EQ(kv.score_state_row(1, 1, 3)[2], ninf);
  EXPECT_EQ(kv.kv_state_row(1, 0, 3)[2], 7.0f);
  EXPECT_THROW(kv.kv_row(0, 2, 0), std::out_of_range);
  EXPECT_THROW(kv.kv_row(0, 0, 16), std::out_of_range);
}

// The issue's cross-check: the cost model's KV bytes (spec 08 §8.2 formula in L) equal the bytes the
// reference's allocation holds for the same config and context (allocated rows × deployment entry
// bytes), and the allocation's real storage equals B × (bf16 rows + fp32 compressor state).
void check_allocation(const std::string& name, std::int64_t T) {
  const ModelConfig c = builtin_config(name);
  const std::int64_t B = c.max_batch_size;
  cache::KVCache kv(c, T, B, /*include_mtp=*/true);
  const cache::CacheFootprint f = kv.footprint();
  EXPECT_EQ(static_cast<double>(f.deployment_bytes), v4_kv_bytes(c, T, true, true)) << name << " T=" << T;
  EXPECT_EQ(static_cast<double>(f.deployment_bytes_no_scales), v4_kv_bytes(c, T, false, true)) << name << " T=" << T;
  EXPECT_EQ(static_cast<double>(f.state_bytes), v4_state_bytes(c, true)) << name;
  EXPECT_EQ(kv.allocated_bytes(), B * (f.reference_bytes + f.state_bytes)) << name << " T=" << T;
  // Through the CostReport too (what `dsv4 cost --mtp` prints).
  CostOptions o;
  o.include_mtp = true;
  const CostReport r = evaluate(v4_model(c), T, o);
  EXPECT_EQ(r.kv.total(), static_cast<double>(f.deployment_bytes)) << name << " T=" << T;
  EXPECT_EQ(r.kv.state_bytes, static_cast<double>(f.state_bytes));
  // Main model only (the ratios' default) against the allocator without MTP.
  cache::KVCache main_only(c, T, 1, /*include_mtp=*/false);
  EXPECT_EQ(static_cast<double>(main_only.footprint().deployment_bytes), v4_kv_bytes(c, T)) << name << " T=" << T;
}

TEST(KvCache, CostModelEqualsAllocationTiny) {
  for (std::int64_t T : {16, 17, 31, 100, 128, 130, 300, 512, 4096}) check_allocation("tiny", T);
}

TEST(KvCache, CostModelEqualsAllocationFlashSlice) {
  for (std::int64_t T : {128, 129, 1000, 4096, 8192, 65536}) check_allocation("flash-slice", T);
}

// Below the window the reference still allocates the whole ring (as the official code does); the
// cost model counts only the min(L, n_win) entries a sequence of length L fills.
TEST(KvCache, ShortContextRingIsPreallocated) {
  const ModelConfig c = builtin_config("tiny");
  const std::int64_t T = 10, layers = 7;
  cache::KVCache kv(c, T, 1);
  EXPECT_EQ(static_cast<double>(kv.footprint().deployment_bytes) - v4_kv_bytes(c, T, true, true),
            static_cast<double>(layers * (16 - T) * cache::main_entry_bytes(c)));
}

// ----------------------------------------------------------------------------------- CLI

struct CliRun {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream i(p);
  std::stringstream s;
  s << i.rdbuf();
  return s.str();
}

CliRun run_cli(const std::string& args) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto out = dir / "dsv4_cost_test.out", err = dir / "dsv4_cost_test.err";
  const std::string cmd = std::string("\"") + DSV4_CLI_PATH + "\" " + args + " >" + out.string() + " 2>" + err.string();
  const int st = std::system(cmd.c_str());
  CliRun r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

TEST(CostCli, JsonFields) {
  const CliRun r = run_cli("cost --config v4-pro --context 1M --vs v3.2 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("context").get<std::int64_t>(), k1M);
  EXPECT_EQ(j.at("config").get<std::string>(), "v4-pro");
  EXPECT_NEAR(j.at("flops_ratio").get<double>(), 0.2714, 0.0001);
  EXPECT_NEAR(j.at("kv_ratio").get<double>(), 0.1046, 0.0001);
  EXPECT_TRUE(j.contains("flops_ratio_raw"));
  EXPECT_EQ(j.at("vs").at("config").get<std::string>(), "v3.2");
  EXPECT_GT(j.at("flops").at("terms").size(), 5u);
  EXPECT_GT(j.at("kv_bytes").at("total").get<double>(), 5e9);

  const CliRun alone = run_cli("cost --config v4-flash --context 128K --json");
  ASSERT_EQ(alone.rc, 0) << alone.err;
  const auto ja = nlohmann::json::parse(alone.out);
  EXPECT_FALSE(ja.contains("flops_ratio"));
  EXPECT_EQ(ja.at("context").get<std::int64_t>(), 131072);
}

TEST(CostCli, TableAndPlot) {
  const auto svg = std::filesystem::temp_directory_path() / "dsv4_cost_test.svg";
  std::filesystem::remove(svg);
  const CliRun r = run_cli("cost --config v4-flash --context 1M --vs v3.2 --plot " + svg.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("KV cache"), std::string::npos);
  EXPECT_NE(r.out.find("7.31%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("10.21%"), std::string::npos) << r.out;
  const std::string s = slurp(svg);
  EXPECT_EQ(s.rfind("<svg", 0), 0u);
  EXPECT_NE(s.find("</svg>"), std::string::npos);
  EXPECT_NE(s.find("context length"), std::string::npos);
  EXPECT_NE(s.find("v4-flash vs v3.2"), std::string::npos);
  EXPECT_NE(s.find("KV-cache ratio"), std::string::npos);
  EXPECT_NE(s.find("<polyline"), std::string::npos);
  std::filesystem::remove(svg);
}

TEST(CostCli, BadInputExit2) {
  for (const char* args : {"cost --config v5-ultra", "cost --context 12Q", "cost --context 0", "cost --vs nothing",
                           "cost --plot /nonexistent-dir/x/y.svg", "cost --bogus-flag"}) {
    const CliRun r = run_cli(args);
    EXPECT_EQ(r.rc, 2) << args;
    EXPECT_FALSE(r.err.empty()) << args;
    EXPECT_TRUE(r.out.empty()) << args << ": " << r.out;
  }
  const CliRun one = run_cli("cost --context 12Q");
  EXPECT_EQ(std::count(one.err.begin(), one.err.end(), '\n'), 1) << one.err;
}

TEST(CostCli, Help) {
  const CliRun r = run_cli("cost --help");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("Examples"), std::string::npos);
  EXPECT_NE(r.out.find("--vs"), std::string::npos);
}

}  // namespace
