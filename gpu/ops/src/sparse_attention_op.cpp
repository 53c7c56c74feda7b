// Registration of sparse attention with the attention sink (spec 02 §2.9): per query token, every
// head's online softmax over the token's index list of the shared KV rows, the sink a logit in the
// denominator only; its backward (spec 06 §6.12): dq, dkv, dsink with the lists held fixed.
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "dsv4/gpu/sparse_attention.hpp"
#include "dsv4/model/sparse_attention.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/sparse_attention_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {n_heads H}, reals {scale τ}; inputs q [tokens, H·c] (per row, bf16 values; head h = columns
// h·c..h·c + c − 1), lists [tokens, K] (per row, kv row indices as exact integers, −1 = no entry),
// kv [N, c] (shared, bf16 values), sink [1, H] (shared, fp32 values) → o [tokens, H·c].
struct AttnArgs {
  std::int64_t heads, c;
  double scale;
  Mat q, kv;
  std::vector<double> sink;
  IndexLists lists;
  explicit AttnArgs(const Call& call)
      : heads(call.ints.at(0)),
        c(call.inputs.at(2).cols),
        scale(call.reals.at(0)),
        kv(to_mat(call.inputs.at(2))),
        sink(doubles(call.inputs.at(3))) {
    const Array& qa = call.inputs.at(0);
    const Array& la = call.inputs.at(1);
    if (heads < 1 || qa.cols != heads * c) {
      throw std::invalid_argument("sparse_attention: q must be [tokens, n_heads · c] with c the kv width");
    }
    q = to_mat(doubles(qa), qa.rows * heads, c);
    lists = IndexLists(la.rows, la.cols);
    const std::vector<std::int64_t> v = checked_integers(la);
    for (std::size_t i = 0; i < v.size(); ++i) lists.data[i] = static_cast<std::int32_t>(v[i]);
  }
  Mat forward(const Precision& p) const { return sparse_attention(p, q, heads, kv, sink, lists, scale); }
  Array as_rows(const std::string& name, const Mat& m) const {
    return Array::floats(name, lists.rows, heads * c, to_floats(m));
  }
};

Outputs reference(const Call& c) {
  const AttnArgs a(c);
  return {a.as_rows("o", a.forward(Precision(Mode::kOfficial)))};
}

#if DSV4_HAVE_CUDA
// gpu::sparse_attention (gpu/src/sparse_attention.cu: the fixed-order recurrence of
// dsv4/gpu/sparse_attention_steps.hpp, C1 sums and C2 exps decided on the device or the token
// recomputed by the reference). Prefill and decode alike: kv is whatever rows the lists index.
Outputs device(const Call& c) {
  const AttnArgs a(c);
  const Array& sink = c.inputs.at(3);
  if (sink.elements() != a.heads) {
    throw std::invalid_argument("sparse_attention: sink has " + std::to_string(sink.elements()) +
                                " entries, n_heads is " + std::to_string(a.heads));
  }
  gpu::SparseAttentionBatch r =
      gpu::sparse_attention(c.inputs.at(0).f32.data(), a.lists.rows, a.heads, a.c, a.lists.data.data(), a.lists.width,
                            c.inputs.at(2).f32.data(), a.kv.rows(), sink.f32.data(), a.scale);
  return {Array::floats("o", a.lists.rows, a.heads * a.c, std::move(r.o))};
}
#endif

struct Spec {
  std::int64_t tokens, heads, c, n_kv, width;
  double q_sigma;
  bool dead_chunk;  // list positions 64..127 all −1 (a whole chunk of the official kernel skipped)
  bool duplicates;  // a list may name one kv row twice (the kernel counts it twice)
  // Edge values (≥ 4 heads, ≥ 3 tokens, ≥ 2 kv rows): head 0's query zero (every logit +0: ties in
  // the max, p = 1) and its sink −∞ (the plain mean of the listed rows), head 1's sink −∞ (the plain
  // softmax), sinks 90 and 100 (heads 2, 3: exp(z − μ) near and beyond the fp32 range — tiny,
  // subnormal and ±0 outputs); kv row 1 a copy of row 0 (equal logits from distinct rows); token 1's
  // list a single valid entry, token 2's two (head 0's output (v_a + v_b)/2: bf16 midpoints).
  bool edges = false;
  // Even tokens' first chunk holds its position 0 only: the running max starts from one logit and
  // later chunks rescale by α — down to α = 0 with large logits.
  bool lone_first = false;
};

