// `dsv4 golden verify --recompute` (recompute.hpp).
#include "dsv4/golden/recompute.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <utility>

#include "dsv4/audit/tensor_move.hpp"
#include "dsv4/golden/glob.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/model/block_record.hpp"
#include "dsv4/model/head.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/model/mtp.hpp"
#include "dsv4/model/output_table.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/model/transformer.hpp"

namespace dsv4 {

namespace {

// The row-major coordinate of flat element `i` of a tensor of shape `shape`.
std::vector<std::int64_t> unflatten(std::int64_t i, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> c(shape.size(), 0);
  for (std::size_t d = shape.size(); d-- > 0;) {
    if (shape[d] <= 0) continue;
    c[d] = i % shape[d];
    i /= shape[d];
  }
  return c;
}

// Compares the recorded outputs with the golden's official datasets bit for bit: every name of
// `expected` (execution order) must be recorded, and every recorded name (among `only` when given)
// must be in the golden with the same shape and bits. The first mismatch in execution order and the
// count go into r.
void compare_recorded(const Golden& g, const MemoryRecorder& rec, const std::vector<std::string>& expected,
                      const std::vector<std::string>* only, GoldenRecomputeResult& r) {
  const auto fail = [&](RecomputeMismatch m) {
    ++r.differing_outputs;
    if (!r.first) r.first = std::move(m);
  };
  const std::set<std::string> wanted =
      only ? std::set<std::string>(only->begin(), only->end()) : std::set<std::string>();
  std::set<std::string> recomputed;
  for (const std::string& name : rec.order()) {  // execution order (the choice scores last)
    if (only && wanted.count(name) == 0) continue;
    recomputed.insert(name);
    const RecordedTensor& t = rec.at(name);
    const GoldenEntry* e = g.find("official/" + name);
    if (e == nullptr) {
      fail({name, {}, 0, 0, 0, "recomputed but not in the golden"});
      continue;
    }
    if (e->shape != t.shape) {
      fail({name,
            {},
            0,
            0,
            0,
            "shape " + coordinate_text(t.shape) + " recomputed, " + coordinate_text(e->shape) + " stored"});
      continue;
    }
    const std::vector<double> stored = g.values("official", name);
    ++r.outputs;
    r.values += static_cast<std::int64_t>(stored.size());
    // Bits, not values: tensor_move compares every element's bit pattern (a −0 for a +0 differs).
    const std::optional<audit::TensorMove> m =
        audit::tensor_move(name, stored, t.values, t.integral ? DType::kI64 : DType::kF64);
    if (m) fail({name, unflatten(m->first_element, e->shape), m->yardstick, m->other, m->differing, ""});
  }
  for (const std::string& name : expected)
    if (recomputed.count(name) == 0) fail({name, {}, 0, 0, 0, "not recomputed"});
}

}  // namespace

std::string coordinate_text(const std::vector<std::int64_t>& coordinate) {
  std::string s = "[";
  for (std::size_t i = 0; i < coordinate.size(); ++i) s += (i ? ", " : "") + std::to_string(coordinate[i]);
  return s + "]";
}

GoldenRecomputeResult recompute_official(const Golden& g, const ModelWeights& w, const OfficialRunner* runner,
                                         const StepProgressFn& progress) {
  GoldenRecomputeResult r;
  r.device = runner ? runner->device : "cpu";
  if (runner) check_runner_batch(*runner, static_cast<std::int64_t>(g.tokens().size()));
  const ModelConfig& c = g.config();
  MemoryRecorder rec;
  if (runner) {
    runner->run(c, w, g.tokens(), g.steps(), rec, progress);
  } else {
    const Transformer model(Precision(Mode::kOfficial), c, w);
    run_plan(model, g.tokens(), g.steps(), rec, progress);
  }
  add_choice_scores(c, gate_biases(w), Mode::kOfficial, rec);  // as generate_golden does
  std::vector<std::string> all;
  for (const std::string& name : g.canonical_names())
    if (g.find("official/" + name) != nullptr) all.push_back(name);
  compare_recorded(g, rec, all, nullptr, r);
  return r;
}

RecomputeSelection parse_recompute_selection(const std::string& text) {
  return parse_module_selection(text, "--recompute-only");
}

bool recompute_selects(const RecomputeSelection::Selector& s, const std::string& canonical) {
  return module_selects(s, canonical);
}

ModuleSelection parse_module_selection(const std::string& text, const std::string& option) {
  ModuleSelection sel;
  sel.text = text;
  for (const std::string& p : split_pattern_list(text)) {
    const std::size_t slash = p.find('/');
    if (p.empty() || p.back() == '/' || p.front() == '/' ||
        (slash != std::string::npos && p.find('/', slash + 1) != std::string::npos))
      throw InputError(option, "'" + p + "' in '" + text +
                                   "' is not a selector: expected a comma-separated list of [STEP/]MODULE "
                                   "(layers.3, prefill/layers.*.ffn, decode0/head)");
    ModuleSelection::Selector s;
    s.text = p;
    if (slash == std::string::npos) {
      s.module = p;
    } else {
      s.step = p.substr(0, slash);
      s.module = p.substr(slash + 1);
    }
    sel.selectors.push_back(std::move(s));
  }
  return sel;
}

bool module_selection_selects(const ModuleSelection& sel, const std::string& canonical) {
  for (const ModuleSelection::Selector& s : sel.selectors)
    if (module_selects(s, canonical)) return true;
  return false;
}

bool module_selects(const ModuleSelection::Selector& s, const std::string& canonical) {
  const std::size_t a = canonical.find('/'), b = canonical.rfind('/');
  if (a == std::string::npos || a == b) return false;
  const std::string_view whole = canonical;
  const std::string_view step = whole.substr(0, a), module = whole.substr(a + 1, b - a - 1);
  if (!s.step.empty() && !glob_match(s.step, step)) return false;
  // The module itself, or one inside it (the selector followed by '.' and the rest of the path).
  if (glob_match(s.module, module)) return true;
  for (std::size_t dot = module.find('.'); dot != std::string_view::npos; dot = module.find('.', dot + 1))
    if (glob_match(s.module, module.substr(0, dot))) return true;
  return false;
}

namespace {

// The spot check's recomputation (recompute_official_selected): the output table's sites in
// execution order, each recomputed when one of its outputs is selected, from the golden's official
// values of the tensors the site reads, and recorded under its canonical names.
class SpotRecompute {
 public:
  SpotRecompute(const Golden& g, const ModelWeights& w, std::set<std::string> selected)
      : g_(g), c_(g.config()), w_(w), selected_(std::move(selected)) {
    // A selected attention output in step i needs the layer's cache of steps 0 … i − 1.
    for (const std::string& name : selected_) {
      const std::optional<OutputRef> d = describe_output(name, &c_);
      if (!d || d->site->kind != SiteKind::kAttention) continue;
      std::size_t& until = attention_until_[d->block];
      until = std::max(until, step_index(d->step) + 1);
    }
  }

