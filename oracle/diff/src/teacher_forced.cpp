// Teacher- and decision-forced localisation; see teacher_forced.hpp.
#include "dsv4/diff/teacher_forced.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <utility>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/compare/number_text.hpp"
#include "dsv4/compare/quant_flips.hpp"
#include "dsv4/compare/set_compare.hpp"
#include "dsv4/compare/structure.hpp"
#include "dsv4/compare/ulp.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/model/attention.hpp"
#include "dsv4/model/head.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/model/moe.hpp"
#include "dsv4/model/mtp.hpp"
#include "dsv4/model/output_table.hpp"
#include "dsv4/model/rmsnorm.hpp"

namespace dsv4::diff {

std::vector<std::string> RunSchedule::step_names() const {
  std::vector<std::string> s{"prefill"};
  for (std::int64_t i = 0; i < decode_steps; ++i) s.push_back("decode" + std::to_string(i));
  return s;
}

namespace {

using Batch = std::vector<Mat>;  // one matrix per sequence
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- dumped tensors ↔ per-sequence matrices ----

Batch split(const RecordedTensor& t, const std::string& name) {
  if (t.shape.size() != 3) throw std::runtime_error(name + ": expected a [batch, rows, cols] tensor");
  Batch b;
  const std::int64_t rows = t.shape[1], cols = t.shape[2];
  for (std::int64_t i = 0; i < t.shape[0]; ++i)
    b.push_back(Eigen::Map<const Mat>(t.values.data() + i * rows * cols, rows, cols));
  return b;
}

std::vector<double> flatten(const Batch& b) {
  std::vector<double> v;
  for (const Mat& m : b) v.insert(v.end(), m.data(), m.data() + m.size());
  return v;
}

// max |a − b| over the elements finite in both (masked scores are −inf in both).
double score_error(const std::vector<double>& a, const std::vector<double>& b) {
  double err = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::isfinite(a[i]) && std::isfinite(b[i])) err = std::max(err, std::abs(a[i] - b[i]));
  return err;
}

// One precision's reference modules and the attention states fed by the candidate's inputs.
struct Reference {
  Precision prec;
  std::vector<Attention> attn;
  std::vector<Moe> moe;                             // [layer]: the main layers, then the MTP blocks
  std::vector<MtpBlock> mtp;                        // its input state (spec 05 §5.5 steps 1–3)
  std::vector<std::vector<AttentionState>> states;  // [sequence][layer]
};

// The weights of block l: a main layer, or (l ≥ n_layers) the block of MTP module l − n_layers.
const BlockWeights& block_weights(const ModelConfig& c, const ModelWeights& w, std::int64_t l) {
  return l < c.n_layers ? w.layers[static_cast<std::size_t>(l)] : w.mtp[static_cast<std::size_t>(l - c.n_layers)].block;
}

std::int64_t all_blocks(const ModelConfig& c) { return c.n_layers + std::max<std::int64_t>(c.n_mtp_layers, 0); }

// The judgement of one float output's values (Differ::check's judge) with what its result reports
// beyond the verdict: the metrics judged (the candidate's values, its accepted rounding flips set to
// the exact's), the flips accepted, and whether an FP8 value off the e4m3 × 2^k grid failed it.
struct ValuesJudgement {
  OutputJudgement judgement;
  compare::TensorMetrics metrics;
  compare::QuantFlips flips;
  bool off_grid = false;
};

// The recomputations every module is judged with (oracle/README.md §diff, "The yardstick"):
// exact, official, and the official arithmetic with its C1 sums accumulated sequentially in fp32 —
// the plainest legitimate order (spec 01 C1), whose error against exact the yardstick includes.
constexpr std::size_t kExact = 0, kOfficial = 1, kFp32Order = 2, kRefs = 3;
using Recomputed = std::array<Batch, kRefs>;  // [reference][sequence]

// A simulated-quantised output: where it is quantised (the row length is the dump's last
// dimension) and every reference's values before the quantisation point.
struct Quantised {
  std::int64_t quantised_cols = 0;
  int block = 0;
  BlockQuant kind = BlockQuant::kFp8Ue8m0;
  Recomputed pre;
};

Reference make_reference(const Precision& prec, const ModelConfig& c, const ModelWeights& w, std::size_t batch) {
  Reference r{prec, {}, {}, {}, {}};
  for (std::int64_t l = 0; l < all_blocks(c); ++l) {
    const BlockWeights& bw = block_weights(c, w, l);
    r.attn.emplace_back(r.prec, c, l, bw.attn);
    r.moe.emplace_back(r.prec, c, l, bw.ffn);
  }
  for (std::int64_t i = 0; i < c.n_mtp_layers; ++i)
    r.mtp.emplace_back(r.prec, c, i, w.mtp[static_cast<std::size_t>(i)]);
  r.states.resize(batch);
  for (auto& s : r.states)
    for (std::int64_t l = 0; l < all_blocks(c); ++l) s.push_back(Attention::allocate_state(c, l));
  return r;
}

class Differ {
 public:
  Differ(const ModelConfig& c, const ModelWeights& w, const RunSchedule& s, const TensorGetter& cand,
         const TensorGetter& golden, const compare::ToleranceParams& tol, std::optional<DType> format,
         const FieldObserver& observer)
      : observer_(observer),
        c_(c),
        w_(w),
        sched_(s),
        cand_(cand),
        golden_(golden),
        tol_(tol),
        format_(format),
        ref_{make_reference(Precision(Mode::kExact), c, w, s.tokens.size()),
             make_reference(Precision(Mode::kOfficial), c, w, s.tokens.size()),
             make_reference(Precision(Mode::kOfficial, Deviation::kSumSequential), c, w, s.tokens.size())} {}

