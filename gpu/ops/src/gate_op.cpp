// Registration of the MoE gate (spec 03 §3.1): per token, the E scores, the choice of k experts
// (top-k of the biased scores in C4 order, or the token id's tid2eid row) and their routing weights.
#include <cmath>
#include <string>
#include <utility>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/gate.hpp"
#include "dsv4/model/gate.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/gate_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

std::vector<std::int64_t> integers(const Array& a) {
  std::vector<std::int64_t> v(a.f32.size());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::int64_t>(a.f32[i]);
  return v;
}

std::vector<float> floats(const std::vector<std::int64_t>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
  return out;
}

// ints {k, score_func (0 softmax, 1 sigmoid, 2 sqrtsoftplus: ScoreFunc), vocab}, reals
// {route_scale}; inputs x [tokens, d] (bf16 values) and token_ids [tokens, 1] (per row), weight
// [1, E·d] (bf16 values), bias [1, E] (fp32 values; empty: hash-routed) and tid2eid [1, vocab·k]
// (empty: score-routed) (shared) → weights [tokens, k], indices [tokens, k] (expert ids as floats),
// scores [tokens, E].
struct GateArgs {
  const Array& x;
  std::vector<std::int64_t> ids, table;
  const Array& weight;
  const Array& bias;
  std::int64_t k, score, vocab, experts;
  double route_scale;
  explicit GateArgs(const Call& c)
      : x(c.inputs.at(0)),
        ids(integers(c.inputs.at(1))),
        table(integers(c.inputs.at(4))),
        weight(c.inputs.at(2)),
        bias(c.inputs.at(3)),
        k(c.ints.at(0)),
        score(c.ints.at(1)),
        vocab(c.ints.at(2)),
        experts(weight.cols / x.cols),
        route_scale(c.reals.at(0)) {}
  bool hash() const { return !table.empty(); }
  Outputs outputs(std::vector<float> weights, const std::vector<std::int64_t>& indices,
                  std::vector<float> scores) const {
    return {Array::floats("weights", x.rows, k, std::move(weights)),
            Array::floats("indices", x.rows, k, floats(indices)),
            Array::floats("scores", x.rows, experts, std::move(scores))};
  }
};

Outputs reference(const Call& c) {
  const GateArgs a(c);
  GateRows r =
      gate_rows(Precision(Mode::kOfficial), a.x.f32.data(), a.x.rows, a.x.cols, a.ids.data(), a.weight.f32.data(),
                a.experts, a.hash() ? nullptr : a.bias.f32.data(), a.hash() ? a.table.data() : nullptr, a.vocab,
                static_cast<ScoreFunc>(a.score), a.k, a.route_scale);
  return a.outputs(std::move(r.weights), r.indices, std::move(r.scores));
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const GateArgs a(c);
  gpu::GateBatch r = gpu::gate(a.x.f32.data(), a.x.rows, a.x.cols, a.ids.data(), a.weight.f32.data(), a.experts,
                               a.hash() ? nullptr : a.bias.f32.data(), a.hash() ? a.table.data() : nullptr, a.vocab,
                               static_cast<gpu::GateScore>(a.score), a.k, a.route_scale);
  return a.outputs(std::move(r.weights), r.indices, std::move(r.scores));
}
#endif

struct Spec {
  std::int64_t tokens, d, experts, k;
  ScoreFunc score;
  bool hash;
  double route_scale;
  enum Kind { kActivations, kTies } kind;
};

std::string score_name(ScoreFunc f) {
  return f == ScoreFunc::kSoftmax ? "softmax" : (f == ScoreFunc::kSigmoid ? "sigmoid" : "sqrtsoftplus");
}

constexpr std::int64_t kVocab = 1000;

