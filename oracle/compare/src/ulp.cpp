// ULP grids, ordinals and distances (ulp.hpp). The rounding itself is the library's one rounding
// routine, encode_minifloat (numerics/formats), for every minifloat; fp32 uses the hardware's
// correctly rounded double → float conversion; fp64 values are their own ordinals.
#include "dsv4/compare/ulp.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace dsv4::compare {
namespace {

const MinifloatFormat* minifloat_of(DType d) {
  switch (d) {
    case DType::kBF16:
      return &kFormatBF16;
    case DType::kF16:
      return &kFormatFP16;
    case DType::kE4M3:
      return &kFormatE4M3;
    case DType::kE5M2:
      return &kFormatE5M2;
    case DType::kE2M1x2:
      return &kFormatE2M1;
    default:
      return nullptr;
  }
}

// Sign-magnitude pattern → signed ordinal.
std::int64_t signed_ordinal(std::uint64_t bits, int magnitude_bits) {
  const std::uint64_t mag = bits & ((std::uint64_t{1} << magnitude_bits) - 1);
  const bool negative = ((bits >> magnitude_bits) & 1) != 0;
  return negative ? -static_cast<std::int64_t>(mag) : static_cast<std::int64_t>(mag);
}

}  // namespace

UlpGrid ulp_grid(DType dtype) {
  UlpGrid g;
  g.dtype = dtype;
  if (dtype == DType::kF64) {
    g.mantissa_bits = 52;
    g.min_exponent = -1022;
    g.max_exponent = 1023;
    g.has_infinity = true;
    g.max_finite_ordinal = std::bit_cast<std::uint64_t>(std::numeric_limits<double>::max());
    return g;
  }
  if (dtype == DType::kF32) {
    g.mantissa_bits = 23;
    g.min_exponent = -126;
    g.max_exponent = 127;
    g.has_infinity = true;
    g.max_finite_ordinal = std::bit_cast<std::uint32_t>(std::numeric_limits<float>::max());
    return g;
  }
  const MinifloatFormat* f = minifloat_of(dtype);
  if (f == nullptr) {
    throw std::invalid_argument("ulp_grid: dtype " + std::string(dtype_name(dtype)) +
                                " is not a floating-point format with a ULP grid");
  }
  g.mantissa_bits = f->mantissa_bits;
  g.min_exponent = 1 - f->bias;
  const int top_field = (1 << f->exponent_bits) - (f->ieee_specials ? 2 : 1);
  g.max_exponent = top_field - f->bias;
  g.has_infinity = f->has_infinity;
  const std::uint32_t max_bits = encode_minifloat(*f, max_finite(*f), Overflow::kSaturateFinite);
  g.max_finite_ordinal = max_bits & ((1u << (f->exponent_bits + f->mantissa_bits)) - 1);
  return g;
}

std::int64_t ulp_ordinal(const UlpGrid& grid, double x) {
  if (std::isnan(x)) throw std::invalid_argument("ulp_ordinal: NaN has no ordinal");
  if (std::isinf(x)) {
    const auto top = static_cast<std::int64_t>(grid.max_finite_ordinal + (grid.has_infinity ? 1 : 0));
    return x > 0 ? top : -top;
  }
  if (grid.dtype == DType::kF64) return signed_ordinal(std::bit_cast<std::uint64_t>(x), 63);
  if (grid.dtype == DType::kF32) {
    return signed_ordinal(std::bit_cast<std::uint32_t>(static_cast<float>(x)), 31);  // RNE, overflow → inf
  }
  const MinifloatFormat& f = *minifloat_of(grid.dtype);
  const Overflow o = grid.has_infinity ? Overflow::kToSpecial : Overflow::kSaturateFinite;
  return signed_ordinal(encode_minifloat(f, x, o), f.exponent_bits + f.mantissa_bits);
}

bool on_grid(const UlpGrid& grid, double x) {
  if (!std::isfinite(x)) return false;
  if (grid.dtype == DType::kF64) return true;
  if (grid.dtype == DType::kF32 || grid.dtype == DType::kBF16) {
    const float f = static_cast<float>(x);
    if (!std::isfinite(f) || static_cast<double>(f) != x) return false;
    // bf16 is fp32 with the low 16 mantissa bits zero (same exponent range, subnormals included)
    return grid.dtype == DType::kF32 || (std::bit_cast<std::uint32_t>(f) & 0xFFFFu) == 0;
  }
  const MinifloatFormat& f = *minifloat_of(grid.dtype);
  const double v = decode_minifloat(f, encode_minifloat(f, x, Overflow::kToSpecial));
  return std::isfinite(v) && v == x;
}

