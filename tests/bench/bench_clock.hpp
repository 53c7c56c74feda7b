// What every benchmark prints beside its numbers: wall time, CPU time, the machine's load and its
// CPU model (BENCHMARKS.md states them with each result); and a measurement in a child process of
// its own, for its peak RSS.
#pragma once

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>

namespace dsv4::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU time of the whole process (all threads): unlike wall time, not inflated when other
// processes share the cores.
inline double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// The wall and CPU seconds of one measurement.
struct Timing {
  double wall = 0.0, cpu = 0.0;
};

// The best wall time of `reps` calls of f (with that call's CPU time).
template <class F>
Timing best_of(int reps, F&& f) {
  Timing best{1e300, 1e300};
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_seconds();
    const auto t0 = Clock::now();
    f();
    const double wall = seconds_since(t0);
    if (wall < best.wall) best = {wall, cpu_seconds() - c0};
  }
  return best;
}

// The mean wall and CPU time of `calls` calls of f.
template <class F>
Timing mean_of(int calls, F&& f) {
  const double c0 = cpu_seconds();
  const auto t0 = Clock::now();
  for (int i = 0; i < calls; ++i) f();
  return {seconds_since(t0) / calls, (cpu_seconds() - c0) / calls};
}

inline std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

inline std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

// A child process's exit status (-1 when it did not exit normally) and peak RSS.
struct ChildRun {
  int status = -1;
  double peak_rss_mib = 0.0;
};

// Runs `body` (which returns the exit status) in a forked child, so that the peak RSS measured is
// the body's own; stdout is flushed before the fork and at the child's end.
template <class F>
ChildRun run_in_child(F&& body) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    const int rc = body();
    std::fflush(stdout);
    std::_Exit(rc);
  }
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, static_cast<double>(ru.ru_maxrss) / 1024.0};
}

}  // namespace dsv4::bench
