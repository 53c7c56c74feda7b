// oracle/README.md §Goldens (certify): value tensors by the tolerance model, discrete outputs as sets.
#include "dsv4/golden/certify.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/compare/set_compare.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4 {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A candidate may leave out leading dimensions of size 1 (a single sequence dumped as [s, c]).
bool compatible_shape(const std::vector<std::int64_t>& cand, const std::vector<std::int64_t>& gold) {
  if (cand == gold) return true;
  if (cand.size() >= gold.size()) return false;
  const std::size_t drop = gold.size() - cand.size();
  for (std::size_t i = 0; i < drop; ++i)
    if (gold[i] != 1) return false;
  return std::equal(cand.begin(), cand.end(), gold.begin() + static_cast<std::ptrdiff_t>(drop));
}

compare::TensorVerdict failed(const std::string& reason) {
  compare::TensorVerdict v;
  v.verdict = compare::Verdict::kFail;
  v.reason = reason;
  return v;
}

DType grid_dtype(const std::string& grid) {
  if (grid == "bf16") return DType::kBF16;
  if (grid == "fp32") return DType::kF32;
  return DType::kF64;
}

std::vector<std::int64_t> as_ids(const Tensor& t, const std::string& name) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(t.numel()));
  switch (t.dtype()) {
    case DType::kI64: {
      const auto s = t.values<std::int64_t>();
      std::copy(s.begin(), s.end(), v.begin());
      return v;
    }
    case DType::kI32: {
      const auto s = t.values<std::int32_t>();
      std::copy(s.begin(), s.end(), v.begin());
      return v;
    }
    case DType::kF64:
    case DType::kF32: {
      for (std::size_t i = 0; i < v.size(); ++i) {
        const double x = t.dtype() == DType::kF64 ? t.values<double>()[i] : t.values<float>()[i];
        if (!(std::abs(x) < 9.0e15) || x != std::floor(x))
          throw InputError(name, "an index tensor holds the non-integer value " + std::to_string(x) + " at element " +
                                     std::to_string(i));
        v[i] = static_cast<std::int64_t>(x);
      }
      return v;
    }
    default:
      throw InputError(
          name, "an index tensor must be int32/int64 (or integral floats), got " + std::string(dtype_name(t.dtype())));
  }
}

// Per row of a [.., rows, n] score tensor pair: max |official − exact| over entries finite in both.
std::vector<double> row_errors(const std::vector<double>& ex, const std::vector<double>& off, std::int64_t n) {
  const std::size_t rows = n == 0 ? 0 : ex.size() / static_cast<std::size_t>(n);
  std::vector<double> e(rows, 0.0);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < n; ++j) {
      const std::size_t i = r * static_cast<std::size_t>(n) + static_cast<std::size_t>(j);
      if (std::isfinite(ex[i]) && std::isfinite(off[i])) e[r] = std::max(e[r], std::abs(off[i] - ex[i]));
    }
  return e;
}

}  // namespace

DType certify_ulp_dtype(const Tensor& candidate, const std::string& official_grid) {
  if (candidate.dtype() != DType::kF64) return candidate.dtype();
  return compare::widened_dump_dtype(candidate.values<double>(), grid_dtype(official_grid));
}

