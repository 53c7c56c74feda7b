// The whole-model backward of one training step, exact mode (spec 06 §6.12, §6.13; forward spec 05
// §5.1–§5.5, 02, 03, 04). The forward is the reference's exact mode written on double parameters
// (ParameterMap) through the same ref/model functions (rmsnorm, RoPE, hc_pre, hc_post, hc_head,
// sparse_attention, the indexer, the gate's exact equation), keeping what the backward needs; the
// backward chains the registered component backwards in reverse order. tests/model_backward_test
// checks the forward against Transformer::forward and the gradient against central differences.
#include "dsv4/train/model_backward.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <utility>

#include "dsv4/model/checkpoint.hpp"
#include "dsv4/model/compressor.hpp"
#include "dsv4/model/expert.hpp"
#include "dsv4/model/head.hpp"
#include "dsv4/model/indexer.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/model/rope.hpp"
#include "dsv4/model/sparse_attention.hpp"
#include "dsv4/train/anticipatory_routing.hpp"
#include "dsv4/train/compressor_pool_backward.hpp"
#include "dsv4/train/embedding_backward.hpp"
#include "dsv4/train/embedding_backward_fp32.hpp"
#include "dsv4/train/expert_backward_fp32.hpp"
#include "dsv4/train/gate_backward.hpp"
#include "dsv4/train/grouped_projection_backward.hpp"
#include "dsv4/train/hc_post_backward.hpp"
#include "dsv4/train/hc_pre_backward.hpp"
#include "dsv4/train/head_backward.hpp"
#include "dsv4/train/linear_backward.hpp"
#include "dsv4/train/linear_backward_fp32.hpp"
#include "dsv4/train/mhc_backward_fp32.hpp"
#include "dsv4/train/moe_combine_backward.hpp"
#include "dsv4/train/rmsnorm_backward.hpp"
#include "dsv4/train/rmsnorm_backward_fp32.hpp"
#include "dsv4/train/rope_backward.hpp"
#include "dsv4/train/sparse_attention_backward.hpp"
#include "dsv4/train/sparse_attention_backward_fp32.hpp"
#include "dsv4/train/swiglu_backward.hpp"

namespace dsv4 {

namespace {

constexpr int kKvFp8Block = 64;  // spec 02 §2.5 step 4, §2.6.3 step 3: FP8 simulation, block 64, UE8M0
const double kInf = std::numeric_limits<double>::infinity();

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("model_backward: " + what); }

// ---- parameters -------------------------------------------------------------------------------

class Collect : public ParamVisitor {
 public:
  explicit Collect(ParameterMap& out) : out_(out) {}
  void linear(const std::string& name, LinearWeight& w, WeightKind, std::int64_t, std::int64_t) override {
    out_[name + ".weight"] = w.values();
  }
  void matrix(const std::string& name, Mat& m, std::int64_t, std::int64_t) override { out_[name] = m; }
  void vec(const std::string& name, Vec& v, std::int64_t) override { out_[name] = Mat(v); }
  void ids(const std::string&, std::vector<std::int64_t>&, std::int64_t, std::int64_t) override {}

 private:
  ParameterMap& out_;
};

Mat mm_nt(const Mat& x, const Mat& w) { return Precision(Mode::kExact).matmul_nt(x, w); }

std::vector<double> flat(const Mat& m) { return {m.data(), m.data() + m.size()}; }

// Rows of a [s·n, d] view of [s, n·d] (row-major: the same buffer).
Mat as_rows(const Mat& x, std::int64_t rows, std::int64_t cols) { return Eigen::Map<const Mat>(x.data(), rows, cols); }

std::vector<std::int64_t> iota_positions(std::int64_t s, std::int64_t stride = 1) {
  std::vector<std::int64_t> p(static_cast<std::size_t>(s));
  for (std::int64_t i = 0; i < s; ++i) p[static_cast<std::size_t>(i)] = stride * i;
  return p;
}

// The quantisation point of the surrogate (header): v + δ, δ = Q(v₀) − v₀ of the step's point.
template <class Quantise>
Mat quantisation_point(const std::string& site, const Mat& v, QuantOffsets& offsets, bool frozen, Quantise q) {
  if (frozen) {
    const auto it = offsets.find(site);
    if (it == offsets.end() || it->second.rows() != v.rows() || it->second.cols() != v.cols())
      bad("quantisation offsets lack the site " + site);
    return v + it->second;
  }
  Mat out = v;
  q(out);
  offsets[site] = out - v;
  return out;
}

// ---- the tape ---------------------------------------------------------------------------------

struct AttnTape {
  std::int64_t ratio = 0;
  std::shared_ptr<const RopeTable> table;
  Mat x, qa, q_r, qb, q, kv_lin, kv;
  // compressor (ratio > 0): projections [s, κD], the slots of every entry, pooled and normed rows
  Mat cu, cz;
  std::vector<Mat> us, zs;
  Mat pooled, entries;
  Mat kv_all;
  IndexLists lists;
  Mat attn, o, o_a, out;
};

struct MoeTape {
  Mat scores, weights;
  Mat balance_scores;  // the scores the balance loss is computed on (the unbiased ones, spec 06 §6.13)
  std::vector<std::int64_t> indices;
  bool hash = false;
  Mat out;
};

struct BlockTape {
  std::string prefix;
  std::int64_t layer = 0;
  Mat x;
  HcPreOutput hc_attn;
  Mat attn_norm;
  AttnTape attn;
  Mat x_mid;
  HcPreOutput hc_ffn;
  Mat ffn_norm;
  MoeTape ffn;
  Mat x_out;
};

struct HeadTape {
  Mat x, hc, normed, logits;
};

struct Tape {
  std::vector<std::int64_t> ids;
  std::vector<BlockTape> blocks;
  HeadTape head;
  bool mtp = false;
  std::vector<std::int64_t> mtp_ids;
  Mat mtp_h, mtp_emb, mtp_e, mtp_hn, mtp_x;
  BlockTape mtp_block;
  HeadTape mtp_head;
};

// The official-style step's fp32 containers (model_backward.hpp): values already on the fp32 grid.
std::vector<float> as_floats(const Mat& m) {
  std::vector<float> v(static_cast<std::size_t>(m.size()));
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    v[static_cast<std::size_t>(i)] = static_cast<float>(m.data()[i]);
    if (static_cast<double>(v[static_cast<std::size_t>(i)]) != m.data()[i])
      throw std::logic_error("model_backward_official: a value off the fp32 grid reached an fp32 reduction");
  }
  return v;
}
Mat from_floats(const std::vector<float>& v, Eigen::Index rows, Eigen::Index cols) {
  Mat m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<double>(v[static_cast<std::size_t>(i)]);
  return m;
}