  // A first pass only checks that the golden holds every input the selected modules read (the
  // missing ones named at once, before any work), the second recomputes.
  MemoryRecorder run(const StepProgressFn& progress) {
    dry_ = true;
    pass({});
    if (!missing_.empty()) {
      std::string list;
      for (const std::string& m : missing_) list += (list.empty() ? "" : ", ") + m;
      throw InputError("--recompute-only", "the golden lacks inputs of the selected modules: " + list);
    }
    dry_ = false;
    pass(progress);
    add_choice_scores(c_, gate_biases(w_), Mode::kOfficial, rec_);  // as generate_golden does
    return std::move(rec_);
  }

 private:
  using Batch = std::vector<Mat>;  // one matrix per sequence

  void pass(const StepProgressFn& progress) {
    for (std::size_t i = 0; i < g_.steps().size(); ++i) {
      const StepPlan& st = g_.steps()[i];
      step_ = st.name;
      step_index_ = i;
      start_pos_ = st.start_pos;
      cache_.clear();
      ids_.clear();
      for (const auto& seq : g_.tokens())
        ids_.emplace_back(seq.begin() + st.start_pos, seq.begin() + st.start_pos + st.length);
      for (const SiteDesc& s : output_sites())
        if (s.scope == SiteScope::kModel && s.kind == SiteKind::kEmbed && wanted("", s)) embed(s);
      for (std::int64_t l = 0; l < c_.n_layers; ++l) {
        block(l);
        cache_.clear();  // a block's inputs, read once per block: memory of one block, not of the step
        if (progress && block_ran_) progress(step_, prefix(l));
      }
      head("", w_.hc_head, w_.norm);
      if (progress) progress(step_, "head");
      if (st.mtp && c_.n_mtp_layers > 0) {  // mtp.0, as the Transformer runs it (spec 05 §5.5)
        const std::vector<std::vector<std::int64_t>> main_ids = ids_;
        ids_.clear();
        for (const auto& seq : g_.tokens())
          ids_.emplace_back(seq.begin() + st.start_pos + 1, seq.begin() + st.start_pos + 1 + st.length);
        mtp_input(0);
        block(c_.n_layers);
        const MtpWeights& mw = w_.mtp.front();
        head("mtp.0", mw.hc_head, mw.norm);
        ids_ = main_ids;
        if (progress) progress(step_, "mtp.0");
      }
    }
  }