namespace {

constexpr const char* kScaleSuffix = ".scale";

// A candidate output as values: quantised codes are dequantised with their "<name>.scale"
// companion (oracle/io tensor_source.hpp dequantize_blocks).
Tensor candidate_values(const MappedTensorSource& cand, const std::string& name, const std::string& where) {
  Tensor c = cand.read(name);
  if (c.dtype() != DType::kE4M3 && c.dtype() != DType::kE5M2 && c.dtype() != DType::kE2M1x2) return c;
  const std::string sn = name + kScaleSuffix;
  if (!cand.contains(sn))
    throw InputError(where, std::string(dtype_name(c.dtype())) + " codes without their scales (expected a tensor " +
                                sn + ", oracle/README.md Dump convention)");
  return dequantize_blocks(c, cand.read(sn), where);
}

// The position of an output in execution order at block granularity, (step, block): block = N
// for layers.N…, n_layers for the head modules (hc_head, norm, head), n_layers + 1 for mtp.*.
std::pair<std::int64_t, std::int64_t> exec_key(const Golden& g, const std::string& name) {
  const std::string step = name.substr(0, name.find('/'));
  std::int64_t s = 0;
  for (std::size_t i = 0; i < g.steps().size(); ++i)
    if (g.steps()[i].name == step) s = static_cast<std::int64_t>(i);
  const std::string module = name.substr(step.size() + 1);
  std::int64_t block = g.config().n_layers;
  if (module.rfind("layers.", 0) == 0) {
    block = std::stoll(module.substr(7));
  } else if (module.rfind("mtp.", 0) == 0) {
    block = g.config().n_layers + 1;
  }
  return {s, block};
}

// The first decision flip in execution order (the candidate's accepted near-ties, or the official
// reference's differences from exact), then every output at or after it judged by its local
// verdict (CertifyOptions::local_verdicts).
void rejudge_after_flips(const Golden& g, const CertifyOptions& opts, report::CertifyReport& rep) {
  std::optional<std::pair<std::int64_t, std::int64_t>> first;
  std::string first_text;
  const auto consider = [&](const std::string& name, const std::string& text) {
    const auto key = exec_key(g, name);
    if (!first || key < *first) {
      first = key;
      first_text = text;
    }
  };
  // The candidate's own accepted flips …
  for (const report::SetResult& s : rep.sets) {
    for (const compare::SetRow& row : s.comparison.differing) {
      if (row.status != compare::RowStatus::kNearTie) continue;
      consider(s.name, s.name + " row " + std::to_string(row.row) + " (the candidate's)");
      break;
    }
  }
  // … and the official reference's: past a decision where official and exact differ, the
  // official error the tolerance model scales by includes that decision's O(1) effect, so the
  // end-to-end yardstick is too loose to catch a wrong module there.
  for (const std::string& name : g.canonical_names()) {
    const GoldenEntry* e = g.find("exact/" + name);
    if (e == nullptr || e->role != GoldenRole::kDiscrete) continue;
    const std::vector<double> ex = g.values("exact", name), off = g.values("official", name);
    const std::int64_t k = e->shape.empty() ? 1 : std::max<std::int64_t>(e->shape.back(), 1);
    for (std::size_t i = 0; i < ex.size(); ++i) {
      if (ex[i] == off[i]) continue;
      consider(name, name + " row " + std::to_string(static_cast<std::int64_t>(i) / k) + " (the official reference's)");
      break;
    }
  }
  if (!first) return;
  std::optional<LocalVerdicts> verdicts;
  const auto judge = [&](const std::string& name) {
    report::LocalJudgement j;
    j.after_flip = first_text;
    if (!opts.local_verdicts) {
      j.reason = "no local judge was given";
      return j;
    }
    if (!verdicts) verdicts = opts.local_verdicts();
    auto it = verdicts->find(name);
    const std::string module = name.substr(0, name.rfind('/'));
    if (it == verdicts->end()) it = verdicts->find(module);
    std::string enclosing;
    if (it == verdicts->end() && module.rfind('.') > module.find('/')) {
      // an output internal to a module (layers.5.attn.q_norm/out): that module's verdict covers it,
      // its outputs depending on it
      enclosing = module.substr(0, module.rfind('.'));
      if (std::count(enclosing.begin(), enclosing.end(), '.') >= 2) it = verdicts->find(enclosing);
    }
    if (it == verdicts->end()) {
      j.reason = verdicts->empty() ? "the local check could not run (see the diff's requirements)"
                                   : "the local (teacher-forced) check covers neither this output nor its module";
      return j;
    }
    j.available = true;
    j.pass = it->second.pass;
    j.reason =
        (it->first == enclosing ? "by its enclosing module " + enclosing + ": " : std::string()) + it->second.reason;
    return j;
  };
  // Past the first flip the local verdict decides, in both directions; where none is available
  // the end-to-end verdict stands (noted).
  for (report::TensorResult& t : rep.tensors)
    if (exec_key(g, t.name) >= *first) t.local = judge(t.name);
  for (report::SetResult& s : rep.sets)
    if (exec_key(g, s.name) >= *first) s.local = judge(s.name);
}

}  // namespace