  DiffReport run() {
    const auto steps = sched_.step_names();
    broken_.assign(static_cast<std::size_t>(all_blocks(c_)), false);
    for (std::size_t i = 0; i < steps.size(); ++i) {
      step_ = steps[i];
      start_pos_ = i == 0 ? 0 : sched_.prompt_len + static_cast<std::int64_t>(i) - 1;
      ids_.clear();
      for (const auto& t : sched_.tokens) {
        if (i == 0) {
          ids_.emplace_back(t.begin(), t.begin() + sched_.prompt_len);
        } else {
          ids_.push_back({t[static_cast<std::size_t>(start_pos_)]});
        }
      }
      try {
        for (std::int64_t l = 0; l < c_.n_layers; ++l) block(l);
        head("", w_.hc_head, w_.norm);
        for (std::int64_t m = 0; m < c_.n_mtp_layers; ++m) mtp(m);
      } catch (const std::domain_error& e) {  // an exact sum refused a non-finite term: an overflow
        throw unusable(e.what(), true);
      } catch (const std::invalid_argument& e) {  // a module refused an input or an intermediate
        throw unusable(e.what(), false);
      }
    }
    judge_structure();
    for (const ModuleResult& m : report_.modules) {
      if (!m.checked) continue;
      ++report_.checked_modules;
      if (!m.pass) {
        ++report_.failed_modules;
        if (!report_.first_divergent_module) {
          report_.first_divergent_module = m.module;
          report_.first_divergent_step = m.step;
        }
      }
    }
    return std::move(report_);
  }

 private:
  std::string name(const std::string& module, const std::string& output) const {
    return step_ + "/" + module + "/" + output;
  }

  // The structure tests of every output, one family (Holm at structure.alpha): a rejected test
  // fails its output (when nothing else did); the modules' verdicts are then re-derived from their
  // outputs in order.
  void judge_structure() {
    std::vector<double> p;
    std::vector<std::pair<std::size_t, std::size_t>> where;  // (output position, stat index)
    for (std::size_t k = 0; k < structured_.size(); ++k) {
      const OutputResult& o = output_at(structured_[k]);
      for (std::size_t i = 0; i < o.structure.size(); ++i) {
        if (!o.structure[i].ran) continue;
        p.push_back(o.structure[i].p);
        where.emplace_back(k, i);
      }
    }
    const std::vector<bool> reject = compare::holm_reject(p, tol_.structure.alpha);
    for (std::size_t j = 0; j < where.size(); ++j) {
      OutputResult& o = output_at(structured_[where[j].first]);
      o.structure_reject[where[j].second] = reject[j];
      if (!reject[j] || !o.pass) continue;
      o.pass = false;
      o.reason = "FAIL " + compare::describe(o.structure[where[j].second]) + " [Holm over " + std::to_string(p.size()) +
                 " structure tests at alpha " + compare::num(tol_.structure.alpha) + "]";
    }
    for (ModuleResult& m : report_.modules) {
      m.pass = true;
      m.reason.clear();
      for (const OutputResult& o : m.outputs) {
        if (o.pass || !m.pass) continue;
        m.pass = false;
        m.reason = o.name + ": " + o.reason;
      }
    }
  }

  OutputResult& output_at(std::pair<std::size_t, std::size_t> at) {
    return report_.modules[at.first].outputs[at.second];
  }

  // The candidate's tensor `full` as input of the module being recomputed (begin_site): absent, it
  // is recorded missing (unless `missing` is kIgnore: reported by an earlier site already); holding
  // NaN or Inf, it is bad input naming it — the reference's exact sums refuse non-finite terms
  // (std::domain_error) and its modules check their inputs (std::invalid_argument), which would be
  // an internal error, or a refusal naming no tensor (fuzz_certify).
  enum class Missing { kRecord, kIgnore };
  std::optional<Batch> input(const std::string& full, Missing missing = Missing::kRecord) {
    const std::optional<RecordedTensor> t = cand_(full);
    if (!t) {
      if (missing == Missing::kRecord) report_.missing.push_back(full);
      return std::nullopt;
    }
    for (std::size_t i = 0; i < t->values.size(); ++i)
      if (!std::isfinite(t->values[i]))
        throw InputError(full, "element " + std::to_string(i) + " is " + compare::num(t->values[i]) +
                                   ": a module cannot be recomputed from the candidate's values when they are not "
                                   "finite");
    site_inputs_.push_back(full);
    return candidate_batch(*t, full);
  }

  // The module about to be recomputed (`site`, a module path in this step): what a failure of the
  // recomputation is blamed on, with the candidate tensors it was recomputed from (input() adds
  // them; `block_input`: the block's input, when the site reads it and it is the candidate's).
  void begin_site(const std::string& site, const std::string& block_input = "") {
    site_ = step_ + "/" + site;
    site_inputs_.clear();
    if (!block_input.empty()) site_inputs_.push_back(block_input);
  }

  // The reference refused to recompute the current module from the candidate's values, all finite
  // (input() refuses others): a term or result `overflow`ed (std::domain_error from an exact sum),
  // or a module refused an input or an intermediate (std::invalid_argument: an expert id or index
  // out of range, a non-finite intermediate). Bad input naming that module and the candidate
  // tensors it was recomputed from — which of them caused it is not known.
  InputError unusable(const std::string& why, bool overflow) const {
    std::string inputs;
    for (const std::string& n : site_inputs_) inputs += (inputs.empty() ? "" : ", ") + n;
    if (inputs.empty()) inputs = "the token embeddings";
    return InputError(
        site_, std::string("a module cannot be recomputed from the candidate's values: ") +
                   (overflow ? "its inputs (" + inputs + ") are finite, but the recomputation overflows: "
                             : "the reference refuses its inputs (" + inputs + ") or a value computed from them: ") +
                   why);
  }