  std::size_t step_index(const std::string& step) const {
    for (std::size_t i = 0; i < g_.steps().size(); ++i)
      if (g_.steps()[i].name == step) return i;
    return 0;
  }

  std::string prefix(std::int64_t block) const {
    return block < c_.n_layers ? "layers." + std::to_string(block) : "mtp." + std::to_string(block - c_.n_layers);
  }
  std::string name(const std::string& module, std::string_view output) const {
    return step_ + "/" + module + "/" + std::string(output);
  }

  // Whether one of site s's outputs in scope `scope_prefix` is selected in this step.
  bool wanted(const std::string& scope_prefix, const SiteDesc& s) const {
    for (const OutputDesc& o : s.outputs)
      if (selected_.count(name(module_path(scope_prefix, o.module), o.output)) != 0) return true;
    return false;
  }

  // The golden's official values of `canonical` (in this step; kept for the block being recomputed), one matrix per
  // sequence; nullopt (and named missing) when the golden lacks it; an empty batch in the first pass.
  std::optional<Batch> input(const std::string& canonical) {
    if (const auto it = cache_.find(canonical); it != cache_.end()) return it->second;
    const GoldenEntry* e = g_.find("official/" + canonical);
    if (e == nullptr || e->shape.size() != 3) {
      if (std::find(missing_.begin(), missing_.end(), "official/" + canonical) == missing_.end())
        missing_.push_back("official/" + canonical);
      return std::nullopt;
    }
    if (dry_) return Batch{};  // the first pass: present, not read
    const std::vector<double> v = g_.values("official", canonical);
    const std::int64_t rows = e->shape[1], cols = e->shape[2];
    Batch b;
    for (std::int64_t i = 0; i < e->shape[0]; ++i)
      b.push_back(Eigen::Map<const Mat>(v.data() + i * rows * cols, rows, cols));
    return cache_[canonical] = b;
  }

  // Input i of site s in scope `scope_prefix` (a name of the output table; '?' of an optional one dropped).
  std::string site_input(const std::string& scope_prefix, const SiteDesc& s, std::size_t i) const {
    std::string_view in = s.inputs.at(i);
    if (in.ends_with('?')) in.remove_suffix(1);
    const auto slash = in.find('/');
    return name(module_path(scope_prefix, in.substr(0, slash)), in.substr(slash + 1));
  }

