// Properties of sparse attention with the attention sink (spec 02 §2.9; ref/model/sparse_attention.hpp):
// a sink of −∞ gives the plain softmax, a finite sink takes mass S/(S + e^z) < 1, −1 entries are
// neutral. References are evaluated in Mp50 (exp included); bounds are derived below.
#include <rapidcheck.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dsv4/model/index_builders.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/model/sparse_attention.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/properties/registry.hpp"

namespace dsv4::props {
namespace {

constexpr double kU = 0x1p-53;
constexpr double kInf = std::numeric_limits<double>::infinity();
double gamma(double k) { return k * kU / (1.0 - k * kU); }

struct Case {
  std::int64_t heads = 1, c = 8, n = 1;
  Mat q, kv;
  IndexLists lists;
  double scale = 1.0;
  bool ones_column = false;  // kv column 0 = 1: output column 0 is the attention mass Σ_j w_j
};

// Small shapes; bf16 q and kv (the official kernel's inputs; exact mode takes the same values), a
// list per query row of valid kv rows (first entry valid, as the index builders guarantee) with −1
// holes, widths up to 150 (several 64-chunks).
Case gen_case(bool ones_column) {
  Case k;
  k.heads = *rc::gen::inRange<std::int64_t>(1, 5);
  k.c = *rc::gen::element<std::int64_t>(4, 8, 16, 32);
  k.n = *rc::gen::inRange<std::int64_t>(1, 40);
  const std::int64_t rows = *rc::gen::inRange<std::int64_t>(1, 4);
  const std::int64_t width = *rc::gen::inRange<std::int64_t>(1, 150);
  const double qscale = std::pow(2.0, *rc::gen::inRange(-4, 3));
  const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>();
  const CounterRng rng(seed, stream_id("sparse_attention_props"));
  std::uint64_t ctr = 0;
  k.q = Mat(rows * k.heads, k.c);
  for (Eigen::Index i = 0; i < k.q.size(); ++i) k.q.data()[i] = round_bf16(qscale * rng.normal(ctr++));
  k.kv = Mat(k.n, k.c);
  for (Eigen::Index i = 0; i < k.kv.size(); ++i) k.kv.data()[i] = round_bf16(rng.normal(ctr++));
  k.ones_column = ones_column;
  if (ones_column) k.kv.col(0).setOnes();
  k.lists = IndexLists(rows, width);
  const double hole = *rc::gen::inRange(0, 60) / 100.0;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < width; ++j) {
      const bool valid = j == 0 || rng.uniform(ctr++) >= hole;
      k.lists.at(r, j) = valid ? static_cast<std::int32_t>(rng.uniform(ctr++) * static_cast<double>(k.n)) : -1;
    }
  }
  k.scale = 1.0 / std::sqrt(static_cast<double>(k.c));
  return k;
}

std::vector<double> gen_sinks(std::int64_t heads, bool neg_inf) {
  std::vector<double> z(static_cast<std::size_t>(heads));
  for (auto& v : z) v = neg_inf ? -kInf : static_cast<double>(static_cast<float>(*rc::gen::inRange(-600, 601) / 100.0));
  return z;
}

