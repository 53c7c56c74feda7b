// Text table, JSON and SVG of a teacher-forced diff (teacher_forced.hpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dsv4/diff/teacher_forced.hpp"

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

// Per layer (prefill step): the largest local and accumulated max-abs errors, on a log scale.
std::string diff_svg(const DiffReport& r) {
  std::map<std::int64_t, std::pair<double, double>> by_layer;  // layer → (local, accumulated)
  std::map<std::int64_t, bool> failed;
  for (const ModuleResult& m : r.modules) {
    if (!m.checked || m.layer < 0) continue;
    auto& e = by_layer[m.layer];
    e.first = std::max(e.first, m.local_max_abs);
    e.second = std::max(e.second, m.accumulated_max_abs);
    failed[m.layer] = failed[m.layer] || !m.pass;
  }
  const double W = 640, H = 360, L = 60, R = 20, T = 30, B = 50;
  double lo = 1e-12, hi = 1.0;
  for (const auto& [l, e] : by_layer) {
    for (const double v : {e.first, e.second}) {
      if (v > 0) hi = std::max(hi, v);
    }
  }
  const auto y = [&](double v) {
    const double lv = std::log10(std::max(v, lo));
    return T + (H - T - B) * (1.0 - (lv - std::log10(lo)) / (std::log10(hi) - std::log10(lo)));
  };
  const std::size_t n = by_layer.size();
  const auto x = [&](std::size_t i) {
    return L + (W - L - R) * (n <= 1 ? 0.5 : static_cast<double>(i) / static_cast<double>(n - 1));
  };
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  o << "<text x=\"" << L
    << "\" y=\"18\" font-size=\"13\">dsv4 diff: local (teacher-forced) vs accumulated max |error| by layer</text>\n";
  o << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - R << "\" y2=\"" << H - B
    << "\" stroke=\"black\"/>\n";
  o << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << H - B << "\" stroke=\"black\"/>\n";
  for (int e = static_cast<int>(std::log10(lo)); e <= static_cast<int>(std::ceil(std::log10(hi))); e += 3)
    o << "<text x=\"4\" y=\"" << y(std::pow(10.0, e)) + 4 << "\">1e" << e << "</text>\n";
  const char* colors[2] = {"#1f77b4", "#d62728"};
  const char* labels[2] = {"local", "accumulated"};
  for (int s = 0; s < 2; ++s) {
    o << "<polyline fill=\"none\" stroke=\"" << colors[s] << "\" stroke-width=\"2\" points=\"";
    std::size_t i = 0;
    for (const auto& [l, e] : by_layer) o << x(i++) << "," << y(s == 0 ? e.first : e.second) << " ";
    o << "\"/>\n";
    o << "<text x=\"" << W - R - 90 << "\" y=\"" << T + 14 * (s + 1) << "\" fill=\"" << colors[s] << "\">" << labels[s]
      << "</text>\n";
  }
  std::size_t i = 0;
  for (const auto& [l, e] : by_layer) {
    o << "<text x=\"" << x(i) - 4 << "\" y=\"" << H - B + 16 << "\">" << l << "</text>\n";
    if (failed[l])
      o << "<circle cx=\"" << x(i) << "\" cy=\"" << y(e.first) << "\" r=\"5\" fill=\"none\" stroke=\"red\"/>\n";
    ++i;
  }
  o << "<text x=\"" << (W / 2) - 20 << "\" y=\"" << H - 12 << "\">layer</text>\n</svg>\n";
  return o.str();
}

}  // namespace dsv4::diff
