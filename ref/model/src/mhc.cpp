// mHC: hc_pre, hc_split_sinkhorn, hc_post, hc_head (spec 04 §4.2–§4.5).
#include "dsv4/model/mhc.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/numerics/philox.hpp"

namespace dsv4 {

namespace {

std::string shape_str(Eigen::Index r, Eigen::Index c) {
  return "[" + std::to_string(r) + ", " + std::to_string(c) + "]";
}

// n = hc_mult and the mix count (2+n)n, checked once for every entry point.
std::int64_t hc_n(const ModelConfig& c) {
  if (c.hc_mult < 1) throw std::invalid_argument("mhc: hc_mult must be positive, got " + std::to_string(c.hc_mult));
  if (c.dim < 1) throw std::invalid_argument("mhc: dim must be positive, got " + std::to_string(c.dim));
  return c.hc_mult;
}
std::int64_t mix_count(std::int64_t n) { return (2 + n) * n; }

void require_shape(const Mat& m, std::int64_t rows, std::int64_t cols, const std::string& field) {
  if (m.rows() != rows || m.cols() != cols) {
    throw std::invalid_argument("mhc: " + field + " has shape " + shape_str(m.rows(), m.cols()) + ", expected " +
                                shape_str(rows, cols));
  }
}

void require_size(const Vec& v, std::int64_t size, const std::string& field) {
  if (v.size() != size) {
    throw std::invalid_argument("mhc: " + field + " has " + std::to_string(v.size()) + " elements, expected " +
                                std::to_string(size));
  }
}

// fp32 values of N(0, std²) (synthetic weights).
void fill_normal(double* out, std::int64_t count, std::uint64_t seed, const char* name, double stddev) {
  const CounterRng rng(seed, stream_id(name));
  for (std::int64_t i = 0; i < count; ++i) {
    out[i] = static_cast<float>(stddev * rng.normal(static_cast<std::uint64_t>(i)));
  }
}

// fp32 value of 10^U(−2, 0): a gating factor log-uniform in [0.01, 1].
double log_uniform_scale(std::uint64_t seed, const char* name, std::uint64_t index) {
  const CounterRng rng(seed, stream_id(name));
  return static_cast<float>(std::pow(10.0, -2.0 + 2.0 * rng.uniform(index)));
}

// spec 04 §4.2 step 2 (also §4.5): r = rsqrt(fl(fl(S × fl32(1/(n·d))) + fl32(ε_n))) of one token's
// flattened state v, S the C1 sum of the fp32 squares (C7 mean).
double rms_factor(const Precision& p, const double* v, std::int64_t len, double norm_eps) {
  std::vector<double> squares(static_cast<std::size_t>(len));
  for (std::int64_t i = 0; i < len; ++i) squares[static_cast<std::size_t>(i)] = p.mul(v[i], v[i]);
  const double mean = p.mul(p.sum(squares.data(), len), p.fp32(1.0 / static_cast<double>(len)));
  return p.rsqrt(p.add(mean, p.fp32(norm_eps)));
}

// spec 04 §4.2 step 3 (also §4.5): μ = fl((W v)·r) for every token, the GEMM rounded first.
Mat rms_scaled_mixes(const Precision& p, const ModelConfig& c, const Mat& x, const Mat& fn) {
  Mat mixes = p.matmul_nt(x, fn);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const double r = rms_factor(p, x.row(t).data(), x.cols(), c.norm_eps);
    for (Eigen::Index m = 0; m < mixes.cols(); ++m) mixes(t, m) = p.mul(mixes(t, m), r);
  }
  return mixes;
}

// spec 04 §4.2 step 5 (also §4.5): y_δ = bf16(C1 Σ_k fl(pre_k · v[k·d + δ])) of one token.
void weighted_stream_sum(const Precision& p, std::int64_t n, std::int64_t d, const double* pre, const double* v,
                         double* y) {
  std::vector<double> terms(static_cast<std::size_t>(n));
  for (std::int64_t delta = 0; delta < d; ++delta) {
    for (std::int64_t k = 0; k < n; ++k) terms[static_cast<std::size_t>(k)] = p.mul(pre[k], v[k * d + delta]);
    y[delta] = p.bf16(p.sum(terms.data(), n));
  }
}

// spec 04 §4.3 step 4: M_jk = fl(fl(e_jk / R_j) + ε), e_jk = exp(fl(A_jk − max_k' A_jk')).
void row_softmax_plus_eps(const Precision& p, Mat& m, double eps) {
  const Eigen::Index n = m.cols();
  std::vector<double> e(static_cast<std::size_t>(n));
  for (Eigen::Index j = 0; j < m.rows(); ++j) {
    const double row_max = m.row(j).maxCoeff();
    for (Eigen::Index k = 0; k < n; ++k) e[static_cast<std::size_t>(k)] = p.exp(p.sub(m(j, k), row_max));
    const double row_sum = p.sum(e.data(), n);
    for (Eigen::Index k = 0; k < n; ++k) m(j, k) = p.add(p.div(e[static_cast<std::size_t>(k)], row_sum), eps);
  }
}

// spec 04 §4.3 step 6 (row half): M_jk ← fl(M_jk / fl(r_j + ε)), r_j the C1 sum of row j.
// Deviation kSinkhornEpsOutside (bug catalogue only): M ← fl(fl(M / Σ) + ε) instead.
double normalised(const Precision& p, double v, double sum, double eps) {
  if (p.deviates(Deviation::kSinkhornEpsOutside)) return p.add(p.div(v, sum), eps);
  return p.div(v, p.add(sum, eps));
}

void normalise_rows(const Precision& p, Mat& m, double eps) {
  for (Eigen::Index j = 0; j < m.rows(); ++j) {
    const double sum = p.sum(m.row(j).data(), m.cols());
    for (Eigen::Index k = 0; k < m.cols(); ++k) m(j, k) = normalised(p, m(j, k), sum, eps);
  }
}

// spec 04 §4.3 step 5: M_jk ← fl(M_jk / fl(c_k + ε)), c_k the C1 sum of column k.
void normalise_columns(const Precision& p, Mat& m, double eps) {
  std::vector<double> col(static_cast<std::size_t>(m.rows()));
  for (Eigen::Index k = 0; k < m.cols(); ++k) {
    for (Eigen::Index j = 0; j < m.rows(); ++j) col[static_cast<std::size_t>(j)] = m(j, k);
    const double sum = p.sum(col.data(), m.rows());
    for (Eigen::Index j = 0; j < m.rows(); ++j) m(j, k) = normalised(p, m(j, k), sum, eps);
  }
}

}  // namespace

