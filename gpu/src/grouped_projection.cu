// Grouped output projection (spec 02 §2.10 step 2), bit-exact with the official-mode reference
// (ref/model/src/grouped_projection.cpp) — see dsv4/gpu/grouped_projection.hpp.
//
// No kernel of its own: the linear kernel's dense code (linear.cu, linear_dense_launch) with G
// groups — output (m, g, n) reads row m of o at columns g·P.. and row g·d_g + n of wo_a, exactly the
// operands of the reference's bf16 linear of group g — so every property of that kernel holds
// (nothing depends on the batch, the position or the grid: linear.cu).
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/grouped_projection.hpp"
#include "dsv4/gpu/linear.hpp"
#include "dsv4/gpu/resident.hpp"
#include "linear_dense.hpp"
#include "linear_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr std::int64_t kMaxK = std::int64_t{1} << 24;

void check_args(const float* o, std::int64_t rows, std::int64_t groups, std::int64_t per_group, const float* wo_a,
                std::int64_t dg, const char* who) {
  const std::string f(who);
  if (rows < 0) throw std::invalid_argument(f + ": rows = " + std::to_string(rows) + " < 0");
  if (groups < 1 || dg < 1) throw std::invalid_argument(f + ": groups and dg must be positive");
  if (per_group < 1 || per_group > kMaxK) throw std::invalid_argument(f + ": per_group must be in [1, 2^24]");
  if (wo_a == nullptr) throw std::invalid_argument(f + ": wo_a is null");
  if (rows > 0 && o == nullptr) throw std::invalid_argument(f + ": o is null");
}

}  // namespace

void grouped_projection_device(const float* o, std::int64_t rows, std::int64_t groups, std::int64_t per_group,
                               const float* wo_a, std::int64_t dg, float* y, std::uint8_t* undecided, void* stream) {
  check_args(o, rows, groups, per_group, wo_a, dg, "grouped_projection_device");
  if (rows > 0 && (y == nullptr || undecided == nullptr)) {
    throw std::invalid_argument("grouped_projection_device: y and undecided must be given");
  }
  if (rows == 0) return;
  detail::linear_dense_launch(o, rows, 1, groups, per_group, wo_a, nullptr, dg, true, y, undecided,
                              static_cast<cudaStream_t>(stream));
}

GroupedProjectionBatch grouped_projection_resident(const float* o, std::int64_t rows, std::int64_t groups,
                                                   std::int64_t per_group, const float* wo_a, const float* device_wo_a,
                                                   std::int64_t dg) {
  check_args(o, rows, groups, per_group, wo_a, dg, "grouped_projection");
  const std::size_t R = static_cast<std::size_t>(rows), G = static_cast<std::size_t>(groups),
                    P = static_cast<std::size_t>(per_group), D = static_cast<std::size_t>(dg);
  GroupedProjectionBatch out;
  out.y.resize(R * G * D);
  if (rows == 0) return out;
  detail::DeviceBuffer<float> d_o(R * G * P), d_y(R * G * D);
  detail::DeviceBuffer<std::uint8_t> d_undecided(R * G * D);
  d_o.upload(o);
  grouped_projection_device(d_o.get(), rows, groups, per_group, device_wo_a, dg, d_y.get(), d_undecided.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(out.y.data());
  // Element (m, g, n): the reference's bf16 linear of group g (wo_a's rows g·d_g..) on row m of o_g.
  out.recomputed = detail::recompute_undecided(d_undecided, [&](std::size_t i) {
    const std::size_t m = i / (G * D), g = (i / D) % G;
    LinearWeightView w;
    w.kind = LinearKind::kBF16;
    w.out_features = dg;
    w.in_features = per_group;
    w.values = wo_a + g * D * P;
    out.y[i] =
        detail::linear_reference_element(o + (m * G + g) * P, w, static_cast<std::int64_t>(i % D), ScaleFormat::kUE8M0);
  });
  return out;
}

// wo_a uploaded for this call, then grouped_projection_resident.
GroupedProjectionBatch grouped_projection(const float* o, std::int64_t rows, std::int64_t groups,
                                          std::int64_t per_group, const float* wo_a, std::int64_t dg) {
  check_args(o, rows, groups, per_group, wo_a, dg, "grouped_projection");
  detail::DeviceBuffer<float> d_w(rows == 0 ? 0 : static_cast<std::size_t>(groups * dg * per_group));
  d_w.upload(wo_a);
  return grouped_projection_resident(o, rows, groups, per_group, wo_a, d_w.get(), dg);
}

}  // namespace dsv4::gpu
