// Every subcommand's --help: exit 0, teaches (an example), and every committed golden it names
// exists in goldens/; a bad --config names the built-in configs.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <string>

#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

using testing_support::CliDir;

class CliHelp : public CliDir {};

TEST_F(CliHelp, EveryHelpTeachesAndNamesOnlyGoldensThatExist) {
  const std::regex golden_path(R"(goldens/[A-Za-z0-9_.-]+\.h5)");
  int goldens_named = 0;
  for (const char* cmd : {"demo", "quant", "cost", "run", "golden generate", "golden verify", "golden inspect",
                          "certify", "diff", "fuzz"}) {
    const Result r = dsv4(std::string(cmd) + " --help");
    EXPECT_EQ(r.status, 0) << cmd << ": " << r.err;
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << cmd;
    for (std::sregex_iterator it(r.out.begin(), r.out.end(), golden_path), end; it != end; ++it) {
      ++goldens_named;
      EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(DSV4_SOURCE_DIR) / it->str()))
          << "dsv4 " << cmd << " --help names " << it->str() << ", which is not in the repository";
    }
  }
  EXPECT_GT(goldens_named, 0);
}

TEST_F(CliHelp, ABadConfigNameListsTheBuiltInOnes) {
  const Result r = dsv4("golden generate --config tiny-typo --seed 1 --prompt-len 4 --out '" + file("g.h5") + "'");
  expect_bad_input(r, "golden generate", "tiny-typo");
  EXPECT_NE(r.err.find("tiny, tiny16, flash-slice"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(file("g.h5")));
}

}  // namespace
}  // namespace dsv4