class Model {
 public:
  Model(const ModelConfig& c, const ModelWeights& w, const ParameterMap& params, const TrainingLossOptions& opt)
      : c_(c), w_(w), params_(params), opt_(opt), p_(Mode::kExact) {}
  // The official-style step (model_backward.hpp): decisions held, official arithmetic and storage.
  Model(const ModelConfig& c, const ModelWeights& w, const ParameterMap& params, const TrainingLossOptions& opt,
        const TrainingDecisions& held, const OfficialStyleOptions& style)
      : c_(c),
        w_(w),
        params_(params),
        opt_(opt),
        p_(Mode::kOfficial, style.deviation),
        held_(&held),
        partition_(style.partition) {}

  const Mat& P(const std::string& name) const {
    const auto it = params_.find(name);
    if (it == params_.end()) bad("missing parameter " + name);
    return it->second;
  }
  Vec V(const std::string& name) const { return P(name).col(0); }

  TrainingLoss forward(const std::vector<std::int64_t>& ids, const QuantOffsets* frozen, Tape& tape);
  ParameterMap backward(const Tape& tape) const;

 private:
  HcWeights hc(const std::string& p) const { return {P(p + "_fn"), V(p + "_base"), V(p + "_scale")}; }
  HcHeadWeights hc_head_of(const std::string& p) const {
    return {P(p + "hc_head_fn"), V(p + "hc_head_base"), P(p + "hc_head_scale")(0, 0)};
  }
  const MoeWeights& moe_weights(std::int64_t layer) const {
    return layer < c_.n_layers ? w_.layers[static_cast<std::size_t>(layer)].ffn
                               : w_.mtp[static_cast<std::size_t>(layer - c_.n_layers)].block.ffn;
  }
  BlockTape block(const std::string& p, std::int64_t layer, const Mat& x, const std::vector<std::int64_t>& ids);
  void attention(const std::string& p, std::int64_t layer, AttnTape& a);
  void moe(const std::string& p, std::int64_t layer, const Mat& x, const std::vector<std::int64_t>& ids, MoeTape& m);
  HeadTape head(const std::string& p, const std::string& norm, const Mat& x) const;

  // Storage of the official-style step (model_backward.hpp); the identity in exact mode.
  bool official() const { return p_.official(); }
  // y = x Wᵀ: exact — the double product; official — C1 (one fp32 rounding) stored bf16, or fp32.
  Mat mm(const Mat& x, const Mat& w, bool fp32_out = false) const {
    if (!official()) return mm_nt(x, w);
    Mat y = p_.matmul_nt(x, w);
    if (!fp32_out) p_.bf16_inplace(y);
    return y;
  }
  Mat fp32(Mat m) const {
    p_.fp32_inplace(m);
    return m;
  }
  // An activation gradient passed on by a component backward: stored bf16.
  Mat grad(Mat m) const {
    p_.bf16_inplace(m);
    return m;
  }
  // A parameter gradient accumulated into g: fp32 (a training engine's main_grad).
  void add(ParameterMap& g, const std::string& name, const Mat& d) const;
  void add_vec(ParameterMap& g, const std::string& name, const Vec& d) const { add(g, name, Mat(d)); }
  // The linear backward: exact — linear_backward; official — spec 06 §6.14's fp32 sites on bf16
  // upstream gradients (dW: FP32-partitioned over the rows; dx: the fp32 row rule, stored bf16).
  // fp32_dy: the upstream gradient of an fp32 linear (compressor wkv / wgate), stored fp32.
  LinearGrads lin_back(const Mat& x, const Mat& w, const Mat& dy, bool fp32_dy = false) const;
  // The rule of a §6.14 site: the options' (`style.partition`; its `shuffled` takes every site),
  // shuffled under Deviation kReductionShuffled — the catalogue's legitimate variant: every site,
  // the parameter gradients and sparse attention's dkv (an activation gradient: shuffling it
  // perturbs every gradient upstream, and cancelling hc_*_base / hc_*_scale elements within
  // rounding of 0 flip sign, which AdamW's first step turns into ±2·lr — certify judges the
  // optimizer from the candidate's own gradients, spec 06 §6.17).
  PartitionRule rule() const {
    PartitionRule r = partition_;
    r.shuffled = r.shuffled || p_.deviates(Deviation::kReductionShuffled);
    return r;
  }
  // Official-style: the linear site of spec 06 §6.14, dW = Σ_rows dyᵀ x (x, dy on the fp32 grid).
  Mat lin_dweight(const Mat& x, const Mat& dy) const {
    return from_floats(linear_dweight_fp32(as_floats(x), as_floats(dy), x.rows(), x.cols(), dy.cols(), rule()),
                       dy.cols(), x.cols());
  }
  // An RMSNorm gain's gradient (dy: the upstream gradient rmsnorm_backward was given): exact — its
  // double sum; official — spec 06 §6.14's rule on dy and x·r (rmsnorm_dweight_fp32).
  void add_norm(ParameterMap& g, const std::string& name, const Mat& dy, const Mat& xr, const Vec& dweight) const;
  void add_norm(ParameterMap& g, const std::string& name, const Mat& dy, const RmsNormGrads& ng) const {
    add_norm(g, name, dy, ng.xr, ng.dweight);
  }
  // The gradient of a row gather (embed.weight: rows the token ids; a compressor's ape: rows the
  // positions mod its ratio) from the per-token rows dh: exact — embedding_backward's double sums;
  // official — spec 06 §6.14's rule (embedding_dtable_fp32).
  void add_gather(ParameterMap& g, const std::string& name, const std::vector<std::int64_t>& rows, const Mat& dh,
                  std::int64_t table_rows) const;
  // A per-row coefficient of a component backward (double) as the official-style step holds it:
  // fp32 (spec 06 §6.14: a kernel's first stage writes them).
  std::vector<float> coef(const Mat& m) const { return as_floats(fp32(m)); }
  // The parameter gradients of one expert (e: its name prefix; x, dy the MoE's input and output
  // gradient rows): exact — the component backward's double sums; official — spec 06 §6.14's rule
  // on its per-row coefficients (expert_dweights_fp32).
  void add_expert(ParameterMap& g, const std::string& e, const Mat& x, const Mat& dy, const ExpertRows& rows,
                  const Mat& dw1, const Mat& dw3, const Mat& dw2) const;
  // mHC's parameter gradients (site: `layers.N.hc_attn`, `layers.N.hc_ffn`, `hc_head`, `mtp.0.hc_head`;
  // x the state rows [T, n·d]; scales 3 for hc_pre, 1 for hc_head): exact — the component backward's
  // double sums (dfn, dbase, dscale); official — spec 06 §6.14's rule on its per-token coefficients
  // (mhc_dparams_fp32).
  void add_mhc(ParameterMap& g, const std::string& site, const Mat& x, const MhcParamRows& rows, std::int64_t scales,
               const Mat& dfn, const Vec& dbase, const Vec& dscale) const;

