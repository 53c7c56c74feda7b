// ctest-labels: model
// Which parameter gradients of the official-style step (ref/train model_backward_official, spec 06
// §6.17) are the FP32-partitioned sums of spec 06 §6.14 — since issue 16, every one — and which the
// shuffled schedule (PartitionRule::shuffled) reaches. The step is run with two partition constants,
// C = 128 (one partition of the tiny step's 24 tokens) and C = 2, with the shuffled schedule on every
// site, and with the catalogue's variant Deviation::kReductionShuffled (every site, dkv's included:
// model_backward.cpp, spec 06 §6.17). A gradient on the rule moves with each. The test looks
// where nothing upstream depends on the reduction yet — the backward's first modules: both heads and
// the MTP block's FFN site and output projections (every activation gradient above them is per row)
// — so that a gradient there moves exactly when its own reduction is on the rule: head.weight and the
// final norms' gains (both heads), the heads' hc_head_fn/base and the MTP head's hc_head_scale (the
// main head's one scalar keeps its bits by chance), the MTP FFN's mHC parameters, its RMSNorm gain,
// its router, its routed experts (some; an expert with at most 2 routed tokens has one partition
// either way) and shared expert, its attention's sink, wo_a and wo_b must move. One activation
// gradient is on the rule too, sparse attention's dkv, and it is the only one (every other is per
// row): the attention RMSNorm gains move with it. The embedding and the compressors' ape lie below
// every other site. The embedding's bf16 rows sum
// exactly in fp32 in this step (it keeps its bits with C = 2; it moves under the shuffled schedule
// and the variant, whose shuffled dkv reaches its upstream gradient too), so its site is
// checked against the rule in tests/fp32_partitioned_sum_test. Taking a site off the rule (or out of the shuffled
// schedule) fails the test, shown by reverting its wiring in model_backward.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <regex>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/train/model_backward.hpp"
#include "support/mat_bits.hpp"

namespace dsv4 {
namespace {

constexpr std::int64_t kTokens = 24;
constexpr std::uint64_t kSeed = 1;

class OfficialStepReductions : public ::testing::Test {
 protected:
  // The rule (C = 128), C = 2, the shuffled schedule: computed once.
  static void SetUpTestSuite() {
    const ModelConfig c = builtin_config("tiny");
    config_ = c;
    const ModelWeights w = ModelWeights::synthetic(c, kSeed);
    const ParameterMap params = model_parameters(c, w);
    const CounterRng rng(kSeed, stream_id("official_step_reductions_test.tokens"));
    std::vector<std::int64_t> tokens;
    for (std::int64_t i = 0; i < kTokens; ++i)
      tokens.push_back(
          static_cast<std::int64_t>(rng.uniform(static_cast<std::uint64_t>(i)) * static_cast<double>(c.vocab_size)));
    const TrainingDecisions held = model_backward(c, w, params, tokens).loss.decisions;
    OfficialStyleOptions one, many, shuffled, variant;
    one.partition = PartitionRule{128};
    many.partition = PartitionRule{2};
    shuffled.partition = PartitionRule{128};
    shuffled.partition.shuffled = true;
    variant.partition = PartitionRule{128};
    variant.deviation = Deviation::kReductionShuffled;
    rule_ = model_backward_official(c, w, params, tokens, held, {}, one);
    c2_ = model_backward_official(c, w, params, tokens, held, {}, many);
    shuffled_ = model_backward_official(c, w, params, tokens, held, {}, shuffled);
    variant_ = model_backward_official(c, w, params, tokens, held, {}, variant);
  }

