// Temporary files of atomic writes (oracle/io temp_files.hpp, issue 14 item 4): a SIGTERM or SIGINT
// during a write removes the temporary file before the process ends by the signal; a stale
// temporary file of a killed process is removed by the next write to the same target, one of a
// running process is left alone.
#include "dsv4/io/temp_files.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "dsv4/io/atomic_file.hpp"
#include "dsv4/io/hdf5_file.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

class TempFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv4_temp_files_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& n) const { return (dir_ / n).string(); }
  int temps() const {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir_))
      n += e.path().filename().string().find(".tmp.") != std::string::npos;
    return n;
  }
  fs::path dir_;
};

// A pid that no longer runs: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  ::waitpid(p, nullptr, 0);
  return p;
}

// In a child: open a temporary file for `target` (AtomicFile or Hdf5File), tell the parent, wait to
// be killed by `sig`; the parent checks that the child died by the signal and left no temporary file.
void killed_during_write(const std::string& target, bool hdf5, int sig, int& signalled_by, int& left) {
  std::array<int, 2> ready{};
  ASSERT_EQ(::pipe(ready.data()), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    if (hdf5) {
      Hdf5File f = Hdf5File::create(target);
      (void)::write(ready[1], "x", 1);
      for (;;) ::pause();
    }
    AtomicFile f(target);
    const std::string text = "partial";
    f.write(std::as_bytes(std::span<const char>(text.data(), text.size())));
    (void)::write(ready[1], "x", 1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ::kill(child, sig);
  int status = 0;
  ::waitpid(child, &status, 0);
  signalled_by = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  left = 0;
  for (const auto& e : fs::directory_iterator(fs::path(target).parent_path()))
    left += e.path().filename().string().find(".tmp.") != std::string::npos;
}

TEST_F(TempFiles, SignalDuringAWriteRemovesTheTemporaryFile) {
  for (const int sig : {SIGTERM, SIGINT, SIGHUP}) {
    for (const bool hdf5 : {false, true}) {
      int by = 0, left = -1;
      killed_during_write(file(hdf5 ? "out.h5" : "out.json"), hdf5, sig, by, left);
      EXPECT_EQ(by, sig) << "the process must still end by the signal (" << sig << ")";
      EXPECT_EQ(left, 0) << "signal " << sig << (hdf5 ? " during an HDF5 write" : " during an atomic write");
      EXPECT_FALSE(fs::exists(file(hdf5 ? "out.h5" : "out.json")));
    }
  }
}

TEST_F(TempFiles, SigkillLeavesAStaleFileThatTheNextWriteRemoves) {
  // SIGKILL cannot be handled: the temporary file stays …
  int by = 0, left = 0;
  killed_during_write(file("out.json"), false, SIGKILL, by, left);
  EXPECT_EQ(by, SIGKILL);
  EXPECT_EQ(left, 1);
  // … plus one of another dead process and one of a running process (pid 1 always runs).
  const std::string dead = file("out.json.tmp." + std::to_string(dead_pid()) + ".7");
  const std::string running = file("out.json.tmp.1.0");
  const std::string other_target = file("other.json.tmp." + std::to_string(dead_pid()) + ".0");
  for (const auto& p : {dead, running, other_target}) std::ofstream(p) << "x";
  AtomicFile f(file("out.json"));
  f.write(std::as_bytes(std::span<const char>("ok", 2)));
  f.commit();
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(running));       // its process may still be writing
  EXPECT_TRUE(fs::exists(other_target));  // another target's: not this write's business
  EXPECT_EQ(temps(), 2);
  // An HDF5 write sweeps its own target the same way.
  const std::string dead_h5 = file("g.h5.tmp." + std::to_string(dead_pid()) + ".0");
  std::ofstream(dead_h5) << "x";
  Hdf5File h = Hdf5File::create(file("g.h5"));
  h.commit();
  EXPECT_FALSE(fs::exists(dead_h5));
}

TEST_F(TempFiles, NameIsTargetPidCounter) {
  EXPECT_EQ(temp_name("/a/b.json", 3), "/a/b.json.tmp." + std::to_string(::getpid()) + ".3");
  EXPECT_EQ(remove_stale_temps(file("nothing-here")), 0);
  EXPECT_EQ(remove_stale_temps("/nonexistent-dir/x"), 0);  // never throws
}

}  // namespace
}  // namespace dsv4