// Index lists: entry 0 always valid (the official builders put the query itself first), then about
// one entry in eight −1, the others distinct kv rows (a partial shuffle; the indexer's top-k and the
// window are sets) or, with duplicates, drawn with replacement.
std::vector<float> index_lists(const Spec& s, std::uint64_t seed) {
  if (!s.duplicates && s.width > s.n_kv)
    throw std::logic_error("sparse_attention cases: more distinct entries than kv rows");
  const CounterRng rng(seed, stream_id("ops.sparse_attention.lists"));
  std::vector<float> l(static_cast<std::size_t>(s.tokens * s.width));
  std::vector<std::int64_t> rows(static_cast<std::size_t>(s.n_kv));
  for (std::int64_t t = 0; t < s.tokens; ++t) {
    for (std::int64_t i = 0; i < s.n_kv; ++i) rows[static_cast<std::size_t>(i)] = i;
    for (std::int64_t j = 0; j < s.width; ++j) {
      const auto w = rng.words(static_cast<std::uint64_t>(t * s.width + j));
      std::int64_t e = static_cast<std::int64_t>(w[2] % static_cast<std::uint64_t>(s.n_kv));
      if (!s.duplicates) {  // distinct: width ≤ n_kv
        const auto pick = static_cast<std::int64_t>(j + w[0] % static_cast<std::uint64_t>(s.n_kv - j));
        std::swap(rows[static_cast<std::size_t>(j)], rows[static_cast<std::size_t>(pick)]);
        e = rows[static_cast<std::size_t>(j)];
      }
      if (j > 0 && w[1] % 8 == 0) e = -1;
      if (s.dead_chunk && j >= 64 && j < 128) e = -1;
      if (s.edges && ((t == 1 && j > 0) || (t == 2 && j > 1))) e = -1;
      if (s.lone_first && t % 2 == 0 && j > 0 && j < 64) e = -1;
      l[static_cast<std::size_t>(t * s.width + j)] = static_cast<float>(e);
    }
  }
  return l;
}

Case make_case(const Spec& s, std::uint64_t seed, bool bf16) {
  const auto values = [&](std::int64_t n, double sigma, const char* stream) {
    return bf16 ? bf16_normals(n, sigma, seed, stream) : normals(n, sigma, seed, stream);
  };
  Case c;
  c.call.ints = {s.heads};
  c.call.reals = {1.0 / std::sqrt(static_cast<double>(s.c))};
  c.call.inputs = {Array::floats("q", s.tokens, s.heads * s.c,
                                 values(s.tokens * s.heads * s.c, s.q_sigma, "ops.sparse_attention.q")),
                   Array::floats("lists", s.tokens, s.width, index_lists(s, seed)),
                   Array::floats("kv", s.n_kv, s.c, values(s.n_kv * s.c, 1.0, "ops.sparse_attention.kv")),
                   Array::shared("sink", normals(s.heads, 1.0, seed, "ops.sparse_attention.sink"))};
  c.call.inputs[2].per_row = false;
  if (s.edges) {
    std::vector<float>& q = c.call.inputs[0].f32;
    for (std::int64_t t = 0; t < s.tokens; ++t) {
      for (std::int64_t d = 0; d < s.c; ++d) q[static_cast<std::size_t>(t * s.heads * s.c + d)] = 0.0f;
    }
    std::vector<float>& kv = c.call.inputs[2].f32;
    std::copy(kv.begin(), kv.begin() + s.c, kv.begin() + s.c);
    std::vector<float>& z = c.call.inputs[3].f32;
    z[0] = -std::numeric_limits<float>::infinity();
    z[1] = -std::numeric_limits<float>::infinity();
    z[2] = 90.0f;
    z[3] = 100.0f;
  }
  c.label =
      std::to_string(s.tokens) + " queries, " + std::to_string(s.heads) + " heads, c " + std::to_string(s.c) + ", " +
      std::to_string(s.n_kv) + " kv rows, lists of " + std::to_string(s.width) +
      (s.dead_chunk ? " (a whole chunk of -1)" : "") + (s.duplicates ? " (repeated entries)" : "") +
      (s.q_sigma > 1 && s.q_sigma < 20 ? ", peaked logits" : "") +
      (s.q_sigma >= 20 ? ", large logits (p and the rescale factor underflow)" : "") +
      (s.lone_first ? ", first chunks of one entry" : "") +
      (s.edges ? ", edges: a zero query head, sinks -inf, 90, 100, twin kv rows, lists of one and two entries" : "");
  return c;
}

