// Properties of the FP32-partitioned reductions of the official-style backward (spec 06 §6.14;
// ref/train fp32_partitioned_sum.hpp; issue 16 item 8: "reductions are bit-identical for any
// thread count and any number of partitions that the documented rule allows"). The rule fixes the
// partition from the shapes (P = ⌈R/C⌉ chunks of C rows); what it leaves free is how the partitions
// are spread over workers, so the generated cases vary rows, chunk constant, output size and
// thread count (1 … 8), and the values over 60 binades so that every order change shows in the bits.
#include <rapidcheck.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/properties/registry.hpp"
#include "dsv4/train/fp32_partitioned_sum.hpp"
#include "dsv4/train/linear_backward_fp32.hpp"
#include "dsv4/train/sparse_attention_backward_fp32.hpp"

namespace dsv4::props {
namespace {

std::vector<float> wide_values(std::int64_t count, std::uint64_t seed, const char* stream) {
  const CounterRng rng(seed, stream_id(stream));
  std::vector<float> v(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    const auto u = static_cast<std::uint64_t>(i);
    const int e = static_cast<int>(rng.uniform(2 * u + 1) * 60.0) - 30;
    v[static_cast<std::size_t>(i)] = static_cast<float>(std::ldexp(rng.normal(2 * u), e));
  }
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

class ThreadsRestored {
 public:
  ~ThreadsRestored() { set_gemm_threads(0); }
};

// The official-style dW is bit-identical for 1 thread and for t threads, and over a rerun.
void thread_invariance() {
  const std::int64_t m = *rc::gen::inRange<std::int64_t>(0, 700);
  const std::int64_t k = *rc::gen::inRange<std::int64_t>(1, 6);
  const std::int64_t n = *rc::gen::inRange<std::int64_t>(1, 5);
  const PartitionRule rule{*rc::gen::inRange<std::int64_t>(1, 150)};
  const int threads = *rc::gen::inRange(2, 9);
  const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>();
  const std::vector<float> x = wide_values(m * k, seed, "fp32_partitioned_sum_props.x");
  const std::vector<float> dy = wide_values(m * n, seed, "fp32_partitioned_sum_props.dy");
  const ThreadsRestored restore;
  set_gemm_threads(1);
  const std::vector<float> one = linear_dweight_fp32(x, dy, m, k, n, rule);
  set_gemm_threads(threads);
  RC_ASSERT(same_bits(linear_dweight_fp32(x, dy, m, k, n, rule), one));
  RC_ASSERT(same_bits(linear_dweight_fp32(x, dy, m, k, n, rule), one));
}

// Sparse attention's dkv (scattered rows, repeats, −1 entries) is bit-identical for 1 and t threads.
void dkv_thread_invariance() {
  const std::int64_t m = *rc::gen::inRange<std::int64_t>(0, 400);
  const std::int64_t heads = *rc::gen::inRange<std::int64_t>(1, 4);
  const std::int64_t c = *rc::gen::inRange<std::int64_t>(1, 5);
  const std::int64_t n_kv = *rc::gen::inRange<std::int64_t>(1, 30);
  const std::int64_t width = *rc::gen::inRange<std::int64_t>(1, 6);
  const PartitionRule rule{*rc::gen::inRange<std::int64_t>(1, 100)};
  const int threads = *rc::gen::inRange(2, 9);
  const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>();
  const CounterRng rng(seed, stream_id("fp32_partitioned_sum_props.lists"));
  IndexLists lists(m, width);
  for (std::int64_t i = 0; i < m * width; ++i) {
    lists.data[static_cast<std::size_t>(i)] =
        static_cast<std::int32_t>(rng.uniform(static_cast<std::uint64_t>(i)) * static_cast<double>(n_kv + 1)) - 1;
  }
  const std::vector<float> q = wide_values(m * heads * c, seed, "fp32_partitioned_sum_props.q");
  const std::vector<float> dout = wide_values(m * heads * c, seed, "fp32_partitioned_sum_props.dout");
  const std::vector<float> prob = wide_values(m * heads * width, seed, "fp32_partitioned_sum_props.prob");
  const std::vector<float> dlogit = wide_values(m * heads * width, seed, "fp32_partitioned_sum_props.dlogit");
  const ThreadsRestored restore;
  set_gemm_threads(1);
  const std::vector<float> one = sparse_attention_dkv_fp32(q, heads, n_kv, c, lists, dout, prob, dlogit, rule);
  set_gemm_threads(threads);
  RC_ASSERT(same_bits(sparse_attention_dkv_fp32(q, heads, n_kv, c, lists, dout, prob, dlogit, rule), one));
}

// T(lo, n): the pairwise tree of spec 06 §6.14 stated recursively — n = 1: buffer lo; otherwise
// with h the largest power of two below n, fl32(T(lo, h) + T(lo + h, n − h)).
float tree_recursive(const std::vector<float>& v, std::int64_t s, std::int64_t e, std::int64_t lo, std::int64_t n) {
  if (n == 1) return v[static_cast<std::size_t>(lo * s + e)];
  std::int64_t h = 1;
  while (2 * h < n) h *= 2;
  return tree_recursive(v, s, e, lo, h) + tree_recursive(v, s, e, lo + h, n - h);
}

// The iterative tree (levels s = 1, 2, 4, …) equals its recursive statement for every P.
void tree_matches_recursive_form() {
  const std::int64_t p = *rc::gen::inRange<std::int64_t>(1, 300);
  const std::int64_t s = *rc::gen::inRange<std::int64_t>(1, 5);
  const std::vector<float> v = wide_values(p * s, *rc::gen::arbitrary<std::uint64_t>(), "fp32_partitioned_sum_props.t");
  std::vector<float> tree = v;
  fp32_pairwise_tree(tree, s);
  for (std::int64_t e = 0; e < s; ++e) {
    const float want = tree_recursive(v, s, e, 0, p);
    RC_ASSERT(std::memcmp(&tree[static_cast<std::size_t>(e)], &want, sizeof(float)) == 0);
  }
}

}  // namespace

void register_fp32_partitioned_sum_properties(Registry& r) {
  r.add_rc("fp32_partitioned_sum.thread_invariance", "fp32_partitioned_sum",
           "official-style dW bit-identical for 1 and 2..8 threads and over reruns, any rows and chunk", 300,
           thread_invariance);
  r.add_rc("fp32_partitioned_sum.dkv_thread_invariance", "fp32_partitioned_sum",
           "sparse attention's official-style dkv bit-identical for 1 and 2..8 threads (repeats, -1 entries)", 300,
           dkv_thread_invariance);
  r.add_rc("fp32_partitioned_sum.tree_recursive", "fp32_partitioned_sum",
           "the fixed pairwise tree equals its recursive statement T(0,P) = T(0,h) + T(h,P-h)", 300,
           tree_matches_recursive_form);
}

}  // namespace dsv4::props
