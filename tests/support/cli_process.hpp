// Running the built dsv4 CLI (DSV4_CLI_PATH) from a test in a private temporary directory: exit
// status, stdout and stderr of one command line. Shared by the cli_run / cli_golden / cli_certify tests.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace dsv4::testing_support {

inline std::string read_file(const std::string& p) {
  std::ifstream i(p, std::ios::binary);
  std::stringstream s;
  s << i.rdbuf();
  return s.str();
}

class CliDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("dsv4_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  struct Result {
    int status = -1;
    std::string out, err;
  };
  // Runs `dsv4 <args>` (args are passed to the shell as written).
  Result dsv4(const std::string& args) const {
    const std::string o = file("stdout.txt"), e = file("stderr.txt");
    const std::string cmd = std::string("'") + DSV4_CLI_PATH + "' " + args + " > '" + o + "' 2> '" + e + "'";
    const int raw = std::system(cmd.c_str());
    Result r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = slurp(o);
    r.err = slurp(e);
    std::filesystem::remove(o);
    std::filesystem::remove(e);
    return r;
  }
  static std::string slurp(const std::string& p) { return read_file(p); }
  // Bad input: exit 2 and exactly one stderr line "dsv4 <command>: error: …" containing `expect`.
  void expect_bad_input(const Result& r, const std::string& command, const std::string& expect) const {
    EXPECT_EQ(r.status, 2) << r.err << r.out;
    EXPECT_EQ(r.err.rfind("dsv4 " + command + ": error: ", 0), 0u) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    EXPECT_NE(r.err.find(expect), std::string::npos) << "expected '" << expect << "' in: " << r.err;
  }

  std::filesystem::path dir_;
};

}  // namespace dsv4::testing_support
