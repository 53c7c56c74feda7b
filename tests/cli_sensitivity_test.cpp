// `dsv4 certify --sensitivity` on the committed golden (issue 15 item 4): the verdict-first summary,
// the JSON rows (one per float output, every one of its scale and offset directions measured),
// the measured sensitivity itself (a 0.2% scale caught in both directions wherever a field has more
// than a handful of elements; the fp32 mHC mixes far below), and bad input.
#include <nlohmann/json.hpp>
#include <string>

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
  for (const auto& row : rows) {
    const auto caught = [&](const char* dir) { return row.at(dir).at("caught_from"); };
    goal += row.at("meets_goal").get<bool>();
    const bool small = row.at("elements").get<int>() < 16;
    if (small) continue;  // indexer scores of a few elements: at their statistical limit (the table says so)
    for (const char* dir : {"scale_up", "scale_down", "offset_up", "offset_down"}) {
      ASSERT_FALSE(caught(dir).is_null()) << row.at("output") << " " << dir;
      EXPECT_LE(caught(dir).get<double>(), 0.002) << row.at("output") << " " << dir;
    }
    if (row.at("output").get<std::string>().find("hc_attn/comb") != std::string::npos) {
      EXPECT_LE(caught("scale_up").get<double>(), 1e-5) << row.at("output");  // fp32: far below
    }
  }
  EXPECT_GE(goal, 320);  // measured: 321 of 327 (BENCHMARKS.md, issue 15)
}

TEST_F(CliSensitivity, TakesNoCandidate) {
  expect_bad_input(dsv4("certify --golden '" + kGolden + "' --sensitivity --candidate '" + kGolden + "'"), "certify",
                   "--candidate");
  expect_bad_input(dsv4("certify --golden '" + kGolden + "'"), "certify", "--candidate");
}

}  // namespace
}  // namespace dsv4
