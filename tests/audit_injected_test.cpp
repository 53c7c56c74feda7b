// `dsv4 audit --dumps` against an engine with nondeterminism injected at a known module (issue 17
// item 5): the reference's forward with layer L's block output (`layers.L/out`, the FFN hc_post)
// summed in an order that depends on the batch size, on run-to-run noise or on prefill vs decode
// (support/injected_engine.hpp). Each is classified by its kind, blamed on layers.L/out, and every
// later mover is a consequence; the same engine with a fixed order passes every comparison.
// ctest-labels: model
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsv4/audit/dump_audit.hpp"
#include "dsv4/golden/dump.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/model/output_table.hpp"
#include "support/cli_process.hpp"
#include "support/injected_engine.hpp"

namespace dsv4 {
namespace {

using testing_support::InjectedEngine;
using testing_support::SumOrder;

constexpr std::int64_t kPrompt = 20;  // ≥ window_size − 1 (tiny: 16): decode positions 20, 21 must
constexpr std::int64_t kLength = 22;  // equal the prefill's bit for bit (spec 02 §2.11.4)

std::vector<std::int64_t> tokens(std::int64_t mul, std::int64_t add) {
  std::vector<std::int64_t> t;
  for (std::int64_t i = 0; i < kLength; ++i) t.push_back((i * mul + add) % 1024);
  return t;
}

class AuditInjected : public testing_support::CliDir {
 protected:
  // Runs the engine and writes its dump with the manifest beside it; returns the dump's path.
  std::string dump(const InjectedEngine& e, const std::string& name, const std::vector<std::vector<std::int64_t>>& rows,
                   bool incremental, const std::string& manifest, std::int64_t prompt = kPrompt) {
    const MemoryRecorder rec = e.run(rows, incremental ? prompt : static_cast<std::int64_t>(rows.front().size()));
    Hdf5File f = Hdf5File::create(file(name));
    write_recorded(f, "", rec);
    f.commit();
    std::ofstream(file(name) + ".audit.json") << manifest;
    return file(name);
  }
  const ModelConfig c_ = load_config("tiny");
  // The seed-1 synthetic weights, made once.
  static const ModelWeights& weights() {
    static const ModelWeights w = ModelWeights::synthetic(load_config("tiny"), 1);
    return w;
  }
  const std::vector<std::int64_t> a_ = tokens(37, 5), b_ = tokens(91, 11);

