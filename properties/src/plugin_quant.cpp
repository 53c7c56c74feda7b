// Plugin fuzzers of the quantisers (spec 01 §1.4, §1.5): the plugin's codes and scales must equal
// the reference's bit for bit — the quantisers are exactly specified fp32 computations, so any
// difference is a bug (no tolerance).
#include <cstring>
#include <string>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"
#include "dsv4/properties/generators.hpp"
#include "plugin_detail.hpp"

namespace dsv4::props::plugin_detail {

namespace {

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%02X", v);
  return buf;
}
std::string at(std::int64_t i, std::int64_t cols) {
  return "[" + std::to_string(i / cols) + ", " + std::to_string(i % cols) + "]";
}

}  // namespace

rc::detail::Property act_quant_property(Plugin& host) {
  return rc::detail::toProperty([plugin = &host] {
    const std::int64_t rows = *rc::gen::inRange(1, 4);
    const int block = *rc::gen::element(32, 64, 128);
    const std::int64_t cols = block * *rc::gen::inRange(1, 4);
    const bool ue8m0 = *rc::gen::arbitrary<bool>();
    const std::vector<float> x = gen_bf16_rows(rows, cols);
    std::vector<std::uint8_t> codes(x.size(), 0xAA);
    std::vector<float> scales(static_cast<std::size_t>(rows * cols / block), -1.0f);
    const int rc = plugin->act_quant(x.data(), rows, cols, block, ue8m0 ? DSV4_SCALE_UE8M0 : DSV4_SCALE_FP32,
                                     codes.data(), scales.data());
    if (rc != 0) RC_FAIL("act_quant: plugin returned " + std::to_string(rc));
    const Fp8Blocks ref = act_quant(x, cols, block, ue8m0 ? ScaleFormat::kUE8M0 : ScaleFormat::kFP32);
    const std::int64_t nb = cols / block;
    for (std::size_t b = 0; b < scales.size(); ++b) {
      if (float_bits(scales[b]) != float_bits(ref.scales[b])) {
        RC_FAIL("act_quant: scale of block " + at(static_cast<std::int64_t>(b), nb) + ": plugin " + num(scales[b]) +
                ", reference " + num(ref.scales[b]));
      }
    }
    for (std::size_t i = 0; i < codes.size(); ++i) {
      if (codes[i] != ref.values[i]) {
        RC_FAIL("act_quant: code of element " + at(static_cast<std::int64_t>(i), cols) + " (x = " + num(x[i]) +
                "): plugin " + hex(codes[i]) + " (" + num(e4m3_to_float(codes[i])) + "), reference " +
                hex(ref.values[i]) + " (" + num(e4m3_to_float(ref.values[i])) + ")");
      }
    }
  });
}

rc::detail::Property fp4_act_quant_property(Plugin& host) {
  return rc::detail::toProperty([plugin = &host] {
    const std::int64_t rows = *rc::gen::inRange(1, 4);
    const std::int64_t cols = 32 * *rc::gen::inRange(1, 5);
    const std::vector<float> x = gen_bf16_rows(rows, cols);
    std::vector<std::uint8_t> packed(x.size() / 2, 0xAA), scales(x.size() / 32, 0xAA);
    const int rc = plugin->fp4_act_quant(x.data(), rows, cols, packed.data(), scales.data());
    if (rc != 0) RC_FAIL("fp4_act_quant: plugin returned " + std::to_string(rc));
    const Fp4Blocks ref = fp4_act_quant(x, cols);
    for (std::size_t b = 0; b < scales.size(); ++b) {
      if (scales[b] != ref.scales[b]) {
        RC_FAIL("fp4_act_quant: e8m0 scale of block " + at(static_cast<std::int64_t>(b), cols / 32) + ": plugin " +
                hex(scales[b]) + ", reference " + hex(ref.scales[b]));
      }
    }
    for (std::size_t i = 0; i < x.size(); ++i) {
      const unsigned shift = i % 2 == 0 ? 0 : 4;
      const unsigned pc = (packed[i / 2] >> shift) & 0xFu, rcode = (ref.packed[i / 2] >> shift) & 0xFu;
      if (pc != rcode) {
        RC_FAIL("fp4_act_quant: code of element " + at(static_cast<std::int64_t>(i), cols) + " (x = " + num(x[i]) +
                "): plugin " + hex(pc) + " (" + num(e2m1_to_float(static_cast<std::uint8_t>(pc))) + "), reference " +
                hex(rcode) + " (" + num(e2m1_to_float(static_cast<std::uint8_t>(rcode))) + ")");
      }
    }
  });
}

}  // namespace dsv4::props::plugin_detail
