// Registration of the MoE combine (spec 03 §3.3, the experts of §3.2) for given routing: per token
// the routed experts' outputs in ascending expert-id order, then the shared expert's, bf16 out;
// its backward (spec 06 §6.12): dx, the routing weights' gradient and every expert's weights' with
// the indices held fixed.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/moe_combine.hpp"
#include "dsv4/model/moe.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/moe_combine_backward.hpp"
#include "expert_weights.hpp"
#include "op_list.hpp"
#include "resident_device.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {n_experts E,
//       routed_kind, shared_kind: the routed experts' and the shared expert's weight kind, 0 bf16, 2 fp8,
//       3 fp4 (dsv4::WeightKind; V4: routed fp4 — fp8 after `--expert-dtype fp8` —, shared fp8),
//       act_scale_fp32: the fp8 / fp4 linears' activation scales (0 ue8m0 — config scale_fmt "ue8m0";
//       1 fp32 — scale_fmt "")};
// reals {swiglu_limit λ (≤ 0: no clamp)}; inputs x [tokens, d] (per row, bf16 values), weights
// [tokens, k] (per row, fp32 values), indices [tokens, k] (per row, expert ids as exact integers),
// then in their storage form (expert_weights.hpp) the routed w1, w3 [E·de, d] and w2 [E·d, de]
// (expert e: block e) and the shared expert's shared_w1, shared_w3 [de, d], shared_w2 [d, de]
// → y [tokens, d].
struct CombineCall {
  const Array& x;
  Mat weights;
  std::vector<std::int64_t> indices;
  std::int64_t experts, d, de;
  double limit;
  ScaleFormat fmt;
  WeightInput w1, w3, w2, s1, s3, s2;
  explicit CombineCall(const Call& c)
      : x(c.inputs.at(0)),
        weights(to_mat(c.inputs.at(1))),
        indices(checked_integers(c.inputs.at(2))),
        experts(c.ints.at(0)),
        d(x.cols),
        de(experts > 0 ? c.inputs.at(3).rows / experts : 0),
        limit(c.reals.at(0)),
        fmt(c.ints.at(3) != 0 ? ScaleFormat::kFP32 : ScaleFormat::kUE8M0) {
    if (experts < 1 || de < 1) throw std::invalid_argument("moe_combine: need n_experts ≥ 1 and w1 [E·de, d]");
    if (c.inputs.at(1).rows != x.rows || c.inputs.at(2).rows != x.rows || c.inputs.at(2).cols != c.inputs.at(1).cols) {
      throw std::invalid_argument("moe_combine: weights and indices must be [tokens, k]");
    }
    const WeightKind routed = expert_weight_kind(c.ints.at(1), "moe_combine"),
                     shared = expert_weight_kind(c.ints.at(2), "moe_combine");
    std::size_t at = 3;
    w1 = read_weight(c, at, routed, experts, de, d, "moe_combine");
    w3 = read_weight(c, at, routed, experts, de, d, "moe_combine");
    w2 = read_weight(c, at, routed, experts, d, de, "moe_combine");
    s1 = read_weight(c, at, shared, 1, de, d, "moe_combine");
    s3 = read_weight(c, at, shared, 1, de, d, "moe_combine");
    s2 = read_weight(c, at, shared, 1, d, de, "moe_combine");
    if (at != c.inputs.size()) throw std::invalid_argument("moe_combine: wrong number of inputs");
  }
  // The reference's Moe::combine (spec 03 §3.3) with these experts; the gate it holds (synthetic) is
  // not called: the routing is given.
  Mat forward(const Precision& p) const {
    ModelConfig c = expert_config(d, de, limit, fmt);
    c.n_routed_experts = experts;
    c.n_activated_experts = weights.cols();
    const std::int64_t layer = c.n_hash_layers;  // a score-routed layer
    MoeWeights w;
    w.gate = GateWeights::synthetic(c, layer, 1);
    for (std::int64_t e = 0; e < experts; ++e) w.experts.push_back({w1.block(e), w2.block(e), w3.block(e)});
    w.shared = {s1.block(0), s2.block(0), s3.block(0)};
    GateOutput routing;
    routing.weights = weights;
    routing.indices = indices;
    return Moe(p, c, layer, std::move(w)).combine(to_mat(x), routing);
  }
};

