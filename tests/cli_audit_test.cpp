// `dsv4 audit` (issue 17 item 1): the quick matrix of our own stack passes bit for bit in both
// modes; the comparison every variant runs catches a one-ulp difference and a batch-row mix-up,
// naming the first output in execution order, the element, both values and the ULP distance.
// ctest-labels: model
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsv4/audit/self_audit.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/numerics/formats.hpp"
#include "support/cli_process.hpp"
#include "support/dump_edit.hpp"

namespace dsv4 {
namespace {

using CliAudit = testing_support::CliDir;

TEST_F(CliAudit, QuickMatrixIsBitIdentical) {
  const auto r = dsv4("audit --config tiny --quick --json " + file("a.json") + " --svg " + file("a.svg"));
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(r.out.rfind("audit: PASS — ", 0), 0u) << r.out;
  const std::string svg = slurp(file("a.svg"));
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u);
  EXPECT_NE(svg.find("dsv4 audit (tiny): where bits first move (PASS)"), std::string::npos) << svg;
  const auto j = nlohmann::json::parse(slurp(file("a.json")));
  EXPECT_EQ(j.at("verdict"), "PASS");
  // Per mode: the yardstick, 1 repeat, threads 1 and 2, batch 4 at rows 0 and 3, prefill vs decode;
  // in official mode GPU vs CPU official too (skipped without a GPU: tests/gpu_model_cli_test).
  ASSERT_EQ(j.at("variants").size(), 15u) << j.dump(1);
  std::string yard;
  for (const auto& v : j.at("variants")) {
    if (v.at("variant") == "GPU vs CPU official" && v.at("skipped").get<bool>()) continue;
    EXPECT_FALSE(v.at("skipped").get<bool>()) << v.dump();
    EXPECT_TRUE(v.at("identical").get<bool>()) << v.dump();
    EXPECT_GT(v.at("outputs").get<std::int64_t>(), 100) << v.dump();
    if (v.at("variant") == "prefill vs decode") continue;
    if (v.at("variant") == "yardstick") yard = v.at("sha256");
    EXPECT_EQ(v.at("sha256"), yard) << v.dump();  // same bits, same hash
  }
}

TEST_F(CliAudit, BadInput) {
  expect_bad_input(dsv4("audit --config nosuch"), "audit", "nosuch");
  expect_bad_input(dsv4("audit --modes fast"), "audit", "--modes");
  expect_bad_input(dsv4("audit --prompt-len 0"), "audit", "--prompt-len");
}

// `dsv4 audit --dumps` on the reference's own dumps (as a foreign engine would make them): the
// same sequence in two runs, at row 1 of a batch of 2, and as one prefill of the whole sequence —
// bit-identical; then one tensor of one dump changed: the right kind, the cause named, the rest
// compared.
class CliAuditDumps : public testing_support::CliDir {
 protected:
  void tokens(const std::string& name, const std::vector<std::vector<std::int64_t>>& rows) {
    Tensor t(DType::kI64, {static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(rows[0].size())});
    std::size_t i = 0;
    for (const auto& r : rows)
      for (const std::int64_t x : r) t.values<std::int64_t>()[i++] = x;
    write_npy(file(name), t);
  }
  void dump(const std::string& name, const std::string& toks, int decode_steps, const std::string& manifest) {
    const auto r = dsv4("run --config tiny --seed 1 --mode official --tokens " + file(toks) + " --decode-steps " +
                        std::to_string(decode_steps) + " --dump " + file(name));
    ASSERT_EQ(r.status, 0) << r.err;
    std::ofstream(file(name) + ".audit.json") << manifest;
  }
};

TEST_F(CliAuditDumps, SameSequenceEverywhereIsBitIdenticalAndAChangeIsBlamed) {
  std::vector<std::int64_t> a, b;
  for (int i = 0; i < 22; ++i) {
    a.push_back((i * 37 + 5) % 1024);
    b.push_back((i * 91 + 11) % 1024);
  }
  tokens("a.npy", {a});
  tokens("ba.npy", {b, a});
  dump("r1.h5", "a.npy", 2, R"({"run": "r1", "sequences": ["A"], "schedule": "incremental"})");
  dump("r2.h5", "a.npy", 2, R"({"run": "r2", "sequences": ["A"], "schedule": "incremental"})");
  dump("b2.h5", "ba.npy", 2, R"({"run": "r3", "sequences": [null, "A"], "schedule": "incremental"})");
  dump("pre.h5", "a.npy", 0, R"({"run": "r4", "sequences": ["A"], "schedule": "prefill"})");
  const std::string all = file("r1.h5") + " " + file("r2.h5") + " " + file("b2.h5") + " " + file("pre.h5");
  const auto ok = dsv4("audit --dumps " + all + " --json " + file("ok.json"));
  EXPECT_EQ(ok.status, 0) << ok.out << ok.err;
  const auto j = nlohmann::json::parse(slurp(file("ok.json")));
  ASSERT_EQ(j.at("comparisons").size(), 3u) << j.dump(1);
  EXPECT_EQ(j.at("comparisons")[0].at("kind"), "run-to-run nondeterminism");
  EXPECT_EQ(j.at("comparisons")[1].at("kind"), "batch variance");
  EXPECT_EQ(j.at("comparisons")[2].at("kind"), "prefill/decode variance");
  for (const auto& c : j.at("comparisons")) EXPECT_GT(c.at("compared").get<std::int64_t>(), 20) << c.dump();

  // One element of one tensor in row 1 of the batch dump: batch variance, caused there.
  const std::string victim = "prefill/layers.2.attn/out";
  ASSERT_TRUE(testing_support::perturbed_copy(file("b2.h5"), file("b2x.h5"), victim, [](Tensor& t) {
    double& x = t.values<double>()[t.numel() / 2 + 7];  // row 1 (the second half): one ulp up
    x = std::nextafter(x, 1e9);
    double& z = t.values<double>()[t.numel() / 2 + 9];  // three ulps down
    for (int k = 0; k < 3; ++k) z = std::nextafter(z, -1e9);
  }));
  std::ofstream(file("b2x.h5") + ".audit.json")
      << R"({"run": "r3", "sequences": [null, "A"], "schedule": "incremental"})";
  const auto bad = dsv4("audit --dumps " + file("r1.h5") + " " + file("b2x.h5") + " --json " + file("bad.json"));
  EXPECT_EQ(bad.status, 1) << bad.out << bad.err;
  EXPECT_NE(bad.out.find("batch variance: first tensor whose bits move: " + victim), std::string::npos) << bad.out;
  const auto jb = nlohmann::json::parse(slurp(file("bad.json")));
  const auto& moved = jb.at("comparisons")[0].at("moved");
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].at("name"), victim);
  EXPECT_EQ(moved[0].at("differing"), 2);
  EXPECT_EQ(moved[0].at("role"), "cause");
  // The ULP histogram in the stored format (buckets 0–1, 2, 3–4, …): one element 1 ulp, one 3.
  const std::vector<std::int64_t> hist = moved[0].at("ulp_histogram");
  ASSERT_GE(hist.size(), 3u);
  EXPECT_EQ(hist[0], 1);
  EXPECT_EQ(hist[1], 0);
  EXPECT_EQ(hist[2], 1);

  expect_bad_input(dsv4("audit --dumps " + file("r1.h5")), "audit", "at least two");
  expect_bad_input(dsv4("audit --dumps " + file("r1.h5") + " " + file("a.npy")), "audit", "a.npy.audit.json");
}

