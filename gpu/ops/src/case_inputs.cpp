// Case inputs shared by the registry's ops (case_inputs.hpp).
#include "dsv4/ops/case_inputs.hpp"

#include <cmath>
#include <string>
#include <utility>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/gradient.hpp"

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

// N × K weight values N(0, 0.1²) (bf16-rounded for the bf16 kind) with edges by row r mod 6: 1 a zero
// 32-column block (signed zeros), 2 every third entry subnormal, 3 one outlier ±2^30 (column r mod
// K), 4 every entry nonnegative, 5 all zeros.
std::vector<float> edge_weight(std::int64_t n, std::int64_t k, std::uint64_t seed, bool bf16, const char* stream) {
  const std::string base(stream);
  std::vector<float> w = normals(n * k, 0.1, seed, (base + ".weight").c_str());
  const CounterRng rng(seed, stream_id((base + ".weight.edges").c_str()));
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t j = 0; j < k; ++j) {
      const std::size_t i = static_cast<std::size_t>(r * k + j);
      const auto u = rng.words(i);
      const double sign = (u[0] & 1u) != 0 ? -1.0 : 1.0;
      double v = w[i];
      switch (r % 6) {
        case 1:
          if (j / 32 == (r / 6) % ((k + 31) / 32)) v = sign * 0.0;
          break;
        case 2:
          if (j % 3 == 0)
            v = sign * std::ldexp(1.0 + (u[1] % 8388608u) / 8388608.0, -127 - static_cast<int>(u[2] % 10));
          break;
        case 3:
          if (j == r % k) v = sign * std::ldexp(1.0 + (u[1] % 256u) / 256.0, 30);
          break;
        case 4:
          v = std::fabs(v);
          break;
        case 5:
          v = sign * 0.0;
          break;
        default:
          break;
      }
      w[i] = bf16 ? round_bf16(v) : static_cast<float>(v);
    }
  }
  return w;
}

// Rounding boundaries of the dense kinds' C1 sums (rows × K activations, N × K weights, K ≥ 4).
// Row m ≥ 1 of x: 2^e_m (e_m ∈ [−20, 20]) at columns 0..3, signed zeros elsewhere; row 0: all −0.
// Weight row n: v0 = ±[1, 2)·2^f (a random bf16 / fp32 value, f ∈ [−10, 10]) at column 0; h = ±half
// an ulp of v0 in the output format at column 1, so that v0 + h is a tie (a bf16 midpoint for the
// bf16 kind: the fp32 sum is exact and bf16 rounds it to even; an fp32 midpoint for the fp32 kind);
// at column 2 t = 0 or ±h·2^-j, which settles the tie (for the bf16 kind j ∈ [1, 30]: from j = 16 on
// t is below fp32's resolution and the fp32 rounding decides first, the double rounding of the
// reference; for the fp32 kind j ∈ [1, 60]: a term far below the others, which the compensated sum
// keeps); column 3: 0 or −v0 (cancellation). Row 0 of the weight is nonnegative (with x's row 0
// every product of output (0, 0) is −0: the C1 sum is +0, the reference's sum starting at +0.0).
// Other columns N(0, 1).
std::pair<std::vector<float>, std::vector<float>> tie_values(std::int64_t rows, std::int64_t n, std::int64_t k,
                                                             std::uint64_t seed, bool bf16, const char* stream) {
  const std::string base(stream);
  const CounterRng rng(seed, stream_id((base + ".ties").c_str()));
  std::vector<float> x(static_cast<std::size_t>(rows * k));
  for (std::int64_t m = 0; m < rows; ++m) {
    const auto u = rng.words(static_cast<std::uint64_t>(m));
    const double p = std::ldexp(1.0, static_cast<int>(u[0] % 41) - 20);
    for (std::int64_t j = 0; j < k; ++j) {
      const bool neg = m == 0 || (rng.words((std::uint64_t{1} << 40) + static_cast<std::uint64_t>(m * k + j))[0] & 1u);
      x[static_cast<std::size_t>(m * k + j)] = static_cast<float>(m > 0 && j < 4 ? p : (neg ? -0.0 : 0.0));
    }
  }
  std::vector<float> w = normals(n * k, 1.0, seed, (base + ".ties.weight").c_str());
  const int mant_bits = bf16 ? 7 : 23;
  for (std::int64_t r = 0; r < n; ++r) {
    const auto u = rng.words((std::uint64_t{2} << 40) + static_cast<std::uint64_t>(r));
    const int f = static_cast<int>(u[0] % 21) - 10;
    const double mant = 1.0 + std::ldexp(static_cast<double>(u[1] % (1u << mant_bits)), -mant_bits);
    const double v0 = ((u[2] & 1u) != 0 ? -1.0 : 1.0) * std::ldexp(mant, f);
    const double h = ((u[2] & 2u) != 0 ? -1.0 : 1.0) * std::ldexp(1.0, f - mant_bits - 1);
    const int j = 1 + static_cast<int>(u[3] % (bf16 ? 30u : 60u));
    const double t = (u[3] >> 8) % 3 == 0 ? 0.0 : ((u[3] & 0x10000u) != 0 ? -1.0 : 1.0) * std::ldexp(h, -j);
    const double c3 = (u[3] >> 20) % 4 == 0 ? -v0 : 0.0;
    const double cols[4] = {v0, h, t, c3};
    for (std::int64_t c = 0; c < k; ++c) {
      double v = c < 4 ? cols[c] : static_cast<double>(w[static_cast<std::size_t>(r * k + c)]);
      if (r == 0) v = std::fabs(v);
      w[static_cast<std::size_t>(r * k + c)] = bf16 ? round_bf16(v) : static_cast<float>(v);
    }
  }
  return {std::move(x), std::move(w)};
}

