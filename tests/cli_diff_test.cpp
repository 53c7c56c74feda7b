// `dsv4 diff --teacher-forced` end to end: the reference's own official and exact dumps pass every
// module; a dump with one module's output scaled by 1.01 is localised to that module, at the step
// where it was changed (the modules after it recompute from the changed tensor and pass); a
// dump without module inputs checks nothing and fails; bad input exits 2.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsv4/io/hdf5_file.hpp"
#include "support/cli_process.hpp"
#include "support/dump_edit.hpp"

namespace dsv4 {
namespace {

using testing_support::perturbed_copy;
using testing_support::scaled_copy;

class CliDiff : public testing_support::GoldenSuite {
 protected:
  Result diff(const std::string& candidate, const std::string& extra = "") const {
    return dsv4("diff --golden " + path("g.h5") + " --candidate " + candidate + " --teacher-forced --json " +
                file("d.json") + " " + extra);
  }
};

TEST_F(CliDiff, OfficialDumpPassesEveryModule) {
  const auto r = diff(path("off.h5"), "--svg " + file("d.svg"));
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("first divergent module: none"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(slurp(file("d.json")));
  EXPECT_TRUE(j.at("first_divergent_module").is_null()) << j.at("first_divergent_module");
  EXPECT_EQ(j.at("failed_modules"), 0);
  // 6 layers × 3 steps × at least 8 modules each, plus the head.
  EXPECT_GE(j.at("checked_modules").get<int>(), 6 * 3 * 8);
  EXPECT_TRUE(j.at("missing_inputs").empty()) << j.at("missing_inputs");
  EXPECT_NE(slurp(file("d.svg")).find("<svg"), std::string::npos);
}

TEST_F(CliDiff, ExactDumpPassesEveryModule) {
  const auto r = diff(path("ex.h5"), "--candidate-format float64");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
}

TEST_F(CliDiff, ScaledModuleOutputIsLocalisedToThatModule) {
  const std::string victim = "prefill/layers.4.ffn/out";
  ASSERT_TRUE(scaled_copy(path("off.h5"), file("p.h5"), victim));
  const auto r = diff(file("p.h5"));
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  const auto j = nlohmann::json::parse(slurp(file("d.json")));
  EXPECT_EQ(j.at("first_divergent_module"), "layers.4.ffn");
  EXPECT_EQ(j.at("first_divergent_step"), "prefill");
  // Teacher forcing: every later module recomputes from the candidate's own input and passes —
  // except the consumer layers.4 (the FFN site's hc_post): its dumped output was computed from the
  // unscaled tensor, so it is not what that module makes of its dumped input (an edit after the
  // fact does not propagate as a real bug would). Nothing else fails.
  std::vector<std::string> failed;
  for (const auto& m : j.at("modules"))
    if (m.at("verdict") == "FAIL")
      failed.push_back(m.at("step").get<std::string>() + " " + m.at("module").get<std::string>());
  EXPECT_EQ(failed, (std::vector<std::string>{"prefill layers.4.ffn", "prefill layers.4"})) << r.out;
  EXPECT_NE(r.out.find("first divergent module: layers.4.ffn"), std::string::npos) << r.out;
}

TEST_F(CliDiff, DumpWithoutModuleInputsChecksNothingAndFails) {
  {
    const Hdf5File in = Hdf5File::open(path("off.h5"));
    Hdf5File out = Hdf5File::create(file("head_only.h5"));
    out.write("decode1/head/out", in.read("decode1/head/out"));
    out.commit();
  }
  const auto r = diff(file("head_only.h5"));
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("no module could be checked"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(slurp(file("d.json")));
  EXPECT_EQ(j.at("checked_modules"), 0);
  EXPECT_FALSE(j.at("missing_inputs").empty());
}

TEST_F(CliDiff, BadInputExitsTwoWithOneLine) {
  expect_bad_input(dsv4("diff --golden " + path("g.h5") + " --candidate " + path("off.h5")), "diff",
                   "--teacher-forced");
  expect_bad_input(diff(file("absent.h5")), "diff", "absent.h5");
  expect_bad_input(dsv4("diff --golden " + path("off.h5") + " --candidate " + path("off.h5") + " --teacher-forced"),
                   "diff", "off.h5");
  const std::string victim = "prefill/layers.1.attn_norm/out";
  ASSERT_TRUE(perturbed_copy(path("off.h5"), file("s.h5"), victim, [](Tensor& t) {
    Tensor cut(t.dtype(), {t.shape()[0], t.shape()[1], t.shape()[2] - 1});
    t = cut;
  }));
  expect_bad_input(diff(file("s.h5")), "diff", victim);
  expect_bad_input(diff(path("off.h5"), "--candidate-format float7"), "diff", "--candidate-format");
}

}  // namespace
}  // namespace dsv4
