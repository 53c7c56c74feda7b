// Official-style backward of a linear layer (spec 06 §6.14): linear_backward_fp32.hpp.
#include "dsv4/train/linear_backward_fp32.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "dsv4/numerics/parallel_rows.hpp"

namespace dsv4 {
namespace {

void check_sizes(const char* what, std::size_t a, std::size_t b, std::int64_t m, std::int64_t k, std::int64_t n,
                 std::size_t want_a, std::size_t want_b) {
  if (m < 0 || k < 0 || n < 0 || a != want_a || b != want_b) {
    throw std::invalid_argument(std::string(what) + ": M " + std::to_string(m) + ", K " + std::to_string(k) + ", N " +
                                std::to_string(n) + " do not match operands of " + std::to_string(a) + " and " +
                                std::to_string(b) + " elements");
  }
}

}  // namespace

std::vector<float> linear_dweight_fp32(std::span<const float> x, std::span<const float> dy, std::int64_t m,
                                       std::int64_t k, std::int64_t n, const PartitionRule& rule) {
  check_sizes("linear_dweight_fp32", x.size(), dy.size(), m, k, n, static_cast<std::size_t>(m * k),
              static_cast<std::size_t>(m * n));
  const auto uk = static_cast<std::size_t>(k), un = static_cast<std::size_t>(n);
  return fp32_partitioned_sum(m, n * k, rule, [&](std::int64_t r0, std::int64_t r1, std::span<float> partial) {
    for (std::int64_t r = r0; r < r1; ++r) {  // rows ascending: each element's fmaf sequence
      const float* xr = x.data() + static_cast<std::size_t>(r) * uk;
      const float* dyr = dy.data() + static_cast<std::size_t>(r) * un;
      for (std::size_t o = 0; o < un; ++o) {
        const float g = dyr[o];
        float* row = partial.data() + o * uk;
        for (std::size_t i = 0; i < uk; ++i) row[i] = std::fma(g, xr[i], row[i]);
      }
    }
  });
}

std::vector<float> linear_dx_fp32(std::span<const float> dy, std::span<const float> w, std::int64_t m, std::int64_t k,
                                  std::int64_t n) {
  check_sizes("linear_dx_fp32", dy.size(), w.size(), m, k, n, static_cast<std::size_t>(m * n),
              static_cast<std::size_t>(n * k));
  const auto uk = static_cast<std::size_t>(k), un = static_cast<std::size_t>(n);
  std::vector<float> dx(static_cast<std::size_t>(m) * uk, 0.0f);
  parallel_rows(m, 16, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      float* out = dx.data() + static_cast<std::size_t>(r) * uk;
      const float* dyr = dy.data() + static_cast<std::size_t>(r) * un;
      for (std::size_t o = 0; o < un; ++o) {  // o ascending: each element's fmaf sequence
        const float g = dyr[o];
        const float* wo = w.data() + o * uk;
        for (std::size_t i = 0; i < uk; ++i) out[i] = std::fma(g, wo[i], out[i]);
      }
    }
  });
  return dx;
}

}  // namespace dsv4
