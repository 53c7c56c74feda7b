// Rotary position embedding with YaRN (spec 02 §2.2 frequency tables, §2.3 application).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// The arguments of the official precompute_freqs_cis for one layer kind.
struct RopeParams {
  std::int64_t rope_head_dim = 64;    // r_d (even)
  double base = 10000.0;              // β
  double factor = 16.0;               // YaRN s
  std::int64_t original_seq_len = 0;  // L_0; 0 disables YaRN
  double beta_fast = 32.0;
  double beta_slow = 1.0;
};

// spec 02 §2.2 table "Which parameters": compress ratio 0 → rope_theta with YaRN off
// (original_seq_len forced to 0); ratio 4 / 128 → compress_rope_theta with the config's YaRN.
// Throws std::out_of_range for a layer outside compress_ratios.
RopeParams rope_params_for_layer(const ModelConfig& c, std::int64_t layer);
// The same choice by compress ratio (for compressors/indexers that know only their ratio).
RopeParams rope_params_for_ratio(const ModelConfig& c, std::int64_t compress_ratio);

// spec 02 §2.2 step 2: YaRN correction range. lo = max(floor(cd(β_fast)), 0),
// hi = min(ceil(cd(β_slow)), r_d − 1), and hi += 0.001 when lo == hi. `enabled` is false when
// original_seq_len == 0 (then lo = hi = 0 and no ramp is applied).
struct YarnRange {
  bool enabled = false;
  double lo = 0.0;
  double hi = 0.0;
};
YarnRange yarn_range(const RopeParams& rp);

// spec 02 §2.2 steps 1–2: the r_d/2 frequencies f_i. Official: the fp32 op sequence of §2.2
// with C2 pow; exact: f_i = β^(−2i/r_d), ramped by YaRN in double.
std::vector<double> rope_frequencies(const Precision& p, const RopeParams& rp);

// spec 02 §2.2 steps 3–4: cos/sin of θ_{t,i} for positions t = 0..positions−1.
// Official: θ = fl32(fp32(t)·f_i), cos/sin correctly rounded fp32 (C2); exact: cos/sin of the
// double t·f_i.
class RopeTable {
 public:
  RopeTable() = default;
  RopeTable(std::int64_t positions, std::int64_t rope_head_dim)
      : n_pairs_(rope_head_dim / 2), cos_(positions, n_pairs_), sin_(positions, n_pairs_) {}
  std::int64_t positions() const { return cos_.rows(); }
  std::int64_t rope_head_dim() const { return 2 * n_pairs_; }
  std::int64_t n_pairs() const { return n_pairs_; }
  double cos(std::int64_t t, std::int64_t i) const { return cos_(t, i); }
  double sin(std::int64_t t, std::int64_t i) const { return sin_(t, i); }
  Mat& cos_matrix() { return cos_; }
  Mat& sin_matrix() { return sin_; }
  const Mat& cos_matrix() const { return cos_; }
  const Mat& sin_matrix() const { return sin_; }
  std::vector<double> frequencies;  // f_i as used for the angles

 private:
  std::int64_t n_pairs_ = 0;
  Mat cos_, sin_;
};

// Table for positions 0..positions−1 (positions ≥ 0).
RopeTable rope_table(const Precision& p, const RopeParams& rp, std::int64_t positions);
// The table of a layer (rope_params_for_layer), for positions 0..positions−1; positions < 0
// means config.max_seq_len.
RopeTable rope_table_for_layer(const Precision& p, const ModelConfig& c, std::int64_t layer,
                               std::int64_t positions = -1);

// spec 02 §2.3: interleaved partial RoPE, in place. x is [rows, H·head_dim]; within every
// head_dim-wide head the last r_d = table.rope_head_dim() dims are rotated as pairs
// (2i, 2i+1) by θ_{positions[row], i}: (a, b) ↦ (a cos − b sin, a sin + b cos); inverse = true
// rotates by −θ (multiplication by the conjugate). Official: values widened to fp32, each
// product and the add/sub a separate fp32 rounding (C3: no FMA), the result rounded to bf16.
// The first head_dim − r_d dims are untouched. Throws std::invalid_argument on a shape mismatch
// (positions.size() != rows, head_dim not dividing cols, head_dim < r_d) and std::out_of_range
// for a position outside the table.
// spec 02 §2.4 RoPE of one pair (a, b) by the angle with cosine c and sine s:
// a' = a·c − b·s, b' = a·s + b·c, each product, difference and sum in the arithmetic `ar`, the
// results cast by ar.bf16 (a Precision: the official bf16 activations, identity in exact mode;
// ExactArithmetic: the Mp50 re-decisions).
template <class T, class Arith>
void rope_rotate_pair(T& a, T& b, const T& c, const T& s, const Arith& ar) {
  const T x = a;
  const T y = b;
  a = ar.bf16(ar.sub(ar.mul(x, c), ar.mul(y, s)));
  b = ar.bf16(ar.add(ar.mul(x, s), ar.mul(y, c)));
}

void apply_rope_inplace(const Precision& p, const RopeTable& table, Mat& x, std::span<const std::int64_t> positions,
                        std::int64_t head_dim, bool inverse = false);
// Row r at position start_pos + r.
void apply_rope_inplace(const Precision& p, const RopeTable& table, Mat& x, std::int64_t start_pos,
                        std::int64_t head_dim, bool inverse = false);

}  // namespace dsv4
