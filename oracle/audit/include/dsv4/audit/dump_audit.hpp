// `dsv4 audit --dumps D1 D2 …`: a foreign engine's reproducibility (issue 17 item 2). Each dump
// holds one batch of one run, every module output under its canonical name (any candidate format),
// and is described by a manifest beside it, "<dump>.audit.json":
//
//   {"run": "r1",                    any label: dumps with the same label come from one process run
//    "sequences": ["A", null, "B"],  the sequence id at each batch row (null: a row not audited)
//    "schedule": "incremental"}      "incremental": a prefill then one token per decode step
//                                    (steps prefill, decode0, …); "prefill": the whole sequence in
//                                    one prefill step
//
// The first occurrence of each sequence (an incremental one when there is one) is its yardstick;
// every other occurrence is compared with it, tensor by tensor in execution order, bit for bit: how
// many elements differ, their ULP histogram (in the stored format), and the first tensor whose
// bits move — the cause; later tensors that move are its consequences. Classification: the same
// batch size and row in another dump → run-to-run nondeterminism; another batch size or row →
// batch variance; prefill against incremental → prefill/decode variance, compared on the
// position-wise outputs only (audit::positionwise_outputs), decode step i against prefill
// position p + i (p: the incremental dump's prefill length). With the model's window_size n_win
// known, decode positions below n_win − 1 are excluded and said so: spec 02 §2.11.4 lets a prefill
// and the decode steps differ there (the window part has another width, so compressed indices fall
// into other chunks).
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsv4/audit/tensor_move.hpp"

namespace dsv4::audit {

struct DumpManifest {
  std::string path;  // the dump
  std::string run;
  std::vector<std::string> sequences;  // per batch row; "" = not audited
  bool incremental = true;
};
// Reads "<dump>.audit.json"; InputError naming the manifest for a missing or malformed one.
DumpManifest read_dump_manifest(const std::string& dump);

struct OccurrenceResult {
  std::string sequence;
  std::string yardstick;  // "<dump> row r (batch b)"
  std::string other;
  std::string kind;  // "run-to-run nondeterminism", "batch variance", "prefill/decode variance"
  std::int64_t compared = 0;
  std::vector<TensorMove> moved;  // execution order; moved.front() is the cause
  std::int64_t missing = 0;       // tensors of the yardstick the other occurrence lacks
  std::int64_t excluded = 0;      // prefill/decode: tensors at positions spec 02 §2.11.4 lets differ
};

struct DumpAuditReport {
  std::vector<OccurrenceResult> comparisons;
  std::vector<std::string> notes;
  std::int64_t layers = 0;  // main layers seen in the dumps' names (the SVG's x range)
  bool pass() const;
};

// window_size: the model's sliding window (0: unknown, no position excluded).
DumpAuditReport audit_dumps(const std::vector<std::string>& dumps, std::int64_t window_size = 0);
std::string dump_audit_text(const DumpAuditReport& r);
nlohmann::json dump_audit_json(const DumpAuditReport& r);
// Where bits first move, per layer and module (where_bits_move_svg, tensor_move.hpp).
std::string dump_audit_svg(const DumpAuditReport& r);

}  // namespace dsv4::audit
