// RoPE with YaRN (spec 02 §2.2, §2.3; official code precompute_freqs_cis, apply_rotary_emb).
#include "dsv4/model/rope.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace dsv4 {

// spec 02 §2.2, table "Which parameters".
RopeParams rope_params_for_ratio(const ModelConfig& c, std::int64_t compress_ratio) {
  RopeParams rp;
  rp.rope_head_dim = c.rope_head_dim;
  rp.factor = c.rope_factor;
  rp.beta_fast = c.beta_fast;
  rp.beta_slow = c.beta_slow;
  if (compress_ratio != 0) {
    rp.base = c.compress_rope_theta;
    rp.original_seq_len = c.original_seq_len;
  } else {  // pure sliding-window layers: base rope_theta, YaRN off
    rp.base = c.rope_theta;
    rp.original_seq_len = 0;
  }
  return rp;
}

RopeParams rope_params_for_layer(const ModelConfig& c, std::int64_t layer) {
  if (layer < 0 || layer >= static_cast<std::int64_t>(c.compress_ratios.size())) {
    throw std::out_of_range("rope: layer " + std::to_string(layer) + " outside compress_ratios (" +
                            std::to_string(c.compress_ratios.size()) + " entries)");
  }
  return rope_params_for_ratio(c, c.compress_ratio(layer));
}

namespace {

void check_params(const RopeParams& rp) {
  if (rp.rope_head_dim <= 0 || rp.rope_head_dim % 2 != 0) {
    throw std::invalid_argument("rope: rope_head_dim " + std::to_string(rp.rope_head_dim) +
                                " must be positive and even");
  }
  if (!(rp.base > 1.0)) throw std::invalid_argument("rope: base (rope_theta) must be > 1");
  if (rp.original_seq_len > 0 && !(rp.factor > 0.0)) throw std::invalid_argument("rope: rope_factor must be > 0");
}

// spec 02 §2.2 step 2: cd(n) = r_d ln(L_0 / (2π n)) / (2 ln β), in double (Python floats).
double correction_dim(double num_rotations, const RopeParams& rp) {
  return static_cast<double>(rp.rope_head_dim) *
         std::log(static_cast<double>(rp.original_seq_len) / (num_rotations * 2.0 * std::numbers::pi)) /
         (2.0 * std::log(rp.base));
}

}  // namespace

// spec 02 §2.2 step 2 (official find_correction_range, linear_ramp_factor's lo == hi case).
YarnRange yarn_range(const RopeParams& rp) {
  check_params(rp);
  YarnRange r;
  if (rp.original_seq_len <= 0) return r;
  r.enabled = true;
  r.lo = std::max(std::floor(correction_dim(rp.beta_fast, rp)), 0.0);
  r.hi = std::min(std::ceil(correction_dim(rp.beta_slow, rp)), static_cast<double>(rp.rope_head_dim - 1));
  if (r.lo == r.hi) r.hi += 0.001;
  return r;
}

// spec 02 §2.2 steps 1–2. The official code runs on CUDA, where dividing a tensor by a Python
// scalar multiplies by the fp32 reciprocal (PyTorch div_true_kernel_cuda): so e_i = fl(2i × fl32(1/r_d)),
// f_i/s = fl(f_i × fl32(1/s)) and ρ_i = fl(fl(i − lo) × fl32(1/fl32(hi − lo))). 1/p_i is
// Tensor.__rtruediv__ = reciprocal: fl(1/p_i).
std::vector<double> rope_frequencies(const Precision& p, const RopeParams& rp) {
  const YarnRange yr = yarn_range(rp);
  const std::int64_t pairs = rp.rope_head_dim / 2;
  const double inv_rd = p.div(1.0, p.fp32(static_cast<double>(rp.rope_head_dim)));
  const double base = p.fp32(rp.base);
  std::vector<double> f(static_cast<std::size_t>(pairs));
  for (std::int64_t i = 0; i < pairs; ++i) {
    const double e = p.mul(static_cast<double>(2 * i), inv_rd);
    f[static_cast<std::size_t>(i)] = p.div(1.0, p.pow(base, e));
  }
  if (!yr.enabled) return f;
  const double inv_factor = p.div(1.0, p.fp32(rp.factor));
  const double inv_span = p.div(1.0, p.fp32(yr.hi - yr.lo));
  for (std::int64_t i = 0; i < pairs; ++i) {
    const double rho = std::clamp(p.mul(p.sub(static_cast<double>(i), yr.lo), inv_span), 0.0, 1.0);
    const double smooth = p.sub(1.0, rho);
    double& fi = f[static_cast<std::size_t>(i)];
    fi = p.add(p.mul(p.mul(fi, inv_factor), p.sub(1.0, smooth)), p.mul(fi, smooth));
  }
  return f;
}

