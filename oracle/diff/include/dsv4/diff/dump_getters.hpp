// Adapters from files to the TensorGetter of teacher_forced.hpp: a candidate dump (any format of
// oracle/io/tensor_source.hpp, names mapped) and a golden's exact values.
#pragma once

#include "dsv4/diff/teacher_forced.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/io/tensor_source.hpp"

namespace dsv4::diff {

// Every element of a float/int tensor widened to double (bf16 raw patterns decoded); InputError for
// other dtypes. A single sequence dumped without the batch dimension ([rows, cols] or [cols]) is
// read as [1, rows, cols].
RecordedTensor recorded_from_tensor(const Tensor& t, const std::string& name);

TensorGetter candidate_getter(const MappedTensorSource& source);
TensorGetter golden_exact_getter(const Golden& golden);

}  // namespace dsv4::diff
