// GPU hc_split_sinkhorn (gpu/src/mhc.cu) against the official-mode CPU reference
// (ref/model/src/mhc.cpp), bit for bit: pre, post, comb for synthetic weights and random mixes,
// n = 1..8, 1/5/20/40 iterations, spread logits; batch invariance (a token alone = in a batch);
// the device C2 exp against cr_exp. The kernel may flag a token whose rounding it cannot decide
// (the host then recomputes it with the reference): the tests require that this is rare and count
// it, so the device path itself is what is compared.
//
// Without a CUDA device the GPU tests skip (CI has none); the argument checks run anyway.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/mhc.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/numerics/correct_rounding.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4 {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)"

std::uint32_t bits(float f) {
  std::uint32_t b = 0;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

struct Inputs {
  std::vector<float> mixes, scale, base;
};

// Synthetic weights of hc_mult n (HcWeights::synthetic) and mixes ~ spread·N(0, 1) in fp32.
Inputs make_inputs(int n, std::int64_t tokens, double spread, std::uint64_t seed) {
  ModelConfig c = builtin_config("tiny");
  c.hc_mult = n;
  c.dim = 8;
  const HcWeights w = HcWeights::synthetic(c, seed);
  Inputs in;
  for (Eigen::Index i = 0; i < w.base.size(); ++i) in.base.push_back(static_cast<float>(w.base(i)));
  for (int g = 0; g < 3; ++g) in.scale.push_back(static_cast<float>(w.scale(g)));
  // α_res = fl32(0.7) (not a power of two, so the FMA of the affine map differs from mul + add on
  // many inputs) and mixes ~ (spread/0.7)·N(0, 1): the comb logits spread like spread·N(0, 1).
  in.scale[2] = 0.7f;
  const CounterRng rng(seed, stream_id("gpu_mhc_test.mixes"));
  const std::int64_t count = tokens * (2 + n) * n;
  for (std::int64_t i = 0; i < count; ++i) {
    in.mixes.push_back(static_cast<float>(spread / 0.7 * rng.normal(static_cast<std::uint64_t>(i))));
  }
  return in;
}

// Compares every token with the reference; returns the number of mismatching values.
std::int64_t mismatches(const Inputs& in, const gpu::SinkhornBatch& out, int n, std::int64_t tokens, int iters,
                        double eps) {
  ModelConfig c;
  c.hc_mult = n;
  c.hc_sinkhorn_iters = iters;
  c.hc_eps = eps;
  HcWeights w;
  const int mixes = (2 + n) * n;
  w.base.resize(mixes);
  w.scale.resize(3);
  for (int i = 0; i < mixes; ++i) w.base(i) = in.base[static_cast<std::size_t>(i)];
  for (int g = 0; g < 3; ++g) w.scale(g) = in.scale[static_cast<std::size_t>(g)];
  const Precision p(Mode::kOfficial);
  std::int64_t bad = 0;
  std::vector<double> mu(static_cast<std::size_t>(mixes));
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (int i = 0; i < mixes; ++i) mu[static_cast<std::size_t>(i)] = in.mixes[static_cast<std::size_t>(t * mixes + i)];
    const SinkhornResult r = hc_split_sinkhorn(p, c, mu.data(), w);
    for (int j = 0; j < n; ++j) {
      const std::size_t o = static_cast<std::size_t>(t * n + j);
      bad += bits(out.pre[o]) != bits(static_cast<float>(r.pre(j)));
      bad += bits(out.post[o]) != bits(static_cast<float>(r.post(j)));
      for (int k = 0; k < n; ++k) {
        bad += bits(out.comb[static_cast<std::size_t>((t * n + j) * n + k)]) != bits(static_cast<float>(r.comb(j, k)));
      }
    }
  }
  return bad;
}