void HcWeights::validate(const ModelConfig& c) const {
  const std::int64_t n = hc_n(c);
  require_shape(fn, mix_count(n), n * c.dim, "hc fn");
  require_size(base, mix_count(n), "hc base");
  require_size(scale, 3, "hc scale");
}

void HcHeadWeights::validate(const ModelConfig& c) const {
  const std::int64_t n = hc_n(c);
  require_shape(fn, n, n * c.dim, "hc_head fn");
  require_size(base, n, "hc_head base");
}

HcWeights HcWeights::synthetic(const ModelConfig& c, std::uint64_t seed) {
  const std::int64_t n = hc_n(c);
  const std::int64_t mixes = mix_count(n);
  HcWeights w;
  w.fn.resize(mixes, n * c.dim);
  fill_normal(w.fn.data(), w.fn.size(), seed, "hc.fn", 1.0 / std::sqrt(static_cast<double>(n * c.dim)));
  w.base.resize(mixes);
  fill_normal(w.base.data(), 2 * n, seed, "hc.base.gates", 0.5);
  fill_normal(w.base.data() + 2 * n, n * n, seed, "hc.base.comb", 1.0);
  w.scale.resize(3);
  for (Eigen::Index g = 0; g < 3; ++g) w.scale(g) = log_uniform_scale(seed, "hc.scale", static_cast<std::uint64_t>(g));
  return w;
}

