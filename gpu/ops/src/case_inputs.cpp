// Case inputs shared by the registry's ops (case_inputs.hpp).
#include "dsv4/ops/case_inputs.hpp"

#include <cmath>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4::ops {

std::vector<float> edge_activations(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  const std::size_t n = static_cast<std::size_t>(rows * cols);
  const CounterRng rng(seed, stream_id("ops.activations.values"));
  const CounterRng meta(seed, stream_id("ops.activations.kinds"));
  std::vector<float> x(n);
  for (std::size_t g = 0; g < n / 32; ++g) {
    const auto seg = meta.words(g / 4);                         // per 128-element segment
    const auto sub = meta.words((std::uint64_t{1} << 40) + g);  // per 32-element sub-segment
    const int kind = static_cast<int>(seg[0] % 16);
    const int k = static_cast<int>(seg[1] % 121) - 20;  // tie scale exponent: 448·2^k stays above the 1e-4 floor
    for (std::size_t j = 0; j < 32; ++j) {
      const std::size_t i = g * 32 + j;
      const auto w = rng.words(i);
      const double sign = (w[3] & 1u) != 0 ? -1.0 : 1.0;
      double v = 0;
      switch (kind) {
        case 0:
          v = sign * 0.0;
          break;
        case 1:
          v = rng.normal(i) * 1e-4 * std::ldexp(1.0, static_cast<int>(sub[0] % 5) - 3);
          break;
        case 2:
          v = (sub[0] % 3 == 0) ? sign * std::ldexp(1.0 + (w[0] % 128) / 128.0, -126 + static_cast<int>(w[1] % 7))
                                : sign * std::ldexp(static_cast<double>(1 + w[0] % 127), -133);
          break;
        case 3: {
          v = rng.normal(i) * std::ldexp(1.0, static_cast<int>(sub[0] % 21) - 10);
          const std::uint32_t at = seg[2] % 128;  // the outlier's position in the segment
          if (g % 4 == at / 32 && j == at % 32)
            v = sign * std::ldexp(1.0 + (w[0] % 256) / 256.0, 60 + static_cast<int>(seg[3] % 67));
          break;
        }
        case 4: {  // anchor ±448·2^k makes s = 2^k for every fp8 block; the rest are e4m3 midpoints
          if (j == 0) {
            v = sign * 448.0 * std::ldexp(1.0, k);
          } else if (w[1] % 8 == 0) {  // the subnormal boundary cases of spec 01 §1.2
            static constexpr double kEdge[] = {0x1p-10, 0x1p-11, 0.9375 * 0x1p-6, 0x1.8p-10, 0x1p-9};
            v = sign * kEdge[w[2] % 5] * std::ldexp(1.0, k);
          } else {
            const std::uint8_t c = static_cast<std::uint8_t>(w[0] % 0x7E);  // 0 .. 0x7D: next code exists
            const double lo = e4m3_to_float(c), hi = e4m3_to_float(static_cast<std::uint8_t>(c + 1));
            const double mid = 0.5 * (lo + hi);
            v = sign * ((w[2] & 1u) != 0 ? mid : lo) * std::ldexp(1.0, k);
          }
          break;
        }
        case 5: {  // anchor ±6·2^k makes s = 2^k for every fp4 block; the rest are e2m1 points and midpoints
          static constexpr double kFp4Points[] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.5,
                                                  1.0,  1.5,  2.0,  3.0,  4.0, 6.0, 0.0, 0.125};
          v = sign * (j == 0 ? 6.0 : kFp4Points[w[0] % 16]) * std::ldexp(1.0, k);
          break;
        }
        default: {
          const int range = kind < 12 ? 60 : 120;
          const int e = static_cast<int>(sub[0] % (2 * range + 1)) - range;
          v = rng.normal(i) * std::ldexp(1.0, e + static_cast<int>(w[1] % 9) - 4);
          break;
        }
      }
      x[i] = round_bf16(v);
    }
  }
  return x;
}

std::vector<float> edge_activations_tamed(std::int64_t rows, std::int64_t cols, std::uint64_t seed, double threshold,
                                          double factor) {
  std::vector<float> x = edge_activations(rows, cols, seed);
  for (float& v : x) {
    if (std::fabs(v) >= threshold) v = round_bf16(static_cast<double>(v) * factor);
  }
  return x;
}

std::vector<float> constant_rows(std::int64_t rows, std::int64_t cols, float value, std::uint64_t seed,
                                 const char* stream) {
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  const CounterRng rng(seed, stream_id(stream));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float v = i / static_cast<std::size_t>(cols) % 2 == 0 ? 0.0f : value;
    x[i] = (rng.words(i)[0] & 1u) != 0 ? -v : v;
  }
  return x;
}

const std::vector<Shape>& quant_shapes() {
  static const std::vector<Shape> shapes = {{1, 32},   {1, 128},   {3, 448},    {5, 64},   {7, 512},
                                            {2, 1536}, {64, 7168}, {1000, 256}, {33, 480}, {17, 4096}};
  return shapes;
}

std::string shape_label(const Shape& s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

}  // namespace dsv4::ops