  // An index tensor of the golden (indexer lists, expert ids) as integers: each an integral value within int32.
  static std::vector<std::int64_t> indices(const Mat& m, const std::string& canonical) {
    std::vector<std::int64_t> v(static_cast<std::size_t>(m.size()));
    for (std::int64_t i = 0; i < m.size(); ++i) {
      const double x = m.data()[i];
      if (!(x >= std::numeric_limits<std::int32_t>::min() && x <= std::numeric_limits<std::int32_t>::max()) ||
          x != std::floor(x))
        throw InputError("official/" + canonical, "element " + std::to_string(i) + " is not an index");
      v[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(x);
    }
    return v;
  }

  // The block's input: the embedding (the golden's embed/out, expanded to the hc streams) for layer
  // 0, the previous layer's out, mtp.0/in for the MTP block.
  std::optional<Batch> block_input(std::int64_t l) {
    if (l >= c_.n_layers) return input(name(prefix(l), "in"));
    if (l > 0) return input(name(prefix(l - 1), "out"));
    std::optional<Batch> e = input(name("embed", "out"));
    if (e)
      for (Mat& m : *e) m = expand_streams(m, c_.hc_mult);
    return e;
  }

  template <class T>
  static std::vector<const T*> pointers(const std::vector<T>& v) {
    std::vector<const T*> p;
    for (const T& x : v) p.push_back(&x);
    return p;
  }

  const Attention& attention_of(std::int64_t l) {
    auto it = attention_.find(l);
    if (it == attention_.end()) {
      const BlockWeights& bw = weights_of(l);
      it = attention_.try_emplace(l, prec_, c_, l, bw.attn).first;
      for (std::size_t b = 0; b < g_.tokens().size(); ++b) states_[l].push_back(Attention::allocate_state(c_, l));
    }
    return it->second;
  }
  const Moe& moe_of(std::int64_t l) {
    auto it = moe_.find(l);
    if (it == moe_.end()) it = moe_.try_emplace(l, prec_, c_, l, weights_of(l).ffn).first;
    return it->second;
  }
  const BlockWeights& weights_of(std::int64_t l) const {
    return l < c_.n_layers ? w_.layers[static_cast<std::size_t>(l)]
                           : w_.mtp[static_cast<std::size_t>(l - c_.n_layers)].block;
  }

  void embed(const SiteDesc& s) {
    if (dry_) return;
    Batch out;
    for (const auto& ids : ids_) out.push_back(embed_tokens(w_.embed, ids));
    record_batch(&rec_, name(std::string(s.module), s.outputs.front().output), out);
  }

  // One block's sites in the output table's order (spec 05 §5.2), each recomputed when wanted.
  void block(std::int64_t l) {
    const std::string p = prefix(l), base = step_ + "/" + p;
    const BlockWeights& bw = weights_of(l);
    block_ran_ = false;
    for (const SiteDesc& s : output_sites()) {
      if (s.scope != SiteScope::kBlock) continue;
      const bool want = wanted(p, s);
      const auto until = attention_until_.find(l);
      const bool for_cache =
          s.kind == SiteKind::kAttention && until != attention_until_.end() && step_index_ < until->second;
      if (!want && !for_cache) continue;
      block_ran_ = true;
      const auto in = [&](std::size_t i) {
        return s.inputs.at(i) == "<block input>" ? block_input(l) : input(site_input(p, s, i));
      };
      switch (s.kind) {
        case SiteKind::kHcPre: {
          const std::optional<Batch> x = in(0);
          if (!x || dry_) break;
          const HcWeights& hw = s.module == "hc_attn" ? bw.hc_attn : bw.hc_ffn;
          std::vector<HcPreOutput> out;
          for (const Mat& xb : *x) out.push_back(hc_pre(prec_, c_, xb, hw));
          record_hc_pre(&rec_, base + "." + std::string(s.module), pointers(out));
          break;
        }
        case SiteKind::kRmsNorm: {
          const std::optional<Batch> x = in(0);
          if (!x || dry_) break;
          Batch out;
          for (const Mat& xb : *x)
            out.push_back(rmsnorm(prec_, xb, s.module == "attn_norm" ? bw.attn_norm : bw.ffn_norm, c_.norm_eps));
          record_batch(&rec_, name(module_path(p, s.module), s.outputs.front().output), out);
          break;
        }
        case SiteKind::kAttention: {
          const std::optional<Batch> x = in(0);
          const Attention& a = attention_of(l);
          // Decision forcing: the golden's own indexer lists (CSA), as the official run used them.
          std::optional<Batch> lists;
          if (a.ratio() == 4) lists = in(1);
          if (!x || (a.ratio() == 4 && !lists) || dry_) break;
          std::vector<AttentionOutput> out;
          for (std::size_t b = 0; b < x->size(); ++b) {
            std::optional<IndexLists> forced;
            if (lists) {
              const Mat& m = (*lists)[b];
              forced = IndexLists(m.rows(), m.cols());
              const std::vector<std::int64_t> v = indices(m, site_input(p, s, 1));
              for (std::size_t i = 0; i < v.size(); ++i) forced->data[i] = static_cast<std::int32_t>(v[i]);
            }
            AttentionState& st = states_[l][b];
            const IndexLists* f = forced ? &*forced : nullptr;
            out.push_back(start_pos_ == 0 ? a.prefill((*x)[b], st, f) : a.decode((*x)[b], start_pos_, st, f));
          }
          if (want) record_attention(&rec_, base, pointers(out));
          break;
        }
        case SiteKind::kHcPost: {
          const std::optional<Batch> f = in(0), r = in(1), post = in(2), comb = in(3);
          if (!f || !r || !post || !comb || dry_) break;
          Batch out;
          for (std::size_t b = 0; b < f->size(); ++b)
            out.push_back(hc_post(prec_, c_, (*f)[b], (*r)[b], (*post)[b], (*comb)[b]));
          record_batch(&rec_, name(module_path(p, s.module), s.outputs.front().output), out);
          break;
        }
        case SiteKind::kGate: {
          const std::optional<Batch> x = in(0);
          if (!x || dry_) break;
          std::vector<GateOutput> out;
          for (std::size_t b = 0; b < x->size(); ++b) out.push_back(moe_of(l).gate().forward((*x)[b], ids_[b]));
          record_gate(&rec_, base, pointers(out));
          break;
        }
        case SiteKind::kMoe: {  // the combine on the golden's own routing (decision forcing)
          const std::optional<Batch> x = in(0), w0 = in(1), i1 = in(2);
          if (!x || !w0 || !i1 || dry_) break;
          Batch out;
          for (std::size_t b = 0; b < x->size(); ++b) {
            GateOutput routing;
            routing.weights = (*w0)[b];
            routing.indices = indices((*i1)[b], site_input(p, s, 2));
            out.push_back(moe_of(l).combine((*x)[b], routing));
          }
          record_batch(&rec_, name(module_path(p, s.module), s.outputs.front().output), out);
          break;
        }
        default:
          throw std::logic_error("golden recompute: the output table has a block site it cannot recompute");
      }
    }
  }

  // spec 05 §5.5 steps 1–3: mtp.i/in from the golden's final main state and the shifted ids.
  void mtp_input(std::int64_t i) {
    for (const SiteDesc& s : output_sites()) {
      if (s.scope != SiteScope::kMtp || s.kind != SiteKind::kMtpInput || !wanted("mtp.0", s)) continue;
      const std::optional<Batch> h = input(name(prefix(c_.n_layers - 1), "out"));
      if (!h || dry_) return;
      const MtpBlock m(prec_, c_, i, w_.mtp[static_cast<std::size_t>(i)]);
      Batch out;
      for (std::size_t b = 0; b < h->size(); ++b) out.push_back(m.input_state((*h)[b], ids_[b], w_.embed));
      record_batch(&rec_, name(module_path(prefix(c_.n_layers + i), s.module), s.outputs.front().output), out);
    }
  }

  // hc_head → norm → head (spec 05 §5.3, as head_forward) of the main model (scope_prefix "") or of
  // the MTP module; the output projection is the main model's.
  void head(const std::string& scope_prefix, const HcHeadWeights& hc, const Vec& norm_weight) {
    const SiteScope scope = scope_prefix.empty() ? SiteScope::kModel : SiteScope::kMtp;
    for (const SiteDesc& s : output_sites()) {
      if (s.scope != scope || !wanted(scope_prefix, s)) continue;
      if (s.kind != SiteKind::kHcHead && s.kind != SiteKind::kRmsNorm && s.kind != SiteKind::kHead) continue;
      const std::string in = s.inputs.at(0) == "<last layer out>"  ? name(prefix(c_.n_layers - 1), "out")
                             : s.inputs.at(0) == "<mtp block out>" ? name(scope_prefix, "out")
                                                                   : site_input(scope_prefix, s, 0);
      const std::optional<Batch> x = input(in);
      if (!x || dry_) continue;
      Batch out;
      for (const Mat& xb : *x) {
        if (s.kind == SiteKind::kHcHead) {
          out.push_back(hc_head(prec_, c_, xb, hc));
        } else if (s.kind == SiteKind::kRmsNorm) {
          out.push_back(rmsnorm(prec_, xb, norm_weight, c_.norm_eps));
        } else {
          out.push_back(linear(prec_, xb.bottomRows(1), w_.head));
        }
      }
      record_batch(&rec_, name(module_path(scope_prefix, s.module), s.outputs.front().output), out);
    }
  }

  const Golden& g_;
  const ModelConfig& c_;
  const ModelWeights& w_;
  const std::set<std::string> selected_;
  const Precision prec_{Mode::kOfficial};
  std::map<std::int64_t, std::size_t> attention_until_;  // block → steps whose attention it runs
  std::map<std::int64_t, Attention> attention_;
  std::map<std::int64_t, Moe> moe_;
  std::map<std::int64_t, std::vector<AttentionState>> states_;  // [block][sequence]
  std::map<std::string, Batch> cache_;                          // the inputs read for the current block
  std::vector<std::string> missing_;
  MemoryRecorder rec_;
  std::string step_;
  std::size_t step_index_ = 0;
  std::int64_t start_pos_ = 0;
  std::vector<std::vector<std::int64_t>> ids_;
  bool block_ran_ = false;
  bool dry_ = false;  // the first pass (run)
};

}  // namespace

std::vector<std::string> recompute_selected_outputs(const Golden& g, const RecomputeSelection& selection,
                                                    std::int64_t* official_outputs) {
  std::vector<std::string> selected;
  std::int64_t official = 0;
  std::vector<bool> used(selection.selectors.size(), false);
  std::vector<std::string> names = g.canonical_names();
  sort_in_execution_order(names);
  for (const std::string& n : names) {
    if (g.find("official/" + n) == nullptr) continue;
    ++official;
    bool any = false;
    for (std::size_t i = 0; i < selection.selectors.size(); ++i)
      if (recompute_selects(selection.selectors[i], n)) any = used[i] = true;
    if (any) selected.push_back(n);
  }
  for (std::size_t i = 0; i < used.size(); ++i)
    if (!used[i])
      throw InputError("--recompute-only", "'" + selection.selectors[i].text +
                                               "' selects no official output of the golden (selectors: "
                                               "[STEP/]MODULE, e.g. layers.0, prefill/layers.*.ffn, head; "
                                               "dsv4 golden inspect --tensors lists the golden's outputs)");
  if (official_outputs != nullptr) *official_outputs = official;
  return selected;
}

GoldenRecomputeResult recompute_official_selected(const Golden& g, const ModelWeights& w,
                                                  const RecomputeSelection& selection, const StepProgressFn& progress) {
  std::int64_t official = 0;
  const std::vector<std::string> selected = recompute_selected_outputs(g, selection, &official);
  GoldenRecomputeResult r;
  r.device = "cpu";
  const MemoryRecorder rec = SpotRecompute(g, w, {selected.begin(), selected.end()}).run(progress);
  compare_recorded(g, rec, selected, &selected, r);
  r.checked = selected;
  r.not_checked = official - static_cast<std::int64_t>(selected.size());
  return r;
}

}  // namespace dsv4