  Mat block_backward(const BlockTape& b, const Mat& dx_out, ParameterMap& g) const;
  Mat attention_backward(const std::string& p, const AttnTape& a, const Mat& dout, ParameterMap& g) const;
  Mat head_backward_of(const std::string& p, const std::string& norm, const HeadTape& h, const Mat& dlogits,
                       ParameterMap& g) const;

  const ModelConfig& c_;
  const ModelWeights& w_;
  const ParameterMap& params_;
  TrainingLossOptions opt_;
  Precision p_;
  const TrainingDecisions* held_ = nullptr;  // official-style: the decisions held fixed
  PartitionRule partition_;
  // per forward
  QuantOffsets offsets_;
  bool frozen_ = false;
  TrainingLoss* loss_ = nullptr;
};

void Model::add(ParameterMap& g, const std::string& name, const Mat& d) const {
  auto it = g.find(name);
  if (it == g.end()) bad("gradient of an unknown parameter " + name);
  if (!official()) {
    it->second += d;
    return;
  }
  for (Eigen::Index i = 0; i < d.size(); ++i)
    it->second.data()[i] = p_.fp32(it->second.data()[i] + p_.fp32(d.data()[i]));
}

void Model::add_expert(ParameterMap& g, const std::string& e, const Mat& x, const Mat& dy, const ExpertRows& rows,
                       const Mat& dw1, const Mat& dw3, const Mat& dw2) const {
  if (!official()) {
    add(g, e + ".w1.weight", dw1);
    add(g, e + ".w3.weight", dw3);
    add(g, e + ".w2.weight", dw2);
    return;
  }
  const std::int64_t d = x.cols(), de = dw1.rows();
  const ExpertDweightsFp32 f = expert_dweights_fp32(as_floats(x), as_floats(dy), x.rows(), d, rows.tokens, coef(rows.h),
                                                    coef(rows.dg), coef(rows.du), de, rule());
  add(g, e + ".w1.weight", from_floats(f.dw1, de, d));
  add(g, e + ".w3.weight", from_floats(f.dw3, de, d));
  add(g, e + ".w2.weight", from_floats(f.dw2, d, de));
}

void Model::add_mhc(ParameterMap& g, const std::string& site, const Mat& x, const MhcParamRows& rows,
                    std::int64_t scales, const Mat& dfn, const Vec& dbase, const Vec& dscale) const {
  if (!official()) {
    add(g, site + "_fn", dfn);
    add_vec(g, site + "_base", dbase);
    add_vec(g, site + "_scale", dscale);
    return;
  }
  const std::int64_t n = c_.hc_mult, d = c_.dim, count = rows.mixes.cols();
  const MhcParamGradsFp32 f = mhc_dparams_fp32(as_floats(x), x.rows(), n, d, coef(rows.mixes), coef(rows.da),
                                               coef(rows.gr), count, scales, rule());
  add(g, site + "_fn", from_floats(f.dfn, count, n * d));
  add(g, site + "_base", from_floats(f.dbase, count, 1));
  add(g, site + "_scale", from_floats(f.dscale, scales, 1));
}

void Model::add_norm(ParameterMap& g, const std::string& name, const Mat& dy, const Mat& xr, const Vec& dweight) const {
  if (!official()) return add_vec(g, name, dweight);
  add(g, name, from_floats(rmsnorm_dweight_fp32(coef(dy), coef(xr), xr.rows(), xr.cols(), rule()), xr.cols(), 1));
}

void Model::add_gather(ParameterMap& g, const std::string& name, const std::vector<std::int64_t>& rows, const Mat& dh,
                       std::int64_t table_rows) const {
  if (!official()) return add(g, name, embedding_backward(rows, dh, table_rows));
  add(g, name,
      from_floats(embedding_dtable_fp32(rows, as_floats(dh), table_rows, dh.cols(), rule()), table_rows, dh.cols()));
}

LinearGrads Model::lin_back(const Mat& x, const Mat& w, const Mat& dy, bool fp32_dy) const {
  if (!official()) return linear_backward(x, w, dy);
  const Mat dyb = fp32_dy ? fp32(dy) : grad(dy);
  const std::int64_t m = x.rows(), k = x.cols(), n = w.rows();
  LinearGrads r;
  r.dx = grad(from_floats(linear_dx_fp32(as_floats(dyb), as_floats(fp32(w)), m, k, n), m, k));
  r.dweight = lin_dweight(x, dyb);
  return r;
}

// ---- forward ----------------------------------------------------------------------------------