std::vector<Case> sparse_attention_cases(std::uint64_t seed) {
  // The model's head dim c 512 with lists over 2 and 3 chunks of 64 (a dead chunk); c 64 with many
  // heads; peaked logits (q σ 8: one entry dominates, others underflow towards 0); repeated entries;
  // the edge values (sinks, ties, lists of one and two entries) over three chunks; large logits (q σ
  // 40, logits of σ ≈ 40 over four chunks, even tokens' first chunk a single entry: p subnormal or 0,
  // the running max jumps so that α underflows); c 512 with 16 heads (the wrapper's minimum) over two
  // full chunks: many rescales of ℓ by its FMA; 72 heads with c 80 (the device's tiles of 64 heads and
  // 64 columns: a second, partial head tile; a partial column tile and k-step of 32; chunks of 64 and
  // 26 entries, the last partial).
  const std::vector<Spec> specs = {
      {16, 4, 64, 100, 80, 1.0, false, false},       {4, 2, 512, 160, 136, 1.0, true, false},
      {3, 16, 64, 80, 70, 8.0, false, false},        {5, 3, 32, 12, 20, 1.0, false, true},
      {6, 4, 64, 160, 150, 1.0, false, false, true}, {4, 8, 64, 256, 230, 40.0, false, true, false, true},
      {8, 16, 512, 128, 128, 1.0, false, false},     {5, 72, 80, 100, 90, 1.0, false, false}};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) { return make_case(s, seed * 1000 + 800 + k, true); });
}

// The backward (spec 06 §6.12, ref/train sparse_attention_backward): dq, dkv, dsink. The lists are
// held fixed (integers: no gradient through the selection); for fixed lists the function is smooth
// (no kinks to avoid).
GradientForms sparse_attention_gradient() {
  GradientForms g;
  g.outputs = {"o"};
  g.wrt = {0, 2, 3};
  g.forward_exact = [](const Call& c) { return Doubles{flat(AttnArgs(c).forward(Precision(Mode::kExact)))}; };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const AttnArgs a(c);
    return Mp50s{sparse_attention_exact(x.at(0), a.heads, x.at(2), a.c, x.at(3), a.lists, a.scale)};
  };
  g.backward = [](const Call& c) {
    const AttnArgs a(c);
    const Mat dout = to_mat(doubles(c.inputs.at(4)), a.lists.rows * a.heads, a.c);
    const SparseAttentionGrads r = sparse_attention_backward(a.q, a.heads, a.kv, a.sink, a.lists, a.scale, dout);
    return Doubles{flat(r.dq), flat(r.dkv), flat(r.dsink)};
  };
  g.cases = [](std::uint64_t seed) {
    const std::vector<Spec> specs = {
        {2, 2, 4, 5, 3, 1.0, false, false}, {3, 1, 6, 8, 5, 1.0, false, false}, {2, 2, 4, 3, 4, 1.0, false, true}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      Case c = make_case(s, seed * 100 + k, false);
      c.label += " (lists fixed: no gradient through the selection; smooth for fixed lists: no kinks)";
      c.call.inputs.push_back(upstream("do", s.tokens, s.heads * s.c, seed * 100 + k, "grad.attn.do"));
      return c;
    });
  };
  return g;
}

}  // namespace

Op sparse_attention_op() {
  return registration("sparse_attention", "spec 02 §2.9",
                      "sparse attention with sink: per head softmax over the listed kv rows (chunks of 64), sink in "
                      "the denominator only, bf16 out",
                      {"n_heads"}, {"scale"}, reference, DSV4_OPS_DEVICE(device), sparse_attention_cases,
                      sparse_attention_gradient());
}

}  // namespace dsv4::ops::detail
