// The official-style mHC parameter gradients (spec 06 §6.14): mhc_backward_fp32.hpp.
#include "dsv4/train/mhc_backward_fp32.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "dsv4/train/linear_backward_fp32.hpp"

namespace dsv4 {

MhcParamGradsFp32 mhc_dparams_fp32(std::span<const float> x, std::int64_t tokens, std::int64_t n, std::int64_t d,
                                   std::span<const float> mixes, std::span<const float> da, std::span<const float> gr,
                                   std::int64_t count, std::int64_t scales, const PartitionRule& rule) {
  const bool shapes_ok = tokens >= 0 && n >= 1 && d >= 0 &&
                         ((scales == 3 && count == (2 + n) * n) || (scales == 1 && count == n)) &&
                         x.size() == static_cast<std::size_t>(tokens * n * d) &&
                         mixes.size() == static_cast<std::size_t>(tokens * count) && da.size() == mixes.size() &&
                         gr.size() == mixes.size();
  if (!shapes_ok) {
    throw std::invalid_argument("mhc_dparams_fp32: T " + std::to_string(tokens) + ", n " + std::to_string(n) + ", d " +
                                std::to_string(d) + ", count " + std::to_string(count) + ", scales " +
                                std::to_string(scales) + " do not match x, mixes, da, gr of " +
                                std::to_string(x.size()) + ", " + std::to_string(mixes.size()) + ", " +
                                std::to_string(da.size()) + ", " + std::to_string(gr.size()) + " elements");
  }
  MhcParamGradsFp32 out;
  // dfn and dbase are linear sites (spec 06 §6.14): dbase is dfn's rule with the input row 1.
  out.dfn = linear_dweight_fp32(x, gr, tokens, n * d, count, rule);
  const std::vector<float> ones(static_cast<std::size_t>(tokens), 1.0f);
  out.dbase = linear_dweight_fp32(ones, da, tokens, 1, count, rule);
  // dscale: group G of mix m (spec 04 §4.3), min(m / n, scales − 1).
  const auto uc = static_cast<std::size_t>(count);
  out.dscale = fp32_partitioned_sum(tokens, scales, rule, [&](std::int64_t r0, std::int64_t r1, std::span<float> acc) {
    for (std::int64_t t = r0; t < r1; ++t) {  // tokens ascending, then the mixes ascending
      for (std::int64_t m = 0; m < count; ++m) {
        const auto i = static_cast<std::size_t>(t) * uc + static_cast<std::size_t>(m);
        float& a = acc[static_cast<std::size_t>(std::min(m / n, scales - 1))];
        a = std::fma(mixes[i], da[i], a);
      }
    }
  });
  return out;
}

}  // namespace dsv4
