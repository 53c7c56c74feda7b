// The CLI's error contract for the oracle commands (README: exit 0 success, 1 a check failed, 2 bad
// input with one line on stderr): runs a command body and turns any exception into
// "dsv4 <command>: error: <one line>" and exit status 2.
#pragma once

#include <functional>
#include <string>

namespace dsv4 {

// Returns body()'s status, or 2 after printing the exception's message (newlines replaced).
int run_guarded(const std::string& command, const std::function<int()>& body);

}  // namespace dsv4
