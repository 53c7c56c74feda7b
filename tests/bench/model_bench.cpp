// Benchmarks of issue 4 (results in BENCHMARKS.md).
//   (a) tiny config, exact mode: prefill of 260 tokens + 4 decode steps (target < 10 s); the peer
//       is the same run in official mode, measured in the same process (ratio exact / official).
//   (b) one flash-slice full block (CSA attention + MoE with 8 routed experts + shared expert +
//       both mHC sites) at 4,096 tokens, exact mode, in a child process: wall time and peak RSS;
//       the peer is the attention module alone on the same input in the same child (ratio
//       block / attention).
//
// model_bench [--tiny-prompt N] [--tiny-decode K] [--block-tokens T] [--skip-tiny] [--skip-block]
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench_clock.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/model/block.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/philox.hpp"

namespace {

using dsv4::bench::Clock;
using dsv4::bench::loadavg;
using dsv4::bench::seconds_since;
using I = std::int64_t;

std::vector<I> tokens(I n, I vocab) {
  const dsv4::CounterRng rng(1, 77);
  std::vector<I> t;
  for (I i = 0; i < n; ++i) t.push_back(static_cast<I>(rng.words(static_cast<std::uint64_t>(i))[0] % vocab));
  return t;
}

// Prefill of `prompt` tokens then `decode` steps; returns seconds.
double tiny_run(dsv4::Mode mode, I prompt, I decode) {
  const dsv4::ModelConfig c = dsv4::builtin_config("tiny");
  const dsv4::Transformer model(dsv4::Precision(mode), c, dsv4::ModelWeights::synthetic(c, 1));
  const std::vector<I> t = tokens(prompt + decode, c.vocab_size);
  std::vector<dsv4::SequenceState> s{model.new_sequence()};
  const auto t0 = Clock::now();
  model.forward({{t.begin(), t.begin() + prompt}}, 0, s);
  for (I i = 0; i < decode; ++i) model.forward({{t[static_cast<std::size_t>(prompt + i)]}}, prompt + i, s);
  return seconds_since(t0);
}

dsv4::Mat block_input(const dsv4::ModelConfig& c, I n) {
  const dsv4::CounterRng rng(3, 5);
  dsv4::Mat x(n, c.hc_mult * c.dim);
  for (I i = 0; i < x.size(); ++i) x.data()[i] = dsv4::round_bf16(rng.normal(static_cast<std::uint64_t>(i)));
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  I tiny_prompt = 260, tiny_decode = 4, block_tokens = 4096;
  bool skip_tiny = false, skip_block = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tiny-prompt" && i + 1 < argc) {
      tiny_prompt = std::atoll(argv[++i]);
    } else if (a == "--tiny-decode" && i + 1 < argc) {
      tiny_decode = std::atoll(argv[++i]);
    } else if (a == "--block-tokens" && i + 1 < argc) {
      block_tokens = std::atoll(argv[++i]);
    } else if (a == "--skip-tiny") {
      skip_tiny = true;
    } else if (a == "--skip-block") {
      skip_block = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--tiny-prompt N] [--tiny-decode K] [--block-tokens T] [--skip-tiny] [--skip-block]\n",
                   argv[0]);
      return 2;
    }
  }
  std::printf("GEMM kernel %s, %d threads; load average at start: %s\n\n", dsv4::gemm_kernel_name(dsv4::gemm_kernel()),
              dsv4::gemm_threads(), loadavg().c_str());

  if (!skip_tiny) {
    const double exact = tiny_run(dsv4::Mode::kExact, tiny_prompt, tiny_decode);
    const double official = tiny_run(dsv4::Mode::kOfficial, tiny_prompt, tiny_decode);
    std::printf("(a) tiny, prefill %lld + %lld decode steps (whole model incl. MTP weights, logits each call)\n",
                static_cast<long long>(tiny_prompt), static_cast<long long>(tiny_decode));
    std::printf("    exact mode    %8.2f s   (target < 10 s)\n", exact);
    std::printf("    official mode %8.2f s   (peer)\n", official);
    std::printf("    ratio exact / official: %.2f\n\n", exact / official);
  }

  if (!skip_block) {
    const dsv4::bench::ChildRun r = dsv4::bench::run_in_child([&] {
      const dsv4::ModelConfig c = dsv4::builtin_config("flash-slice");
      const I layer = 1;
      const dsv4::Mat x = block_input(c, block_tokens);
      const std::vector<I> ids = tokens(block_tokens, c.vocab_size);
      std::printf(
          "(b) flash-slice block %lld (compress ratio %lld, %lld routed experts, top-%lld), exact mode, %lld tokens\n",
          static_cast<long long>(layer), static_cast<long long>(c.compress_ratio(layer)),
          static_cast<long long>(c.n_routed_experts), static_cast<long long>(c.n_activated_experts),
          static_cast<long long>(block_tokens));
      auto t0 = Clock::now();
      dsv4::BlockWeights w = dsv4::BlockWeights::synthetic(c, layer, 1);
      const dsv4::Attention attn(dsv4::Precision(dsv4::Mode::kExact), c, layer, w.attn);
      const dsv4::Block block(dsv4::Precision(dsv4::Mode::kExact), c, layer, std::move(w));
      std::printf("    weights and set-up %8.2f s\n", seconds_since(t0));
      t0 = Clock::now();
      dsv4::AttentionState st = block.allocate_state();
      const dsv4::BlockOutput o = block.forward(x, ids, 0, st);
      const double tb = seconds_since(t0);
      // The peer: the attention module alone on the block's own attention input.
      dsv4::AttentionState st2 = dsv4::Attention::allocate_state(c, layer);
      t0 = Clock::now();
      const dsv4::AttentionOutput a = attn.prefill(o.attn_norm, st2);
      const double ta = seconds_since(t0);
      std::printf("    full block        %8.2f s\n", tb);
      std::printf("    attention alone   %8.2f s   (peer; same output: %s)\n", ta, a.out == o.attn.out ? "yes" : "NO");
      std::printf("    ratio block / attention: %.2f (MoE + mHC + norms = %.2f s)\n", tb / ta, tb - ta);
      return a.out == o.attn.out ? 0 : 1;
    });
    std::printf("    peak RSS of the block process (weights + activations + state): %.1f MiB; exit status %d\n",
                r.peak_rss_mib, r.status);
  }
  return 0;
}
