// RapidCheck generators shared by the property suites and the plugin fuzzers (generators.hpp).
#include "dsv4/properties/generators.hpp"

#include <cmath>

#include "dsv4/numerics/formats.hpp"

namespace dsv4::props {

rc::Gen<float> gen_bf16(int lo, int hi, bool any_pattern) {
  const rc::Gen<float> narrow = rc::gen::apply(
      [](bool neg, int e, int m) {
        const double v = std::ldexp(1.0 + m / 128.0, e);
        return static_cast<float>(neg ? -v : v);
      },
      rc::gen::arbitrary<bool>(), rc::gen::inRange(lo, hi + 1), rc::gen::inRange(0, 128));
  if (!any_pattern) return rc::gen::weightedOneOf<float>({{16, narrow}, {1, rc::gen::just(0.0f)}});
  const rc::Gen<float> any = rc::gen::map(rc::gen::inRange<int>(0, 0x10000), [](int p) {
    const float f = bf16_to_float(static_cast<std::uint16_t>(p));
    return std::isfinite(f) ? f : 0.0f;
  });
  return rc::gen::weightedOneOf<float>({{16, narrow}, {1, rc::gen::just(0.0f)}, {2, any}});
}

std::vector<float> gen_bf16_rows(std::int64_t rows, std::int64_t cols) {
  const int lo = *rc::gen::inRange(-40, 30);
  const int span = *rc::gen::inRange(0, 25);
  return *rc::gen::container<std::vector<float>>(static_cast<std::size_t>(rows * cols), gen_bf16(lo, lo + span));
}

std::vector<float> gen_fixed_point(std::int64_t n, int bits, int shift) {
  return *rc::gen::container<std::vector<float>>(
      static_cast<std::size_t>(n), rc::gen::map(rc::gen::inRange(-(1 << bits), (1 << bits) + 1),
                                                [shift](int k) { return std::ldexp(static_cast<float>(k), -shift); }));
}

}  // namespace dsv4::props
