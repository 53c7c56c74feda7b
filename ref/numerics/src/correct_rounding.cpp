// spec 01 §1.11 rule C2.
#include "dsv4/numerics/correct_rounding.hpp"

#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/multiprecision.hpp"

namespace dsv4 {

namespace {
using Mp = Mp50;
std::atomic<std::uint64_t> g_fallbacks{0};

// Decide fl32 of a double approximation y with |y − exact| ≤ ulps · ulp(y).
bool decide_from_double(double y, double ulps, float* out) {
  if (std::isnan(y)) {
    *out = std::numeric_limits<float>::quiet_NaN();
    return true;
  }
  if (std::isinf(y)) {
    *out = static_cast<float>(y);
    return true;
  }
  const double ulp = std::nextafter(std::fabs(y), std::numeric_limits<double>::infinity()) - std::fabs(y);
  return fp32_rounding_determined(y, ulps * ulp, out);
}

// Round a 166-bit value to fp32 when its error bound (relative 2^-150) allows it.
float decide_from_mp(const Mp& y, const char* what) {
  const Mp bound = boost::multiprecision::abs(y) * Mp(std::ldexp(1.0, -150));
  const Mp lo_mp = y - bound;
  const Mp hi_mp = y + bound;
  // Converting a cpp_bin_float to float is correctly rounded (Boost rounds to nearest).
  const float lo = lo_mp.convert_to<float>();
  const float hi = hi_mp.convert_to<float>();
  if (lo != hi) throw std::logic_error(std::string("cr: undecidable rounding of ") + what);
  return lo;
}

template <class DoubleFn, class MpFn>
float correctly_rounded(double arg_for_double, DoubleFn dfn, MpFn mfn, const char* what) {
  float r = 0.0f;
  if (decide_from_double(dfn(arg_for_double), kLibmErrorUlps, &r)) return r;
  g_fallbacks.fetch_add(1, std::memory_order_relaxed);
  return decide_from_mp(mfn(), what);
}
}  // namespace

float cr_exp(float x) {
  if (std::isinf(x)) return x > 0 ? x : 0.0f;
  if (x == 0.0f) return 1.0f;
  return correctly_rounded(
      x, [](double v) { return std::exp(v); }, [x] { return Mp(boost::multiprecision::exp(Mp(x))); }, "exp");
}

float cr_log1p(float x) {
  if (x == 0.0f || std::isinf(x)) return x > 0 || x == 0.0f ? x : std::numeric_limits<float>::quiet_NaN();
  if (x == -1.0f) return -std::numeric_limits<float>::infinity();
  if (x < -1.0f || std::isnan(x)) return std::numeric_limits<float>::quiet_NaN();
  return correctly_rounded(
      x, [](double v) { return std::log1p(v); }, [x] { return Mp(boost::multiprecision::log1p(Mp(x))); }, "log1p");
}

float cr_sin(float x) {
  if (x == 0.0f) return x;
  if (!std::isfinite(x)) return std::numeric_limits<float>::quiet_NaN();
  return correctly_rounded(
      x, [](double v) { return std::sin(v); }, [x] { return Mp(boost::multiprecision::sin(Mp(x))); }, "sin");
}

float cr_cos(float x) {
  if (x == 0.0f) return 1.0f;
  if (!std::isfinite(x)) return std::numeric_limits<float>::quiet_NaN();
  return correctly_rounded(
      x, [](double v) { return std::cos(v); }, [x] { return Mp(boost::multiprecision::cos(Mp(x))); }, "cos");
}

float cr_pow(float x, float y) {
  // Exact cases first: an exact result can sit on an fp32 midpoint only when it is exact.
  const double exact_try = std::pow(static_cast<double>(x), static_cast<double>(y));
  if (y == 0.0f || x == 1.0f) return 1.0f;
  if (!(x > 0.0f) || !std::isfinite(x) || !std::isfinite(y)) {
    return static_cast<float>(exact_try);  // the model only uses pow(base > 0, finite exponent)
  }
  // pow(x, y) with both fp32: a result exactly representable in double with ≤ 24 bits is exact.
  if (std::trunc(y) == y && std::fabs(y) <= 64.0) {
    const float r = static_cast<float>(exact_try);
    if (static_cast<double>(r) == exact_try) return r;
  }
  return correctly_rounded(
      0.0, [exact_try](double) { return exact_try; }, [x, y] { return Mp(boost::multiprecision::pow(Mp(x), Mp(y))); },
      "pow");
}

float cr_sqrt(float x) { return std::sqrt(x); }

float cr_rsqrt(float x) {
  if (x == 0.0f) return std::copysign(std::numeric_limits<float>::infinity(), x);
  if (x < 0.0f || std::isnan(x)) return std::numeric_limits<float>::quiet_NaN();
  if (std::isinf(x)) return 0.0f;
  // 1/sqrt(double(x)): two correctly rounded double ops, relative error ≤ 2u(1+u) < 3 ulps.
  return correctly_rounded(
      x, [](double v) { return 1.0 / std::sqrt(v); }, [x] { return Mp(1 / boost::multiprecision::sqrt(Mp(x))); },
      "rsqrt");
}

float sigmoid_c2(float x) {
  const float e = cr_exp(-x);
  const float d = 1.0f + e;
  return 1.0f / d;
}

float silu_c2(float x) {
  const float e = cr_exp(-x);
  const float d = 1.0f + e;
  return x / d;
}

float softplus_c2(float x) {
  if (x > 20.0f) return x;
  return cr_log1p(cr_exp(x));
}

std::uint64_t cr_multiprecision_fallbacks() { return g_fallbacks.load(); }

}  // namespace dsv4