HcHeadWeights HcHeadWeights::synthetic(const ModelConfig& c, std::uint64_t seed) {
  const std::int64_t n = hc_n(c);
  HcHeadWeights w;
  w.fn.resize(n, n * c.dim);
  fill_normal(w.fn.data(), w.fn.size(), seed, "hc_head.fn", 1.0 / std::sqrt(static_cast<double>(n * c.dim)));
  w.base.resize(n);
  fill_normal(w.base.data(), n, seed, "hc_head.base", 0.5);
  w.scale = log_uniform_scale(seed, "hc_head.scale", 0);
  return w;
}

// spec 04 §4.3 steps 4–7: softmax + ε, column normalisation, then iters − 1 × (row, column).
Mat hc_sinkhorn(const Precision& p, const Mat& logits, std::int64_t iters, double eps) {
  if (logits.rows() != logits.cols() || logits.rows() < 1) {
    throw std::invalid_argument("hc_sinkhorn: logits must be square and non-empty, got " +
                                shape_str(logits.rows(), logits.cols()));
  }
  if (iters < 1) throw std::invalid_argument("hc_sinkhorn: hc_sinkhorn_iters must be at least 1");
  if (!(eps >= 0.0)) throw std::invalid_argument("hc_sinkhorn: hc_eps must be non-negative");
  const double eps32 = p.fp32(eps);
  Mat m = logits;
  row_softmax_plus_eps(p, m, eps32);
  normalise_columns(p, m, eps32);
  const bool column_first = p.deviates(Deviation::kSinkhornColumnFirst);  // bug catalogue only
  for (std::int64_t it = 1; it < iters; ++it) {
    if (column_first) normalise_columns(p, m, eps32);
    normalise_rows(p, m, eps32);
    if (!column_first) normalise_columns(p, m, eps32);
  }
  return m;
}

// spec 04 §4.3 steps 1–3 (affine maps one FMA each, C3), then the Sinkhorn of steps 4–7.
SinkhornResult hc_split_sinkhorn(const Precision& p, const ModelConfig& c, const double* mu, const HcWeights& w) {
  const std::int64_t n = hc_n(c);
  require_size(w.base, mix_count(n), "hc base");
  require_size(w.scale, 3, "hc scale");
  const double eps32 = p.fp32(c.hc_eps);
  SinkhornResult out;
  out.pre.resize(n);
  out.post.resize(n);
  for (std::int64_t j = 0; j < n; ++j) {
    out.pre(j) = p.add(p.sigmoid(p.fma(mu[j], w.scale(0), w.base(j))), eps32);
    out.post(j) = p.mul(2.0, p.sigmoid(p.fma(mu[n + j], w.scale(1), w.base(n + j))));
  }
  Mat logits(n, n);
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t k = 0; k < n; ++k) {
      const std::int64_t m = 2 * n + j * n + k;
      logits(j, k) = p.fma(mu[m], w.scale(2), w.base(m));
    }
  }
  out.comb = hc_sinkhorn(p, logits, c.hc_sinkhorn_iters, c.hc_eps);
  return out;
}

namespace {

// Row t of the post [s, n] and comb [s, n·n] tables of hc_pre / hc_split_sinkhorn_rows from one
// token's result (comb row-major: index j·n + k).
void store_gates(const SinkhornResult& r, Eigen::Index t, Mat& post, Mat& comb) {
  const Eigen::Index n = r.post.size();
  post.row(t) = r.post.transpose();
  for (Eigen::Index j = 0; j < n; ++j) {
    for (Eigen::Index k = 0; k < n; ++k) comb(t, j * n + k) = r.comb(j, k);
  }
}

// n = hc_mult, after the checks of hc_pre and hc_head: the weights, and x holding n·d columns.
template <class Weights>
std::int64_t checked_streams(const ModelConfig& c, const Mat& x, const Weights& w, const char* what) {
  const std::int64_t n = hc_n(c);
  w.validate(c);
  require_shape(x, x.rows(), n * c.dim, what);
  return n;
}

}  // namespace

