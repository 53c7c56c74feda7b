// The typed output table (ref/model output_table.hpp): every output a whole run records is described
// and every described output is recorded where it should be (both directions, on the tiny config
// with CSA, HCA and window layers and MTP); names parse to module, role, dtype and block; the
// recorder refuses names the table does not describe; golden roles and certify read the same table.
#include "dsv4/model/output_table.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/model/recorder.hpp"

namespace dsv4 {
namespace {

TEST(OutputTable, NamesParseToTheirDescription) {
  const ModelConfig c = builtin_config("tiny");
  const auto g = describe_output("prefill/layers.3.ffn.gate/scores", &c);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->step, "prefill");
  EXPECT_EQ(g->module, "layers.3.ffn.gate");
  EXPECT_EQ(g->output, "scores");
  EXPECT_EQ(g->block, 3);
  EXPECT_EQ(g->desc->role, OutputRole::kScores);
  EXPECT_EQ(g->desc->decision, DecisionKind::kExperts);
  EXPECT_EQ(g->desc->official, DType::kF32);
  EXPECT_EQ(g->site->kind, SiteKind::kGate);

  const auto i = describe_output("decode1/mtp.0.attn.indexer/out", &c);
  ASSERT_TRUE(i.has_value());
  EXPECT_EQ(i->block, c.n_layers);
  EXPECT_EQ(i->desc->role, OutputRole::kDecisionIds);
  EXPECT_EQ(i->desc->decision, DecisionKind::kTopk);
  EXPECT_EQ(i->desc->presence, Presence::kIndexed);

  const auto in = describe_output("prefill/mtp.0/in", &c);
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(in->site->kind, SiteKind::kMtpInput);
  const auto block_out = describe_output("prefill/mtp.0/out", &c);
  ASSERT_TRUE(block_out.has_value());
  EXPECT_EQ(block_out->site->kind, SiteKind::kHcPost);
  const auto head = describe_output("decode0/head/out", &c);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->block, -1);
  EXPECT_EQ(head->desc->official, DType::kF32);
  const auto post = describe_output("prefill/layers.0.hc_attn/post");
  ASSERT_TRUE(post.has_value());
  EXPECT_EQ(post->desc->official, DType::kF32);
  EXPECT_EQ(post->site->kind, SiteKind::kHcPre);
  EXPECT_EQ(describe_output("prefill/layers.0.hc_attn/out")->site->kind, SiteKind::kHcPost);

  for (const char* bad : {"layers.0/out", "prefill/layers.0.attn/nothing", "prefill/layers.03/out",
                          "prefill/layers.x/out", "prefill/layers.-1/out", "prefill//out", "prefill/layers.0/",
                          "prefill/attn/out", "prefill/mtp.0.head/scores", "prefill/layers.0.hc_head/out"}) {
    EXPECT_FALSE(describe_output(bad).has_value()) << bad;
  }
  EXPECT_FALSE(describe_output("prefill/layers.99/out", &c).has_value());
  EXPECT_FALSE(describe_output("prefill/mtp.5/in", &c).has_value());
  EXPECT_TRUE(describe_output("prefill/layers.99/out").has_value());  // no config: any layer number
}

TEST(OutputTable, ExecutionOrderIsStepsThenEmbeddingLayersHeadMtp) {
  const std::vector<std::string> order = {
      "prefill/embed/out",
      "prefill/layers.0.hc_attn/y",
      "prefill/layers.0.hc_attn/comb",
      "prefill/layers.0.attn_norm/out",
      "prefill/layers.0.attn/kv",
      "prefill/layers.0.attn/out",
      "prefill/layers.0.hc_attn/out",
      "prefill/layers.0.ffn.gate/out1",
      "prefill/layers.0.ffn/out",
      "prefill/layers.0/out",
      "prefill/layers.2.hc_attn/y",
      "prefill/layers.10.hc_attn/y",  // numbers, not bytes: 10 after 2
      "prefill/hc_head/out",
      "prefill/norm/out",
      "prefill/head/out",
      "prefill/mtp.0/in",
      "prefill/mtp.0.hc_attn/y",
      "prefill/mtp.0/out",
      "prefill/mtp.0.hc_head/out",
      "prefill/mtp.0.head/out",
      "prefill/mtp.1/in",
      "decode0/embed/out",
      "decode2/head/out",
      "decode10/embed/out",
      "other/embed/out",  // an unknown step after every known one
      "not/a/described",  // names the table does not describe: last, in byte order
      "zzz",
  };
  std::vector<std::string> shuffled(order.rbegin(), order.rend());
  std::swap(shuffled[3], shuffled[17]);
  sort_in_execution_order(shuffled);
  EXPECT_EQ(shuffled, order);
  EXPECT_EQ(step_rank("prefill"), 0);
  EXPECT_EQ(step_rank("decode0"), 1);
  EXPECT_EQ(step_rank("decode"), step_rank("x"));
  EXPECT_EQ(step_rank("decode-1"), step_rank("x"));
}