// The bf16 experts' values in double (the backward's and the gradient check's forms: bf16 weights).
struct CombineArgs {
  Mat x, weights;
  std::vector<std::int64_t> indices;
  std::int64_t experts, de;
  double limit;
  std::vector<ExpertMats> routed;
  ExpertMats shared;
  explicit CombineArgs(const Call& c)
      : x(to_mat(c.inputs.at(0))),
        weights(to_mat(c.inputs.at(1))),
        indices(checked_integers(c.inputs.at(2))),
        experts(c.ints.at(0)),
        de(c.inputs.at(6).rows),
        limit(c.reals.at(0)),
        shared{to_mat(c.inputs.at(6)), to_mat(c.inputs.at(7)), to_mat(c.inputs.at(8))} {
    if (c.ints.at(1) != 0 || c.ints.at(2) != 0)
      throw std::invalid_argument("moe_combine: the backward takes bf16 weights");
    const Mat w1 = to_mat(c.inputs.at(3)), w3 = to_mat(c.inputs.at(4)), w2 = to_mat(c.inputs.at(5));
    if (experts < 1 || w1.rows() != experts * de || w3.rows() != experts * de || w2.rows() != experts * x.cols()) {
      throw std::invalid_argument("moe_combine: the routed experts' weights are not [E·de, d], [E·de, d], [E·d, de]");
    }
    for (std::int64_t e = 0; e < experts; ++e) {
      routed.push_back({w1.middleRows(e * de, de), w3.middleRows(e * de, de), w2.middleRows(e * x.cols(), x.cols())});
    }
  }
  // Moe::combine with these experts as bf16 weights (the gradient check's exact forward).
  Mat forward(const Precision& p) const {
    ModelConfig c = builtin_config("tiny");
    c.dim = x.cols();
    c.moe_inter_dim = de;
    c.n_routed_experts = experts;
    c.n_activated_experts = weights.cols();
    c.swiglu_limit = limit;
    const std::int64_t layer = c.n_hash_layers;  // a score-routed layer
    MoeWeights w;
    w.gate = GateWeights::synthetic(c, layer, 1);
    const auto bf16 = [](const ExpertMats& m) {
      return ExpertWeights{LinearWeight::bf16_from(m.w1), LinearWeight::bf16_from(m.w2), LinearWeight::bf16_from(m.w3)};
    };
    for (const ExpertMats& m : routed) w.experts.push_back(bf16(m));
    w.shared = bf16(shared);
    GateOutput routing;
    routing.weights = weights;
    routing.indices = indices;
    return Moe(p, c, layer, std::move(w)).combine(x, routing);
  }
};

Outputs reference(const Call& c) {
  const Mat y = CombineCall(c).forward(Precision(Mode::kOfficial));
  return {Array::floats("y", y.rows(), y.cols(), to_floats(y))};
}

#if DSV4_HAVE_CUDA
// gpu::moe_combine_resident (gpu/src/moe_combine.cu: the expert chain over every (token, slot) pair
// and the shared expert, then the fixed-order fp32 sum), each weight's device copy kept with a
// resident weight or made for this call (resident_device.hpp). The weights as the reference holds
// them: bf16 values rounded (LinearWeight::bf16_from; the cases' values are bf16 already), fp8 / fp4
// codes and scales as given; the host views (the recomputation of undecided tokens) read the host
// values.
Outputs device(const Call& c) {
  const CombineCall a(c);
  std::vector<std::vector<float>> bf16(6);
  std::vector<std::shared_ptr<const void>> hold;
  gpu::MoeExpertsView v;
  v.experts = a.experts;
  v.dim = a.d;
  v.inter = a.de;
  v.act_fmt = a.fmt;
  gpu::MoeExpertsView dv = v;
  const WeightInput* inputs[] = {&a.w1, &a.w3, &a.w2, &a.s1, &a.s3, &a.s2};
  gpu::LinearWeightView gpu::MoeExpertsView::*views[] = {
      &gpu::MoeExpertsView::w1,        &gpu::MoeExpertsView::w3,        &gpu::MoeExpertsView::w2,
      &gpu::MoeExpertsView::shared_w1, &gpu::MoeExpertsView::shared_w3, &gpu::MoeExpertsView::shared_w2};
  for (std::size_t i = 0; i < 6; ++i) {
    v.*views[i] = inputs[i]->view(bf16[i]);
    dv.*views[i] = device_view(v.*views[i], *inputs[i]->data, inputs[i]->scale, "bf16", hold);
  }
  gpu::MoeCombineBatch r = gpu::moe_combine_resident(a.x.f32.data(), a.x.rows, c.inputs.at(1).f32.data(),
                                                     a.indices.data(), a.weights.cols(), v, dv, a.limit);
  return {Array::floats("y", a.x.rows, a.d, std::move(r.y))};
}
#endif