// The Mp50 reference of query row r, head h: o = Σ_j e^{s_j} v_j / (Σ_j e^{s_j} + e^z) over the valid
// entries (s_j = scale·q·v_j), and the derived bound of the exact-mode double evaluation.
// Exact mode (sparse_attention.cpp): ŝ_j = fl(scale·fl(q·v_j)) errs by δ_j ≤ γ_c·scale·Σ|q_d v_jd| + u|s_j|;
// ŵ_j = fl(exp(fl(ŝ_j − m̂))) = e^{s_j − m̂}(1 + θ_j) with |θ_j| ≤ 1.01(δ_j + u|ŝ_j − m̂| + 8u) (exp within
// 4 ulp: the ref/README libm assumption); the same for the sink term without δ; numerator and
// denominator are sequential sums of K terms (γ_K each) and one division (u). With θ = max θ_j and
// A_d = Σ_j w_j |v_jd| (exact weights w_j = e^{s_j}/(S + e^z)):
//   |ô_d − o_d| ≤ 1.01·A_d·(2θ + 2γ_K) + u|o_d|.
struct Reference {
  std::vector<double> o;      // [c]
  std::vector<double> bound;  // [c]
  double mass = 0.0;          // S/(S + e^z)
  double sink_share = 0.0;    // e^z/(S + e^z)
};
Reference reference(const Case& k, std::int64_t r, std::int64_t h, double z) {
  const std::int64_t c = k.c;
  std::vector<std::int32_t> valid;
  for (std::int32_t i : k.lists.row(r)) {
    if (i != -1) valid.push_back(i);
  }
  const std::int64_t nv = static_cast<std::int64_t>(valid.size());
  std::vector<Mp50> s(static_cast<std::size_t>(nv));
  std::vector<double> delta(static_cast<std::size_t>(nv));
  double m = -kInf;
  for (std::int64_t j = 0; j < nv; ++j) {
    Mp50 acc = 0;
    double abs_sum = 0.0;
    for (std::int64_t d = 0; d < c; ++d) {
      const double a = k.q(r * k.heads + h, d), b = k.kv(valid[static_cast<std::size_t>(j)], d);
      acc += Mp50(a) * Mp50(b);
      abs_sum += std::fabs(a * b);
    }
    s[static_cast<std::size_t>(j)] = acc * Mp50(k.scale);
    const double sd = static_cast<double>(s[static_cast<std::size_t>(j)]);
    delta[static_cast<std::size_t>(j)] = gamma(static_cast<double>(c)) * k.scale * abs_sum * 1.01 + kU * std::fabs(sd);
    m = std::max(m, sd);
  }
  double theta = 0.0;
  for (std::int64_t j = 0; j < nv; ++j) {
    const double sd = static_cast<double>(s[static_cast<std::size_t>(j)]);
    theta = std::max(theta, 1.01 * (delta[static_cast<std::size_t>(j)] + kU * std::fabs(sd - m) * 1.01 + 8.0 * kU));
  }
  if (z != -kInf) theta = std::max(theta, 1.01 * (kU * std::fabs(z - m) * 1.01 + 8.0 * kU));
  const Mp50 mm = m;
  Mp50 den = 0;
  std::vector<Mp50> w(static_cast<std::size_t>(nv));
  for (std::int64_t j = 0; j < nv; ++j) {
    w[static_cast<std::size_t>(j)] = boost::multiprecision::exp(s[static_cast<std::size_t>(j)] - mm);
    den += w[static_cast<std::size_t>(j)];
  }
  const Mp50 sum_w = den;
  const Mp50 e_sink = z == -kInf ? Mp50(0) : Mp50(boost::multiprecision::exp(Mp50(z) - mm));
  den += e_sink;
  Reference ref;
  ref.o.resize(static_cast<std::size_t>(c));
  ref.bound.resize(static_cast<std::size_t>(c));
  ref.mass = static_cast<double>(sum_w / den);
  ref.sink_share = static_cast<double>(e_sink / den);
  const double gk = gamma(static_cast<double>(nv + 1));
  for (std::int64_t d = 0; d < c; ++d) {
    Mp50 num = 0, abs_num = 0;
    for (std::int64_t j = 0; j < nv; ++j) {
      const Mp50 v = k.kv(valid[static_cast<std::size_t>(j)], d);
      num += w[static_cast<std::size_t>(j)] * v;
      abs_num += w[static_cast<std::size_t>(j)] * abs(v);
    }
    const double o = static_cast<double>(num / den);
    ref.o[static_cast<std::size_t>(d)] = o;
    ref.bound[static_cast<std::size_t>(d)] =
        1.01 * static_cast<double>(abs_num / den) * (2.0 * theta + 2.0 * gk) + kU * std::fabs(o);
  }
  return ref;
}

// sparse_attention of a case with the given sinks.
Mat attend(Mode mode, const Case& k, const std::vector<double>& sink) {
  return sparse_attention(Precision(mode), k.q, k.heads, k.kv, sink, k.lists, k.scale);
}

// Exact and official outputs of a case, and the derived official-vs-exact bound.
struct Outputs {
  Mat ex, of, ob;
};
Outputs outputs(const Case& k, const std::vector<double>& sink) {
  return {attend(Mode::kExact, k, sink), attend(Mode::kOfficial, k, sink),
          sparse_attention_official_bound(k.q, k.heads, k.kv, sink, k.lists, k.scale)};
}

// A sink of −∞ is the plain softmax: exact mode within the derived bound of the Mp50 reference;
// official mode within that plus the derived official-vs-exact bound of sparse_attention.hpp.
void neg_inf_sink_is_softmax() {
  const Case k = gen_case(false);
  const std::vector<double> sink = gen_sinks(k.heads, true);
  const auto [ex, of, ob] = outputs(k, sink);
  for (std::int64_t r = 0; r < k.lists.rows; ++r) {
    for (std::int64_t h = 0; h < k.heads; ++h) {
      const Reference ref = reference(k, r, h, -kInf);
      RC_ASSERT(ref.sink_share == 0.0);
      for (std::int64_t d = 0; d < k.c; ++d) {
        const double e = std::fabs(ex(r * k.heads + h, d) - ref.o[static_cast<std::size_t>(d)]);
        RC_ASSERT(e <= ref.bound[static_cast<std::size_t>(d)]);
        const double eo = std::fabs(of(r * k.heads + h, d) - ref.o[static_cast<std::size_t>(d)]);
        RC_ASSERT(eo <= ref.bound[static_cast<std::size_t>(d)] + ob(r * k.heads + h, d));
      }
    }
  }
}

