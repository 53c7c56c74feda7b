// `dsv4 audit --dumps` (dump_audit.hpp; issue 17 item 2).
#include "dsv4/audit/dump_audit.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
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

// Values of batch row b (or only position `pos` of it) of a tensor, and its number format.
struct Slice {
  std::vector<double> v;
  DType grid = DType::kF64;
};

std::optional<Slice> slice(const Dump& d, const std::string& name, std::int64_t b, std::int64_t pos = -1) {
  if (!d.src->contains(name)) return std::nullopt;
  const Tensor t = d.src->read(name);
  const RecordedTensor r = diff::recorded_from_tensor(t, d.src->path() + ": " + name);
  const auto batch = static_cast<std::size_t>(r.shape.front());
  if (static_cast<std::size_t>(b) >= batch)
    throw InputError(d.src->path(), name + ": batch " + std::to_string(batch) + " has no row " + std::to_string(b) +
                                        " (the manifest lists " + std::to_string(d.m.sequences.size()) + ")");
  const std::size_t per = r.values.size() / batch;
  Slice s;
  s.grid = r.integral ? DType::kI64 : t.dtype();
  auto first = r.values.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(b) * per);
  if (pos < 0) {
    s.v.assign(first, first + static_cast<std::ptrdiff_t>(per));
  } else {
    const auto cols = static_cast<std::size_t>(r.shape.back());
    if (static_cast<std::size_t>(pos + 1) * cols > per) return std::nullopt;
    first += static_cast<std::ptrdiff_t>(static_cast<std::size_t>(pos) * cols);
    s.v.assign(first, first + static_cast<std::ptrdiff_t>(cols));
  }
  return s;
}

int ulp_bin(std::uint64_t u) {
  if (u <= 1) return 0;
  if (u == 2) return 1;
  if (u <= 4) return 2;
  if (u <= 16) return 3;
  if (u <= 256) return 4;
  return 5;
}

// Compares one pair; returns nullopt when the bits are identical.
std::optional<TensorMove> compare(const std::string& name, const Slice& a, const Slice& b) {
  TensorMove m;
  m.name = name;
  m.elements = static_cast<std::int64_t>(a.v.size());
  const bool floats = a.grid != DType::kI64 && a.grid != DType::kI32;
  for (std::size_t i = 0; i < std::max(a.v.size(), b.v.size()); ++i) {
    const bool both = i < a.v.size() && i < b.v.size();
    if (both && double_bits(a.v[i]) == double_bits(b.v[i])) continue;
    ++m.differing;
    if (m.first_element < 0) {
      m.first_element = static_cast<std::int64_t>(i);
      m.yardstick = i < a.v.size() ? a.v[i] : std::nan("");
      m.other = i < b.v.size() ? b.v[i] : std::nan("");
    }
    std::uint64_t u = std::numeric_limits<std::uint64_t>::max();
    if (both && !std::isnan(a.v[i]) && !std::isnan(b.v[i])) {
      u = floats ? compare::ulp_distance(compare::ulp_grid(a.grid), b.v[i], a.v[i])
                 : static_cast<std::uint64_t>(std::fabs(a.v[i] - b.v[i]));
    }
    ++m.ulp_hist[static_cast<std::size_t>(ulp_bin(u))];
  }
  if (m.differing == 0) return std::nullopt;
  return m;
}

// One tensor of an occurrence against the yardstick's (b absent: the occurrence lacks it).
void tally(OccurrenceResult& r, const std::string& name, const std::optional<Slice>& a, const std::optional<Slice>& b) {
  if (!a || !b) {
    ++r.missing;
    return;
  }
  ++r.compared;
  if (auto m = compare(name, *a, *b)) r.moved.push_back(*m);
}

OccurrenceResult compare_occurrences(const std::string& seq, const Occurrence& y, const Occurrence& o) {
  OccurrenceResult r;
  r.sequence = seq;
  r.yardstick = y.label();
  r.other = o.label();
  if (y.d->m.incremental == o.d->m.incremental) {
    const bool same_place = y.row == o.row && y.d->m.sequences.size() == o.d->m.sequences.size();
    r.kind = same_place ? "run-to-run nondeterminism" : "batch variance";
    for (const std::string& name : y.d->names) tally(r, name, slice(*y.d, name, y.row), slice(*o.d, name, o.row));
    return r;
  }
  // Prefill against incremental: decode step i is position p + i of the prefill.
  r.kind = "prefill/decode variance";
  const Occurrence& inc = y.d->m.incremental ? y : o;
  const Occurrence& pre = y.d->m.incremental ? o : y;
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
  for (const std::string& name : inc.d->names) {
    const std::optional<OutputRef> ref = describe_output(name);
    if (!ref || ref->step.rfind("decode", 0) != 0 || ref->block < 0) continue;
    const std::string block_rel = name.substr(name.find('/') + 1);
    const std::string prefix = "layers." + std::to_string(ref->block);
    if (block_rel.rfind(prefix, 0) != 0) continue;
    const std::string rel = block_rel.substr(prefix.size());
    const auto& pw = positionwise_outputs();
    if (std::find(pw.begin(), pw.end(), rel) == pw.end()) continue;
    const std::int64_t i = step_rank(ref->step) - 1;
    tally(r, name, slice(*inc.d, name, inc.row), slice(*pre.d, "prefill/" + block_rel, pre.row, p + i));
  }
  return r;
}

}  // namespace

bool DumpAuditReport::pass() const {
  if (comparisons.empty()) return false;
  for (const OccurrenceResult& c : comparisons)
    if (!c.moved.empty() || c.compared == 0) return false;
  return true;
}

DumpAuditReport audit_dumps(const std::vector<std::string>& paths) {
  if (paths.size() < 2) throw InputError("--dumps", "needs at least two dumps to compare");
  std::vector<Dump> dumps;
  dumps.reserve(paths.size());
  for (const std::string& p : paths) {
    Dump d;
    d.m = read_dump_manifest(p);
    d.src = TensorSource::open(p);
    for (const std::string& n : d.src->names())
      if (describe_output(n)) d.names.push_back(n);
    sort_in_execution_order(d.names);
    dumps.push_back(std::move(d));
  }
  // Occurrences per sequence id; the yardstick first (an incremental one when there is one).
  std::map<std::string, std::vector<Occurrence>> by_seq;
  for (const Dump& d : dumps)
    for (std::size_t r = 0; r < d.m.sequences.size(); ++r)
      if (!d.m.sequences[r].empty()) by_seq[d.m.sequences[r]].push_back({&d, static_cast<std::int64_t>(r)});
  DumpAuditReport rep;
  for (auto& [seq, occ] : by_seq) {
    std::stable_partition(occ.begin(), occ.end(), [](const Occurrence& o) { return o.d->m.incremental; });
    if (occ.size() < 2) {
      rep.notes.push_back("sequence " + seq + " occurs once (" + occ.front().label() + "): nothing to compare");
      continue;
    }
    for (std::size_t k = 1; k < occ.size(); ++k) rep.comparisons.push_back(compare_occurrences(seq, occ[0], occ[k]));
  }
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
         (c.missing ? ", " + std::to_string(c.missing) + " missing" : "") + "\n";
    if (c.moved.empty()) {
      o += "  bit-identical\n";
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
                  {"moved", moved}});
  }
  j["comparisons"] = cs;
  j["notes"] = r.notes;
  return j;
}

}  // namespace dsv4::audit
