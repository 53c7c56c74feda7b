// The SVG of `dsv4 audit --svg` (tensor_move.hpp where_bits_move_svg; of our own stack and of a
// foreign engine's dumps): where bits first move, per layer and module, drawn by the reports' one
// SVG writer (report::svg_line_plot).
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "dsv4/audit/dump_audit.hpp"
#include "dsv4/model/output_table.hpp"
#include "dsv4/report/svg_plot.hpp"

namespace dsv4::audit {

namespace {

struct Place {
  double x = 0;
  std::string series;  // the module output, block-relative in a block ("attn/out", "block/out")
  bool main_layer = false;
};

// Where a canonical name sits on the plot (nullopt: not an output the table describes).
std::optional<Place> place(const std::string& name, std::int64_t layers) {
  const std::optional<OutputRef> ref = describe_output(name);
  if (!ref) return std::nullopt;
  const std::string& m = ref->module;
  Place p;
  for (const std::string_view scope : {std::string_view("layers."), std::string_view("mtp.")}) {
    if (!m.starts_with(scope)) continue;
    const std::size_t end = m.find('.', scope.size());
    const std::string rel = end == std::string::npos ? "" : m.substr(end + 1);
    const auto n = std::stoll(m.substr(scope.size(), end - scope.size()));
    p.main_layer = scope == "layers.";
    p.x = p.main_layer ? static_cast<double>(n) : static_cast<double>(layers + 1 + n);
    p.series = (rel.empty() ? std::string("block") : rel) + "/" + ref->output;
    return p;
  }
  p.x = m == "embed" ? -1.0 : static_cast<double>(layers);  // the embedding; the head's sites
  p.series = m + "/" + ref->output;
  return p;
}

}  // namespace

std::string where_bits_move_svg(const std::string& title, bool pass, std::int64_t layers,
                                const std::vector<MoveSet>& sets) {
  // Per series (in order of first appearance): x → the largest fraction of elements that move.
  std::vector<std::string> order;
  std::map<std::string, std::map<double, double>> points;
  std::map<std::string, bool> in_layers;
  std::vector<report::Marker> markers;
  for (const MoveSet& c : sets) {
    for (std::size_t k = 0; k < c.moved->size(); ++k) {
      const TensorMove& m = (*c.moved)[k];
      const std::optional<Place> p = place(m.name, layers);
      if (!p) continue;
      if (!points.contains(p->series)) order.push_back(p->series);
      double& y = points[p->series][p->x];
      y = std::max(y, m.elements > 0 ? static_cast<double>(m.differing) / static_cast<double>(m.elements) : 1.0);
      in_layers[p->series] = in_layers[p->series] || p->main_layer;
      if (k != 0) continue;
      const std::string label = c.kind + ": " + m.name;
      auto same_x = std::find_if(markers.begin(), markers.end(), [&](const report::Marker& q) { return q.x == p->x; });
      if (same_x == markers.end()) {
        markers.push_back({p->x, label, markers.empty() ? "#c00000" : "#7f3fbf"});
      } else if (same_x->label.find(label) == std::string::npos) {
        same_x->label += "; " + label;
      }
    }
  }
  report::LinePlot plot;
  plot.title = title + ": where bits first move (" + (pass ? "PASS" : "FAIL") + ")";
  plot.x_label =
      "main layer (-1: embedding, " + std::to_string(layers) + ": head, " + std::to_string(layers + 1) + "+: MTP)";
  plot.y_label = "fraction of elements whose bits move";
  for (const std::string& name : order) {
    report::Series s{name, {}, {}, "", false};
    std::map<double, double> pts = points[name];
    // A main-layer module still at a layer between its moves: zero there (a break in its line).
    if (in_layers[name] && pts.size() >= 2) {
      const double first = pts.begin()->first;
      const double last = std::min(pts.rbegin()->first, static_cast<double>(layers - 1));
      for (double x = first + 1; x < last; x += 1) pts.try_emplace(x, 0.0);
    }
    for (const auto& [x, y] : pts) {
      s.x.push_back(x);
      s.y.push_back(y);
    }
    plot.series.push_back(std::move(s));
  }
  plot.markers = std::move(markers);
  plot.height =
      std::max(plot.height, report::kPlotTop + report::kPlotBottom + 40 + 18 * static_cast<int>(plot.series.size()));
  return report::svg_line_plot(plot);
}

std::string dump_audit_svg(const DumpAuditReport& r) {
  std::vector<MoveSet> sets;
  for (const OccurrenceResult& c : r.comparisons) sets.push_back({c.kind, &c.moved});
  return where_bits_move_svg("dsv4 audit --dumps", r.pass(), r.layers, sets);
}

}  // namespace dsv4::audit
