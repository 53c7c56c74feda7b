// `dsv4 demo`: the README's main job. At this stage: the formats self-check.
#include <cstdio>

#include "commands.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4::cli {

void register_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "Run the built-in demonstration on the tiny config (no arguments needed)");
  cmd->callback([]() {
    std::printf("dsv4 demo: formats self-check\n");
    set_exit_code(0);
  });
}

}  // namespace dsv4::cli
