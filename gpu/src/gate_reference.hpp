// The CPU reference for the tokens the gate kernel leaves undecided (private header of gpu/src;
// implemented in gate_reference.cpp, compiled by the host compiler: it includes Eigen).
#pragma once

#include <cstdint>

#include "dsv4/gpu/gate.hpp"

namespace dsv4::gpu::detail {

// The gate of one token in official mode (ref/model/src/gate_rows.cpp gate_rows): x [d], its id,
// weight [E, d], bias [E] or tid2eid [vocab, k] → weights [k], indices [k], scores [E].
void gate_reference(const float* x, std::int64_t d, std::int64_t token_id, const float* weight, std::int64_t experts,
                    const float* bias, const std::int64_t* tid2eid, std::int64_t vocab, GateScore score, std::int64_t k,
                    double route_scale, float* weights, std::int64_t* indices, float* scores);

}  // namespace dsv4::gpu::detail