  // Element i of the candidate's index tensor `tensor` (indexer lists, expert ids) as an index: an
  // integer within int32 (a cast of 7e16 or NaN is undefined behaviour; fuzz_certify). The modules
  // check its range.
  static std::int32_t index_value(double v, const std::string& tensor, std::int64_t i) {
    if (!(v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max()) ||
        v != std::floor(v))
      throw InputError(tensor, "element " + std::to_string(i) + " is " + compare::num(v) + ", not an index");
    return static_cast<std::int32_t>(v);
  }

  // A dumped tensor as per-sequence matrices; its shape must be the golden's (when the golden has
  // the tensor) and its batch the tokens'.
  Batch candidate_batch(const RecordedTensor& t, const std::string& full) const {
    if (const std::optional<RecordedTensor> g = golden_(full); g && g->shape != t.shape)
      throw std::runtime_error(full + ": shape " + shape_string(t.shape) + ", the golden's is " +
                               shape_string(g->shape));
    Batch b = split(t, full);
    if (b.size() != sched_.tokens.size()) throw std::runtime_error(full + ": batch size differs from the tokens'");
    return b;
  }

  ModuleResult& begin(const std::string& module, std::int64_t layer) {
    report_.modules.push_back(ModuleResult{step_, module, layer, false, true, "", {}, 0.0, -1.0});
    return report_.modules.back();
  }

  // The candidate's dump of output o.name; when it has none, o is recorded as not present.
  std::optional<RecordedTensor> fetch(ModuleResult& m, OutputResult& o) const {
    std::optional<RecordedTensor> cand = cand_(o.name);
    o.present = cand.has_value();
    if (!cand) m.outputs.push_back(o);
    return cand;
  }

  // The official dtype of an output, from the output table (dsv4/model/output_table.hpp).
  static DType official_dtype(const std::string& full) {
    const std::optional<OutputRef> d = describe_output(full);
    if (!d) throw std::logic_error("diff: " + full + " is not in the output table");
    return d->desc->official;
  }