SinkhornRows hc_split_sinkhorn_rows(const Precision& p, const float* mixes, std::int64_t tokens, int n,
                                    const float* scale, const float* base, int iters, double eps) {
  if (n < 1) throw std::invalid_argument("hc_split_sinkhorn: hc_mult must be at least 1, got " + std::to_string(n));
  if (iters < 1) throw std::invalid_argument("hc_split_sinkhorn: hc_sinkhorn_iters must be at least 1");
  if (!(eps >= 0)) throw std::invalid_argument("hc_split_sinkhorn: hc_eps must be non-negative");
  if (tokens < 0) throw std::invalid_argument("hc_split_sinkhorn: tokens must be non-negative");
  ModelConfig c;
  c.hc_mult = n;
  c.hc_sinkhorn_iters = iters;
  c.hc_eps = eps;
  const std::int64_t m = mix_count(n);
  HcWeights w;
  w.base.resize(m);
  w.scale.resize(3);
  for (std::int64_t i = 0; i < m; ++i) w.base(i) = base[i];
  for (int g = 0; g < 3; ++g) w.scale(g) = scale[g];
  SinkhornRows out{Mat(tokens, n), Mat(tokens, n), Mat(tokens, std::int64_t{n} * n)};
  std::vector<double> mu(static_cast<std::size_t>(m));
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t i = 0; i < m; ++i) mu[static_cast<std::size_t>(i)] = mixes[t * m + i];
    const SinkhornResult r = hc_split_sinkhorn(p, c, mu.data(), w);
    out.pre.row(t) = r.pre.transpose();
    store_gates(r, t, out.post, out.comb);
  }
  return out;
}

// spec 04 §4.2: μ, Sinkhorn per token, y = bf16(Σ_k fl(pre_k v_k)).
HcPreOutput hc_pre(const Precision& p, const ModelConfig& c, const Mat& x, const HcWeights& w) {
  const std::int64_t n = checked_streams(c, x, w, "hc_pre input x");
  const std::int64_t d = c.dim;
  HcPreOutput out;
  out.mixes = rms_scaled_mixes(p, c, x, w.fn);
  out.y.resize(x.rows(), d);
  out.post.resize(x.rows(), n);
  out.comb.resize(x.rows(), n * n);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const SinkhornResult s = hc_split_sinkhorn(p, c, out.mixes.row(t).data(), w);
    weighted_stream_sum(p, n, d, s.pre.data(), x.row(t).data(), out.y.row(t).data());
    store_gates(s, t, out.post, out.comb);
  }
  return out;
}

// spec 04 §4.4: X'_k = bf16(fl(fl(post_k f) + C1 Σ_j fl(comb[j,k] X_j))); comb[j,k] carries j → k.
Mat hc_post(const Precision& p, const ModelConfig& c, const Mat& f, const Mat& residual, const Mat& post,
            const Mat& comb) {
  const std::int64_t n = hc_n(c);
  const std::int64_t d = c.dim;
  const Eigen::Index s = f.rows();
  require_shape(f, s, d, "hc_post sublayer output f");
  require_shape(residual, s, n * d, "hc_post residual");
  require_shape(post, s, n, "hc_post post");
  require_shape(comb, s, n * n, "hc_post comb");
  Mat out(s, n * d);
  std::vector<double> terms(static_cast<std::size_t>(n));
  for (Eigen::Index t = 0; t < s; ++t) {
    for (std::int64_t k = 0; k < n; ++k) {
      for (std::int64_t delta = 0; delta < d; ++delta) {
        for (std::int64_t j = 0; j < n; ++j) {
          // Deviation kHcCombTransposed (bug catalogue only): comb[k, j] instead of comb[j, k].
          const double w = p.deviates(Deviation::kHcCombTransposed) ? comb(t, k * n + j) : comb(t, j * n + k);
          terms[static_cast<std::size_t>(j)] = p.mul(w, residual(t, j * d + delta));
        }
        const double mixed = p.sum(terms.data(), n);
        out(t, k * d + delta) = p.bf16(p.add(p.mul(post(t, k), f(t, delta)), mixed));
      }
    }
  }
  return out;
}

