// Device-resident inputs of the op registry (gpu/README.md §GpuModel, issue 18): a shared input
// marked resident (Array::make_resident: a model's weight) is one host buffer shared by every Call
// that carries it (ops::Values), and the device functions of the ops with Op::resident_inputs take
// it from its device copy, made once per buffer and kept with it, instead of copying it in.
#pragma once

#include <cstdint>

#include "dsv4/ops/op.hpp"

namespace dsv4::ops {

// The bytes of a call's inputs by what op's device function does with them: `resident` — shared
// inputs marked resident that it takes from their device copy (op.resident_inputs); `copied` —
// every other input, copied to the device for this call (with the outputs, the host ↔ device
// traffic of the call). The same numbers on the reference backend: they describe the call.
struct CallBytes {
  std::int64_t resident = 0;
  std::int64_t copied = 0;
  CallBytes& operator+=(const CallBytes& o) {
    resident += o.resident;
    copied += o.copied;
    return *this;
  }
};
CallBytes call_bytes(const Op& op, const Call& c);

}  // namespace dsv4::ops
