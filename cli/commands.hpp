// Registration of the dsv4 subcommands. Each cmd_<name>.cpp defines one register_<name>().
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace dsv4::cli {

// Every subcommand's callback stores its exit code here (0 ok, 1 check failed, 2 bad input).
void set_exit_code(int code);
int exit_code();

// The options naming the golden a candidate is judged against (certify, diff): --golden, required,
// and --golden-sha256, the manifest hash the user expects (Golden::open_verified checks it).
inline void add_golden_options(CLI::App* cmd, std::string& golden, std::string& golden_sha256) {
  cmd->add_option("--golden", golden, "golden .h5 (dsv4 golden generate)")->required();
  cmd->add_option("--golden-sha256", golden_sha256,
                  "the golden's manifest SHA-256 you expect (goldens/README.md lists the committed ones): exit 2 "
                  "if it differs");
}

void register_demo(CLI::App& app);
void register_quant(CLI::App& app);
void register_cost(CLI::App& app);
void register_fuzz(CLI::App& app);
void register_run(CLI::App& app);
void register_golden(CLI::App& app);
void register_certify(CLI::App& app);
void register_diff(CLI::App& app);
void register_outputs(CLI::App& app);
void register_weights(CLI::App& app);
void register_audit(CLI::App& app);

inline void register_all(CLI::App& app) {
  register_demo(app);
  register_quant(app);
  register_cost(app);
  register_fuzz(app);
  register_run(app);
  register_golden(app);
  register_certify(app);
  register_diff(app);
  register_outputs(app);
  register_weights(app);
  register_audit(app);
}

}  // namespace dsv4::cli
