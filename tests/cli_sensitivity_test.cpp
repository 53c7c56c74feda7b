// `dsv4 certify --sensitivity` on the committed golden (issue 15 item 4): the verdict-first summary,
// the JSON rows (one per float output, every one of its scale and offset directions measured),
// the measured sensitivity itself (a 0.2% scale caught in both directions wherever a field has more
// than a handful of elements; the fp32 mHC mixes far below), and bad input.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

using CliSensitivity = testing_support::CliDir;

const std::string kGolden = std::string(DSV4_SOURCE_DIR) + "/goldens/tiny-s1-p6-d2.h5";

TEST_F(CliSensitivity, CommittedGoldenCatchesTwoPerMilleScalesAndSaysWhereItCannot) {
  const Result r = dsv4("certify --golden '" + kGolden + "' --sensitivity --json '" + file("s.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_EQ(r.out.rfind("sensitivity: ", 0), 0u) << r.out;
  const nlohmann::json j = nlohmann::json::parse(testing_support::read_file(file("s.json")));
  EXPECT_EQ(j.at("schema"), "dsv4-sensitivity/1");
  EXPECT_TRUE(j.at("clean_pass").get<bool>()) << j.at("clean_reason");
  EXPECT_GT(j.at("structure_family").get<int>(), 100);
  const auto& rows = j.at("rows");
  ASSERT_GT(rows.size(), 300u);
  int goal = 0;
  int quantised = 0;
  std::vector<std::string> offset_limited;  // non-FP8 outputs whose offset limit is above 0.2%
  for (const auto& row : rows) {
    const auto caught = [&](const char* dir) { return row.at(dir).at("caught_from"); };
    goal += row.at("meets_goal").get<bool>();
    const bool small = row.at("elements").get<int>() < 16;
    if (small) continue;  // indexer scores of a few elements: at their statistical limit (the table says so)
    const std::string out = row.at("output").get<std::string>();
    // The FP8-quantised outputs (window KV, compressed entries): an error made before the quantiser
    // shows only through the codes it moves; their limit is the scale test's at the quantiser's own
    // rounding noise (0.5-2.2% measured on this golden), and they are caught within 2.5x of it.
    // Injected before the quantisation point, the values stay on the FP8 grid (a probe that moved
    // them off it would be caught by the grid check alone and mean nothing).
    const bool fp8 = out.ends_with("attn/kv") || out.ends_with("attn.compressor/out");
    quantised += fp8;
    const double limit = row.at("scale_limit").is_null() ? 0.0 : row.at("scale_limit").get<double>();
    const double bound = fp8 ? std::max(0.002, 2.5 * limit) : 0.002;
    if (fp8) {
      EXPECT_GT(limit, 0.002) << out;
    }
    // An offset is caught from 0.2% too, except where the offset test's own limit is above it: its
    // allowance is k x the exact recomputation's significant offset from the official (two outputs of
    // this golden, listed below); there within 2.5x that limit.
    const double off_limit = row.at("offset_limit").is_null() ? 0.0 : row.at("offset_limit").get<double>();
    if (!fp8 && off_limit > 0.002) offset_limited.push_back(out);
    const double off_bound = std::max(bound, 2.5 * off_limit);
    for (const char* dir : {"scale_up", "scale_down", "offset_up", "offset_down"}) {
      ASSERT_FALSE(caught(dir).is_null()) << out << " " << dir;
      const bool offset = std::string(dir).starts_with("offset");
      EXPECT_LE(caught(dir).get<double>(), offset ? off_bound : bound) << out << " " << dir;
      if (fp8) {
        EXPECT_NE(row.at(dir).at("by"), "fp8_grid") << out << " " << dir;
      }
    }
    if (out.find("hc_attn/comb") != std::string::npos) {
      EXPECT_LE(caught("scale_up").get<double>(), 1e-5) << out;  // fp32: far below
    }
  }
  EXPECT_EQ(quantised, 24);
  // Measured on this golden: offset limits 0.62% and 0.78%, each caught from 1%.
  EXPECT_EQ(offset_limited, (std::vector<std::string>{"prefill/layers.2.attn/out", "decode1/layers.1.attn/out"}));
  EXPECT_GE(goal, 304);  // measured: 304 of 327, the 23 others at their limit (BENCHMARKS.md, issue 15)
  EXPECT_NE(r.out.find(", 0 are short of it"), std::string::npos) << r.out;
}

TEST_F(CliSensitivity, TakesNoCandidate) {
  expect_bad_input(dsv4("certify --golden '" + kGolden + "' --sensitivity --candidate '" + kGolden + "'"), "certify",
                   "--candidate");
  expect_bad_input(dsv4("certify --golden '" + kGolden + "'"), "certify", "--candidate");
}

}  // namespace
}  // namespace dsv4