  // The gradients at the backward's first modules whose own reduction is a §6.14 site.
  static std::vector<std::string> first_sites() {
    const std::string m = "mtp.0.";
    std::vector<std::string> v = {
        "head.weight",         "norm.weight",        m + "norm.weight",      "hc_head_fn",
        "hc_head_base",        m + "hc_head_fn",     m + "hc_head_base",     m + "hc_head_scale",
        m + "hc_ffn_fn",       m + "hc_ffn_base",    m + "hc_ffn_scale",     m + "ffn_norm.weight",
        m + "ffn.gate.weight", m + "attn.attn_sink", m + "attn.wo_a.weight", m + "attn.wo_b.weight"};
    for (const char* wi : {"w1", "w2", "w3"}) v.push_back(m + "ffn.shared_experts." + wi + ".weight");
    return v;
  }

  // Every check of the file for one pair of runs.
  static void expect_sites_move(const ModelGradients& a, const ModelGradients& b, const char* what) {
    const auto moves = [&](const std::string& name) { return !test::bit_equal(a.grad.at(name), b.grad.at(name)); };
    for (const std::string& name : first_sites()) EXPECT_TRUE(moves(name)) << name << " does not move with " << what;
    int routed = 0, routed_moved = 0;
    for (std::int64_t e = 0; e < config_.n_routed_experts; ++e)
      for (const char* wi : {"w1", "w2", "w3"}) {
        ++routed;
        routed_moved += moves("mtp.0.ffn.experts." + std::to_string(e) + "." + wi + ".weight") ? 1 : 0;
      }
    std::printf("%s: MTP routed experts: %d of %d weight gradients move\n", what, routed_moved, routed);
    EXPECT_GT(routed_moved, 0) << "no routed expert weight gradient of the MTP block moves with " << what;
    const std::regex gain(R"(.*\.(attn_norm|attn\.q_norm|attn\.kv_norm|compressor\.norm)\.weight)");
    const std::regex ape(R"(.*\.compressor\.ape)");
    int gains = 0, gains_moved = 0, apes = 0, apes_moved = 0;
    for (const auto& [name, g] : a.grad) {
      if (std::regex_match(name, gain)) {
        ++gains;
        gains_moved += moves(name) ? 1 : 0;
      }
      if (std::regex_match(name, ape)) {
        ++apes;
        apes_moved += moves(name) ? 1 : 0;
      }
    }
    std::printf("%s: attention RMSNorm gains: %d of %d move; ape: %d of %d; embed.weight %s\n", what, gains_moved,
                gains, apes_moved, apes, moves("embed.weight") ? "moves" : "keeps its bits");
    EXPECT_GT(gains_moved, 0) << "sparse attention's dkv does not depend on " << what;
    EXPECT_GT(apes_moved, 0) << "no compressor's ape moves with " << what;
    // The loss is the forward's: no reduction of the backward in it.
    EXPECT_EQ(a.loss.total, b.loss.total);
  }

  static ModelConfig config_;
  static ModelGradients rule_, c2_, shuffled_, variant_;
};
ModelConfig OfficialStepReductions::config_;
ModelGradients OfficialStepReductions::rule_, OfficialStepReductions::c2_, OfficialStepReductions::shuffled_,
    OfficialStepReductions::variant_;

TEST_F(OfficialStepReductions, RuleSitesMoveWithThePartition) { expect_sites_move(rule_, c2_, "C = 2"); }

// The shuffled schedule is a field of the one rule every site takes: it changes the bits of every
// site family, not only the linear layers'.
TEST_F(OfficialStepReductions, ShuffledScheduleReachesEverySite) {
  expect_sites_move(rule_, shuffled_, "the shuffled schedule");
}

// The catalogue's legitimate variant (train_certify_test: it must PASS certify) takes the shuffled
// schedule on every site (model_backward.cpp Model::rule()), dkv's included: a shuffled dkv
// perturbs the gradients upstream, flipping AdamW first-step signs of cancelling mHC gradients,
// which certify's teacher-forced optimizer accepts (spec 06 §6.17).
TEST_F(OfficialStepReductions, CatalogueVariantReachesEveryParameterSite) {
  expect_sites_move(rule_, variant_, "the catalogue's reduction-shuffled");
}

}  // namespace
}  // namespace dsv4
