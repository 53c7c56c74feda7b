// The official-style KV gradient of sparse attention (spec 06 §6.14; ref/train
// sparse_attention_backward_fp32.hpp): bit-identical for 1, 2 and 4 threads and over reruns, equal
// to a naive transcription of the documented rule, within a derived fp32 bound of the exact
// backward's dkv (spec 06 §6.12) when its coefficients are the exact ones rounded to fp32, and a
// mutated per-element order gives other bits (the equality can fail).
#include "dsv4/train/sparse_attention_backward_fp32.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/train/sparse_attention_backward.hpp"
#include "support/fp32_rule_port.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

// The shared §6.14 test pieces (fp32_rule_port.hpp) and the random matrices (random_matrix.hpp).
using namespace test;
using test::to_floats;  // beside this file's overload for vectors

constexpr std::int64_t kH = 2, kC = 8, kNkv = 40, kWidth = 6;

struct Case {
  std::int64_t m;
  Mat q, kv, dout;
  std::vector<double> sink;
  IndexLists lists;
  std::vector<double> prob, dlogit;  // exact coefficients [M·H, width]
  std::vector<double> dz;            // exact −P_z·D [M·H]
  std::vector<float> qf, doutf, probf, dlogitf, dzf;
  double scale = 1.0 / std::sqrt(static_cast<double>(kC));
};

