// Certify report rendering (certify_report.hpp).
#include "dsv4/report/certify_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

#include "dsv4/report/text_table.hpp"

namespace dsv4::report {
namespace {

std::string sci(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2e", v);
  return buf;
}

// Share of the compared elements whose ULP distance is 0 or 1.
std::string within_one_ulp(const compare::TensorMetrics& m) {
  if (m.compared == 0) return "-";
  const double share = static_cast<double>(m.ulp_hist[0] + m.ulp_hist[1]) / static_cast<double>(m.compared);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * share);
  return buf;
}

// The floating-point metrics, written through json_number (non-finite values as strings).
using Metrics = compare::TensorMetrics;
constexpr std::pair<const char*, double Metrics::*> kReals[] = {
    {"max_abs", &Metrics::max_abs},
    {"max_abs_candidate", &Metrics::max_abs_candidate},
    {"max_abs_reference", &Metrics::max_abs_reference},
    {"max_rel", &Metrics::max_rel},
    {"rel_floor", &Metrics::rel_floor},
    {"rms", &Metrics::rms},
    {"cosine_diff", &Metrics::cosine_diff},
    {"sum_sq_err", &Metrics::sum_sq_err},
    {"sum_sq_cand", &Metrics::sum_sq_cand},
    {"sum_sq_ref", &Metrics::sum_sq_ref},
    {"bias_sum", &Metrics::bias_sum},
    {"ref_max_abs", &Metrics::ref_max_abs},
    {"ref_rms", &Metrics::ref_rms},
    {"ulp_max", &Metrics::ulp_max},
    {"ulp_sum", &Metrics::ulp_sum},
    {"ulp_rms", &Metrics::ulp_rms},
};

nlohmann::json metrics_json(const compare::TensorMetrics& m) {
  nlohmann::json j;
  j["storage_dtype"] = std::string(dtype_name(m.storage));
  j["ulp_dtype"] = std::string(dtype_name(m.ulp_dtype));
  j["count"] = m.count;
  j["compared"] = m.compared;
  j["max_abs_index"] = m.max_abs_index;
  j["max_rel_index"] = m.max_rel_index;
  j["max_ulp"] = m.max_ulp;
  j["max_ulp_index"] = m.max_ulp_index;
  for (const auto& [key, field] : kReals) j[key] = json_number(m.*field);
  nlohmann::json hist = nlohmann::json::array();
  for (int b = 0; b < compare::kUlpBuckets; ++b) {
    hist.push_back({{"ulps", compare::ulp_bucket_label(b)}, {"count", m.ulp_hist[static_cast<std::size_t>(b)]}});
  }
  j["ulp_histogram"] = hist;
  j["special"] = {{"cand_nan", m.cand_nan},
                  {"cand_inf", m.cand_inf},
                  {"nonfinite_where_ref_finite", m.nonfinite_where_ref_finite},
                  {"first_nonfinite_where_ref_finite", m.first_nonfinite_where_ref_finite},
                  {"ref_nonfinite", m.ref_nonfinite},
                  {"special_mismatch", m.special_mismatch},
                  {"first_special_mismatch", m.first_special_mismatch},
                  {"off_grid", m.off_grid},
                  {"first_off_grid", m.first_off_grid}};
  return j;
}

nlohmann::json row_json(const compare::SetRow& r) {
  nlohmann::json in_scores = nlohmann::json::array(), out_scores = nlohmann::json::array();
  for (const double v : r.in_scores) in_scores.push_back(json_number(v));
  for (const double v : r.out_scores) out_scores.push_back(json_number(v));
  return {{"row", r.row},
          {"status", compare::row_status_name(r.status)},
          {"swapped_in", r.swapped_in},
          {"swapped_out", r.swapped_out},
          {"in_scores", in_scores},
          {"out_scores", out_scores},
          {"kth_score", json_number(r.kth_score)},
          {"slack", json_number(r.slack)},
          {"tau", json_number(r.tau)},
          {"reason", r.reason}};
}

}  // namespace

