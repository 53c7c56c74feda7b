// `dsv4 demo` section 4: the GPU kernels (gpu/) against the CPU reference, bit for bit, when this
// build has CUDA and a GPU is present; otherwise one line saying why the section is skipped.
#include "demo_gpu.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#if DSV4_HAVE_CUDA
#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/mhc.hpp"
#include "dsv4/gpu/quant.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant.hpp"
#endif

namespace dsv4::cli {

#if DSV4_HAVE_CUDA
namespace {

std::uint32_t float_bits(float f) {
  std::uint32_t b = 0;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// rows × cols bf16 values N(0, 1)·2^e, one e ∈ [−20, 20] per row (the activations' dynamic range).
std::vector<float> activations(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("demo_gpu.activations"));
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    const int e = static_cast<int>(rng.words(static_cast<std::uint64_t>(rows * cols + r))[0] % 41) - 20;
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::size_t i = static_cast<std::size_t>(r * cols + c);
      x[i] = round_bf16(std::ldexp(rng.normal(i), e));
    }
  }
  return x;
}

// Differing entries of two equally long byte/float vectors (floats by their bits).
template <class T>
std::int64_t count_differences(const std::vector<T>& a, const std::vector<T>& b, std::string& first,
                               const std::string& what) {
  if (a.size() != b.size()) {
    first = what + ": sizes differ";
    return static_cast<std::int64_t>(std::max(a.size(), b.size()));
  }
  std::int64_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    bool same = false;
    if constexpr (std::is_same_v<T, float>)
      same = float_bits(a[i]) == float_bits(b[i]);
    else
      same = a[i] == b[i];
    if (!same && n++ == 0) first = what + " differs at index " + std::to_string(i);
  }
  return n;
}

SelfCheckLine act_quant_line(const std::vector<float>& x, std::int64_t cols, ScaleFormat fmt) {
  SelfCheckLine l;
  l.what = std::string("act_quant block 128, ") + (fmt == ScaleFormat::kUE8M0 ? "ue8m0" : "fp32") +
           " scales: codes and scales";
  l.cases = static_cast<std::int64_t>(x.size());
  const Fp8Blocks ref = act_quant(x, cols, 128, fmt);
  const gpu::Fp8Blocks got = gpu::act_quant(x, cols, 128, fmt);
  l.failures = count_differences(got.values, ref.values, l.first_failure, "code") +
               count_differences(got.scales, ref.scales, l.first_failure, "scale");
  return l;
}

SelfCheckLine fp4_line(const std::vector<float>& x, std::int64_t cols) {
  SelfCheckLine l;
  l.what = "fp4_act_quant block 32: packed codes and e8m0 scales";
  l.cases = static_cast<std::int64_t>(x.size());
  const Fp4Blocks ref = fp4_act_quant(x, cols);
  const gpu::Fp4Blocks got = gpu::fp4_act_quant(x, cols);
  l.failures = count_differences(got.packed, ref.packed, l.first_failure, "packed code") +
               count_differences(got.scales, ref.scales, l.first_failure, "scale");
  return l;
}

