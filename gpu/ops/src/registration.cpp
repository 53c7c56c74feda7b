// The one registration of an op (op_list.hpp).
#include <utility>

#include "op_list.hpp"

namespace dsv4::ops::detail {

Op registration(std::string stem, std::string spec, std::string summary, std::vector<std::string> int_params,
                std::vector<std::string> real_params, Fn reference, Fn device, CaseGenerator cases,
                std::optional<GradientForms> backward, bool resident_inputs) {
  Op op;
  op.stem = std::move(stem);
  op.spec = std::move(spec);
  op.summary = std::move(summary);
  op.int_params = std::move(int_params);
  op.real_params = std::move(real_params);
  op.reference = std::move(reference);
  op.device = std::move(device);
  op.cases = std::move(cases);
  if (backward) set_backward(op, std::move(*backward));
  op.resident_inputs = resident_inputs;
  return op;
}

}  // namespace dsv4::ops::detail