  // The dumps of sequence A: alone (run `run`), at row 1 of a batch of 2, and as one prefill.
  std::string alone(const InjectedEngine& e, const std::string& run) {
    return dump(e, run + ".h5", {a_}, true,
                R"({"run": ")" + run + R"(", "sequences": ["A"], "schedule": "incremental"})");
  }
  std::string in_batch(const InjectedEngine& e) {
    return dump(e, "b2.h5", {b_, a_}, true, R"({"run": "r1", "sequences": ["B", "A"], "schedule": "incremental"})");
  }
  std::string prefill(const InjectedEngine& e) {
    return dump(e, "pre.h5", {a_}, false, R"({"run": "r1", "sequences": ["A"], "schedule": "prefill"})");
  }
};

const audit::OccurrenceResult& find(const audit::DumpAuditReport& r, const std::string& kind) {
  for (const auto& c : r.comparisons)
    if (c.kind == kind) return c;
  throw std::runtime_error("no comparison of kind " + kind);
}

// The cause is `cause`; every later mover comes after it in execution order and is downstream of
// it: a later layer or the head, or the cause's own tensor in a later step (the engine's order
// applies there too) — nothing of an earlier layer, nothing of layer L before its output.
void expect_blamed(const audit::OccurrenceResult& c, const std::string& cause, std::int64_t layer) {
  ASSERT_GE(c.moved.size(), 2u) << "the injected order must move the cause and something downstream";
  EXPECT_EQ(c.moved.front().name, cause);
  EXPECT_GT(c.moved.front().differing, 0);
  std::vector<std::string> names;
  for (const auto& m : c.moved) names.push_back(m.name);
  std::vector<std::string> sorted = names;
  sort_in_execution_order(sorted);
  EXPECT_EQ(names, sorted);
  const auto step_less = [](const std::string& n) { return n.substr(n.find('/') + 1); };
  for (std::size_t k = 1; k < c.moved.size(); ++k) {
    const std::string& n = c.moved[k].name;
    const auto ref = describe_output(n);
    ASSERT_TRUE(ref.has_value()) << n;
    EXPECT_TRUE(ref->block < 0 || ref->block > layer || step_less(n) == step_less(cause))
        << n << " moved but is not downstream of " << cause;
  }
}

TEST_F(AuditInjected, AFixedOrderPassesEveryComparison) {
  const InjectedEngine e(c_, weights(), 2, SumOrder::kFixed);
  const audit::DumpAuditReport r = audit::audit_dumps({alone(e, "r1"), alone(e, "r2"), in_batch(e), prefill(e)});
  EXPECT_TRUE(r.pass()) << audit::dump_audit_text(r);
  ASSERT_EQ(r.comparisons.size(), 3u) << audit::dump_audit_text(r);
  for (const std::string kind : {"run-to-run nondeterminism", "batch variance", "prefill/decode variance"})
    EXPECT_GT(find(r, kind).compared, 20) << kind;
}

TEST_F(AuditInjected, ABatchSizeDependentSumIsBatchVarianceAtItsModule) {
  const InjectedEngine e(c_, weights(), 2, SumOrder::kByBatchSize);
  const audit::DumpAuditReport r = audit::audit_dumps({alone(e, "r1"), in_batch(e), prefill(e)});
  EXPECT_FALSE(r.pass());
  // The same batch size in another schedule: bit-identical.
  EXPECT_TRUE(find(r, "prefill/decode variance").moved.empty()) << audit::dump_audit_text(r);
  expect_blamed(find(r, "batch variance"), "prefill/layers.2/out", 2);
  const std::string text = audit::dump_audit_text(r);
  EXPECT_NE(text.find("batch variance: first tensor whose bits move: prefill/layers.2/out"), std::string::npos) << text;
  const nlohmann::json j = audit::dump_audit_json(r);
  for (const auto& c : j.at("comparisons")) {
    if (c.at("kind") != "batch variance") continue;
    EXPECT_EQ(c.at("moved")[0].at("role"), "cause");
    for (std::size_t k = 1; k < c.at("moved").size(); ++k) EXPECT_EQ(c.at("moved")[k].at("role"), "consequence");
  }
  // The SVG: the cause's marker at layer 2, the block output among the series.
  const std::string svg = audit::dump_audit_svg(r);
  EXPECT_NE(svg.find("batch variance: prefill/layers.2/out"), std::string::npos);
  EXPECT_NE(svg.find(">block/out<"), std::string::npos);
  EXPECT_NE(svg.find("(FAIL)"), std::string::npos);
}

TEST_F(AuditInjected, RunToRunOrderNoiseIsRunToRunNondeterminismAtItsModule) {
  const InjectedEngine run1(c_, weights(), 4, SumOrder::kRunNoise, 1), run2(c_, weights(), 4, SumOrder::kRunNoise, 2);
  const audit::DumpAuditReport r = audit::audit_dumps({alone(run1, "r1"), alone(run2, "r2")});
  ASSERT_EQ(r.comparisons.size(), 1u);
  EXPECT_EQ(r.comparisons[0].kind, "run-to-run nondeterminism");
  expect_blamed(r.comparisons[0], "prefill/layers.4/out", 4);
}

TEST_F(AuditInjected, APhaseDependentSumIsPrefillDecodeVarianceAtItsModule) {
  const InjectedEngine e(c_, weights(), 1, SumOrder::kByPhase);
  const audit::DumpAuditReport r = audit::audit_dumps({alone(e, "r1"), in_batch(e), prefill(e)});
  EXPECT_TRUE(find(r, "batch variance").moved.empty());
  // Positions 20 and 21 (≥ window − 1: not among those §2.11.4 allows to differ).
  expect_blamed(find(r, "prefill/decode variance"), "decode0/layers.1/out", 1);
}

// The same phase-dependent engine decoding positions 10 and 11 after a prefill of 10: below
// window_size − 1 (tiny: 15) spec 02 §2.11.4 lets prefill and decode differ, so with the window
// known those positions are excluded (and said so) and nothing fails; without it they are blamed.
TEST_F(AuditInjected, PositionsTheSpecLetsDifferAreExcludedAndSaidSo) {
  const InjectedEngine e(c_, weights(), 1, SumOrder::kByPhase);
  const std::vector<std::int64_t> shorter(a_.begin(), a_.begin() + 12);
  const std::string inc =
      dump(e, "inc.h5", {shorter}, true, R"({"run": "r1", "sequences": ["A"], "schedule": "incremental"})", 10);
  const std::string pre =
      dump(e, "pre.h5", {shorter}, false, R"({"run": "r1", "sequences": ["A"], "schedule": "prefill"})");
  const audit::DumpAuditReport known = audit::audit_dumps({inc, pre}, c_.window_size);
  EXPECT_TRUE(known.pass()) << audit::dump_audit_text(known);
  ASSERT_EQ(known.comparisons.size(), 1u);
  EXPECT_EQ(known.comparisons[0].compared, 0);
  EXPECT_GT(known.comparisons[0].excluded, 20);
  const std::string text = audit::dump_audit_text(known);
  EXPECT_NE(text.find("positions 10…11"), std::string::npos) << text;
  EXPECT_NE(text.find("spec 02 §2.11.4"), std::string::npos) << text;
  const audit::DumpAuditReport unknown = audit::audit_dumps({inc, pre});
  ASSERT_EQ(unknown.comparisons.size(), 1u);
  expect_blamed(unknown.comparisons[0], "decode0/layers.1/out", 1);
}

TEST_F(AuditInjected, TheCliWritesTheSvg) {
  const InjectedEngine e(c_, weights(), 3, SumOrder::kByBatchSize);
  const auto res = dsv4("audit --dumps " + alone(e, "r1") + " " + in_batch(e) + " --svg " + file("a.svg"));
  EXPECT_EQ(res.status, 1) << res.out << res.err;
  const std::string svg = slurp(file("a.svg"));
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u);
  EXPECT_NE(svg.find("batch variance: prefill/layers.3/out"), std::string::npos) << svg;
}

}  // namespace
}  // namespace dsv4
