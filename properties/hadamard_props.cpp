// Properties of the Walsh–Hadamard rotation (spec 01 §1.10; ref/model/hadamard.hpp): it is the
// orthonormal Sylvester–Hadamard transform (hence orthogonal) and an involution, within derived
// rounding bounds, in both precision modes.
#include <rapidcheck.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "dsv4/model/hadamard.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/properties/registry.hpp"

namespace dsv4::props {
namespace {

constexpr double kU = 0x1p-53;    // double unit roundoff
constexpr double kU32 = 0x1p-24;  // fp32
constexpr double kUb = 0x1p-8;    // bf16

// ‖Ĥx − Hx‖_2 ≤ rel(N)·‖x‖_2 for one segment of size N = 2^L.
// Exact mode: stage s maps v_s (‖v_s‖ = 2^{s/2}‖x‖) through butterflies B (‖B‖ = √2) and rounds each
// sum/difference once (‖e_s‖ ≤ u‖Bv̂_s‖); the later stages amplify e_s by 2^{(L−s−1)/2}, so the
// unnormalised result errs by ≤ L·u·2^{L/2}‖x‖(1 + Lu); times N^{−1/2} from std::pow (≤ 4 ulp = 8u
// relative, the ref/README libm assumption) and one rounding of the product (u):
// rel = (L(1 + Lu) + 9)u·1.001 ≤ (L + 10)u.
// Official mode (x bf16, exact in fp32): the same with fp32 roundings (L stages, the fp32 scale,
// the product) and the final bf16 rounding: rel = ((L + 3)·2^−24 + 2^−8)·1.01.
double rel_bound(Mode mode, std::int64_t n) {
  const double l = static_cast<double>(std::countr_zero(static_cast<std::uint64_t>(n)));
  return mode == Mode::kExact ? (l + 10.0) * kU : ((l + 3.0) * kU32 + kUb) * 1.01;
}

struct Case {
  Mode mode;
  std::int64_t size;  // N
  Mat x;              // rows × (segments·N)
};

Case gen_case() {
  Case c;
  c.mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  c.size = std::int64_t{1} << *rc::gen::inRange(0, 9);  // 1 … 256
  const std::int64_t segments = *rc::gen::inRange(1, 4);
  const std::int64_t rows = *rc::gen::inRange(1, 4);
  const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>();
  const CounterRng rng(seed, stream_id("hadamard_props.x"));
  c.x = Mat(rows, segments * c.size);
  for (std::int64_t r = 0; r < rows; ++r) {
    const int e = *rc::gen::inRange(-30, 31);
    for (std::int64_t j = 0; j < c.x.cols(); ++j) {
      const double v = std::ldexp(rng.normal(static_cast<std::uint64_t>(r * c.x.cols() + j)), e);
      c.x(r, j) = c.mode == Mode::kOfficial ? static_cast<double>(round_bf16(v)) : v;
    }
  }
  return c;
}

// ‖segment g of row r‖_2 of m.
double seg_norm(const Mat& m, std::int64_t r, std::int64_t g, std::int64_t n) {
  return m.row(r).segment(g * n, n).norm();
}

// Orthonormal transform: every segment of the result equals H_N x/√N within rel(N)·‖x‖, with
// H_N x evaluated in Mp50 by the Sylvester recursion H_2n = [H_n H_n; H_n −H_n] (sums of doubles whose
// exponents differ by < 100 are exact in Mp50's 166 bits; 1/√N to ~1e-49 relative), so norms are
// preserved within the same bound plus the two Euclidean norms in double (γ_N/2 relative each).
void orthonormal() {
  const Case c = gen_case();
  const Precision p(c.mode);
  const Mat y = hadamard(p, c.x, c.size);
  const std::int64_t n = c.size;
  const double rel = rel_bound(c.mode, n);
  const Mp50 inv_sqrt = 1 / boost::multiprecision::sqrt(Mp50(n));
  std::vector<Mp50> v(static_cast<std::size_t>(n));
  for (std::int64_t r = 0; r < c.x.rows(); ++r) {
    for (std::int64_t g = 0; g < c.x.cols() / n; ++g) {
      for (std::int64_t j = 0; j < n; ++j) v[static_cast<std::size_t>(j)] = c.x(r, g * n + j);
      for (std::int64_t h = 1; h < n; h *= 2) {
        for (std::int64_t i = 0; i < n; i += 2 * h) {
          for (std::int64_t j = i; j < i + h; ++j) {
            const Mp50 a = v[static_cast<std::size_t>(j)], b = v[static_cast<std::size_t>(j + h)];
            v[static_cast<std::size_t>(j)] = a + b;
            v[static_cast<std::size_t>(j + h)] = a - b;
          }
        }
      }
      Mp50 err2 = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        const Mp50 d = Mp50(y(r, g * n + i)) - v[static_cast<std::size_t>(i)] * inv_sqrt;
        err2 += d * d;
      }
      const double xn = seg_norm(c.x, r, g, n);
      RC_ASSERT(static_cast<double>(boost::multiprecision::sqrt(err2)) <= rel * xn * (1.0 + 1e-12));
      const double gamma_n = static_cast<double>(n) * kU;
      RC_ASSERT(std::fabs(seg_norm(y, r, g, n) - xn) <= (rel + 2.0 * gamma_n) * xn);
    }
  }
}

// Involution: H is symmetric and orthogonal, so H(Hx) = x; each application errs by ≤ rel(N)‖·‖ and
// ‖Ĥx‖ ≤ (1 + rel)‖x‖: ‖Ĥ(Ĥx) − x‖ ≤ rel(2 + rel)‖x‖.
void involution() {
  const Case c = gen_case();
  const Precision p(c.mode);
  const Mat y = hadamard(p, hadamard(p, c.x, c.size), c.size);
  const std::int64_t n = c.size;
  const double rel = rel_bound(c.mode, n);
  for (std::int64_t r = 0; r < c.x.rows(); ++r) {
    for (std::int64_t g = 0; g < c.x.cols() / n; ++g) {
      const double d = (y.row(r).segment(g * n, n) - c.x.row(r).segment(g * n, n)).norm();
      RC_ASSERT(d <= rel * (2.0 + rel) * seg_norm(c.x, r, g, n) * (1.0 + 1e-12));
    }
  }
}

}  // namespace

void register_hadamard_properties(Registry& r) {
  r.add_rc("hadamard.orthonormal", "hadamard",
           "each segment is H_N x / sqrt(N) (Mp50 reference) within the derived bound; norms preserved", 100,
           orthonormal);
  r.add_rc("hadamard.involution", "hadamard", "H(Hx) = x within the derived bound, both modes", 200, involution);
}

}  // namespace dsv4::props