// spec 02 §2.4, §2.5, §2.6, §2.7, §2.9, §2.10, §2.11.2 (prefill) on a.x (the attn_norm output).
void Model::attention(const std::string& p, std::int64_t layer, AttnTape& a) {
  const std::int64_t s = a.x.rows(), c = c_.head_dim, rd = c_.rope_head_dim, H = c_.n_heads, G = c_.o_groups;
  const double eps = c_.norm_eps;
  a.ratio = c_.compress_ratio(layer);
  a.table = std::make_shared<const RopeTable>(rope_table_for_layer(p_, c_, layer));
  // §2.4: q_r = q_norm(wq_a x); q = RoPE(head_rms(wq_b q_r)).
  a.qa = mm(a.x, P(p + ".wq_a.weight"));
  a.q_r = rmsnorm(p_, a.qa, V(p + ".q_norm.weight"), eps);
  a.qb = mm(a.q_r, P(p + ".wq_b.weight"));
  a.q = a.qb;
  head_rmsnorm_inplace(p_, a.q, c, eps);
  apply_rope_inplace(p_, *a.table, a.q, 0, c);
  // §2.5: kv = RoPE(kv_norm(wkv x)), FP8 simulation of the nope dims (straight-through surrogate).
  a.kv_lin = mm(a.x, P(p + ".wkv.weight"));
  Mat kv = rmsnorm(p_, a.kv_lin, V(p + ".kv_norm.weight"), eps);
  apply_rope_inplace(p_, *a.table, kv, 0, c);
  a.kv = quantisation_point(p + ".kv", kv, offsets_, frozen_, [&](Mat& v) {
    p_.quantise(v, 0, v.rows(), 0, c - rd, kKvFp8Block, BlockQuant::kFp8Ue8m0);
  });
  // §2.11.2 steps 2–3: window lists, then the indexer's top-k (CSA) or the HCA lists.
  a.lists = window_lists_prefill(s, c_.window_size);
  a.kv_all = a.kv;
  const std::int64_t m = a.ratio;
  if (m > 0) {
    if (held_ != nullptr) {
      const auto it = held_->index_lists.find(p);
      if (it == held_->index_lists.end()) bad("the held decisions lack the index lists of " + p);
      a.lists = it->second;
    } else if (m == 4) {
      // The indexer only chooses (no gradient flows through its top-k, spec 06 §6.12, §6.16): it
      // runs on its parameters rounded to the storage kinds Indexer accepts — exact at the step's
      // point, where they are the checkpoint's values.
      IndexerWeights iw;
      iw.wq_b = LinearWeight::fp32_from(P(p + ".indexer.wq_b.weight"));
      iw.weights_proj = LinearWeight::bf16_from(P(p + ".indexer.weights_proj.weight"));
      iw.compressor.wkv = LinearWeight::fp32_from(P(p + ".indexer.compressor.wkv.weight"));
      iw.compressor.wgate = LinearWeight::fp32_from(P(p + ".indexer.compressor.wgate.weight"));
      iw.compressor.ape = P(p + ".indexer.compressor.ape");
      iw.compressor.norm = V(p + ".indexer.compressor.norm.weight");
      const Indexer indexer(p_, c_, std::move(iw), a.table);
      IndexerState st = indexer.initial_state();
      const IndexerOutput io = indexer.prefill(a.x, a.q_r, st, s);
      a.lists = concat_lists(a.lists, io.lists);
    } else {
      a.lists = concat_lists(a.lists, hca_lists_prefill(s, m, s));
    }
    // §2.6.1: u = W_kv x, z̃ = W_gate x + ape[pos mod m]; §2.6.2 pooling of entry i's slots.
    const CompressorSpec spec = CompressorSpec::main(c_, m);
    const std::int64_t D = spec.head_dim;
    const std::string cp = p + ".compressor";
    a.cu = mm(a.x, P(cp + ".wkv.weight"), /*fp32_out=*/true);
    a.cz = mm(a.x, P(cp + ".wgate.weight"), /*fp32_out=*/true);
    const Mat& ape = P(cp + ".ape");
    for (std::int64_t t = 0; t < s; ++t) a.cz.row(t) += ape.row(t % m);
    p_.fp32_inplace(a.cz);
    const std::int64_t blocks = s / m;
    a.pooled.resize(blocks, D);
    for (std::int64_t i = 0; i < blocks; ++i) {
      Mat us(spec.state_rows(), D), zs(spec.state_rows(), D);
      if (spec.overlap()) {
        if (i > 0) {
          us.topRows(m) = a.cu.block(m * (i - 1), 0, m, D);
          zs.topRows(m) = a.cz.block(m * (i - 1), 0, m, D);
        } else {
          us.topRows(m).setZero();
          zs.topRows(m).setConstant(-kInf);
        }
        us.bottomRows(m) = a.cu.block(m * i, D, m, D);
        zs.bottomRows(m) = a.cz.block(m * i, D, m, D);
      } else {
        us = a.cu.middleRows(m * i, m);
        zs = a.cz.middleRows(m * i, m);
      }
      const std::vector<double> pooled = compressor_pool_exact(flat(us), flat(zs), us.rows(), D);
      for (std::int64_t j = 0; j < D; ++j) a.pooled(i, j) = pooled[static_cast<std::size_t>(j)];
      a.us.push_back(std::move(us));
      a.zs.push_back(std::move(zs));
    }
    p_.fp32_inplace(a.pooled);  // official-style: the pooling in double, stored fp32
    // §2.6.3: RMSNorm, RoPE at position m·i, FP8 simulation of the nope dims (surrogate).
    Mat e = rmsnorm(p_, a.pooled, V(cp + ".norm.weight"), spec.norm_eps);
    const std::vector<std::int64_t> pos = iota_positions(blocks, m);
    apply_rope_inplace(p_, *a.table, e, pos, D);
    a.entries = quantisation_point(cp, e, offsets_, frozen_, [&](Mat& v) {
      for (Eigen::Index r = 0; r < v.rows(); ++r) p_.quantise(v, r, 1, 0, D - rd, kKvFp8Block, BlockQuant::kFp8Ue8m0);
    });
    a.kv_all.conservativeResize(s + blocks, c);
    a.kv_all.bottomRows(blocks) = a.entries;
  }
  // §2.9 sparse attention with the sink, q viewed [s·H, c].
  const std::vector<double> sink = flat(P(p + ".attn_sink"));
  const Mat qh = as_rows(a.q, s * H, c);
  a.attn =
      as_rows(sparse_attention(p_, qh, H, a.kv_all, sink, a.lists, 1.0 / std::sqrt(static_cast<double>(c))), s, H * c);
  // §2.10: inverse RoPE, grouped wo_a, wo_b.
  a.o = a.attn;
  apply_rope_inplace(p_, *a.table, a.o, 0, c, /*inverse=*/true);
  const Mat& wo_a = P(p + ".wo_a.weight");
  const std::int64_t dg = c_.o_lora_rank, P_ = H * c / G;
  a.o_a.resize(s, G * dg);
  for (std::int64_t gi = 0; gi < G; ++gi)
    a.o_a.middleCols(gi * dg, dg) = mm(a.o.middleCols(gi * P_, P_), wo_a.middleRows(gi * dg, dg));
  a.out = mm(a.o_a, P(p + ".wo_b.weight"));
}