  // A float output: candidate vs the exact recomputation, judged against the yardstick in the
  // output's official dtype: the larger error against exact of the official recomputation and of
  // the fp32-order one, statistic by statistic.
  // A quantised output (`quant`) is judged with its near-tie rounding flips accepted
  // (compare::accept_quant_flips; the structure tests keep the candidate's values), and the
  // direction of its decisions against the official's joins the structure tests
  // (compare::quant_direction_test).
  void check(ModuleResult& m, const std::string& output, const Recomputed& r, const Quantised* quant = nullptr) {
    OutputResult o;
    o.name = name(m.module, output);
    const DType official_ulp = official_dtype(o.name);
    DType ulp = official_ulp;
    const std::optional<RecordedTensor> cand = fetch(m, o);
    if (!cand) return;
    // Undeclared: certify's rule (the official format when every value lies on its grid).
    ulp = format_ ? *format_ : compare::widened_dump_dtype(cand->values, official_ulp);
    const std::vector<double> e = flatten(r[kExact]), off = flatten(r[kOfficial]);
    if (cand->values.size() != e.size()) {
      o.pass = false;
      o.reason =
          "shape mismatch: " + std::to_string(cand->values.size()) + " values, expected " + std::to_string(e.size());
    } else {
      compare::MetricOptions mo;
      mo.ulp_dtype = ulp;
      compare::MetricOptions moo;
      moo.ulp_dtype = official_ulp;
      const compare::TensorMetrics om = compare::compute_metrics(off, official_ulp, e, moo);
      const std::vector<double> fp32_order = flatten(r[kFp32Order]);
      const compare::TensorMetrics sm = compare::compute_metrics(fp32_order, official_ulp, e, moo);
      // A short output (fewer than tol_.short_elements values: a decode step's gate weights, hc
      // post and comb) is judged with its family's error scale too: the same output of every block
      // in every step judged so far, this one included (compare::pooled_yardstick).
      compare::UlpScale& family = family_scale_[describe_output(o.name)->desc];
      family =
          compare::larger_scale(family, compare::larger_scale(compare::error_in_ulps(off, e, official_ulp),
                                                              compare::error_in_ulps(fp32_order, e, official_ulp)));
      const compare::ReferenceError own_yardstick =
          compare::larger_error(compare::reference_error(om), compare::reference_error(sm));
      const compare::ReferenceError yardstick = compare::pooled_yardstick(own_yardstick, family, e, official_ulp, tol_);
      const bool pooled = yardstick.max_abs > own_yardstick.max_abs || yardstick.rms > own_yardstick.rms;
      std::vector<double> pe, po;
      double pre_err = 0.0;
      std::optional<compare::QuantisedLayout> ql;
      if (quant) {
        ql = compare::QuantisedLayout{cand->shape.back(), quant->quantised_cols, quant->block, quant->kind};
        pe = flatten(quant->pre[kExact]);
        po = flatten(quant->pre[kOfficial]);
        pre_err = std::max(compare::quantised_max_abs_error(po, pe, *ql),
                           compare::quantised_max_abs_error(flatten(quant->pre[kFp32Order]), pe, *ql));
      }
      const compare::FieldLayout layout = compare::layout_of(cand->shape);
      // The judgement of one output's values (its own, or others of the same shape for the
      // observer): every rule below, nothing else; it writes nothing outside its result.
      const auto judge = [&](std::span<const double> values) {
        ValuesJudgement out;
        std::span<const double> judged = values;
        if (ql) {
          out.flips = compare::accept_quant_flips(values, e, pe, pre_err, official_ulp, *ql, tol_);
          judged = out.flips.judged;
        }
        out.metrics = compare::compute_metrics(judged, ulp, e, mo);
        out.judgement = {compare::judge_tensor(out.metrics, yardstick, tol_),
                         compare::error_structure(values, off, e, layout, ulp, tol_.k, tol_.structure).stats};
        OutputJudgement& j = out.judgement;
        if (ql)  // the direction of its decisions (compare/quant_flips.hpp), in the same family
          j.structure.push_back(compare::quant_direction_test(values, off, e, *ql, tol_.k, tol_.structure));
        if (j.verdict.verdict == compare::Verdict::kPass && quant && quant->kind == BlockQuant::kFp8Ue8m0) {
          const std::int64_t cols = cand->shape.back();
          for (std::size_t i = 0; i < values.size(); ++i) {
            if (static_cast<std::int64_t>(i) % cols < quant->quantised_cols && !fp8_pow2_value(values[i])) {
              j.verdict.verdict = compare::Verdict::kFail;
              out.off_grid = true;
              j.verdict.reason =
                  "element " + std::to_string(i) + " = " + std::to_string(values[i]) +
                  " is not an e4m3 value times a power of two (more than 4 significant bits): the FP8 simulation's "
                  "scale is not a power of two";
              break;
            }
          }
        }
        return out;
      };
      const ValuesJudgement own = judge(cand->values);
      const OutputJudgement& j = own.judgement;
      const compare::QuantFlips& flips = own.flips;
      o.pass = j.verdict.verdict == compare::Verdict::kPass;
      o.reason = j.verdict.reason;
      if (pooled)  // the "official" figures of the reason are then the family's (pooled_yardstick)
        o.reason += "; short output (" + std::to_string(e.size()) + " values): official error = its family's, " +
                    compare::num(family.max_ulps) + " ulp max, " + compare::num(family.rms_ulps) + " ulp rms";
      o.local_max_abs = own.metrics.max_abs;
      if (flips.accepted() > 0) {
        if (!own.off_grid) o.reason += "; " + flips.summary(quant->kind);
        o.quant_element_flips = flips.element_flips;
        o.quant_scale_flips = flips.scale_flips;
        o.quant_scale_flip_elements = flips.scale_flip_elements;
        o.local_max_abs = std::max(o.local_max_abs, flips.largest_accepted);  // the candidate's own error
        report_.quant_flips_accepted += flips.accepted();
        ++report_.quant_flip_outputs;
      }
      o.local_official_max_abs = std::max(om.max_abs, sm.max_abs);
      o.structure = j.structure;
      o.structure_reject.assign(o.structure.size(), false);
      if (observer_)
        observer_(ObservedField{o.name, cand->shape, cand->values, e, off, ulp, official_ulp,
                                [&](std::span<const double> values) { return judge(values).judgement; },
                                ql ? &*ql : nullptr, po, pe, pre_err});
      structured_.emplace_back(static_cast<std::size_t>(&m - report_.modules.data()), m.outputs.size());
      if (const std::optional<RecordedTensor> g = golden_(o.name); g && g->values.size() == e.size()) {
        o.accumulated_max_abs = compare::compute_metrics(cand->values, ulp, g->values, mo).max_abs;
      }
    }
    finish_output(m, o);
  }

  // A discrete output (rows × k item ids, −1 empty), compared as sets against the exact
  // recomputation; swaps pass only at a near-tie of the exact scores.
  void check_sets(ModuleResult& m, const std::string& output, const std::vector<std::int64_t>& ref_ids,
                  std::int64_t rows, std::int64_t k, std::int64_t n_items, const std::vector<double>& exact_scores,
                  double official_score_err, DType score_dtype, bool exact_only, std::int64_t id_offset) {
    OutputResult o;
    o.name = name(m.module, output);
    const std::optional<RecordedTensor> cand = fetch(m, o);
    if (!cand) return;
    if (static_cast<std::int64_t>(cand->values.size()) != rows * k) {
      o.pass = false;
      o.reason = "shape mismatch";
      finish_output(m, o);
      return;
    }
    std::vector<std::int64_t> ci(cand->values.size()), ri(ref_ids.size());
    for (std::size_t i = 0; i < ci.size(); ++i) {
      const auto v = static_cast<std::int64_t>(cand->values[i]);
      ci[i] = v < 0 ? -1 : v - id_offset;
    }
    for (std::size_t i = 0; i < ri.size(); ++i) ri[i] = ref_ids[i] < 0 ? -1 : ref_ids[i] - id_offset;
    if (exact_only) {  // hash routing: a fixed table, no tie can explain a difference
      std::int64_t bad_rows = 0;
      for (std::int64_t r = 0; r < rows; ++r) {
        std::vector<std::int64_t> a(ci.begin() + r * k, ci.begin() + (r + 1) * k),
            b(ri.begin() + r * k, ri.begin() + (r + 1) * k);
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        bad_rows += a != b;
      }
      o.pass = bad_rows == 0;
      o.reason = o.pass ? "identical sets"
                        : std::to_string(bad_rows) + " rows route to other experts (hash routing is a fixed table)";
    } else {
      std::vector<double> tau(static_cast<std::size_t>(rows));
      for (std::int64_t r = 0; r < rows; ++r) {
        double kth = kInf;
        for (std::int64_t j = 0; j < k; ++j) {
          const std::int64_t id = ri[static_cast<std::size_t>(r * k + j)];
          if (id >= 0) kth = std::min(kth, exact_scores[static_cast<std::size_t>(r * n_items + id)]);
        }
        tau[static_cast<std::size_t>(r)] =
            std::isfinite(kth) ? compare::tie_tolerance(official_score_err, kth, score_dtype, tol_) : 0.0;
      }
      const compare::SetComparison sc = compare::compare_sets_dense(ci, ri, rows, k, n_items, exact_scores, tau);
      o.pass = sc.pass();
      o.reason = std::to_string(sc.identical) + " identical, " + std::to_string(sc.near_tie) + " near-tie, " +
                 std::to_string(sc.rejected) + " rejected rows";
      for (const auto& row : sc.differing) {
        if (row.status == compare::RowStatus::kRejected) {
          o.reason += "; first rejected: " + row.reason;
          break;
        }
      }
    }
    finish_output(m, o);
  }