enum class Values { kNormals, kEdges, kTies };

struct Spec {
  std::int64_t tokens, d, de, experts, k;
  double limit;
  Values values = Values::kNormals;
  bool repeated_ids = false;  // tokens t ≡ 1 (mod 4) list their first expert twice (slots 0 and 1)
  WeightKind routed = WeightKind::kBF16, shared = WeightKind::kBF16;
  bool fp32_scales = false;
};

// k distinct experts per token (a partial shuffle), or with the first id repeated.
std::vector<float> routing_indices(const Spec& s, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.moe_combine.indices"));
  std::vector<float> out(static_cast<std::size_t>(s.tokens * s.k));
  std::vector<std::int64_t> ids(static_cast<std::size_t>(s.experts));
  for (std::int64_t t = 0; t < s.tokens; ++t) {
    for (std::int64_t e = 0; e < s.experts; ++e) ids[static_cast<std::size_t>(e)] = e;
    for (std::int64_t j = 0; j < s.k; ++j) {
      const auto w = rng.words(static_cast<std::uint64_t>(t * s.k + j));
      const auto pick = static_cast<std::int64_t>(j + w[0] % static_cast<std::uint64_t>(s.experts - j));
      std::swap(ids[static_cast<std::size_t>(j)], ids[static_cast<std::size_t>(pick)]);
      out[static_cast<std::size_t>(t * s.k + j)] = static_cast<float>(ids[static_cast<std::size_t>(j)]);
    }
    if (s.values == Values::kTies && s.k >= 3) {  // slots 0 and 2: the twins 2m, 2m + 1 (cancelling)
      const auto m = static_cast<std::int64_t>(rng.words((std::uint64_t{1} << 40) + static_cast<std::uint64_t>(t))[0] %
                                               static_cast<std::uint64_t>(s.experts / 2));
      for (std::int64_t j = 0; j < s.k; ++j) {
        float& id = out[static_cast<std::size_t>(t * s.k + j)];
        if (j == 0 || j == 2) id = static_cast<float>(2 * m + j / 2);
        if (j != 0 && j != 2 && static_cast<std::int64_t>(id) / 2 == m)
          id = static_cast<float>((2 * m + 2 + j) % s.experts);
      }
    }
    if (s.repeated_ids && t % 4 == 1)
      out[static_cast<std::size_t>(t * s.k + 1)] = out[static_cast<std::size_t>(t * s.k)];
  }
  return out;
}

// Routing weights: normals cases uniform in (0.05, 1.05); edge cases also exact zeros, fp32
// subnormals and large weights 2^4..2^12 (one in 8 each); ties cases powers of two 2^16, 2^0, 2^-8,
// 2^-24 (pair outputs whose fp32 sums and bf16 roundings land on midpoints; large pairs cancelling,
// so that the order of the additions shows in the bf16 result).
std::vector<float> routing_weights(const Spec& s, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.moe_combine.weights"));
  std::vector<float> weights(static_cast<std::size_t>(s.tokens * s.k));
  for (std::size_t i = 0; i < weights.size(); ++i) {
    double w = 0.05 + rng.uniform(i);
    const auto u = rng.words((std::uint64_t{1} << 40) + i);
    if (s.values == Values::kEdges) {
      switch (u[0] % 8) {
        case 0:
          w = 0.0;
          break;
        case 1:
          w = std::ldexp(1.0 + static_cast<double>(u[1] % 1024) / 1024.0, -140 - static_cast<int>(u[2] % 9));
          break;
        case 2:
          w = std::ldexp(1.0 + static_cast<double>(u[1] % 1024) / 1024.0, 4 + static_cast<int>(u[2] % 9));
          break;
        default:
          break;
      }
    } else if (s.values == Values::kTies && s.k >= 3 &&
               (i % static_cast<std::size_t>(s.k) == 0 || i % static_cast<std::size_t>(s.k) == 2)) {
      w = 0x1p16;  // the twins' equal weights: their outputs cancel exactly
    } else if (s.values == Values::kTies) {
      static constexpr int kExponents[] = {16, 0, -8, -24};
      w = std::ldexp(1.0, kExponents[u[0] % 4]);
    }
    weights[i] = static_cast<float>(w);
  }
  return weights;
}

