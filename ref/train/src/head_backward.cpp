// Backward of the model head (spec 05 §5.3; spec 06 §6.12).
#include "dsv4/train/head_backward.hpp"

#include <stdexcept>
#include <string>

#include "dsv4/model/mhc.hpp"
#include "dsv4/model/rmsnorm.hpp"

namespace dsv4 {

HeadGrads head_backward(const Mat& x, std::int64_t n, const Mat& fn, const Vec& base, double scale, const Vec& norm,
                        const Mat& head, double hc_eps, double norm_eps, const Mat& dhc_head, const Mat& dnorm_out,
                        const Mat& dlogits) {
  const Eigen::Index rows = x.rows(), d = norm.size();
  if (n < 1 || x.cols() != n * d || head.cols() != d || dhc_head.rows() != rows || dhc_head.cols() != d ||
      dnorm_out.rows() != rows || dnorm_out.cols() != d || dlogits.rows() != rows || dlogits.cols() != head.rows()) {
    throw std::invalid_argument("head_backward: shapes of x, norm, head, dhc_head, dnorm, dlogits do not match (n " +
                                std::to_string(n) + ")");
  }
  // The exact forward's intermediate values (the reference's own exact-mode hc_head and RMSNorm).
  const Precision exact(Mode::kExact);
  ModelConfig c;
  c.hc_mult = n;
  c.dim = d;
  c.hc_eps = hc_eps;
  c.norm_eps = norm_eps;
  HcHeadWeights w;
  w.fn = fn;
  w.base = base;
  w.scale = scale;
  const Mat h = hc_head(exact, c, x, w);
  const Mat y = rmsnorm(exact, h, norm, norm_eps);
  HeadGrads g;
  // logits = y Hᵀ
  const LinearGrads lg = linear_backward(y, head, dlogits);
  g.dhead = lg.dweight;
  // y = rmsnorm(h, γ), upstream n̄ = its own + the logits'
  g.norm_dy = dnorm_out + lg.dx;
  const RmsNormGrads ng = rmsnorm_backward(h, norm, norm_eps, g.norm_dy);
  g.dnorm = ng.dweight;
  g.norm_xr = ng.xr;
  // h = hc_head(x), upstream h̄ = its own + the norm's
  const HcHeadGrads hg = hc_head_backward(x, n, fn, base, scale, hc_eps, norm_eps, dhc_head + ng.dx);
  g.dx = hg.dx;
  g.dfn = hg.dfn;
  g.dbase = hg.dbase;
  g.dscale = hg.dscale;
  g.hc_rows = hg.rows;
  return g;
}

}  // namespace dsv4