  static void finish_output(ModuleResult& m, const OutputResult& o) {
    m.checked = true;
    m.local_max_abs = std::max(m.local_max_abs, o.local_max_abs);
    m.accumulated_max_abs = std::max(m.accumulated_max_abs, o.accumulated_max_abs);
    if (!o.pass && m.pass) {
      m.pass = false;
      m.reason = o.name + ": " + o.reason;
    }
    m.outputs.push_back(o);
  }

  // Applies f(reference index, sequence) for every reference and sequence.
  template <class F>
  Recomputed recompute(F f) {
    Recomputed r;
    for (std::size_t k = 0; k < kRefs; ++k)
      for (std::size_t b = 0; b < sched_.tokens.size(); ++b) r[k].push_back(f(k, b));
    return r;
  }

  // field(x) of every reference's per-sequence results out[k][b].
  template <class T, class F>
  static Recomputed gather(const std::vector<T> (&out)[kRefs], F field) {
    Recomputed r;
    for (std::size_t k = 0; k < kRefs; ++k)
      for (const T& x : out[k]) r[k].push_back(field(x));
    return r;
  }

  std::string prefix(std::int64_t l) const {
    return l < c_.n_layers ? "layers." + std::to_string(l) : "mtp." + std::to_string(l - c_.n_layers);
  }

  Batch block_input(std::int64_t l) {
    if (l >= c_.n_layers) {  // an MTP block: its input state (checked by mtp())
      auto x = input(name(prefix(l), "in"));
      return x ? *x : Batch{};
    }
    if (l > 0) {
      auto x = input(name(prefix(l - 1), "out"));
      return x ? *x : Batch{};
    }
    Batch x;
    for (const auto& ids : ids_) x.push_back(expand_streams(embed_tokens(w_.embed, ids), c_.hc_mult));
    return x;
  }

  // The candidate's tensor named by input i of site s (output_table.hpp) in the scope `scope_prefix`
  // ("layers.3", "mtp.0" or "" for a model site); an optional input's trailing '?' dropped.
  std::string site_input(const std::string& scope_prefix, const SiteDesc& s, std::size_t i) const {
    std::string_view in = s.inputs.at(i);
    if (in.ends_with('?')) in.remove_suffix(1);
    const auto slash = in.find('/');
    return name(module_path(scope_prefix, in.substr(0, slash)), std::string(in.substr(slash + 1)));
  }

  // hc_pre of site s (hc_attn or hc_ffn) on the block input or the candidate's hc_attn/out.
  void hc_pre_site(std::int64_t l, const SiteDesc& s, const Batch& block_in) {
    const BlockWeights& bw = block_weights(c_, w_, l);
    const HcWeights& hw = s.module == "hc_attn" ? bw.hc_attn : bw.hc_ffn;
    std::optional<Batch> x;
    if (s.inputs.at(0) == "<block input>") {
      x = block_in;
    } else {
      x = input(site_input(prefix(l), s, 0));
    }
    if (!x) return;
    ModuleResult& m = begin(module_path(prefix(l), s.module), l);
    std::vector<HcPreOutput> o[kRefs];
    for (std::size_t k = 0; k < kRefs; ++k)
      for (const Mat& xb : *x) o[k].push_back(hc_pre(ref_[k].prec, c_, xb, hw));
    check(m, "y", gather(o, [](const HcPreOutput& h) { return h.y; }));
    check(m, "post", gather(o, [](const HcPreOutput& h) { return h.post; }));
    check(m, "comb", gather(o, [](const HcPreOutput& h) { return h.comb; }));
  }

  // RMSNorm of site s in the scope `scope_prefix`, block `layer` (−1 for a head's norm).
  void norm(const std::string& scope_prefix, std::int64_t layer, const SiteDesc& s, const Vec& weight) {
    const auto x = input(site_input(scope_prefix, s, 0));
    if (!x) return;
    ModuleResult& m = begin(module_path(scope_prefix, s.module), layer);
    check(m, "out",
          recompute([&](std::size_t k, std::size_t b) { return rmsnorm(ref_[k].prec, (*x)[b], weight, c_.norm_eps); }));
  }

  // hc_post of site s: inputs (sublayer output, residual, post, comb) as the table names them.
  void hc_post_site(std::int64_t l, const SiteDesc& s, const Batch& block_in) {
    const std::string p = prefix(l);
    const auto f = input(site_input(p, s, 0));
    const auto r = s.inputs.at(1) == "<block input>" ? std::optional<Batch>(block_in) : input(site_input(p, s, 1));
    const auto post = input(site_input(p, s, 2));
    const auto comb = input(site_input(p, s, 3));
    if (!f || !r || r->empty() || !post || !comb) return;
    ModuleResult& m = begin(module_path(p, s.module), l);
    check(m, "out", recompute([&](std::size_t k, std::size_t b) {
            return hc_post(ref_[k].prec, c_, (*f)[b], (*r)[b], (*post)[b], (*comb)[b]);
          }));
  }

