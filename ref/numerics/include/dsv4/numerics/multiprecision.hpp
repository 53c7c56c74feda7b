// The one place that includes Boost.Multiprecision. GCC 12 reports false-positive
// -Wmaybe-uninitialized warnings inside Boost's cpp_int at -O2/-O3; they are silenced for the
// Boost headers only, so the project's own code keeps every warning as an error.
#pragma once

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <boost/multiprecision/cpp_bin_float.hpp>
#include <boost/multiprecision/cpp_int.hpp>
#pragma GCC diagnostic pop

namespace dsv4 {
using BigInt = boost::multiprecision::cpp_int;
// ≥ 50 decimal digits (≈166 bits): the precision of every multiprecision re-decision.
using Mp50 = boost::multiprecision::cpp_bin_float_50;
}  // namespace dsv4
