// Text table, JSON and SVG of a teacher-forced diff (teacher_forced.hpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dsv4/diff/teacher_forced.hpp"
#include "dsv4/report/svg_plot.hpp"

namespace dsv4::diff {

namespace {

std::string sci(double v) {
  if (v < 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

std::string pad(std::string s, std::size_t w) {
  if (s.size() < w) s.append(w - s.size(), ' ');
  return s;
}

}  // namespace

std::string diff_table(const DiffReport& r) {
  std::ostringstream o;
  o << pad("step", 9) << pad("module", 28) << pad("local", 11) << pad("accum.", 11) << "verdict\n";
  for (const ModuleResult& m : r.modules) {
    if (!m.checked) continue;
    o << pad(m.step, 9) << pad(m.module, 28) << pad(sci(m.local_max_abs), 11) << pad(sci(m.accumulated_max_abs), 11)
      << (m.pass ? "PASS" : "FAIL  " + m.reason) << "\n";
  }
  o << "\n" << r.checked_modules << " module checks, " << r.failed_modules << " failed";
  if (!r.missing.empty()) o << ", " << r.missing.size() << " inputs not dumped (first: " << r.missing.front() << ")";
  o << "\nfirst divergent module: "
    << (r.first_divergent_module ? *r.first_divergent_module + " (" + *r.first_divergent_step + ")" : "none") << "\n";
  return o.str();
}

std::string diff_json(const DiffReport& r) {
  nlohmann::json j;
  j["first_divergent_module"] = r.first_divergent_module ? nlohmann::json(*r.first_divergent_module) : nlohmann::json();
  j["first_divergent_step"] = r.first_divergent_step ? nlohmann::json(*r.first_divergent_step) : nlohmann::json();
  j["checked_modules"] = r.checked_modules;
  j["failed_modules"] = r.failed_modules;
  j["missing_inputs"] = r.missing;
  nlohmann::json mods = nlohmann::json::array();
  for (const ModuleResult& m : r.modules) {
    if (!m.checked) continue;
    nlohmann::json outs = nlohmann::json::array();
    for (const OutputResult& x : m.outputs) {
      if (!x.present) continue;
      outs.push_back({{"name", x.name},
                      {"verdict", x.pass ? "PASS" : "FAIL"},
                      {"reason", x.reason},
                      {"local_max_abs", x.local_max_abs},
                      {"official_local_max_abs", x.local_official_max_abs},
                      {"accumulated_max_abs",
                       x.accumulated_max_abs < 0 ? nlohmann::json() : nlohmann::json(x.accumulated_max_abs)}});
    }
    mods.push_back(
        {{"step", m.step},
         {"module", m.module},
         {"layer", m.layer},
         {"verdict", m.pass ? "PASS" : "FAIL"},
         {"reason", m.reason},
         {"local_max_abs", m.local_max_abs},
         {"accumulated_max_abs", m.accumulated_max_abs < 0 ? nlohmann::json() : nlohmann::json(m.accumulated_max_abs)},
         {"outputs", outs}});
  }
  j["modules"] = mods;
  return j.dump(2) + "\n";
}

// Per layer: the largest local and accumulated max-abs errors (all steps), on a log scale.
std::string diff_svg(const DiffReport& r) {
  std::map<std::int64_t, std::pair<double, double>> by_layer;  // layer → (local, accumulated)
  for (const ModuleResult& m : r.modules) {
    if (!m.checked || m.layer < 0) continue;
    auto& e = by_layer[m.layer];
    e.first = std::max(e.first, m.local_max_abs);
    e.second = std::max(e.second, m.accumulated_max_abs);
  }
  report::LinePlot plot;
  plot.title = "dsv4 diff: local (teacher-forced) vs accumulated max |error|";
  plot.x_label = "layer";
  plot.y_label = "max |error|";
  report::Series local{"local", {}, {}, "", false}, accumulated{"accumulated", {}, {}, "", true};
  for (const auto& [l, e] : by_layer) {
    local.x.push_back(static_cast<double>(l));
    local.y.push_back(e.first);
    accumulated.x.push_back(static_cast<double>(l));
    accumulated.y.push_back(e.second);
  }
  plot.series = {local, accumulated};
  return report::svg_line_plot(plot);
}

}  // namespace dsv4::diff
