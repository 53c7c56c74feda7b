// Every subcommand's --help: exit 0, teaches (an example), and every committed golden it names
// exists in goldens/; a bad --config names the built-in configs.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

using testing_support::CliDir;

class CliHelp : public CliDir {
 protected:
  // The names under "Subcommands:" of a CLI11 help text (two-space indented, first word).
  static std::vector<std::string> subcommands(const std::string& help) {
    std::vector<std::string> names;
    const std::size_t at = help.find("Subcommands:\n");
    if (at == std::string::npos) return names;
    std::istringstream in(help.substr(at + 13));
    for (std::string line; std::getline(in, line);) {
      if (line.size() > 2 && line[0] == ' ' && line[1] == ' ' && line[2] != ' ')
        names.push_back(line.substr(2, line.find(' ', 2) - 2));
    }
    return names;
  }
};

TEST_F(CliHelp, EveryHelpTeachesAndNamesOnlyGoldensThatExist) {
  const std::regex golden_path(R"(goldens/[A-Za-z0-9_.-]+\.h5)");
  int goldens_named = 0;
  // Every subcommand the tool lists (and the subcommands of those), so that a new one is covered.
  std::vector<std::string> cmds;
  for (const std::string& top : subcommands(dsv4("--help").out)) {
    const std::vector<std::string> inner = subcommands(dsv4(top + " --help").out);
    if (inner.empty()) cmds.push_back(top);
    for (const std::string& s : inner) cmds.push_back(top + " " + s);
  }
  for (const char* expected : {"demo", "quant", "cost", "run", "golden generate", "golden verify", "golden inspect",
                               "certify", "diff", "fuzz", "outputs", "weights export", "weights list", "audit"})
    EXPECT_NE(std::find(cmds.begin(), cmds.end(), expected), cmds.end()) << expected << " is not listed";
  for (const std::string& cmd : cmds) {
    const Result r = dsv4(cmd + " --help");
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
