// `dsv4 audit --dumps` (dump_audit.hpp; issue 17 item 2).
#include "dsv4/audit/dump_audit.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "dsv4/audit/self_audit.hpp"
#include "dsv4/compare/ulp.hpp"
#include "dsv4/diff/dump_getters.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/tensor_source.hpp"
#include "dsv4/model/output_table.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4::audit {

DumpManifest read_dump_manifest(const std::string& dump) {
  const std::string where = dump + ".audit.json";
  std::ifstream in(where);
  if (!in) throw InputError(where, "cannot read the dump's audit manifest (oracle/README.md, Audit)");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw InputError(where, "a manifest is an object {run, sequences, schedule}");
  DumpManifest m;
  m.path = dump;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    if (k == "run" && v.is_string()) {
      m.run = v.get<std::string>();
    } else if (k == "schedule" && v.is_string() && (v == "incremental" || v == "prefill")) {
      m.incremental = v == "incremental";
    } else if (k == "sequences" && v.is_array() && !v.empty() && v.size() <= 4096) {
      for (const auto& s : v) {
        if (!s.is_null() && !s.is_string()) throw InputError(where, "\"sequences\" holds ids (strings) or null");
        m.sequences.push_back(s.is_null() ? "" : s.get<std::string>());
      }
    } else {
      throw InputError(where, "unexpected key or value '" + k +
                                  "' (expected run: string, sequences: [id or null, …], schedule: "
                                  "\"incremental\" or \"prefill\")");
    }
  }
  if (m.sequences.empty()) throw InputError(where, "\"sequences\" is missing");
  return m;
}

namespace {

struct Dump {
  DumpManifest m;
  std::unique_ptr<TensorSource> src;
  std::vector<std::string> names;  // canonical names in execution order
};

struct Occurrence {
  const Dump* d = nullptr;
  std::int64_t row = 0;
  std::string label() const {
    return d->m.path + " row " + std::to_string(row) + " (batch " + std::to_string(d->m.sequences.size()) + ", " +
           (d->m.incremental ? "incremental" : "prefill") + ", run " + d->m.run + ")";
  }
};

// Values of one batch row (or one position of it), widened to double, and their number format.
struct Slice {
  std::vector<double> v;
  DType grid = DType::kF64;
};

// One tensor of a dump as read, compared as stored: the bytes of a batch row (or of one position
// of it) first; only a row whose bytes differ is widened to double (diff::recorded_from_tensor) for
// the count, the ULP histogram and the first differing element.
class Stored {
 public:
  // Reads `name` of `d` into this object's buffer (reused from tensor to tensor).
  void read(const Dump& d, const std::string& name) {
    d.src->read_into(name, t_);
    name_ = name;
    where_ = d.src->path() + ": " + name;
    dump_ = &d;
    widened_.reset();
    switch (t_.dtype()) {
      case DType::kF64:
      case DType::kF32:
      case DType::kBF16:
      case DType::kI64:
      case DType::kI32:
        break;
      default:
        widen();  // InputError: not a float or integer output
    }
    shape_ = diff::batched_shape(t_.shape(), where_);
  }
  // Elements [first, first + count) of batch row b (pos ≥ 0: of position pos only); nullopt when
  // the row has no such position. InputError for a row past the batch.
  struct Span {
    std::size_t first = 0, count = 0;
  };
  std::optional<Span> row(std::int64_t b, std::int64_t pos = -1) const {
    if (b >= shape_[0])
      throw InputError(dump_->src->path(), name_ + ": batch " + std::to_string(shape_[0]) + " has no row " +
                                               std::to_string(b) + " (the manifest lists " +
                                               std::to_string(dump_->m.sequences.size()) + ")");
    const auto per = static_cast<std::size_t>(shape_[1] * shape_[2]);
    Span s{static_cast<std::size_t>(b) * per, per};
    if (pos < 0) return s;
    if (pos >= shape_[1]) return std::nullopt;
    const auto cols = static_cast<std::size_t>(shape_[2]);
    return Span{s.first + static_cast<std::size_t>(pos) * cols, cols};
  }
  bool same_bytes(Span a, const Stored& o, Span b) const {
    if (t_.dtype() != o.t_.dtype() || a.count != b.count) return false;
    const std::size_t es = dtype_size(t_.dtype());
    return std::memcmp(t_.bytes() + a.first * es, o.t_.bytes() + b.first * es, a.count * es) == 0;
  }
  // True when both tensors are stored in one IEEE float format whose bits stored_compare reads.
  bool stored_float_pair(const Stored& o) const {
    const DType d = t_.dtype();
    return d == o.t_.dtype() && (d == DType::kF64 || d == DType::kF32 || d == DType::kBF16);
  }
  DType dtype() const { return t_.dtype(); }
  const std::byte* element(Span s, std::size_t i) const { return t_.bytes() + (s.first + i) * dtype_size(t_.dtype()); }
  Slice values(Span s) {
    const RecordedTensor& r = widen();
    Slice out;
    out.grid = r.integral ? DType::kI64 : t_.dtype();
    out.v.assign(r.values.begin() + static_cast<std::ptrdiff_t>(s.first),
                 r.values.begin() + static_cast<std::ptrdiff_t>(s.first + s.count));
    return out;
  }

