// oracle/README.md §Goldens (certify): value tensors by the tolerance model, discrete outputs as sets.
#include "dsv4/golden/certify.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/compare/set_compare.hpp"
#include "dsv4/compare/ulp.hpp"
#include "dsv4/config/version.hpp"
#include "dsv4/golden/glob.hpp"
#include "dsv4/golden/read_ahead.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/golden/train_golden.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/model/output_table.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4 {

namespace {

// A value of the golden's training step (train_golden.hpp): judged under its own path.
bool is_train(const std::string& name) { return name.rfind("train/", 0) == 0; }
// The golden dataset holding an output's exact values: exact/<canonical>, or the train/ path itself.
std::string golden_path(const std::string& name) { return is_train(name) ? name : "exact/" + name; }

// Which of the training step's values a candidate must hold (--require): all — the losses, every
// gradient and updated parameter (optimizer states are judged when present); modules — the
// gradients; a list — the paths matching it; none — nothing.
bool train_required(const Requirement& req, const std::string& path) {
  const std::optional<TrainDatasetDesc> d = describe_train_dataset(path);
  if (!d) return false;
  switch (req.kind) {
    case Requirement::Kind::kAll:
      return d->kind == TrainDataset::kLoss || d->kind == TrainDataset::kGrad || d->kind == TrainDataset::kUpdated;
    case Requirement::Kind::kModules:
      return d->kind == TrainDataset::kGrad;
    case Requirement::Kind::kList:
      return is_required(req, path);
    case Requirement::Kind::kNone:
      return false;
  }
  return false;
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
std::vector<double> row_errors(std::span<const double> ex, std::span<const double> off, std::int64_t n) {
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

DType certify_ulp_dtype(const Tensor& candidate, DType official_grid) {
  if (candidate.dtype() == DType::kF32) return compare::float32_dump_dtype(candidate.values<float>());
  if (candidate.dtype() != DType::kF64) return candidate.dtype();
  return compare::widened_dump_dtype(candidate.values<double>(), official_grid);
}

DType candidate_format_option(const std::string& name) {
  DType d;
  try {
    d = dtype_from_name(name);
  } catch (const std::invalid_argument& e) {
    throw InputError("--candidate-format", e.what());
  }
  try {
    (void)compare::ulp_grid(d);
  } catch (const std::invalid_argument&) {
    throw InputError("--candidate-format", "'" + name +
                                               "' is not a floating-point format (bfloat16, float16, "
                                               "float32, float64, float8_e4m3fn, float8_e5m2)");
  }
  return d;
}

Requirement parse_requirement(const std::string& text) {
  Requirement r;
  r.text = text;
  if (text == "all") return r;
  if (text == "modules" || text == "none") {
    r.kind = text == "modules" ? Requirement::Kind::kModules : Requirement::Kind::kNone;
    return r;
  }
  r.kind = Requirement::Kind::kList;
  for (const std::string& p : split_pattern_list(text)) {
    if (p.empty())
      throw InputError("--require", "an empty pattern in '" + text +
                                        "' (expected all, modules, none or a comma-separated list of outputs)");
    r.patterns.push_back(p);
  }
  return r;
}

std::vector<std::string> split_pattern_list(const std::string& text) {
  std::vector<std::string> items;
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    std::string p = text.substr(at, comma - at);
    while (!p.empty() && p.front() == ' ') p.erase(p.begin());
    while (!p.empty() && p.back() == ' ') p.pop_back();
    items.push_back(std::move(p));
    at = comma + 1;
  }
  return items;
}

bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool is_required(const Requirement& req, const std::string& canonical) {
  switch (req.kind) {
    case Requirement::Kind::kAll:
      return true;
    case Requirement::Kind::kNone:
      return false;
    case Requirement::Kind::kModules: {
      const std::string output = canonical.substr(canonical.rfind('/') + 1);
      return output == "out" || output == "out0" || output == "out1" || output == "in";
    }
    case Requirement::Kind::kList: {
      const std::size_t a = canonical.find('/'), b = canonical.rfind('/');
      const std::string_view whole = canonical;
      const std::string_view no_step = whole.substr(a + 1);
      const std::string_view module = whole.substr(a + 1, b - a - 1);
      for (const std::string& p : req.patterns)
        if (glob_match(p, whole) || glob_match(p, no_step) || glob_match(p, module)) return true;
      return false;
    }
  }
  return false;
}

namespace {

constexpr std::string_view kScaleSuffix = ".scale";

// A candidate output as values, into `into`: quantised codes are dequantised with their
// "<name>.scale" companion (oracle/io tensor_source.hpp dequantize_blocks). A tensor declaring more
// than the golden's `max_elements` is refused before it is read or decompressed (issue 14 item 3).
void candidate_values(const MappedTensorSource& cand, const std::string& name, const std::string& where,
                      std::int64_t max_elements, Tensor& into) {
  cand.read_into(name, into, max_elements);
  if (into.dtype() != DType::kE4M3 && into.dtype() != DType::kE5M2 && into.dtype() != DType::kE2M1x2) return;
  const std::string sn = name + std::string(kScaleSuffix);
  if (!cand.contains(sn))
    throw InputError(where, std::string(dtype_name(into.dtype())) + " codes without their scales (expected a tensor " +
                                sn + ", oracle/README.md Dump convention)");
  into = dequantize_blocks(into, cand.read(sn, max_elements), where);
}

// The position of an output in execution order at block granularity, (step, block): block = N
// for layers.N…, n_layers for the head modules (hc_head, norm, head), n_layers + 1 for mtp.*.
std::pair<std::int64_t, std::int64_t> exec_key(const Golden& g, const std::string& name) {
  const std::string step = name.substr(0, name.find('/'));
  std::int64_t s = 0;
  for (std::size_t i = 0; i < g.steps().size(); ++i)
    if (g.steps()[i].name == step) s = static_cast<std::int64_t>(i);
  const std::optional<OutputRef> d = describe_output(name);  // block ≥ 0: layers.N; < −1: mtp.*
  std::int64_t block = g.config().n_layers;
  if (d && d->block >= 0) {
    block = d->block;
  } else if (d && d->block < -1) {
    block = g.config().n_layers + 1;
  }
  return {s, block};
}

// One verdict (issue 15): every output whose module the local (teacher-forced) check covers is
// judged by that local verdict — the same statistics, the same Holm family, as `dsv4 diff` — and
// the end-to-end comparison stands only where no local verdict exists. The first decision flip in
// execution order (the candidate's accepted near-ties, or the official reference's differences from
// exact) is named on the outputs at or after it: past it the end-to-end errors say little either way.
void judge_locally(const Golden& g, const CertifyOptions& opts, report::CertifyReport& rep) {
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
  Tensor ex, off;  // reused for every discrete output
  for (const std::string& name : g.canonical_names()) {
    const GoldenEntry* e = g.find("exact/" + name);
    if (e == nullptr || e->role != GoldenRole::kDiscrete) continue;
    g.read_into("exact/" + name, ex);
    g.read_into("official/" + name, off);
    if (ex.dtype() != off.dtype())  // shapes: both the manifest's (Golden::read_into)
      throw InputError(g.path(), name + ": the exact and official datasets differ in dtype");
    const std::size_t item = dtype_size(ex.dtype());
    const std::int64_t k = e->shape.empty() ? 1 : std::max<std::int64_t>(e->shape.back(), 1);
    for (std::size_t i = 0; i * item < ex.nbytes(); ++i) {
      if (std::memcmp(ex.bytes() + i * item, off.bytes() + i * item, item) == 0) continue;
      consider(name, name + " row " + std::to_string(static_cast<std::int64_t>(i) / k) + " (the official reference's)");
      break;
    }
  }
  if (!opts.local_verdicts) {
    if (!first) return;  // the end-to-end screen: past the first flip, noted as lacking a local verdict
  }
  std::optional<LocalVerdicts> verdicts;
  const auto judge = [&](const std::string& name) {
    report::LocalJudgement j;
    if (first && exec_key(g, name) >= *first) j.after_flip = first_text;
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
    if (it->first != name && !it->second.pass) {
      // Covered only by its (enclosing) module, which fails on another output: this output is not
      // judged on its own, so it is not blamed — the module's own failing output is.
      j.reason = "its module " + it->first + " fails on another output (" + it->second.reason +
                 "); this output is not checked on its own";
      return j;
    }
    j.available = true;
    j.pass = it->second.pass;
    j.reason =
        (it->first == enclosing ? "by its enclosing module " + enclosing + ": " : std::string()) + it->second.reason;
    return j;
  };
  // The local verdict decides, in both directions; where none is available the end-to-end verdict
  // stands (noted). Without a local judge only the outputs past the first flip are noted.
  const auto judged = [&](const std::string& name) {
    return opts.local_verdicts || (first && exec_key(g, name) >= *first);
  };
  for (report::TensorResult& t : rep.tensors)
    if (!is_train(t.name) && judged(t.name)) t.local = judge(t.name);  // the step's values: end to end
  for (report::SetResult& s : rep.sets)
    if (judged(s.name)) s.local = judge(s.name);
}

}  // namespace

namespace {

// Everything certify reads from the two files for one golden output the candidate holds. Reading
// (libhdf5, one thread at a time) and judging (metrics) are split so that the next output is read
// while this one is judged (certify's read-ahead).
struct Prepared {
  std::string name;
  std::string where;  // the candidate file and its own name for the tensor, for messages
  Tensor candidate;   // values (quantised codes dequantised)
  bool shape_ok = false;
  // value tensors
  Tensor exact;  // float64 as stored (every golden value tensor)
  GoldenTolerance::Figures official;
  DType official_grid = DType::kF32;
  // discrete outputs: the golden's choice, and (score-routed) the scores and margins behind it
  Tensor exact_ids, scores_exact, scores_official, margin;
  bool has_scores = false;
  std::int64_t n_items = 0;
};

// The decision an ids output belongs to, from the output table: an indexer's top-k or a gate's experts.
const char* discrete_kind(const std::string& name) {
  const std::optional<OutputRef> d = describe_output(name);
  return d && d->desc->decision == DecisionKind::kTopk ? "topk" : "experts";
}

// Fills `p` (its tensors' buffers reused) for the output `name`.
void prepare(const Golden& g, const MappedTensorSource& cand, const std::string& name,
             const std::map<std::string, GoldenTolerance>& train_tol, Prepared& p) {
  const GoldenEntry& ge = *g.find(golden_path(name));
  p.name = name;
  p.where = cand.source().path() + ": " + cand.source_name(name);
  std::int64_t golden_elements = 1;
  for (std::int64_t d : ge.shape) golden_elements *= d;
  candidate_values(cand, name, p.where, golden_elements, p.candidate);
  p.shape_ok = compatible_shape(p.candidate.shape(), ge.shape);
  p.has_scores = false;
  if (!p.shape_ok) return;
  if (ge.role == GoldenRole::kDiscrete) {
    const bool topk = std::string(discrete_kind(name)) == "topk";
    g.read_into("exact/" + name, p.exact_ids);
    // The scores the decision was made on (for the per-row near-tie tolerance).
    const std::string module = name.substr(0, name.rfind('/'));
    const std::string score_name = topk ? module + "/scores" : module + "/choice_scores";
    p.n_items = topk ? 0 : g.config().n_routed_experts;
    if (const GoldenEntry* se = g.find("exact/" + score_name); se != nullptr) {
      g.read_into("exact/" + score_name, p.scores_exact);
      g.read_into("official/" + score_name, p.scores_official);
      g.read_into("exact/" + module + "/margin", p.margin);
      for (const Tensor* t : {&p.scores_exact, &p.scores_official, &p.margin})
        if (t->dtype() != DType::kF64)
          throw InputError(g.path(), module + ": decision scores and margins must be float64 (goldens/README.md)");
      p.has_scores = true;
      p.n_items = se->shape.back();
      const std::int64_t rows = ge.shape.back() == 0 ? 0 : p.exact_ids.numel() / ge.shape.back();
      if (p.scores_exact.numel() != rows * p.n_items || p.scores_official.numel() != rows * p.n_items ||
          p.margin.numel() != rows * 4)
        throw InputError(g.path(), module + ": decision scores or margins do not match " + name + "'s " +
                                       std::to_string(rows) + " rows");
    } else if (topk) {
      throw InputError(g.path(), "golden has " + name + " but not " + score_name);
    }
    return;
  }
  if (is_train(name)) {
    // The training step's value: the official-style step's figures (train.tolerance), always stored.
    const GoldenTolerance& gt = train_tol.at(name);
    g.read_into(name, p.exact);
    if (p.exact.dtype() != DType::kF64) throw InputError(g.path(), name + ": train/ values must be float64");
    p.official = *gt.official;
    p.official_grid = gt.official_grid;
    return;
  }
  // The official reference's error against exact: stored in the manifest (goldens/README.md),
  // or computed from the official values for goldens written without those figures.
  const GoldenTolerance* gt = g.tolerance(name);
  const DType official_grid = gt != nullptr ? gt->official_grid : DType::kF32;
  g.read_into("exact/" + name, p.exact);
  if (p.exact.dtype() != DType::kF64) {
    const std::vector<double> v = g.values("exact", name);
    p.exact = Tensor::uninitialized(DType::kF64, ge.shape);
    std::copy(v.begin(), v.end(), p.exact.values<double>().begin());
  }
  if (gt != nullptr && gt->official) {
    p.official = *gt->official;
  } else {
    const compare::TensorMetrics off_m =
        compare::compute_metrics(g.values("official", name), official_grid, p.exact.values<double>(), {});
    p.official.error = compare::reference_error(off_m);
    p.official.exact_rms = off_m.ref_rms;
  }
  p.official_grid = official_grid;
}

std::string shape_differs(const Tensor& c, const GoldenEntry& ge) {
  return "shape " + shape_string(c.shape()) + " differs from the golden's " + shape_string(ge.shape);
}

report::SetResult judge_discrete(const Golden& g, const Prepared& p, const CertifyOptions& opts) {
  const GoldenEntry& ge = *g.find("exact/" + p.name);
  report::SetResult sr;
  sr.name = p.name;
  sr.kind = discrete_kind(p.name);
  const std::int64_t k = ge.shape.back();
  std::int64_t rows = 0;
  if (k != 0) {
    std::int64_t n = 1;
    for (auto d : ge.shape) n *= d;
    rows = n / k;
  }
  std::vector<std::int64_t> cid = as_ids(p.candidate, p.where);
  std::vector<std::int64_t> rid = as_ids(p.exact_ids, g.path() + ": exact/" + p.name);
  if (sr.kind == "topk") {
    // The lists hold KV positions: compressed entry e is at offset + e, the offset being the
    // prefill's length (prefill) or the window size (decode) — spec 02 §2.7, official
    // `topk_idxs`. Compare entry numbers; a position below the offset is no entry at all.
    const std::string step = p.name.substr(0, p.name.find('/'));
    std::int64_t offset = g.config().window_size;
    for (const StepPlan& sp : g.steps())
      if (sp.name == step && sp.start_pos == 0) offset = sp.length;
    for (auto* ids : {&cid, &rid})
      for (std::int64_t& x : *ids) x = x < 0 ? -1 : (x < offset ? p.n_items : x - offset);
  }
  std::vector<double> tau(static_cast<std::size_t>(rows), 0.0);
  if (p.has_scores) {
    const std::span<const double> scores = p.scores_exact.values<double>();
    const std::vector<double> err = row_errors(scores, p.scores_official.values<double>(), p.n_items);
    const std::span<const double> margin = p.margin.values<double>();
    for (std::int64_t r = 0; r < rows; ++r) {
      const double kth = margin[static_cast<std::size_t>(r) * 4];
      tau[static_cast<std::size_t>(r)] = compare::tie_tolerance(
          err[static_cast<std::size_t>(r)], std::isfinite(kth) ? kth : 0.0, DType::kF32, opts.tolerance);
    }
    sr.comparison = compare::compare_sets_dense(cid, rid, rows, k, p.n_items, scores, tau);
  } else {
    // Hash-routed experts: chosen by the token id, no scores — the sets must be identical.
    sr.comparison = compare::compare_sets(
        cid, rid, rows, k, p.n_items, [](std::int64_t, std::int64_t) { return std::optional<double>(); }, tau);
  }
  return sr;
}

report::TensorResult judge_value(const Prepared& p, const CertifyOptions& opts) {
  report::TensorResult tr;
  tr.name = p.name;
  tr.shape = p.candidate.shape();
  switch (p.candidate.dtype()) {
    case DType::kF64:
    case DType::kF32:
    case DType::kBF16:
    case DType::kF16:
      break;
    default:
      tr.verdict = failed("dtype " + std::string(dtype_name(p.candidate.dtype())) +
                          " cannot be compared as values (expected float64, float32, bf16 or float16)");
      return tr;
  }
  compare::MetricOptions mo;
  mo.ulp_dtype = opts.candidate_format ? *opts.candidate_format : certify_ulp_dtype(p.candidate, p.official_grid);
  mo.rel_floor = compare::rel_floor_for(p.official.exact_rms, *mo.ulp_dtype);
  tr.metrics = compare::compute_metrics(p.candidate, p.exact.values<double>(), mo);
  tr.official = p.official.error;
  tr.verdict = compare::judge_tensor(tr.metrics, tr.official, opts.tolerance);
  return tr;
}

// A float candidate tensor widened to double; nullopt for another dtype (judge_value fails it).
std::optional<std::vector<double>> widened(const Tensor& t) {
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  switch (t.dtype()) {
    case DType::kF64:
      std::copy(t.values<double>().begin(), t.values<double>().end(), v.begin());
      return v;
    case DType::kF32:
      std::copy(t.values<float>().begin(), t.values<float>().end(), v.begin());
      return v;
    case DType::kBF16:
    case DType::kF16: {
      const auto bits = t.values<std::uint16_t>();
      for (std::size_t i = 0; i < v.size(); ++i)
        v[i] = t.dtype() == DType::kBF16 ? bf16_to_float(bits[i]) : fp16_to_float(bits[i]);
      return v;
    }
    default:
      return std::nullopt;
  }
}

// The teacher-forced optimizer (spec 06 §6.17; goldens/README.md §Certifying a training engine).
// Every optimizer state and updated parameter the candidate holds is judged against the optimizer
// step recomputed from the candidate's OWN gradient (train/grad/<name>), the golden's pre-step
// parameter θ₀ and the zero state of step 1 — ref/train optimizer_step, the one function the
// golden's step calls — by the tolerance model with the yardstick of the optimizer's own
// arithmetic: that recomputation with its states and parameter stored fp32 (the official-style
// step's storage) against it in double. The gradient itself is judged end to end against the
// golden (its own TensorResult). So a gradient element within its yardstick of 0 whose sign flips
// (AdamW's first step: η·sign(g)) is judged by its gradient, not as a 2η error of the update, and
// v = (1 − β2)·g² by the candidate's g; a wrong optimizer still fails here, blamed on it. The
// verdict is each value's LocalJudgement; without the candidate's gradient (or with one that is
// not finite), and for a router bias (its update follows the routing's loads, no gradient), the
// end-to-end verdict against the golden's step stands, marked (e2e) with the reason.
void judge_optimizer(const Golden& g, const MappedTensorSource& cand, const CertifyOptions& opts,
                     report::CertifyReport& rep) {
  std::map<std::string, std::vector<std::size_t>> by_param;  // parameter → its optimizer values in rep.tensors
  for (std::size_t i = 0; i < rep.tensors.size(); ++i) {
    const std::optional<TrainDatasetDesc> d = describe_train_dataset(rep.tensors[i].name);
    if (d && !d->official &&
        (d->kind == TrainDataset::kAdamWM || d->kind == TrainDataset::kAdamWV ||
         d->kind == TrainDataset::kMuonMomentum || d->kind == TrainDataset::kUpdated))
      by_param[d->name].push_back(i);
  }
  if (by_param.empty()) return;
  std::optional<TrainStepOptions> step_opt;
  std::optional<ParameterMap> theta0;
  const auto pre_step = [&]() -> const ParameterMap& {
    if (!theta0) {
      step_opt = train_step_options(g);
      if (const std::optional<std::string> why = train_golden_refusal(g.config(), 1, 3))
        throw InputError(g.path(), "the training step's pre-step parameters cannot be made: " + *why);
      ModelWeights w;
      if (opts.golden_weights) {
        w = opts.golden_weights();
      } else if (const std::optional<std::uint64_t> seed = g.weights_seed()) {
        w = make_weights(g.config(), WeightsSpec{seed, ""});
      } else {
        throw InputError("--weights",
                         "required: the golden " + g.path() +
                             " was made from checkpoint weights; its training step's pre-step parameters (the "
                             "teacher-forced optimizer's θ₀) are model_parameters of them");
      }
      theta0 = model_parameters(g.config(), w);
    }
    return *theta0;
  };
  const auto unavailable = [&](const std::vector<std::size_t>& idx, const std::string& why) {
    for (const std::size_t i : idx) {
      report::LocalJudgement j;
      j.reason = why;
      rep.tensors[i].local = j;
    }
  };
  Tensor grad;
  for (const auto& [name, idx] : by_param) {
    const OptimizerKind kind = optimizer_for(name).kind;
    if (kind == OptimizerKind::kNone) {
      unavailable(idx, "the router bias update follows the step's routing loads, not a gradient");
      continue;
    }
    const std::string gpath = train_dataset_path(TrainDataset::kGrad, name);
    if (!cand.contains(gpath)) {
      unavailable(idx, "the candidate holds no " + gpath +
                           ", so its optimizer cannot be recomputed from its own gradient; judged against the golden's "
                           "step (a gradient element near 0 whose sign differs moves AdamW's first step by 2·lr)");
      continue;
    }
    const GoldenEntry& ge = *g.find(gpath);
    std::int64_t numel = 1;
    for (const std::int64_t d : ge.shape) numel *= d;
    const std::string where = cand.source().path() + ": " + cand.source_name(gpath);
    candidate_values(cand, gpath, where, numel, grad);
    if (!compatible_shape(grad.shape(), ge.shape))
      throw InputError(where, shape_differs(grad, ge) + " (canonical name " + gpath + ")");
    const std::optional<std::vector<double>> gv = widened(grad);
    if (!gv || !std::all_of(gv->begin(), gv->end(), [](double x) { return std::isfinite(x); })) {
      unavailable(idx, "the candidate's " + gpath + " is not finite float values (judged there)");
      continue;
    }
    const ParameterMap& params = pre_step();
    const auto w0 = params.find(name);
    if (w0 == params.end() || w0->second.size() != numel)
      throw InputError(g.path(), "the pre-step parameter " + name + " of the golden's weights has " +
                                     (w0 == params.end() ? std::string("no values")
                                                         : std::to_string(w0->second.size()) + " values") +
                                     ", its gradient " + gpath + " " + std::to_string(numel));
    Mat gm(w0->second.rows(), w0->second.cols());
    std::copy(gv->begin(), gv->end(), gm.data());
    const OptimizerStep ex = optimizer_step(g.config(), name, kind, w0->second, gm, *step_opt, false);
    const OptimizerStep off = stored_fp32(ex);  // optimizer_step(…, official = true), bit for bit
    for (const std::size_t i : idx) {
      report::TensorResult& t = rep.tensors[i];
      const TrainDataset vk = describe_train_dataset(t.name)->kind;
      const auto pick = [&](const OptimizerStep& s) -> const Mat* {
        switch (vk) {
          case TrainDataset::kAdamWM:
            return s.adamw ? &s.adamw->m : nullptr;
          case TrainDataset::kAdamWV:
            return s.adamw ? &s.adamw->v : nullptr;
          case TrainDataset::kMuonMomentum:
            return s.muon ? &s.muon->momentum : nullptr;
          default:
            return &s.updated;
        }
      };
      const Mat *e = pick(ex), *o = pick(off);
      if (e == nullptr || o == nullptr)  // (the golden's verify: a state of the parameter's own optimizer)
        throw InputError(g.path(),
                         t.name + " is not a state of " + name + "'s optimizer (" + optimizer_kind_name(kind) + ")");
      Prepared p;
      p.name = t.name;
      p.where = cand.source().path() + ": " + cand.source_name(t.name);
      candidate_values(cand, t.name, p.where, numel, p.candidate);
      p.exact = Tensor::uninitialized(DType::kF64, p.candidate.shape());
      if (p.candidate.numel() != numel)
        throw InputError(
            p.where, "has " + std::to_string(p.candidate.numel()) + " values, " + gpath + " " + std::to_string(numel));
      std::copy(e->data(), e->data() + numel, p.exact.values<double>().begin());
      const std::span<const double> es(e->data(), static_cast<std::size_t>(numel));
      const compare::TensorMetrics om = compare::compute_metrics(
          std::span<const double>(o->data(), static_cast<std::size_t>(numel)), DType::kF32, es, {});
      p.official.error = compare::reference_error(om);
      p.official.exact_rms = om.ref_rms;
      p.official_grid = DType::kF32;
      const report::TensorResult tf = judge_value(p, opts);
      report::LocalJudgement j;
      j.available = true;
      j.pass = tf.verdict.verdict == compare::Verdict::kPass;
      j.reason = "recomputed from the candidate's gradients (" + gpath + ", the golden's pre-step " + name +
                 ", step 1): " + tf.verdict.reason;
      t.local = j;
    }
  }
}

// Unmatched names get a "did you mean" for at most this many (each costs a scan of the golden's names).
constexpr std::size_t kMaxHints = 50;

// Levenshtein distance, or limit + 1 when it exceeds limit.
std::size_t edit_distance(std::string_view a, std::string_view b, std::size_t limit) {
  if ((a.size() > b.size() ? a.size() - b.size() : b.size() - a.size()) > limit) return limit + 1;
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0], best = ++row[0];
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
      best = std::min(best, row[j]);
    }
    if (best > limit) return limit + 1;
  }
  return row[b.size()];
}