nlohmann::json json_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

namespace {

// "PASS", "FAIL", or with "(e2e)" when a local verdict was sought but none covers the output, so the
// end-to-end one stands.
std::string verdict_text(bool pass, const std::optional<LocalJudgement>& local) {
  return std::string(pass ? "PASS" : "FAIL") + (local && !local->available ? " (e2e)" : "");
}

std::string local_text(const LocalJudgement& l) {
  return (l.after_flip.empty() ? std::string() : "downstream of the decision flip at " + l.after_flip + "; ") +
         (l.available ? std::string("judged locally (teacher-forced): ") + (l.pass ? "PASS" : "FAIL") + " — " + l.reason
                      : "no local verdict (" + l.reason + "): the end-to-end verdict stands");
}

nlohmann::json local_json(const std::optional<LocalJudgement>& l) {
  if (!l) return nullptr;
  return {{"after_flip", l->after_flip}, {"available", l->available}, {"pass", l->pass}, {"reason", l->reason}};
}

}  // namespace

bool TensorResult::passes() const {
  if (local && local->available) return local->pass;
  return verdict.verdict == compare::Verdict::kPass;
}

bool SetResult::passes() const {
  if (local && local->available) return local->pass;
  return comparison.pass();
}

std::int64_t CertifyReport::failed_tensors() const {
  std::int64_t n = 0;
  for (const auto& t : tensors) n += t.passes() ? 0 : 1;
  return n;
}

std::int64_t CertifyReport::failed_sets() const {
  std::int64_t n = 0;
  for (const auto& s : sets) n += s.passes() ? 0 : 1;
  return n;
}

bool CertifyReport::judged_pass() const {
  return checked() > 0 && failed_tensors() == 0 && failed_sets() == 0 && required_missing.empty();
}

namespace {

// "certify: PASS — …" / "certify: FAIL — …": what decided, then the counts.
std::string verdict_line(const CertifyReport& r) {
  std::string why;
  if (r.checked() == 0) {
    why = "the candidate holds none of the golden's outputs (nothing was checked)";
  } else if (!r.first_failure_blame.empty()) {
    why = "first failing value of the training step, in the order of its backward: " + r.first_failure_blame;
  } else if (!r.first_failure.empty()) {
    why = "first failing output in execution order: " + r.first_failure;
  } else if (!r.required_missing.empty()) {
    why = std::to_string(r.required_missing.size()) + " required output(s) missing from the candidate (--require " +
          r.requirement + ")";
  } else if (!r.unjudged.empty()) {
    why = "every judged output passes, but " + std::to_string(r.unjudged.size()) +
          " outputs of the candidate were NOT JUDGED: the golden holds no exact values for them (its exact values: "
          "--exact-layers '" +
          r.exact_coverage + "'); they are neither passed nor failed";
  } else {
    why = "every checked output passes";
  }
  const auto nt = static_cast<std::int64_t>(r.tensors.size());
  const auto ns = static_cast<std::int64_t>(r.sets.size());
  return "certify: " + r.verdict() + " — " + why + "\n  " + std::to_string(nt) + " tensors checked (" +
         std::to_string(r.failed_tensors()) + " FAIL), " + std::to_string(ns) + " discrete outputs (" +
         std::to_string(r.failed_sets()) + " FAIL); " +
         (r.unjudged.empty() ? std::string()
                             : std::to_string(r.unjudged.size()) + " not judged (no exact values in the golden); ") +
         std::to_string(r.missing.size()) + " golden outputs not in the candidate, " +
         std::to_string(r.required_missing.size()) + " of them required (--require " + r.requirement + ")\n";
}

// Missing outputs grouped by module (step dropped): "  layers.1.hc_attn: y, post, comb (prefill, decode0)".
std::string grouped_by_module(const std::vector<std::string>& names) {
  struct Group {
    std::vector<std::string> outputs, steps;
  };
  std::vector<std::pair<std::string, Group>> groups;  // in first-appearance (execution) order
  const auto add_unique = [](std::vector<std::string>& v, const std::string& x) {
    if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
  };
  for (const std::string& n : names) {
    const auto a = n.find('/'), b = n.rfind('/');
    const bool canonical = a != std::string::npos && b != a;
    const std::string module = canonical ? n.substr(a + 1, b - a - 1) : n;
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == module; });
    if (it == groups.end()) it = groups.insert(groups.end(), {module, Group{}});
    if (canonical) {
      add_unique(it->second.outputs, n.substr(b + 1));
      add_unique(it->second.steps, n.substr(0, a));
    }
  }
  const auto joined = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  std::string out;
  for (const auto& [module, g] : groups) {
    out += "  " + module;
    if (!g.outputs.empty()) out += ": " + joined(g.outputs) + " (" + joined(g.steps) + ")";
    out += "\n";
  }
  return out;
}

