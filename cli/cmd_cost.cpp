#include "commands.hpp"
namespace dsv4::cli {
void register_cost(CLI::App& app) { app.add_subcommand("cost", "Per-token FLOPs and KV-cache model (not yet implemented)"); }
}  // namespace dsv4::cli