// The synthetic gate of spec 03 (GateWeights::synthetic: weight bf16(N(0, 1/d)), bias fp32(N(0,
// 0.05²)), tid2eid rows of k distinct experts). Ties: experts e and e + E/2 share their weight row
// and bias, every fourth token is all zero (every logit 0) — equal biased scores, chosen by index.
Case make_case(const Spec& s, std::uint64_t seed) {
  ModelConfig cfg;
  cfg.dim = s.d;
  cfg.n_routed_experts = s.experts;
  cfg.n_activated_experts = s.k;
  cfg.vocab_size = kVocab;
  cfg.n_layers = 4;
  cfg.n_hash_layers = 2;
  const GateWeights w = GateWeights::synthetic(cfg, s.hash ? 0 : 3, seed);
  std::vector<float> weight = to_floats(w.weight.values()), bias = to_floats(w.bias);
  // Hash-routed tokens keep their table's experts whatever their scores: outliers could make all k
  // scores 0 (logits below −103) and the weights 0/0, a NaN whose payload is the machine's (x86's
  // default NaN 0xFFC00000, CUDA's 0x7FFFFFFF), not the arithmetic's — so there |x| < 8.
  std::vector<float> x = s.hash ? edge_activations_tamed(s.tokens, s.d, seed + 1, 8.0, 0x1p-100)
                                : edge_activations_tamed(s.tokens, s.d, seed + 1, 0x1p40, 0x1p-50);
  if (s.kind == Spec::kTies) {
    const std::int64_t half = s.experts / 2;
    for (std::int64_t e = 0; e < half; ++e) {
      std::copy_n(&weight[static_cast<std::size_t>(e * s.d)], s.d, &weight[static_cast<std::size_t>((e + half) * s.d)]);
      if (!bias.empty()) bias[static_cast<std::size_t>(e + half)] = bias[static_cast<std::size_t>(e)];
    }
    for (std::int64_t t = 0; t < s.tokens; t += 4) std::fill_n(&x[static_cast<std::size_t>(t * s.d)], s.d, 0.0f);
  }
  std::vector<float> ids(static_cast<std::size_t>(s.tokens));
  const CounterRng rng(seed, stream_id("ops.gate.token_ids"));
  for (std::size_t t = 0; t < ids.size(); ++t) ids[t] = static_cast<float>(rng.words(t)[0] % kVocab);
  Case c;
  c.label = std::to_string(s.tokens) + " tokens, d " + std::to_string(s.d) + ", " + std::to_string(s.experts) +
            " experts, top " + std::to_string(s.k) + ", " + score_name(s.score) + (s.hash ? ", hash-routed" : "") +
            (s.kind == Spec::kTies ? ", tied experts and zero rows" : "");
  c.call.ints = {s.k, static_cast<std::int64_t>(s.score), kVocab};
  c.call.reals = {s.route_scale};
  c.call.inputs = {Array::floats("x", s.tokens, s.d, std::move(x)),
                   Array::floats("token_ids", s.tokens, 1, std::move(ids)), Array::shared("weight", std::move(weight)),
                   Array::shared("bias", s.hash ? std::vector<float>{} : std::move(bias)),
                   Array::shared("tid2eid", s.hash ? floats(w.tid2eid) : std::vector<float>{})};
  return c;
}

std::vector<Case> gate_cases(std::uint64_t seed) {
  using S = ScoreFunc;
  // V4-Flash (d 4096, 256 experts, route scale 1.5) and V4-Pro (7168, 384, 2.5) widths with top 6;
  // the other score functions; hash routing; ties; every expert chosen (k = E). Edge activations:
  // zero blocks, subnormals, outliers up to 2^76 (scores at 0 or saturated: many equal scores).
  const std::vector<Spec> specs = {
      {8, 4096, 256, 6, S::kSqrtSoftplus, false, 1.5, Spec::kActivations},
      {2, 7168, 384, 6, S::kSqrtSoftplus, false, 2.5, Spec::kActivations},
      {300, 64, 16, 4, S::kSqrtSoftplus, false, 1.5, Spec::kActivations},
      {17, 96, 32, 3, S::kSigmoid, false, 2.5, Spec::kActivations},
      {9, 100, 24, 5, S::kSoftmax, false, 1.0, Spec::kActivations},
      {40, 256, 64, 6, S::kSqrtSoftplus, true, 1.5, Spec::kActivations},
      {12, 64, 8, 8, S::kSoftmax, false, 1.0, Spec::kActivations},
      {32, 64, 32, 6, S::kSqrtSoftplus, false, 1.5, Spec::kTies},
      {32, 64, 32, 6, S::kSigmoid, false, 1.5, Spec::kTies},
      {16, 64, 32, 6, S::kSqrtSoftplus, true, 1.5, Spec::kTies},
  };
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) { return make_case(s, seed * 1000 + 300 + 10 * k); });
}

// The reference's Gate in exact mode on the call (as gate_rows builds it, with double outputs).
GateOutput exact_gate(const Call& call) {
  const GateArgs a(call);
  ModelConfig c;
  c.dim = a.x.cols;
  c.n_routed_experts = a.experts;
  c.n_activated_experts = a.k;
  c.score_func = static_cast<ScoreFunc>(a.score);
  c.route_scale = a.route_scale;
  c.vocab_size = a.vocab;
  c.n_layers = 1;
  c.n_mtp_layers = 0;
  c.n_hash_layers = a.hash() ? 1 : 0;
  GateWeights w;
  w.weight = LinearWeight::bf16_from(to_mat(doubles(a.weight), a.experts, a.x.cols));
  if (a.hash()) {
    w.tid2eid = a.table;
  } else {
    w.bias = to_vec(a.bias);
  }
  return Gate(Precision(Mode::kExact), c, 0, std::move(w)).forward(to_mat(a.x), a.ids);
}

