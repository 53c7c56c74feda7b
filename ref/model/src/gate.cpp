// The MoE gate (spec 03 §3.1; official code class `Gate`).
//
// Certification of the exact-mode routing cut (ref/README.md §Precision design)
// ------------------------------------------------------------------------------
// Exact mode computes the biased score of token t, expert e in double,
//   ℓ̂ = the deterministic double GEMM of x_t and W_e (d terms),  ŝ = f(ℓ̂),  b̂ = fl(ŝ + b_e),
// and the routing cut (k-th vs (k+1)-th biased score) is decided on b̂. The truth is the real
// value b = f(ℓ) + b_e with ℓ = Σ_i x_i W_ei exactly (x and W are the gate's exact inputs). The bound
// β with |b̂ − b| ≤ β is built as follows; u = 2⁻⁵³ (double unit roundoff), ε = 2⁻⁵⁰ (libm
// assumption of ref/README.md: std::exp and std::log1p within 4 ulp, i.e. relative error ≤ 4·2⁻⁵²).
//
// 1. Logit (Higham §3.5, any summation order): |ℓ̂ − ℓ| ≤ e_ℓ = γ_{d}·Σ_i|x_i W_ei|. The abs sum is
//    itself a double GEMM of nonnegative terms (relative error ≤ γ_d), so we use
//    e_ℓ = γ_{d+2}·A·(1 + 4γ_{d+2}) with A the computed abs GEMM.
// 2. Score, by score function (f(ℓ̂) denotes the real function of the computed logit):
//    sqrtsoftplus: sp̂ = ℓ̂ + log1p(t̂) (ℓ̂ > 0) or log1p(t̂) (ℓ̂ ≤ 0), t̂ = exp(−|ℓ̂|)(1+δ₁), |δ₁| ≤ ε.
//      |log1p(t̂) − log1p(t)| ≤ |t̂ − t| ≤ ε t ≤ ε t̂/(1−ε) (log1p' ≤ 1 on t ≥ 0); libm log1p adds ≤ ε t̂;
//      the final add ≤ u·sp̂. So |sp̂ − softplus(ℓ̂)| ≤ 4ε(t̂ + sp̂). softplus' = σ is increasing, so
//      |softplus(ℓ̂) − softplus(ℓ)| ≤ σ(ℓ̂ + e_ℓ)·e_ℓ, and D = σ⁺(ℓ̂ + e_ℓ)·e_ℓ + 4ε(t̂ + sp̂) ≥
//      |sp̂ − softplus(ℓ)|, with σ⁺(y) = min(1, fl(1/(1 + exp(−y)))·(1 + 4ε)) ≥ σ(y) (sigmoid
//      analysis below). Then |√sp̂ − √softplus(ℓ)| ≤ min(D/√sp̂, √D) (|√a − √b| = |a − b|/(√a + √b)),
//      and the correctly rounded sqrt adds u·ŝ. Far tail ℓ̂ + e_ℓ < −600: both ŝ and s lie in
//      [0, e^{(ℓ̂ + e_ℓ)/2}(1 + 4ε)] (softplus(y) ≤ e^y), so the bound is 2·e^{(ℓ̂ + e_ℓ)/2}(1 + 4ε).
//    sigmoid: σ̂ = fl(1/fl(1 + t̂)), t̂ = exp(−ℓ̂)(1+δ₁): 1 + t̂ = (1+t)(1 + δ₁t/(1+t)), so
//      σ̂ = σ(ℓ̂)(1+δ₃)/((1+δ₁')(1+δ₂)) with |δ₁'| ≤ ε, |δ₂|,|δ₃| ≤ u: |σ̂ − σ(ℓ̂)| ≤ 3ε·σ̂. σ' = σ(1−σ)
//      ≤ min(1/4, σ(ξ), σ(−ξ)) on ξ ∈ [ℓ̂ − e_ℓ, ℓ̂ + e_ℓ], so |σ(ℓ̂) − σ(ℓ)| ≤
//      e_ℓ·min(1/4, σ⁺(ℓ̂ + e_ℓ), σ⁺(e_ℓ − ℓ̂)).
//    softmax: m = max ℓ̂ (one of the values, exact), d̂_j = fl(ℓ̂_j − m) with |d̂_j − (ℓ̂_j − m)| ≤ u|d̂_j|,
//      ê_j = exp(d̂_j)(1+δ) = e^{ℓ̂_j − m}(1+α_j) with |α_j| ≤ a = ε + 1.01·u·max_j|d̂_j| (for
//      u|d̂| ≤ 10⁻³); Ŝ = the sequential sum of E positive terms = S(1+β), |β| ≤ (1+a)(1+γ_{E−1}) − 1;
//      the division adds u. So |ŝ_j − softmax(ℓ̂)_j| ≤ r·softmax(ℓ̂)_j with r = 1.01(2a + γ_{E−1} + u)
//      (a, γ ≤ 10⁻³), and softmax(ℓ̂)_j ≤ ŝ_j/(1 − r). A perturbation |ℓ̂_i − ℓ_i| ≤ E_ℓ = max_i e_ℓ,i
//      changes each softmax component by a factor within [e^{−2E_ℓ}, e^{2E_ℓ}], so
//      |softmax(ℓ̂)_j − softmax(ℓ)_j| ≤ softmax(ℓ̂)_j·(e^{2E_ℓ} − 1) ≤ softmax(ℓ̂)_j·2E_ℓ(1 + 2E_ℓ).
//      Total: ŝ_j/(1 − r)·(r + 2E_ℓ(1 + 2E_ℓ)). (Beyond the 10⁻³ guards the trivial bound 2 is used:
//      both values lie in [0, 1 + r].)
// 3. Bias: b̂ = fl(ŝ + b_e) adds u·|b̂| (b_e is an exact fp32 input).
// 4. The bound's own double arithmetic (a few operations of relative error u each) is covered by
//    inflating it by (1 + 2⁻⁴⁰); an absolute floor 2⁻¹⁰⁰⁰ covers every underflow (exp of a very
//    negative argument, subnormal products): each such event perturbs a value by less than 2⁻¹⁰⁰⁰.
// Where the bounds do not decide the cut, topk_exact recomputes the overlapping candidates in Mp50
// (the logits as Mp50 dot products of the exact inputs, f and the bias in Mp50) and re-decides.
// Official mode: the fp32 biased scores are the decision's exact inputs; C4 decides exactly.
#include "dsv4/model/gate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/model/synthetic_weights.hpp"
#include "dsv4/model/topk.hpp"
#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4 {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kU = 0x1.0p-53;              // double unit roundoff
constexpr double kLibm = 0x1.0p-50;           // libm assumption: exp, log1p relative error ≤ 4·2⁻⁵²
constexpr double kFloor = 0x1.0p-1000;        // absolute floor covering underflow
constexpr double kInflate = 1.0 + 0x1.0p-40;  // covers the bound's own rounding

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw std::invalid_argument("gate: " + field + ": " + why);
}
std::string str(std::int64_t v) { return std::to_string(v); }