// A recording of two outputs of a batch of 2 (both rows the same sequence), in execution order:
// hc_attn/y [2, 3, 4] and attn_norm/out [2, 3, 1]. `bump`: element 1 of attn_norm/out in row 1 one
// bf16 ulp up (0.5 → 0.5 + 2^-8); `mix`: row 1 of hc_attn/y holds another sequence's values.
MemoryRecorder recording(bool bump, bool mix = false) {
  MemoryRecorder r;
  RecordedTensor a{{2, 3, 4}, {}, false}, b{{2, 3, 1}, {}, false};
  for (int i = 0; i < 24; ++i) a.values.push_back(1.0 + (i % 12) / 8.0 + (mix && i >= 12 ? 1.0 : 0.0));
  for (int i = 0; i < 6; ++i) b.values.push_back(0.5);
  if (bump) b.values[4] = 0.5 + 0.00390625;
  r.record("prefill/layers.0.hc_attn/y", a);
  r.record("prefill/layers.0.attn_norm/out", b);
  return r;
}

TEST(AuditCompare, IdenticalRunsPass) {
  const MemoryRecorder y = recording(false);
  const audit::VariantResult r = audit::compare_runs(y, y, 1, Mode::kOfficial, "batch 2 row 1");
  EXPECT_FALSE(r.mismatch.has_value());
  EXPECT_EQ(r.compared, 2);
  EXPECT_EQ(r.sha256.size(), 64u);
}

