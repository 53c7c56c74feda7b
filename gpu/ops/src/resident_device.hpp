// The device side of resident inputs (private to gpu/ops; dsv4/ops/resident.hpp): a kernel's
// weight view on the device, from the resident arrays' device copies or copies made for the call.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dsv4/ops/op.hpp"

#if DSV4_HAVE_CUDA
#include "dsv4/gpu/linear.hpp"
#include "dsv4/gpu/resident.hpp"

namespace dsv4::ops::detail {

// The device twin of `host`, a weight view over the host storage of the shared arrays `data`
// (bf16 / fp32 values, or codes) and `scale` (fp8 / fp4 scales; null for bf16 / fp32): each array's
// device copy — made once and kept with its values when the array is resident (Values::device_copy;
// `form` names what the values are on the device, e.g. "bf16": host.values, the data rounded to
// bf16), else made for this call — every owner appended to `hold`, which must outlive the kernel.
// host.values, when set, holds data.f32.size() floats.
// The device copy of a shared float array's values as the kernel takes them (`src`, a.f32.size()
// floats: a's values, or their bf16 rounding named by `form`): kept with a resident array's values,
// else made for this call; the owner appended to `hold`.
const float* device_floats(const Array& a, const std::string& form, const float* src,
                           std::vector<std::shared_ptr<const void>>& hold);

gpu::LinearWeightView device_view(const gpu::LinearWeightView& host, const Array& data, const Array* scale,
                                  const std::string& form, std::vector<std::shared_ptr<const void>>& hold);

}  // namespace dsv4::ops::detail
#endif