// Token rows of the edge cases (bf16), by row r mod 5: 0 N(0, 1); 1 all ±0; 2 a zero 32-column block
// and every third entry a bf16 subnormal; 3 one outlier ±2^10..2^16 among N(0, 1); 4 N(0, 1)·2^-20.
std::vector<float> edge_tokens(std::int64_t tokens, std::int64_t d, std::uint64_t seed) {
  std::vector<float> x = normals(tokens * d, 1.0, seed, "ops.moe_combine.edge.x");
  const CounterRng rng(seed, stream_id("ops.moe_combine.edge.kinds"));
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t i = 0; i < d; ++i) {
      const std::size_t at = static_cast<std::size_t>(t * d + i);
      const auto u = rng.words(at);
      const double sign = (u[0] & 1u) != 0 ? -1.0 : 1.0;
      double v = x[at];
      switch (t % 5) {
        case 1:
          v = sign * 0.0;
          break;
        case 2:
          if (i / 32 == (t / 5) % ((d + 31) / 32)) v = sign * 0.0;
          if (i % 3 == 0) v = sign * std::ldexp(static_cast<double>(1 + u[1] % 127), -133);
          break;
        case 3:
          if (i == t % d)
            v = sign * std::ldexp(1.0 + static_cast<double>(u[1] % 128) / 128.0, 10 + static_cast<int>(u[2] % 7));
          break;
        case 4:
          v = std::ldexp(v, -20);
          break;
        default:
          break;
      }
      x[at] = round_bf16(v);
    }
  }
  return x;
}

// The ties cases' experts: x = 1 at column 0 (±0 elsewhere), W1 = 32 at column 0 (so g = 32 and
// silu(g) = 32 exactly in fp32: exp(−32) is below half an ulp of 1), W3 column 0 ±2^a (a ∈ {0, 1}),
// W2 rows with one or two nonzero entries ±2^-8c (c ∈ {0, 1}); expert 2m + 1 is expert 2m with W3
// negated and slots 0, 2 hold such twins with equal weights 2^16 (exact cancellation, which the
// ascending order completes before or after the other slots, the gate's slot order not): every pair output is a sum of
// two single-bit values — bf16 midpoints when they are 2^8 apart — and the token's fp32 sum of pair outputs 2^8, 2^16,
// 2^24 apart meets fp32 midpoints (1 + 2^-24) and sticky bits, which the order of the additions decides. Other entries
// N(0, σ²) (multiplied by x's zeros).
std::vector<float> tie_weight(std::int64_t rows, std::int64_t cols, std::uint64_t seed, const char* stream, int which) {
  std::vector<float> w = bf16_normals(rows * cols, 0.5, seed, stream);
  const CounterRng rng(seed, stream_id((std::string(stream) + ".ties").c_str()));
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto u = rng.words(static_cast<std::uint64_t>(r));
    const double sign = (u[0] & 1u) != 0 ? -1.0 : 1.0;
    if (which == 1) w[static_cast<std::size_t>(r * cols)] = 32.0f;
    if (which == 3)
      w[static_cast<std::size_t>(r * cols)] = static_cast<float>(sign * std::ldexp(1.0, static_cast<int>(u[1] % 2)));
    if (which == 2) {
      for (std::int64_t c = 0; c < cols; ++c) w[static_cast<std::size_t>(r * cols + c)] = 0.0f;
      const std::int64_t c0 = static_cast<std::int64_t>(u[1] % static_cast<std::uint64_t>(cols));
      const std::int64_t c1 = static_cast<std::int64_t>(u[2] % static_cast<std::uint64_t>(cols));
      w[static_cast<std::size_t>(r * cols + c0)] =
          static_cast<float>(sign * std::ldexp(1.0, -8 * static_cast<int>(u[3] % 2)));
      if (c1 != c0 && (u[3] & 0x100u) != 0) {
        w[static_cast<std::size_t>(r * cols + c1)] = static_cast<float>(
            ((u[3] & 0x200u) != 0 ? -1.0 : 1.0) * std::ldexp(1.0, -8 * static_cast<int>((u[3] >> 12) % 2)));
      }
    }
  }
  return w;
}

