// A line plot as plain SVG text (no dependencies), for `dsv4 diff`: error by layer, e.g. the local
// and the accumulated error of each module. Deterministic output (fixed number formatting).
#pragma once

#include <string>
#include <vector>

namespace dsv4::report {

struct Series {
  std::string name;
  std::vector<double> x;
  std::vector<double> y;
  std::string color;  // CSS colour; empty: the next colour of the default palette
  bool dashed = false;
};

// A vertical line across the plot at x, labelled (e.g. the first failing layer).
struct Marker {
  double x = 0;
  std::string label;
  std::string color = "#c00000";
};

// A shaded region between two curves over the same x (e.g. a tolerance band: 0 … the limit).
struct Band {
  std::string name;
  std::vector<double> x;
  std::vector<double> lower;  // on a log axis a lower value ≤ 0 is drawn at the axis' bottom
  std::vector<double> upper;
  std::string color = "#9fd39f";
};

struct LinePlot {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log_y = true;  // errors span decades; points with y ≤ 0 cannot be drawn on a log axis
  std::vector<Series> series;
  std::vector<Band> bands;  // drawn under the series; their upper values count in the y range
  std::vector<Marker> markers;
  int width = 760;
  int height = 440;
};

// The plot area is the rectangle [kPlotLeft, width − kPlotRight] × [kPlotTop, height − kPlotBottom];
// the x axis spans the data's x range exactly, a log y axis whole decades around the data
// (10^⌊log10 min⌋ … 10^⌈log10 max⌉), a linear y axis the data's y range. Points that cannot be
// drawn (NaN, ±inf, y ≤ 0 on a log axis) break their line and are counted in a note under the plot.
inline constexpr int kPlotLeft = 80;
inline constexpr int kPlotRight = 190;
inline constexpr int kPlotTop = 40;
inline constexpr int kPlotBottom = 60;

// Throws std::invalid_argument for a series or band whose vectors differ in length, or a size too small
// for the plot area (width ≤ kPlotLeft + kPlotRight + 40, height ≤ kPlotTop + kPlotBottom + 40).
std::string svg_line_plot(const LinePlot& plot);

// Text escaped for SVG/XML (& < > " ').
std::string xml_escape(const std::string& s);

}  // namespace dsv4::report
