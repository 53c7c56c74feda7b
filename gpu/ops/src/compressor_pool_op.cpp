// Registration of the compressor's gated softmax pooling (spec 02 §2.6.2): per pooled entry and
// channel, the softmax of the slots' position-biased scores z̃ weighting the slots' values u; its
// backward (spec 06 §6.12).
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/gpu/compressor_pool.hpp"
#include "dsv4/model/compressor.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/compressor_pool_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {slots S}; inputs u [entries, S·D] and z [entries, S·D] (per row: one entry's slots, slot s
// channel δ at s·D + δ — the [S, D] matrices of Compressor::pool; fp32 values, z = −∞ a padding
// slot with u = 0) → c [entries, D]. Ratio 128: S = 128 (the block's tokens); ratio 4 with overlap:
// S = 8 (block i − 1's first-half channels, then block i's second-half; entry 0's first 4 slots
// padding).
struct PoolArgs {
  std::int64_t slots, channels;
  const Array& u;
  const Array& z;
  explicit PoolArgs(const Call& c)
      : slots(c.ints.at(0)),
        channels(slots > 0 ? c.inputs.at(0).cols / slots : 0),
        u(c.inputs.at(0)),
        z(c.inputs.at(1)) {
    if (slots < 1 || u.cols != slots * channels || z.rows != u.rows || z.cols != u.cols) {
      throw std::invalid_argument("compressor_pool: u and z must be [entries, slots · D]");
    }
  }
  Mat slot_matrix(const Array& a, std::int64_t row) const {
    const std::vector<double> v(a.f32.begin() + row * a.cols, a.f32.begin() + (row + 1) * a.cols);
    return to_mat(v, slots, channels);
  }
  // The reference's pooling (compressor_softmax_pool, Compressor::pool's arithmetic) per entry
  // under the precision mode.
  Mat forward(Mode mode) const {
    const Precision prec(mode);
    Mat out(u.rows, channels);
    for (std::int64_t r = 0; r < u.rows; ++r)
      out.row(r) = compressor_softmax_pool(prec, slot_matrix(u, r), slot_matrix(z, r));
    return out;
  }
};

Outputs reference(const Call& c) {
  const Mat y = PoolArgs(c).forward(Mode::kOfficial);
  return {Array::floats("c", y.rows(), y.cols(), to_floats(y))};
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const PoolArgs a(c);
  gpu::CompressorPoolBatch r = gpu::compressor_pool(a.u.f32.data(), a.z.f32.data(), a.u.rows, a.slots, a.channels);
  return {Array::floats("c", a.u.rows, a.channels, std::move(r.c))};
}
#endif

struct Spec {
  std::int64_t entries, slots, channels;
  double z_sigma;
  bool padding;        // entry 0 of an overlapping compressor: its first S/2 slots are padding
  bool edges = false;  // the arithmetic's edges (edge_values)
};

// The edges of the pooling's arithmetic, per element of u and z (slot j of a channel): scores on a
// coarse grid (the max tied between slots, equal weights), scores 88–104 below the others (exps
// subnormal or 0 in fp32), padding slots (−∞) anywhere but slot 0 (a channel may keep one slot
// only), huge scores ±2^60..2^99 (the max far from the rest: weights 0 and 1); values ±0, fp32
// subnormals, outliers ±2^60..2^99 and the negation of the previous slot's value (cancelling
// products: sums exactly 0 or settled by tiny terms).
void edge_values(std::vector<float>& u, std::vector<float>& z, std::int64_t slots, std::int64_t channels,
                 std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.compressor_pool.edges"));
  for (std::size_t i = 0; i < u.size(); ++i) {
    const auto w = rng.words(i);
    const std::int64_t slot = static_cast<std::int64_t>(i) / channels % slots;
    const double sign = (w[2] & 1u) != 0 ? -1.0 : 1.0;
    switch (w[0] % 8) {
      case 0:
      case 1:
      case 2:
        z[i] = static_cast<float>(std::round(2.0 * z[i]) / 2.0);
        break;
      case 3:
        z[i] = static_cast<float>(-88.0 - static_cast<double>(w[3] % 17));
        break;
      case 4:
        if (slot > 0) z[i] = -INFINITY;
        break;
      case 5:
        z[i] = static_cast<float>(sign * std::ldexp(1.0, 60 + static_cast<int>(w[3] % 40)));
        break;
      default:
        break;
    }
    switch (w[1] % 8) {
      case 0:
        u[i] = static_cast<float>(sign * 0.0);
        break;
      case 1:
        u[i] = static_cast<float>(
            sign * std::ldexp(1.0 + static_cast<double>(w[3] % 64) / 64.0, -127 - static_cast<int>(w[3] % 22)));
        break;
      case 2:
        u[i] = static_cast<float>(sign * std::ldexp(1.0, 60 + static_cast<int>(w[3] % 40)));
        break;
      case 3:
      case 4:
        if (slot > 0) u[i] = -u[i - static_cast<std::size_t>(channels)];
        break;
      default:
        break;
    }
  }
}

