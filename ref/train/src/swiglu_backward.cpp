// Backward of the clamped SwiGLU (spec 03 §3.2; spec 06 §6.7, §6.12).
#include "dsv4/train/swiglu_backward.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace dsv4 {

namespace {

// spec 06 §6.12: whether the clamp [lo, hi] passes the gradient of v.
bool passes(double v, double lo, double hi, ClampBoundary b) {
  if (b == ClampBoundary::kNone) return true;
  return b == ClampBoundary::kClosed ? (v >= lo && v <= hi) : (v > lo && v < hi);
}

}  // namespace

SwigluElementGrads clamped_swiglu_backward(double g, double u, double w, double limit, double dh,
                                           ClampBoundary boundary) {
  const bool clamp = limit > 0;
  const double gc = clamp ? std::min(g, limit) : g;
  const double uc = clamp ? std::min(std::max(u, -limit), limit) : u;
  const double sig = 1.0 / (1.0 + std::exp(-gc));
  const double s = gc / (1.0 + std::exp(-gc));  // silu as the exact-mode forward computes it
  const double da = w * dh;
  SwigluElementGrads r;
  r.dw = dh * (s * uc);
  if (!clamp || passes(g, -INFINITY, limit, boundary)) r.dg = da * uc * (sig * (1.0 + gc * (1.0 - sig)));
  if (!clamp || passes(u, -limit, limit, boundary)) r.du = da * s;
  return r;
}

double clamp_limit_away_from_edges(std::span<const double> g, std::span<const double> u, double margin) {
  for (int j = 0; j < 60; ++j) {
    const double lim = 0.8 + 0.05 * j;
    bool ok = true, g_clamped = false, u_clamped = false;
    for (const double v : g) {
      ok = ok && std::fabs(v - lim) >= margin;
      g_clamped = g_clamped || v > lim;
    }
    for (const double v : u) {
      ok = ok && std::fabs(std::fabs(v) - lim) >= margin;
      u_clamped = u_clamped || std::fabs(v) > lim;
    }
    if (ok && g_clamped && u_clamped) return lim;
  }
  throw std::logic_error("no clamp limit in [0.8, 3.75] misses the point's edges by " + std::to_string(margin));
}

}  // namespace dsv4
