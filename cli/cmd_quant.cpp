#include "commands.hpp"
namespace dsv4::cli {
void register_quant(CLI::App& app) { app.add_subcommand("quant", "Apply a quantiser to a .npy file (placeholder)"); }
}  // namespace dsv4::cli
