// The CPU reference for the elements the compressor pooling kernel leaves undecided (private header
// of gpu/src; implemented in compressor_pool_reference.cpp, compiled by the host compiler: it
// includes Eigen).
#pragma once

#include <cstdint>

namespace dsv4::gpu::detail {

// compressor_softmax_pool of one channel in official mode (ref/model/src/compressor.cpp): u, z the
// entry's [S, D] slot matrices (row-major), channel δ → C[δ].
float compressor_pool_reference(const float* u, const float* z, std::int64_t slots, std::int64_t channels,
                                std::int64_t channel);

}  // namespace dsv4::gpu::detail
