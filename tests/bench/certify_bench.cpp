// `dsv4 certify` end to end, from files: GB/s of candidate data, for the same candidate in three
// storage formats, against a peer measured in the same run: reading the candidate file and the
// golden file from start to end (1 MiB preads, the page cache's copy speed; certify cannot read its
// inputs faster than that). Results and the commands: BENCHMARKS.md §"Issue 5: dsv4 certify end to end".
//
//   certify_bench --golden G.h5 --candidate C.h5 [--work DIR] [--reps 5]
//
// C is a float64 dump of the reference (`dsv4 run --mode official`). From it the bench writes, into
// DIR, the same values as float32 (every value tensor) and in the "native" format an engine holds
// (bf16 where every value of a tensor is on the bf16 grid, float32 otherwise) — exact conversions,
// checked — and times, best of the repetitions, each format in turn: the `dsv4 certify
// --end-to-end-only` command in a fresh process (what a user runs: process start, first-touch
// memory, report printed to /dev/null), and the same work in this process (Golden::open_verified +
// TensorSource::open + certify + the text report; its buffers warm after the first repetition).
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_clock.hpp"
#include "dsv4/golden/certify.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/tensor_source.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/report/certify_report.hpp"

namespace {

using dsv4::bench::Clock;
using dsv4::bench::cpu_seconds;
using dsv4::bench::loadavg;
using dsv4::bench::seconds_since;

double mb(std::uintmax_t bytes) { return static_cast<double>(bytes) / 1e6; }

// The peer: every byte of the files read once, sequentially, into one 1 MiB buffer.
double read_files_seconds(const std::vector<std::string>& paths) {
  std::vector<char> buf(std::size_t{1} << 20);
  const auto t0 = Clock::now();
  for (const std::string& p : paths) {
    const int fd = ::open(p.c_str(), O_RDONLY);
    if (fd < 0) throw std::runtime_error("cannot open " + p);
    off_t off = 0;
    for (;;) {
      const ssize_t n = ::pread(fd, buf.data(), buf.size(), off);
      if (n <= 0) break;
      off += n;
    }
    ::close(fd);
  }
  return seconds_since(t0);
}

enum class Format { kFloat32, kNative };

// The candidate's value tensors rewritten as float32 or in their native grid; integer outputs as
// they are. Throws when a conversion would not be exact.
void convert(const std::string& from, const std::string& to, Format f) {
  const dsv4::Hdf5File in = dsv4::Hdf5File::open(from);
  dsv4::Hdf5File out = dsv4::Hdf5File::create(to);
  for (const std::string& n : in.list_datasets()) {
    const dsv4::Tensor t = in.read(n);
    if (t.dtype() != dsv4::DType::kF64) {
      out.write(n, t);
      continue;
    }
    const auto v = t.values<double>();
    bool bf16 = f == Format::kNative;
    for (const double x : v)
      if (bf16 && std::isfinite(x) && static_cast<double>(dsv4::round_bf16(x)) != x) bf16 = false;
    dsv4::Tensor c(bf16 ? dsv4::DType::kBF16 : dsv4::DType::kF32, t.shape());
    for (std::size_t i = 0; i < v.size(); ++i) {
      const float x = static_cast<float>(v[i]);
      if (!(static_cast<double>(x) == v[i] || (std::isnan(x) && std::isnan(v[i]))))
        throw std::runtime_error(n + ": a value is not a float32 (the candidate must be an official-mode dump)");
      if (bf16) {
        c.values<std::uint16_t>()[i] = dsv4::float_to_bf16(x);
      } else {
        c.values<float>()[i] = x;
      }
    }
    out.write(n, c);
  }
  out.commit();
}

struct Timing {
  double wall = 0, cpu = 0;
  std::size_t tensors = 0, sets = 0, pass = 0;
};

// verified: Golden::open_verified as certify opens it (every golden dataset read is hashed,
// issue 14); otherwise Golden::open (no hashing: the same run's measure of what the hashes cost).
Timing time_certify(const std::string& golden, const std::string& candidate, int reps, bool verified = true) {
  Timing best;
  best.wall = 1e300;
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_seconds();
    const auto t0 = Clock::now();
    const dsv4::Golden g = verified ? dsv4::Golden::open_verified(golden) : dsv4::Golden::open(golden);
    const dsv4::MappedTensorSource cand(dsv4::TensorSource::open(candidate), dsv4::NameMap{});
    const dsv4::report::CertifyReport rep = dsv4::certify(g, cand, {});
    const std::string text = dsv4::report::format_text(rep);
    const double wall = seconds_since(t0), cpu = cpu_seconds() - c0;
    if (wall < best.wall) {
      best.wall = wall;
      best.cpu = cpu;
      best.tensors = rep.tensors.size();
      best.sets = rep.sets.size();
      best.pass = 0;
      for (const auto& t : rep.tensors) best.pass += t.passes() ? 1 : 0;
      for (const auto& s : rep.sets) best.pass += s.passes() ? 1 : 0;
    }
    if (text.empty()) throw std::runtime_error("empty report");
  }
  return best;
}

