// `dsv4 demo`: the README's main job, on the built-in tiny config with no arguments.
// Stage 1 (this version): the formats and quantisers self-check.
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "dsv4/selfcheck/formats_selfcheck.hpp"

namespace dsv4::cli {

namespace {

int print_section(const char* title, const std::vector<SelfCheckLine>& lines) {
  std::printf("\n%s\n", title);
  std::printf("  %-62s %10s %9s  %s\n", "check", "cases", "failures", "verdict");
  int failed = 0;
  for (const auto& l : lines) {
    std::printf("  %-62s %10lld %9lld  %s\n", l.what.c_str(), static_cast<long long>(l.cases),
                static_cast<long long>(l.failures), l.failures == 0 ? "PASS" : "FAIL");
    if (l.failures != 0) {
      std::printf("      first failure: %s\n", l.first_failure.c_str());
      ++failed;
    }
  }
  return failed;
}

}  // namespace

void register_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo",
                                 "Run the built-in demonstration (no arguments needed): the formats and quantisers\n"
                                 "self-check. Exit 0 when every check passes, 1 otherwise.");
  auto seed = std::make_shared<std::uint64_t>(20261122);
  cmd->add_option("--seed", *seed, "seed of the synthetic tensors")->capture_default_str();
  cmd->callback([seed]() {
    std::printf("dsv4 demo — DeepSeek-V4 reference oracle\n");
    int failed = print_section("1. number formats (spec 01 §1.1–1.2)", run_formats_selfcheck());
    failed += print_section("2. QAT quantisers (spec 01 §1.3–1.5)", run_quant_selfcheck(*seed));
    std::printf("\n%s\n", failed == 0 ? "demo: all checks passed" : "demo: some checks FAILED");
    set_exit_code(failed == 0 ? 0 : 1);
  });
}

}  // namespace dsv4::cli