// The golden name closest to a candidate's unmatched name: edit distance at most a fifth of its
// length (at least 2); "" when none is that close.
std::string closest_name(const std::string& name, const std::vector<std::string>& golden) {
  const std::size_t limit = std::max<std::size_t>(2, name.size() / 5);
  std::size_t best = limit + 1;
  std::string found;
  for (const std::string& g : golden) {
    const std::size_t d = edit_distance(name, g, std::min(limit, best));
    if (d < best) {
      best = d;
      found = g;
    }
  }
  return found;
}

// The first output in execution order whose verdict is FAIL (tensors and sets are each in that
// order); the training step's values come after the forward's, in the order of the step's backward.
std::string first_failure(const report::CertifyReport& rep) {
  std::vector<std::string> failing, train;
  for (const auto& t : rep.tensors)
    if (!t.passes()) (is_train(t.name) ? train : failing).push_back(t.name);
  for (const auto& s : rep.sets)
    if (!s.passes()) failing.push_back(s.name);
  sort_in_execution_order(failing);
  sort_in_backward_order(train);
  if (!failing.empty()) return failing.front();
  return train.empty() ? std::string() : train.front();
}

}  // namespace

report::CertifyReport certify(const Golden& g, const MappedTensorSource& cand, const CertifyOptions& opts) {
  report::CertifyReport rep;
  rep.golden = g.path();
  rep.candidate = cand.source().path();
  rep.tolerance = opts.tolerance;

  rep.golden_sha256 = sha256_hex(g.manifest_text());
  rep.dsv4_version = kDsv4Version;
  rep.requirement = opts.require.text;
  rep.map_unused = cand.mapping().unused;
  rep.exact_coverage = g.exact_coverage().text();

  std::vector<std::string> names = g.canonical_names();
  sort_in_execution_order(names);
  // The training step (goldens/README.md §Certifying a training engine): every value with its
  // official-style figures, judged by the same tolerance model, after the forward's outputs.
  const std::map<std::string, GoldenTolerance> train_tol = train_tolerances(g);
  std::vector<std::string> train_names;
  for (const auto& [path, t] : train_tol)
    if (g.find(path) != nullptr && t.official) train_names.push_back(path);
  sort_in_backward_order(train_names);
  std::set<std::string> golden_names(names.begin(), names.end());
  for (const GoldenEntry& e : g.entries()) {
    const std::optional<TrainDatasetDesc> d = describe_train_dataset(e.path);
    if (d && !d->official) golden_names.insert(e.path);  // a candidate's decisions and offsets: known names
  }
  std::vector<std::string> all_names = names;
  all_names.insert(all_names.end(), train_names.begin(), train_names.end());
  // A dump of the forward, of the step, or of both: the other group's outputs are not missing.
  bool holds_forward = false, holds_train = false;
  for (const std::string& c : cand.names()) {
    const bool scale_of_output =
        c.ends_with(kScaleSuffix) && golden_names.count(c.substr(0, c.size() - kScaleSuffix.size())) != 0;
    if (golden_names.count(c) == 0 && !scale_of_output)
      rep.unmatched.push_back({c, rep.unmatched.size() < kMaxHints ? closest_name(c, all_names) : std::string()});
    else if (is_train(c))
      holds_train = true;
    else
      holds_forward = true;
  }
  // A golden with no exact values (generate --exact-layers none) and no training step judges nothing.
  if (g.exact_coverage().none() && train_names.empty())
    throw InputError(g.path(),
                     "holds official values and decisions only (exact_values.selection none): certify "
                     "judges against exact values and has none; prove the golden with dsv4 golden verify "
                     "--recompute-only, certify with a golden made with --exact-layers");
  std::vector<std::string> held;
  for (const std::string& name : names) {
    if (!g.has_exact(name)) {  // official values only: not judged (never counted as passed), never missing
      if (cand.contains(name)) rep.unjudged.push_back(name);
      continue;
    }
    if (cand.contains(name)) {
      held.push_back(name);
    } else if (g.find("exact/" + name)->role != GoldenRole::kDecision && (holds_forward || !holds_train)) {
      rep.missing.push_back(name);
      if (is_required(opts.require, name)) rep.required_missing.push_back(name);
    }
  }
  for (const std::string& name : train_names) {
    if (cand.contains(name)) {
      held.push_back(name);
    } else if (holds_train) {
      rep.missing.push_back(name);
      if (train_required(opts.require, name)) rep.required_missing.push_back(name);
    }
  }

  if (held.empty() && !rep.unjudged.empty())
    throw InputError(cand.source().path(),
                     "none of its outputs can be judged: the golden holds exact values only for --exact-layers '" +
                         rep.exact_coverage + "', the candidate's " + std::to_string(rep.unjudged.size()) +
                         " golden outputs (first: " + rep.unjudged.front() + ") lie outside it");
  // Read-ahead: output i + 1 is read on a second thread while output i is judged here. Only that
  // thread touches the files (libhdf5 is not thread-safe) until the loop ends. The judging order,
  // and so the report, is the golden's order; a read's InputError is rethrown in that order.
  // Each buffer is made as large as the largest golden dataset at once: reused from then on, it is
  // allocated (and its pages faulted in) once.
  // (A hint only, from the manifest's shapes: at most 64 MiB.)
  constexpr std::size_t kMaxReserve = std::size_t{64} << 20;
  std::size_t largest = 0;
  for (const GoldenEntry& e : g.entries()) {
    std::size_t n = 8;  // float64 / int64
    for (const std::int64_t d : e.shape)
      n = std::min(kMaxReserve, n * static_cast<std::size_t>(std::clamp<std::int64_t>(d, 0, 1 << 30)));
    largest = std::max(largest, n);
  }
  ReadAhead<Prepared> reader(held.size(), [&](std::size_t i, Prepared& p) {
    if (p.name.empty()) {
      p.candidate.reserve(largest);
      p.exact.reserve(largest);
    }
    prepare(g, cand, held[i], train_tol, p);
  });
  for (std::size_t i = 0; i < held.size(); ++i) {
    Prepared p = reader.take(i);
    const GoldenEntry& ge = *g.find(golden_path(p.name));
    if (!p.shape_ok) {
      // Not a failed check but a candidate that does not fit the golden (exit 2 as in `dsv4 diff`).
      throw InputError(p.where, shape_differs(p.candidate, ge) + " (canonical name " + p.name + ")");
    } else if (ge.role == GoldenRole::kDiscrete) {
      rep.sets.push_back(judge_discrete(g, p, opts));
    } else {
      rep.tensors.push_back(judge_value(p, opts));
    }
    reader.recycle(std::move(p));
  }
  judge_locally(g, opts, rep);
  judge_optimizer(g, cand, opts, rep);
  rep.first_failure = first_failure(rep);
  if (is_train(rep.first_failure)) rep.first_failure_blame = train_blame(rep.first_failure);
  return rep;
}

}  // namespace dsv4
