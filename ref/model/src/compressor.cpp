// spec 02 §2.6 (official code class `Compressor`, inference/model.py): projections, gated softmax
// pooling, post-processing, prefill and decode state machines.
#include "dsv4/model/compressor.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/model/hadamard.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr int kFp8SimBlock = 64;  // spec 02 §2.6.3 step 3: act_quant block 64, UE8M0
constexpr int kFp4SimBlock = 32;  // spec 01 §1.5

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw std::invalid_argument("compressor: " + field + ": " + why);
}

std::string str(std::int64_t v) { return std::to_string(v); }

bool is_pow2(std::int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// One quantisation point of spec 02 §2.6.3 step 3 on `cols` dims of row `r` starting at `col0`,
// in place, returning the margins. Official: the fp32 kernel (act_quant / fp4_act_quant on the
// bf16 values); exact: the quantiser with exact decisions on the double values.
QuantMargin quantise_row(const Precision& prec, Mat& x, Eigen::Index r, Eigen::Index col0, std::int64_t cols,
                         BlockQuant kind) {
  const int block = kind == BlockQuant::kFp8Ue8m0 ? kFp8SimBlock : kFp4SimBlock;
  if (prec.official()) {
    std::vector<float> v(static_cast<std::size_t>(cols));
    for (std::int64_t j = 0; j < cols; ++j) v[static_cast<std::size_t>(j)] = static_cast<float>(x(r, col0 + j));
    const QuantMargin m = block_quant_margin_fp32(v, cols, block, kind);
    if (kind == BlockQuant::kFp8Ue8m0) {
      act_quant_inplace(v, cols, block, ScaleFormat::kUE8M0);
    } else {
      fp4_act_quant_inplace(v, cols);
    }
    for (std::int64_t j = 0; j < cols; ++j) x(r, col0 + j) = v[static_cast<std::size_t>(j)];
    return m;
  }
  std::vector<double> v(static_cast<std::size_t>(cols));
  for (std::int64_t j = 0; j < cols; ++j) v[static_cast<std::size_t>(j)] = x(r, col0 + j);
  const QuantMargin m = block_quant_exact_inplace(v, cols, block, kind);
  for (std::int64_t j = 0; j < cols; ++j) x(r, col0 + j) = v[static_cast<std::size_t>(j)];
  return m;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// spec 02 §2.6 (official Compressor.__init__ with Indexer/Attention arguments).

CompressorSpec CompressorSpec::main(const ModelConfig& c, std::int64_t ratio) {
  CompressorSpec s;
  s.ratio = ratio;
  s.dim = c.dim;
  s.head_dim = c.head_dim;
  s.rope_head_dim = c.rope_head_dim;
  s.rotate = false;
  s.max_seq_len = c.max_seq_len;
  s.norm_eps = c.norm_eps;
  s.rope = rope_params_for_ratio(c, ratio);
  return s;
}

CompressorSpec CompressorSpec::indexer(const ModelConfig& c) {
  CompressorSpec s = main(c, 4);
  s.head_dim = c.index_head_dim;
  s.rotate = true;
  return s;
}

void CompressorSpec::validate() const {
  if (ratio != 4 && ratio != 128) bad("ratio", "must be 4 or 128, got " + str(ratio));
  if (dim <= 0) bad("dim", "must be positive, got " + str(dim));
  if (head_dim <= 0) bad("head_dim", "must be positive, got " + str(head_dim));
  if (rope_head_dim <= 0 || rope_head_dim % 2 != 0 || rope_head_dim > head_dim) {
    bad("rope_head_dim",
        "must be even, positive and at most head_dim " + str(head_dim) + ", got " + str(rope_head_dim));
  }
  if (rope.rope_head_dim != rope_head_dim) {
    bad("rope.rope_head_dim", str(rope.rope_head_dim) + " differs from rope_head_dim " + str(rope_head_dim));
  }
  if (rotate) {
    if (!is_pow2(head_dim)) bad("head_dim", "the Hadamard rotation needs a power of two, got " + str(head_dim));
    if (head_dim % kFp4SimBlock != 0) {
      bad("head_dim", "must be a multiple of the FP4 block " + str(kFp4SimBlock) + ", got " + str(head_dim));
    }
  } else if ((head_dim - rope_head_dim) % kFp8SimBlock != 0) {
    bad("head_dim", "head_dim − rope_head_dim = " + str(head_dim - rope_head_dim) +
                        " must be a multiple of the FP8 block " + str(kFp8SimBlock));
  }
  if (max_seq_len <= 0) bad("max_seq_len", "must be positive, got " + str(max_seq_len));
  if (!(norm_eps > 0.0)) bad("norm_eps", "must be positive");
}

CompressorWeights CompressorWeights::synthetic(const CompressorSpec& s, std::uint64_t seed) {
  const std::int64_t n = s.proj_dim();
  const double wscale = 1.0 / std::sqrt(static_cast<double>(s.dim));
  auto gaussian = [&](const char* name, std::int64_t rows, std::int64_t cols, double scale, double shift,
                      bool to_bf16) {
    const CounterRng rng(seed, stream_id(name));
    Mat m(rows, cols);
    for (std::int64_t i = 0; i < rows * cols; ++i) {
      const double v = shift + scale * rng.normal(static_cast<std::uint64_t>(i));
      m.data()[i] = to_bf16 ? static_cast<double>(round_bf16(v)) : static_cast<double>(static_cast<float>(v));
    }
    return m;
  };
  CompressorWeights w;
  w.wkv = LinearWeight::fp32_from(gaussian("compressor.wkv", n, s.dim, wscale, 0.0, true));
  w.wgate = LinearWeight::fp32_from(gaussian("compressor.wgate", n, s.dim, wscale, 0.0, true));
  w.ape = gaussian("compressor.ape", s.ratio, n, 1.0, 0.0, false);
  const Mat g = gaussian("compressor.norm", s.head_dim, 1, 0.1, 1.0, true);
  w.norm = Eigen::Map<const Vec>(g.data(), s.head_dim);
  return w;
}

Compressor::Compressor(Precision prec, CompressorSpec spec, CompressorWeights weights,
                       std::shared_ptr<const RopeTable> table)
    : prec_(prec), spec_(std::move(spec)), w_(std::move(weights)), table_(std::move(table)) {
  spec_.validate();
  const std::int64_t n = spec_.proj_dim();
  auto check_linear = [&](const char* field, const LinearWeight& lw) {
    if (lw.kind != WeightKind::kFP32) bad(field, "must be an fp32 weight (official Compressor: Linear(dtype=fp32))");
    if (lw.out_features() != n || lw.in_features() != spec_.dim) {
      bad(field, "shape [" + str(lw.out_features()) + ", " + str(lw.in_features()) + "], expected [" + str(n) + ", " +
                     str(spec_.dim) + "]");
    }
  };
  check_linear("wkv", w_.wkv);
  check_linear("wgate", w_.wgate);
  if (w_.ape.rows() != spec_.ratio || w_.ape.cols() != n) {
    bad("ape", "shape [" + str(w_.ape.rows()) + ", " + str(w_.ape.cols()) + "], expected [" + str(spec_.ratio) + ", " +
                   str(n) + "]");
  }
  if (w_.norm.size() != spec_.head_dim) {
    bad("norm", "size " + str(w_.norm.size()) + ", expected head_dim " + str(spec_.head_dim));
  }
  if (!prec_.official()) {
    w_exact_.resize(2 * n, spec_.dim);
    w_exact_.topRows(n) = w_.wkv.values;
    w_exact_.bottomRows(n) = w_.wgate.values;
  }
  if (!table_) table_ = std::make_shared<const RopeTable>(dsv4::rope_table(prec_, spec_.rope, spec_.max_seq_len));
  if (table_->rope_head_dim() != spec_.rope_head_dim) {
    bad("table", "rope_head_dim " + str(table_->rope_head_dim()) + ", expected " + str(spec_.rope_head_dim));
  }
  if (table_->positions() < spec_.max_seq_len) {
    bad("table", str(table_->positions()) + " positions, expected at least max_seq_len " + str(spec_.max_seq_len));
  }
}

CompressorState Compressor::initial_state() const {
  CompressorState st;
  reset(st);
  return st;
}

// spec 02 §2.6.5 "Initial state and reset": K = 0, Z = −∞ at the start of every sequence.
void Compressor::reset(CompressorState& st) const { st = fresh_state(spec_); }

CompressorState Compressor::fresh_state(const CompressorSpec& spec) {
  CompressorState st;
  st.kv = Mat::Zero(spec.state_rows(), spec.proj_dim());
  st.score = Mat::Constant(spec.state_rows(), spec.proj_dim(), kNegInf);
  st.next_pos = 0;
  return st;
}

void Compressor::check_x(const Mat& x, const char* fn) const {
  if (x.cols() != spec_.dim) {
    bad("x", std::string(fn) + ": width " + str(x.cols()) + ", expected dim " + str(spec_.dim));
  }
  if (x.rows() < 1) bad("x", std::string(fn) + ": no tokens");
}

// spec 02 §2.6.1: u = W_kv·fp32(x), z̃ = fl(W_gate·fp32(x) + ape[j_abs mod m]) (fp32 linears, C1).
CompressorProjections Compressor::project(const Mat& x, std::int64_t start_pos) const {
  check_x(x, "project");
  if (start_pos < 0 || start_pos + x.rows() > spec_.max_seq_len) {
    bad("start_pos", "tokens " + str(start_pos) + ".." + str(start_pos + x.rows() - 1) + " beyond max_seq_len " +
                         str(spec_.max_seq_len));
  }
  Mat xf = x;
  prec_.fp32_inplace(xf);  // x.float(): exact for the bf16 input of the official code
  CompressorProjections p;
  if (prec_.official()) {
    p.u = linear(prec_, xf, w_.wkv);  // fp32 linear, C1: row-invariant by construction
    p.z_tilde = linear(prec_, xf, w_.wgate);
  } else {
    // Exact mode: the deterministic GEMM of Precision::matmul_nt (numerics/gemm.hpp: per element
    // the sequential sum over k, whatever the number of rows or threads), so a token's (u, z̃) is
    // bit-identical in prefill and decode. (linear()'s exact path is an Eigen product, whose 1-row
    // and multi-row kernels sum in different orders.)
    const Mat uz = prec_.matmul_nt(xf, w_exact_);
    const std::int64_t n = spec_.proj_dim();
    p.u = uz.leftCols(n);
    p.z_tilde = uz.rightCols(n);
  }
  for (Eigen::Index j = 0; j < p.z_tilde.rows(); ++j) {
    const Eigen::Index row = (start_pos + j) % spec_.ratio;
    for (Eigen::Index c = 0; c < p.z_tilde.cols(); ++c) p.z_tilde(j, c) = prec_.add(p.z_tilde(j, c), w_.ape(row, c));
  }
  return p;
}

// spec 02 §2.6.2: per channel, w = softmax over the slots (C2: e_j = exp(fl(z_j − max)), S the C1
// sum, w_j = fl(e_j / S)), C = C1 Σ_j fl(u_j·w_j). −∞ slots (padding) get weight 0.
RowVec Compressor::pool(const Mat& u, const Mat& z) const {
  if (u.rows() != z.rows() || u.cols() != z.cols()) bad("pool", "u and z shapes differ");
  const Eigen::Index slots = u.rows();
  RowVec out(u.cols());
  std::vector<double> e(static_cast<std::size_t>(slots));
  std::vector<double> prod(static_cast<std::size_t>(slots));
  for (Eigen::Index c = 0; c < u.cols(); ++c) {
    double mx = kNegInf;
    for (Eigen::Index j = 0; j < slots; ++j) mx = std::max(mx, z(j, c));
    if (mx == kNegInf) throw std::logic_error("compressor: pool: every slot of a channel is padding");
    for (Eigen::Index j = 0; j < slots; ++j) {
      e[static_cast<std::size_t>(j)] = z(j, c) == kNegInf ? 0.0 : prec_.exp(prec_.sub(z(j, c), mx));
    }
    const double s = prec_.sum(e.data(), slots);
    for (Eigen::Index j = 0; j < slots; ++j) {
      const double w = prec_.div(e[static_cast<std::size_t>(j)], s);
      prod[static_cast<std::size_t>(j)] = prec_.mul(u(j, c), w);
    }
    out(c) = prec_.sum(prod.data(), slots);
  }
  return out;
}

// spec 02 §2.6.3 steps 1–3.
CompressedEntries Compressor::postprocess(const Mat& pooled, std::int64_t first) const {
  const std::int64_t d = spec_.head_dim;
  const std::int64_t rd = spec_.rope_head_dim;
  if (pooled.cols() != d) bad("pooled", "width " + str(pooled.cols()) + ", expected head_dim " + str(d));
  CompressedEntries out;
  out.first = first;
  Mat x = pooled;
  prec_.bf16_inplace(x);                           // step 1: kv.to(bf16)
  x = rmsnorm(prec_, x, w_.norm, spec_.norm_eps);  // step 1: self.norm (C8) → bf16
  std::vector<std::int64_t> positions(static_cast<std::size_t>(x.rows()));
  for (std::size_t r = 0; r < positions.size(); ++r) {
    positions[r] = spec_.ratio * (first + static_cast<std::int64_t>(r));  // step 2: position m·i
  }
  apply_rope_inplace(prec_, *table_, x, positions, d);
  out.margins.resize(static_cast<std::size_t>(x.rows()));
  if (spec_.rotate) {  // step 3, indexer: Hadamard on all D dims, then FP4 on all D dims
    hadamard_inplace(prec_, x, d);
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
      out.margins[static_cast<std::size_t>(r)] = quantise_row(prec_, x, r, 0, d, BlockQuant::kFp4);
    }
  } else {  // step 3, main: FP8 on the nope dims [0, D − r_d)
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
      out.margins[static_cast<std::size_t>(r)] = quantise_row(prec_, x, r, 0, d - rd, BlockQuant::kFp8Ue8m0);
    }
  }
  out.entries = std::move(x);
  return out;
}

