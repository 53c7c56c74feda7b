// The cost of the FP8-quantised outputs' two extra rules in the local verdicts (issue 15; no switch
// turns them off): the near-tie flips rule (compare::accept_quant_flips) and the direction test
// (compare::quant_direction_test), against the whole judgement of every output and against the
// whole teacher-forced diff they are part of, measured in the same run. Results and the commands:
// BENCHMARKS.md §"Issue 15: the cost of the near-tie flips rule and the direction test".
//
//   judge_bench --golden G.h5 [--reps 3] [--calls 20]
//
// The candidate is the golden's own official values (the faithful candidate of `dsv4 certify
// --sensitivity`). Timed: (1) teacher_forced_diff of it against the golden (what `dsv4 diff
// --teacher-forced` and certify's local verdicts run; the golden already open and its weights made),
// best of --reps; (2) in the same diff, through its observer (ObservedField), each float output's
// whole judgement (ObservedField::judge: size checks, structure tests, and on the quantised outputs
// the flips rule, the direction test and the FP8 grid check), and on the quantised outputs the flips
// rule and the direction test alone, each the mean of --calls calls on the same values. Printed: the
// sums and the rules' share of the judgement and of the diff. CPU times beside wall times (a shared
// machine inflates wall times, not CPU times).
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "bench_clock.hpp"
#include "dsv4/compare/quant_flips.hpp"
#include "dsv4/compare/tolerance.hpp"
#include "dsv4/diff/dump_getters.hpp"
#include "dsv4/diff/teacher_forced.hpp"
#include "dsv4/golden/golden.hpp"

namespace {

using namespace dsv4::bench;  // bench_clock.hpp: the clocks, timings and machine notes

struct Sums {
  Timing judge, flips, direction;
  std::int64_t outputs = 0, quantised_outputs = 0, elements = 0, quantised_elements = 0, accepted_flips = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string golden_path;
  int reps = 3, calls = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--golden") {
      golden_path = argv[i + 1];
    } else if (a == "--reps") {
      reps = std::stoi(argv[i + 1]);
    } else if (a == "--calls") {
      calls = std::stoi(argv[i + 1]);
    } else {
      golden_path.clear();
      break;
    }
  }
  if (golden_path.empty() || reps < 1 || calls < 1) {
    std::fprintf(stderr, "usage: judge_bench --golden G.h5 [--reps 3] [--calls 20]\n");
    return 2;
  }
  namespace d = dsv4::diff;
  namespace cmp = dsv4::compare;
  std::printf("judge_bench: %s; golden %s\n", cpu_model().c_str(), golden_path.c_str());
  std::printf("load average at start: %s\n", loadavg().c_str());
  const dsv4::Golden g = dsv4::Golden::open_verified(golden_path);
  const dsv4::ModelWeights w = d::golden_weights(g, "");
  const d::RunSchedule schedule = d::golden_schedule(g);
  const d::TensorGetter cand = d::golden_getter(g, "official");
  const d::TensorGetter exact = d::golden_exact_getter(g);
  const cmp::ToleranceParams tol;  // the CLI's

  // (1) The diff alone, best of reps.
  Timing diff{1e300, 1e300};
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_seconds();
    const auto t0 = Clock::now();
    const d::DiffReport rep = d::teacher_forced_diff(g.config(), w, schedule, cand, exact, tol);
    const Timing t{seconds_since(t0), cpu_seconds() - c0};
    if (rep.first_divergent_module)
      throw std::runtime_error("the golden's official values do not pass: " + *rep.first_divergent_module);
    if (t.wall < diff.wall) diff = t;
  }

  // (2) Each output's judgement, and the two rules alone, through the observer.
  Sums s;
  const d::FieldObserver observe = [&](const d::ObservedField& f) {
    const auto add = [](Timing& sum, const Timing& t) {
      sum.wall += t.wall;
      sum.cpu += t.cpu;
    };
    ++s.outputs;
    s.elements += static_cast<std::int64_t>(f.candidate.size());
    add(s.judge, mean_of(calls, [&] { (void)f.judge(f.candidate); }));
    if (f.quantised == nullptr) return;
    ++s.quantised_outputs;
    s.quantised_elements += static_cast<std::int64_t>(f.candidate.size());
    cmp::QuantFlips flips;
    add(s.flips, mean_of(calls, [&] {
          flips = cmp::accept_quant_flips(f.candidate, f.exact, f.exact_pre, f.pre_max_abs_err, f.official_format,
                                          *f.quantised, tol);
        }));
    s.accepted_flips += flips.accepted();
    add(s.direction, mean_of(calls, [&] {
          (void)cmp::quant_direction_test(f.candidate, f.official, f.exact, *f.quantised, tol.k, tol.structure);
        }));
  };
  (void)d::teacher_forced_diff(g.config(), w, schedule, cand, exact, tol, std::nullopt, observe);

  const Timing rules{s.flips.wall + s.direction.wall, s.flips.cpu + s.direction.cpu};
  std::printf(
      "float outputs judged: %lld (%lld elements); FP8-quantised: %lld (%lld elements, %lld near-tie flips "
      "accepted)\n",
      static_cast<long long>(s.outputs), static_cast<long long>(s.elements),
      static_cast<long long>(s.quantised_outputs), static_cast<long long>(s.quantised_elements),
      static_cast<long long>(s.accepted_flips));
  std::printf("%-52s %12s %12s\n", "", "wall (s)", "CPU (s)");
  const auto line = [](const char* what, const Timing& t) {
    std::printf("%-52s %12.6f %12.6f\n", what, t.wall, t.cpu);
  };
  line("teacher_forced_diff (best of reps)", diff);
  line("judge(), every float output (sum of means)", s.judge);
  line("accept_quant_flips, quantised outputs (sum)", s.flips);
  line("quant_direction_test, quantised outputs (sum)", s.direction);
  line("the two rules together", rules);
  std::printf("share of the rules: %.4f of the judgements (CPU %.4f), %.5f of the diff (CPU %.5f)\n",
              rules.wall / s.judge.wall, rules.cpu / s.judge.cpu, rules.wall / diff.wall, rules.cpu / diff.cpu);
  std::printf("  flips rule %.5f, direction test %.5f of the diff (wall)\n", s.flips.wall / diff.wall,
              s.direction.wall / diff.wall);
  std::printf("load average at end: %s\n", loadavg().c_str());
  return 0;
}
