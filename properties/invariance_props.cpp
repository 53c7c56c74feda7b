// Batch invariance and thread invariance of the reference (ref/README.md §Determinism): a
// sequence's outputs are bit-identical whatever else is in the batch, however many threads run and
// whichever GEMM kernel (AVX-512, AVX2, portable) the CPU offers. Attention (tiny config: layer 0
// SWA, 1 HCA-128, 2 CSA-4), sparse attention and the Newton–Schulz iteration.
#include <rapidcheck.h>

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "../tests/support/mat_bits.hpp"
#include "../tests/support/small_configs.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/model/attention.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/model/sparse_attention.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/properties/registry.hpp"
#include "dsv4/train/newton_schulz.hpp"

namespace dsv4::props {
namespace {

// small_tiny with room for a batch of three sequences.
constexpr std::int64_t kMaxBatch = 3;

ModelConfig small_tiny() {
  ModelConfig c = testing_support::small_tiny();
  c.max_batch_size = kMaxBatch;
  return c;
}

const Attention& attention(Mode mode, std::int64_t layer) {
  return testing_support::small_tiny_attention(mode, layer, kMaxBatch);
}

Mat gen_tokens(std::int64_t n, std::int64_t dim, bool bf16) {
  const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>();
  const CounterRng rng(seed, stream_id("invariance_props.x"));
  Mat x(n, dim);
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    const double v = rng.normal(static_cast<std::uint64_t>(i));
    x.data()[i] = bf16 ? static_cast<double>(round_bf16(v)) : v;
  }
  return x;
}

using test::bit_equal;

// Every recorded output of one attention call, compared bit for bit.
bool same_output(const AttentionOutput& a, const AttentionOutput& b) {
  bool same = bit_equal(a.q, b.q) && bit_equal(a.kv, b.kv) && a.lists == b.lists && bit_equal(a.attn, b.attn) &&
              bit_equal(a.out, b.out) && bit_equal(a.compressed.entries, b.compressed.entries) &&
              a.compressed.first == b.compressed.first && a.indexer.has_value() == b.indexer.has_value();
  if (same && a.indexer) {
    same = bit_equal(a.indexer->q, b.indexer->q) && bit_equal(a.indexer->scores, b.indexer->scores) &&
           a.indexer->lists == b.indexer->lists;
  }
  return same;
}

// Restores the GEMM thread count and kernel after a property changed them.
struct GemmSettings {
  GemmSettings() = default;
  GemmSettings(const GemmSettings&) = delete;
  GemmSettings& operator=(const GemmSettings&) = delete;
  ~GemmSettings() {
    set_gemm_threads(0);
    set_gemm_kernel(GemmKernel::kAuto);
  }
};

// A sequence's prefill and decode outputs are the same alone and at any place in a batch of 2–3
// sequences sharing start_pos (the official forward's batch).
void batch_invariance() {
  const Mode mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const std::int64_t layer = *rc::gen::inRange<std::int64_t>(0, 3);
  const Attention& attn = attention(mode, layer);
  const ModelConfig cfg = small_tiny();
  const std::int64_t batch = *rc::gen::inRange<std::int64_t>(2, 4);
  const std::int64_t where = *rc::gen::inRange<std::int64_t>(0, batch);
  const std::int64_t n = *rc::gen::inRange<std::int64_t>(1, 24);
  const std::int64_t steps = *rc::gen::inRange<std::int64_t>(0, 4);
  std::vector<Mat> seqs;
  for (std::int64_t b = 0; b < batch; ++b) seqs.push_back(gen_tokens(n + steps, cfg.dim, true));
  std::vector<AttentionState> alone{attn.initial_state()};
  std::vector<AttentionState> all(static_cast<std::size_t>(batch), attn.initial_state());
  const auto run = [&](std::int64_t start, std::int64_t len) {
    std::vector<Mat> xb;
    for (const Mat& s : seqs) xb.push_back(s.middleRows(start, len));
    const std::vector<AttentionOutput> ob = attn.forward(xb, start, all);
    const std::vector<AttentionOutput> oa = attn.forward({xb[static_cast<std::size_t>(where)]}, start, alone);
    RC_ASSERT(same_output(ob[static_cast<std::size_t>(where)], oa[0]));
  };
  run(0, n);
  for (std::int64_t p = n; p < n + steps; ++p) run(p, 1);
}

// Attention prefill (32–64 tokens, so the projections are large enough for the GEMM to split) and
// one decode step give the same bits for 1–4 threads and every supported GEMM kernel.
void thread_invariance_attention() {
  GemmSettings restore;
  const Mode mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const std::int64_t layer = *rc::gen::inRange<std::int64_t>(0, 3);
  const Attention& attn = attention(mode, layer);
  const std::int64_t n = *rc::gen::inRange<std::int64_t>(32, 65);
  const Mat x = gen_tokens(n + 1, small_tiny().dim, true);
  const int threads = *rc::gen::inRange(2, 5);
  std::vector<GemmKernel> kernels{GemmKernel::kPortable};
  for (GemmKernel k : {GemmKernel::kAvx2, GemmKernel::kAvx512}) {
    if (gemm_kernel_supported(k)) kernels.push_back(k);
  }
  const GemmKernel kernel = *rc::gen::elementOf(kernels);
  const auto run = [&](int t, GemmKernel k, AttentionOutput& dec) {
    set_gemm_threads(t);
    set_gemm_kernel(k);
    AttentionState st = attn.initial_state();
    AttentionOutput pre = attn.prefill(x.topRows(n), st);
    dec = attn.decode(x.middleRows(n, 1), n, st);
    return pre;
  };
  AttentionOutput d1, d2;
  const AttentionOutput p1 = run(1, GemmKernel::kAuto, d1);
  const AttentionOutput p2 = run(threads, kernel, d2);
  RC_ASSERT(same_output(p1, p2));
  RC_ASSERT(same_output(d1, d2));
}

// Sparse attention with ≥ 16 query rows (split over threads) and the Newton–Schulz iteration on a
// matrix whose Gram products split (≥ 128 rows): the same bits for 1–4 threads.
void thread_invariance_kernels() {
  GemmSettings restore;
  const int threads = *rc::gen::inRange(2, 5);
  const std::int64_t rows = *rc::gen::inRange<std::int64_t>(16, 40);
  const std::int64_t heads = 4, c = 16, n = 50, width = 70;
  const Mat q = gen_tokens(rows * heads, c, true);
  const Mat kv = gen_tokens(n, c, true);
  IndexLists lists(rows, width);
  const CounterRng rng(*rc::gen::arbitrary<std::uint64_t>(), stream_id("invariance_props.lists"));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < width; ++j) {
      lists.at(r, j) = static_cast<std::int32_t>(rng.uniform(static_cast<std::uint64_t>(r * width + j)) * n);
    }
  }
  const std::vector<double> sink{0.5, -1.0, 2.0, -3.0};
  for (const Mode mode : {Mode::kExact, Mode::kOfficial}) {
    set_gemm_threads(1);
    const Mat a = sparse_attention(Precision(mode), q, heads, kv, sink, lists, 0.25);
    set_gemm_threads(threads);
    const Mat b = sparse_attention(Precision(mode), q, heads, kv, sink, lists, 0.25);
    RC_ASSERT(bit_equal(a, b));
  }
  const Mat y = gen_tokens(*rc::gen::inRange<std::int64_t>(128, 150), 150, false);
  RC_ASSERT(bit_equal(hybrid_newton_schulz(y, kNsEps, 1), hybrid_newton_schulz(y, kNsEps, threads)));
}

}  // namespace

void register_invariance_properties(Registry& r) {
  r.add_rc("invariance.batch", "attention",
           "a sequence's attention outputs (prefill and decode) are bit-identical alone and anywhere in a batch", 15,
           batch_invariance);
  r.add_rc("invariance.threads_attention", "attention",
           "attention prefill/decode outputs are bit-identical for 1-4 threads and every GEMM kernel", 8,
           thread_invariance_attention);
  r.add_rc("invariance.threads_kernels", "sparse_attention",
           "sparse attention and Newton-Schulz are bit-identical for 1-4 threads", 5, thread_invariance_kernels);
}

}  // namespace dsv4::props
