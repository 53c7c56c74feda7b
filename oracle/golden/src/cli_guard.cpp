#include "dsv4/golden/cli_guard.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>

namespace dsv4 {

int run_guarded(const std::string& command, const std::function<int()>& body) {
  std::string msg;
  try {
    return body();
  } catch (const std::exception& e) {
    msg = e.what();
  } catch (...) {
    msg = "unknown error";
  }
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  std::replace(msg.begin(), msg.end(), '\r', ' ');
  std::fflush(stdout);
  std::fprintf(stderr, "dsv4 %s: error: %s\n", command.c_str(), msg.c_str());
  return 2;
}

}  // namespace dsv4
