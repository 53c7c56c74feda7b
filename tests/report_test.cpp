// oracle/report: aligned text tables, the certify report as text and JSON, and the SVG line plot
// (coordinates derived by hand from the documented plot area).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/compare/set_compare.hpp"
#include "dsv4/compare/tolerance.hpp"
#include "dsv4/report/certify_report.hpp"
#include "dsv4/report/svg_plot.hpp"
#include "dsv4/report/text_table.hpp"

namespace dsv4::report {
namespace {

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(TextTable, ColumnsAreAligned) {
  TextTable t;
  t.add_column("name");
  t.add_column("value", Align::kRight);
  t.add_column("note");
  t.add_row({"a", "1", "x"});
  t.add_row({"longer name", "12345", "μ ≤ 1"});  // UTF-8: 5 display columns
  const std::vector<std::string> l = lines(t.render());
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l[0], "name         value  note");
  EXPECT_EQ(l[1], "-----------  -----  -----");
  EXPECT_EQ(l[2], "a                1  x");
  EXPECT_EQ(l[3], "longer name  12345  μ ≤ 1");
  EXPECT_THROW(t.add_row({"too", "few"}), std::invalid_argument);
  EXPECT_THROW(t.add_column("late"), std::invalid_argument);
}

// A report with one passing and one failing tensor, a set output with a near-tie and a rejected
// row, and a missing tensor.
CertifyReport sample_report() {
  std::vector<double> e(100), good(100), bad(100);
  for (int i = 0; i < 100; ++i) {
    e[i] = 1.0 + i / 64.0;
    good[i] = e[i] + (i % 2 ? 1e-3 : -1e-3);
    bad[i] = e[i] + (i % 2 ? 5e-3 : -5e-3);
  }
  bad[3] = std::numeric_limits<double>::infinity();
  CertifyReport r;
  r.requirement = "all";
  r.golden = "tiny.h5";
  r.candidate = "engine<dump>.safetensors";
  const compare::ReferenceError off = compare::reference_error(
      compare::compute_metrics(std::span<const double>(good), DType::kF64, std::span<const double>(e)));
  for (const auto& [name, c] : {std::pair{"layers.0.attn.out", good}, std::pair{"layers.1.ffn.out", bad}}) {
    TensorResult t;
    t.name = name;
    t.shape = {4, 25};
    t.metrics = compare::compute_metrics(std::span<const double>(c), DType::kF64, std::span<const double>(e));
    t.official = off;
    t.verdict = compare::judge_tensor(t.metrics, off);
    r.tensors.push_back(t);
  }
  const std::vector<double> scores{5.0, 4.0, 3.0, 2.999, 1.0, 5.0, 4.0, 3.0, 2.999, 1.0};
  const std::vector<std::int64_t> ref{0, 1, 2, 0, 1, 2}, cand{0, 1, 3, 0, 1, 4};
  SetResult s;
  s.name = "layers.0.attn.indexer.topk";
  s.kind = "topk";
  s.comparison = compare::compare_sets_dense(cand, ref, 2, 3, 5, scores, std::vector<double>{0.01});
  r.sets.push_back(s);
  r.missing = {"layers.2.attn.out"};
  r.required_missing = r.missing;
  r.first_failure = "layers.1.ffn.out";
  return r;
}

TEST(CertifyReport, TextNamesEveryResultWithTheVerdictFirstAndLast) {
  const CertifyReport r = sample_report();
  ASSERT_EQ(r.tensors[0].verdict.verdict, compare::Verdict::kPass) << r.tensors[0].verdict.reason;
  ASSERT_EQ(r.tensors[1].verdict.verdict, compare::Verdict::kFail);
  EXPECT_EQ(r.failed_tensors(), 1);
  EXPECT_EQ(r.failed_sets(), 1);
  EXPECT_FALSE(r.pass());
  const std::string text = format_text(r);
  const std::vector<std::string> l = lines(text);
  // The tensor table: header, rule, two rows, verdicts in the same column.
  std::size_t head = 0;
  while (head < l.size() && l[head].rfind("tensor ", 0) != 0) ++head;
  ASSERT_LT(head + 3, l.size()) << text;
  const std::size_t col = l[head].find("verdict");
  EXPECT_EQ(l[head + 2].find("PASS"), col) << text;
  EXPECT_EQ(l[head + 3].find("FAIL"), col) << text;
  EXPECT_NE(l[head + 2].find("[4, 25]"), std::string::npos);
  EXPECT_NE(text.find("layers.1.ffn.out: FAIL nonfinite: 1 NaN/Inf where the reference is finite (first at index 3)"),
            std::string::npos)
      << text;
  // Accepted near-tie swaps are counted per output by default, listed row by row with kVerbose.
  EXPECT_EQ(text.find("row 0: near-tie swap accepted"), std::string::npos) << text;
  EXPECT_NE(text.find("layers.0.attn.indexer.topk: near-tie swaps accepted in 1 of 2 rows"), std::string::npos) << text;
  EXPECT_NE(format_text(r, Detail::kVerbose).find("layers.0.attn.indexer.topk row 0: near-tie swap accepted"),
            std::string::npos);
  EXPECT_NE(text.find("layers.0.attn.indexer.topk row 1: rejected"), std::string::npos) << text;
  EXPECT_NE(text.find("required but missing from the candidate (1 outputs, by module):\n  layers.2.attn.out\n"),
            std::string::npos)
      << text;
  // The verdict first and last, naming the first failure; the counts under it.
  const std::string verdict = "certify: FAIL — first failing output in execution order: layers.1.ffn.out";
  EXPECT_EQ(l.front(), verdict) << text;
  EXPECT_EQ(l[1],
            "  2 tensors checked (1 FAIL), 1 discrete outputs (1 FAIL); 1 golden outputs not in the candidate, 1 of "
            "them required (--require all)")
      << text;
  EXPECT_EQ(l.back(), verdict) << text;
}

TEST(CertifyReport, QuietShowsOnlyTheVerdictAndTheFailures) {
  const CertifyReport r = sample_report();
  const std::string quiet = format_text(r, Detail::kQuiet);
  EXPECT_EQ(quiet.find("layers.0.attn.out"), std::string::npos) << quiet;  // the passing tensor
  EXPECT_NE(quiet.find("layers.1.ffn.out"), std::string::npos) << quiet;
  EXPECT_NE(quiet.find("row 1: rejected"), std::string::npos) << quiet;
  EXPECT_NE(quiet.find("layers.2.attn.out"), std::string::npos) << quiet;  // required and missing
  EXPECT_LT(lines(quiet).size(), lines(format_text(r)).size());
}

TEST(CertifyReport, NothingCheckedOrARequiredOutputMissingFails) {
  CertifyReport r;
  r.requirement = "all";
  EXPECT_FALSE(r.pass());  // nothing checked
  EXPECT_NE(format_text(r).find("certify: FAIL — the candidate holds none of the golden's outputs"), std::string::npos);
  CertifyReport s = sample_report();
  s.tensors.erase(s.tensors.begin() + 1);  // the failing tensor
  s.sets.clear();
  s.first_failure.clear();
  EXPECT_FALSE(s.pass());  // layers.2.attn.out is required and missing
  EXPECT_NE(format_text(s).find("certify: FAIL — 1 required output(s) missing from the candidate (--require all)"),
            std::string::npos)
      << format_text(s);
  s.required_missing.clear();
  EXPECT_TRUE(s.pass());
  EXPECT_NE(format_text(s).find("certify: PASS — every checked output passes"), std::string::npos);
}

TEST(CertifyReport, JsonCarriesEveryNumberAndNonFiniteAsStrings) {
  const CertifyReport r = sample_report();
  const nlohmann::json j = nlohmann::json::parse(to_json(r).dump());  // round trip through text
  EXPECT_EQ(j["schema"], "dsv4-certify-report/2");
  EXPECT_EQ(j["verdict"], "FAIL");
  EXPECT_EQ(j["candidate"], "engine<dump>.safetensors");
  ASSERT_EQ(j["tensors"].size(), 2u);
  const auto& t0 = j["tensors"][0];
  EXPECT_EQ(t0["verdict"], "PASS");
  EXPECT_EQ(t0["metrics"]["max_abs"].get<double>(), r.tensors[0].metrics.max_abs);
  EXPECT_EQ(t0["metrics"]["cosine_diff"].get<double>(), r.tensors[0].metrics.cosine_diff);
  EXPECT_EQ(t0["metrics"]["ulp_histogram"].size(), static_cast<std::size_t>(compare::kUlpBuckets));
  EXPECT_EQ(t0["metrics"]["ulp_histogram"][3]["ulps"], "3-4");
  EXPECT_EQ(t0["checks"].size(), 6u);
  EXPECT_EQ(t0["shape"], (std::vector<std::int64_t>{4, 25}));
  const auto& t1 = j["tensors"][1];
  EXPECT_EQ(t1["metrics"]["special"]["nonfinite_where_ref_finite"], 1);
  EXPECT_EQ(t1["metrics"]["special"]["cand_inf"], 1);
  EXPECT_EQ(json_number(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(json_number(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(json_number(std::numeric_limits<double>::quiet_NaN()), "nan");
  const auto& s = j["sets"][0];
  EXPECT_EQ(s["near_tie"], 1);
  EXPECT_EQ(s["rejected"], 1);
  EXPECT_EQ(s["differing_rows"][1]["swapped_in"], (std::vector<std::int64_t>{4}));
  EXPECT_EQ(s["differing_rows"][1]["slack"].get<double>(), -2.0);
  EXPECT_EQ(j["summary"]["tensors_failed"], 1);
  EXPECT_EQ(j["missing"][0], "layers.2.attn.out");
  EXPECT_EQ(j["tolerance"]["k"].get<double>(), 2.0);
  EXPECT_EQ(j["tolerance"]["structure"]["alpha"].get<double>(), 1e-4);  // the structure tests' family-wise rate
}

// The polyline's points of the i-th <polyline>.
std::string polyline_points(const std::string& svg, int i) {
  std::size_t at = 0;
  for (int k = 0; k <= i; ++k) {
    at = svg.find("<polyline", at);
    if (at == std::string::npos) return "";
    if (k < i) ++at;
  }
  const std::size_t b = svg.find("points=\"", at) + 8;
  return svg.substr(b, svg.find('"', b) - b);
}

TEST(SvgPlot, CoordinatesFollowThePlotArea) {
  LinePlot p;
  p.title = "local <vs> accumulated";
  p.x_label = "layer";
  p.y_label = "max abs error";
  // Log axis over whole decades: 1e-3 … 1e-1 fills the plot area exactly.
  p.series.push_back({"local", {0, 5, 10}, {1e-3, 1e-2, 1e-1}, "", false});
  const std::string svg = svg_line_plot(p);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  EXPECT_NE(svg.find("local &lt;vs&gt; accumulated"), std::string::npos);
  // Plot area: x in [80, 760 − 190 = 570], y in [40, 440 − 60 = 380].
  EXPECT_EQ(polyline_points(svg, 0), "80.00,380.00 325.00,210.00 570.00,40.00");
  EXPECT_NE(svg.find(">1e-2<"), std::string::npos);
}

TEST(SvgPlot, UndrawablePointsBreakTheLineAndAreCounted) {
  LinePlot p;
  p.series.push_back({"accumulated", {0, 1, 2, 3, 4}, {1e-2, 0.0, 1e-2, 1e-1, std::nan("")}, "#000000", true});
  const std::string svg = svg_line_plot(p);
  // Points 0 alone (no line), then 2–3 as one polyline; 2 points skipped.
  EXPECT_EQ(polyline_points(svg, 1), "");
  EXPECT_NE(polyline_points(svg, 0).find(' '), std::string::npos);
  EXPECT_NE(svg.find("2 points not drawn"), std::string::npos);
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
  // Linear axis: the zero is drawable.
  p.log_y = false;
  EXPECT_NE(svg_line_plot(p).find("1 points not drawn (not finite)"), std::string::npos);
}

TEST(SvgPlot, BadInputAndEmptyPlots) {
  LinePlot p;
  EXPECT_NE(svg_line_plot(p).find("no data"), std::string::npos);
  p.series.push_back({"bad", {0, 1}, {1.0}, "", false});
  EXPECT_THROW(svg_line_plot(p), std::invalid_argument);
  LinePlot tiny;
  tiny.width = 100;
  EXPECT_THROW(svg_line_plot(tiny), std::invalid_argument);
  EXPECT_EQ(xml_escape("a&b<'\">"), "a&amp;b&lt;&apos;&quot;&gt;");
}

}  // namespace
}  // namespace dsv4::report