// The tiny config's hc_split_sinkhorn (n = 4, 20 iterations, eps 1e-6, its synthetic weights) on
// mixes N(0, 1)·2 for `tokens` tokens: every pre, post and comb value against the official-mode
// reference; then batch invariance (each token alone equals it in the batch).
std::vector<SelfCheckLine> sinkhorn_lines(std::int64_t tokens, std::uint64_t seed) {
  const ModelConfig c = builtin_config("tiny");
  const HcWeights w = HcWeights::synthetic(c, seed);
  const int n = static_cast<int>(c.hc_mult), m = (2 + n) * n;
  std::vector<float> base(static_cast<std::size_t>(m)), scale(3);
  for (int i = 0; i < m; ++i) base[static_cast<std::size_t>(i)] = static_cast<float>(w.base(i));
  for (int g = 0; g < 3; ++g) scale[static_cast<std::size_t>(g)] = static_cast<float>(w.scale(g));
  const CounterRng rng(seed, stream_id("demo_gpu.mixes"));
  std::vector<float> mixes(static_cast<std::size_t>(tokens * m));
  for (std::size_t i = 0; i < mixes.size(); ++i) mixes[i] = static_cast<float>(2.0 * rng.normal(i));
  const gpu::SinkhornBatch got = gpu::hc_split_sinkhorn(mixes.data(), tokens, n, scale.data(), base.data(),
                                                        static_cast<int>(c.hc_sinkhorn_iters), c.hc_eps);
  SelfCheckLine l;
  l.what = "hc_split_sinkhorn n=4, 20 iters: pre/post/comb (" + std::to_string(got.recomputed) + " host-redone)";
  l.cases = tokens;
  const Precision p(Mode::kOfficial);
  std::vector<double> mu(static_cast<std::size_t>(m));
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (int i = 0; i < m; ++i) mu[static_cast<std::size_t>(i)] = mixes[static_cast<std::size_t>(t * m + i)];
    const SinkhornResult r = hc_split_sinkhorn(p, c, mu.data(), w);
    bool same = true;
    for (int j = 0; j < n; ++j) {
      const std::size_t o = static_cast<std::size_t>(t * n + j);
      same = same && float_bits(got.pre[o]) == float_bits(static_cast<float>(r.pre(j))) &&
             float_bits(got.post[o]) == float_bits(static_cast<float>(r.post(j)));
      for (int k = 0; k < n; ++k)
        same = same && float_bits(got.comb[o * static_cast<std::size_t>(n) + static_cast<std::size_t>(k)]) ==
                           float_bits(static_cast<float>(r.comb(j, k)));
    }
    if (!same && l.failures++ == 0) l.first_failure = "token " + std::to_string(t);
  }
  SelfCheckLine inv;
  inv.what = "hc_split_sinkhorn: each token alone == in the batch";
  inv.cases = std::min<std::int64_t>(tokens, 256);
  for (std::int64_t t = 0; t < inv.cases; ++t) {
    const gpu::SinkhornBatch one = gpu::hc_split_sinkhorn(mixes.data() + t * m, 1, n, scale.data(), base.data(),
                                                          static_cast<int>(c.hc_sinkhorn_iters), c.hc_eps);
    bool same = true;
    for (int i = 0; i < n * n; ++i)
      same = same && float_bits(one.comb[static_cast<std::size_t>(i)]) ==
                         float_bits(got.comb[static_cast<std::size_t>(t * n * n + i)]);
    if (!same && inv.failures++ == 0) inv.first_failure = "token " + std::to_string(t);
  }
  return {l, inv};
}

}  // namespace
#endif

std::vector<SelfCheckLine> run_gpu_selfcheck(std::uint64_t seed, std::string& skipped_because) {
#if DSV4_HAVE_CUDA
  if (!gpu::gpu_available()) {
    skipped_because = "no CUDA device visible to this process";
    return {};
  }
  skipped_because.clear();
  const std::int64_t rows = 512, cols = 1024;
  const std::vector<float> x = activations(rows, cols, seed);
  std::vector<SelfCheckLine> lines = {act_quant_line(x, cols, ScaleFormat::kUE8M0),
                                      act_quant_line(x, cols, ScaleFormat::kFP32), fp4_line(x, cols)};
  for (SelfCheckLine& l : sinkhorn_lines(4096, seed)) lines.push_back(std::move(l));
  return lines;
#else
  (void)seed;
  skipped_because = "this build has no CUDA kernels (nvcc was not found at configure time)";
  return {};
#endif
}

std::string gpu_device_text() {
#if DSV4_HAVE_CUDA
  return gpu::device_description();
#else
  return "none (built without CUDA)";
#endif
}

}  // namespace dsv4::cli
