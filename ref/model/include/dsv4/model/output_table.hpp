// The typed output table: every module output the recorder writes, described once — the module
// that computes it, its role, its dtype in the official model, when it exists and, per computation
// site, which recorded tensors the module reads (spec 05 §5.1–§5.5; oracle/README.md §Dump
// convention). The recorder refuses a name the table does not describe; the golden writer, certify
// and `dsv4 diff` read roles, dtypes, decision kinds and inputs from here instead of parsing name
// suffixes.
//
// Canonical name of an output: <step>/<module path>/<output>, the module path being
//   a block site:   layers.<l>[.<module>] or mtp.<i>[.<module>]  (an empty module = the block itself)
//   a model site:   <module>                                      (embed, hc_head, norm, head)
//   an MTP site:    mtp.<i>[.<module>]                            (mtp.<i>/in and its head)
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {

enum class OutputRole : std::uint8_t {
  kValue,         // a float output, judged by the tolerance model
  kDecisionIds,   // a discrete choice (top-k positions, expert ids; −1 = no entry), compared as sets
  kScores,        // the scores a decision was made on
  kMargins,       // the decision's margin table [rows, 4]: k-th, best unselected, gap, error bound
  kChoiceScores,  // the gate's biased scores ŝ = s + b (written by the golden, not recorded)
};
const char* output_role_name(OutputRole r);

// Which decision a kDecisionIds / kScores / kMargins / kChoiceScores output belongs to.
enum class DecisionKind : std::uint8_t { kNone, kTopk, kExperts };

// Where a site runs.
enum class SiteScope : std::uint8_t {
  kBlock,  // in every block: the main layers and each MTP module's block
  kModel,  // once per step, top level
  kMtp,    // once per MTP module and step (its input state and its head)
};

// When an output exists in a block (by the layer's compress ratio, spec 02 §2.1).
enum class Presence : std::uint8_t {
  kAlways,
  kCompressed,  // ratio > 0 and the step completes at least one compressed entry (spec 02 §2.6)
  kIndexed,     // ratio 4 (CSA), every step
};

// What computes a site (the teacher-forced diff recomputes each kind from its inputs).
enum class SiteKind : std::uint8_t {
  kEmbed,      // spec 05 §5.1
  kHcPre,      // spec 04 §4.2–§4.3
  kRmsNorm,    // spec 01 §1.11 C8
  kAttention,  // spec 02 §2.4–§2.11 (q_norm, kv, compressor, indexer, wo_a, out)
  kHcPost,     // spec 04 §4.4
  kGate,       // spec 03 §3.1
  kMoe,        // spec 03 §3.3 (the combine from the gate's choice)
  kHcHead,     // spec 04 §4.5
  kHead,       // spec 05 §5.3
  kMtpInput,   // spec 05 §5.5 steps 1–3
};

struct OutputDesc {
  std::string_view module;  // module name inside the site's scope ("" = the block / MTP module itself)
  std::string_view output;  // "out", "y", "kv", "scores", …
  OutputRole role = OutputRole::kValue;
  DType official = DType::kBF16;  // its dtype in the official model (kI64: ids; kF64: oracle-only tables)
  Presence presence = Presence::kAlways;
  DecisionKind decision = DecisionKind::kNone;
  // false: recorded and certified, but the diff does not judge it on its own (an intermediate it
  // recomputes inside its module, or a table it derives).
  bool localised = true;
};

struct SiteDesc {
  SiteKind kind;
  SiteScope scope;
  std::string_view module;  // the site's module name (as in its outputs' module paths)
  std::vector<OutputDesc> outputs;
  // The recorded tensors the module reads, as names inside the same scope ("attn_norm/out"), or
  // "<block input>" (the previous block's out, the embedding for layer 0, mtp.<i>/in for an MTP
  // block), "<last layer out>" (layers.<n−1>/out), "<mtp block out>" (mtp.<i>/out) or "tokens".
  // Optional inputs end with '?' (the indexer's lists force the attention's decision when given).
  std::vector<std::string_view> inputs;
};

// Every site in execution order within its scope (block sites, then model and MTP sites in the
// order a step runs them).
const std::vector<SiteDesc>& output_sites();

// A parsed canonical name.
struct OutputRef {
  std::string step;         // "prefill", "decode0", …
  std::string module;       // the full module path, e.g. "layers.3.ffn.gate"
  std::string output;       // e.g. "scores"
  std::int64_t block = -1;  // block index (main layers 0…n−1, MTP module i → n_layers + i when c is given, else
                            // −(i + 2)); −1 for model sites
  const SiteDesc* site = nullptr;
  const OutputDesc* desc = nullptr;
};
// nullopt when the name is not <step>/<module path>/<output> of a described output. With a config,
// a block index past the model's layers or MTP modules is refused too.
std::optional<OutputRef> describe_output(std::string_view canonical, const ModelConfig* c = nullptr);

// The position of an output in the execution of a run (spec 05 §5.2–§5.5): steps in order
// (prefill, decode0, decode1, …); in a step the embedding, layers 0…n−1 (each block's sites in
// order), the head, then each MTP module (its input, its block, its head); in a site its outputs
// in the table's order. Compared lexicographically.
struct ExecutionKey {
  std::int64_t step = 0;   // step_rank
  std::int64_t phase = 0;  // 0 embedding, 1 a main layer, 2 the head, 3 an MTP module
  std::int64_t index = 0;  // the layer or MTP module number
  std::int64_t part = 0;   // in an MTP module: 0 its input, 1 its block, 2 its head
  std::int64_t site = 0;   // the site's index in output_sites()
  std::int64_t output = 0;
  auto operator<=>(const ExecutionKey&) const = default;
};
ExecutionKey execution_key(const OutputRef& r);
// "prefill" 0, "decode<N>" N + 1, any other step name after them all.
std::int64_t step_rank(std::string_view step);
// Canonical names in execution order; names the table does not describe go last, in byte order.
void sort_in_execution_order(std::vector<std::string>& names);

// The module path of a site's output: prefix "layers.3" / "mtp.0" / "" joined with the module name.
std::string module_path(std::string_view prefix, std::string_view module);

// Whether an output with this presence exists in block `layer` (its compress_ratios entry) in a
// step over positions [start_pos, start_pos + length).
bool present_in_block(Presence p, const ModelConfig& c, std::int64_t layer, std::int64_t start_pos,
                      std::int64_t length);

}  // namespace dsv4
