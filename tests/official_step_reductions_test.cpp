// ctest-labels: model
// Which parameter gradients of the official-style step (ref/train model_backward_official, spec 06
// §6.17) are the FP32-partitioned sums of spec 06 §6.14: the step run with two partition constants,
// C = 128 (one partition of the tiny step's 24 tokens) and C = 2. A gradient on the rule moves with
// C. The test looks where nothing upstream depends on C yet — the backward's first modules: both
// heads and the MTP block's FFN site and output projections (every activation gradient above them is
// per row) — so that a gradient there moves with C exactly when its own reduction is on the rule:
// the heads' hc_head_fn/base and the MTP head's hc_head_scale (the main head's one scalar keeps its
// bits at this point by chance), the MTP FFN's mHC parameters, its routed experts (some; an expert
// with at most 2 routed tokens has one partition either way) and shared expert, its attention's
// sink, wo_a and wo_b must move; the head, the final norms, the FFN norm and the router must keep
// their bits. One activation gradient is on the rule too, sparse attention's dkv, and it is the only
// one (every other is per row): an RMSNorm gain of the attention (off the rule) moves with C only
// through it, after bf16 storage of dkv has erased most of its fp32 differences — so some must move.
// Taking any of these sites off the rule fails the test (shown for each of the three families of
// issue 16's item 2 by reverting its wiring in model_backward.cpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/train/model_backward.hpp"

namespace dsv4 {
namespace {

constexpr std::int64_t kTokens = 24;
constexpr std::uint64_t kSeed = 1;

bool same_bits(const Mat& a, const Mat& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(double)) == 0;
}

TEST(OfficialStepReductions, RuleSitesMoveWithThePartitionOthersDoNot) {
  const ModelConfig c = builtin_config("tiny");
  const ModelWeights w = ModelWeights::synthetic(c, kSeed);
  const ParameterMap params = model_parameters(c, w);
  const CounterRng rng(kSeed, stream_id("official_step_reductions_test.tokens"));
  std::vector<std::int64_t> tokens;
  for (std::int64_t i = 0; i < kTokens; ++i)
    tokens.push_back(
        static_cast<std::int64_t>(rng.uniform(static_cast<std::uint64_t>(i)) * static_cast<double>(c.vocab_size)));
  const TrainingDecisions held = model_backward(c, w, params, tokens).loss.decisions;
  OfficialStyleOptions one, many;
  one.partition = PartitionRule{128};
  many.partition = PartitionRule{2};
  const ModelGradients a = model_backward_official(c, w, params, tokens, held, {}, one);
  const ModelGradients b = model_backward_official(c, w, params, tokens, held, {}, many);
  const auto moves = [&](const std::string& name) { return !same_bits(a.grad.at(name), b.grad.at(name)); };
  const std::string m = "mtp.0.";
  std::vector<std::string> must_move = {"hc_head_fn",           "hc_head_base",        m + "hc_head_fn",
                                        m + "hc_head_base",     m + "hc_head_scale",   m + "hc_ffn_fn",
                                        m + "hc_ffn_base",      m + "hc_ffn_scale",    m + "attn.attn_sink",
                                        m + "attn.wo_a.weight", m + "attn.wo_b.weight"};
  for (const char* wi : {"w1", "w2", "w3"}) must_move.push_back(m + "ffn.shared_experts." + wi + ".weight");
  for (const std::string& name : must_move) EXPECT_TRUE(moves(name)) << name << " does not move with C";
  for (const std::string& name : {std::string("head.weight"), std::string("norm.weight"), m + "norm.weight",
                                  m + "ffn_norm.weight", m + "ffn.gate.weight"})
    EXPECT_FALSE(moves(name)) << name << " has no §6.14 site and nothing upstream of it depends on C, yet it moves";
  int routed = 0, routed_moved = 0;
  for (std::int64_t e = 0; e < c.n_routed_experts; ++e)
    for (const char* wi : {"w1", "w2", "w3"}) {
      ++routed;
      routed_moved += moves(m + "ffn.experts." + std::to_string(e) + "." + wi + ".weight") ? 1 : 0;
    }
  std::printf("MTP routed experts: %d of %d weight gradients move with C\n", routed_moved, routed);
  EXPECT_GT(routed_moved, 0) << "no routed expert weight gradient of the MTP block moves with C";
  // dkv: the attention's RMSNorm gains (attn_norm, q_norm, kv_norm, the compressors' norms).
  const std::regex gain(R"(.*\.(attn_norm|attn\.q_norm|attn\.kv_norm|compressor\.norm)\.weight)");
  int gains = 0, gains_moved = 0;
  for (const auto& [name, g] : a.grad)
    if (std::regex_match(name, gain)) {
      ++gains;
      gains_moved += moves(name) ? 1 : 0;
    }
  std::printf("attention RMSNorm gains: %d of %d gradients move with C (through dkv)\n", gains_moved, gains);
  EXPECT_GT(gains_moved, 0) << "sparse attention's dkv does not depend on C";
  // The loss is the forward's: no partition in it.
  EXPECT_EQ(a.loss.total, b.loss.total);
}

}  // namespace
}  // namespace dsv4