TEST(OutputTable, RecorderRefusesUndescribedNames) {
  MemoryRecorder rec;
  EXPECT_THROW(rec.record("prefill/layers.0.attn/extra", {{1}, {0.0}, false}), std::invalid_argument);
  EXPECT_NO_THROW(rec.record("prefill/layers.0.attn/out", {{1}, {0.0}, false}));
}

TEST(OutputTable, GoldenRolesComeFromTheTable) {
  EXPECT_EQ(golden_role_of("prefill/layers.2.attn.indexer/out"), GoldenRole::kDiscrete);
  EXPECT_EQ(golden_role_of("prefill/layers.2.ffn.gate/out1"), GoldenRole::kDiscrete);
  EXPECT_EQ(golden_role_of("decode0/mtp.0.ffn.gate/choice_scores"), GoldenRole::kDecision);
  EXPECT_EQ(golden_role_of("prefill/layers.2.attn.indexer/margin"), GoldenRole::kDecision);
  EXPECT_EQ(golden_role_of("prefill/layers.2.ffn.gate/out0"), GoldenRole::kValue);
  EXPECT_EQ(golden_role_of("prefill/layers.2.attn/out"), GoldenRole::kValue);
}

// Both directions on a whole run: recorded ⊆ described (the recorder enforces it) and described ⊆
// recorded, site by site, in every step, for every block the output's presence selects.
TEST(OutputTable, AWholeRunRecordsExactlyTheDescribedOutputs) {
  const ModelConfig c = builtin_config("tiny");
  std::set<std::int64_t> ratios(c.compress_ratios.begin(), c.compress_ratios.end());
  ASSERT_TRUE(ratios.count(0) && ratios.count(4) && ratios.count(128)) << "tiny must cover every layer kind";
  ASSERT_GT(c.n_mtp_layers, 0);
  const Transformer model(Precision(Mode::kOfficial), c, ModelWeights::synthetic(c, 1));
  const auto tokens = synthetic_tokens(20, c.vocab_size, 3);
  const auto plan = plan_steps(c, 1, 20, 2);
  MemoryRecorder rec;
  run_plan(model, tokens, plan, rec);
  std::set<std::string> expected;
  for (const StepPlan& step : plan) {
    const std::string pre = step.name + "/";
    std::vector<std::pair<std::string, std::int64_t>> blocks;
    for (std::int64_t l = 0; l < c.n_layers; ++l) blocks.emplace_back("layers." + std::to_string(l), l);
    if (step.mtp) blocks.emplace_back("mtp.0", c.n_layers);
    for (const SiteDesc& s : output_sites()) {
      for (const OutputDesc& o : s.outputs) {
        if (o.role == OutputRole::kChoiceScores) continue;  // written by the golden, not recorded
        if (s.scope == SiteScope::kBlock) {
          for (const auto& [prefix, l] : blocks)
            if (present_in_block(o.presence, c, l, step.start_pos, step.length))
              expected.insert(pre + module_path(prefix, o.module) + "/" + std::string(o.output));
        } else if (s.scope == SiteScope::kModel) {
          expected.insert(pre + std::string(o.module) + "/" + std::string(o.output));
        } else if (step.mtp) {
          expected.insert(pre + module_path("mtp.0", o.module) + "/" + std::string(o.output));
        }
      }
    }
  }
  std::set<std::string> recorded;
  for (const auto& [name, t] : rec.entries()) recorded.insert(name);
  for (const std::string& n : expected) EXPECT_TRUE(recorded.count(n)) << "described, not recorded: " << n;
  for (const std::string& n : recorded) EXPECT_TRUE(expected.count(n)) << "recorded, not expected: " << n;
  // Ids are recorded as integers exactly where the table says kI64.
  for (const auto& [name, t] : rec.entries())
    EXPECT_EQ(t.integral, describe_output(name, &c)->desc->official == DType::kI64) << name;
}

}  // namespace
}  // namespace dsv4
