// `dsv4 cost`: the per-token FLOPs and KV-cache model of spec 08 (ref/cost), as a table, JSON, and an
// SVG plot of the ratios against context length.
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "dsv4/cost/cost_model.hpp"
#include "dsv4/golden/cli_guard.hpp"

namespace dsv4::cli {

namespace {

using cost::CostReport;
using cost::ModelDesc;

struct CostArgs {
  std::string config = "v4-pro";
  std::string context = "1M";
  std::string vs;
  std::string plot;
  bool json = false;
  bool mtp = false;
  bool no_scales = false;
};

std::string human_bytes(double b) {
  char buf[64];
  if (b >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2f MB", b / 1e6);
  else if (b >= 1e3)
    std::snprintf(buf, sizeof buf, "%.2f kB", b / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

std::string with_commas(std::int64_t v) {
  const std::string d = std::to_string(v);
  std::string s;
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (i > 0 && (d.size() - i) % 3 == 0) s.push_back(',');
    s.push_back(d[i]);
  }
  return s;
}

void print_report(const CostReport& r) {
  const double total = r.flops.equiv_total();
  const double unit = total >= 1e12 ? 1e12 : total >= 1e9 ? 1e9 : total >= 1e6 ? 1e6 : 1e3;
  const char* u = unit == 1e12 ? "TFLOP" : unit == 1e9 ? "GFLOP" : unit == 1e6 ? "MFLOP" : "kFLOP";
  std::printf("\n[%s] per-token inference FLOPs at position %s (2 FLOPs per multiply-accumulate)\n", r.model.c_str(),
              with_commas(r.context).c_str());
  const std::string raw_h = std::string("raw ") + u, eq_h = std::string("FP8-eq ") + u;
  std::printf("  %-54s %6s %14s %14s\n", "component", "weight", raw_h.c_str(), eq_h.c_str());
  for (const auto& t : r.flops.terms) {
    std::printf("  %-54s %6.2g %14.4f %14.4f\n", t.name.c_str(), t.weight, t.raw / unit, t.equiv() / unit);
  }
  std::printf("  %-54s %6s %14.4f %14.4f\n", "total", "", r.flops.raw_total() / unit, total / unit);
  std::printf("[%s] KV cache per sequence at context %s (deployment storage format, spec 08 §8.1)\n", r.model.c_str(),
              with_commas(r.context).c_str());
  std::printf("  %-54s %16s %16s\n", "component", "entries", "bytes");
  for (const auto& t : r.kv.terms) {
    std::printf("  %-54s %16.0f %16.0f\n", t.name.c_str(), t.entries, t.bytes);
  }
  std::printf("  %-54s %16s %16.0f  (%s)\n", "total", "", r.kv.total(), human_bytes(r.kv.total()).c_str());
  if (r.kv.state_bytes > 0) {
    std::printf("  (+ compressor decode state, fp32, context-independent, not counted: %s)\n",
                human_bytes(r.kv.state_bytes).c_str());
  }
}

nlohmann::json report_json(const CostReport& r) {
  nlohmann::json j;
  j["config"] = r.model;
  j["context"] = r.context;
  nlohmann::json ft = nlohmann::json::array();
  for (const auto& t : r.flops.terms) {
    ft.push_back(
        {{"name", t.name}, {"section", t.section}, {"raw", t.raw}, {"weight", t.weight}, {"fp8_equiv", t.equiv()}});
  }
  j["flops"] = {{"raw", r.flops.raw_total()}, {"fp8_equiv", r.flops.equiv_total()}, {"terms", ft}};
  nlohmann::json kt = nlohmann::json::array();
  for (const auto& t : r.kv.terms) {
    kt.push_back({{"name", t.name}, {"section", t.section}, {"entries", t.entries}, {"bytes", t.bytes}});
  }
  j["kv_bytes"] = {{"total", r.kv.total()}, {"terms", kt}, {"compressor_state_bytes", r.kv.state_bytes}};
  return j;
}

// ------------------------------------------------------------------------------------ plot

struct Series {
  std::string label;
  std::string color;
  std::vector<double> y;  // ratio in percent
};

std::string svg_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '<')
      o += "&lt;";
    else if (ch == '>')
      o += "&gt;";
    else if (ch == '&')
      o += "&amp;";
    else
      o += ch;
  }
  return o;
}

// Report figure points at 1M for this comparison (report abstract / Figure 1), if it states any.
std::vector<std::pair<std::string, double>> report_points(const ModelDesc& a, const ModelDesc& b) {
  std::vector<std::pair<std::string, double>> p;
  if (a.arch != cost::Arch::kV4) return p;
  if (b.arch == cost::Arch::kV32 && a.name == "v4-pro") p = {{"flops", 27.0}, {"kv", 10.0}};
  if (b.arch == cost::Arch::kV32 && a.name == "v4-flash") p = {{"flops", 10.0}, {"kv", 7.0}};
  if (b.arch == cost::Arch::kGqa) p = {{"kv", 2.0}};
  return p;
}

std::string make_svg(const ModelDesc& a, const ModelDesc& b, const cost::CostOptions& opt) {
  const int W = 840, H = 480, ml = 80, mr = 280, mt = 56, mb = 64;
  const double pw = W - ml - mr, ph = H - mt - mb;
  std::vector<std::int64_t> ctx;
  for (int i = 0; i <= 64; ++i) ctx.push_back(static_cast<std::int64_t>(std::llround(4096.0 * std::pow(2.0, i / 8.0))));
  ctx.back() = std::int64_t{1} << 20;
  Series fl{"FLOPs ratio (FP8-equivalent)", "#1f77b4", {}};
  Series kv{"KV-cache ratio", "#d62728", {}};
  double ymax = 0;
  for (std::int64_t L : ctx) {
    const CostReport ra = cost::evaluate(a, L, opt), rb = cost::evaluate(b, L, opt);
    fl.y.push_back(100.0 * ra.flops.equiv_total() / rb.flops.equiv_total());
    kv.y.push_back(100.0 * ra.kv.total() / rb.kv.total());
    ymax = std::max({ymax, fl.y.back(), kv.y.back()});
  }
  const double ystep = ymax > 100 ? 50 : ymax > 50 ? 20 : ymax > 20 ? 10 : 5;
  const double ytop = std::max(ystep, std::ceil(ymax / ystep) * ystep);
  const double x0 = std::log2(4096.0), x1 = 20.0;
  const auto X = [&](double L) { return ml + pw * (std::log2(L) - x0) / (x1 - x0); };
  const auto Y = [&](double pct) { return mt + ph * (1.0 - pct / ytop); };

  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(2);
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
    << ' ' << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << W / 2 << "\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">"
    << svg_escape(a.name + " vs " + b.name + ": per-token FLOPs and KV cache ratio") << "</text>\n";
  // grid + y ticks
  for (double v = 0; v <= ytop + 1e-9; v += ystep) {
    s << "<line x1=\"" << ml << "\" y1=\"" << Y(v) << "\" x2=\"" << ml + pw << "\" y2=\"" << Y(v)
      << "\" stroke=\"#ddd\"/>\n";
    s << "<text x=\"" << ml - 8 << "\" y=\"" << Y(v) + 4 << "\" text-anchor=\"end\">" << static_cast<int>(v)
      << "%</text>\n";
  }
  // x ticks (log2 axis)
  const char* labels[] = {"4K", "8K", "16K", "32K", "64K", "128K", "256K", "512K", "1M"};
  for (int i = 0; i <= 8; ++i) {
    const double L = 4096.0 * std::pow(2.0, i);
    s << "<line x1=\"" << X(L) << "\" y1=\"" << mt << "\" x2=\"" << X(L) << "\" y2=\"" << mt + ph
      << "\" stroke=\"#eee\"/>\n";
    s << "<text x=\"" << X(L) << "\" y=\"" << mt + ph + 18 << "\" text-anchor=\"middle\">" << labels[i] << "</text>\n";
  }
  s << "<rect x=\"" << ml << "\" y=\"" << mt << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"black\"/>\n";
  s << "<text x=\"" << ml + pw / 2 << "\" y=\"" << H - 18
    << "\" text-anchor=\"middle\">context length (tokens, log scale)</text>\n";
  s << "<text transform=\"translate(22," << mt + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
    << svg_escape(a.name + " / " + b.name + " (%)") << "</text>\n";
  for (const Series* se : {&fl, &kv}) {
    s << "<polyline fill=\"none\" stroke=\"" << se->color << "\" stroke-width=\"2\" points=\"";
    for (std::size_t i = 0; i < ctx.size(); ++i) s << X(static_cast<double>(ctx[i])) << ',' << Y(se->y[i]) << ' ';
    s << "\"/>\n";
  }
  // report's figure points at 1M
  const auto pts = report_points(a, b);
  for (const auto& [what, pct] : pts) {
    const std::string col = what == "flops" ? fl.color : kv.color;
    const double cx = X(1048576.0), cy = Y(pct);
    s << "<path d=\"M" << cx - 6 << ',' << cy - 6 << " L" << cx + 6 << ',' << cy + 6 << " M" << cx - 6 << ',' << cy + 6
      << " L" << cx + 6 << ',' << cy - 6 << "\" stroke=\"" << col << "\" stroke-width=\"2\"/>\n";
  }
  // legend
  const double lx = ml + pw + 16;
  double ly = mt + 10;
  for (const Series* se : {&fl, &kv}) {
    s << "<line x1=\"" << lx << "\" y1=\"" << ly << "\" x2=\"" << lx + 24 << "\" y2=\"" << ly << "\" stroke=\""
      << se->color << "\" stroke-width=\"2\"/>\n";
    s << "<text x=\"" << lx + 30 << "\" y=\"" << ly + 4 << "\">" << svg_escape(se->label) << "</text>\n";
    ly += 22;
  }
  if (!pts.empty()) {
    s << "<path d=\"M" << lx + 6 << ',' << ly - 6 << " L" << lx + 18 << ',' << ly + 6 << " M" << lx + 6 << ',' << ly + 6
      << " L" << lx + 18 << ',' << ly - 6 << "\" stroke=\"black\" stroke-width=\"2\"/>\n";
    s << "<text x=\"" << lx + 30 << "\" y=\"" << ly + 4 << "\">report figure (1M)</text>\n";
    ly += 22;
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "at 1M: FLOPs %.1f%%, KV %.2f%%", fl.y.back(), kv.y.back());
  s << "<text x=\"" << lx << "\" y=\"" << ly + 10 << "\" font-size=\"11\">" << buf << "</text>\n";
  s << "</svg>\n";
  return s.str();
}

void run_cost(const CostArgs& a) {
  const std::int64_t L = cost::parse_context(a.context);
  const ModelDesc model = cost::resolve_model(a.config);
  std::optional<ModelDesc> vs;
  if (!a.vs.empty()) vs = cost::resolve_model(a.vs, &model);
  cost::CostOptions opt;
  opt.include_mtp = a.mtp;
  opt.with_scale_bytes = !a.no_scales;

  std::ofstream plot_out;
  if (!a.plot.empty()) {
    plot_out.open(a.plot, std::ios::binary | std::ios::trunc);
    if (!plot_out) throw std::runtime_error("cannot write plot file '" + a.plot + "'");
  }

  const CostReport r = cost::evaluate(model, L, opt);
  std::optional<CostReport> rv;
  if (vs) rv = cost::evaluate(*vs, L, opt);

  if (a.json) {
    nlohmann::json j = report_json(r);
    if (rv) {
      j["vs"] = report_json(*rv);
      j["flops_ratio"] = r.flops.equiv_total() / rv->flops.equiv_total();
      j["flops_ratio_raw"] = r.flops.raw_total() / rv->flops.raw_total();
      j["kv_ratio"] = r.kv.total() / rv->kv.total();
    }
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("dsv4 cost: %s at context %s tokens%s\n", r.model.c_str(), with_commas(L).c_str(),
                rv ? (" vs " + rv->model).c_str() : "");
    print_report(r);
    if (rv) {
      print_report(*rv);
      const double fr = r.flops.equiv_total() / rv->flops.equiv_total();
      const double frr = r.flops.raw_total() / rv->flops.raw_total();
      const double kr = r.kv.total() / rv->kv.total();
      std::printf("\nratios %s / %s at %s:\n", r.model.c_str(), rv->model.c_str(), with_commas(L).c_str());
      std::printf("  FLOPs (FP8-equivalent)  %7.2f%%  (%.2fx lower)\n", 100 * fr, 1 / fr);
      std::printf("  FLOPs (raw)             %7.2f%%  (%.2fx lower)\n", 100 * frr, 1 / frr);
      std::printf("  KV cache                %7.2f%%  (%.2fx smaller)\n", 100 * kr, 1 / kr);
    }
  }

  if (!a.plot.empty()) {
    const ModelDesc other = vs ? *vs : cost::resolve_model("v3.2", &model);
    plot_out << make_svg(model, other, opt);
    plot_out.close();
    if (!plot_out) throw std::runtime_error("failed writing plot file '" + a.plot + "'");
    if (!a.json) std::printf("\nplot written to %s\n", a.plot.c_str());
  }
}

}  // namespace

