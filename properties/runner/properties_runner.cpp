// The ctest runner of the property suites: `properties_runner --source <stem>` runs every property
// registered by properties/<stem>_props.cpp with its default run count and the fixed seed
// (kDefaultSeed, or DSV4_PROPS_SEED from the environment); `--all` runs every property. Prints one
// line per property with its time; on a failure the counterexample and the `dsv4 fuzz` command
// that reproduces it. Exit 0 all passed, 1 a property failed, 2 bad arguments / no property.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "dsv4/properties/registry.hpp"

int main(int argc, char** argv) {
  using namespace dsv4::props;
  std::string source;
  bool all = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--source" && i + 1 < argc) {
      source = argv[++i];
    } else if (a == "--all") {
      all = true;
    } else {
      std::fprintf(stderr, "usage: properties_runner --source <stem> | --all\n");
      return 2;
    }
  }
  if (source.empty() && !all) {
    std::fprintf(stderr, "usage: properties_runner --source <stem> | --all\n");
    return 2;
  }
  std::uint64_t seed = kDefaultSeed;
  if (const char* env = std::getenv("DSV4_PROPS_SEED")) seed = std::strtoull(env, nullptr, 10);

  int ran = 0, failed = 0;
  double total = 0;
  for (const Property& p : registry().all()) {
    if (!all && p.source != source) continue;
    ++ran;
    RunConfig cfg;
    cfg.runs = p.default_runs;
    cfg.seed = seed;
    const auto t0 = std::chrono::steady_clock::now();
    RunResult r;
    try {
      r = p.run(cfg);
    } catch (const std::exception& e) {
      r.passed = false;
      r.message = std::string("exception: ") + e.what();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    total += s;
    std::printf("%-48s %6d runs %8.2f s  %s\n", p.name.c_str(), r.runs_done, s, r.passed ? "ok" : "FAILED");
    if (!r.passed) {
      ++failed;
      std::printf(
          "  %s\n  counterexample:\n%s  reproduce: dsv4 fuzz --property %s --runs %d --seed %llu --max-size %d\n",
          r.message.c_str(), r.counterexample.c_str(), p.name.c_str(), cfg.runs,
          static_cast<unsigned long long>(cfg.seed), cfg.max_size);
    }
    std::fflush(stdout);
  }
  if (ran == 0) {
    std::fprintf(stderr, "properties_runner: no property registered by source '%s'\n", source.c_str());
    return 2;
  }
  std::printf("%d properties, %d failed, %.2f s\n", ran, failed, total);
  return failed == 0 ? 0 : 1;
}