std::vector<float> tie_tokens(std::int64_t tokens, std::int64_t d, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.moe_combine.ties.x"));
  std::vector<float> x(static_cast<std::size_t>(tokens * d));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double sign = (rng.words(i)[0] & 1u) != 0 ? -1.0 : 1.0;
    x[i] = static_cast<float>(i % static_cast<std::size_t>(d) == 0 ? 1.0 : sign * 0.0);
  }
  return x;
}

Case make_case(const Spec& s, std::uint64_t seed, double sigma_w) {
  const auto weight = [&](std::int64_t rows, std::int64_t cols, const char* stream, int which) {
    switch (s.values) {
      case Values::kEdges:
        return edge_weight(rows, cols, seed + static_cast<std::uint64_t>(which), true, stream);
      case Values::kTies:
        return tie_weight(rows, cols, seed, stream, which);
      case Values::kNormals:
        break;
    }
    return bf16_normals(rows * cols, sigma_w, seed, stream);
  };
  std::vector<float> x = s.values == Values::kEdges  ? edge_tokens(s.tokens, s.d, seed)
                         : s.values == Values::kTies ? tie_tokens(s.tokens, s.d, seed)
                                                     : bf16_normals(s.tokens * s.d, 1.0, seed, "ops.moe_combine.x");
  static const char* const kValuesText[] = {"", ", edge values", ", ties"};
  static const char* const kKindText[] = {"bf16", "fp32", "fp8", "fp4"};
  const bool quantised = s.routed != WeightKind::kBF16 || s.shared != WeightKind::kBF16;
  Case c;
  c.label = std::to_string(s.tokens) + " tokens, d " + std::to_string(s.d) + ", de " + std::to_string(s.de) + ", " +
            std::to_string(s.experts) + " experts, top " + std::to_string(s.k) +
            kValuesText[static_cast<int>(s.values)] + (s.repeated_ids ? ", a repeated id" : "");
  if (quantised) {
    c.label += std::string(", ") + kKindText[static_cast<int>(s.routed)] + " routed, " +
               kKindText[static_cast<int>(s.shared)] + " shared, " + (s.fp32_scales ? "fp32" : "ue8m0") + " act scales";
  }
  c.call.ints = {s.experts, static_cast<std::int64_t>(s.routed), static_cast<std::int64_t>(s.shared),
                 s.fp32_scales ? 1 : 0};
  c.call.reals = {s.limit};
  c.call.inputs = {Array::floats("x", s.tokens, s.d, std::move(x)),
                   Array::floats("weights", s.tokens, s.k, routing_weights(s, seed)),
                   Array::floats("indices", s.tokens, s.k, routing_indices(s, seed)),
                   Array::floats("w1", s.experts * s.de, s.d, weight(s.experts * s.de, s.d, "ops.moe_combine.w1", 1)),
                   Array::floats("w3", s.experts * s.de, s.d, weight(s.experts * s.de, s.d, "ops.moe_combine.w3", 3)),
                   Array::floats("w2", s.experts * s.d, s.de, weight(s.experts * s.d, s.de, "ops.moe_combine.w2", 2)),
                   Array::floats("shared_w1", s.de, s.d, weight(s.de, s.d, "ops.moe_combine.shared_w1", 1)),
                   Array::floats("shared_w3", s.de, s.d, weight(s.de, s.d, "ops.moe_combine.shared_w3", 3)),
                   Array::floats("shared_w2", s.d, s.de, weight(s.d, s.de, "ops.moe_combine.shared_w2", 2))};
  if (s.values == Values::kTies) {  // expert 2m + 1 = expert 2m with W3 negated: outputs exactly negated
    for (std::size_t i = 3; i < 6; ++i) {
      std::vector<float>& w = c.call.inputs[i].f32;
      const std::size_t block = w.size() / static_cast<std::size_t>(s.experts);
      for (std::int64_t e = 1; e < s.experts; e += 2) {
        for (std::size_t j = 0; j < block; ++j) {
          const float v = w[static_cast<std::size_t>(e - 1) * block + j];
          w[static_cast<std::size_t>(e) * block + j] = i == 4 ? -v : v;
        }
      }
    }
  }
  for (std::size_t i = 3; i < c.call.inputs.size(); ++i) c.call.inputs[i].per_row = false;
  if (quantised) {  // the fp8 / fp4 experts' storage in place of the bf16 values
    const WeightValues v = s.values == Values::kEdges ? WeightValues::kEdges : WeightValues::kNormals;
    std::vector<Array> in(std::make_move_iterator(c.call.inputs.begin()),
                          std::make_move_iterator(c.call.inputs.begin() + 3));
    for (std::size_t i = 3; i < 9; ++i) {
      const bool routed = i < 6;
      const WeightKind kind = routed ? s.routed : s.shared;
      if (kind == WeightKind::kBF16) {
        in.push_back(std::move(c.call.inputs[i]));
        continue;
      }
      const bool down = i == 5 || i == 8;  // w2: [d, de]
      for (Array& a : quantised_weight_arrays(kind, c.call.inputs[i].name, routed ? s.experts : 1, down ? s.d : s.de,
                                              down ? s.de : s.d, sigma_w, v, seed + i))
        in.push_back(std::move(a));
    }
    c.call.inputs = std::move(in);
  }
  return c;
}