// The near-tie swaps of one set, summarised: "12 of 140 rows".
std::string near_tie_summary(const SetResult& s) {
  std::int64_t n = 0;
  double smallest_slack = std::numeric_limits<double>::infinity();
  for (const auto& row : s.comparison.differing) {
    if (row.status != compare::RowStatus::kNearTie) continue;
    ++n;
    smallest_slack = std::min(smallest_slack, row.slack);
  }
  if (n == 0) return "";
  return "  " + s.name + ": near-tie swaps accepted in " + std::to_string(n) + " of " +
         std::to_string(s.comparison.rows) + " rows (smallest slack " + sci(smallest_slack) +
         "; --verbose lists them)\n";
}

}  // namespace

std::string format_text(const CertifyReport& r, Detail detail) {
  const bool quiet = detail == Detail::kQuiet, verbose = detail == Detail::kVerbose;
  const std::string verdict = verdict_line(r);
  std::string out = verdict;
  out += "golden:    " + r.golden + (r.golden_sha256.empty() ? "" : " (manifest sha256 " + r.golden_sha256 + ")") +
         "\ncandidate: " + r.candidate + "\n";
  char model[200];
  std::snprintf(model, sizeof model,
                "tolerance: |err| <= %g x official + floor (max abs: %g ulp, rms: %.3g ulp; bias: %g sigma + %g ulp)\n",
                r.tolerance.k, r.tolerance.floor_max_ulps, r.tolerance.floor_rms_ulps, r.tolerance.bias_sigmas,
                r.tolerance.bias_floor_ulps);
  out += model;
  const compare::StructureParams& sp = r.tolerance.structure;
  std::snprintf(model, sizeof model,
                "structure: scale, offset, channel and row scale of the local error field vs the official "
                "recomputation, Holm alpha %g (floors %.3g)\n",
                sp.alpha, sp.scale_floor);
  out += model;

  if (!r.tensors.empty() && (!quiet || r.failed_tensors() > 0)) {
    TextTable t;
    t.add_column("tensor");
    t.add_column("dtype");
    t.add_column("shape");
    for (const char* h : {"max_abs", "max_rel", "rms", "cos_diff", "max_ulp", "<=1ulp"}) t.add_column(h, Align::kRight);
    t.add_column("verdict");
    for (const auto& x : r.tensors) {
      if (quiet && x.passes()) continue;
      const auto& m = x.metrics;
      t.add_row({x.name, std::string(dtype_name(m.ulp_dtype)), shape_string(x.shape), sci(m.max_abs), sci(m.max_rel),
                 sci(m.rms), sci(m.cosine_diff), std::to_string(m.max_ulp), within_one_ulp(m),
                 verdict_text(x.passes(), x.local)});
    }
    out += "\n" + t.render();
  }
  if (!r.sets.empty() && (!quiet || r.failed_sets() > 0)) {
    TextTable t;
    t.add_column("discrete output");
    t.add_column("kind");
    for (const char* h : {"rows", "k", "identical", "near-tie", "rejected"}) t.add_column(h, Align::kRight);
    t.add_column("verdict");
    for (const auto& s : r.sets) {
      if (quiet && s.passes()) continue;
      const auto& c = s.comparison;
      t.add_row({s.name, s.kind, std::to_string(c.rows), std::to_string(c.k), std::to_string(c.identical),
                 std::to_string(c.near_tie), std::to_string(c.rejected), verdict_text(s.passes(), s.local)});
    }
    out += "\n" + t.render();
  }

  std::string details;
  for (const auto& x : r.tensors) {
    if (x.verdict.verdict == compare::Verdict::kFail && (!quiet || !x.passes()))
      details += "  " + x.name + ": " + x.verdict.reason + "\n";
    const bool e2e_pass = x.verdict.verdict == compare::Verdict::kPass;
    if (x.local && (!x.passes() || (!quiet && x.passes() != e2e_pass)))
      details += "  " + x.name + ": " + local_text(*x.local) + "\n";
  }
  for (const auto& s : r.sets)
    if (s.local && (!s.passes() || (!quiet && s.passes() != s.comparison.pass())))
      details += "  " + s.name + ": " + local_text(*s.local) + "\n";
  for (const auto& s : r.sets) {
    if (quiet && s.passes()) continue;
    for (const auto& row : s.comparison.differing)
      if (verbose || row.status != compare::RowStatus::kNearTie)
        details += "  " + s.name + " row " + std::to_string(row.row) + ": " + row.reason + "\n";
    if (!verbose && !quiet) details += near_tie_summary(s);
  }
  if (!details.empty()) out += "\ndetails:\n" + details;
  if (!r.required_missing.empty())
    out += "\nrequired but missing from the candidate (" + std::to_string(r.required_missing.size()) +
           " outputs, by module):\n" + grouped_by_module(r.required_missing);
  if (!r.unjudged.empty())
    out += "\nNOT JUDGED — the golden holds no exact values for them (" + std::to_string(r.unjudged.size()) +
           " outputs, by module; exact values: --exact-layers '" + r.exact_coverage + "'):\n" +
           grouped_by_module(r.unjudged);
  const std::size_t not_required = r.missing.size() - r.required_missing.size();
  if (verbose && not_required > 0) {
    std::vector<std::string> rest;
    for (const auto& n : r.missing)
      if (std::find(r.required_missing.begin(), r.required_missing.end(), n) == r.required_missing.end())
        rest.push_back(n);
    out += "\nnot in the candidate, not required (" + std::to_string(rest.size()) + " outputs, by module):\n" +
           grouped_by_module(rest);
  } else if (!quiet && not_required > 0) {
    out +=
        "\nnot in the candidate, not required: " + std::to_string(not_required) + " outputs (--verbose lists them)\n";
  }
  if (!r.unmatched.empty()) {
    out += "\ncandidate tensors matching no golden output (" + std::to_string(r.unmatched.size()) + "):\n";
    const std::size_t shown = verbose ? r.unmatched.size() : std::min<std::size_t>(r.unmatched.size(), 20);
    for (std::size_t i = 0; i < shown; ++i) {
      const Unmatched& u = r.unmatched[i];
      out += "  " + u.name + (u.did_you_mean.empty() ? "" : " (did you mean " + u.did_you_mean + "?)") + "\n";
    }
    if (shown < r.unmatched.size())
      out += "  … and " + std::to_string(r.unmatched.size() - shown) + " more (--verbose lists them)\n";
  }
  if (!r.map_unused.empty()) {
    out += "\nname-map entries matching no candidate tensor (" + std::to_string(r.map_unused.size()) + "):\n";
    for (const auto& u : r.map_unused) out += "  " + u + "\n";
  }
  out += "\n" + verdict.substr(0, verdict.find('\n') + 1);  // the verdict line again, at the end
  return out;
}

