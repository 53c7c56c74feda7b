#include "dsv4/golden/cli_guard.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "dsv4/config/resource_limits.hpp"

namespace dsv4 {

namespace {

std::string g_command_line;
std::string g_estimate_what;
double g_estimate_bytes = -1;

std::string one_line(std::string msg) {
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  std::replace(msg.begin(), msg.end(), '\r', ' ');
  return msg;
}

std::string memory_message(const std::string& command) {
  std::string m = "not enough memory for " + (g_estimate_what.empty() ? command : g_estimate_what);
  if (g_estimate_bytes >= 0) m += " (estimate " + human_bytes(g_estimate_bytes) + ")";
  if (const auto avail = available_memory_bytes()) m += "; " + human_bytes(*avail) + " available now";
  return m + "; lower the sizes of the input (config, prompt length, batch)";
}

}  // namespace

void set_command_line(int argc, const char* const* argv) {
  g_command_line.clear();
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const bool quote = a.empty() || a.find_first_of(" \t'\"\\$`") != std::string::npos;
    if (quote) {
      std::string q = "'";
      for (char ch : a) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      a = q + "'";
    }
    g_command_line += (i ? " " : "") + a;
  }
}

void note_memory_estimate(const std::string& what, double bytes) {
  g_estimate_what = what;
  g_estimate_bytes = bytes;
}

int report_current_exception(const std::string& command) {
  std::string msg;
  int rc = 2;
  try {
    throw;
  } catch (const std::bad_alloc&) {
    msg = memory_message(command);
  } catch (const std::length_error&) {
    msg = memory_message(command);
  } catch (const std::invalid_argument& e) {
    msg = e.what();
  } catch (const std::logic_error& e) {
    msg = e.what();
    rc = 3;
  } catch (const std::runtime_error& e) {
    msg = e.what();
  } catch (const nlohmann::json::exception& e) {  // JSON of an input file (a manifest, a map) not as expected
    msg = e.what();
  } catch (const std::exception& e) {
    msg = e.what();
    rc = 3;
  } catch (...) {
    msg = "unknown exception";
    rc = 3;
  }
  std::fflush(stdout);
  if (rc == 3) {
    std::fprintf(stderr,
                 "dsv4 %s: internal error (a bug in dsv4, not in your input): %s -- please report it with the "
                 "command line: %s\n",
                 command.c_str(), one_line(msg).c_str(),
                 g_command_line.empty() ? ("dsv4 " + command).c_str() : g_command_line.c_str());
  } else {
    std::fprintf(stderr, "dsv4 %s: error: %s\n", command.c_str(), one_line(msg).c_str());
  }
  return rc;
}

int run_guarded(const std::string& command, const std::function<int()>& body) {
  try {
    return body();
  } catch (...) {
    return report_current_exception(command);
  }
}

}  // namespace dsv4