// spec 03 §3.1–§3.3 (exact): the gate's exact equation, the chosen experts, the shared expert.
void Model::moe(const std::string& p, std::int64_t layer, const Mat& x, const std::vector<std::int64_t>& ids,
                MoeTape& m) {
  const std::int64_t T = x.rows(), d = c_.dim, E = c_.n_routed_experts, k = c_.n_activated_experts;
  const MoeWeights& mw = moe_weights(layer);
  m.hash = layer < c_.n_hash_layers;
  const std::vector<double> bias = m.hash ? std::vector<double>{} : flat(P(p + ".gate.bias"));
  const GateExact<double> g = gate_exact(flat(x), T, d, flat(P(p + ".gate.weight")), E, bias, mw.gate.tid2eid, ids, k,
                                         c_.score_func, c_.route_scale);
  m.scores = Eigen::Map<const Mat>(g.scores.data(), T, E);
  m.weights = Eigen::Map<const Mat>(g.weights.data(), T, k);
  m.indices = g.indices;
  if (held_ != nullptr) {
    // Official-style: the scores stored fp32, the exact step's experts, the routing weights by the
    // gate's official arithmetic at those indices (spec 03 §3.1 step 4).
    const auto it = held_->routing.find(p);
    if (it == held_->routing.end() || static_cast<std::int64_t>(it->second.size()) != T * k)
      bad("the held decisions lack the routing of " + p);
    p_.fp32_inplace(m.scores);
    m.indices = it->second;
    m.weights = routing_weights_at(p_, m.scores, m.indices, k, c_.score_func, c_.route_scale);
  }
  loss_->decisions.routing[p] = m.indices;
  m.balance_scores = m.scores;
  // (Deviation kBalanceOnBiasedScores, the training bug catalogue only: the biased scores s + b.)
  if (!m.hash && p_.deviates(Deviation::kBalanceOnBiasedScores))
    for (std::int64_t e = 0; e < E; ++e) m.balance_scores.col(e).array() += bias[static_cast<std::size_t>(e)];
  if (!m.hash) {
    for (std::int64_t t = 0; t < T; ++t) {  // the cut's gap on the biased scores (spec 03 §3.1 step 3)
      double kth = kInf, next = -kInf;
      for (std::int64_t e = 0; e < E; ++e) {
        bool chosen = false;
        for (std::int64_t j = 0; j < k; ++j) chosen = chosen || m.indices[static_cast<std::size_t>(t * k + j)] == e;
        const double b = m.scores(t, e) + bias[static_cast<std::size_t>(e)];
        if (chosen)
          kth = std::min(kth, b);
        else
          next = std::max(next, b);
      }
      loss_->decisions.min_routing_gap = std::min(loss_->decisions.min_routing_gap, kth - next);
    }
    loss_->balance += balance_loss(m.balance_scores, m.indices, k, opt_.balance_alpha);
  }
  // §3.3: routed experts in ascending id (tokens ascending), then the shared expert.
  const double limit = c_.swiglu_limit;
  const auto expert = [&](const std::string& e, const Mat& xe, const Vec* rw) {
    const Mat gm = mm(xe, P(e + ".w1.weight")), um = mm(xe, P(e + ".w3.weight"));
    Mat h(xe.rows(), gm.cols());
    for (Eigen::Index t = 0; t < h.rows(); ++t)
      for (Eigen::Index i = 0; i < h.cols(); ++i)
        h(t, i) = clamped_swiglu(p_, gm(t, i), um(t, i), limit, rw != nullptr ? &(*rw)(t) : nullptr);
    return Mat(mm(h, P(e + ".w2.weight")));
  };
  m.out = Mat::Zero(T, d);
  for (std::int64_t e = 0; e < E; ++e) {
    std::vector<std::int64_t> rows;
    std::vector<double> rw;
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < k; ++j)
        if (m.indices[static_cast<std::size_t>(t * k + j)] == e) {
          rows.push_back(t);
          rw.push_back(m.weights(t, j));
        }
    if (rows.empty()) continue;
    Mat xe(static_cast<Eigen::Index>(rows.size()), d);
    for (std::size_t r = 0; r < rows.size(); ++r) xe.row(static_cast<Eigen::Index>(r)) = x.row(rows[r]);
    const Vec we = Eigen::Map<const Vec>(rw.data(), static_cast<Eigen::Index>(rw.size()));
    const Mat ye = expert(p + ".experts." + std::to_string(e), xe, &we);
    for (std::size_t r = 0; r < rows.size(); ++r) m.out.row(rows[r]) += ye.row(static_cast<Eigen::Index>(r));
  }
  m.out += expert(p + ".shared_experts", x, nullptr);
  p_.bf16_inplace(m.out);  // official-style: the combine stored bf16
}

// spec 05 §5.2.
BlockTape Model::block(const std::string& p, std::int64_t layer, const Mat& x, const std::vector<std::int64_t>& ids) {
  BlockTape b;
  b.prefix = p;
  b.layer = layer;
  b.x = x;
  b.hc_attn = hc_pre(p_, c_, x, hc(p + ".hc_attn"));
  b.attn_norm = rmsnorm(p_, b.hc_attn.y, V(p + ".attn_norm.weight"), c_.norm_eps);
  b.attn.x = b.attn_norm;
  attention(p + ".attn", layer, b.attn);
  loss_->decisions.index_lists[p + ".attn"] = b.attn.lists;
  b.x_mid = hc_post(p_, c_, b.attn.out, x, b.hc_attn.post, b.hc_attn.comb);
  b.hc_ffn = hc_pre(p_, c_, b.x_mid, hc(p + ".hc_ffn"));
  b.ffn_norm = rmsnorm(p_, b.hc_ffn.y, V(p + ".ffn_norm.weight"), c_.norm_eps);
  moe(p + ".ffn", layer, b.ffn_norm, ids, b.ffn);
  b.x_out = hc_post(p_, c_, b.ffn.out, b.x_mid, b.hc_ffn.post, b.hc_ffn.comb);
  return b;
}

// spec 05 §5.3 at every position: hc_head → norm → logits (fp32 head weight, exact).
HeadTape Model::head(const std::string& p, const std::string& norm, const Mat& x) const {
  HeadTape h;
  h.x = x;
  h.hc = hc_head(p_, c_, x, hc_head_of(p));
  h.normed = rmsnorm(p_, h.hc, V(norm), c_.norm_eps);
  h.logits = mm(h.normed, P("head.weight"), /*fp32_out=*/true);
  return h;
}

TrainingLoss Model::forward(const std::vector<std::int64_t>& ids, const QuantOffsets* frozen, Tape& tape) {
  const std::int64_t s = static_cast<std::int64_t>(ids.size()), n = c_.hc_mult, d = c_.dim;
  if (s < 3) bad("training needs at least 3 tokens");
  if (s > c_.max_seq_len) bad("more tokens than max_seq_len");
  TrainingLoss loss;
  loss.decisions.min_routing_gap = kInf;
  loss_ = &loss;
  frozen_ = frozen != nullptr;
  offsets_ = frozen != nullptr ? *frozen : QuantOffsets{};
  tape.ids = ids;
  // §5.1, §5.2.
  Mat x = expand_streams(embed_tokens(P("embed.weight"), ids), n);
  for (std::int64_t l = 0; l < c_.n_layers; ++l) {
    tape.blocks.push_back(block("layers." + std::to_string(l), l, x, ids));
    x = tape.blocks.back().x_out;
  }
  // §5.3 and the next-token loss over positions 0..s−2 (6.13).
  tape.head = head("", "norm.weight", x);
  const std::vector<std::int64_t> next(ids.begin() + 1, ids.end());
  loss.lm = lm_loss(tape.head.logits.topRows(s - 1), next);
  loss.last_logits = tape.head.logits.bottomRows(1);
  // §5.5: MTP on positions 0..s−2 with the ids t₁..t_{s−1}, loss of −log p(t_{i+2}) for i ≤ s−3.
  tape.mtp = c_.n_mtp_layers > 0 && opt_.mtp_weight != 0.0;
  if (tape.mtp) {
    const std::string mp = "mtp.0";
    tape.mtp_ids = next;
    tape.mtp_h = x.topRows(s - 1);
    tape.mtp_emb = embed_tokens(P("embed.weight"), tape.mtp_ids);
    tape.mtp_e = rmsnorm(p_, tape.mtp_emb, V(mp + ".enorm.weight"), c_.norm_eps);
    tape.mtp_hn = rmsnorm(p_, as_rows(tape.mtp_h, (s - 1) * n, d), V(mp + ".hnorm.weight"), c_.norm_eps);
    const Mat pe = mm(tape.mtp_e, P(mp + ".e_proj.weight"));
    const Mat ph = mm(tape.mtp_hn, P(mp + ".h_proj.weight"));
    tape.mtp_x.resize(s - 1, n * d);
    for (std::int64_t t = 0; t < s - 1; ++t)
      for (std::int64_t k = 0; k < n; ++k) tape.mtp_x.block(t, k * d, 1, d) = pe.row(t) + ph.row(t * n + k);
    p_.bf16_inplace(tape.mtp_x);
    tape.mtp_block = block(mp, c_.n_layers, tape.mtp_x, tape.mtp_ids);
    tape.mtp_head = head(mp + ".", mp + ".norm.weight", tape.mtp_block.x_out);
    const std::vector<std::int64_t> next2(ids.begin() + 2, ids.end());
    loss.mtp = lm_loss(tape.mtp_head.logits.topRows(s - 2), next2);
    loss.mtp_last_logits = tape.mtp_head.logits.bottomRows(1);
  }
  if (official()) {  // official-style: the loss parts in fp32
    loss.lm = p_.fp32(loss.lm);
    loss.mtp = p_.fp32(loss.mtp);
    loss.balance = p_.fp32(loss.balance);
    loss.total = p_.add(p_.add(loss.lm, tape.mtp ? p_.mul(opt_.mtp_weight, loss.mtp) : 0.0), loss.balance);
  } else {
    loss.total = loss.lm + (tape.mtp ? opt_.mtp_weight * loss.mtp : 0.0) + loss.balance;
  }
  loss.offsets = offsets_;
  loss_ = nullptr;
  return loss;
}

