// The decision primitives of the precision policy (ref/README.md §Precision design, §Margins):
// the block quantisation point of spec 01 §1.4 / §1.5, the certification of its decisions, and the
// C4 top-k of spec 01 §1.11 with its certified cut. Components call these; none branches on the
// mode to take a decision.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/model/kv_certify.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

namespace {

// Deviations kKvFp8Truncation / kKvFp8RoundHalfAway (bug catalogue only): spec 01 §1.4's UE8M0
// act_quant simulation with the e4m3 cast of step 3 rounding toward zero, or breaking ties away
// from zero, instead of RNE — the scale (step 2) and the dequantisation (step 5) as the kernel's.
// The code is the RNE one (act_quant) moved by one step of magnitude where the two roundings
// differ on v = fl32(x / s), clamped to ±448 (e4m3fn codes increase with their magnitude bits).
void fp8_ue8m0_directed_inplace(std::span<float> x, std::int64_t cols, int block, Deviation d) {
  const Fp8Blocks q = act_quant(x, cols, block, ScaleFormat::kUE8M0);
  const std::int64_t blocks_per_row = cols / block;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto r = static_cast<std::int64_t>(i) / cols, b = (static_cast<std::int64_t>(i) % cols) / block;
    const float s = q.scales[static_cast<std::size_t>(r * blocks_per_row + b)];
    const double v = std::min(std::max(static_cast<double>(x[i] / s), -448.0), 448.0);
    const std::uint8_t rne = q.values[i], sign = rne & 0x80u;
    std::uint8_t mag = rne & 0x7Fu;
    const double a = std::abs(v), at = e4m3_to_float(mag);
    if (d == Deviation::kKvFp8Truncation && at > a) --mag;
    if (d == Deviation::kKvFp8RoundHalfAway && at < a && mag < 0x7Eu && e4m3_to_float(mag + 1) - a == a - at) ++mag;
    x[i] = round_bf16(e4m3_to_float(static_cast<std::uint8_t>(sign | mag)) * s);
  }
}

}  // namespace

// spec 01 §1.4 / §1.5. Official: the fp32 kernels (act_quant_inplace UE8M0 / fp4_act_quant_inplace)
// on the values as fp32; exact: block_quant_exact_inplace on the doubles.
QuantMargin Precision::quantise(Mat& x, Eigen::Index row0, Eigen::Index rows, Eigen::Index col0, Eigen::Index cols,
                                int block, BlockQuant kind) const {
  if (row0 < 0 || rows < 0 || row0 + rows > x.rows() || col0 < 0 || cols <= 0 || col0 + cols > x.cols()) {
    throw std::invalid_argument("quantise: rows or columns outside the matrix");
  }
  if (kind == BlockQuant::kFp4 && block != kFp4WeightBlock) {
    throw std::invalid_argument("quantise: fp4 simulation has block 32");
  }
  const auto at = [&](Eigen::Index r, Eigen::Index j) { return static_cast<std::size_t>(r * cols + j); };
  QuantMargin m;
  if (official()) {
    std::vector<float> buf(static_cast<std::size_t>(rows * cols));
    for (Eigen::Index r = 0; r < rows; ++r) {
      for (Eigen::Index j = 0; j < cols; ++j) buf[at(r, j)] = static_cast<float>(x(row0 + r, col0 + j));
    }
    m = block_quant_margin_fp32(buf, cols, block, kind);
    if (kind == BlockQuant::kFp8Ue8m0 &&
        (deviates(Deviation::kKvFp8Truncation) || deviates(Deviation::kKvFp8RoundHalfAway))) {
      fp8_ue8m0_directed_inplace(buf, cols, block, deviation_);
    } else if (kind == BlockQuant::kFp8Ue8m0) {
      act_quant_inplace(buf, cols, block, ScaleFormat::kUE8M0);
    } else {
      fp4_act_quant_inplace(buf, cols);
    }
    for (Eigen::Index r = 0; r < rows; ++r) {
      for (Eigen::Index j = 0; j < cols; ++j) x(row0 + r, col0 + j) = buf[at(r, j)];
    }
    return m;
  }
  std::vector<double> buf(static_cast<std::size_t>(rows * cols));
  for (Eigen::Index r = 0; r < rows; ++r) {
    for (Eigen::Index j = 0; j < cols; ++j) buf[at(r, j)] = x(row0 + r, col0 + j);
  }
  m = block_quant_exact_inplace(buf, cols, block, kind);
  for (Eigen::Index r = 0; r < rows; ++r) {
    for (Eigen::Index j = 0; j < cols; ++j) x(row0 + r, col0 + j) = buf[at(r, j)];
  }
  return m;
}

// ref/README.md §Precision design: a decision is certified when its whole error interval decides
// it the same way (block_decisions_certified, kv_certify.hpp); a row with any open decision is
// recomputed in Mp50 and every block of it re-quantised exactly (block_quant_mp50).
DecisionStats Precision::certify_quantised(std::int64_t rows, int block, BlockQuant kind,
                                           const RowCertifier& certificate, const RowMp50& mp50, Mat& quantised,
                                           const char* who) const {
  DecisionStats st;
  if (official()) return st;
  for (std::int64_t r = 0; r < rows; ++r) {
    const RowCertificate cert = certificate(r);
    const auto n = static_cast<std::int64_t>(cert.value.size());
    const std::vector<char> ok = block_decisions_certified(cert.value, cert.bound, block, kind);
    const auto undecided = static_cast<std::int64_t>(std::count(ok.begin(), ok.end(), char{0}));
    st.certified += n - undecided;
    if (undecided == 0) continue;
    st.redecided += undecided;
    ++st.recomputed;
    const std::vector<Mp50> exact = mp50(r);
    for (std::int64_t b0 = 0; b0 < n; b0 += block) {
      const std::vector<double> q =
          block_quant_mp50(std::span<const Mp50>(exact.data() + b0, static_cast<std::size_t>(block)), kind);
      for (std::int64_t j = 0; j < block; ++j) {
        const double qv = q[static_cast<std::size_t>(j)];
        double& e = quantised(r, b0 + j);
        if (qv != e) {
          if (ok[static_cast<std::size_t>(b0 + j)] != 0) {
            throw std::logic_error(std::string(who) + ": a certified decision disagrees with Mp50 (row " +
                                   std::to_string(r) + ", column " + std::to_string(b0 + j) + ")");
          }
          ++st.flipped;
        }
        e = qv;
      }
    }
  }
  return st;
}

// spec 01 §1.11 C4; exact mode: the cut certified by the bounds or re-decided in Mp50 (topk_exact).
TopkResult Precision::topk(std::span<const double> scores, std::int64_t k, const TopkBounds& bounds,
                           const TopkRecompute& recompute, DecisionStats& stats) const {
  if (official()) return dsv4::topk(scores, k);
  const std::vector<double> b = bounds();
  TopkResult r = topk_exact(scores, b, k, recompute);
  if (!r.margin.redecided) {
    ++stats.certified;
    return r;
  }
  ++stats.redecided;
  stats.recomputed += r.margin.recomputed;
  std::vector<std::int64_t> chosen = r.indices, by_double = dsv4::topk(scores, k).indices;
  std::sort(chosen.begin(), chosen.end());
  std::sort(by_double.begin(), by_double.end());
  if (chosen != by_double) ++stats.flipped;
  return r;
}

}  // namespace dsv4
