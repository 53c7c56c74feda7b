// Plain-SVG line plots (svg_plot.hpp).
#include "dsv4/report/svg_plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace dsv4::report {
namespace {

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string coord(double v) { return fmt("%.2f", v); }

// A "nice" tick step (1, 2 or 5 × 10^k) for about `target` intervals over `range`.
double nice_step(double range, int target) {
  const double raw = range / target;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / p;
  return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * p;
}

std::string tick_label(double v) {
  if (v == 0.0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e-3 && a < 1e5) {
    std::string s = fmt("%.6g", v);
    return s;
  }
  return fmt("%.0e", v);
}

bool drawable(double x, double y, bool log_y) { return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0.0); }

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string svg_line_plot(const LinePlot& p) {
  if (p.width <= kPlotLeft + kPlotRight + 40 || p.height <= kPlotTop + kPlotBottom + 40) {
    throw std::invalid_argument("svg_line_plot: width/height too small for the plot area");
  }
  for (const Series& s : p.series) {
    if (s.x.size() != s.y.size()) {
      throw std::invalid_argument("svg_line_plot: series '" + s.name + "' has " + std::to_string(s.x.size()) +
                                  " x values and " + std::to_string(s.y.size()) + " y values");
    }
  }
  for (const Band& b : p.bands) {
    if (b.x.size() != b.lower.size() || b.x.size() != b.upper.size())
      throw std::invalid_argument("svg_line_plot: band '" + b.name + "' has vectors of different lengths");
  }
  const double pl = kPlotLeft, pt = kPlotTop;
  const double pw = p.width - kPlotLeft - kPlotRight, ph = p.height - kPlotTop - kPlotBottom;

  // Data ranges over the drawable points.
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  std::size_t skipped = 0;
  for (const Series& s : p.series) {
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!drawable(s.x[i], s.y[i], p.log_y)) {
        ++skipped;
        continue;
      }
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  }
  for (const Band& b : p.bands) {
    for (std::size_t i = 0; i < b.x.size(); ++i) {
      if (!drawable(b.x[i], b.upper[i], p.log_y)) continue;
      x0 = std::min(x0, b.x[i]);
      x1 = std::max(x1, b.x[i]);
      y0 = std::min(y0, b.upper[i]);
      y1 = std::max(y1, b.upper[i]);
    }
  }
  const bool empty = !(x0 <= x1);
  if (empty) {
    x0 = 0, x1 = 1, y0 = p.log_y ? 1 : 0, y1 = p.log_y ? 10 : 1;
  }
  if (x0 == x1) x0 -= 0.5, x1 += 0.5;
  double t0, t1;  // the y axis in transformed units
  if (p.log_y) {
    t0 = std::floor(std::log10(y0));
    t1 = std::ceil(std::log10(y1));
    if (t0 == t1) t1 += 1;
  } else {
    if (y0 == y1) y0 -= 0.5, y1 += 0.5;
    t0 = y0, t1 = y1;
  }
  auto px = [&](double x) { return pl + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return pt + ph - ((p.log_y ? std::log10(y) : y) - t0) / (t1 - t0) * ph; };

  std::string o;
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(p.width) + "\" height=\"" +
       std::to_string(p.height) + "\" viewBox=\"0 0 " + std::to_string(p.width) + " " + std::to_string(p.height) +
       "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o += "<text x=\"" + coord(pl + pw / 2) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" +
       xml_escape(p.title) + "</text>\n";

  // Grid and ticks.
  o += "<g stroke=\"#dddddd\" stroke-width=\"1\">\n";
  std::string labels;
  const double xs = nice_step(x1 - x0, 8);
  for (double x = std::ceil(x0 / xs) * xs; x <= x1 + 1e-9 * xs; x += xs) {
    o += "<line x1=\"" + coord(px(x)) + "\" y1=\"" + coord(pt) + "\" x2=\"" + coord(px(x)) + "\" y2=\"" +
         coord(pt + ph) + "\"/>\n";
    labels += "<text x=\"" + coord(px(x)) + "\" y=\"" + coord(pt + ph + 16) + "\" text-anchor=\"middle\">" +
              tick_label(std::fabs(x) < 1e-12 * xs ? 0.0 : x) + "</text>\n";
  }
  if (p.log_y) {
    for (double t = t0; t <= t1; t += 1) {
      const double y = pt + ph - (t - t0) / (t1 - t0) * ph;
      o += "<line x1=\"" + coord(pl) + "\" y1=\"" + coord(y) + "\" x2=\"" + coord(pl + pw) + "\" y2=\"" + coord(y) +
           "\"/>\n";
      labels += "<text x=\"" + coord(pl - 6) + "\" y=\"" + coord(y + 4) + "\" text-anchor=\"end\">" + fmt("1e%.0f", t) +
                "</text>\n";
    }
  } else {
    const double ys = nice_step(t1 - t0, 6);
    for (double y = std::ceil(t0 / ys) * ys; y <= t1 + 1e-9 * ys; y += ys) {
      o += "<line x1=\"" + coord(pl) + "\" y1=\"" + coord(py(y)) + "\" x2=\"" + coord(pl + pw) + "\" y2=\"" +
           coord(py(y)) + "\"/>\n";
      labels += "<text x=\"" + coord(pl - 6) + "\" y=\"" + coord(py(y) + 4) + "\" text-anchor=\"end\">" +
                tick_label(std::fabs(y) < 1e-12 * ys ? 0.0 : y) + "</text>\n";
    }
  }
  o += "</g>\n" + labels;
  o += "<rect x=\"" + coord(pl) + "\" y=\"" + coord(pt) + "\" width=\"" + coord(pw) + "\" height=\"" + coord(ph) +
       "\" fill=\"none\" stroke=\"black\"/>\n";
  o += "<text x=\"" + coord(pl + pw / 2) + "\" y=\"" + coord(pt + ph + 36) + "\" text-anchor=\"middle\">" +
       xml_escape(p.x_label) + "</text>\n";
  o += "<text x=\"18\" y=\"" + coord(pt + ph / 2) + "\" text-anchor=\"middle\" transform=\"rotate(-90 18 " +
       coord(pt + ph / 2) + ")\">" + xml_escape(p.y_label) + "</text>\n";

  // Bands: one polygon per run of points whose upper value is drawable (lower clamped to the axis).
  double legend_y = pt + 10;
  const double lx = pl + pw + 14;
  for (const Band& b : p.bands) {
    std::vector<std::pair<double, double>> top, bottom;
    auto flush = [&] {
      if (top.size() >= 2) {
        std::string pts;
        for (const auto& [x, y] : top) pts += (pts.empty() ? "" : " ") + coord(x) + "," + coord(y);
        for (auto it = bottom.rbegin(); it != bottom.rend(); ++it)
          pts += " " + coord(it->first) + "," + coord(it->second);
        o += "<polygon fill=\"" + b.color + "\" fill-opacity=\"0.35\" stroke=\"none\" points=\"" + pts + "\"/>\n";
      }
      top.clear();
      bottom.clear();
    };
    for (std::size_t i = 0; i < b.x.size(); ++i) {
      if (!drawable(b.x[i], b.upper[i], p.log_y)) {
        flush();
        continue;
      }
      const double lo = drawable(b.x[i], b.lower[i], p.log_y) ? std::min(py(b.lower[i]), pt + ph) : pt + ph;
      top.emplace_back(px(b.x[i]), py(b.upper[i]));
      bottom.emplace_back(px(b.x[i]), lo);
    }
    flush();
    o += "<rect x=\"" + coord(lx) + "\" y=\"" + coord(legend_y - 6) + "\" width=\"24\" height=\"12\" fill=\"" +
         b.color + "\" fill-opacity=\"0.35\"/>\n";
    o += "<text x=\"" + coord(lx + 30) + "\" y=\"" + coord(legend_y + 4) + "\">" + xml_escape(b.name) + "</text>\n";
    legend_y += 18;
  }
  for (const Marker& m : p.markers) {
    if (!std::isfinite(m.x) || m.x < x0 || m.x > x1) continue;
    o += "<line x1=\"" + coord(px(m.x)) + "\" y1=\"" + coord(pt) + "\" x2=\"" + coord(px(m.x)) + "\" y2=\"" +
         coord(pt + ph) + "\" stroke=\"" + m.color + "\" stroke-width=\"2\"/>\n";
    o += "<text x=\"" + coord(px(m.x) + 4) + "\" y=\"" + coord(pt + 14) + "\" fill=\"" + m.color + "\">" +
         xml_escape(m.label) + "</text>\n";
  }

  // Series: a polyline per run of drawable points, a circle per point, a legend entry.
  std::size_t palette = 0;
  for (const Series& s : p.series) {
    const std::string color = s.color.empty() ? kPalette[palette++ % std::size(kPalette)] : s.color;
    const std::string dash = s.dashed ? " stroke-dasharray=\"6 4\"" : "";
    o += "<g>\n";
    std::string run;
    std::size_t run_points = 0;
    auto flush = [&] {
      if (run_points >= 2) {
        o += "<polyline fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\"" + dash + " points=\"" + run +
             "\"/>\n";
      }
      run.clear();
      run_points = 0;
    };
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!drawable(s.x[i], s.y[i], p.log_y)) {
        flush();
        continue;
      }
      run += (run.empty() ? "" : " ") + coord(px(s.x[i])) + "," + coord(py(s.y[i]));
      ++run_points;
    }
    flush();
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!drawable(s.x[i], s.y[i], p.log_y)) continue;
      o += "<circle cx=\"" + coord(px(s.x[i])) + "\" cy=\"" + coord(py(s.y[i])) + "\" r=\"2.5\" fill=\"" + color +
           "\"/>\n";
    }
    o += "</g>\n";
    o += "<line x1=\"" + coord(lx) + "\" y1=\"" + coord(legend_y) + "\" x2=\"" + coord(lx + 24) + "\" y2=\"" +
         coord(legend_y) + "\" stroke=\"" + color + "\" stroke-width=\"2\"" + dash + "/>\n";
    o += "<text x=\"" + coord(lx + 30) + "\" y=\"" + coord(legend_y + 4) + "\">" + xml_escape(s.name) + "</text>\n";
    legend_y += 18;
  }
  if (empty) {
    o += "<text x=\"" + coord(pl + pw / 2) + "\" y=\"" + coord(pt + ph / 2) +
         "\" text-anchor=\"middle\">no data</text>\n";
  }
  if (skipped > 0) {
    o += "<text x=\"" + coord(pl) + "\" y=\"" + coord(p.height - 8.0) + "\" font-size=\"11\">" +
         std::to_string(skipped) +
         (p.log_y ? " points not drawn (zero, negative or not finite)" : " points not drawn (not finite)") +
         "</text>\n";
  }
  o += "</svg>\n";
  return o;
}

}  // namespace dsv4::report