// spec 02 §2.6.4 (official Compressor.forward, start_pos == 0).
CompressedEntries Compressor::prefill(const Mat& x, CompressorState& st) const {
  check_x(x, "prefill");
  const std::int64_t s = x.rows();
  if (s > spec_.max_seq_len) bad("x", "prefill of " + str(s) + " tokens beyond max_seq_len " + str(spec_.max_seq_len));
  reset(st);
  const std::int64_t m = spec_.ratio;
  const std::int64_t d = spec_.head_dim;
  const CompressorProjections p = project(x, 0);
  const std::int64_t rem = s % m;
  const std::int64_t cutoff = s - rem;
  const std::int64_t offset = spec_.overlap() ? m : 0;
  if (spec_.overlap() && cutoff >= m) {  // step 2: the last complete block, all 2D channels
    st.kv.topRows(m) = p.u.middleRows(cutoff - m, m);
    st.score.topRows(m) = p.z_tilde.middleRows(cutoff - m, m);
  }
  if (rem > 0) {  // step 3: the tail tokens
    st.kv.middleRows(offset, rem) = p.u.middleRows(cutoff, rem);
    st.score.middleRows(offset, rem) = p.z_tilde.middleRows(cutoff, rem);
  }
  st.next_pos = s;
  const std::int64_t blocks = cutoff / m;
  Mat pooled(blocks, d);
  Mat us(spec_.coff() * m, d);
  Mat zs(spec_.coff() * m, d);
  for (std::int64_t i = 0; i < blocks; ++i) {  // step 4 with §2.6.2 (overlap_transform)
    if (spec_.overlap()) {
      if (i > 0) {
        us.topRows(m) = p.u.block(m * (i - 1), 0, m, d);
        zs.topRows(m) = p.z_tilde.block(m * (i - 1), 0, m, d);
      } else {
        us.topRows(m).setZero();
        zs.topRows(m).setConstant(kNegInf);
      }
      us.bottomRows(m) = p.u.block(m * i, d, m, d);
      zs.bottomRows(m) = p.z_tilde.block(m * i, d, m, d);
    } else {
      us = p.u.middleRows(m * i, m);
      zs = p.z_tilde.middleRows(m * i, m);
    }
    pooled.row(i) = pool(us, zs);
  }
  if (blocks == 0) {
    CompressedEntries none;
    none.entries.resize(0, d);
    return none;
  }
  return postprocess(pooled, 0);
}