// spec 02 §2.2 steps 3–4: θ_{t,i} = fl32(fp32(t)·f_i); F[t,i] = (cos θ, sin θ) (C2).
RopeTable rope_table(const Precision& p, const RopeParams& rp, std::int64_t positions) {
  if (positions < 0) throw std::invalid_argument("rope: negative number of positions");
  RopeTable table(positions, rp.rope_head_dim);
  table.frequencies = rope_frequencies(p, rp);
  for (std::int64_t t = 0; t < positions; ++t) {
    for (std::int64_t i = 0; i < table.n_pairs(); ++i) {
      const double theta = p.mul(p.fp32(static_cast<double>(t)), table.frequencies[static_cast<std::size_t>(i)]);
      table.cos_matrix()(t, i) = p.cos(theta);
      table.sin_matrix()(t, i) = p.sin(theta);
    }
  }
  return table;
}

RopeTable rope_table_for_layer(const Precision& p, const ModelConfig& c, std::int64_t layer, std::int64_t positions) {
  return rope_table(p, rope_params_for_layer(c, layer), positions < 0 ? c.max_seq_len : positions);
}

// spec 02 §2.3: per pair (a, b) ↦ (a cos − b sin, a sin + b cos) as a complex64 product with
// separate roundings (C3: no FMA outside kernels); inverse multiplies by the conjugate
// (a cos + b sin, b cos − a sin). The result is rounded back to bf16 (the input view's dtype).
void apply_rope_inplace(const Precision& p, const RopeTable& table, Mat& x, std::span<const std::int64_t> positions,
                        std::int64_t head_dim, bool inverse) {
  const std::int64_t rd = table.rope_head_dim();
  if (static_cast<Eigen::Index>(positions.size()) != x.rows()) {
    throw std::invalid_argument("rope: " + std::to_string(positions.size()) + " positions for " +
                                std::to_string(x.rows()) + " rows");
  }
  if (head_dim < rd || x.cols() % head_dim != 0) {
    throw std::invalid_argument("rope: head_dim " + std::to_string(head_dim) + " must be ≥ rope_head_dim " +
                                std::to_string(rd) + " and divide the row length " + std::to_string(x.cols()));
  }
  const Eigen::Index heads = x.cols() / head_dim;
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const std::int64_t t = positions[static_cast<std::size_t>(r)];
    if (t < 0 || t >= table.positions()) {
      throw std::out_of_range("rope: position " + std::to_string(t) + " outside the table (" +
                              std::to_string(table.positions()) + " positions)");
    }
    for (Eigen::Index h = 0; h < heads; ++h) {
      // Deviation kRopeFirstDims rotates the first rd dims; kRopeHalfSplit pairs (i, i + rd/2).
      const std::int64_t first = p.deviates(Deviation::kRopeFirstDims) ? 0 : head_dim - rd;
      const bool half = p.deviates(Deviation::kRopeHalfSplit);
      double* v = x.row(r).data() + h * head_dim + first;
      for (std::int64_t i = 0; i < table.n_pairs(); ++i) {
        const double c = table.cos(t, i);
        const double s = inverse ? -table.sin(t, i) : table.sin(t, i);
        const std::int64_t ia = half ? i : 2 * i, ib = half ? i + table.n_pairs() : 2 * i + 1;
        rope_rotate_pair(v[ia], v[ib], c, s, p);
      }
    }
  }
}

void apply_rope_inplace(const Precision& p, const RopeTable& table, Mat& x, std::int64_t start_pos,
                        std::int64_t head_dim, bool inverse) {
  std::vector<std::int64_t> positions(static_cast<std::size_t>(x.rows()));
  for (std::size_t r = 0; r < positions.size(); ++r) positions[r] = start_pos + static_cast<std::int64_t>(r);
  apply_rope_inplace(p, table, x, positions, head_dim, inverse);
}

}  // namespace dsv4
