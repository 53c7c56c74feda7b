// Outputs never destroy inputs (issue 14 item 4): an output path naming one of the command's input
// files (same device and inode, also through another name), a directory, a device, a FIFO or a
// symbolic link is refused with exit 2 naming the option, before any work — and the input is left
// byte for byte as it was.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

using testing_support::CliDir;
using testing_support::read_file;

class CliOutputGuard : public CliDir {
 protected:
  void SetUp() override {
    CliDir::SetUp();
    golden_ = file("g.h5");
    std::filesystem::copy_file(std::string(DSV4_SOURCE_DIR) + "/goldens/tiny-s1-p6-d2.h5", golden_);
    before_ = read_file(golden_);
  }
  // The command is refused naming `option`, and the golden is unchanged.
  void expect_refused(const std::string& args, const std::string& command, const std::string& option,
                      const std::string& why) {
    const Result r = dsv4(args);
    expect_bad_input(r, command, option);
    EXPECT_NE(r.err.find(why), std::string::npos) << r.err;
    EXPECT_EQ(read_file(golden_), before_) << "the golden was modified";
  }
  std::string golden_, before_;
};

TEST_F(CliOutputGuard, ReportOverAnInputIsRefused) {
  expect_refused("certify --golden " + golden_ + " --candidate " + golden_ + " --json " + golden_, "certify", "--json",
                 "same file as --golden");
  // Through another name (a hard link) too.
  std::filesystem::create_hard_link(golden_, file("alias.h5"));
  expect_refused("certify --golden " + golden_ + " --candidate " + golden_ + " --json " + file("alias.h5"), "certify",
                 "--json", "same file as");
  expect_refused("diff --teacher-forced --golden " + golden_ + " --candidate " + golden_ + " --svg " + golden_, "diff",
                 "--svg", "same file as --golden");
  // diff's two outputs may not be one file either.
  expect_refused("diff --teacher-forced --golden " + golden_ + " --candidate " + golden_ + " --json " + file("r") +
                     " --svg " + file("r"),
                 "diff", "--svg", "same file as --json");
}

TEST_F(CliOutputGuard, DumpOverItsTokensIsRefused) {
  const std::string tokens = file("t.npy");
  std::filesystem::copy_file(golden_, tokens);  // any existing file: the guard runs before it is read
  const std::string t_before = read_file(tokens);
  const Result run = dsv4("run --config tiny --seed 1 --tokens " + tokens + " --dump " + tokens);
  expect_bad_input(run, "run", "--dump");
  const Result gen = dsv4("golden generate --config tiny --seed 1 --tokens " + tokens + " --out " + tokens);
  expect_bad_input(gen, "golden generate", "--out");
  EXPECT_EQ(read_file(tokens), t_before);
}

TEST_F(CliOutputGuard, DirectoriesDevicesFifosAndSymlinksAreRefused) {
  const std::string args = "certify --golden " + golden_ + " --candidate " + golden_ + " --json ";
  std::filesystem::create_directory(file("dir"));
  expect_refused(args + file("dir"), "certify", "--json", "directory");
  expect_refused(args + "/dev/null", "certify", "--json", "not a regular file");
  ASSERT_EQ(::mkfifo(file("fifo").c_str(), 0600), 0);
  expect_refused(args + file("fifo"), "certify", "--json", "not a regular file");
  std::filesystem::create_symlink(file("target.json"), file("link.json"));
  expect_refused(args + file("link.json"), "certify", "--json", "symbolic link");
  EXPECT_FALSE(std::filesystem::exists(file("target.json")));
  const Result q = dsv4("quant --kind bf16 --in " + golden_ + " --out /dev/null");
  expect_bad_input(q, "quant", "not a regular file");
}

}  // namespace
}  // namespace dsv4