// spec 02 §2.6.5 (official Compressor.forward, start_pos > 0, one token).
CompressedEntries Compressor::decode(const Mat& x, std::int64_t pos, CompressorState& st) const {
  check_x(x, "decode");
  if (x.rows() != 1) bad("x", "decode: " + str(x.rows()) + " tokens, expected 1");
  if (pos <= 0 || pos >= spec_.max_seq_len) {
    bad("start_pos", "decode position " + str(pos) + " outside 1.." + str(spec_.max_seq_len - 1) + " (max_seq_len " +
                         str(spec_.max_seq_len) + ")");
  }
  if (pos != st.next_pos) {
    bad("start_pos", "decode position " + str(pos) + " but the sequence's next position is " + str(st.next_pos));
  }
  if (st.kv.rows() != spec_.state_rows() || st.kv.cols() != spec_.proj_dim() || st.score.rows() != st.kv.rows() ||
      st.score.cols() != st.kv.cols()) {
    bad("state", "shape does not match this compressor (use initial_state())");
  }
  const std::int64_t m = spec_.ratio;
  const std::int64_t d = spec_.head_dim;
  const CompressorProjections p = project(x, pos);
  const std::int64_t row = (spec_.overlap() ? m : 0) + pos % m;
  st.kv.row(row) = p.u.row(0);
  st.score.row(row) = p.z_tilde.row(0);
  st.next_pos = pos + 1;
  CompressedEntries out;
  out.first = pos / m;
  if ((pos + 1) % m != 0) {
    out.entries.resize(0, d);
    return out;
  }
  Mat pooled(1, d);
  if (spec_.overlap()) {
    Mat us(2 * m, d);
    Mat zs(2 * m, d);
    us.topRows(m) = st.kv.block(0, 0, m, d);
    zs.topRows(m) = st.score.block(0, 0, m, d);
    us.bottomRows(m) = st.kv.block(m, d, m, d);
    zs.bottomRows(m) = st.score.block(m, d, m, d);
    pooled.row(0) = pool(us, zs);
    const Mat k_cur = st.kv.bottomRows(m);
    const Mat z_cur = st.score.bottomRows(m);
    st.kv.topRows(m) = k_cur;
    st.score.topRows(m) = z_cur;
  } else {
    pooled.row(0) = pool(st.kv, st.score);
  }
  return postprocess(pooled, pos / m);  // RoPE position m·⌊pos/m⌋ = pos + 1 − m
}

std::vector<CompressedEntries> Compressor::forward(const std::vector<Mat>& x, std::int64_t start_pos,
                                                   std::vector<CompressorState>& states) const {
  if (x.size() != states.size()) {
    bad("states", str(static_cast<std::int64_t>(states.size())) + " states for a batch of " +
                      str(static_cast<std::int64_t>(x.size())));
  }
  if (start_pos < 0 || start_pos >= spec_.max_seq_len) {
    bad("start_pos", str(start_pos) + " outside 0.." + str(spec_.max_seq_len - 1));
  }
  std::vector<CompressedEntries> out;
  out.reserve(x.size());
  for (std::size_t b = 0; b < x.size(); ++b) {
    if (x[b].rows() != x.front().rows()) bad("x", "sequences of a batch must have the same length");
    out.push_back(start_pos == 0 ? prefill(x[b], states[b]) : decode(x[b], start_pos, states[b]));
  }
  return out;
}

}  // namespace dsv4