std::vector<float> to_floats(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// Random lists over [−1, kNkv) with repeats (entry 0 of every row valid), bf16 q, kv, ō; the
// coefficients P_j and τ ds_j of the exact backward's own functions (sink_softmax and its backward).
Case make_case(std::int64_t m, std::uint64_t seed) {
  Case c;
  c.m = m;
  c.q = test::random_bf16_matrix(m * kH, kC, seed, 1, 1.0);
  c.kv = test::random_bf16_matrix(kNkv, kC, seed, 2, 1.0);
  c.dout = test::random_bf16_matrix(m * kH, kC, seed, 3, 0.01);
  c.sink = {0.5, -1.0};
  const CounterRng rng(seed, 4);
  c.lists = IndexLists(m, kWidth);
  for (std::int64_t i = 0; i < m * kWidth; ++i) {
    const auto e = static_cast<std::int32_t>(rng.uniform(static_cast<std::uint64_t>(i)) * (kNkv + 1)) - 1;
    c.lists.data[static_cast<std::size_t>(i)] = (i % kWidth == 0 && e < 0) ? 0 : std::min<std::int32_t>(e, kNkv - 1);
  }
  c.prob.assign(static_cast<std::size_t>(m * kH * kWidth), 0.0);
  c.dlogit = c.prob;
  c.dz.assign(static_cast<std::size_t>(m * kH), 0.0);
  for (std::int64_t r = 0; r < m; ++r) {
    for (std::int64_t h = 0; h < kH; ++h) {
      const std::int64_t qr = r * kH + h;
      const SinkSoftmax f = sink_softmax(c.q, qr, c.kv, c.lists.row(r), c.sink[static_cast<std::size_t>(h)], c.scale);
      std::vector<double> dp(f.entries.size());
      for (std::size_t j = 0; j < dp.size(); ++j) dp[j] = c.dout.row(qr).dot(c.kv.row(f.entries[j]));
      const SinkSoftmaxGrads g = sink_softmax_backward(f, dp);
      c.dz[static_cast<std::size_t>(qr)] = g.dsink;
      std::size_t valid = 0;
      for (std::int64_t j = 0; j < kWidth; ++j) {
        if (c.lists.at(r, j) == -1) continue;
        c.prob[static_cast<std::size_t>(qr * kWidth + j)] = f.p[valid];
        c.dlogit[static_cast<std::size_t>(qr * kWidth + j)] = c.scale * g.ds[valid];
        ++valid;
      }
    }
  }
  c.qf = to_floats(c.q);
  c.doutf = to_floats(c.dout);
  c.probf = to_floats(c.prob);
  c.dlogitf = to_floats(c.dlogit);
  c.dzf = to_floats(c.dz);
  return c;
}

// The rule written plainly (the tree in its recursive statement). swapped: ō's and q's fmas in the
// other order (a mutation).
std::vector<float> naive_dkv(const Case& c, std::int64_t chunk, bool swapped = false) {
  const std::int64_t p_count = (c.m + chunk - 1) / chunk;
  std::vector<std::vector<float>> buf(static_cast<std::size_t>(p_count), std::vector<float>(kNkv * kC, 0.0f));
  for (std::int64_t r = 0; r < c.m; ++r) {
    std::vector<float>& b = buf[static_cast<std::size_t>(r / chunk)];
    for (std::int64_t h = 0; h < kH; ++h) {
      const std::int64_t qr = r * kH + h;
      for (std::int64_t j = 0; j < kWidth; ++j) {
        const std::int32_t e = c.lists.at(r, j);
        if (e == -1) continue;
        const float p = c.probf[qr * kWidth + j], g = c.dlogitf[qr * kWidth + j];
        for (std::int64_t d = 0; d < kC; ++d) {
          float& acc = b[e * kC + d];
          acc = swapped ? std::fma(p, c.doutf[qr * kC + d], std::fma(g, c.qf[qr * kC + d], acc))
                        : std::fma(g, c.qf[qr * kC + d], std::fma(p, c.doutf[qr * kC + d], acc));
        }
      }
    }
  }
  std::vector<float> out(kNkv * kC, 0.0f);
  if (p_count == 0) return out;
  for (std::size_t e = 0; e < out.size(); ++e) out[e] = tree(buf, e, 0, static_cast<std::size_t>(p_count));
  return out;
}

std::vector<float> run(const Case& c, std::int64_t chunk) {
  return sparse_attention_dkv_fp32(c.qf, kH, kNkv, kC, c.lists, c.doutf, c.probf, c.dlogitf, PartitionRule{chunk});
}

TEST(SparseAttentionDkvFp32, EqualsNaiveRuleForAnyThreadCount) {
  ThreadGuard guard;
  for (const auto& [m, chunk] :
       {std::pair<std::int64_t, std::int64_t>{1, 128}, {5, 2}, {40, 3}, {300, 16}, {300, 128}}) {
    const Case c = make_case(m, 7);
    const std::vector<float> want = naive_dkv(c, chunk);
    for (int threads : {1, 2, 4}) {
      set_gemm_threads(threads);
      for (int rerun = 0; rerun < 3; ++rerun) {
        EXPECT_TRUE(same_bits(run(c, chunk), want)) << "M " << m << " C " << chunk << " threads " << threads;
      }
    }
    if (m >= 40) {
      EXPECT_FALSE(same_bits(want, naive_dkv(c, chunk, true))) << "M " << m << ": mutation undetected";
    }
  }
}

// Bound. The terms are t = P·ō_d + τds·q_d, the computed ones t̂ = fl32(P)·ō_d + fl32(τds)·q_d with
// |fl32(x) − x| ≤ u₃₂|x| + 2⁻¹⁴⁹ (round to nearest; the absolute part covers subnormals). Each t̂ part
// passes through ≤ n_p + D fmaf roundings, n_p = 2·min(C, M)·H·width the most fmas an element takes
// in one partition, D the tree depth: |dkv_fp32 − Σt| ≤ Σ|t̂ − t| + γ₃₂(n_p + D)·Σ|t̂|. The exact
// backward evaluates Σt in double (per term ≤ 4 roundings — τ·ds, two products, their sum — and ≤ n
// more in the accumulation, n = 2·M·H·width): within γ₆₄(n + 4)·Σ|t| of it.
TEST(SparseAttentionDkvFp32, WithinDerivedBoundOfExact) {
  for (const auto& [m, chunk] : {std::pair<std::int64_t, std::int64_t>{40, 3}, {300, 16}, {300, 128}}) {
    const Case c = make_case(m, 9);
    const std::vector<float> got = run(c, chunk);
    const SparseAttentionGrads exact = sparse_attention_backward(c.q, kH, c.kv, c.sink, c.lists, c.scale, c.dout);
    std::vector<double> err_coef(kNkv * kC, 0.0), abs_hat(kNkv * kC, 0.0), abs_t(kNkv * kC, 0.0);
    for (std::int64_t r = 0; r < m; ++r) {
      for (std::int64_t qr = r * kH; qr < (r + 1) * kH; ++qr) {
        for (std::int64_t j = 0; j < kWidth; ++j) {
          const std::int32_t e = c.lists.at(r, j);
          if (e == -1) continue;
          const double p = c.prob[qr * kWidth + j], g = c.dlogit[qr * kWidth + j];
          for (std::int64_t d = 0; d < kC; ++d) {
            const double o = std::abs(c.dout(qr, d)), qv = std::abs(c.q(qr, d));
            const std::size_t i = static_cast<std::size_t>(e * kC + d);
            err_coef[i] += (kU32 * std::abs(p) + kMinSub32) * o + (kU32 * std::abs(g) + kMinSub32) * qv;
            abs_hat[i] += std::abs(static_cast<double>(c.probf[qr * kWidth + j])) * o +
                          std::abs(static_cast<double>(c.dlogitf[qr * kWidth + j])) * qv;
            abs_t[i] += std::abs(p) * o + std::abs(g) * qv;
          }
        }
      }
    }
    const double n_p = 2.0 * static_cast<double>(std::min(chunk, m) * kH * kWidth);
    const double depth = static_cast<double>(PartitionRule{chunk}.tree_depth(m));
    const double n = 2.0 * static_cast<double>(m * kH * kWidth);
    double worst = 0.0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      // the double sums of the bound are themselves within γ₆₄(n) of their value (nonnegative terms)
      const double slack = 1.0 + gamma(n, kU64);
      const double bound =
          (err_coef[i] + gamma(n_p + depth, kU32) * abs_hat[i] + gamma(n + 4, kU64) * abs_t[i]) * slack;
      const double err = std::abs(static_cast<double>(got[i]) - exact.dkv.data()[i]);
      EXPECT_LE(err, bound) << "M " << m << " C " << chunk << " element " << i;
      if (bound > 0) worst = std::max(worst, err / bound);
    }
    RecordProperty("worst_fraction_of_bound_M" + std::to_string(m) + "_C" + std::to_string(chunk),
                   std::to_string(worst));
  }
}