TEST(GpuMhc, MatchesReferenceBitForBit) {
  SKIP_WITHOUT_GPU();
  std::int64_t recomputed = 0, tokens_total = 0;
  for (int n = 1; n <= gpu::kMaxHcMult; ++n) {
    for (const int iters : {1, 5, 20, 40}) {
      for (const double spread : {0.5, 1.0, 3.0}) {
        const std::int64_t tokens = n == 4 && iters == 20 ? 2000 : 100;
        const Inputs in = make_inputs(n, tokens, spread, static_cast<std::uint64_t>(n * 100 + iters));
        const gpu::SinkhornBatch out =
            gpu::hc_split_sinkhorn(in.mixes.data(), tokens, n, in.scale.data(), in.base.data(), iters, 1e-6);
        ASSERT_EQ(mismatches(in, out, n, tokens, iters, 1e-6), 0) << "n " << n << " iters " << iters;
        recomputed += out.recomputed;
        tokens_total += tokens;
      }
    }
  }
  std::printf("tokens %lld, recomputed on the host %lld\n", static_cast<long long>(tokens_total),
              static_cast<long long>(recomputed));
  EXPECT_LE(recomputed * 1000, tokens_total);  // the device decides ≥ 99.9 % of the tokens itself
}

TEST(GpuMhc, BatchInvariant) {
  SKIP_WITHOUT_GPU();
  const int n = 4;
  const std::int64_t tokens = 777;
  const Inputs in = make_inputs(n, tokens, 1.5, 9);
  const gpu::SinkhornBatch all =
      gpu::hc_split_sinkhorn(in.mixes.data(), tokens, n, in.scale.data(), in.base.data(), 20, 1e-6);
  for (const std::int64_t t : {std::int64_t{0}, std::int64_t{1}, std::int64_t{400}, tokens - 1}) {
    const gpu::SinkhornBatch one =
        gpu::hc_split_sinkhorn(in.mixes.data() + t * 24, 1, n, in.scale.data(), in.base.data(), 20, 1e-6);
    for (int i = 0; i < 16; ++i) ASSERT_EQ(bits(one.comb[i]), bits(all.comb[t * 16 + i])) << t;
    for (int i = 0; i < 4; ++i) {
      ASSERT_EQ(bits(one.pre[i]), bits(all.pre[t * 4 + i]));
      ASSERT_EQ(bits(one.post[i]), bits(all.post[t * 4 + i]));
    }
  }
}

// The device exp against cr_exp on 2^22 arguments spread over the whole useful range (exp of an
// fp32 in [−104, 89]) plus special values; undecided ones must be rare (counted).
TEST(GpuMhc, ExpIsCorrectlyRounded) {
  SKIP_WITHOUT_GPU();
  const CounterRng rng(5, stream_id("gpu_mhc_test.exp"));
  std::vector<float> x;
  for (std::uint64_t i = 0; i < (1u << 22); ++i) x.push_back(static_cast<float>(-104.0 + 193.0 * rng.uniform(i)));
  for (const float s :
       {0.0f, -0.0f, 1.0f, -1.0f, 88.72f, 88.73f, -103.9f, -87.3f, 1e-30f, -1e-30f, INFINITY, -INFINITY}) {
    x.push_back(s);
  }
  std::vector<float> out(x.size());
  std::vector<std::uint8_t> undecided(x.size());
  gpu::exp_c2(x.data(), static_cast<std::int64_t>(x.size()), out.data(), undecided.data());
  std::int64_t open = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (undecided[i] != 0) {
      ++open;
      continue;
    }
    ASSERT_EQ(bits(out[i]), bits(cr_exp(x[i]))) << x[i];
  }
  std::printf("exp: %zu arguments, %lld undecided on the device\n", x.size(), static_cast<long long>(open));
  EXPECT_LE(open * 100000, static_cast<std::int64_t>(x.size()));
}

TEST(GpuMhc, BadArgumentsNamed) {
  const std::vector<float> v(100, 0.0f);
  EXPECT_THROW(gpu::hc_split_sinkhorn(v.data(), 1, 0, v.data(), v.data(), 20, 1e-6), std::invalid_argument);
  EXPECT_THROW(gpu::hc_split_sinkhorn(v.data(), 1, gpu::kMaxHcMult + 1, v.data(), v.data(), 20, 1e-6),
               std::invalid_argument);
  EXPECT_THROW(gpu::hc_split_sinkhorn(v.data(), 1, 4, v.data(), v.data(), 0, 1e-6), std::invalid_argument);
  EXPECT_THROW(gpu::hc_split_sinkhorn(v.data(), -1, 4, v.data(), v.data(), 20, 1e-6), std::invalid_argument);
  try {
    gpu::hc_split_sinkhorn(v.data(), 1, 9, v.data(), v.data(), 20, 1e-6);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("hc_mult"), std::string::npos);
  }
}

}  // namespace
}  // namespace dsv4