TEST(AuditCompare, OneUlpInOneElementIsCaughtAndNamed) {
  const audit::VariantResult r = audit::compare_runs(recording(false), recording(true), 1, Mode::kOfficial, "row 1");
  ASSERT_TRUE(r.mismatch.has_value());
  EXPECT_EQ(r.mismatch->output, "prefill/layers.0.attn_norm/out");
  EXPECT_EQ(r.mismatch->element, 1);
  EXPECT_EQ(r.mismatch->yardstick, 0.5);
  EXPECT_EQ(r.mismatch->variant, 0.50390625);
  EXPECT_EQ(r.mismatch->grid, "bfloat16");  // attn_norm/out's official format
  EXPECT_EQ(r.mismatch->ulps, 1u);
  EXPECT_EQ(r.mismatch->differing_elements, 1);
  EXPECT_EQ(r.mismatch->differing_outputs, 1);
  // Row 0 of the same variant is untouched; and the hashes tell the two apart.
  const audit::VariantResult r0 = audit::compare_runs(recording(false), recording(true), 0, Mode::kOfficial, "row 0");
  EXPECT_FALSE(r0.mismatch.has_value());
  EXPECT_NE(r0.sha256, r.sha256);
}

TEST(AuditCompare, TheFirstOutputInExecutionOrderIsBlamed) {
  const audit::VariantResult r =
      audit::compare_runs(recording(false), recording(true, true), 1, Mode::kExact, "batch 2 row 1");
  ASSERT_TRUE(r.mismatch.has_value());
  EXPECT_EQ(r.mismatch->output, "prefill/layers.0.hc_attn/y");
  EXPECT_EQ(r.mismatch->element, 0);
  EXPECT_EQ(r.mismatch->grid, "float64");  // exact mode
  EXPECT_EQ(r.mismatch->differing_elements, 12);
  EXPECT_EQ(r.mismatch->differing_outputs, 2);
  // Every moving output is kept, in execution order, for the SVG: its first is the cause.
  ASSERT_EQ(r.moved.size(), 2u);
  EXPECT_EQ(r.moved[0].name, "prefill/layers.0.hc_attn/y");
  EXPECT_EQ(r.moved[0].differing, 12);
  EXPECT_EQ(r.moved[1].name, "prefill/layers.0.attn_norm/out");
  EXPECT_EQ(r.moved[1].differing, 1);
  audit::AuditReport rep;
  rep.config = "tiny";
  rep.layers = 2;
  rep.variants = {audit::compare_runs(recording(false), recording(false), 1, Mode::kExact, "repeat 1"), r};
  const std::string svg = audit::audit_svg(rep);
  EXPECT_NE(svg.find("dsv4 audit (tiny): where bits first move (FAIL)"), std::string::npos) << svg;
  EXPECT_NE(svg.find("exact batch 2 row 1: prefill/layers.0.hc_attn/y"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">hc_attn/y<"), std::string::npos) << svg;
  EXPECT_EQ(svg.find("repeat 1"), std::string::npos) << svg;  // a variant that moves nothing draws nothing
}

}  // namespace
}  // namespace dsv4
