// GPU softmax pooling of the compressor (spec 02 §2.6.2; official code Compressor.forward's
// `(kv * score.softmax(dim=...)).sum(dim=...)`), bit-exact with the official-mode reference
// (dsv4/model/compressor.hpp compressor_softmax_pool with Precision(Mode::kOfficial)) and
// batch-invariant: one thread per (entry, channel) computes that channel from its own S slots.
//
// Per entry and channel δ, over the slots j = 0..S−1 (u_j, z_j the slot's value and score; z = −∞ a
// padding slot): m = max_j z_j (std::max order); e_j = 0 for a padding slot, else the C2 exp of
// fl(z_j − m); S_e = the C1 sum of the e_j; w_j = fl(e_j / S_e); C = the C1 sum of fl(u_j · w_j).
// Both C1 sums are compensated double sums (`SumC1Comp`, the slots in increasing order in one
// thread) rounded once by `round_c1_comp`. An element is flagged, and the host entry point
// recomputes it with the CPU reference (`recomputed` counts them), when an exp or a rounding is
// undecided, an input is outside the arithmetic above (NaN or +∞ score, non-finite value: the
// reference's special values decide it), or every slot is padding (the reference then throws).
// Ratio 4 with overlap: S = 8; ratio 128: S = 128 (gpu/README.md).
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

struct CompressorPoolBatch {
  std::vector<float> c;         // [entries, D], fp32 values
  std::int64_t recomputed = 0;  // elements the device left undecided, recomputed by the CPU reference
};

// u, z [entries, S·D] (fp32 values; per entry the [S, D] slot matrices, slot j channel δ at j·D + δ)
// → c [entries, D].
CompressorPoolBatch compressor_pool(const float* u, const float* z, std::int64_t entries, std::int64_t slots,
                                    std::int64_t channels);

// Device-pointer form: writes c and undecided[e·D + δ] (1 when element (e, δ) must be recomputed on
// the host).
void compressor_pool_device(const float* u, const float* z, std::int64_t entries, std::int64_t slots,
                            std::int64_t channels, float* c, std::uint8_t* undecided, void* stream = nullptr);

}  // namespace dsv4::gpu