  void attention(std::int64_t l, const SiteDesc& s) {
    const std::string p = prefix(l);
    const auto x = input(site_input(p, s, 0));
    if (!x || broken_[static_cast<std::size_t>(l)]) {
      broken_[static_cast<std::size_t>(l)] = true;  // the states can no longer follow the candidate
      return;
    }
    // Decision forcing: the candidate's own indexer lists, when it dumped them.
    std::optional<Batch> forced;
    if (ref_[0].attn[static_cast<std::size_t>(l)].ratio() == 4) forced = cand_batch(site_input(p, s, 1));
    std::vector<AttentionOutput> out[kRefs];
    for (std::size_t k = 0; k < kRefs; ++k) {
      for (std::size_t b = 0; b < x->size(); ++b) {
        IndexLists lists;
        const IndexLists* fl = nullptr;
        if (forced) {
          const Mat& fm = (*forced)[b];
          lists = IndexLists(fm.rows(), fm.cols());
          for (std::int64_t i = 0; i < fm.size(); ++i)
            lists.data[static_cast<std::size_t>(i)] = index_value(fm.data()[i], site_input(p, s, 1), i);
          fl = &lists;
        }
        const Attention& a = ref_[k].attn[static_cast<std::size_t>(l)];
        AttentionState& st = ref_[k].states[b][static_cast<std::size_t>(l)];
        out[k].push_back(start_pos_ == 0 ? a.prefill((*x)[b], st, fl) : a.decode((*x)[b], start_pos_, st, fl));
      }
    }
    // The FP8 simulation of the nope dims (spec 02 §2.5, §2.6.3: block 64, UE8M0 scales).
    const std::int64_t nope = c_.head_dim - c_.rope_head_dim;
    {
      ModuleResult& m = begin(p + ".attn", l);
      const Quantised q{nope, 64, BlockQuant::kFp8Ue8m0,
                        gather(out, [](const AttentionOutput& a) { return a.kv_unquantised; })};
      check(m, "kv", gather(out, [](const AttentionOutput& a) { return a.kv; }), &q);
    }
    if (out[0].front().compressed.entries.rows() > 0) {
      ModuleResult& m = begin(p + ".attn.compressor", l);
      const Quantised q{nope, 64, BlockQuant::kFp8Ue8m0,
                        gather(out, [](const AttentionOutput& a) { return a.compressed.unquantised; })};
      check(m, "out", gather(out, [](const AttentionOutput& a) { return a.compressed.entries; }), &q);
    }
    if (out[0].front().indexer) {
      ModuleResult& m = begin(p + ".attn.indexer", l);
      const Recomputed sc = gather(out, [](const AttentionOutput& a) { return a.indexer->scores; });
      check(m, "scores", sc);
      const std::vector<double> fe = flatten(sc[kExact]);
      const double err = std::max(score_error(fe, flatten(sc[kOfficial])), score_error(fe, flatten(sc[kFp32Order])));
      std::vector<std::int64_t> ref_ids;
      for (const auto& a : out[0])
        ref_ids.insert(ref_ids.end(), a.indexer->lists.data.begin(), a.indexer->lists.data.end());
      const IndexLists& l0 = out[0].front().indexer->lists;
      const std::int64_t offset = start_pos_ == 0 ? static_cast<std::int64_t>(ids_.front().size()) : c_.window_size;
      check_sets(m, "out", ref_ids, l0.rows * static_cast<std::int64_t>(out[0].size()), l0.width,
                 out[0].front().indexer->scores.cols(), fe, err, official_dtype(name(p + ".attn.indexer", "scores")),
                 false, offset);
    }
    {
      ModuleResult& m = begin(p + ".attn.wo_a", l);
      check(m, "out", gather(out, [](const AttentionOutput& a) { return a.o_a; }));
    }
    ModuleResult& m = begin(p + ".attn", l);
    check(m, "out", gather(out, [](const AttentionOutput& a) { return a.out; }));
  }

  // An optional candidate input of the current module (indexer lists, expert ids: index_value
  // checks each element).
  std::optional<Batch> cand_batch(const std::string& full) {
    const auto t = cand_(full);
    if (!t) return std::nullopt;
    site_inputs_.push_back(full);
    return candidate_batch(*t, full);
  }

