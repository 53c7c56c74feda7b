// Plugin fuzzer of sparse attention with the attention sink (spec 02 §2.9) against the reference
// sparse_attention in exact and official mode: every element under the FlashAttention-style rule
// of plugin_detail.hpp with k = 2 and the floor ulp_bf16(exact), and the whole output under the
// certify tolerance model (dsv4/compare/tolerance.hpp: max abs, RMS and bias against k × the
// official's, bf16 output grid) — README §Foreign kernels.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/compare/tolerance.hpp"
#include "dsv4/model/sparse_attention.hpp"
#include "dsv4/properties/generators.hpp"
#include "plugin_detail.hpp"

namespace dsv4::props::plugin_detail {

rc::detail::Property sparse_attention_property(Plugin& host) {
  return rc::detail::toProperty([plugin = &host] {
    const std::int64_t m = *rc::gen::inRange(1, 3);   // query tokens
    const std::int64_t h = *rc::gen::inRange(1, 5);   // heads
    const std::int64_t c = *rc::gen::inRange(1, 17);  // head dim
    const std::int64_t n = *rc::gen::inRange(1, 81);  // KV rows
    // Up to 80 list entries: one or two chunks of 64.
    const std::int64_t k = *rc::gen::inRange(1, 81);
    // q and kv: bf16 values of magnitude 2^−3..2^1 (exponents −3..0) (scores of a few units: softmax weights spread).
    const auto q = *rc::gen::container<std::vector<float>>(static_cast<std::size_t>(m * h * c), gen_bf16(-3, 0, false));
    const auto kv = *rc::gen::container<std::vector<float>>(static_cast<std::size_t>(n * c), gen_bf16(-3, 0, false));
    // Sinks: fp32 values in [−8, 8] (comparable to the scores), sometimes −∞ (plain softmax).
    std::vector<float> sink = gen_fixed_point(h, 20, 17);
    const bool plain = *rc::gen::weightedElement<bool>({{1, true}, {7, false}});
    if (plain) sink.assign(sink.size(), -std::numeric_limits<float>::infinity());
    // Index lists: entries in [0, n) or −1 (1 in 5); the first chunk of every row holds a valid one.
    std::vector<std::int32_t> idx = *rc::gen::container<std::vector<std::int32_t>>(
        static_cast<std::size_t>(m * k),
        rc::gen::weightedOneOf<std::int32_t>({{4, rc::gen::inRange<std::int32_t>(0, static_cast<std::int32_t>(n))},
                                              {1, rc::gen::just<std::int32_t>(-1)}}));
    for (std::int64_t r = 0; r < m; ++r) {
      bool any = false;
      for (std::int64_t j = 0; j < std::min<std::int64_t>(k, 64); ++j) any = any || idx[r * k + j] != -1;
      if (!any) idx[r * k] = static_cast<std::int32_t>(r % n);
    }
    // The softmax scale: fp32 c^(−1/2) as the model uses, or another fp32 in (0, 1].
    const float scale = *rc::gen::arbitrary<bool>() ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(c)))
                                                    : std::ldexp(static_cast<float>(*rc::gen::inRange(1, 257)), -8);

    std::vector<float> out(q.size(), std::numeric_limits<float>::quiet_NaN());
    const int rc =
        plugin->sparse_attention(q.data(), m, h, c, kv.data(), n, sink.data(), idx.data(), k, scale, out.data());
    if (rc != 0) RC_FAIL("sparse_attention: plugin returned " + std::to_string(rc));

    Mat qm(m * h, c), kvm(n, c);
    for (std::int64_t i = 0; i < qm.size(); ++i) qm.data()[i] = q[static_cast<std::size_t>(i)];
    for (std::int64_t i = 0; i < kvm.size(); ++i) kvm.data()[i] = kv[static_cast<std::size_t>(i)];
    const std::vector<double> sinkd(sink.begin(), sink.end());
    IndexLists lists(m, k);
    lists.data = idx;
    const Mat official = sparse_attention(Precision(Mode::kOfficial), qm, h, kvm, sinkd, lists, scale);
    const Mat exact = sparse_attention(Precision(Mode::kExact), qm, h, kvm, sinkd, lists, scale);
    ToleranceRule rule;
    rule.k = 2.0;
    rule.floor = [&](std::int64_t i) { return ulp_bf16(exact.data()[i]); };
    rule.where = [&](std::int64_t i) {
      return "[token " + std::to_string(i / (h * c)) + ", head " + std::to_string(i / c % h) + ", dim " +
             std::to_string(i % c) + "]";
    };
    const std::string v = fa_rule_violation("sparse_attention", out, official, exact, rule);
    if (!v.empty()) RC_FAIL(v);
    // The certify model on the whole tensor (the output is bf16: its grid and ulps).
    const std::vector<double> cand(out.begin(), out.end());
    const std::span<const double> ex(exact.data(), static_cast<std::size_t>(exact.size()));
    const std::span<const double> off(official.data(), static_cast<std::size_t>(official.size()));
    const compare::TensorVerdict verdict =
        compare::judge_tensor(compare::compute_metrics(cand, DType::kBF16, ex),
                              compare::reference_error(compare::compute_metrics(off, DType::kBF16, ex)));
    if (verdict.verdict != compare::Verdict::kPass)
      RC_FAIL("sparse_attention (certify tolerance model): " + verdict.reason);
  });
}

}  // namespace dsv4::props::plugin_detail