// C5: the IEEE square root of an fp32 value, rounded to fp32 (official; the double square root
// rounded to fp32 is the correctly rounded fp32 one, since 53 ≥ 2·24 + 2) or double (exact).
double sqrt_c5(const Precision& p, double x) { return p.fp32(std::sqrt(x)); }

// spec 03 §3.1 step 2: the score of one logit (sqrtsoftplus, sigmoid); C2 in official mode.
double score_elementwise(const Precision& p, ScoreFunc f, double l) {
  if (f == ScoreFunc::kSigmoid) return p.sigmoid(l);
  return sqrt_c5(p, p.softplus(l));
}

// spec 03 §3.1 step 2, softmax over the experts of one token (C2: e_j = exp(fl(ℓ_j − max ℓ)),
// S the C1 sum, s_j = fl(e_j / S)).
void softmax_row(const Precision& p, const double* l, double* s, std::int64_t n) {
  const double m = *std::max_element(l, l + n);
  std::vector<double> e(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) e[static_cast<std::size_t>(j)] = p.exp(p.sub(l[j], m));
  const double total = p.sum(e.data(), n);
  for (std::int64_t j = 0; j < n; ++j) s[j] = p.div(e[static_cast<std::size_t>(j)], total);
}

// spec 03 §3.1 step 2 for a [T, E] logit matrix.
Mat scores_of(const Precision& p, ScoreFunc f, const Mat& logits) {
  Mat s(logits.rows(), logits.cols());
  for (Eigen::Index t = 0; t < logits.rows(); ++t) {
    if (f == ScoreFunc::kSoftmax) {
      softmax_row(p, logits.row(t).data(), s.row(t).data(), logits.cols());
    } else {
      for (Eigen::Index e = 0; e < logits.cols(); ++e) s(t, e) = score_elementwise(p, f, logits(t, e));
    }
  }
  return s;
}