  void gate(std::int64_t l, const SiteDesc& s) {
    const std::string p = prefix(l);
    const auto x = input(site_input(p, s, 0));
    if (!x) return;
    const Moe& me = ref_[0].moe[static_cast<std::size_t>(l)];
    std::vector<GateOutput> g[kRefs];
    for (std::size_t k = 0; k < kRefs; ++k)
      for (std::size_t b = 0; b < x->size(); ++b)
        g[k].push_back(ref_[k].moe[static_cast<std::size_t>(l)].gate().forward((*x)[b], ids_[b]));
    const std::int64_t kk = c_.n_activated_experts, E = c_.n_routed_experts;
    const bool hash = me.gate().hash();
    {
      ModuleResult& m = begin(p + ".ffn.gate", l);
      // exact biased scores (the selection's scores) and the yardstick references' error
      const Vec& bias = block_weights(c_, w_, l).ffn.gate.bias;
      std::vector<double> se, ids;
      double err = 0.0;
      std::vector<std::int64_t> ref_ids;
      for (std::size_t b = 0; b < g[0].size(); ++b) {
        for (std::int64_t t = 0; t < g[0][b].scores.rows(); ++t) {
          for (std::int64_t e = 0; e < E; ++e) {
            const double bb = hash ? 0.0 : bias(e);
            const double ve = g[kExact][b].scores(t, e) + bb;
            se.push_back(ve);
            for (std::size_t k : {kOfficial, kFp32Order})
              err = std::max(err, std::abs(ve - (g[k][b].scores(t, e) + bb)));
          }
        }
        ref_ids.insert(ref_ids.end(), g[0][b].indices.begin(), g[0][b].indices.end());
      }
      const std::int64_t rows = static_cast<std::int64_t>(ref_ids.size()) / kk;
      check_sets(m, "out1", ref_ids, rows, kk, E, se, err, official_dtype(name(p + ".ffn.gate", "scores")), hash, 0);
      // weights on the rows whose expert set the candidate shares (elsewhere they weigh other experts)
      const auto cand_ids = cand_(name(p + ".ffn.gate", "out1"));
      const Recomputed weights = gather(g, [](const GateOutput& go) { return go.weights; });
      if (cand_ids && static_cast<std::int64_t>(cand_ids->values.size()) == rows * kk) {
        check_weights_on_shared_rows(m, weights, ref_ids, cand_ids->values, kk);
      } else {
        check(m, "out0", weights);
      }
    }
  }

  // The combine from the candidate's own routing (decision forcing), on the candidate's ffn_norm
  // output (already reported missing by gate()), its routing weights finite like every module input.
  void moe(std::int64_t l, const SiteDesc& s) {
    const std::string p = prefix(l);
    const auto x = input(site_input(p, s, 0), Missing::kIgnore);
    const auto w0 = input(site_input(p, s, 1), Missing::kIgnore);
    const auto i1 = cand_batch(site_input(p, s, 2));  // ids: index_value refuses NaN, Inf, non-integers
    if (!x || !w0 || !i1) return;
    ModuleResult& m = begin(p + ".ffn", l);
    check(m, "out", recompute([&](std::size_t k, std::size_t b) {
            GateOutput r;
            r.weights = (*w0)[b];
            for (std::int64_t i = 0; i < (*i1)[b].size(); ++i)
              r.indices.push_back(index_value((*i1)[b].data()[i], site_input(p, s, 2), i));
            return ref_[k].moe[static_cast<std::size_t>(l)].combine((*x)[b], r);
          }));
  }

  void check_weights_on_shared_rows(ModuleResult& m, const Recomputed& weights,
                                    const std::vector<std::int64_t>& ref_ids, const std::vector<double>& cand_ids,
                                    std::int64_t k) {
    const std::string full = name(m.module, "out0");
    const auto cand = cand_(full);
    if (!cand) return;
    std::array<std::vector<double>, kRefs> all, shared;
    for (std::size_t i = 0; i < kRefs; ++i) all[i] = flatten(weights[i]);
    std::vector<double> c2;
    for (std::size_t r = 0; r * k < ref_ids.size(); ++r) {
      bool same = true;
      for (std::int64_t j = 0; j < k; ++j)
        same = same && static_cast<std::int64_t>(cand_ids[r * k + j]) == ref_ids[r * k + j];
      if (!same) continue;
      for (std::int64_t j = 0; j < k; ++j) {
        c2.push_back(cand->values[r * k + j]);
        for (std::size_t i = 0; i < kRefs; ++i) shared[i].push_back(all[i][r * k + j]);
      }
    }
    const RecordedTensor sub{{1, 1, static_cast<std::int64_t>(c2.size())}, c2, false};
    const TensorGetter saved = cand_;
    cand_ = [&](const std::string& n) -> std::optional<RecordedTensor> {
      return n == full ? std::optional(sub) : saved(n);
    };
    Recomputed rows;
    for (std::size_t i = 0; i < kRefs; ++i)
      rows[i] = Batch{Eigen::Map<const Mat>(shared[i].data(), 1, static_cast<Eigen::Index>(shared[i].size()))};
    check(m, "out0", rows);
    cand_ = saved;
  }

  // One block (a main layer, or an MTP module's), site by site in the output table's order
  // (dsv4/model/output_table.hpp), each recomputed from the candidate's tensors the site names.
  void block(std::int64_t l) {
    const Batch x = block_input(l);
    if (x.empty()) {
      broken_[static_cast<std::size_t>(l)] = true;
      return;
    }
    const BlockWeights& bw = block_weights(c_, w_, l);
    const std::string in = l >= c_.n_layers ? name(prefix(l), "in") : l > 0 ? name(prefix(l - 1), "out") : "";
    for (const SiteDesc& s : output_sites()) {
      if (s.scope != SiteScope::kBlock) continue;
      const bool reads_block_input = std::find(s.inputs.begin(), s.inputs.end(), "<block input>") != s.inputs.end();
      begin_site(module_path(prefix(l), s.module), reads_block_input ? in : "");
      switch (s.kind) {
        case SiteKind::kHcPre:
          hc_pre_site(l, s, x);
          break;
        case SiteKind::kRmsNorm:
          norm(prefix(l), l, s, s.module == "attn_norm" ? bw.attn_norm : bw.ffn_norm);
          break;
        case SiteKind::kAttention:
          attention(l, s);
          break;
        case SiteKind::kHcPost:
          hc_post_site(l, s, x);
          break;
        case SiteKind::kGate:
          gate(l, s);
          break;
        case SiteKind::kMoe:
          moe(l, s);
          break;
        default:
          throw std::logic_error("diff: the output table has a block site the diff cannot recompute");
      }
    }
  }

