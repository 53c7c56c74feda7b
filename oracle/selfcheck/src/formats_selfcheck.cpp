#include "dsv4/selfcheck/formats_selfcheck.hpp"

#include <cmath>
#include <cstdio>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

namespace {

std::string hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%X", v);
  return buf;
}

// spec 01 §1.1: every non-NaN pattern p of a format satisfies encode(decode(p)) == p.
SelfCheckLine roundtrip_all_patterns(const MinifloatFormat& f) {
  SelfCheckLine line{std::string(f.name) + ": encode(decode(p)) == p for every pattern", 0, 0, ""};
  const int bits = (f.has_sign ? 1 : 0) + f.exponent_bits + f.mantissa_bits;
  for (std::uint32_t p = 0; p < (1u << bits); ++p) {
    const double v = decode_minifloat(f, p);
    ++line.cases;
    if (std::isnan(v)) continue;
    const std::uint32_t back = encode_minifloat(f, v, Overflow::kToSpecial);
    if (back != p) {
      if (line.failures++ == 0) line.first_failure = "pattern " + hex(p) + " came back as " + hex(back);
    }
  }
  return line;
}

}  // namespace

std::vector<SelfCheckLine> run_formats_selfcheck() {
  std::vector<SelfCheckLine> out;
  for (const MinifloatFormat* f :
       {&kFormatBF16, &kFormatFP16, &kFormatE4M3, &kFormatE5M2, &kFormatE8M0, &kFormatE2M1}) {
    out.push_back(roundtrip_all_patterns(*f));
  }
  return out;
}

// spec 07 §7.4 item 6: applying an in-place quantiser twice gives the same bits as once.
std::vector<SelfCheckLine> run_quant_selfcheck(std::uint64_t seed) {
  constexpr std::int64_t kRows = 64;
  constexpr std::int64_t kCols = 256;
  std::vector<SelfCheckLine> out;
  for (const QuantKind& kind : quant_kinds()) {
    const CounterRng rng(seed, stream_id(kind.name.c_str()));
    std::vector<float> x(static_cast<std::size_t>(kRows * kCols));
    for (std::size_t i = 0; i < x.size(); ++i) {
      // bf16 values over ~12 decades: row r is scaled by 2^(r − 32).
      const double scale = std::ldexp(1.0, static_cast<int>(i / kCols) - 32);
      x[i] = round_bf16(scale * rng.normal(i));
    }
    std::vector<float> once = x;
    kind.apply(once, kCols);
    std::vector<float> twice = once;
    kind.apply(twice, kCols);
    SelfCheckLine line{kind.name + ": idempotent on a seeded 64x256 tensor", 0, 0, ""};
    for (std::size_t i = 0; i < x.size(); ++i) {
      ++line.cases;
      if (float_bits(once[i]) != float_bits(twice[i]) || round_bf16(once[i]) != once[i]) {
        if (line.failures++ == 0) {
          line.first_failure =
              "element " + std::to_string(i) + ": " + hex(float_bits(once[i])) + " then " + hex(float_bits(twice[i]));
        }
      }
    }
    out.push_back(line);
  }
  return out;
}

}  // namespace dsv4