// dsink: the rule over query rows with S = H, plain fp32 additions over rows ascending; against a
// naive transcription (1, 2, 4 threads), a reversed row order (other bits), and the exact dsink:
// |dsink_fp32 − Σdz| ≤ Σ(u₃₂|dz| + 2⁻¹⁴⁹) + γ₃₂(min(C, M) + D)·Σ|fl32(dz)| + γ₆₄(M)·Σ|dz| (the exact
// backward adds the same double dz over rows ascending).
TEST(SparseAttentionDkvFp32, DsinkRuleAndBound) {
  ThreadGuard guard;
  const std::int64_t m = 300, chunk = 16;
  const Case c = make_case(m, 13);
  std::vector<std::vector<float>> buf(static_cast<std::size_t>((m + chunk - 1) / chunk), std::vector<float>(kH, 0.0f));
  for (std::int64_t r = 0; r < m; ++r)
    for (std::int64_t h = 0; h < kH; ++h) buf[r / chunk][h] = buf[r / chunk][h] + c.dzf[r * kH + h];
  std::vector<float> want(kH), reversed(kH);
  for (std::size_t h = 0; h < kH; ++h) {
    want[h] = tree(buf, h, 0, buf.size());
    float acc = 0.0f;
    for (std::int64_t r = m - 1; r >= 0; --r) acc = acc + c.dzf[r * kH + static_cast<std::int64_t>(h)];
    reversed[h] = acc;
  }
  for (int threads : {1, 2, 4}) {
    set_gemm_threads(threads);
    EXPECT_TRUE(same_bits(sparse_attention_dsink_fp32(c.dzf, m, kH, PartitionRule{chunk}), want)) << threads;
  }
  EXPECT_FALSE(same_bits(want, reversed));
  const SparseAttentionGrads exact = sparse_attention_backward(c.q, kH, c.kv, c.sink, c.lists, c.scale, c.dout);
  const double depth = static_cast<double>(PartitionRule{chunk}.tree_depth(m));
  for (std::int64_t h = 0; h < kH; ++h) {
    double coef = 0.0, abs_hat = 0.0, abs_t = 0.0;
    for (std::int64_t r = 0; r < m; ++r) {
      const double t = c.dz[r * kH + h];
      coef += kU32 * std::abs(t) + kMinSub32;
      abs_hat += std::abs(static_cast<double>(c.dzf[r * kH + h]));
      abs_t += std::abs(t);
    }
    const double bound = (coef + gamma(static_cast<double>(chunk) + depth, kU32) * abs_hat +
                          gamma(static_cast<double>(m), kU64) * abs_t) *
                         (1.0 + gamma(static_cast<double>(m), kU64));
    EXPECT_LE(std::abs(static_cast<double>(want[h]) - exact.dsink(h)), bound) << "head " << h;
  }
}

TEST(SparseAttentionDkvFp32, RefusesBadInput) {
  const Case c = make_case(3, 1);
  EXPECT_THROW((void)sparse_attention_dkv_fp32(c.qf, kH, kNkv - 30, kC, c.lists, c.doutf, c.probf, c.dlogitf),
               std::invalid_argument);  // a list entry ≥ n_kv
  const std::vector<float> short_prob(c.probf.begin(), c.probf.end() - 1);
  EXPECT_THROW((void)sparse_attention_dkv_fp32(c.qf, kH, kNkv, kC, c.lists, c.doutf, short_prob, c.dlogitf),
               std::invalid_argument);
  EXPECT_THROW((void)sparse_attention_dkv_fp32(c.qf, 0, kNkv, kC, c.lists, c.doutf, c.probf, c.dlogitf),
               std::invalid_argument);
  EXPECT_THROW((void)sparse_attention_dsink_fp32(c.dzf, 4, kH), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
