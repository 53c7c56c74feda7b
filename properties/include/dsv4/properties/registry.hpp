// The property registry (issue 6): every property of every properties/<stem>_props.cpp, runnable
// from ctest (properties_runner, label `properties`) and from `dsv4 fuzz --property NAME`.
//
// Adding a property (properties/README.md §Adding a property):
//   1. In properties/<stem>_props.cpp define `void register_<stem>_properties(Registry& r)` in
//      namespace dsv4::props and add each property there:
//        r.add_rc("quant.idempotence", "quant", "Q∘Q = Q for the in-place quantisers", 100,
//                 [] { ... RC_ASSERT(...); });
//   2. Re-run cmake: the build generates the one list that calls every register_<stem>_properties
//      from the file names (a missing function is a link error, never a silently dropped suite).
// The testable is any RapidCheck testable (a callable using *gen and RC_ASSERT, or one taking
// arbitrary arguments); it is checked with the given seed, run count and maximum size.
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace dsv4::props {

// The seed of the ctest runs (fixed, so CI is reproducible; `dsv4 fuzz` draws a fresh one unless
// --seed is given).
inline constexpr std::uint64_t kDefaultSeed = 1;

// How one property is run.
struct RunConfig {
  int runs = 100;                     // successful cases to reach (RapidCheck maxSuccess)
  std::uint64_t seed = kDefaultSeed;  // the same (seed, runs, max_size) gives the same cases
  int max_size = 100;                 // RapidCheck maxSize: the largest size parameter the generators see
  // Called after every case with the number of cases finished so far (may be empty).
  std::function<void(int done)> progress;
};

// What came of it.
struct RunResult {
  bool passed = false;
  int runs_done = 0;           // successful cases before the end (or before the failure)
  int discarded = 0;           // cases discarded by RC_PRE / RC_DISCARD (cases that passed a check too)
  std::string counterexample;  // failure: the shrunk counterexample, one "type: value" line per draw
  std::string message;         // failure: what failed (the assertion and its values); else a summary
};

using RunFunction = std::function<RunResult(const RunConfig&)>;

// One named property.
struct Property {
  std::string name;         // "<component>.<what>", lower case [a-z0-9_.], e.g. "quant.idempotence"
  std::string component;    // the component it checks, e.g. "quant" (same name as in ref/)
  std::string description;  // one line
  int default_runs = 100;   // the CI run count (ctest); all default runs together stay ≤ 5 minutes
  RunFunction run;
  std::string source;  // set by the registry: the <stem> of the properties/<stem>_props.cpp
};

class Registry {
 public:
  // Throws std::invalid_argument on an empty or malformed name (not [a-z0-9_.] with a '.'),
  // a duplicate name, an empty component or description, default_runs < 1 or no run function.
  void add(Property p);
  // A RapidCheck testable as a property (run through run_rapidcheck).
  template <typename Testable>
  void add_rc(std::string name, std::string component, std::string description, int default_runs, Testable&& testable);

  const std::vector<Property>& all() const { return props_; }
  // nullptr when unknown.
  const Property* find(const std::string& name) const;

  // Used by the generated list: properties added inside `fn` get source = stem.
  void add_source(const std::string& stem, void (*fn)(Registry&));

 private:
  std::vector<Property> props_;
  std::string current_source_;
};

// Every registered property (built on first use from the generated list).
const Registry& registry();

// Runs a RapidCheck property with cfg's seed, run count and maximum size (shrinking on failure).
// Prints nothing.
RunResult run_rapidcheck(const rc::detail::Property& property, const std::string& name, const RunConfig& cfg);

template <typename Testable>
void Registry::add_rc(std::string name, std::string component, std::string description, int default_runs,
                      Testable&& testable) {
  // One Property object per run: RapidCheck properties are cheap to build.
  auto t = std::forward<Testable>(testable);
  const std::string id = name;
  add(Property{std::move(name),
               std::move(component),
               std::move(description),
               default_runs,
               [t, id](const RunConfig& cfg) { return run_rapidcheck(rc::detail::toProperty(t), id, cfg); },
               {}});
}

}  // namespace dsv4::props
