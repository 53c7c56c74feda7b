// The CLI's error contract (README: exit 0 success, 1 a check failed, 2 bad input, 3 internal
// error, one line on stderr): runs a command body and turns an exception into
// "dsv4 <command>: error: <one line>" and its exit status.
//
// Which exceptions are bad input (2): InputError, ConfigError, CheckpointError, TensorError,
// ResourceError and every other std::runtime_error (files, HDF5, the system); nlohmann::json errors
// (the JSON read is an input's: a golden manifest, a name map); std::invalid_argument
// (the reference's components refuse with it values that, through the CLI, come from the user's
// files — a checkpoint's tid2eid, a candidate's tensors); std::bad_alloc and std::length_error
// ("not enough memory for <command>", with the estimate when the command made one).
// Internal (3, a bug in dsv4): every other std::logic_error (out_of_range, domain_error, a broken
// invariant), any other exception; the message
// says so and asks for a report with the command line.
#pragma once

#include <functional>
#include <string>

namespace dsv4 {

// Returns body()'s status, or 2 / 3 after printing the exception's message (newlines replaced).
int run_guarded(const std::string& command, const std::function<int()>& body);

// Inside a catch block: prints the current exception as run_guarded does and returns its status.
int report_current_exception(const std::string& command);

// The command line, quoted in internal-error messages (main sets it).
void set_command_line(int argc, const char* const* argv);

// The memory estimate of the running command, quoted when an allocation fails.
void note_memory_estimate(const std::string& what, double bytes);

}  // namespace dsv4