// ---- backward ---------------------------------------------------------------------------------

// spec 06 §6.12: wo_b, the grouped wo_a, inverse RoPE, sparse attention (lists fixed), then the
// q path, the window KV path and the compressor (its pooling, and the rest by the registered
// linear / rmsnorm / rope backwards; the quantisation points straight through). Returns dx.
Mat Model::attention_backward(const std::string& p, const AttnTape& a, const Mat& dout, ParameterMap& g) const {
  const std::int64_t s = a.x.rows(), c = c_.head_dim, H = c_.n_heads, G = c_.o_groups;
  const double eps = c_.norm_eps;
  const std::vector<std::int64_t> pos = iota_positions(s);
  const LinearGrads lb = lin_back(a.o_a, P(p + ".wo_b.weight"), dout);
  add(g, p + ".wo_b.weight", lb.dweight);
  GroupedProjectionGrads gp;
  if (!official()) {
    gp = grouped_output_projection_backward(a.o, P(p + ".wo_a.weight"), G, lb.dx);
  } else {  // official-style: the linear's fp32 sites per group (the groups share nothing)
    const Mat& wo_a = P(p + ".wo_a.weight");
    const std::int64_t dg = c_.o_lora_rank, P_ = H * c / G;
    gp.dwo_a.resize(wo_a.rows(), wo_a.cols());
    gp.d_o.resize(s, H * c);
    for (std::int64_t gi = 0; gi < G; ++gi) {
      const LinearGrads lg =
          lin_back(a.o.middleCols(gi * P_, P_), wo_a.middleRows(gi * dg, dg), lb.dx.middleCols(gi * dg, dg));
      gp.dwo_a.middleRows(gi * dg, dg) = lg.dweight;
      gp.d_o.middleCols(gi * P_, P_) = lg.dx;
    }
  }
  add(g, p + ".wo_a.weight", gp.dwo_a);
  const Mat dattn = grad(rope_backward(*a.table, grad(gp.d_o), pos, c, /*inverse=*/true));
  const std::vector<double> sink = flat(P(p + ".attn_sink"));
  const Mat qh = as_rows(a.q, s * H, c), doh = as_rows(dattn, s * H, c);
  SinkAttentionCoefficients co;
  SparseAttentionGrads sa = sparse_attention_backward(
      qh, H, a.kv_all, sink, a.lists, 1.0 / std::sqrt(static_cast<double>(c)), doh, official() ? &co : nullptr);
  if (official()) {  // the KV and sink reductions on spec 06 §6.14's rule, from fp32 coefficients
    const std::int64_t n_kv = a.kv_all.rows();
    sa.dkv = from_floats(sparse_attention_dkv_fp32(as_floats(qh), H, n_kv, c, a.lists, as_floats(doh), coef(co.prob),
                                                   coef(co.dlogit), rule()),
                         n_kv, c);
    sa.dsink = from_floats(sparse_attention_dsink_fp32(coef(co.dz), s, H, rule()), H, 1).col(0);
  }
  add_vec(g, p + ".attn_sink", sa.dsink);
  const Mat dq = grad(sa.dq), dkv_all = grad(sa.dkv);
  // q path (spec 02 §2.4): RoPE, the weightless per-head RMS, wq_b, q_norm, wq_a.
  const Mat dq_hn = grad(rope_backward(*a.table, as_rows(dq, s, H * c), pos, c, /*inverse=*/false));
  const Mat dqb = grad(
      as_rows(rmsnorm_backward(as_rows(a.qb, s * H, c), Vec::Ones(c), eps, as_rows(dq_hn, s * H, c)).dx, s, H * c));
  const LinearGrads qb = lin_back(a.q_r, P(p + ".wq_b.weight"), dqb);
  add(g, p + ".wq_b.weight", qb.dweight);
  const RmsNormGrads qn = rmsnorm_backward(a.qa, V(p + ".q_norm.weight"), eps, qb.dx);
  add_norm(g, p + ".q_norm.weight", qb.dx, qn);
  const LinearGrads qa = lin_back(a.x, P(p + ".wq_a.weight"), grad(qn.dx));
  add(g, p + ".wq_a.weight", qa.dweight);
  Mat dx = qa.dx;
  // window KV path (spec 02 §2.5): FP8 straight through, RoPE, kv_norm, wkv.
  const Mat dkv = grad(rope_backward(*a.table, dkv_all.topRows(s), pos, c, /*inverse=*/false));
  const RmsNormGrads kn = rmsnorm_backward(a.kv_lin, V(p + ".kv_norm.weight"), eps, dkv);
  add_norm(g, p + ".kv_norm.weight", dkv, kn);
  const LinearGrads kl = lin_back(a.x, P(p + ".wkv.weight"), grad(kn.dx));
  add(g, p + ".wkv.weight", kl.dweight);
  dx = grad(dx + kl.dx);
  // compressor (spec 02 §2.6, spec 06 §6.12 "Compressor pooling").
  const std::int64_t blocks = a.pooled.rows();
  if (a.ratio > 0 && blocks > 0) {
    const std::int64_t m = a.ratio;
    const CompressorSpec spec = CompressorSpec::main(c_, m);
    const std::int64_t D = spec.head_dim;
    const std::string cp = p + ".compressor";
    const std::vector<std::int64_t> epos = iota_positions(blocks, m);
    const Mat de = grad(rope_backward(*a.table, dkv_all.bottomRows(blocks), epos, D, /*inverse=*/false));
    const RmsNormGrads cn = rmsnorm_backward(a.pooled, V(cp + ".norm.weight"), spec.norm_eps, de);
    add_norm(g, cp + ".norm.weight", de, cn);
    const Mat cdx = official() ? fp32(cn.dx) : cn.dx;  // official-style: the compressor's fp32 path
    // each entry's slot gradients back to its tokens (overlap: block i−1's first-half channels,
    // block i's second half), then ape (Σ per position mod m) and the two fp32 linears.
    Mat du = Mat::Zero(s, spec.proj_dim()), dz = Mat::Zero(s, spec.proj_dim());
    for (std::int64_t i = 0; i < blocks; ++i) {
      const CompressorPoolGrads pg =
          compressor_pool_backward(a.us[static_cast<std::size_t>(i)], a.zs[static_cast<std::size_t>(i)], cdx.row(i));
      if (spec.overlap()) {
        if (i > 0) {
          du.block(m * (i - 1), 0, m, D) += pg.du.topRows(m);
          dz.block(m * (i - 1), 0, m, D) += pg.dz.topRows(m);
        }
        du.block(m * i, D, m, D) += pg.du.bottomRows(m);
        dz.block(m * i, D, m, D) += pg.dz.bottomRows(m);
      } else {
        du.middleRows(m * i, m) += pg.du;
        dz.middleRows(m * i, m) += pg.dz;
      }
    }
    if (official()) {
      p_.fp32_inplace(du);
      p_.fp32_inplace(dz);
    }
    std::vector<std::int64_t> slot(static_cast<std::size_t>(s));  // ape's row of token t: t mod m
    for (std::int64_t t = 0; t < s; ++t) slot[static_cast<std::size_t>(t)] = t % m;
    add_gather(g, cp + ".ape", slot, dz, m);
    const LinearGrads lu = lin_back(a.x, P(cp + ".wkv.weight"), du, /*fp32_dy=*/true);
    const LinearGrads lz = lin_back(a.x, P(cp + ".wgate.weight"), dz, /*fp32_dy=*/true);
    add(g, cp + ".wkv.weight", lu.dweight);
    add(g, cp + ".wgate.weight", lz.dweight);
    dx = grad(dx + lu.dx);
    dx = grad(dx + lz.dx);
  }
  return dx;
}