void register_cost(CLI::App& app) {
  auto args = std::make_shared<CostArgs>();
  auto* cmd = app.add_subcommand(
      "cost",
      "Per-token inference FLOPs and KV-cache bytes (spec 08) of a model at a context length, with ratios against\n"
      "another model — reproduces the DeepSeek-V4 report's efficiency figure (V4-Pro: 27% FLOPs / 10% KV of V3.2 at "
      "1M).");
  cmd->add_option("--config", args->config,
                  "Model: v4-pro, v4-flash, v3.2, gqa8 (BF16 GQA, 8 KV heads x 128), a built-in config (tiny, "
                  "flash-slice, ...) or a config.json path (official or Hugging Face keys)")
      ->capture_default_str();
  cmd->add_option("--context", args->context, "Context length: 1M (=1048576), 128K (=131072), 4096, ...")
      ->capture_default_str();
  cmd->add_option("--vs", args->vs, "Compare with this model (same choices as --config; gqa8 takes --config's depth)");
  cmd->add_option("--plot", args->plot,
                  "Write an SVG of the FLOPs and KV ratios vs context length 4K..1M (log axis); compares with --vs, "
                  "or v3.2 if --vs is not given");
  cmd->add_flag("--json", args->json, "Print a JSON object (fields flops_ratio and kv_ratio when --vs is given)");
  cmd->add_flag("--mtp", args->mtp, "Also count the MTP blocks' caches (off: the report compares main models)");
  cmd->add_flag("--no-scale-bytes", args->no_scales, "Cache entries without their UE8M0 scale bytes (576/64 B)");
  cmd->footer(
      "Examples:\n"
      "  dsv4 cost --config v4-pro --context 1M --vs v3.2          table + ratios (27.1% FLOPs, 10.46% KV)\n"
      "  dsv4 cost --config v4-flash --context 128K --vs v3.2 --json\n"
      "  dsv4 cost --config v4-pro --vs gqa8 --plot ratios.svg     KV vs a BF16 GQA8 baseline of 61 layers\n"
      "FLOPs: 2 per multiply-accumulate for one token decoded at position L; 'FP8-equivalent' counts BF16 work 2x\n"
      "and the FP4xFP4 indexer 0.5x (spec 08 §8.3). KV: bytes per sequence, FP8 nope dims + UE8M0 scales + BF16\n"
      "rope dims, FP4 indexer keys (spec 08 §8.1). Exit codes: 0 ok, 2 bad input (message on stderr).");
  cmd->callback([args]() {  // one line on stderr; 2 bad input, 3 internal error (cli_guard.hpp)
    set_exit_code(run_guarded("cost", [&] {
      run_cost(*args);
      return 0;
    }));
  });
}

}  // namespace dsv4::cli
