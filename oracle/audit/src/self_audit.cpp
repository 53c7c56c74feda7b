// `dsv4 audit` of our own stack (self_audit.hpp; issue 17 item 1).
#include "dsv4/audit/self_audit.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <span>
#include <utility>

#include "dsv4/compare/ulp.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/model/output_table.hpp"
#include "dsv4/model/recorder.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4::audit {

namespace {

using Tokens = std::vector<std::vector<std::int64_t>>;

constexpr const char* kGpuRow = "GPU vs CPU official";

// A sequence of n token ids from (seed, stream).
std::vector<std::int64_t> sequence(std::int64_t n, std::int64_t vocab, std::uint64_t seed, std::uint64_t stream) {
  const CounterRng rng(seed, stream);
  std::vector<std::int64_t> t(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    t[static_cast<std::size_t>(i)] =
        static_cast<std::int64_t>(rng.words(static_cast<std::uint64_t>(i))[0] % static_cast<std::uint64_t>(vocab));
  return t;
}

void run(const Transformer& model, const Tokens& toks, std::int64_t decode_steps, MemoryRecorder& rec) {
  const std::vector<StepPlan> plan = plan_steps(model.config(), static_cast<std::int64_t>(toks.size()),
                                                static_cast<std::int64_t>(toks.front().size()), decode_steps);
  run_plan(model, toks, plan, rec);
}

// The values of batch row `b` (and, with row ≥ 0, only that position) of a recorded [b, s, c] tensor.
std::span<const double> slice(const RecordedTensor& t, std::int64_t b, std::int64_t row = -1) {
  const std::size_t per = t.values.size() / static_cast<std::size_t>(std::max<std::int64_t>(t.shape.front(), 1));
  std::span<const double> s(t.values.data() + static_cast<std::size_t>(b) * per, per);
  if (row < 0) return s;
  const auto cols = static_cast<std::size_t>(t.shape.back());
  return s.subspan(static_cast<std::size_t>(row) * cols, cols);
}

// The ULP distance of two values in the output's number format (official mode: its official
// dtype; exact mode: float64; integer outputs: |a − b|).
std::uint64_t ulps(double a, double b, DType grid) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<std::uint64_t>::max();
  if (grid == DType::kI64) return static_cast<std::uint64_t>(std::fabs(a - b));
  return compare::ulp_distance(compare::ulp_grid(grid), a, b);
}

DType grid_of(const std::string& name, Mode mode) {
  const std::optional<OutputRef> d = describe_output(name);
  if (d && d->desc->official == DType::kI64) return DType::kI64;
  if (mode == Mode::kExact || !d) return DType::kF64;
  return d->desc->official;
}

// One pair of outputs to compare: the yardstick's and the variant's values of the sequence.
struct Pair {
  std::string name;
  std::span<const double> yardstick, variant;
};

void compare(const std::vector<Pair>& pairs, Mode mode, VariantResult& v) {
  Sha256 h;
  for (const Pair& p : pairs) {
    ++v.compared;
    h.update(std::as_bytes(p.variant));
    const DType g = grid_of(p.name, mode);
    std::optional<TensorMove> moved = tensor_move(p.name, p.yardstick, p.variant, g);
    if (!moved) continue;
    if (!v.mismatch) {
      Mismatch m;
      m.output = p.name;
      m.element = moved->first_element;
      m.yardstick = moved->yardstick;
      m.variant = moved->other;
      m.grid = std::string(g == DType::kI64 ? "int64" : dtype_name(g));
      m.ulps = ulps(m.variant, m.yardstick, g);
      m.differing_elements = moved->differing;
      v.mismatch = m;
    }
    ++v.mismatch->differing_outputs;
    v.moved.push_back(std::move(*moved));
  }
  v.sha256 = h.hex();
}

// Every output of the yardstick in execution order, against the variant's batch row `b`.
std::vector<Pair> all_outputs(const MemoryRecorder& y, const MemoryRecorder& var, std::int64_t b) {
  std::vector<Pair> pairs;
  for (const std::string& name : y.order()) {
    const auto it = var.entries().find(name);
    const std::span<const double> none;
    pairs.push_back({name, slice(y.at(name), 0), it == var.entries().end() ? none : slice(it->second, b)});
  }
  return pairs;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

VariantResult compare_runs(const MemoryRecorder& yardstick, const MemoryRecorder& variant, std::int64_t row, Mode mode,
                           const std::string& variant_name) {
  VariantResult v;
  v.mode = mode_name(mode);
  v.variant = variant_name;
  compare(all_outputs(yardstick, variant, row), mode, v);
  return v;
}

const std::vector<std::string>& positionwise_outputs() {
  static const std::vector<std::string> v{".hc_attn/y",     ".hc_attn/post", ".hc_attn/comb", ".attn_norm/out",
                                          ".attn/out",      ".hc_ffn/y",     ".hc_ffn/comb",  ".ffn.gate/out0",
                                          ".ffn.gate/out1", ".ffn/out",      "/out"};
  return v;
}

AuditOptions quick_options(const ModelConfig& c) {
  AuditOptions o;
  o.config = c;
  return o;
}

AuditOptions full_options(const ModelConfig& c) {
  AuditOptions o;
  o.config = c;
  o.repeats = 3;
  o.batch_sizes = {4, 7, 64};
  o.rows = {0, 3, 63};
  o.prompt_len = 36;
  o.decode_steps = 3;
  return o;
}

std::string audit_svg(const AuditReport& r) {
  std::vector<MoveSet> sets;
  for (const VariantResult& v : r.variants) sets.push_back({v.mode + " " + v.variant, &v.moved});
  return where_bits_move_svg("dsv4 audit (" + r.config + ")", r.pass(), r.layers, sets);
}

bool AuditReport::pass() const {
  if (variants.empty()) return false;
  for (const VariantResult& v : variants)
    if (v.mismatch) return false;
  return true;
}

AuditReport run_self_audit(const AuditOptions& o, const AuditProgress& progress) {
  if (o.prompt_len < 1) throw InputError("--prompt-len", "must be at least 1");
  if (o.decode_steps < 0) throw InputError("--steps", "must be at least 0");
  for (const std::int64_t b : o.batch_sizes)
    if (b < 1 || b > 512) throw InputError("batch sizes", "each must be 1…512, got " + std::to_string(b));
  ModelConfig c = o.config;
  // The batch limit is a capacity (caches), not arithmetic: raised so that the audit's batches fit.
  for (const std::int64_t b : o.batch_sizes) c.max_batch_size = std::max(c.max_batch_size, b);
  const std::int64_t length = o.prompt_len + o.decode_steps;
  const std::vector<std::int64_t> seq = sequence(length, c.vocab_size, o.tokens_seed, 0);
  const ModelWeights w = ModelWeights::synthetic(c, o.weights_seed);

  AuditReport rep;
  rep.config = c.name;
  rep.layers = c.n_layers;
  for (const Mode mode : o.modes) {
    const std::string mname = mode_name(mode);
    const Transformer model(Precision(mode), c, w);
    const auto variant = [&](const std::string& name) {
      if (progress) progress(mname, name);
      VariantResult v;
      v.mode = mname;
      v.variant = name;
      return v;
    };
    // The yardstick: the sequence alone, every GEMM thread.
    set_gemm_threads(0);
    MemoryRecorder yard;
    auto t0 = std::chrono::steady_clock::now();
    {
      VariantResult v = variant("yardstick");
      run(model, {seq}, o.decode_steps, yard);
      compare(all_outputs(yard, yard, 0), mode, v);
      rep.yardstick_sha256.push_back(v.sha256);
      v.note = "the sequence alone, " + std::to_string(gemm_threads()) + " GEMM threads";
      v.seconds = seconds_since(t0);
      rep.variants.push_back(std::move(v));
    }
    for (int r = 1; r <= o.repeats; ++r) {
      VariantResult v = variant("repeat " + std::to_string(r));
      t0 = std::chrono::steady_clock::now();
      MemoryRecorder again;
      run(model, {seq}, o.decode_steps, again);
      compare(all_outputs(yard, again, 0), mode, v);
      v.seconds = seconds_since(t0);
      rep.variants.push_back(std::move(v));
    }
    for (const int t : o.threads) {
      VariantResult v = variant("threads " + std::to_string(t));
      t0 = std::chrono::steady_clock::now();
      set_gemm_threads(t);
      MemoryRecorder th;
      run(model, {seq}, o.decode_steps, th);
      set_gemm_threads(0);
      compare(all_outputs(yard, th, 0), mode, v);
      v.seconds = seconds_since(t0);
      rep.variants.push_back(std::move(v));
    }
    for (const std::int64_t b : o.batch_sizes) {
      for (const std::int64_t row : o.rows) {
        if (row >= b) continue;
        VariantResult v = variant("batch " + std::to_string(b) + " row " + std::to_string(row));
        t0 = std::chrono::steady_clock::now();
        Tokens batch;
        for (std::int64_t i = 0; i < b; ++i)
          batch.push_back(
              i == row ? seq : sequence(length, c.vocab_size, o.tokens_seed, 1000 + static_cast<std::uint64_t>(i)));
        MemoryRecorder rb;
        run(model, batch, o.decode_steps, rb);
        compare(all_outputs(yard, rb, row), mode, v);
        v.note = "companions: random sequences";
        v.seconds = seconds_since(t0);
        rep.variants.push_back(std::move(v));
      }
    }
    if (o.prefill_vs_decode && o.decode_steps > 0) {
      VariantResult v = variant("prefill vs decode");
      t0 = std::chrono::steady_clock::now();
      if (mode == Mode::kOfficial && o.prompt_len < c.window_size) {
        // spec 02 §2.11.4: in official mode a prefill shorter than the window is computed in
        // another chunking than the decode steps that follow; those positions may differ.
        v.skipped = true;
        v.note = "skipped: prompt shorter than the window (spec 02 §2.11.4 allows those positions to differ)";
      } else {
        MemoryRecorder pre;
        run(model, {seq}, 0, pre);
        std::vector<Pair> pairs;
        for (std::int64_t i = 0; i < o.decode_steps; ++i) {
          for (std::int64_t l = 0; l < c.n_layers; ++l) {
            for (const std::string& out : positionwise_outputs()) {
              const std::string block = "layers." + std::to_string(l) + out;
              pairs.push_back({"decode" + std::to_string(i) + "/" + block,
                               slice(yard.at("decode" + std::to_string(i) + "/" + block), 0, 0),
                               slice(pre.at("prefill/" + block), 0, o.prompt_len + i)});
            }
          }
        }
        compare(pairs, mode, v);
        v.note = "position-wise outputs of the main layers at positions " + std::to_string(o.prompt_len) + "…" +
                 std::to_string(length - 1) +
                 " (MTP excluded: a prefill of the whole sequence has no next token "
                 "for its last position)";
      }
      v.seconds = seconds_since(t0);
      rep.variants.push_back(std::move(v));
    }
    if (mode == Mode::kOfficial) {  // GPU vs CPU official (issue 17 item 1)
      VariantResult v = variant(kGpuRow);
      t0 = std::chrono::steady_clock::now();
      if (!o.gpu) {
        v.skipped = true;
        v.note = "skipped: " + o.gpu_unavailable;
      } else {
        MemoryRecorder rg;
        o.gpu->run(c, w, {seq}, plan_steps(c, 1, length, o.decode_steps), rg, {});
        compare(all_outputs(yard, rg, 0), mode, v);
        v.note = "the sequence alone on " + o.gpu->description + ", against the official yardstick";
      }
      v.seconds = seconds_since(t0);
      rep.variants.push_back(std::move(v));
    }
  }
  if (std::find(o.modes.begin(), o.modes.end(), Mode::kOfficial) == o.modes.end()) {
    VariantResult v;
    v.mode = mode_name(Mode::kOfficial);
    v.variant = kGpuRow;
    v.skipped = true;
    v.note = "skipped: the official mode is not audited (--modes)";
    rep.variants.push_back(std::move(v));
  }
  set_gemm_threads(0);
  return rep;
}

namespace {

std::string hexfloat(double x) {
  char b[64];
  std::snprintf(b, sizeof b, "%a", x);
  return b;
}

std::string mismatch_text(const Mismatch& m) {
  return m.output + " element " + std::to_string(m.element) + ": " + hexfloat(m.yardstick) + " vs " +
         hexfloat(m.variant) + " (" + std::to_string(m.ulps) + " ulp in " + m.grid + "; " +
         std::to_string(m.differing_elements) + " elements differ; " + std::to_string(m.differing_outputs) +
         " outputs move)";
}

}  // namespace

std::string audit_text(const AuditReport& r) {
  std::string o;
  std::int64_t failed = 0, skipped = 0;
  const VariantResult* first = nullptr;
  for (const VariantResult& v : r.variants) {
    skipped += v.skipped ? 1 : 0;
    if (v.mismatch) {
      ++failed;
      if (!first) first = &v;
    }
  }
  const std::string skipped_text = skipped ? ", " + std::to_string(skipped) + " skipped" : "";
  o += "audit: " + std::string(r.pass() ? "PASS" : "FAIL") + " — ";
  o += first ? first->mode + " " + first->variant + ": first module whose bits move: " + first->mismatch->output
             : std::to_string(static_cast<std::int64_t>(r.variants.size()) - skipped) +
                   " runs, every module output bit-identical to the yardstick" + skipped_text +
                   (skipped ? " (why: below)" : "");
  o += "\n\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-9s %-22s %8s %8s  %-16s %s\n", "mode", "variant", "outputs", "seconds", "sha256",
                "verdict");
  o += line;
  for (const VariantResult& v : r.variants) {
    std::snprintf(line, sizeof line, "%-9s %-22s %8lld %8.1f  %-16s %s\n", v.mode.c_str(), v.variant.c_str(),
                  static_cast<long long>(v.compared), v.seconds, v.sha256.substr(0, 16).c_str(),
                  v.mismatch ? "FAIL" : (v.skipped ? "skipped" : (v.compared == 0 ? "-" : "identical")));
    o += line;
  }
  std::string details;
  for (const VariantResult& v : r.variants) {
    if (v.mismatch) details += "  " + v.mode + " " + v.variant + ": " + mismatch_text(*v.mismatch) + "\n";
    if (!v.note.empty()) details += "  " + v.mode + " " + v.variant + ": " + v.note + "\n";
  }
  if (!details.empty()) o += "\n" + details;
  o += "\naudit: " + std::string(r.pass() ? "PASS" : "FAIL") + " (" + std::to_string(failed) + " of " +
       std::to_string(static_cast<std::int64_t>(r.variants.size()) - skipped) + " runs differ" + skipped_text + ")\n";
  return o;
}

nlohmann::json audit_json(const AuditReport& r) {
  nlohmann::json j;
  // 2: the "skipped" field (a row that did not run: no GPU, a prefill shorter than the window),
  // "identical" null on such a row, and the row "GPU vs CPU official".
  j["schema"] = "dsv4-audit-report/2";
  j["config"] = r.config;
  j["verdict"] = r.pass() ? "PASS" : "FAIL";
  nlohmann::json vs = nlohmann::json::array();
  for (const VariantResult& v : r.variants) {
    nlohmann::json m;
    if (v.mismatch) {
      const Mismatch& x = *v.mismatch;
      m = {{"output", x.output},
           {"element", x.element},
           {"yardstick", hexfloat(x.yardstick)},
           {"variant", hexfloat(x.variant)},
           {"grid", x.grid},
           {"ulps", x.ulps},
           {"differing_elements", x.differing_elements},
           {"differing_outputs", x.differing_outputs}};
    }
    vs.push_back({{"mode", v.mode},
                  {"variant", v.variant},
                  {"outputs", v.compared},
                  {"sha256", v.sha256},
                  {"identical", v.skipped ? nlohmann::json(nullptr) : nlohmann::json(!v.mismatch.has_value())},
                  {"skipped", v.skipped},
                  {"first_mismatch", m},
                  {"note", v.note},
                  {"seconds", v.seconds}});
  }
  j["variants"] = vs;
  return j;
}

}  // namespace dsv4::audit