// spec 05 §5.2 in reverse: hc_post (ffn), MoE (+ balance loss), gate, ffn_norm, hc_pre (ffn),
// hc_post (attn), attention, attn_norm, hc_pre (attn). Returns the gradient of the block's input.
Mat Model::block_backward(const BlockTape& b, const Mat& dx_out, ParameterMap& g) const {
  const std::string& p = b.prefix;
  const std::int64_t n = c_.hc_mult, k = c_.n_activated_experts, E = c_.n_routed_experts;
  const double eps = c_.norm_eps;
  const auto hc_pre_back = [&](const std::string& site, const Mat& x, const HcPreOutput& o, const Mat& dy,
                               const HcPostGrads& post) {
    const HcWeights w = hc(p + site);
    const HcPreGrads hg = hc_pre_backward(x, n, w.fn, w.base, w.scale, c_.hc_sinkhorn_iters, c_.hc_eps, eps, dy,
                                          post.dpost, post.dcomb, Mat::Zero(o.mixes.rows(), o.mixes.cols()));
    add_mhc(g, p + site, x, hg.rows, 3, hg.dfn, hg.dbase, hg.dscale);
    return hg.dx;
  };
  // FFN site.
  HcPostGrads fpost = hc_post_backward(b.ffn.out, b.x_mid, b.hc_ffn.post, b.hc_ffn.comb, n, dx_out);
  if (official()) {
    fpost.df = grad(fpost.df);
    fpost.dresidual = grad(fpost.dresidual);
  }
  std::vector<ExpertMats> experts;
  for (std::int64_t e = 0; e < E; ++e) {
    const std::string ep = p + ".ffn.experts." + std::to_string(e);
    experts.push_back({P(ep + ".w1.weight"), P(ep + ".w3.weight"), P(ep + ".w2.weight")});
  }
  const std::string sp = p + ".ffn.shared_experts";
  const ExpertMats shared{P(sp + ".w1.weight"), P(sp + ".w3.weight"), P(sp + ".w2.weight")};
  // (Deviation kSwigluNoClampGrad, the training bug catalogue only: no clamp mask in the backward.)
  const ClampBoundary boundary =
      p_.deviates(Deviation::kSwigluNoClampGrad) ? ClampBoundary::kNone : ClampBoundary::kClosed;
  const MoeCombineGrads mg = moe_combine_backward(b.ffn_norm, b.ffn.weights, b.ffn.indices, experts, shared,
                                                  c_.swiglu_limit, fpost.df, boundary);
  const std::int64_t de = c_.moe_inter_dim, d = c_.dim;
  for (std::int64_t e = 0; e < E; ++e) {
    add_expert(g, p + ".ffn.experts." + std::to_string(e), b.ffn_norm, fpost.df,
               mg.routed_rows[static_cast<std::size_t>(e)], mg.dw1.middleRows(e * de, de),
               mg.dw3.middleRows(e * de, de), mg.dw2.middleRows(e * d, d));
  }
  add_expert(g, sp, b.ffn_norm, fpost.df, mg.shared_rows, mg.dshared.w1, mg.dshared.w3, mg.dshared.w2);
  // The gate: routing weights' gradient and (score-routed) the balance loss's score gradient.
  const Mat dscores = b.ffn.hash
                          ? Mat(Mat::Zero(b.ffn.scores.rows(), E))
                          : balance_loss_backward(b.ffn.balance_scores, b.ffn.indices, k, 1.0, opt_.balance_alpha);
  const GateGrads gg =
      gate_backward(b.ffn_norm, P(p + ".ffn.gate.weight"), c_.score_func, c_.route_scale, b.ffn.indices,
                    official() ? fp32(mg.dweights) : mg.dweights, official() ? fp32(dscores) : dscores);
  add(g, p + ".ffn.gate.weight", official() ? lin_dweight(b.ffn_norm, fp32(gg.dlogits)) : gg.dweight);
  const Mat dffn_norm = official() ? grad(grad(mg.dx) + grad(gg.dx)) : Mat(mg.dx + gg.dx);
  const RmsNormGrads fn = rmsnorm_backward(b.hc_ffn.y, V(p + ".ffn_norm.weight"), eps, dffn_norm);
  add_norm(g, p + ".ffn_norm.weight", dffn_norm, fn);
  const Mat dx_mid = grad(fpost.dresidual + grad(hc_pre_back(".hc_ffn", b.x_mid, b.hc_ffn, grad(fn.dx), fpost)));
  // Attention site.
  HcPostGrads apost = hc_post_backward(b.attn.out, b.x, b.hc_attn.post, b.hc_attn.comb, n, dx_mid);
  if (official()) {
    apost.df = grad(apost.df);
    apost.dresidual = grad(apost.dresidual);
  }
  const Mat dnorm = grad(attention_backward(p + ".attn", b.attn, apost.df, g));
  const RmsNormGrads an = rmsnorm_backward(b.hc_attn.y, V(p + ".attn_norm.weight"), eps, dnorm);
  add_norm(g, p + ".attn_norm.weight", dnorm, an);
  return grad(apost.dresidual + grad(hc_pre_back(".hc_attn", b.x, b.hc_attn, grad(an.dx), apost)));
}