// fp8 weight codes [N, K]: uniform over the 254 finite e4m3 codes (±0, subnormals, ±448), with by
// row r mod 4: 1 one zero 128-column block (codes 0x00 / 0x80), 2 subnormal codes only, 3 the
// largest binade only (±256..±448).
std::vector<std::uint8_t> edge_fp8_codes(std::int64_t n, std::int64_t k, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.linear.fp8.codes"));
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(n * k));
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t j = 0; j < k; ++j) {
      const std::size_t i = static_cast<std::size_t>(r * k + j);
      const auto u = rng.words(i);
      std::uint8_t c = static_cast<std::uint8_t>(u[0] % 254);  // 0x00..0xFD
      if (c >= 0x7F) c = static_cast<std::uint8_t>(c + 1);     // skip 0x7F (NaN); 0xFF never drawn
      const std::uint8_t sign = c & 0x80u;
      if (r % 4 == 1 && j / 128 == (r / 4) % (k / 128)) c = sign;
      if (r % 4 == 2) c = static_cast<std::uint8_t>(sign | (c & 0x07u));
      if (r % 4 == 3) c = static_cast<std::uint8_t>(sign | 0x78u | (u[1] % 7));
      codes[i] = c;
    }
  }
  return codes;
}

// fp4 weight codes [N, K/2] packed: uniform nibbles (code 8 is −0), with by row r mod 4: 1 one zero
// 32-column block, 2 only ±0.5 and ±0, 3 only ±6.
std::vector<std::uint8_t> edge_fp4_codes(std::int64_t n, std::int64_t k, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.linear.fp4.codes"));
  std::vector<std::uint8_t> packed(static_cast<std::size_t>(n * k / 2), 0);
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t j = 0; j < k; ++j) {
      const std::size_t i = static_cast<std::size_t>(r * k + j);
      const auto u = rng.words(i);
      std::uint8_t c = static_cast<std::uint8_t>(u[0] & 0xFu);
      const std::uint8_t sign = c & 0x8u;
      if (r % 4 == 1 && j / 32 == (r / 4) % (k / 32)) c = sign;
      if (r % 4 == 2) c = static_cast<std::uint8_t>(sign | (u[1] & 1u));
      if (r % 4 == 3) c = static_cast<std::uint8_t>(sign | 0x7u);
      packed[i / 2] = static_cast<std::uint8_t>(packed[i / 2] | (j % 2 == 0 ? c : c << 4));
    }
  }
  return packed;
}

const std::vector<Shape>& quant_shapes() {
  static const std::vector<Shape> shapes = {{1, 32},   {1, 128},   {3, 448},    {5, 64},   {7, 512},
                                            {2, 1536}, {64, 7168}, {1000, 256}, {33, 480}, {17, 4096}};
  return shapes;
}

std::string shape_label(const Shape& s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

}  // namespace dsv4::ops
