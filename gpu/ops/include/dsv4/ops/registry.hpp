// The op registry: every op of dsv4 in one list (gpu/ops/src/registry.cpp names one factory per
// op; each op's registration is its own file gpu/ops/src/<stem>_op.cpp). The harness test
// (tests/ops_test.cpp), `dsv4 demo` section 4 and `dsv4 ops` iterate this list.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "dsv4/ops/op.hpp"

namespace dsv4::ops {

// Every registered op, in registration order.
const std::vector<Op>& all_ops();
// nullptr when no op has that stem.
const Op* find_op(std::string_view stem);

// Whether this build has CUDA kernels and a CUDA device is visible to this process.
bool device_available();
// "NVIDIA H100 80GB HBM3 (sm_90)", "none", or "none (built without CUDA)".
std::string device_text();
// Why the device side cannot run ("" when it can).
std::string device_unavailable_reason();

}  // namespace dsv4::ops
