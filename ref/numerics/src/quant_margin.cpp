// ref/README.md §Margins; spec 01 §1.3–§1.5: margins of the block quantisers' decisions and the
// exact-mode (double) quantisers.
#include "dsv4/numerics/quant_margin.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/numerics/quant.hpp"
#include "quant_internal.hpp"

namespace dsv4 {

namespace {

struct QuantParams {
  const MinifloatFormat* format;
  double qmax;
  double floor;
  float inv;  // fl32(1/qmax), official scale argument t = fl32(amax × inv)
};

QuantParams params(BlockQuant kind) {
  if (kind == BlockQuant::kFp8Ue8m0) return {&kFormatE4M3, kFp8Max, kActQuantAmaxFloor, kInvFp8Max};
  return {&kFormatE2M1, kFp4Max, kFp4AmaxFloor, kInvFp4Max};
}

// Calls f(block index, index of its first element) for every block of `block` elements, in order:
// row-major rows of `cols`, each cut into cols / block blocks (checked as every quantiser checks them).
template <class F>
void for_each_block(const char* fn, std::size_t size, std::int64_t cols, int block, F&& f) {
  const std::int64_t blocks = quant_detail::checked_rows(fn, size, cols, block) * (cols / block);
  for (std::int64_t i = 0; i < blocks; ++i) f(i, i * block);
}

// Sorted non-negative finite values of a format (every code with the sign bit clear).
std::vector<double> positive_grid(const MinifloatFormat& f) {
  std::vector<double> g;
  const std::uint32_t n = 1u << (f.exponent_bits + f.mantissa_bits);
  for (std::uint32_t c = 0; c < n; ++c) {
    const double v = decode_minifloat(f, c);
    if (std::isfinite(v) && v >= 0.0) g.push_back(v);
  }
  std::sort(g.begin(), g.end());
  g.erase(std::unique(g.begin(), g.end()), g.end());
  return g;
}

const std::vector<double>& grid_of(const MinifloatFormat& f) {
  static const std::vector<double> e4m3 = positive_grid(kFormatE4M3);
  static const std::vector<double> e5m2 = positive_grid(kFormatE5M2);
  static const std::vector<double> e2m1 = positive_grid(kFormatE2M1);
  if (f.name == kFormatE4M3.name) return e4m3;
  if (f.name == kFormatE5M2.name) return e5m2;
  if (f.name == kFormatE2M1.name) return e2m1;
  throw std::invalid_argument(std::string("rounding_margin: unsupported format ") + std::string(f.name));
}

// Relative distance of t ∈ (2^(k−1), 2^k] from the scale step (QuantMargin::scale).
double scale_step_margin(double t, int k) {
  const double lo = std::ldexp(1.0, k - 1);
  const double hi = std::ldexp(1.0, k);
  return std::min((t - lo) / t, (hi - t) / t);
}

void fold(QuantMargin& m, double element, std::int64_t index) {
  if (element < m.element) {
    m.element = element;
    m.element_index = index;
  }
}

void fold_scale(QuantMargin& m, double scale, std::int64_t block) {
  if (scale < m.scale) {
    m.scale = scale;
    m.scale_block = block;
  }
}

}  // namespace

void QuantMargin::merge(const QuantMargin& other, std::int64_t element_offset, std::int64_t block_offset) {
  if (other.element_index >= 0) fold(*this, other.element, other.element_index + element_offset);
  if (other.scale_block >= 0) fold_scale(*this, other.scale, other.scale_block + block_offset);
}

const MinifloatFormat& block_quant_format(BlockQuant kind) { return *params(kind).format; }

double rounding_margin(const MinifloatFormat& f, double v) {
  const std::vector<double>& g = grid_of(f);
  const double a = std::fabs(v);
  if (!(a < g.back())) return 0.5;  // at or beyond the largest finite value: clamped / saturated
  const auto it = std::lower_bound(g.begin(), g.end(), a);
  if (*it == a) return 0.5;
  const double hi = *it;
  const double lo = *(it - 1);
  const double q = hi - lo;
  return std::fabs(a - 0.5 * (lo + hi)) / q;
}

// spec 01 §1.4 steps 1–3 / §1.5 steps 1–3, the decisions of the fp32 kernels.
QuantMargin block_quant_margin_fp32(std::span<const float> x, std::int64_t cols, int block, BlockQuant kind) {
  const QuantParams p = params(kind);
  QuantMargin m;
  for_each_block("block_quant_margin_fp32", x.size(), cols, block, [&](std::int64_t bi, std::int64_t begin) {
    const float absmax =
        quant_detail::block_absmax(x.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(block)));
    const float amax = std::max(absmax, static_cast<float>(p.floor));
    const float t = amax * p.inv;
    const int k = log2_ceil_fp32(t);
    const float s = pow2_fp32(k);
    double sm = scale_step_margin(t, k);
    if (absmax < amax) sm = std::min(sm, (static_cast<double>(amax) - absmax) / amax);
    fold_scale(m, sm, bi);
    for (std::int64_t j = 0; j < block; ++j) {
      const float v = x[static_cast<std::size_t>(begin + j)] / s;
      const float c = std::min(std::max(v, static_cast<float>(-p.qmax)), static_cast<float>(p.qmax));
      fold(m, rounding_margin(*p.format, c), begin + j);
    }
  });
  return m;
}

// Exact mode: every decision from the double input, exactly.
QuantMargin block_quant_exact_inplace(std::span<double> x, std::int64_t cols, int block, BlockQuant kind) {
  const QuantParams p = params(kind);
  QuantMargin m;
  for_each_block("block_quant_exact_inplace", x.size(), cols, block, [&](std::int64_t bi, std::int64_t begin) {
    double absmax = 0.0;
    for (std::int64_t j = 0; j < block; ++j) {
      const double v = x[static_cast<std::size_t>(begin + j)];
      if (!std::isfinite(v)) throw std::domain_error("block_quant_exact_inplace: non-finite input");
      absmax = std::max(absmax, std::fabs(v));
    }
    const double amax = std::max(absmax, p.floor);
    // k = ⌈log2(amax / qmax)⌉: the smallest k with amax ≤ qmax·2^k (qmax·2^k is exact in double).
    int e = 0;
    (void)std::frexp(amax / p.qmax, &e);  // amax/qmax ∈ [2^(e−1), 2^e) up to one rounding
    int k = e;
    while (amax <= std::ldexp(p.qmax, k - 1)) --k;
    while (amax > std::ldexp(p.qmax, k)) ++k;
    const double s = std::ldexp(1.0, k);
    double sm = scale_step_margin(amax / p.qmax, k);
    if (absmax < amax) sm = std::min(sm, (amax - absmax) / amax);
    fold_scale(m, sm, bi);
    for (std::int64_t j = 0; j < block; ++j) {
      double& xv = x[static_cast<std::size_t>(begin + j)];
      const double v = std::min(std::max(xv / s, -p.qmax), p.qmax);  // x / 2^k is exact
      fold(m, rounding_margin(*p.format, v), begin + j);
      const std::uint32_t code = encode_minifloat(*p.format, v, Overflow::kSaturateFinite);
      xv = decode_minifloat(*p.format, code) * s;
    }
  });
  return m;
}

}  // namespace dsv4