// σ⁺(y) ≥ σ(y) (derivation step 2): the double sigmoid inflated by its relative error bound.
double sigmoid_upper(double y) { return std::min(1.0, 1.0 / (1.0 + std::exp(-y)) * (1.0 + 4.0 * kLibm)); }

// Exact mode, derivation step 2 (top of file): bound of |ŝ − f(ℓ)| for one token, given the
// logits ℓ̂, the scores ŝ and the logit bounds e_ℓ.
void score_bounds_row(ScoreFunc f, const double* l, const double* s, const double* el, double* out, std::int64_t n) {
  if (f == ScoreFunc::kSoftmax) {
    const double m = *std::max_element(l, l + n);
    double dmax = 0.0, emax = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      dmax = std::max(dmax, std::abs(l[j] - m));
      emax = std::max(emax, el[j]);
    }
    const double g = gamma_n(static_cast<std::size_t>(std::max<std::int64_t>(n - 1, 1)));
    const double a = kLibm + 1.01 * kU * dmax;
    const bool small = kU * dmax <= 1e-3 && a <= 1e-3 && g <= 1e-3 && 2.0 * emax <= 1e-3;
    const double r = 1.01 * (2.0 * a + g + kU);
    for (std::int64_t j = 0; j < n; ++j) {
      out[j] = small ? s[j] / (1.0 - r) * (r + 2.0 * emax * (1.0 + 2.0 * emax)) : 2.0;
    }
    return;
  }
  for (std::int64_t j = 0; j < n; ++j) {
    const double t = std::exp(-std::abs(l[j]));
    if (f == ScoreFunc::kSigmoid) {
      const double slope = std::min({0.25, sigmoid_upper(l[j] + el[j]), sigmoid_upper(el[j] - l[j])});
      out[j] = el[j] * slope + 3.0 * kLibm * s[j];
    } else if (l[j] + el[j] < -600.0) {
      out[j] = 2.0 * std::exp((l[j] + el[j]) / 2.0) * (1.0 + 4.0 * kLibm);
    } else {
      const double sp_hat = l[j] > 0.0 ? l[j] + std::log1p(t) : std::log1p(t);
      const double d = sigmoid_upper(l[j] + el[j]) * el[j] + 4.0 * kLibm * (t + sp_hat);
      const double prop = sp_hat > 0.0 ? std::min(d / std::sqrt(sp_hat), std::sqrt(d)) : std::sqrt(d);
      out[j] = prop + kU * s[j];
    }
  }
}

// Mp50 logit of (token row t, expert e) from the exact inputs (derivation, last paragraph).
Mp50 mp50_logit(const Mat& x, Eigen::Index t, const Mat& w, std::int64_t e) {
  Mp50 acc = 0;
  for (Eigen::Index i = 0; i < x.cols(); ++i) acc += Mp50(x(t, i)) * Mp50(w(e, i));
  return acc;
}

// Mp50 score of expert e from the Mp50 logits of the token (softmax: all of them).
Mp50 mp50_score(ScoreFunc f, const std::vector<Mp50>& logits, std::int64_t e) {
  using boost::multiprecision::exp;
  using boost::multiprecision::log1p;
  using boost::multiprecision::sqrt;
  const Mp50& l = logits[static_cast<std::size_t>(e)];
  switch (f) {
    case ScoreFunc::kSqrtSoftplus: {
      const Mp50 sp = l > 0 ? Mp50(l + log1p(exp(-l))) : Mp50(log1p(exp(l)));
      return sqrt(sp);
    }
    case ScoreFunc::kSigmoid:
      return Mp50(1) / (Mp50(1) + exp(-l));
    case ScoreFunc::kSoftmax: {
      const Mp50 m = *std::max_element(logits.begin(), logits.end());
      Mp50 total = 0;
      for (const Mp50& v : logits) total += exp(v - m);
      return exp(l - m) / total;
    }
  }
  throw std::logic_error("gate: unknown score function");
}

}  // namespace