// The CLI in a fresh process, stdout and stderr to /dev/null: wall seconds and its CPU seconds.
Timing time_cli(const std::string& golden, const std::string& candidate, int reps) {
  Timing best;
  best.wall = 1e300;
  for (int r = 0; r < reps; ++r) {
    std::vector<std::string> args{DSV4_CLI_PATH, "certify", "--golden",         golden,
                                  "--candidate", candidate, "--end-to-end-only"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    rusage before{}, after{};
    getrusage(RUSAGE_CHILDREN, &before);
    const auto t0 = Clock::now();
    pid_t pid = 0;
    if (posix_spawn(&pid, DSV4_CLI_PATH, &fa, nullptr, argv.data(), environ) != 0)
      throw std::runtime_error("cannot start " + std::string(DSV4_CLI_PATH));
    int status = 0;
    waitpid(pid, &status, 0);
    const double wall = seconds_since(t0);
    getrusage(RUSAGE_CHILDREN, &after);
    posix_spawn_file_actions_destroy(&fa);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw std::runtime_error("dsv4 certify did not PASS on " + candidate);
    const auto secs = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec);
    };
    const double cpu = secs(after.ru_utime) - secs(before.ru_utime) + secs(after.ru_stime) - secs(before.ru_stime);
    if (wall < best.wall) {
      best.wall = wall;
      best.cpu = cpu;
    }
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string golden, candidate, work = std::filesystem::temp_directory_path() / "dsv4_certify_bench";
  int reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--golden") {
      golden = v;
    } else if (k == "--candidate") {
      candidate = v;
    } else if (k == "--work") {
      work = v;
    } else if (k == "--reps") {
      reps = std::max(1, std::stoi(v));
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (golden.empty() || candidate.empty()) {
    std::fprintf(stderr, "usage: certify_bench --golden G.h5 --candidate C.h5 [--work DIR] [--reps 5]\n");
    return 2;
  }
  try {
    std::filesystem::create_directories(work);
    const std::string f32 = work + "/candidate_fp32.h5", native = work + "/candidate_native.h5";
    convert(candidate, f32, Format::kFloat32);
    convert(candidate, native, Format::kNative);
    std::printf("certify_bench: golden %s (%.1f MB), load average at start %s, %u hardware threads\n", golden.c_str(),
                mb(std::filesystem::file_size(golden)), loadavg().c_str(), std::thread::hardware_concurrency());
    std::printf("%-24s %8s | %9s %9s %7s | %9s %9s %7s | %9s %9s %7s | %9s %6s | %s\n", "candidate", "MB", "CLI s",
                "GB/s", "CPU s", "in-proc s", "GB/s", "CPU s", "no-hash s", "GB/s", "CPU s", "peer s", "ratio", "PASS");
    for (const auto& [label, path] : std::vector<std::pair<std::string, std::string>>{
             {"float64 (widened dump)", candidate}, {"float32", f32}, {"native (bf16 / fp32)", native}}) {
      const double size = mb(std::filesystem::file_size(path));
      (void)read_files_seconds({path, golden});  // warm the page cache
      const Timing cli = time_cli(golden, path, reps);
      const Timing t = time_certify(golden, path, reps);
      const Timing u = time_certify(golden, path, reps, false);
      double peer = 1e300;
      for (int r = 0; r < reps; ++r) peer = std::min(peer, read_files_seconds({path, golden}));
      std::printf("%-24s %8.1f | %9.3f %9.2f %7.3f | %9.3f %9.2f %7.3f | %9.3f %9.2f %7.3f | %9.3f %6.2f | %zu / %zu\n",
                  label.c_str(), size, cli.wall, size / 1e3 / cli.wall, cli.cpu, t.wall, size / 1e3 / t.wall, t.cpu,
                  u.wall, size / 1e3 / u.wall, u.cpu, peer, cli.wall / peer, t.pass, t.tensors + t.sets);
    }
    std::printf(
        "(CLI: `dsv4 certify --end-to-end-only` in a fresh process; in-proc: the same calls in this process; "
        "no-hash: in-proc without the golden's hash checks (Golden::open); best of %d each. GB/s: of candidate file. "
        "peer: the candidate file and the whole golden file read once (1 MiB "
        "preads); ratio = CLI / peer)\n",
        reps);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "certify_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
