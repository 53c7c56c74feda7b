// A number in a verdict's text: three significant digits ("%.3g") — the one formatter of the
// verdict texts of compare (tolerance, structure) and diff (teacher_forced).
#pragma once

#include <cstdio>
#include <string>

namespace dsv4::compare {

inline std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace dsv4::compare
