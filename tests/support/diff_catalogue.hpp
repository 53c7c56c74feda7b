// The bug catalogue judged by the teacher-forced diff, shared by tests/diff_test.cpp (synthetic
// weights) and tests/diff_checkpoint_test.cpp (checkpoint weights): each deviation is caught and
// blamed on the module with the bug, except the documented misses (bug_catalogue.hpp diff_misses,
// each at a measured limit), which must still miss.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "bug_catalogue.hpp"
#include "dsv4/diff/teacher_forced.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4::testing_support {

// The component of a module path: the layer index dropped (`layers.3.hc_attn` → `layers.hc_attn`).
// A bug in shared code (every layer's Sinkhorn) is correctly blamed on the first layer whose inputs
// make it detectable, which need not be layer 0.
inline std::string component(const std::string& module) {
  if (module.rfind("layers.", 0) != 0) return module;
  const std::size_t dot = module.find('.', 7);
  return "layers" + (dot == std::string::npos ? std::string() : module.substr(dot));
}

// The catalogue's counts over the deviations judged so far.
struct CatalogueTally {
  int caught = 0;  // deviations outside diff_misses with a first divergent module
  int blamed = 0;  // of those, blamed on the expected component
  // Prints deviation d's line; expects a documented miss to miss still, any other deviation to be
  // blamed on its expected component (expected_first_divergent_module), and counts it.
  void judge(Deviation d, const diff::DiffReport& r) {
    const std::string& expected = expected_first_divergent_module().at(d);
    const std::string got = r.first_divergent_module.value_or("(none)");
    std::printf("  %-24s first divergent: %-28s expected component: %s\n", deviation_name(d).c_str(), got.c_str(),
                expected.c_str());
    if (diff_misses().contains(d)) {
      EXPECT_EQ(got, "(none)") << deviation_name(d) << " is now caught: remove it from diff_misses()\n"
                               << diff::diff_table(r);
      return;
    }
    caught += r.first_divergent_module.has_value();
    blamed += component(got) == component(expected);
    EXPECT_EQ(component(got), component(expected)) << deviation_name(d) << "\n" << diff::diff_table(r);
  }
};

}  // namespace dsv4::testing_support