GateWeights GateWeights::synthetic(const ModelConfig& c, std::int64_t layer, std::uint64_t seed) {
  const std::uint64_t ls = synthetic_layer_seed(seed, layer);
  const std::int64_t E = c.n_routed_experts, k = c.n_activated_experts;
  GateWeights w;
  Mat g(E, c.dim);
  const CounterRng rw(ls, stream_id("ffn.gate.weight"));
  const double std_w = 1.0 / std::sqrt(static_cast<double>(c.dim));
  for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = std_w * rw.normal(static_cast<std::uint64_t>(i));
  w.weight = LinearWeight::bf16_from(g);
  if (layer < c.n_hash_layers) {
    // Row v: the first k entries of a Fisher–Yates shuffle of 0..E−1 driven by Philox (v, i).
    const CounterRng rt(ls, stream_id("ffn.gate.tid2eid"));
    w.tid2eid.resize(static_cast<std::size_t>(c.vocab_size * k));
    std::vector<std::int64_t> perm(static_cast<std::size_t>(E));
    for (std::int64_t v = 0; v < c.vocab_size; ++v) {
      for (std::int64_t i = 0; i < E; ++i) perm[static_cast<std::size_t>(i)] = i;
      for (std::int64_t i = 0; i < k; ++i) {
        const double u = rt.uniform(static_cast<std::uint64_t>(v * E + i));
        const std::int64_t j = i + std::min<std::int64_t>(E - i - 1, static_cast<std::int64_t>(u * double(E - i)));
        std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
        w.tid2eid[static_cast<std::size_t>(v * k + i)] = perm[static_cast<std::size_t>(i)];
      }
    }
  } else {
    const CounterRng rb(ls, stream_id("ffn.gate.bias"));
    w.bias.resize(E);
    for (std::int64_t e = 0; e < E; ++e)
      w.bias(e) = static_cast<float>(0.05 * rb.normal(static_cast<std::uint64_t>(e)));
  }
  return w;
}

