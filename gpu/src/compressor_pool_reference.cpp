// Host fallback of the compressor pooling kernel: the official-mode reference
// (compressor_softmax_pool) on one channel of one entry — channels are independent in the reference.
#include "compressor_pool_reference.hpp"

#include "dsv4/model/compressor.hpp"

namespace dsv4::gpu::detail {

float compressor_pool_reference(const float* u, const float* z, std::int64_t slots, std::int64_t channels,
                                std::int64_t channel) {
  Mat uc(slots, 1), zc(slots, 1);
  for (std::int64_t j = 0; j < slots; ++j) {
    uc(j, 0) = u[j * channels + channel];
    zc(j, 0) = z[j * channels + channel];
  }
  return static_cast<float>(compressor_softmax_pool(Precision(Mode::kOfficial), uc, zc)(0));
}

}  // namespace dsv4::gpu::detail
