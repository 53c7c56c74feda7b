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

TensorGetter candidate_getter(const MappedTensorSource& source);
TensorGetter golden_exact_getter(const Golden& golden);

// `dsv4 diff --teacher-forced` of a candidate against a golden: the golden's config, tokens and
// schedule, its seeded synthetic weights (InputError naming the golden when its weights are a
// checkpoint file: not supported yet). candidate_format as in teacher_forced_diff.
DiffReport diff_against_golden(const Golden& golden, const MappedTensorSource& candidate,
                               std::optional<DType> candidate_format = std::nullopt);

// Every checked output's and module's local verdict by canonical name ("<step>/<module>/<output>",
// "<step>/<module>"), as certify's re-judgement after near-tie flips wants them.
LocalVerdicts local_verdicts_of(const DiffReport& r);

// certify's local judge (CertifyOptions::local_verdicts): runs diff_against_golden when called;
// an empty map when the golden's weights are not seeded synthetic ones.
std::function<LocalVerdicts()> certify_local_judge(const Golden& golden, const MappedTensorSource& candidate);

}  // namespace dsv4::diff
