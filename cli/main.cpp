// dsv4 — the DeepSeek-V4 reference oracle command-line tool.
// main.cpp only wires subcommands; each lives in cmd_<name>.cpp and registers itself here.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <limits>

#include "commands.hpp"

int main(int argc, char** argv) {
  // Keep freed blocks up to 32 MiB (glibc's maximum) in the heap and never trim it: certify and
  // run allocate and free a tensor-sized buffer per module, and fresh mmap'd pages cost a page
  // fault each (certify of a 260 MB candidate: 2.3 -> 0.7 CPU-seconds; BENCHMARKS.md). Memory
  // policy only: no result depends on it.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  CLI::App app{
      "dsv4 — deterministic reference simulator and test oracle for the DeepSeek-V4 architecture.\n"
      "Run `dsv4 <command> --help` for a command's usage. Exit codes: 0 success, 1 a check failed,\n"
      "2 bad input (a message on stderr names the problem)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "dsv4 0.1.0");
  dsv4::cli::register_all(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return dsv4::cli::exit_code();
}
