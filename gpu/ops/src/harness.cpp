// The registry's harness (dsv4/ops/harness.hpp).
#include "dsv4/ops/harness.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <set>

#include "dsv4/numerics/formats.hpp"

namespace dsv4::ops {
namespace {

bool same_element(const Array& a, const Array& b, std::size_t i) {
  if (a.dtype == DType::kU8) return a.u8[i] == b.u8[i];
  return float_bits(a.f32[i]) == float_bits(b.f32[i]);
}

std::string element_text(const Array& a, std::size_t i) {
  char buf[96];
  if (a.dtype == DType::kU8) {
    std::snprintf(buf, sizeof buf, "0x%02x", a.u8[i]);
  } else {
    std::snprintf(buf, sizeof buf, "%a (0x%08x)", static_cast<double>(a.f32[i]), float_bits(a.f32[i]));
  }
  return buf;
}

std::string structure(const Array& a) {
  return a.name + " " + dtype_name(a.dtype) + " [" + std::to_string(a.rows) + ", " + std::to_string(a.cols) + "]";
}

std::string structure(const Outputs& out) {
  std::string s;
  for (const Array& a : out) s += (s.empty() ? "" : ", ") + structure(a);
  return s.empty() ? "no outputs" : s;
}

// One failed check of a line: counts it and keeps the first message.
void record_failure(SelfCheckLine& line, const std::string& message) {
  if (line.failures++ == 0) line.first_failure = message;
}

// impl(call), with an exception turned into a failure message.
bool run(const Fn& impl, const Call& call, Outputs& out, std::string& error) {
  try {
    out = impl(call);
    return true;
  } catch (const std::exception& e) {
    error = std::string("threw: ") + e.what();
    return false;
  }
}

// A batch of `size` rows with row `row` of `c` at position `at`; the other rows are taken
// cyclically from `fill` (a call with the same shared inputs and per-row columns).
Call placed(const Call& c, std::int64_t row, const Call& fill, std::int64_t size, std::int64_t at) {
  const std::int64_t fill_rows = fill.rows();
  Call batch = c.slice(0, 0);
  for (std::int64_t p = 0; p < size; ++p) {
    if (p == at) {
      batch.append_row(c, row);
    } else {
      batch.append_row(fill, (p * 7 + 1) % fill_rows);
    }
  }
  return batch;
}

// The case's own rows in reverse order (other contents for the companions of a one-seed check).
Call reversed(const Call& c) {
  Call r = c.slice(0, 0);
  for (std::int64_t p = c.rows() - 1; p >= 0; --p) r.append_row(c, p);
  return r;
}

std::int64_t row_elements(const Call& c) {
  std::int64_t e = 0;
  for (const Array& a : c.inputs) e += a.per_row ? a.cols : 0;
  return e;
}

std::string line_what(const Op& op, const std::string& check) { return op.stem + ": " + check; }

}  // namespace

std::string Mismatch::text() const {
  if (row < 0) return "outputs differ in structure: got " + got + ", want " + want;
  return output + "[row " + std::to_string(row) + ", col " + std::to_string(col) + "]: got " + got + ", want " + want +
         " (" + std::to_string(differing) + " of " + std::to_string(total) + " elements differ)";
}

std::optional<Mismatch> first_mismatch(const Outputs& got, const Outputs& want) {
  if (structure(got) != structure(want)) {
    Mismatch m;
    m.got = structure(got);
    m.want = structure(want);
    return m;
  }
  for (std::size_t k = 0; k < got.size(); ++k) {
    const Array& g = got[k];
    const Array& w = want[k];
    const std::size_t n = static_cast<std::size_t>(g.elements());
    std::optional<Mismatch> m;
    for (std::size_t i = 0; i < n; ++i) {
      if (same_element(g, w, i)) continue;
      if (!m) {
        m = Mismatch{};
        m->output = g.name;
        m->row = static_cast<std::int64_t>(i) / std::max<std::int64_t>(g.cols, 1);
        m->col = static_cast<std::int64_t>(i) % std::max<std::int64_t>(g.cols, 1);
        m->got = element_text(g, i);
        m->want = element_text(w, i);
        m->total = g.elements();
      }
      ++m->differing;
    }
    if (m) return m;
  }
  return std::nullopt;
}

Outputs output_row(const Outputs& out, std::int64_t row) {
  Outputs r;
  for (const Array& a : out) r.push_back(a.slice(row, 1));
  return r;
}

SelfCheckLine check_matches_reference(const Op& op, const Fn& impl, const std::vector<Case>& cases) {
  SelfCheckLine line;
  line.what = line_what(op, "bits == reference");
  for (const Case& c : cases) {
    ++line.cases;
    Outputs got, want;
    std::string error;
    if (!run(op.reference, c.call, want, error)) {
      record_failure(line, c.label + ": reference " + error);
      continue;
    }
    if (!run(impl, c.call, got, error)) {
      record_failure(line, c.label + ": " + error);
      continue;
    }
    if (const auto m = first_mismatch(got, want)) record_failure(line, c.label + ": " + m->text());
  }
  return line;
}

SelfCheckLine check_batch_invariance(const Op& op, const Fn& impl, const std::vector<Case>& cases,
                                     const std::vector<Case>& others, const HarnessOptions& opt) {
  SelfCheckLine line;
  line.what = line_what(op, "batch-invariant (batches 1..512, any row)");
  for (std::size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    const std::int64_t rows = c.call.rows();
    if (rows == 0) continue;
    const Call own_fill = reversed(c.call);
    const Call& other_fill = ci < others.size() && others[ci].call.rows() > 0 ? others[ci].call : own_fill;
    const std::int64_t per_row = row_elements(c.call);
    for (const std::int64_t row : std::set<std::int64_t>{0, rows - 1}) {
      Outputs alone;
      std::string error;
      if (!run(impl, c.call.slice(row, 1), alone, error)) {
        record_failure(line, c.label + " row " + std::to_string(row) + " alone: " + error);
        continue;
      }
      int variant = 0;
      for (const std::int64_t size : opt.batch_sizes) {
        if (size * per_row > opt.max_batch_elements) continue;
        for (const std::int64_t at : std::set<std::int64_t>{0, 3, 63, size - 1}) {
          if (at >= size) continue;
          ++line.cases;
          const Call& fill = variant++ % 2 == 0 ? other_fill : own_fill;
          Outputs in_batch;
          const Fn in_place = [&](const Call& call) { return impl(placed(call, row, fill, size, at)); };
          if (!run(in_place, c.call, in_batch, error)) {
            record_failure(line, c.label + " batch " + std::to_string(size) + ": " + error);
            continue;
          }
          if (const auto m = first_mismatch(output_row(in_batch, at), alone)) {
            record_failure(line, c.label + ": row " + std::to_string(row) + " at position " + std::to_string(at) +
                                     " of a batch of " + std::to_string(size) + " vs alone: " + m->text());
          }
        }
      }
    }
  }
  return line;
}

SelfCheckLine check_reruns(const Op& op, const Fn& impl, const std::vector<Case>& cases, const HarnessOptions& opt) {
  SelfCheckLine line;
  line.what = line_what(op, std::to_string(opt.reruns) + " reruns bit-identical");
  for (const Case& c : cases) {
    ++line.cases;
    Outputs first;
    std::string error;
    if (!run(impl, c.call, first, error)) {
      record_failure(line, c.label + ": " + error);
      continue;
    }
    for (int k = 1; k < opt.reruns; ++k) {
      Outputs again;
      if (!run(impl, c.call, again, error)) {
        record_failure(line, c.label + " rerun " + std::to_string(k) + ": " + error);
        break;
      }
      if (const auto m = first_mismatch(again, first)) {
        record_failure(line, c.label + ": rerun " + std::to_string(k) + " vs the first run: " + m->text());
        break;
      }
    }
  }
  return line;
}

std::vector<SelfCheckLine> check_op(const Op& op, const Fn& impl, const std::string& impl_name, bool against_reference,
                                    const HarnessOptions& opt) {
  const std::vector<Case> cases = op.cases(opt.seed);
  const std::vector<Case> others = op.cases(opt.seed + 1);
  std::vector<SelfCheckLine> lines;
  if (against_reference) lines.push_back(check_matches_reference(op, impl, cases));
  lines.push_back(check_batch_invariance(op, impl, cases, others, opt));
  lines.push_back(check_reruns(op, impl, cases, opt));
  for (SelfCheckLine& l : lines) l.what = impl_name + " " + l.what;
  return lines;
}

}  // namespace dsv4::ops
