// A number in a verdict's text: three significant digits ("%.3g"). Private to oracle/compare
// (tolerance.cpp, structure.cpp).
#pragma once

#include <cstdio>
#include <string>

namespace dsv4::compare::detail {

inline std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace dsv4::compare::detail