namespace {

// The flat-array adapters' conversions: a row-major [rows, cols] float array as a Mat, and back.
Mat mat_of(const float* v, std::int64_t rows, std::int64_t cols) {
  Mat m(rows, cols);
  for (std::int64_t i = 0; i < rows * cols; ++i) m.data()[i] = v[i];
  return m;
}
Vec vec_of(const float* v, std::int64_t size) {
  Vec out(size);
  for (std::int64_t i = 0; i < size; ++i) out(i) = v[i];
  return out;
}
std::vector<float> floats_of(const Mat& m) {
  std::vector<float> out(static_cast<std::size_t>(m.size()));
  for (Eigen::Index i = 0; i < m.size(); ++i) out[static_cast<std::size_t>(i)] = static_cast<float>(m.data()[i]);
  return out;
}

// The configuration of a flat-array call: n = hc_mult, d = dim (each ≥ 1), tokens ≥ 0.
ModelConfig flat_config(const char* who, std::int64_t tokens, std::int64_t n, std::int64_t d) {
  if (tokens < 0) throw std::invalid_argument(std::string(who) + ": tokens must be non-negative");
  ModelConfig c;
  c.hc_mult = n;
  c.dim = d;
  hc_n(c);  // n ≥ 1, d ≥ 1
  return c;
}

}  // namespace

std::vector<float> hc_post_rows(const Precision& p, const float* f, const float* residual, const float* post,
                                const float* comb, std::int64_t tokens, std::int64_t n, std::int64_t d) {
  const ModelConfig c = flat_config("hc_post", tokens, n, d);
  return floats_of(hc_post(p, c, mat_of(f, tokens, d), mat_of(residual, tokens, n * d), mat_of(post, tokens, n),
                           mat_of(comb, tokens, n * n)));
}

HcPreOutput hc_pre_rows(const Precision& p, const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d,
                        const float* fn, const float* base, const float* scale, std::int64_t iters, double hc_eps,
                        double norm_eps) {
  ModelConfig c = flat_config("hc_pre", tokens, n, d);
  if (iters < 1) throw std::invalid_argument("hc_pre: hc_sinkhorn_iters must be at least 1");
  if (!(hc_eps >= 0.0)) throw std::invalid_argument("hc_pre: hc_eps must be non-negative");
  c.hc_sinkhorn_iters = iters;
  c.hc_eps = hc_eps;
  c.norm_eps = norm_eps;
  HcWeights w;
  w.fn = mat_of(fn, mix_count(n), n * d);
  w.base = vec_of(base, mix_count(n));
  w.scale = vec_of(scale, 3);
  return hc_pre(p, c, mat_of(x, tokens, n * d), w);
}

std::vector<float> hc_head_rows(const Precision& p, const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d,
                                const float* fn, const float* base, float scale, double hc_eps, double norm_eps) {
  ModelConfig c = flat_config("hc_head", tokens, n, d);
  c.hc_eps = hc_eps;
  c.norm_eps = norm_eps;
  HcHeadWeights w;
  w.fn = mat_of(fn, n, n * d);
  w.base = vec_of(base, n);
  w.scale = scale;
  return floats_of(hc_head(p, c, mat_of(x, tokens, n * d), w));
}

// spec 04 §4.5: pre_k = fl(σ(fl(fl(μ_k α) + b_k)) + ε) as separate PyTorch ops.
Vec hc_head_gates(const Precision& p, const ModelConfig& c, const double* mu, const HcHeadWeights& w) {
  const std::int64_t n = hc_n(c);
  require_size(w.base, n, "hc_head base");
  const double eps32 = p.fp32(c.hc_eps);
  Vec pre(n);
  for (std::int64_t k = 0; k < n; ++k) pre(k) = p.add(p.sigmoid(p.add(p.mul(mu[k], w.scale), w.base(k))), eps32);
  return pre;
}

// spec 04 §4.5: μ as in hc_pre, the gates, y = bf16(Σ_k fl(pre_k v_k)).
Mat hc_head(const Precision& p, const ModelConfig& c, const Mat& x, const HcHeadWeights& w) {
  const std::int64_t n = checked_streams(c, x, w, "hc_head input x");
  const std::int64_t d = c.dim;
  const Mat mixes = rms_scaled_mixes(p, c, x, w.fn);
  Mat y(x.rows(), d);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const Vec pre = hc_head_gates(p, c, mixes.row(t).data(), w);
    weighted_stream_sum(p, n, d, pre.data(), x.row(t).data(), y.row(t).data());
  }
  return y;
}

}  // namespace dsv4