nlohmann::json to_json(const CertifyReport& r) {
  nlohmann::json j;
  j["schema"] = "dsv4-certify-report/2";
  j["dsv4_version"] = r.dsv4_version;
  j["golden"] = r.golden;
  j["golden_sha256"] = r.golden_sha256;
  j["candidate"] = r.candidate;
  j["options"] = r.options;
  j["verdict"] = r.verdict();
  j["exact_values"] = r.exact_coverage;
  j["first_failure"] = r.first_failure.empty() ? nlohmann::json() : nlohmann::json(r.first_failure);
  if (!r.first_failure_blame.empty()) j["first_failure_blame"] = r.first_failure_blame;
  j["requirement"] = r.requirement;
  j["tolerance"] = {{"k", r.tolerance.k},
                    {"floor_max_ulps", r.tolerance.floor_max_ulps},
                    {"floor_rms_ulps", r.tolerance.floor_rms_ulps},
                    {"bias_sigmas", r.tolerance.bias_sigmas},
                    {"bias_floor_ulps", r.tolerance.bias_floor_ulps},
                    {"structure",
                     {{"alpha", r.tolerance.structure.alpha},
                      {"scale_floor", r.tolerance.structure.scale_floor},
                      {"offset_floor", r.tolerance.structure.offset_floor},
                      {"exact_sigmas", r.tolerance.structure.exact_sigmas},
                      {"min_effective", r.tolerance.structure.min_effective},
                      {"min_group", r.tolerance.structure.min_group}}}};
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& x : r.tensors) {
    nlohmann::json checks = nlohmann::json::array();
    for (const auto& c : x.verdict.checks) {
      checks.push_back({{"name", c.name},
                        {"value", json_number(c.value)},
                        {"limit", json_number(c.limit)},
                        {"pass", c.pass},
                        {"detail", c.detail}});
    }
    tensors.push_back({{"name", x.name},
                       {"shape", x.shape},
                       {"verdict", x.passes() ? "PASS" : "FAIL"},
                       {"end_to_end_verdict", compare::verdict_name(x.verdict.verdict)},
                       {"reason", x.verdict.reason},
                       {"local", local_json(x.local)},
                       {"metrics", metrics_json(x.metrics)},
                       {"official",
                        {{"compared", x.official.compared},
                         {"max_abs", json_number(x.official.max_abs)},
                         {"rms", json_number(x.official.rms)},
                         {"bias_sum", json_number(x.official.bias_sum)}}},
                       {"checks", checks}});
  }
  j["tensors"] = tensors;
  nlohmann::json sets = nlohmann::json::array();
  for (const auto& s : r.sets) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : s.comparison.differing) rows.push_back(row_json(row));
    sets.push_back({{"name", s.name},
                    {"kind", s.kind},
                    {"rows", s.comparison.rows},
                    {"k", s.comparison.k},
                    {"identical", s.comparison.identical},
                    {"near_tie", s.comparison.near_tie},
                    {"rejected", s.comparison.rejected},
                    {"verdict", s.passes() ? "PASS" : "FAIL"},
                    {"end_to_end_verdict", s.comparison.pass() ? "PASS" : "FAIL"},
                    {"local", local_json(s.local)},
                    {"differing_rows", rows}});
  }
  j["sets"] = sets;
  j["missing"] = r.missing;
  j["required_missing"] = r.required_missing;
  nlohmann::json unmatched = nlohmann::json::array();
  for (const Unmatched& u : r.unmatched)
    unmatched.push_back({{"name", u.name},
                         {"did_you_mean", u.did_you_mean.empty() ? nlohmann::json() : nlohmann::json(u.did_you_mean)}});
  j["unmatched"] = unmatched;
  j["map_unused"] = r.map_unused;
  j["unjudged"] = r.unjudged;
  j["summary"] = {{"tensors_checked", r.tensors.size()}, {"tensors_failed", r.failed_tensors()},
                  {"sets_checked", r.sets.size()},       {"sets_failed", r.failed_sets()},
                  {"missing", r.missing.size()},         {"required_missing", r.required_missing.size()},
                  {"unjudged", r.unjudged.size()}};
  return j;
}

}  // namespace dsv4::report