report::CertifyReport certify(const Golden& g, const MappedTensorSource& cand, const CertifyOptions& opts) {
  report::CertifyReport rep;
  rep.golden = g.path();
  rep.candidate = cand.source().path();
  rep.tolerance = opts.tolerance;
  const nlohmann::json man = nlohmann::json::parse(g.manifest_text());
  const nlohmann::json& tol = man.at("tolerance").at("tensors");

  const std::vector<std::string> names = g.canonical_names();
  const std::set<std::string> golden_names(names.begin(), names.end());
  for (const std::string& c : cand.names()) {
    const bool scale_of_output = c.ends_with(kScaleSuffix) && golden_names.count(c.substr(0, c.size() - 6)) != 0;
    if (golden_names.count(c) == 0 && !scale_of_output) rep.unmatched.push_back(c);
  }

  for (const std::string& name : names) {
    const GoldenEntry& ge = *g.find("exact/" + name);
    if (!cand.contains(name)) {
      if (ge.role != GoldenRole::kDecision) rep.missing.push_back(name);
      continue;
    }
    const std::string where = cand.source().path() + ": " + cand.source_name(name);
    const Tensor c = candidate_values(cand, name, where);
    const bool shape_ok = compatible_shape(c.shape(), ge.shape);

    if (ge.role == GoldenRole::kDiscrete) {
      report::SetResult sr;
      sr.name = name;
      sr.kind = ends_with(name, ".attn.indexer/out") ? "topk" : "experts";
      const std::int64_t k = ge.shape.back();
      const std::int64_t rows = k == 0 ? 0 : [&] {
        std::int64_t n = 1;
        for (auto d : ge.shape) n *= d;
        return n / k;
      }();
      if (!shape_ok) {
        report::TensorResult tr;
        tr.name = name;
        tr.shape = c.shape();
        tr.verdict =
            failed("shape " + shape_string(c.shape()) + " differs from the golden's " + shape_string(ge.shape));
        rep.tensors.push_back(std::move(tr));
        continue;
      }
      std::vector<std::int64_t> cid = as_ids(c, where);
      std::vector<std::int64_t> rid;
      for (double x : g.values("exact", name)) rid.push_back(static_cast<std::int64_t>(x));
      // The scores the decision was made on, and the per-row near-tie tolerance.
      const std::string module = name.substr(0, name.rfind('/'));
      const std::string score_name = sr.kind == "topk" ? module + "/scores" : module + "/choice_scores";
      std::vector<double> sex, soff;
      std::int64_t n_items = sr.kind == "topk" ? 0 : g.config().n_routed_experts;
      if (g.find("exact/" + score_name) != nullptr) {
        sex = g.values("exact", score_name);
        soff = g.values("official", score_name);
        n_items = g.find("exact/" + score_name)->shape.back();
      } else if (sr.kind == "topk") {
        throw InputError(g.path(), "golden has " + name + " but not " + score_name);
      }
      if (sr.kind == "topk") {
        // The lists hold KV positions: compressed entry e is at offset + e, the offset being the
        // prefill's length (prefill) or the window size (decode) — spec 02 §2.7, official
        // `topk_idxs`. Compare entry numbers; a position below the offset is no entry at all.
        const std::string step = name.substr(0, name.find('/'));
        std::int64_t offset = g.config().window_size;
        for (const StepPlan& sp : g.steps())
          if (sp.name == step && sp.start_pos == 0) offset = sp.length;
        for (auto* ids : {&cid, &rid})
          for (std::int64_t& x : *ids) x = x < 0 ? -1 : (x < offset ? n_items : x - offset);
      }
      std::vector<double> tau(static_cast<std::size_t>(rows), 0.0);
      if (!sex.empty()) {
        const std::vector<double> err = row_errors(sex, soff, n_items);
        const std::vector<double> margin = g.values("exact", module + "/margin");
        for (std::int64_t r = 0; r < rows; ++r) {
          const double kth = margin[static_cast<std::size_t>(r) * 4];
          tau[static_cast<std::size_t>(r)] = compare::tie_tolerance(
              err[static_cast<std::size_t>(r)], std::isfinite(kth) ? kth : 0.0, DType::kF32, opts.tolerance);
        }
        sr.comparison = compare::compare_sets_dense(cid, rid, rows, k, n_items, sex, tau);
      } else {
        // Hash-routed experts: chosen by the token id, no scores — the sets must be identical.
        sr.comparison = compare::compare_sets(
            cid, rid, rows, k, n_items, [](std::int64_t, std::int64_t) { return std::optional<double>(); }, tau);
      }
      rep.sets.push_back(std::move(sr));
      continue;
    }

    // Value (and decision data the candidate happens to hold).
    report::TensorResult tr;
    tr.name = name;
    tr.shape = c.shape();
    if (!shape_ok) {
      tr.verdict = failed("shape " + shape_string(c.shape()) + " differs from the golden's " + shape_string(ge.shape));
      rep.tensors.push_back(std::move(tr));
      continue;
    }
    // float64 datasets (every golden value tensor) are used in place, without a copy
    const Tensor ex_t = g.read("exact/" + name), off_t = g.read("official/" + name);
    std::vector<double> ex_copy, off_copy;
    if (ex_t.dtype() != DType::kF64) ex_copy = g.values("exact", name);
    if (off_t.dtype() != DType::kF64) off_copy = g.values("official", name);
    const std::span<const double> ex = ex_copy.empty() ? ex_t.values<double>() : std::span<const double>(ex_copy);
    const std::span<const double> off = off_copy.empty() ? off_t.values<double>() : std::span<const double>(off_copy);
    const std::string grid = tol.contains(name) ? tol.at(name).at("official_grid").get<std::string>() : "fp32";
    const DType official_grid = grid_dtype(grid);
    switch (c.dtype()) {
      case DType::kF64:
      case DType::kF32:
      case DType::kBF16:
      case DType::kF16:
        break;
      default:
        tr.verdict = failed("dtype " + std::string(dtype_name(c.dtype())) +
                            " cannot be compared as values (expected float64, float32, bf16 or float16)");
        rep.tensors.push_back(std::move(tr));
        continue;
    }
    compare::MetricOptions mo;
    mo.ulp_dtype = certify_ulp_dtype(c, grid);
    const compare::TensorMetrics off_m = compare::compute_metrics(off, official_grid, ex, {});
    mo.rel_floor = compare::rel_floor_for(off_m.ref_rms, *mo.ulp_dtype);
    tr.metrics = compare::compute_metrics(c, ex, mo);
    tr.official = compare::reference_error(off_m);
    tr.verdict = compare::judge_tensor(tr.metrics, tr.official, opts.tolerance);
    rep.tensors.push_back(std::move(tr));
  }
  rejudge_after_flips(g, opts, rep);
  return rep;
}

}  // namespace dsv4