std::vector<Case> moe_combine_cases(std::uint64_t seed) {
  using W = WeightKind;
  // λ = 10 (V4), λ = 0.5 (most elements clamped), no clamp; every expert chosen (k = E); some
  // experts with no token (8 tokens × top 2 of 16). The edge values (zero, subnormal, outlier and
  // tiny token rows; edge_weight experts: zero blocks and rows, subnormals, ±2^30 outliers; zero,
  // subnormal and large routing weights), clamped so that nothing overflows; a repeated expert id
  // (the reference adds both, in slot order); the ties (exact pair outputs on bf16 and fp32
  // midpoints; no clamp, and λ = 32: g = 32 = λ exactly, u inside). The quantised experts: V4's
  // fp4 routed experts with the fp8 shared expert, fp8 routed experts (`--expert-dtype fp8`), fp4
  // routed with a bf16 shared expert; normals (the model's synthetic weights) and edges
  // (edge_fp8_codes / edge_fp4_codes, scales 2^-127 .. 2^4); both activation scale formats.
  const std::vector<Spec> specs = {{32, 64, 32, 8, 2, 10.0},
                                   {5, 128, 16, 4, 4, 0.5},
                                   {8, 32, 8, 16, 2, 0.0},
                                   {25, 96, 24, 6, 3, 10.0, Values::kEdges},
                                   {20, 64, 16, 5, 4, 0.5, Values::kEdges, true},
                                   {40, 32, 8, 4, 3, 0.0, Values::kTies},
                                   {24, 40, 8, 6, 4, 32.0, Values::kTies, true},
                                   {12, 128, 128, 4, 2, 10.0, Values::kNormals, false, W::kFP4, W::kFP8},
                                   {10, 256, 128, 6, 3, 0.5, Values::kNormals, false, W::kFP8, W::kFP8, true},
                                   {16, 128, 128, 5, 4, 0.0, Values::kEdges, true, W::kFP4, W::kBF16},
                                   {8, 128, 256, 8, 2, 10.0, Values::kEdges, false, W::kFP8, W::kFP8},
                                   {12, 128, 128, 4, 3, 0.5, Values::kEdges, false, W::kFP4, W::kFP8, true}};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    Case c = make_case(s, seed * 1000 + 950 + k, 4.0 / std::sqrt(static_cast<double>(s.d)));
    c.label += ", limit " + std::to_string(s.limit).substr(0, 4);
    return c;
  });
}

