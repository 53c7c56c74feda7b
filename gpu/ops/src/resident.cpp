// Device-resident inputs (dsv4/ops/resident.hpp, resident_device.hpp).
#include "dsv4/ops/resident.hpp"

#include "resident_device.hpp"

namespace dsv4::ops {

CallBytes call_bytes(const Op& op, const Call& c) {
  CallBytes b;
  for (const Array& a : c.inputs)
    (op.resident_inputs && !a.per_row && a.resident() ? b.resident : b.copied) += a.bytes();
  return b;
}

#if DSV4_HAVE_CUDA
namespace detail {

namespace {

// The device copy of `v` (host bytes `src`, `bytes` long: v's values as the kernel takes them):
// v's own copy of `form` when v is resident, else a copy for this call held by `hold`.
template <class T>
const void* device_of(const Values<T>& v, const std::string& form, const void* src, std::size_t bytes,
                      std::vector<std::shared_ptr<const void>>& hold) {
  const auto make = [&](const std::vector<T>&) { return gpu::device_copy(src, bytes); };
  hold.push_back(v.resident() ? v.device_copy(form, make) : make(v.vec()));
  return hold.back().get();
}

}  // namespace

const float* device_floats(const Array& a, const std::string& form, const float* src,
                           std::vector<std::shared_ptr<const void>>& hold) {
  return static_cast<const float*>(device_of(a.f32, form, src, a.f32.size() * sizeof(float), hold));
}

gpu::LinearWeightView device_view(const gpu::LinearWeightView& host, const Array& data, const Array* scale,
                                  const std::string& form, std::vector<std::shared_ptr<const void>>& hold) {
  gpu::LinearWeightView d = host;
  if (host.values != nullptr) {
    d.values = static_cast<const float*>(device_of(data.f32, form, host.values, data.f32.size() * sizeof(float), hold));
  } else {
    d.codes = static_cast<const std::uint8_t*>(device_of(data.u8, "codes", data.u8.data(), data.u8.size(), hold));
    d.scales =
        static_cast<const std::uint8_t*>(device_of(scale->u8, "scales", scale->u8.data(), scale->u8.size(), hold));
  }
  return d;
}

}  // namespace detail
#endif

}  // namespace dsv4::ops