// spec 05 §5.3 backward (train/head_backward): returns the gradient of the final state.
Mat Model::head_backward_of(const std::string& p, const std::string& norm, const HeadTape& h, const Mat& dlogits,
                            ParameterMap& g) const {
  const HcHeadWeights w = hc_head_of(p);
  const Mat zero = Mat::Zero(h.hc.rows(), h.hc.cols());
  const HeadGrads hg = head_backward(h.x, c_.hc_mult, w.fn, w.base, w.scale, V(norm), P("head.weight"), c_.hc_eps,
                                     c_.norm_eps, zero, zero, dlogits);
  add_mhc(g, p + "hc_head", h.x, hg.hc_rows, 1, hg.dfn, hg.dbase, Vec::Constant(1, hg.dscale));
  add_norm(g, norm, hg.norm_dy, hg.norm_xr, hg.dnorm);
  add(g, "head.weight", official() ? lin_dweight(h.normed, dlogits) : hg.dhead);
  return grad(hg.dx);
}

ParameterMap Model::backward(const Tape& tape) const {
  ParameterMap g;
  for (const auto& [name, v] : params_) g[name] = Mat::Zero(v.rows(), v.cols());
  const std::int64_t s = static_cast<std::int64_t>(tape.ids.size()), n = c_.hc_mult, d = c_.dim;
  // Losses (6.13): the mean next-token cross-entropy, λ_MTP × the MTP one.
  const std::vector<std::int64_t> next(tape.ids.begin() + 1, tape.ids.end());
  Mat dlogits = Mat::Zero(s, c_.vocab_size);
  dlogits.topRows(s - 1) = cross_entropy_backward(tape.head.logits.topRows(s - 1), next,
                                                  Vec::Constant(s - 1, 1.0 / static_cast<double>(s - 1)));
  if (official()) p_.fp32_inplace(dlogits);  // official-style: the logits' gradient fp32, as the logits
  Mat dx = head_backward_of("", "norm.weight", tape.head, dlogits, g);
  if (tape.mtp) {
    const std::string mp = "mtp.0";
    const std::vector<std::int64_t> next2(tape.ids.begin() + 2, tape.ids.end());
    Mat dml = Mat::Zero(s - 1, c_.vocab_size);
    dml.topRows(s - 2) = cross_entropy_backward(tape.mtp_head.logits.topRows(s - 2), next2,
                                                Vec::Constant(s - 2, opt_.mtp_weight / static_cast<double>(s - 2)));
    if (official()) p_.fp32_inplace(dml);
    const Mat dmx =
        block_backward(tape.mtp_block, head_backward_of(mp + ".", mp + ".norm.weight", tape.mtp_head, dml, g), g);
    // X = e_proj(e) broadcast over the streams + h_proj(Ĥ): dph is dX viewed [s·n, d], dpe its stream sum.
    const Mat dph = as_rows(dmx, (s - 1) * n, d);
    Mat dpe = Mat::Zero(s - 1, d);
    for (std::int64_t k = 0; k < n; ++k) dpe += dmx.middleCols(k * d, d);
    dpe = grad(dpe);
    const LinearGrads le = lin_back(tape.mtp_e, P(mp + ".e_proj.weight"), dpe);
    const LinearGrads lh = lin_back(tape.mtp_hn, P(mp + ".h_proj.weight"), dph);
    add(g, mp + ".e_proj.weight", le.dweight);
    add(g, mp + ".h_proj.weight", lh.dweight);
    const RmsNormGrads en = rmsnorm_backward(tape.mtp_emb, V(mp + ".enorm.weight"), c_.norm_eps, le.dx);
    const Mat den = grad(en.dx);
    const RmsNormGrads hn =
        rmsnorm_backward(as_rows(tape.mtp_h, (s - 1) * n, d), V(mp + ".hnorm.weight"), c_.norm_eps, lh.dx);
    add_norm(g, mp + ".enorm.weight", le.dx, en);
    add_norm(g, mp + ".hnorm.weight", lh.dx, hn);
    add_gather(g, "embed.weight", tape.mtp_ids, den, c_.vocab_size);
    dx.topRows(s - 1) += as_rows(grad(hn.dx), s - 1, n * d);
    dx = grad(dx);
  }
  for (auto it = tape.blocks.rbegin(); it != tape.blocks.rend(); ++it) dx = block_backward(*it, dx, g);
  // §5.1: the stream expansion copies h to every stream; the embedding gathers rows.
  Mat dh = Mat::Zero(s, d);
  for (std::int64_t k = 0; k < n; ++k) dh += dx.middleCols(k * d, d);
  add_gather(g, "embed.weight", tape.ids, grad(dh), c_.vocab_size);
  return g;
}

}  // namespace

ParameterMap model_parameters(const ModelConfig& c, const ModelWeights& w) {
  ModelWeights copy = w;
  ParameterMap out;
  Collect v(out);
  visit_model_parameters(c, copy, v);
  return out;
}

TrainingLoss training_loss(const ModelConfig& c, const ModelWeights& weights, const ParameterMap& params,
                           const std::vector<std::int64_t>& tokens, const TrainingLossOptions& opt,
                           const QuantOffsets* offsets) {
  Model m(c, weights, params, opt);
  Tape tape;
  return m.forward(tokens, offsets, tape);
}

ModelGradients model_backward(const ModelConfig& c, const ModelWeights& weights, const ParameterMap& params,
                              const std::vector<std::int64_t>& tokens, const TrainingLossOptions& opt) {
  Model m(c, weights, params, opt);
  Tape tape;
  ModelGradients out;
  out.loss = m.forward(tokens, nullptr, tape);
  out.grad = m.backward(tape);
  return out;
}

ModelGradients model_backward_official(const ModelConfig& c, const ModelWeights& weights, const ParameterMap& params,
                                       const std::vector<std::int64_t>& tokens, const TrainingDecisions& held,
                                       const TrainingLossOptions& opt, const OfficialStyleOptions& style) {
  Model m(c, weights, params, opt, held, style);
  Tape tape;
  ModelGradients out;
  out.loss = m.forward(tokens, nullptr, tape);
  out.grad = m.backward(tape);
  return out;
}

}  // namespace dsv4
