// Adapters from files to the TensorGetter of teacher_forced.hpp: a candidate dump (any format of
// oracle/io/tensor_source.hpp, names mapped) and a golden's exact values; the diff against a
// golden, and certify's local judge built on it.
#pragma once

#include <functional>
#include <optional>

#include "dsv4/diff/teacher_forced.hpp"
#include "dsv4/golden/certify.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/io/tensor_source.hpp"

namespace dsv4::diff {

// Every element of a float/int tensor widened to double (bf16 raw patterns decoded); InputError for
// other dtypes. A single sequence dumped without the batch dimension ([rows, cols] or [cols]) is
// read as [1, rows, cols].
RecordedTensor recorded_from_tensor(const Tensor& t, const std::string& name);
// The [batch, rows, cols] shape recorded_from_tensor gives a tensor of shape `shape`; InputError
// (naming `name`) for a rank other than 1, 2 or 3.
std::vector<std::int64_t> batched_shape(const std::vector<std::int64_t>& shape, const std::string& name);

// With `golden`, a candidate tensor declaring more elements than the golden's output of that name
// is refused (InputError) before it is read or decompressed.
TensorGetter candidate_getter(const MappedTensorSource& source, const Golden* golden = nullptr);
TensorGetter golden_exact_getter(const Golden& golden);
// The golden's values of one precision ("exact" or "official") as a getter.
TensorGetter golden_getter(const Golden& golden, const std::string& precision);

// The weights a golden was made with (what its modules are recomputed from): without
// `weights_file`, its seeded synthetic weights; with it, the checkpoint file, which must hold the
// weights the golden records (manifest weights.content_sha256, the same for a checkpoint exported by
// `dsv4 weights export` and the seed it came from). InputError naming --weights: a golden of
// checkpoint weights without `weights_file` (the message names the file and hash the golden
// records), a file whose weights' content hash differs (both hashes named) or that is no
// checkpoint of the golden's config.
ModelWeights golden_weights(const Golden& golden, const std::string& weights_file);

// The run a golden records: its tokens, its prefill length (the first step's) and decode steps.
RunSchedule golden_schedule(const Golden& golden);

// `dsv4 diff --teacher-forced` of a candidate against a golden: the golden's config, tokens and
// schedule, its weights (golden_weights). candidate_format as in teacher_forced_diff.
DiffReport diff_against_golden(const Golden& golden, const MappedTensorSource& candidate,
                               std::optional<DType> candidate_format = std::nullopt,
                               const std::string& weights_file = "");
// The same with the weights already loaded (golden_weights' result).
DiffReport diff_against_golden(const Golden& golden, const MappedTensorSource& candidate, const ModelWeights& weights,
                               std::optional<DType> candidate_format = std::nullopt);

// Every checked output's and module's local verdict by canonical name ("<step>/<module>/<output>",
// "<step>/<module>"), as certify's re-judgement after near-tie flips wants them.
LocalVerdicts local_verdicts_of(const DiffReport& r);

// certify's local judge (CertifyOptions::local_verdicts): runs diff_against_golden when called. The
// weights are golden_weights(golden, weights_file): a checkpoint is loaded and verified here (its
// InputError is thrown now, before anything is judged); seeded synthetic weights when first called.
std::function<LocalVerdicts()> certify_local_judge(const Golden& golden, const MappedTensorSource& candidate,
                                                   const std::string& weights_file = "");

}  // namespace dsv4::diff