// The check point's clamp limit: every expert's g = W1 x and u = W3 x at the tokens routed to it,
// and the shared expert's at every token, ≥ margin from λ (clamp_limit_away_from_edges).
double limit_away_from_edges(const CombineArgs& a, double margin) {
  const Precision exact(Mode::kExact);
  std::vector<double> g, u;
  const auto add = [&](const Mat& xs, const ExpertMats& w) {
    const Mat ge = exact.matmul_nt(xs, w.w1), ue = exact.matmul_nt(xs, w.w3);
    g.insert(g.end(), ge.data(), ge.data() + ge.size());
    u.insert(u.end(), ue.data(), ue.data() + ue.size());
  };
  const std::int64_t k = a.weights.cols();
  for (Eigen::Index t = 0; t < a.x.rows(); ++t) {
    for (std::int64_t j = 0; j < k; ++j)
      add(a.x.row(t), a.routed[static_cast<std::size_t>(a.indices[static_cast<std::size_t>(t * k + j)])]);
  }
  add(a.x, a.shared);
  return clamp_limit_away_from_edges(g, u, margin);
}

// The backward (spec 06 §6.12, ref/train moe_combine_backward; clamp boundary kClosed): dx,
// d(weights), dw1, dw3, dw2 of the routed experts and the shared expert's; the indices are held
// fixed. Check points keep every g and |u| ≥ 0.01 from λ (the clamp's kinks), with clamped elements
// on both sides present, or have no clamp.
GradientForms moe_combine_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0, 1, 3, 4, 5, 6, 7, 8};
  g.forward_exact = [](const Call& c) { return Doubles{flat(CombineArgs(c).forward(Precision(Mode::kExact)))}; };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const CombineArgs a(c);
    return Mp50s{moe_combine_exact(x.at(0), a.x.rows(), a.x.cols(), x.at(1), a.indices, a.weights.cols(), a.experts,
                                   a.de, x.at(3), x.at(4), x.at(5), x.at(6), x.at(7), x.at(8), a.limit)};
  };
  g.backward = [](const Call& c) {
    const CombineArgs a(c);
    const MoeCombineGrads r =
        moe_combine_backward(a.x, a.weights, a.indices, a.routed, a.shared, a.limit, to_mat(c.inputs.at(9)));
    return Doubles{flat(r.dx),  flat(r.dweights),   flat(r.dw1),        flat(r.dw3),
                   flat(r.dw2), flat(r.dshared.w1), flat(r.dshared.w3), flat(r.dshared.w2)};
  };
  g.cases = [](std::uint64_t seed) {
    const std::vector<std::pair<Spec, bool>> specs = {
        {{3, 4, 3, 3, 2, 0.0}, true}, {{3, 3, 2, 3, 3, 0.0}, true}, {{3, 4, 3, 3, 2, 0.0}, false}};
    return cases_of(specs, [&](const std::pair<Spec, bool>& spec, std::uint64_t k) {
      const auto& [s, clamp] = spec;
      Case c = make_case(s, seed * 100 + k, 0.5);  // bf16 weights (the op's)
      if (clamp) c.call.reals[0] = limit_away_from_edges(CombineArgs(c.call), 0.01);
      c.label += clamp ? ", clamped (every g and |u| ≥ 0.01 from λ; elements on both sides)" : ", no clamp (smooth)";
      c.label += "; indices fixed (no gradient through the choice)";
      c.call.inputs.push_back(upstream("dy", s.tokens, s.d, seed * 100 + k, "grad.moe_combine.dy"));
      return c;
    });
  };
  return g;
}

}  // namespace

Op moe_combine_op() {
  return registration(
      "moe_combine", "spec 03 §3.3",
      "MoE combine for given routing: routed experts in ascending id order, then the shared expert, bf16; expert "
      "weights bf16, fp8 (128×128) or fp4 (1×32)",
      {"n_experts", "routed_kind", "shared_kind", "act_scale_fp32"}, {"swiglu_limit"}, reference,
      DSV4_OPS_DEVICE(device), moe_combine_cases, moe_combine_gradient(), /*resident_inputs=*/true);
}

}  // namespace dsv4::ops::detail