Case make_case(const Spec& s, std::uint64_t seed) {
  const std::int64_t n = s.entries * s.slots * s.channels;
  std::vector<float> u = normals(n, 1.0, seed, "ops.compressor_pool.u"),
                     z = normals(n, s.z_sigma, seed, "ops.compressor_pool.z");
  if (s.edges) edge_values(u, z, s.slots, s.channels, seed);
  if (s.padding) {
    for (std::int64_t i = 0; i < s.slots / 2 * s.channels; ++i) {
      u[static_cast<std::size_t>(i)] = 0.0f;
      z[static_cast<std::size_t>(i)] = -INFINITY;
    }
  }
  Case c;
  c.label = std::to_string(s.entries) + " entries, " + std::to_string(s.slots) + " slots × " +
            std::to_string(s.channels) + " channels" + (s.slots == 128 ? " (ratio 128)" : " (ratio 4, overlap)") +
            (s.padding ? ", entry 0's padding slots" : "") + (s.z_sigma > 5 ? ", peaked scores" : "") +
            (s.edges ? ", edges (tied maxima, subnormal exps, padding, outliers, cancellation)" : "");
  c.call.ints = {s.slots};
  c.call.inputs = {Array::floats("u", s.entries, s.slots * s.channels, std::move(u)),
                   Array::floats("z", s.entries, s.slots * s.channels, std::move(z))};
  return c;
}

std::vector<Case> compressor_pool_cases(std::uint64_t seed) {
  // The main compressor's D 512 at both ratios, the indexer's D 128 (ratio 4); entry 0's padding;
  // peaked scores (σ 30: most weights underflow); the arithmetic's edges at both ratios.
  const std::vector<Spec> specs = {{6, 8, 512, 2.0, true},         {2, 128, 512, 2.0, false},
                                   {5, 8, 128, 30.0, false},       {3, 128, 16, 2.0, false},
                                   {16, 8, 128, 2.0, false, true}, {4, 128, 64, 2.0, false, true}};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) { return make_case(s, seed * 1000 + 970 + k); });
}

// The backward (spec 06 §6.12, ref/train compressor_pool_backward): du, dz. Smooth (a softmax):
// no kinks. Check points have no padding slot (z = −∞ is not a point a finite difference can
// perturb; its zero gradient is tested directly in tests/gradient_check_test).
GradientForms compressor_pool_gradient() {
  GradientForms g;
  g.outputs = {"c"};
  g.wrt = {0, 1};
  g.forward_exact = [](const Call& c) { return Doubles{flat(PoolArgs(c).forward(Mode::kExact))}; };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const PoolArgs a(c);
    std::vector<Mp50> out;
    const auto per_row = static_cast<std::ptrdiff_t>(a.u.cols);
    for (std::int64_t r = 0; r < a.u.rows; ++r) {
      const std::vector<Mp50> u(x.at(0).begin() + r * per_row, x.at(0).begin() + (r + 1) * per_row);
      const std::vector<Mp50> z(x.at(1).begin() + r * per_row, x.at(1).begin() + (r + 1) * per_row);
      const std::vector<Mp50> y = compressor_pool_exact(u, z, a.slots, a.channels);
      out.insert(out.end(), y.begin(), y.end());
    }
    return Mp50s{std::move(out)};
  };
  g.backward = [](const Call& c) {
    const PoolArgs a(c);
    const Mat dc = to_mat(c.inputs.at(2));
    Doubles grads(2);
    for (std::int64_t r = 0; r < a.u.rows; ++r) {
      const CompressorPoolGrads p = compressor_pool_backward(a.slot_matrix(a.u, r), a.slot_matrix(a.z, r), dc.row(r));
      for (const auto& [i, m] : {std::pair{0, &p.du}, std::pair{1, &p.dz}}) {
        const std::vector<double> v = flat(*m);
        grads[static_cast<std::size_t>(i)].insert(grads[static_cast<std::size_t>(i)].end(), v.begin(), v.end());
      }
    }
    return grads;
  };
  g.cases = [](std::uint64_t seed) {
    const std::vector<Spec> specs = {{2, 8, 3, 2.0, false}, {1, 128, 1, 2.0, false}, {1, 8, 2, 5.0, false}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      Case c = make_case(s, seed * 100 + k);
      c.label += " (softmax: smooth, no kinks; no padding slot)";
      c.call.inputs.push_back(upstream("dc", s.entries, s.channels, seed * 100 + k, "grad.pool.dc"));
      return c;
    });
  };
  return g;
}

}  // namespace

Op compressor_pool_op() {
  return registration("compressor_pool", "spec 02 §2.6.2",
                      "compressor pooling: per channel softmax over the slots' scores z, C = C1 Σ fl(u·w)", {"slots"},
                      {}, reference, DSV4_OPS_DEVICE(device), compressor_pool_cases, compressor_pool_gradient());
}

}  // namespace dsv4::ops::detail