  // hc_head → norm → head of the main model (scope_prefix "", the model sites) or of MTP module
  // `scope_prefix` ("mtp.I", its MTP sites), in the output table's order; the output projection is
  // the main model's, shared.
  void head(const std::string& scope_prefix, const HcHeadWeights& hc, const Vec& norm_weight) {
    const SiteScope scope = scope_prefix.empty() ? SiteScope::kModel : SiteScope::kMtp;
    for (const SiteDesc& s : output_sites()) {
      if (s.scope != scope) continue;
      begin_site(module_path(scope_prefix, s.module));
      if (s.kind == SiteKind::kRmsNorm) {
        norm(scope_prefix, -1, s, norm_weight);
        continue;
      }
      if (s.kind != SiteKind::kHcHead && s.kind != SiteKind::kHead) continue;  // embed, MTP input: elsewhere
      const std::string in = s.inputs.at(0) == "<last layer out>"  ? name(prefix(c_.n_layers - 1), "out")
                             : s.inputs.at(0) == "<mtp block out>" ? name(scope_prefix, "out")
                                                                   : site_input(scope_prefix, s, 0);
      const auto x = input(in);
      if (!x) continue;
      ModuleResult& m = begin(module_path(scope_prefix, s.module), -1);
      check(m, "out", recompute([&](std::size_t k, std::size_t b) {
              return s.kind == SiteKind::kHcHead ? hc_head(ref_[k].prec, c_, (*x)[b], hc)
                                                 : linear(ref_[k].prec, (*x)[b].bottomRows(1), w_.head);
            }));
    }
  }

  // MTP module i in this step (spec 05 §5.5; oracle/golden model_run.hpp: it runs with the ids
  // shifted left by one, in the steps where every position's next token is known — the steps
  // whose dump or golden holds mtp.i/in). Its input state from the candidate's final main state
  // (layers.{n−1}/out) and the shifted ids, then its block and its head, each module as above.
  void mtp(std::int64_t i) {
    const std::string p = "mtp." + std::to_string(i);
    if (!cand_(name(p, "in")) && !golden_(name(p, "in"))) return;  // MTP does not run in this step
    const auto len = static_cast<std::int64_t>(ids_.front().size());
    for (const auto& t : sched_.tokens)
      if (static_cast<std::int64_t>(t.size()) <= start_pos_ + len)
        throw std::runtime_error(name(p, "in") + ": MTP in a step whose next tokens are not all known");
    const std::vector<std::vector<std::int64_t>> main_ids = ids_;
    ids_.clear();
    for (const auto& t : sched_.tokens) ids_.emplace_back(t.begin() + start_pos_ + 1, t.begin() + start_pos_ + 1 + len);
    begin_site(p);
    if (const auto h = input(name(prefix(c_.n_layers - 1), "out"))) {
      ModuleResult& m = begin(p, c_.n_layers + i);
      check(m, "in", recompute([&](std::size_t k, std::size_t b) {
              return ref_[k].mtp[static_cast<std::size_t>(i)].input_state((*h)[b], ids_[b], w_.embed);
            }));
    }
    block(c_.n_layers + i);
    const MtpWeights& mw = w_.mtp[static_cast<std::size_t>(i)];
    head(p, mw.hc_head, mw.norm);
    ids_ = main_ids;
  }

  // An FP8 e4m3 code times a power-of-two scale has at most 4 significant bits (spec 02 §2.5).
  static bool fp8_pow2_value(double v) {
    if (v == 0.0 || !std::isfinite(v)) return true;
    int e = 0;
    const double m = std::frexp(std::abs(v), &e);  // m in [0.5, 1)
    return std::ldexp(m, 4) == std::floor(std::ldexp(m, 4));
  }

  const FieldObserver& observer_;
  const ModelConfig& c_;
  const ModelWeights& w_;
  const RunSchedule& sched_;
  TensorGetter cand_;
  const TensorGetter& golden_;
  compare::ToleranceParams tol_;
  std::optional<DType> format_;
  Reference ref_[kRefs];
  std::vector<std::pair<std::size_t, std::size_t>> structured_;  // (module, output) with structure tests
  // Per output of the table (every block's and step's instances pooled): the largest error in ulps
  // of the yardstick's recomputations judged so far (check(); compare::pooled_yardstick).
  std::map<const OutputDesc*, compare::UlpScale> family_scale_;
  std::vector<bool> broken_;
  std::string step_;
  std::int64_t start_pos_ = 0;
  std::vector<std::vector<std::int64_t>> ids_;
  std::string site_ = "the candidate";    // the module being recomputed (begin_site)
  std::vector<std::string> site_inputs_;  // the candidate tensors it is recomputed from
  DiffReport report_;
};

}  // namespace

DiffReport teacher_forced_diff(const ModelConfig& c, const ModelWeights& w, const RunSchedule& schedule,
                               const TensorGetter& candidate, const TensorGetter& golden_exact,
                               const compare::ToleranceParams& tolerance, std::optional<DType> candidate_format,
                               const FieldObserver& observer) {
  if (schedule.tokens.empty()) throw std::invalid_argument("diff: schedule: no sequences");
  if (schedule.prompt_len < 1 || schedule.decode_steps < 0)
    throw std::invalid_argument("diff: schedule: bad prompt_len / decode_steps");
  for (const auto& t : schedule.tokens) {
    if (static_cast<std::int64_t>(t.size()) < schedule.prompt_len + schedule.decode_steps)
      throw std::invalid_argument("diff: schedule: a sequence is shorter than prompt_len + decode_steps");
  }
  Differ d(c, w, schedule, candidate, golden_exact, tolerance, candidate_format, observer);
  return d.run();
}

}  // namespace dsv4::diff
