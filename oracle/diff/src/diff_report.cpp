// Text table, JSON and SVG of a teacher-forced diff (teacher_forced.hpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string_view>

#include "dsv4/diff/teacher_forced.hpp"
#include "dsv4/model/output_table.hpp"
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

std::vector<std::string> readers_of(const std::string& canonical) {
  std::vector<std::string> readers;
  const std::optional<OutputRef> r = describe_output(canonical);
  if (!r) return readers;
  // The scope prefix ("layers.3", "mtp.0" or "") and the name inside it ("attn_norm/out").
  std::string prefix, rel = r->module;
  if (r->site->scope != SiteScope::kModel) {
    const std::size_t second_dot = r->module.find('.', r->module.find('.') + 1);
    prefix = r->module.substr(0, second_dot);
    rel = second_dot == std::string::npos ? "" : r->module.substr(second_dot + 1);
  }
  const std::string inside = rel + "/" + r->output;
  const auto add = [&](const std::string& module) {
    const std::string full = r->step + "/" + module;
    if (std::find(readers.begin(), readers.end(), full) == readers.end()) readers.push_back(full);
  };
  const bool mtp = prefix.rfind("mtp.", 0) == 0;
  for (const SiteDesc& s : output_sites()) {
    const bool same_scope = s.scope == r->site->scope || (mtp && s.scope != SiteScope::kModel);
    if (!same_scope) continue;
    for (std::string_view in : s.inputs) {
      if (in.ends_with('?')) in.remove_suffix(1);
      if (in == inside) add(module_path(prefix, s.module));
    }
  }
  // A main layer's output is the next layer's block input (or the head's, after the last layer).
  if (r->site->scope == SiteScope::kBlock && !mtp && rel.empty() && r->output == "out") {
    const std::string next = "layers." + std::to_string(r->block + 1);
    for (const SiteDesc& s : output_sites())
      if (s.scope == SiteScope::kBlock &&
          std::find(s.inputs.begin(), s.inputs.end(), std::string_view("<block input>")) != s.inputs.end())
        add(module_path(next, s.module) + " (or the head, after the last layer)");
  }
  return readers;
}

std::string diff_requirements_text() {
  std::string o;
  for (const SiteDesc& s : output_sites()) {
    const char* where = s.scope == SiteScope::kBlock ? "layers.N." : (s.scope == SiteScope::kMtp ? "mtp.I." : "");
    std::string outs;
    for (const OutputDesc& d : s.outputs)
      if (d.localised)
        outs +=
            (outs.empty() ? "" : ", ") + std::string(d.module) + (d.module.empty() ? "" : "/") + std::string(d.output);
    std::string ins;
    for (std::string_view in : s.inputs) ins += (ins.empty() ? "" : ", ") + std::string(in);
    std::string module = std::string(where) + std::string(s.module);
    if (!module.empty() && module.back() == '.') module.pop_back();
    o += "  " + pad(module.empty() ? "(step)" : module, 20) + " checks " + outs + "\n  " + std::string(22, ' ') +
         "from " + ins + "\n";
  }
  return o;
}

std::string diff_table(const DiffReport& r) {
  std::ostringstream o;
  o << "diff: "
    << (r.first_divergent_module
            ? "FAIL — first divergent module: " + *r.first_divergent_module + " (" + *r.first_divergent_step + ")"
            : std::string(r.checked_modules > 0 ? "PASS — no module diverges" : "no module could be checked"))
    << "\n  " << r.checked_modules << " module checks, " << r.failed_modules << " failed, " << r.missing.size()
    << " inputs not in the candidate\n\n";
  o << pad("step", 9) << pad("module", 28) << pad("local", 11) << pad("accum.", 11) << "verdict\n";
  for (const ModuleResult& m : r.modules) {
    if (!m.checked) continue;
    o << pad(m.step, 9) << pad(m.module, 28) << pad(sci(m.local_max_abs), 11) << pad(sci(m.accumulated_max_abs), 11)
      << (m.pass ? "PASS" : "FAIL  " + m.reason) << "\n";
  }
  if (!r.missing.empty()) {
    // Each unlocalised module with the input it lacked (the output table's site inputs).
    o << "\nnot localised (an input is not in the candidate; `dsv4 diff --help` lists each module's inputs):\n";
    std::vector<std::string> done;
    for (const std::string& in : r.missing) {
      std::vector<std::string> readers = readers_of(in);
      if (readers.empty()) readers.push_back("(a module)");
      for (const std::string& m : readers) {
        const std::string line = "  " + m + ": needs " + in;
        if (std::find(done.begin(), done.end(), line) != done.end()) continue;
        done.push_back(line);
        o << line << "\n";
      }
    }
  }
  if (r.quant_flips_accepted > 0)
    o << "\nrounding flips at a near-tie accepted: " << r.quant_flips_accepted << " quantised elements in "
      << r.quant_flip_outputs << " outputs (each output's reason counts its own)\n";
  o << "\nfirst divergent module: "
    << (r.first_divergent_module ? *r.first_divergent_module + " (" + *r.first_divergent_step + ")" : "none") << "\n";
  return o.str();
}

