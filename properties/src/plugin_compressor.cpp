// Plugin fuzzer of the KV compressor's prefill (spec 02 §2.6.1–§2.6.4) against the reference
// Compressor in exact and official mode, under the FlashAttention-style rule of plugin_detail.hpp
// with k = 2 and a floor of one output quantum per element (README §Foreign kernels): twice the
// e4m3 (main, dims [0, D − r)) or e2m1 (indexer, all dims) quantum at the element's exact value
// and block scale — a near-tie may round to the other neighbour, and a block whose amax sits at a
// power-of-two boundary may take the doubled scale — and one bf16 ulp on the main compressor's
// RoPE dims.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/compressor.hpp"
#include "dsv4/model/rope.hpp"
#include "dsv4/properties/generators.hpp"
#include "plugin_detail.hpp"

namespace dsv4::props::plugin_detail {

namespace {

// The quantum of e4m3 at |v| ≤ 448 (3 mantissa bits, emin −6, subnormal step 2^−9) and of e2m1 at
// |v| ≤ 6 (grid 0, 0.5, 1, 1.5, 2, 3, 4, 6).
double e4m3_quantum(double v) { return std::ldexp(1.0, std::max(std::ilogb(std::max(v, 0x1p-6)), -6) - 3); }
double e2m1_quantum(double v) { return v < 2.0 ? 0.5 : (v < 4.0 ? 1.0 : 2.0); }

// The power-of-two block scale of a block with amax a: 2^⌈log2(a/max)⌉ (max = 448 or 6).
double pow2_scale(double amax, double max) {
  if (amax == 0.0) return 1.0;
  return std::ldexp(1.0, static_cast<int>(std::ceil(std::log2(amax / max))));
}

}  // namespace

rc::detail::Property compressor_prefill_property(Plugin& host) {
  return rc::detail::toProperty([plugin = &host] {
    const bool rotate = *rc::gen::arbitrary<bool>();
    const std::int64_t ratio = rotate ? 4 : *rc::gen::element<std::int64_t>(4, 128);
    std::int64_t head_dim = 0, rope_dim = 0;
    if (rotate) {
      head_dim = *rc::gen::element<std::int64_t>(32, 64, 128);
      rope_dim = std::min<std::int64_t>(head_dim, *rc::gen::element<std::int64_t>(8, 16, 64));
    } else {
      rope_dim = *rc::gen::element<std::int64_t>(8, 16, 64);
      head_dim = rope_dim + *rc::gen::element<std::int64_t>(64, 128);
    }
    const std::int64_t d = *rc::gen::inRange(8, 33);
    const std::int64_t s = ratio == 4 ? *rc::gen::inRange(4, 25) : *rc::gen::inRange(128, 300);
    const auto x = *rc::gen::container<std::vector<float>>(static_cast<std::size_t>(s * d), gen_bf16(-4, 1, false));
    const auto seed = *rc::gen::arbitrary<std::uint32_t>();

    ModelConfig mc;
    CompressorSpec spec;
    spec.ratio = ratio;
    spec.dim = d;
    spec.head_dim = head_dim;
    spec.rope_head_dim = rope_dim;
    spec.rotate = rotate;
    spec.max_seq_len = s;
    spec.rope = rope_params_for_ratio(mc, ratio);
    spec.rope.rope_head_dim = rope_dim;
    const CompressorWeights w = CompressorWeights::synthetic(spec, seed);
    const Compressor official(Precision(Mode::kOfficial), spec, w);
    const Compressor exact(Precision(Mode::kExact), spec, w);

    // The plugin's arguments (fp32 arrays; weights and x hold bf16 / fp32 values exactly).
    auto to_float = [](const Mat& m) {
      std::vector<float> v(static_cast<std::size_t>(m.size()));
      for (std::int64_t i = 0; i < m.size(); ++i) v[static_cast<std::size_t>(i)] = static_cast<float>(m.data()[i]);
      return v;
    };
    const std::int64_t entries = s / ratio;
    const RopeTable& table = official.rope_table();
    Mat cosm(std::max<std::int64_t>(entries, 1), rope_dim / 2), sinm(cosm.rows(), cosm.cols());
    for (std::int64_t i = 0; i < entries; ++i) {
      for (std::int64_t p = 0; p < rope_dim / 2; ++p) {
        cosm(i, p) = table.cos(ratio * i, p);
        sinm(i, p) = table.sin(ratio * i, p);
      }
    }
    const std::vector<float> wkv = to_float(w.wkv.values()), wgate = to_float(w.wgate.values()), ape = to_float(w.ape),
                             norm = to_float(Mat(w.norm.transpose())), cosv = to_float(cosm), sinv = to_float(sinm);
    std::vector<float> out(static_cast<std::size_t>(std::max<std::int64_t>(entries, 1) * head_dim), NAN);
    const int rc =
        plugin->compressor_prefill(x.data(), s, d, static_cast<std::int32_t>(ratio), head_dim, rope_dim, rotate ? 1 : 0,
                                   static_cast<float>(spec.norm_eps), wkv.data(), wgate.data(), ape.data(), norm.data(),
                                   cosv.data(), sinv.data(), out.data());
    if (rc != 0) RC_FAIL("compressor_prefill: plugin returned " + std::to_string(rc));
    out.resize(static_cast<std::size_t>(entries * head_dim));

    Mat xm(s, d);
    for (std::int64_t i = 0; i < xm.size(); ++i) xm.data()[i] = x[static_cast<std::size_t>(i)];
    CompressorState so = official.initial_state(), se = exact.initial_state();
    const Mat eo = official.prefill(xm, so).entries;
    const Mat ee = exact.prefill(xm, se).entries;

    const std::int64_t block = rotate ? 32 : 64;
    const std::int64_t quantised = rotate ? head_dim : head_dim - rope_dim;
    ToleranceRule rule;
    rule.k = 2.0;
    rule.floor = [&](std::int64_t i) {
      const std::int64_t r = i / head_dim, col = i % head_dim;
      const double e = std::fabs(ee.data()[i]);
      if (col >= quantised) return ulp_bf16(e);
      double amax = 0.0;
      const std::int64_t b0 = col / block * block;
      for (std::int64_t j = b0; j < b0 + block; ++j) amax = std::max(amax, std::fabs(ee(r, j)));
      const double sc = pow2_scale(amax, rotate ? 6.0 : 448.0);
      return 2.0 * sc * (rotate ? e2m1_quantum(e / sc) : e4m3_quantum(e / sc));
    };
    rule.where = [&](std::int64_t i) {
      return "[entry " + std::to_string(i / head_dim) + ", dim " + std::to_string(i % head_dim) + "]";
    };
    const std::string v = fa_rule_violation("compressor_prefill", out, eo, ee, rule);
    if (!v.empty()) RC_FAIL(v);
  });
}

}  // namespace dsv4::props::plugin_detail