Gate::Gate(Precision p, const ModelConfig& c, std::int64_t layer, GateWeights w)
    : p_(p), c_(c), layer_(layer), hash_(layer < c.n_hash_layers), w_(std::move(w)) {
  const std::int64_t E = c.n_routed_experts, k = c.n_activated_experts;
  // A weight field by its checkpoint name (layers.N.ffn.gate.F; the MTP blocks: mtp.I.ffn.gate.F).
  const auto param = [&](const std::string& field) {
    const std::string block = layer < c.n_layers ? "layers." + str(layer) : "mtp." + str(layer - c.n_layers);
    return block + ".ffn.gate." + field;
  };
  if (layer < 0 || layer >= c.n_layers + std::max<std::int64_t>(c.n_mtp_layers, 0)) {
    bad("layer", str(layer) + " outside [0, n_layers + n_mtp_layers = " + str(c.n_layers + c.n_mtp_layers) + ")");
  }
  if (k < 1 || k > E) bad("n_activated_experts", str(k) + " outside [1, n_routed_experts = " + str(E) + "]");
  if (w_.weight.out_features() != E || w_.weight.in_features() != c.dim) {
    bad(param("weight"), "shape [" + str(w_.weight.out_features()) + ", " + str(w_.weight.in_features()) +
                             "], expected [" + str(E) + ", " + str(c.dim) + "]");
  }
  if (w_.weight.kind != WeightKind::kBF16) bad(param("weight"), "must be a bf16 weight");
  if (hash_) {
    if (w_.bias.size() != 0) bad(param("bias"), "hash-routed layer " + str(layer) + " has no bias");
    if (static_cast<std::int64_t>(w_.tid2eid.size()) != c.vocab_size * k) {
      bad(param("tid2eid"), "has " + str(static_cast<std::int64_t>(w_.tid2eid.size())) + " entries, expected [" +
                                str(c.vocab_size) + ", " + str(k) + "]");
    }
    std::vector<char> seen(static_cast<std::size_t>(E), 0);
    for (std::int64_t v = 0; v < c.vocab_size; ++v) {
      std::fill(seen.begin(), seen.end(), 0);
      for (std::int64_t j = 0; j < k; ++j) {
        const std::int64_t e = w_.tid2eid[static_cast<std::size_t>(v * k + j)];
        if (e < 0 || e >= E)
          bad(param("tid2eid"), "row " + str(v) + " holds expert " + str(e) + " outside [0, " + str(E) + ")");
        if (seen[static_cast<std::size_t>(e)])
          bad(param("tid2eid"), "row " + str(v) + " holds expert " + str(e) + " twice");
        seen[static_cast<std::size_t>(e)] = 1;
      }
    }
  } else {
    if (!w_.tid2eid.empty()) bad(param("tid2eid"), "score-routed layer " + str(layer) + " has no tid2eid");
    if (w_.bias.size() != E) bad(param("bias"), "has " + str(w_.bias.size()) + " entries, expected " + str(E));
    for (std::int64_t e = 0; e < E; ++e) {
      if (!std::isfinite(w_.bias(e)) || static_cast<double>(static_cast<float>(w_.bias(e))) != w_.bias(e))
        bad(param("bias"), "entry " + str(e) + " is not a finite fp32 value");
    }
  }
  // spec 03 §3.1 step 1 / spec 05 §5.4: `linear(x.float(), weight.float())` is the fp32 F.linear
  // (one C1 rounding to fp32, no bf16 output cast): the kFP32 path of linear() on the exactly
  // widened bf16 weight (the kBF16 path would round the logits to bf16).
  w32_ = LinearWeight::fp32_from(w_.weight.values());
}