namespace {

// Every finite value is a float whose bits under `low_bits` are zero (0: any float; 0xFFFF: bf16).
// on_grid's rule for these two grids, as a branch-free loop over blocks (the compiler vectorises
// it; certify scans every wide candidate with it).
bool all_on_float_grid(std::span<const double> values, std::uint32_t low_bits) {
  constexpr std::size_t kBlock = 4096;
  for (std::size_t b = 0; b < values.size(); b += kBlock) {
    const std::size_t end = std::min(values.size(), b + kBlock);
    bool all = true;
    for (std::size_t i = b; i < end; ++i) {
      const double x = values[i];
      const float f = static_cast<float>(x);
      const bool finite = std::fabs(x) <= std::numeric_limits<double>::max();
      all &= !finite || (static_cast<double>(f) == x && (std::bit_cast<std::uint32_t>(f) & low_bits) == 0);
    }
    if (!all) return false;
  }
  return true;
}

}  // namespace

DType widened_dump_dtype(std::span<const double> values, DType official) {
  if (official == DType::kF64) return official;
  if (official == DType::kF32 || official == DType::kBF16) {
    if (all_on_float_grid(values, 0xFFFFu)) return DType::kBF16;
    return official == DType::kF32 && all_on_float_grid(values, 0u) ? DType::kF32 : DType::kF64;
  }
  const UlpGrid grid = ulp_grid(official);
  for (const double x : values)
    if (std::isfinite(x) && !on_grid(grid, x)) return DType::kF64;
  return official;
}

DType float32_dump_dtype(std::span<const float> values) {
  std::uint32_t low = 0;
  for (const float f : values) low |= std::isfinite(f) ? (std::bit_cast<std::uint32_t>(f) & 0xFFFFu) : 0u;
  return low == 0 ? DType::kBF16 : DType::kF32;
}

std::optional<std::int64_t> stored_ordinal(DType dtype, const std::byte* element) {
  const auto load = [element]<class U>(U bits) {
    std::memcpy(&bits, element, sizeof bits);
    const std::int64_t o = stored_pattern_ordinal(bits);
    return o == kNaNOrdinal ? std::nullopt : std::optional<std::int64_t>(o);
  };
  switch (dtype) {
    case DType::kF64:
      return load(std::uint64_t{0});
    case DType::kF32:
      return load(std::uint32_t{0});
    case DType::kBF16:
      return load(std::uint16_t{0});
    default:
      throw std::invalid_argument("stored_ordinal: " + std::string(dtype_name(dtype)) + " is not fp64, fp32 or bf16");
  }
}

std::uint64_t ulp_distance(const UlpGrid& grid, double candidate, double reference) {
  const std::int64_t a = ulp_ordinal(grid, candidate);
  const std::int64_t b = ulp_ordinal(grid, reference);
  return a > b ? static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b)
               : static_cast<std::uint64_t>(b) - static_cast<std::uint64_t>(a);
}

double ulp_at(const UlpGrid& grid, double x) {
  int e = grid.min_exponent;
  if (std::isfinite(x) && x != 0.0) e = std::ilogb(x);
  if (std::isinf(x)) e = grid.max_exponent;
  e = std::max(grid.min_exponent, std::min(e, grid.max_exponent));
  return std::ldexp(1.0, e - grid.mantissa_bits);
}

int ulp_bucket(std::uint64_t distance) {
  if (distance == 0) return 0;
  return std::min(1 + static_cast<int>(std::bit_width(distance - 1)), kUlpBuckets - 1);
}

std::string ulp_bucket_label(int bucket) {
  if (bucket < 0 || bucket >= kUlpBuckets) throw std::invalid_argument("ulp_bucket_label: bucket out of range");
  if (bucket <= 2) return std::to_string(bucket);
  if (bucket == kUlpBuckets - 1) return ">2^" + std::to_string(kUlpBuckets - 3);
  if (bucket <= 12) {
    return std::to_string((std::uint64_t{1} << (bucket - 2)) + 1) + "-" +
           std::to_string(std::uint64_t{1} << (bucket - 1));
  }
  return "(2^" + std::to_string(bucket - 2) + ",2^" + std::to_string(bucket - 1) + "]";
}

}  // namespace dsv4::compare