 private:
  const RecordedTensor& widen() {
    if (!widened_) widened_ = diff::recorded_from_tensor(t_, where_);
    return *widened_;
  }
  Tensor t_;
  std::string name_, where_;
  const Dump* dump_ = nullptr;
  std::vector<std::int64_t> shape_;
  std::optional<RecordedTensor> widened_;
};

// Compares one pair of widened slices (their bytes differ).
std::optional<TensorMove> compare(const std::string& name, const Slice& a, const Slice& b) {
  return tensor_move(name, a.v, b.v, a.grid);
}

// The value of one stored fp64 / fp32 / bf16 element.
double stored_value(DType d, const std::byte* p) {
  if (d == DType::kF64) {
    double v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  if (d == DType::kF32) {
    float v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  std::uint16_t b = 0;
  std::memcpy(&b, p, sizeof b);
  return bf16_to_float(b);
}

// compare() on two spans stored in the same IEEE float format (U: its bit pattern's integer type),
// read as stored: elements differ when their bit patterns do, and the ULP distance is the
// difference of their stored ordinals (compare::stored_pattern_ordinal; equal to
// compare::ulp_distance in that format, without widening the tensor to double). Only the first
// differing element is decoded.
template <class U>
std::optional<TensorMove> stored_compare(const std::string& name, DType d, const std::byte* ya, const std::byte* ob,
                                         std::size_t count) {
  TensorMove m;
  m.name = name;
  m.elements = static_cast<std::int64_t>(count);
  std::array<std::int64_t, kUlpBins> hist{};  // local counters: the loop runs over every element
  std::int64_t differing = 0;
  for (std::size_t i = 0; i < count; ++i) {
    U a = 0, b = 0;
    std::memcpy(&a, ya + i * sizeof(U), sizeof(U));
    std::memcpy(&b, ob + i * sizeof(U), sizeof(U));
    if (a == b) continue;
    if (differing++ == 0) {
      m.first_element = static_cast<std::int64_t>(i);
      m.yardstick = stored_value(d, ya + i * sizeof(U));
      m.other = stored_value(d, ob + i * sizeof(U));
    }
    const std::int64_t oa = compare::stored_pattern_ordinal(a), obo = compare::stored_pattern_ordinal(b);
    const bool nan = oa == compare::kNaNOrdinal || obo == compare::kNaNOrdinal;
    const std::uint64_t u = nan ? std::numeric_limits<std::uint64_t>::max()
                                : static_cast<std::uint64_t>(std::max(oa, obo) - std::min(oa, obo));
    ++hist[static_cast<std::size_t>(ulp_bin(u))];
  }
  if (differing == 0) return std::nullopt;
  m.differing = differing;
  m.ulp_hist = hist;
  return m;
}

std::optional<TensorMove> stored_compare(const std::string& name, const Stored& y, Stored::Span a, const Stored& o,
                                         Stored::Span b) {
  const DType d = y.dtype();
  const std::byte* pa = y.element(a, 0);
  const std::byte* pb = o.element(b, 0);
  if (d == DType::kF64) return stored_compare<std::uint64_t>(name, d, pa, pb, a.count);
  if (d == DType::kF32) return stored_compare<std::uint32_t>(name, d, pa, pb, a.count);
  return stored_compare<std::uint16_t>(name, d, pa, pb, a.count);
}

// One tensor of an occurrence against the yardstick's (a span absent: that occurrence lacks it).
void tally(OccurrenceResult& r, const std::string& name, Stored& y, std::optional<Stored::Span> a, Stored* o,
           std::optional<Stored::Span> b) {
  if (!a || !b || o == nullptr) {
    ++r.missing;
    return;
  }
  ++r.compared;
  if (y.same_bytes(*a, *o, *b)) return;
  std::optional<TensorMove> m = y.stored_float_pair(*o) && a->count == b->count
                                    ? stored_compare(name, y, *a, *o, *b)
                                    : compare(name, y.values(*a), o->values(*b));
  if (m) r.moved.push_back(*m);
}

// A comparison to make: the yardstick and the other occurrence, and where its result goes.
struct Planned {
  Occurrence y, o;
  OccurrenceResult* result = nullptr;
};

OccurrenceResult header(const std::string& seq, const Occurrence& y, const Occurrence& o) {
  OccurrenceResult r;
  r.sequence = seq;
  r.yardstick = y.label();
  r.other = o.label();
  if (y.d->m.incremental != o.d->m.incremental) {
    r.kind = "prefill/decode variance";
  } else {
    const bool same_place = y.row == o.row && y.d->m.sequences.size() == o.d->m.sequences.size();
    r.kind = same_place ? "run-to-run nondeterminism" : "batch variance";
  }
  return r;
}

// Every comparison whose two occurrences share a schedule and whose yardstick lies in `y`: each
// tensor of y read once, each other dump's tensor of that name once, then every row pair compared.
void compare_same_schedule(const Dump& y, const std::vector<Planned>& plans) {
  std::vector<const Dump*> others;
  for (const Planned& p : plans)
    if (std::find(others.begin(), others.end(), p.o.d) == others.end()) others.push_back(p.o.d);
  Stored ys, os;
  for (const std::string& name : y.names) {
    ys.read(y, name);
    for (const Dump* other : others) {
      const bool has = other->src->contains(name);
      if (has) os.read(*other, name);
      for (const Planned& p : plans) {
        if (p.o.d != other) continue;
        tally(*p.result, name, ys, ys.row(p.y.row), has ? &os : nullptr,
              has ? os.row(p.o.row) : std::optional<Stored::Span>());
      }
    }
  }
}

// Prefill against incremental: decode step i is position p + i of the prefill (p: the incremental
// dump's prefill length), on the position-wise outputs of the main layers. Each prefill tensor is
// read once for all decode steps; the moves are put back in execution order.
void compare_prefill_decode(const Planned& plan, std::int64_t window, std::vector<std::string>& notes) {
  OccurrenceResult& r = *plan.result;
  const Occurrence& inc = plan.y.d->m.incremental ? plan.y : plan.o;
  const Occurrence& pre = plan.y.d->m.incremental ? plan.o : plan.y;
  std::int64_t p = -1;
  for (const std::string& name : inc.d->names) {
    const std::optional<OutputRef> ref = describe_output(name);
    if (ref && ref->step == "prefill" && ref->module == "embed") {
      const Tensor t = inc.d->src->read(name);
      p = t.shape().size() >= 2 ? t.shape()[t.shape().size() - 2] : -1;
    }
  }
  if (p < 0) {
    for (const std::string& name : inc.d->names)
      if (name.rfind("prefill/", 0) == 0) {
        const Tensor t = inc.d->src->read(name);
        if (t.shape().size() >= 2) p = t.shape()[t.shape().size() - 2];
        break;
      }
  }
  // block-relative name → (decode step i, canonical name, execution rank) of the incremental dump.
  struct Use {
    std::int64_t step = 0;
    std::string name;
    std::size_t rank = 0;
  };
  std::map<std::string, std::vector<Use>> uses;
  for (std::size_t k = 0; k < inc.d->names.size(); ++k) {
    const std::string& name = inc.d->names[k];
    const std::optional<OutputRef> ref = describe_output(name);
    if (!ref || ref->step.rfind("decode", 0) != 0 || ref->block < 0) continue;
    const std::string block_rel = name.substr(name.find('/') + 1);
    const std::string prefix = "layers." + std::to_string(ref->block);
    if (block_rel.rfind(prefix, 0) != 0) continue;
    const std::string rel = block_rel.substr(prefix.size());
    const auto& pw = positionwise_outputs();
    if (std::find(pw.begin(), pw.end(), rel) == pw.end()) continue;
    uses[block_rel].push_back({step_rank(ref->step) - 1, name, k});
  }
  std::vector<std::pair<std::size_t, TensorMove>> moved;
  Stored is, ps;
  std::int64_t first_excluded = -1, last_excluded = -1;
  for (auto& [block_rel, list] : uses) {
    // spec 02 §2.11.4: below position n_win − 1 prefill and decode may differ.
    std::erase_if(list, [&](const Use& u) {
      const std::int64_t t = p + u.step;
      if (window <= 0 || t >= window - 1) return false;
      ++r.excluded;
      first_excluded = first_excluded < 0 ? t : std::min(first_excluded, t);
      last_excluded = std::max(last_excluded, t);
      return true;
    });
    if (list.empty()) continue;
    const std::string pre_name = "prefill/" + block_rel;
    const bool has = pre.d->src->contains(pre_name);
    if (has) ps.read(*pre.d, pre_name);
    for (const Use& u : list) {
      is.read(*inc.d, u.name);
      const std::size_t before = r.moved.size();
      tally(r, u.name, is, is.row(inc.row), has ? &ps : nullptr,
            has ? ps.row(pre.row, p + u.step) : std::optional<Stored::Span>());
      if (r.moved.size() > before) {
        moved.emplace_back(u.rank, std::move(r.moved.back()));
        r.moved.pop_back();
      }
    }
  }
  if (r.excluded > 0)
    notes.push_back("sequence " + r.sequence + ": " + r.other + " against " + r.yardstick + ": positions " +
                    std::to_string(first_excluded) + "…" + std::to_string(last_excluded) + " (" +
                    std::to_string(r.excluded) + " tensors) excluded: below window_size − 1 = " +
                    std::to_string(window - 1) + ", where spec 02 §2.11.4 lets prefill and decode differ");
  std::sort(moved.begin(), moved.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [rank, m] : moved) r.moved.push_back(std::move(m));
}

}  // namespace

bool DumpAuditReport::pass() const {
  if (comparisons.empty()) return false;
  for (const OccurrenceResult& c : comparisons)
    if (!c.moved.empty() || (c.compared == 0 && c.excluded == 0)) return false;
  return true;
}

DumpAuditReport audit_dumps(const std::vector<std::string>& paths, std::int64_t window_size) {
  if (paths.size() < 2) throw InputError("--dumps", "needs at least two dumps to compare");
  std::vector<Dump> dumps;
  dumps.reserve(paths.size());
  DumpAuditReport rep;
  for (const std::string& p : paths) {
    Dump d;
    d.m = read_dump_manifest(p);
    d.src = TensorSource::open(p);
    for (const std::string& n : d.src->names()) {
      const std::optional<OutputRef> ref = describe_output(n);
      if (!ref) continue;
      d.names.push_back(n);
      if (ref->module.rfind("layers.", 0) == 0) rep.layers = std::max(rep.layers, ref->block + 1);
    }
    sort_in_execution_order(d.names);
    dumps.push_back(std::move(d));
  }
  // Occurrences per sequence id; the yardstick first (an incremental one when there is one).
  std::map<std::string, std::vector<Occurrence>> by_seq;
  for (const Dump& d : dumps)
    for (std::size_t r = 0; r < d.m.sequences.size(); ++r)
      if (!d.m.sequences[r].empty()) by_seq[d.m.sequences[r]].push_back({&d, static_cast<std::int64_t>(r)});
  std::vector<std::pair<Occurrence, Occurrence>> pairs;
  for (auto& [seq, occ] : by_seq) {
    std::stable_partition(occ.begin(), occ.end(), [](const Occurrence& o) { return o.d->m.incremental; });
    if (occ.size() < 2) {
      rep.notes.push_back("sequence " + seq + " occurs once (" + occ.front().label() + "): nothing to compare");
      continue;
    }
    for (std::size_t k = 1; k < occ.size(); ++k) {
      rep.comparisons.push_back(header(seq, occ[0], occ[k]));
      pairs.emplace_back(occ[0], occ[k]);
    }
  }
  // Same-schedule comparisons grouped by their yardstick's dump (each dump read once per group);
  // prefill/decode comparisons one by one.
  std::map<const Dump*, std::vector<Planned>> same;
  for (std::size_t k = 0; k < pairs.size(); ++k) {
    const Planned p{pairs[k].first, pairs[k].second, &rep.comparisons[k]};
    if (p.y.d->m.incremental == p.o.d->m.incremental) {
      same[p.y.d].push_back(p);
    } else {
      compare_prefill_decode(p, window_size, rep.notes);
    }
  }
  for (const Dump& d : dumps)
    if (auto it = same.find(&d); it != same.end()) compare_same_schedule(d, it->second);
  return rep;
}

namespace {
std::string hist_text(const TensorMove& m) {
  static const char* kLabels[kUlpBins] = {"<=1", "2", "3-4", "5-16", "17-256", ">256"};
  std::string s;
  for (int b = 0; b < kUlpBins; ++b)
    if (m.ulp_hist[static_cast<std::size_t>(b)] > 0)
      s += (s.empty() ? "" : ", ") + std::string(kLabels[b]) +
           " ulp: " + std::to_string(m.ulp_hist[static_cast<std::size_t>(b)]);
  return s;
}
std::string hexfloat(double x) {
  char b[64];
  std::snprintf(b, sizeof b, "%a", x);
  return b;
}
}  // namespace

std::string dump_audit_text(const DumpAuditReport& r) {
  std::string o = "audit --dumps: " + std::string(r.pass() ? "PASS" : "FAIL");
  for (const OccurrenceResult& c : r.comparisons)
    if (!c.moved.empty()) {
      o += " — " + c.kind + ": first tensor whose bits move: " + c.moved.front().name;
      break;
    }
  o += "\n";
  for (const OccurrenceResult& c : r.comparisons) {
    o += "\nsequence " + c.sequence + ": " + c.other + "\n  against " + c.yardstick + "\n  " +
         std::to_string(c.compared) + " tensors compared, " + std::to_string(c.moved.size()) + " move" +
         (c.missing ? ", " + std::to_string(c.missing) + " missing" : "") +
         (c.excluded ? ", " + std::to_string(c.excluded) + " excluded (spec 02 §2.11.4)" : "") + "\n";
    if (c.moved.empty()) {
      o += c.compared > 0 ? "  bit-identical\n" : "  nothing compared\n";
      continue;
    }
    const TensorMove& m = c.moved.front();
    o += "  " + c.kind + " — cause: " + m.name + ": " + std::to_string(m.differing) + " of " +
         std::to_string(m.elements) + " elements differ (" + hist_text(m) + "), first at element " +
         std::to_string(m.first_element) + ": " + hexfloat(m.yardstick) + " vs " + hexfloat(m.other) + "\n";
    if (c.moved.size() > 1)
      o += "  consequences: " + std::to_string(c.moved.size() - 1) + " later tensors move (first " + c.moved[1].name +
           ")\n";
  }
  for (const std::string& n : r.notes) o += "\nnote: " + n + "\n";
  return o;
}

nlohmann::json dump_audit_json(const DumpAuditReport& r) {
  nlohmann::json j;
  j["schema"] = "dsv4-audit-dumps/1";
  j["verdict"] = r.pass() ? "PASS" : "FAIL";
  nlohmann::json cs = nlohmann::json::array();
  for (const OccurrenceResult& c : r.comparisons) {
    nlohmann::json moved = nlohmann::json::array();
    for (std::size_t k = 0; k < c.moved.size(); ++k) {
      const TensorMove& m = c.moved[k];
      moved.push_back({{"name", m.name},
                       {"role", k == 0 ? "cause" : "consequence"},
                       {"elements", m.elements},
                       {"differing", m.differing},
                       {"ulp_histogram", m.ulp_hist},
                       {"first_element", m.first_element},
                       {"yardstick", hexfloat(m.yardstick)},
                       {"other", hexfloat(m.other)}});
    }
    cs.push_back({{"sequence", c.sequence},
                  {"yardstick", c.yardstick},
                  {"other", c.other},
                  {"kind", c.kind},
                  {"compared", c.compared},
                  {"missing", c.missing},
                  {"excluded", c.excluded},
                  {"moved", moved}});
  }
  j["comparisons"] = cs;
  j["notes"] = r.notes;
  return j;
}

}  // namespace dsv4::audit