GateOutput Gate::forward(const Mat& x, const std::vector<std::int64_t>& token_ids) const {
  const std::int64_t T = x.rows(), E = c_.n_routed_experts, k = c_.n_activated_experts;
  if (x.cols() != c_.dim) bad("x", "has " + str(x.cols()) + " columns, expected dim = " + str(c_.dim));
  if (static_cast<std::int64_t>(token_ids.size()) != T) {
    bad("token_ids", "has " + str(static_cast<std::int64_t>(token_ids.size())) + " entries for " + str(T) + " tokens");
  }
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int64_t id = token_ids[static_cast<std::size_t>(t)];
    if (id < 0 || id >= c_.vocab_size)
      bad("token_ids", "entry " + str(t) + " = " + str(id) + " outside [0, vocab_size = " + str(c_.vocab_size) + ")");
  }
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x.data()[i])) bad("x", "element " + str(i) + " is not finite");
  }

  GateOutput out;
  // step 1: fp32 logits (C1), step 2: original scores.
  Mat logits = linear(p_, x, w32_);
  // (Deviation kGateScoresBf16, bug catalogue only: the logits stored as bf16, the bf16 F.linear.)
  if (p_.deviates(Deviation::kGateScoresBf16)) p_.bf16_inplace(logits);
  out.scores = scores_of(p_, c_.score_func, logits);
  out.weights.resize(T, k);
  out.indices.resize(static_cast<std::size_t>(T * k));
  out.margins.resize(static_cast<std::size_t>(T));

  // Exact mode: bounds of the biased scores (derivation at the top of the file), computed for
  // every token when the first routing cut asks for them.
  Mat bounds;
  Mat w_exact;  // the weight's exact values, decoded once where a bound or a re-decision needs them
  const auto w_values = [&]() -> const Mat& {
    if (w_exact.size() == 0) w_exact = w32_.values();
    return w_exact;
  };
  const auto score_bounds = [&] {
    Mat abs_prod(T, E);
    gemm_nt(T, E, c_.dim, x.data(), c_.dim, w_values().data(), c_.dim, abs_prod.data(), E, 0, /*abs_operands=*/true);
    const double g = gamma_n(static_cast<std::size_t>(c_.dim) + 2);
    const Mat el = (g * (1.0 + 4.0 * g)) * abs_prod;
    bounds.resize(T, E);
    for (std::int64_t t = 0; t < T; ++t)
      score_bounds_row(c_.score_func, logits.row(t).data(), out.scores.row(t).data(), el.row(t).data(),
                       bounds.row(t).data(), E);
  };

  std::vector<double> biased(static_cast<std::size_t>(E)), bnd(static_cast<std::size_t>(E));
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<std::int64_t> chosen;
    RoutingMargin& rm = out.margins[static_cast<std::size_t>(t)];
    if (hash_) {
      // step 3, hash-routed layers: the token id's row of tid2eid.
      // (Deviation kHashByPosition, bug catalogue only: the row index of the call, i.e. the
      // prefill position, instead of the token id.)
      const std::int64_t id =
          p_.deviates(Deviation::kHashByPosition) ? t % c_.vocab_size : token_ids[static_cast<std::size_t>(t)];
      chosen.assign(w_.tid2eid.begin() + id * k, w_.tid2eid.begin() + (id + 1) * k);
      rm = RoutingMargin{kInf, -kInf, kInf, 0.0, false};
    } else {
      // step 3, score-routed layers: top-k (C4) of ŝ = fl(s + b); the bias only chooses.
      for (std::int64_t e = 0; e < E; ++e) biased[static_cast<std::size_t>(e)] = p_.add(out.scores(t, e), w_.bias(e));
      const TopkBounds biased_bounds = [&] {
        if (bounds.size() == 0) score_bounds();
        for (std::int64_t e = 0; e < E; ++e) {
          const double b = biased[static_cast<std::size_t>(e)];
          bnd[static_cast<std::size_t>(e)] = (bounds(t, e) + kU * std::abs(b)) * kInflate + kFloor;
          bounds(t, e) = bnd[static_cast<std::size_t>(e)];
        }
        return bnd;
      };
      std::vector<Mp50> mp_logits(static_cast<std::size_t>(E));
      std::vector<char> have(static_cast<std::size_t>(E), 0);
      const auto need = [&](std::int64_t j) {
        if (have[static_cast<std::size_t>(j)]) return;
        mp_logits[static_cast<std::size_t>(j)] = mp50_logit(x, t, w_values(), j);
        have[static_cast<std::size_t>(j)] = 1;
      };
      const TopkRecompute recompute = [&](std::int64_t e) {
        // softmax needs every logit of the token; the element-wise functions only the candidate's
        for (std::int64_t j = 0; j < E; ++j) {
          if (c_.score_func == ScoreFunc::kSoftmax || j == e) need(j);
        }
        return Mp50(mp50_score(c_.score_func, mp_logits, e) + Mp50(w_.bias(e)));
      };
      const TopkResult r = p_.topk(biased, k, biased_bounds, recompute, out.decisions);
      chosen = r.indices;
      rm = RoutingMargin{r.margin.kth, r.margin.next, r.margin.gap, r.margin.bound, r.margin.redecided};
    }
    // step 4: weights gathered from the original scores, normalised (not softmax), × route_scale.
    std::vector<double> w(static_cast<std::size_t>(k));
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int64_t e = chosen[static_cast<std::size_t>(j)];
      // (Deviation kGateBiasInWeights, bug catalogue only: the biased score ŝ instead of s.)
      w[static_cast<std::size_t>(j)] = p_.deviates(Deviation::kGateBiasInWeights) && !hash_
                                           ? p_.add(out.scores(t, e), w_.bias(e))
                                           : out.scores(t, e);
    }
    if (c_.score_func != ScoreFunc::kSoftmax) {
      const double total = p_.sum(w.data(), k);
      for (double& v : w) v = p_.div(v, total);
    }
    const double rs = p_.fp32(c_.route_scale);
    for (std::int64_t j = 0; j < k; ++j) {
      out.weights(t, j) = p_.mul(w[static_cast<std::size_t>(j)], rs);
      out.indices[static_cast<std::size_t>(t * k + j)] = chosen[static_cast<std::size_t>(j)];
    }
  }
  out.score_bounds = std::move(bounds);  // computed in exact mode, score-routed layers only
  return out;
}

}  // namespace dsv4
