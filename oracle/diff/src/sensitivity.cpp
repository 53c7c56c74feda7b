// The sensitivity of certify's local verdicts; see sensitivity.hpp.
#include "dsv4/diff/sensitivity.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <span>
#include <stdexcept>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/compare/structure.hpp"
#include "dsv4/compare/ulp.hpp"
#include "dsv4/diff/dump_getters.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/report/text_table.hpp"

namespace dsv4::diff {
namespace {

// ε tried: 1, 2, 5 per decade from 10^-5 to 10^-1.
std::vector<double> ladder() {
  std::vector<double> l;
  for (double d = 1e-5; d < 0.5; d *= 10)
    for (const double m : {1.0, 2.0, 5.0})
      if (m * d <= 0.1 + 1e-12) l.push_back(m * d);
  return l;
}

// The value an engine that stores `format` writes for x.
double store(DType format, double x) {
  switch (format) {
    case DType::kBF16:
      return round_bf16(x);
    case DType::kF16:
      return fp16_to_float(float_to_fp16(static_cast<float>(x)));
    case DType::kF32:
      return static_cast<float>(x);
    case DType::kF64:
      return x;
    default:
      throw std::logic_error(std::string("sensitivity: no injection into ") + std::string(dtype_name(format)) +
                             " outputs");
  }
}

// A fixed point of (0.02, 0.98) per element index (splitmix64): where in its rounding interval an
// engine's unrounded value lies; kept off the interval's ends so that rounding it back gives the
// stored value (never a tie).
double unit_dither(std::size_t i) {
  std::uint64_t z = static_cast<std::uint64_t>(i) + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return 0.02 + 0.96 * static_cast<double>(z >> 11) * 0x1.0p-53;
}

// What one injected error looks like to the judge: the first failing size check, and the smallest
// structure p-value with its test.
struct Probe {
  std::string size_fail;  // "" when every size check passes
  double min_p = 1.0;
  std::string p_kind;
};

enum Direction { kScaleUp, kScaleDown, kOffsetUp, kOffsetDown, kDirections };

struct Pending {
  SensitivityRow row;
  std::vector<std::array<Probe, kDirections>> probes;  // [ladder index][direction]
  double scale_allowance = 0.0, scale_se = 0.0;
  bool scale_ran = false;
  double offset_allowance = 0.0, offset_se = 0.0;  // relative to the exact rms
  bool offset_ran = false;
};

// The probe is the diff's own judgement of the output (ObservedField::judge): the same yardstick,
// the quantised outputs' accepted near-tie flips and their direction test, so the table says what
// certify would say of an engine that made that error.
Probe probe(const ObservedField& f, std::span<const double> cand) {
  Probe p;
  const OutputJudgement j = f.judge(cand);
  for (const compare::Check& c : j.verdict.checks)
    if (!c.pass) {
      p.size_fail = c.name;
      break;
    }
  if (p.size_fail.empty() && j.verdict.verdict != compare::Verdict::kPass) p.size_fail = "fp8_grid";
  for (const compare::StructureStat& x : j.structure)
    if (x.ran && x.p < p.min_p) {
      p.min_p = x.p;
      p.p_kind = compare::structure_kind_name(x.kind);
    }
  return p;
}

// The official model's block quantisation (spec 01 §1.4 / §1.5, Precision::quantise) of the
// quantised columns of every row of `values` (row length layout.cols), in place.
void quantise_official(std::vector<double>& values, const compare::QuantisedLayout& layout) {
  const auto rows = static_cast<Eigen::Index>(static_cast<std::int64_t>(values.size()) / layout.cols);
  Mat m = Eigen::Map<const Mat>(values.data(), rows, layout.cols);
  Precision(Mode::kOfficial).quantise(m, 0, rows, 0, layout.quantised_cols, layout.block, layout.kind);
  Eigen::Map<Mat>(values.data(), rows, layout.cols) = m;
}

// The scale slope's standard error when every element of the official output carries an
// independent rounding error of variance v: sqrt(Σ o² v) / Σ o². A rounding to the stored format is
// uniform on ±½ ulp: v = ulp(o)²/12. On a quantised output's quantised columns the rounding is the
// block quantiser's (FP8 / FP4 steps, far coarser than the stored format's): v is the square of its
// own error there, o minus the official value before the quantisation point.
double rounding_scale_se(const ObservedField& f) {
  const compare::UlpGrid grid = compare::ulp_grid(f.official_format);
  const compare::QuantisedLayout* q = f.quantised;
  double soo = 0.0, var = 0.0;
  for (std::size_t i = 0; i < f.official.size(); ++i) {
    const double x = f.official[i];
    if (!std::isfinite(x)) continue;
    soo += x * x;
    if (q != nullptr && static_cast<std::int64_t>(i) % q->cols < q->quantised_cols) {
      const double d = x - f.official_pre[i];
      var += x * x * d * d;
    } else {
      const double u = compare::ulp_at(grid, x);
      var += x * x * u * u / 12.0;
    }
  }
  return soo > 0.0 ? std::sqrt(var) / soo : 0.0;
}

// The root mean square of the finite values (0 when there are none).
double finite_rms(std::span<const double> v) {
  double sum_sq = 0.0;
  std::int64_t n = 0;
  for (const double x : v)
    if (std::isfinite(x)) {
      sum_sq += x * x;
      ++n;
    }
  return n > 0 ? std::sqrt(sum_sq / static_cast<double>(n)) : 0.0;
}

// The offset test's weighted mean Σ w·d / Σ w (compare/structure.cpp: w = (u0/u)², u the ulp of the
// official value at max(|o|, rms(o)/16) in the stored format, u0 that of rms(o)/16): its standard
// error when every element carries only its rounding error of variance v (as rounding_scale_se):
// sqrt(Σ w² v) / Σ w.
double rounding_offset_se(const ObservedField& f) {
  const compare::UlpGrid grid = compare::ulp_grid(f.official_format);
  const compare::QuantisedLayout* q = f.quantised;
  if (std::none_of(f.official.begin(), f.official.end(), [](double x) { return std::isfinite(x); })) return 0.0;
  const double floor = finite_rms(f.official) / 16.0;
  const double u0 = compare::ulp_at(grid, floor);
  double sw = 0.0, var = 0.0;
  for (std::size_t i = 0; i < f.official.size(); ++i) {
    const double x = f.official[i];
    if (!std::isfinite(x)) continue;
    const double u = compare::ulp_at(grid, std::max(std::fabs(x), floor));
    const double w = (u0 / u) * (u0 / u);
    double v = compare::ulp_at(grid, x) * compare::ulp_at(grid, x) / 12.0;
    if (q != nullptr && static_cast<std::int64_t>(i) % q->cols < q->quantised_cols) {
      const double d = x - f.official_pre[i];
      v = d * d;
    }
    sw += w;
    var += w * w * v;
  }
  return sw > 0.0 ? std::sqrt(var) / sw : 0.0;
}

// The upper-tail normal quantile: z with P(Z > z) = p (bisection; p in (0, 0.5]).
double upper_quantile(double p) {
  double lo = 0.0, hi = 40.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(mid / std::sqrt(2.0)) > p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

std::string pct(double eps) {
  if (eps < 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.3g%%", 100.0 * eps);
  return b;
}

constexpr double kGoal = 0.002;  // issue 15: every module's scale errors caught at |ε| ≤ 0.2%

bool meets_goal(const SensitivityRow& r) {
  return r.scale_up.caught_from >= 0 && r.scale_up.caught_from <= kGoal && r.scale_down.caught_from >= 0 &&
         r.scale_down.caught_from <= kGoal;
}

}  // namespace

SensitivityReport sensitivity(const Golden& g, const ModelWeights& w, const compare::ToleranceParams& tol) {
  SensitivityReport rep;
  rep.ladder = ladder();
  rep.alpha = tol.structure.alpha;
  std::vector<Pending> pending;
  const FieldObserver observe = [&](const ObservedField& f) {
    if (f.official_format != DType::kBF16 && f.official_format != DType::kF32 && f.official_format != DType::kF16)
      return;
    Pending p;
    p.row.output = f.name;
    p.row.elements = static_cast<std::int64_t>(f.candidate.size());
    p.row.format = f.official_format;
    // The statistical limit: the scale test's standard error for an engine whose only noise is the
    // rounding of its own output (uniform, ulp²/12 per element), at the floor.
    const compare::ErrorStructure clean = compare::error_structure(
        f.candidate, f.official, f.exact, compare::layout_of(f.shape), f.official_format, tol.k, tol.structure);
    if (clean.stats.front().ran) {
      p.scale_ran = true;
      p.scale_allowance = clean.stats.front().allowance;
      p.scale_se = rounding_scale_se(f);
    }
    const double rms = finite_rms(f.exact);
    for (const compare::StructureStat& x : clean.stats)
      if (x.kind == compare::StructureKind::kOffset && x.ran && rms > 0.0) {
        p.offset_ran = true;
        p.offset_allowance = x.allowance / rms;
        p.offset_se = rounding_offset_se(f) / rms;
      }
    // The engine's value before its final rounding: somewhere within ±½ ulp of the stored one
    // (a fixed pseudo-random point per element), so that with ε = 0 it stores exactly the baseline
    // and with ε ≠ 0 a fraction ≈ ε/ulp of the elements moves by one ulp — as a real engine's
    // rounding of its wrong result does; injecting into the stored values would round small ε away.
    // A quantised output's error enters before its quantisation point: on the quantised columns the
    // official value there (stored in the output's format) is dithered and injected, then
    // quantised by the official quantiser — what an engine that made that error would write.
    const compare::QuantisedLayout* q = f.quantised;
    const auto quantised_col = [&](std::size_t i) {
      return q != nullptr && static_cast<std::int64_t>(i) % q->cols < q->quantised_cols;
    };
    const compare::UlpGrid grid = compare::ulp_grid(f.official_format);
    std::vector<double> before(f.candidate.size());
    for (std::size_t i = 0; i < before.size(); ++i) {
      const double o = quantised_col(i) ? f.official_pre[i] : f.candidate[i];
      before[i] = std::isfinite(o) ? o + (unit_dither(i) - 0.5) * compare::ulp_at(grid, o) : o;
    }
    std::vector<double> c(f.candidate.size());
    for (const double eps : rep.ladder) {
      std::array<Probe, kDirections> row;
      for (int d = 0; d < kDirections; ++d) {
        for (std::size_t i = 0; i < c.size(); ++i) {
          const double o = before[i];
          if (!std::isfinite(o)) {
            c[i] = o;
            continue;
          }
          const double v = d == kScaleUp     ? o * (1.0 + eps)
                           : d == kScaleDown ? o * (1.0 - eps)
                           : d == kOffsetUp  ? o + eps * rms
                                             : o - eps * rms;
          c[i] = store(f.official_format, v);
        }
        if (q != nullptr) quantise_official(c, *q);
        row[static_cast<std::size_t>(d)] = probe(f, c);
      }
      p.probes.push_back(row);
    }
    pending.push_back(std::move(p));
  };
  const DiffReport clean = teacher_forced_diff(g.config(), w, golden_schedule(g), golden_getter(g, "official"),
                                               golden_exact_getter(g), tol, std::nullopt, observe);
  rep.clean_pass = !clean.first_divergent_module.has_value();
  for (const ModuleResult& m : clean.modules) {
    if (!m.pass && rep.clean_reason.empty()) rep.clean_reason = m.reason;
    for (const OutputResult& o : m.outputs)
      for (const compare::StructureStat& x : o.structure) rep.family += x.ran ? 1 : 0;
  }
  rep.first_threshold = rep.family > 0 ? rep.alpha / static_cast<double>(rep.family) : rep.alpha;
  const double z_star = upper_quantile(std::min(rep.first_threshold, 0.5));
  for (Pending& p : pending) {
    if (p.scale_ran) p.row.scale_limit = p.scale_allowance + z_star * p.scale_se;
    if (p.offset_ran) p.row.offset_limit = p.offset_allowance + z_star * p.offset_se;
    SensitivityDirection* dirs[kDirections] = {&p.row.scale_up, &p.row.scale_down, &p.row.offset_up,
                                               &p.row.offset_down};
    for (int d = 0; d < kDirections; ++d) {
      // From the top of the ladder down: the smallest ε from which every larger one is caught.
      for (std::size_t i = rep.ladder.size(); i-- > 0;) {
        const Probe& pr = p.probes[i][static_cast<std::size_t>(d)];
        const bool caught = !pr.size_fail.empty() || pr.min_p <= rep.first_threshold;
        if (!caught) break;
        dirs[d]->caught_from = rep.ladder[i];
        dirs[d]->by = pr.size_fail.empty() ? pr.p_kind : pr.size_fail;
      }
    }
    rep.rows.push_back(std::move(p.row));
  }
  return rep;
}

std::string sensitivity_table(const SensitivityReport& r) {
  std::int64_t goal = 0;
  std::int64_t limited = 0;  // not at the goal, but the goal is below the field's statistical limit
  for (const SensitivityRow& x : r.rows) {
    if (meets_goal(x)) {
      ++goal;
    } else if (x.scale_limit < 0 || x.scale_limit > kGoal) {
      ++limited;
    }
  }
  const auto n = static_cast<std::int64_t>(r.rows.size());
  std::string out =
      "sensitivity: " + std::to_string(goal) + " of " + std::to_string(n) +
      " float outputs catch a scale error of 0.2% in both directions; " + std::to_string(limited) +
      " others lie at their statistical limit (too few elements, or FP8-quantised: an error shows only through the "
      "codes it moves), " +
      std::to_string(n - goal - limited) + " are short of it\n";
  char line[256];
  std::snprintf(line, sizeof line,
                "  structure tests: Holm over m = %lld at alpha %.3g: a single wrong output is caught at p <= %.3g\n",
                static_cast<long long>(r.family), r.alpha, r.first_threshold);
  out += line;
  if (!r.clean_pass) out += "  WARNING: the golden's own official values do not pass: " + r.clean_reason + "\n";
  out += "  columns: the smallest error caught (from the ladder 0.001% .. 10%), scale (1+e) and offset (e x rms)\n\n";
  report::TextTable t;
  t.add_column("output");
  t.add_column("n", report::Align::kRight);
  t.add_column("fmt");
  for (const char* h : {"scale+", "scale-", "offset+", "offset-", "limit"}) t.add_column(h, report::Align::kRight);
  t.add_column("caught by");
  for (const SensitivityRow& x : r.rows)
    t.add_row({x.output, std::to_string(x.elements), std::string(dtype_name(x.format)), pct(x.scale_up.caught_from),
               pct(x.scale_down.caught_from), pct(x.offset_up.caught_from), pct(x.offset_down.caught_from),
               pct(x.scale_limit), x.scale_up.by + "/" + x.offset_up.by});
  return out + t.render();
}

std::string sensitivity_json(const SensitivityReport& r) {
  nlohmann::json j;
  j["schema"] = "dsv4-sensitivity/1";
  j["ladder"] = r.ladder;
  j["structure_family"] = r.family;
  j["alpha"] = r.alpha;
  j["first_threshold"] = r.first_threshold;
  j["clean_pass"] = r.clean_pass;
  j["clean_reason"] = r.clean_reason;
  const auto dir = [](const SensitivityDirection& d) {
    return nlohmann::json{{"caught_from", d.caught_from < 0 ? nlohmann::json() : nlohmann::json(d.caught_from)},
                          {"by", d.by}};
  };
  nlohmann::json rows = nlohmann::json::array();
  for (const SensitivityRow& x : r.rows)
    rows.push_back({{"output", x.output},
                    {"elements", x.elements},
                    {"format", std::string(dtype_name(x.format))},
                    {"scale_limit", x.scale_limit < 0 ? nlohmann::json() : nlohmann::json(x.scale_limit)},
                    {"offset_limit", x.offset_limit < 0 ? nlohmann::json() : nlohmann::json(x.offset_limit)},
                    {"scale_up", dir(x.scale_up)},
                    {"scale_down", dir(x.scale_down)},
                    {"offset_up", dir(x.offset_up)},
                    {"offset_down", dir(x.offset_down)},
                    {"meets_goal", meets_goal(x)}});
  j["rows"] = rows;
  return j.dump(2) + "\n";
}

}  // namespace dsv4::diff