// A finite sink takes its share e^z/(S + e^z) of the mass: with kv column 0 ≡ 1 the output's column
// 0 is the attention mass S/(S + e^z) < 1, matched within the derived bound (exact mode) and within
// that plus the official bound (official mode); so mass ≤ 1 − share + bound, strictly below 1 when
// the share exceeds the bound. Raising the sink lowers the mass (exact mode, within both bounds).
void sink_mass_below_one() {
  const Case k = gen_case(true);
  const std::vector<double> sink = gen_sinks(k.heads, false);
  const auto [ex, of, ob] = outputs(k, sink);
  std::vector<double> higher = sink;
  for (auto& z : higher) z += 1.0;
  const Mat ex_hi = attend(Mode::kExact, k, higher);
  for (std::int64_t r = 0; r < k.lists.rows; ++r) {
    for (std::int64_t h = 0; h < k.heads; ++h) {
      const std::int64_t row = r * k.heads + h;
      const double z = sink[static_cast<std::size_t>(h)];
      const Reference ref = reference(k, r, h, z);
      RC_ASSERT(ref.mass + ref.sink_share <= 1.0 + 1e-15);
      RC_ASSERT(ref.mass < 1.0);
      const double b = ref.bound[0];
      RC_ASSERT(std::fabs(ex(row, 0) - ref.mass) <= b);
      RC_ASSERT(ex(row, 0) <= 1.0 - ref.sink_share + b);
      if (ref.sink_share > b) RC_ASSERT(ex(row, 0) < 1.0);
      RC_ASSERT(of(row, 0) <= 1.0 - ref.sink_share + b + ob(row, 0));
      const Reference ref_hi = reference(k, r, h, higher[static_cast<std::size_t>(h)]);
      RC_ASSERT(ref_hi.mass < ref.mass);
      RC_ASSERT(ex_hi(row, 0) <= ex(row, 0) + b + ref_hi.bound[0]);
    }
  }
}

// −1 entries are neutral: appending −1 entries (a tail of holes, whole −1 chunks) leaves both modes'
// output bit-unchanged (spec 02 §2.9 edge behaviour; exact mode skips them, the official kernel's
// state is untouched by p = 0 entries and zero V rows).
void holes_are_neutral() {
  const Case k = gen_case(false);
  const std::vector<double> sink = gen_sinks(k.heads, *rc::gen::arbitrary<bool>());
  const std::int64_t extra = *rc::gen::inRange<std::int64_t>(1, 140);
  IndexLists padded(k.lists.rows, k.lists.width + extra);
  for (std::int64_t r = 0; r < k.lists.rows; ++r) {
    for (std::int64_t j = 0; j < k.lists.width; ++j) padded.at(r, j) = k.lists.at(r, j);
  }
  for (const Mode mode : {Mode::kExact, Mode::kOfficial}) {
    const Precision p(mode);
    const Mat a = sparse_attention(p, k.q, k.heads, k.kv, sink, k.lists, k.scale);
    const Mat b = sparse_attention(p, k.q, k.heads, k.kv, sink, padded, k.scale);
    for (Eigen::Index i = 0; i < a.size(); ++i) RC_ASSERT(double_bits(a.data()[i]) == double_bits(b.data()[i]));
  }
}

}  // namespace

void register_sparse_attention_properties(Registry& r) {
  r.add_rc("sparse_attention.neg_inf_sink_is_softmax", "sparse_attention",
           "a sink of -inf gives the plain softmax (Mp50 reference, derived bounds, both modes)", 60,
           neg_inf_sink_is_softmax);
  r.add_rc("sparse_attention.sink_mass_below_one", "sparse_attention",
           "a finite sink takes mass e^z/(S+e^z): attention mass < 1, decreasing in z (derived bounds)", 60,
           sink_mass_below_one);
  r.add_rc("sparse_attention.holes_are_neutral", "sparse_attention",
           "appending -1 entries leaves the output bit-unchanged (both modes)", 100, holes_are_neutral);
}

}  // namespace dsv4::props