namespace {

// The structure tests of one output: [{test, ran, estimate, se, allowance, z, p, rejected} | {test,
// ran: false, not_run}].
nlohmann::json structure_json(const OutputResult& x) {
  nlohmann::json a = nlohmann::json::array();
  for (std::size_t i = 0; i < x.structure.size(); ++i) {
    const compare::StructureStat& s = x.structure[i];
    if (!s.ran) {
      a.push_back({{"test", compare::structure_kind_name(s.kind)}, {"ran", false}, {"not_run", s.not_run}});
      continue;
    }
    nlohmann::json t{{"test", compare::structure_kind_name(s.kind)},
                     {"ran", true},
                     {"estimate", s.estimate},
                     {"allowance", s.allowance},
                     {"z", std::isfinite(s.z) ? nlohmann::json(s.z) : nlohmann::json("inf")},
                     {"p", s.p},
                     {"rejected", i < x.structure_reject.size() && x.structure_reject[i]}};
    if (s.kind == compare::StructureKind::kScale || s.kind == compare::StructureKind::kOffset) {
      t["se"] = s.se;
    } else if (s.kind == compare::StructureKind::kQuantDirection) {
      t["differing"] = s.groups;  // elements off the official's code; estimate: toward − away zero
    } else {
      t["groups"] = s.groups;
      t["worst_group"] = s.worst_group;
      t["worst_slope"] = s.worst_estimate;
    }
    a.push_back(t);
  }
  return a;
}

}  // namespace

std::string diff_json(const DiffReport& r) {
  nlohmann::json j;
  j["first_divergent_module"] = r.first_divergent_module ? nlohmann::json(*r.first_divergent_module) : nlohmann::json();
  j["first_divergent_step"] = r.first_divergent_step ? nlohmann::json(*r.first_divergent_step) : nlohmann::json();
  j["checked_modules"] = r.checked_modules;
  j["failed_modules"] = r.failed_modules;
  j["missing_inputs"] = r.missing;
  nlohmann::json unlocalised = nlohmann::json::array();
  for (const std::string& in : r.missing)
    for (const std::string& m : readers_of(in)) unlocalised.push_back({{"module", m}, {"needs", in}});
  j["not_localised"] = unlocalised;
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
                       x.accumulated_max_abs < 0 ? nlohmann::json() : nlohmann::json(x.accumulated_max_abs)},
                      {"structure", structure_json(x)}});
      if (x.quant_element_flips + x.quant_scale_flip_elements > 0)
        outs.back()["quant_flips_accepted"] = {{"elements", x.quant_element_flips},
                                               {"block_scales", x.quant_scale_flips},
                                               {"block_scale_elements", x.quant_scale_flip_elements}};
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
  j["quant_flips_accepted"] = r.quant_flips_accepted;
  return j.dump(2) + "\n";
}

// Per layer: the largest local and accumulated max-abs errors (all steps), on a log scale.
std::string diff_svg(const DiffReport& r, const compare::ToleranceParams& tolerance) {
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
  // The yardstick: k × the official reference's own local error (the tolerance model's scale).
  report::Band band{"k x official local error", {}, {}, {}, "#9fd39f"};
  std::map<std::int64_t, double> yard;
  for (const ModuleResult& m : r.modules) {
    if (!m.checked || m.layer < 0) continue;
    for (const OutputResult& x : m.outputs)
      if (x.present) yard[m.layer] = std::max(yard[m.layer], tolerance.k * x.local_official_max_abs);
  }
  for (const auto& [l, y] : yard) {
    band.x.push_back(static_cast<double>(l));
    band.lower.push_back(0.0);
    band.upper.push_back(y);
  }
  plot.bands = {band};
  for (const ModuleResult& m : r.modules) {
    if (!m.checked || m.pass || m.layer < 0 || !r.first_divergent_module) continue;
    if (m.module != *r.first_divergent_module || m.step != *r.first_divergent_step) continue;
    plot.markers.push_back({static_cast<double>(m.layer), "first divergent: " + m.module + " (" + m.step + ")"});
    break;
  }
  return report::svg_line_plot(plot);
}

}  // namespace dsv4::diff