std::vector<double> as_doubles(const std::vector<std::int64_t>& v) { return std::vector<double>(v.begin(), v.end()); }

// The backward (spec 06 §6.12, ref/train gate_backward): dx and d(weight) from d(weights) and
// d(scores); the choice of experts (indices, hence the bias and tid2eid) has no gradient. Check
// points: every token's top-k gap on the biased scores ≥ 1e-3 (no flip within a step), bf16
// weights (the op's).
GradientForms gate_gradient() {
  GradientForms g;
  g.outputs = {"weights", "indices", "scores"};
  g.wrt = {0, 2};
  g.forward_exact = [](const Call& c) {
    const GateOutput o = exact_gate(c);
    return Doubles{flat(o.weights), as_doubles(o.indices), flat(o.scores)};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const GateArgs a(c);
    const GateExact<Mp50> o = gate_exact(x.at(0), a.x.rows, a.x.cols, x.at(2), a.experts, doubles(a.bias), a.table,
                                         a.ids, a.k, static_cast<ScoreFunc>(a.score), a.route_scale);
    return Mp50s{o.weights, std::vector<Mp50>(o.indices.begin(), o.indices.end()), o.scores};
  };
  g.backward = [](const Call& c) {
    const GateArgs a(c);
    const GateGrads r =
        gate_backward(to_mat(a.x), to_mat(doubles(a.weight), a.experts, a.x.cols), static_cast<ScoreFunc>(a.score),
                      a.route_scale, exact_gate(c).indices, to_mat(c.inputs.at(5)), to_mat(c.inputs.at(7)));
    return Doubles{flat(r.dx), flat(r.dweight)};
  };
  g.cases = [](std::uint64_t seed) {
    using S = ScoreFunc;
    const std::vector<Spec> specs = {{3, 8, 6, 2, S::kSqrtSoftplus, false, 1.5, Spec::kActivations},
                                     {3, 8, 6, 3, S::kSigmoid, false, 2.5, Spec::kActivations},
                                     {2, 6, 5, 2, S::kSoftmax, false, 1.0, Spec::kActivations},
                                     {3, 8, 6, 2, S::kSqrtSoftplus, true, 1.5, Spec::kActivations}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      // Draw until every token's cut has a gap ≥ 1e-3 (hash routing has no cut).
      for (std::uint64_t attempt = 0; attempt < 100; ++attempt) {
        Case c = make_case(s, seed * 1000 + 700 + 10 * k + attempt * 100000);
        std::vector<float> x = normals(s.tokens * s.d, 1.0, seed * 100 + k + attempt * 1000, "grad.gate.x");
        c.call.inputs[0] = Array::floats("x", s.tokens, s.d, std::move(x));
        const GateOutput o = exact_gate(c.call);
        bool ok = true;
        for (const RoutingMargin& m : o.margins) ok = ok && m.gap >= 1e-3;
        if (!ok) continue;
        c.label = std::to_string(s.tokens) + " tokens, d " + std::to_string(s.d) + ", " + std::to_string(s.experts) +
                  " experts, top " + std::to_string(s.k) + ", " + score_name(s.score) +
                  (s.hash ? ", hash-routed (no cut)" : ", every top-k gap ≥ 1e-3 (no flip)");
        const std::uint64_t base = seed * 100 + k;
        c.call.inputs.push_back(upstream("dweights", s.tokens, s.k, base, "grad.gate.dweights"));
        c.call.inputs.push_back(upstream("dindices", s.tokens, s.k, base, "grad.gate.dindices"));
        c.call.inputs.push_back(upstream("dscores", s.tokens, s.experts, base, "grad.gate.dscores"));
        return c;
      }
      throw std::logic_error("gate gradient cases: no draw with top-k gaps ≥ 1e-3");
    });
  };
  return g;
}

}  // namespace

Op gate_op() {
  return registration(
      "gate", "spec 03 §3.1",
      "MoE gate: scores, top-k of the biased scores (C4) or hash routing, normalised weights × route_scale",
      {"k", "score_func", "vocab"}, {"route_scale"}, reference, DSV4_OPS_DEVICE(device), gate_cases, gate_gradient());
}

}  // namespace dsv4::ops::detail
