// GpuModel (dsv4/gpu/gpu_model.hpp, gpu/README.md §GpuModel): spec 05 §5.1–§5.3 for one sequence
// (prefill), each module step the call of a registered op (gpu/ops) — the op's CUDA kernel or its
// CPU reference — in the order of the reference's Transformer::forward (ref/model/src/
// transformer.cpp), Block::forward (block.cpp) and Attention::prefill (attention.cpp). Steps
// without a kernel are host steps that call the reference's own functions (marked "host step").
#include "dsv4/gpu/gpu_model.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/model/attention.hpp"
#include "dsv4/model/block.hpp"
#include "dsv4/model/compressor.hpp"
#include "dsv4/model/expert.hpp"
#include "dsv4/model/head.hpp"
#include "dsv4/model/index_builders.hpp"
#include "dsv4/model/indexer.hpp"
#include "dsv4/model/indexer_scale.hpp"
#include "dsv4/model/linear.hpp"
#include "dsv4/model/moe.hpp"
#include "dsv4/model/mtp.hpp"
#include "dsv4/model/rope.hpp"
#include "dsv4/model/topk.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/ops/registry.hpp"
#include "dsv4/ops/resident.hpp"

namespace dsv4::gpu {

namespace {

using ops::Array;
using ops::Call;
using ops::Outputs;

const Precision kOfficial{Mode::kOfficial};
constexpr double kInf = std::numeric_limits<double>::infinity();

// A matrix of fp32-representable values (bf16 / fp32 activations and weights) as an op array.
std::vector<float> floats_of(const double* v, std::int64_t n) {
  std::vector<float> f(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(v[i]);
  return f;
}
Array per_row(const char* name, const Mat& m) {
  return Array::floats(name, m.rows(), m.cols(), floats_of(m.data(), m.size()));
}
Array shared_mat(const char* name, const Mat& m) {
  Array a = Array::floats(name, m.rows(), m.cols(), floats_of(m.data(), m.size()));
  a.per_row = false;
  return a;
}
Array shared_vec(const char* name, const Vec& v) { return Array::shared(name, floats_of(v.data(), v.size())); }
Array shared_bytes(const char* name, const Tensor& t, std::int64_t rows, std::int64_t cols) {
  const auto b = t.values<std::uint8_t>();
  Array a = Array::bytes(name, rows, cols, std::vector<std::uint8_t>(b.begin(), b.end()));
  a.per_row = false;
  return a;
}
// Integers (token ids, positions, list entries) as the exact floats of a [n, 1] / [rows, w] array.
template <class I>
Array integers(const char* name, const std::vector<I>& v, std::int64_t rows, std::int64_t cols) {
  std::vector<float> f(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) f[i] = static_cast<float>(v[i]);
  return Array::floats(name, rows, cols, std::move(f));
}

// One linear layer as the `linear` op's shared inputs and parameters (gpu/ops/src/linear_op.cpp).
struct OpLinear {
  std::vector<std::int64_t> ints;
  std::vector<Array> weight;  // the shared inputs after x
  OpLinear() = default;
  OpLinear(const LinearWeight& w, ScaleFormat fmt) {
    const std::int64_t n = w.out_features(), k = w.in_features();
    ints = {0, static_cast<std::int64_t>(w.kind), fmt == ScaleFormat::kFP32 ? 1 : 0};
    switch (w.kind) {
      case WeightKind::kBF16:
      case WeightKind::kFP32:
        weight = {shared_mat("weight", w.values())};
        break;
      case WeightKind::kFP8:
        weight = {shared_bytes("weight", w.weight, n, k), shared_bytes("scale", w.scale, (n + 127) / 128, k / 128)};
        break;
      case WeightKind::kFP4:
        weight = {shared_bytes("weight", w.weight, n, k / 2), shared_bytes("scale", w.scale, n, k / 32)};
        break;
    }
  }
};

// Weights of one kind stacked by rows, block b = ws[b] (the expert ops' storage form,
// gpu/ops/src/expert_weights.hpp: the codes of every block, then the scales of every block).
std::vector<Array> stacked(const std::vector<const LinearWeight*>& ws, ScaleFormat fmt) {
  std::vector<Array> out;
  for (const LinearWeight* w : ws) {
    const OpLinear o(*w, fmt);
    if (out.empty()) {
      out = o.weight;
      continue;
    }
    for (std::size_t i = 0; i < out.size(); ++i) out[i].append_rows(o.weight[i]);
  }
  return out;
}

// The RMS-scaled mixes' weights of one hc_pre site as the op's shared inputs.
struct OpHc {
  Array fn, base, scale;
  explicit OpHc(const HcWeights& w)
      : fn(Array::shared("fn", floats_of(w.fn.data(), w.fn.size()))),
        base(shared_vec("base", w.base)),
        scale(shared_vec("scale", w.scale)) {}
};

// The RoPE table of a layer as the `rope` op's shared cos / sin inputs.
struct OpRope {
  Array cos, sin;
  explicit OpRope(const RopeTable& t)
      : cos(Array::shared("cos", floats_of(t.cos_matrix().data(), t.cos_matrix().size()))),
        sin(Array::shared("sin", floats_of(t.sin_matrix().data(), t.sin_matrix().size()))) {}
};

// hc_head's weights and the final norm of a head (the model's, or an MTP block's).
struct OpHead {
  Array fn, base, scale, norm;
  OpHead() = default;
  OpHead(const HcHeadWeights& w, const Vec& norm_weight)
      : fn(Array::shared("hc_fn", floats_of(w.fn.data(), w.fn.size()))),
        base(shared_vec("hc_base", w.base)),
        scale(Array::shared("hc_scale", {static_cast<float>(w.scale)})),
        norm(shared_vec("weight", norm_weight)) {}
};

std::vector<double> vec_of(const Vec& v) { return {v.data(), v.data() + v.size()}; }

// One compressor (spec 02 §2.6: a layer's main compressor, or its indexer's) in op form: W_kv and
// W_gate (fp32 linears), the absolute-position bias ape [m, κD] (its rows gathered by position on
// the host: data movement), the norm's weight.
struct OpCompressor {
  CompressorSpec spec;
  OpLinear wkv, wgate;
  Mat ape;
  Array norm;
  OpCompressor(const CompressorSpec& s, const CompressorWeights& w, ScaleFormat fmt)
      : spec(s), wkv(w.wkv, fmt), wgate(w.wgate, fmt), ape(w.ape), norm(shared_vec("weight", w.norm)) {}
};

// The Lightning Indexer's weights in op form (spec 02 §2.7): wq_b, weights_proj, its compressor.
struct OpIndexer {
  OpLinear wq_b, weights_proj;
  OpCompressor compressor;
};

}  // namespace

struct GpuModel::Impl {
  // One block's weights in op form, and the reference objects of its host steps.
  struct Layer {
    std::int64_t ratio = 0;
    OpHc hc_attn, hc_ffn;
    Array attn_norm, ffn_norm, q_norm, kv_norm;
    OpLinear wq_a, wq_b, wkv, wo_b;
    Array wo_a, sink;
    std::shared_ptr<const RopeTable> table;
    OpRope rope;
    std::optional<OpCompressor> compressor;
    std::optional<OpIndexer> indexer;
    Array gate_weight, gate_bias, gate_table;
    std::vector<double> bias;  // the gate bias (score-routed layers), for the margins
    // moe_combine's ints {E, routed kind, shared kind, act scales} and weights: the routed w1, w3, w2
    // stacked (block e = expert e), then the shared expert's (gpu/ops/src/expert_weights.hpp).
    std::vector<std::int64_t> combine_ints;
    std::vector<Array> experts;
  };

  const ModelConfig cfg;
  OpBackend backend;
  Array embed;
  std::vector<Layer> layers;
  OpHead final_head;
  OpLinear head;  // the model head, shared by the MTP blocks
  // One MTP block (spec 05 §5.5): its input projections, its own hc_head and norm, its block.
  struct Mtp {
    OpLinear e_proj, h_proj;
    Array enorm, hnorm;
    OpHead head;
    Layer block;
  };
  std::vector<Mtp> mtp;

  Impl(const ModelConfig& c, const ModelWeights& w, OpBackend b) : cfg(c), backend(b) {
    // The reference's own checks of the weights (shapes, kinds, config), by building it once.
    { const Transformer check(kOfficial, c, w); }
    const ScaleFormat fmt = linear_scale_format(c);
    embed = shared_mat("embed", w.embed);
    for (std::int64_t l = 0; l < c.n_layers; ++l)
      layers.push_back(make_layer(w.layers[static_cast<std::size_t>(l)], l));
    final_head = OpHead(w.hc_head, w.norm);
    head = OpLinear(w.head, fmt);
    for (std::size_t i = 0; i < w.mtp.size(); ++i) {  // the MTP blocks: layer ids n_layers + i
      const MtpWeights& mw = w.mtp[i];
      mtp.push_back(Mtp{.e_proj = OpLinear(mw.e_proj, fmt),
                        .h_proj = OpLinear(mw.h_proj, fmt),
                        .enorm = shared_vec("weight", mw.enorm),
                        .hnorm = shared_vec("weight", mw.hnorm),
                        .head = OpHead(mw.hc_head, mw.norm),
                        .block = make_layer(mw.block, c.n_layers + static_cast<std::int64_t>(i))});
    }
    make_weights_resident();
  }

  // Every weight array resident (ops::Array::make_resident): shared by every Call that carries it,
  // never copied on the host, and — for the ops whose device function takes resident inputs
  // (Op::resident_inputs) — copied to the device once, for the life of the model.
  void make_weights_resident() const {
    const auto lin = [](const OpLinear& o) {
      for (const Array& a : o.weight) a.make_resident();
    };
    const auto hc = [](const OpHc& h) {
      for (const Array* a : {&h.fn, &h.base, &h.scale}) a->make_resident();
    };
    const auto head_of = [](const OpHead& h) {
      for (const Array* a : {&h.fn, &h.base, &h.scale, &h.norm}) a->make_resident();
    };
    const auto compressor = [&](const OpCompressor& C) {
      lin(C.wkv);
      lin(C.wgate);
      C.norm.make_resident();
    };
    const auto layer = [&](const Layer& L) {
      hc(L.hc_attn);
      hc(L.hc_ffn);
      for (const Array* a : {&L.attn_norm, &L.ffn_norm, &L.q_norm, &L.kv_norm, &L.wo_a, &L.sink, &L.rope.cos,
                             &L.rope.sin, &L.gate_weight, &L.gate_bias, &L.gate_table})
        a->make_resident();
      for (const OpLinear* o : {&L.wq_a, &L.wq_b, &L.wkv, &L.wo_b}) lin(*o);
      if (L.compressor) compressor(*L.compressor);
      if (L.indexer) {
        lin(L.indexer->wq_b);
        lin(L.indexer->weights_proj);
        compressor(L.indexer->compressor);
      }
      for (const Array& a : L.experts) a.make_resident();
    };
    embed.make_resident();
    for (const Layer& L : layers) layer(L);
    head_of(final_head);
    lin(head);
    for (const Mtp& mt : mtp) {
      lin(mt.e_proj);
      lin(mt.h_proj);
      mt.enorm.make_resident();
      mt.hnorm.make_resident();
      head_of(mt.head);
      layer(mt.block);
    }
  }

  Layer make_layer(const BlockWeights& bw, std::int64_t l) const {
    const ModelConfig& c = cfg;
    const ScaleFormat fmt = linear_scale_format(c);
    const AttentionWeights& a = bw.attn;
    auto table = std::make_shared<const RopeTable>(rope_table_for_layer(kOfficial, c, l));
    Layer L{.ratio = c.compress_ratio(l),
            .hc_attn = OpHc(bw.hc_attn),
            .hc_ffn = OpHc(bw.hc_ffn),
            .attn_norm = shared_vec("weight", bw.attn_norm),
            .ffn_norm = shared_vec("weight", bw.ffn_norm),
            .q_norm = shared_vec("weight", a.q_norm),
            .kv_norm = shared_vec("weight", a.kv_norm),
            .wq_a = OpLinear(a.wq_a, fmt),
            .wq_b = OpLinear(a.wq_b, fmt),
            .wkv = OpLinear(a.wkv, fmt),
            .wo_b = OpLinear(a.wo_b, fmt),
            .wo_a = shared_mat("wo_a", a.wo_a.values()),
            .sink = Array::shared("sink", std::vector<float>(a.attn_sink.begin(), a.attn_sink.end())),
            .table = table,
            .rope = OpRope(*table),
            .compressor = std::nullopt,
            .indexer = std::nullopt,
            .gate_weight =
                Array::shared("weight", floats_of(bw.ffn.gate.weight.values().data(), c.n_routed_experts * c.dim)),
            .gate_bias = Array::shared("bias", floats_of(bw.ffn.gate.bias.data(), bw.ffn.gate.bias.size())),
            .gate_table =
                integers("tid2eid", bw.ffn.gate.tid2eid, 1, static_cast<std::int64_t>(bw.ffn.gate.tid2eid.size())),
            .bias = vec_of(bw.ffn.gate.bias),
            .combine_ints = {c.n_routed_experts, static_cast<std::int64_t>(bw.ffn.experts.front().w1.kind),
                             static_cast<std::int64_t>(bw.ffn.shared.w1.kind), fmt == ScaleFormat::kFP32 ? 1 : 0},
            .experts = {}};
    for (LinearWeight ExpertWeights::*m : {&ExpertWeights::w1, &ExpertWeights::w3, &ExpertWeights::w2}) {
      std::vector<const LinearWeight*> routed;
      for (const ExpertWeights& e : bw.ffn.experts) routed.push_back(&(e.*m));
      for (Array& w : stacked(routed, fmt)) L.experts.push_back(std::move(w));
    }
    for (LinearWeight ExpertWeights::*m : {&ExpertWeights::w1, &ExpertWeights::w3, &ExpertWeights::w2})
      for (Array& w : stacked({&(bw.ffn.shared.*m)}, fmt)) L.experts.push_back(std::move(w));
    L.gate_table.per_row = false;
    if (L.ratio > 0) L.compressor.emplace(CompressorSpec::main(c, L.ratio), *a.compressor, fmt);
    if (L.ratio == 4)
      L.indexer.emplace(OpIndexer{.wq_b = OpLinear(a.indexer->wq_b, fmt),
                                  .weights_proj = OpLinear(a.indexer->weights_proj, fmt),
                                  .compressor = OpCompressor(CompressorSpec::indexer(c), a.indexer->compressor, fmt)});
    return L;
  }

  std::map<std::string, ops::Fn, std::less<>> replaced;    // GpuModel::replace_op
  mutable ops::CallBytes traffic;                          // this forward's calls (ops::call_bytes)
  mutable std::map<std::string, Output::OpTime> op_times;  // this forward's calls, timed per stem

  // One op call through the chosen implementation (or its replacement).
  Outputs run(const char* stem, Call call) const {
    const ops::Op* op = ops::find_op(stem);
    if (op == nullptr) throw std::logic_error(std::string("GpuModel: no op ") + stem + " in the registry");
    traffic += ops::call_bytes(*op, call);
    if (const auto it = replaced.find(stem); it != replaced.end()) return it->second(call);
    const ops::Fn& fn = backend == OpBackend::kDevice ? op->device : op->reference;
    if (!fn) throw std::runtime_error(std::string("GpuModel: op ") + stem + " has no device function in this build");
    const auto t0 = std::chrono::steady_clock::now();
    Outputs out = fn(call);
    Output::OpTime& t = op_times[stem];
    ++t.calls;
    t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }
  Mat run1(const char* stem, Call call) const { return ops::to_mat(run(stem, std::move(call)).at(0)); }

  Mat rmsnorm(const Mat& x, const Array& w) const {
    return run1("rmsnorm", Call{{}, {cfg.norm_eps}, {per_row("x", x), w}});
  }
  Mat linear(const Mat& x, const OpLinear& w) const {
    Call c{w.ints, {}, {per_row("x", x)}};
    c.inputs.insert(c.inputs.end(), w.weight.begin(), w.weight.end());
    return run1("linear", std::move(c));
  }
  // RoPE (inverse = false) or its inverse on every head_dim-wide head of x, row r at position pos[r]
  // (spec 02 §2.3).
  Mat rope(const Mat& x, const OpRope& t, const std::vector<std::int64_t>& pos, std::int64_t head_dim,
           bool inverse) const {
    return run1("rope", Call{{head_dim, cfg.rope_head_dim, inverse ? 1 : 0},
                             {},
                             {per_row("x", x), integers("pos", pos, x.rows(), 1), t.cos, t.sin}});
  }
  // The same on the attention heads (head_dim), rows at positions start_pos, start_pos + 1, ...
  Mat rope(const Mat& x, const OpRope& t, std::int64_t start_pos, bool inverse) const {
    return rope(x, t, positions(start_pos, 1, x.rows()), cfg.head_dim, inverse);
  }
  static std::vector<std::int64_t> positions(std::int64_t first, std::int64_t step, std::int64_t n) {
    std::vector<std::int64_t> pos(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = first + step * static_cast<std::int64_t>(i);
    return pos;
  }
  // The dequantised output of the FP8 (act_quant block 64, UE8M0) or FP4 (fp4_act_quant, block 32)
  // simulation of x's rows (spec 01 §1.4, §1.5).
  Mat fp8_simulated(const Mat& x) const {
    return ops::to_mat(run("act_quant", Call{{64, 1}, {}, {per_row("x", x)}}).at(2));
  }
  Mat fp4_simulated(const Mat& x) const {
    return ops::to_mat(run("fp4_act_quant", Call{{}, {}, {per_row("x", x)}}).at(2));
  }
  Mat hadamard(const Mat& x, std::int64_t size) const { return run1("hadamard", Call{{size}, {}, {per_row("x", x)}}); }

  // ---- the compressor (spec 02 §2.6; Compressor::prefill / decode): its state machine on the host
  // (data movement: slots copied, shifted), its arithmetic by the ops ----

  // §2.6.1: u = W_kv·x, z̃ = fl32(W_gate·x + ape[pos mod m]) of the tokens at start_pos.. (x: the
  // attention input, bf16 values, so fp32(x) = x).
  std::pair<Mat, Mat> compressor_project(const OpCompressor& C, const Mat& x, std::int64_t start_pos) const {
    Mat u = linear(x, C.wkv);
    const Mat g = linear(x, C.wgate);
    Mat ape(g.rows(), g.cols());
    for (std::int64_t r = 0; r < g.rows(); ++r) ape.row(r) = C.ape.row((start_pos + r) % C.spec.ratio);
    Mat z = run1("add", Call{{0}, {}, {per_row("a", g), per_row("b", ape)}});
    return {std::move(u), std::move(z)};
  }

  // §2.6.2 by the compressor_pool op: entry e's slots (slots [S, D] of u and z) flattened into row e.
  Mat compressor_pool(const Mat& U, const Mat& Z, std::int64_t slots) const {
    return run1("compressor_pool", Call{{slots}, {}, {per_row("u", U), per_row("z", Z)}});
  }

  // §2.6.3 on the pooled rows of entries first..: bf16 (the scale op by 1), RMSNorm, RoPE at
  // position m·i, then Hadamard and FP4 on all D dims (indexer) or FP8 on the nope dims (main).
  CompressedEntries compressor_post(const OpCompressor& C, const OpRope& rope_table, const Mat& pooled,
                                    std::int64_t first) const {
    const std::int64_t D = C.spec.head_dim, rd = C.spec.rope_head_dim;
    Mat x = rmsnorm(run1("scale", Call{{1}, {1.0}, {per_row("x", pooled)}}), C.norm);
    x = rope(x, rope_table, positions(C.spec.ratio * first, C.spec.ratio, x.rows()), D, false);
    if (C.spec.rotate) {
      x = fp4_simulated(hadamard(x, D));
    } else {
      x.leftCols(D - rd) = fp8_simulated(x.leftCols(D - rd));
    }
    CompressedEntries out;
    out.first = first;
    out.entries = std::move(x);
    return out;
  }

  // §2.6.4 (start_pos 0: the state reset and left ready for decode at position s) and §2.6.5 (one
  // token at pos = st.next_pos > 0): the entries this call completes.
  CompressedEntries compress(const OpCompressor& C, const OpRope& rope_table, const Mat& x, std::int64_t start_pos,
                             CompressorState& st) const {
    const CompressorSpec& sp = C.spec;
    const std::int64_t m = sp.ratio, D = sp.head_dim, S = sp.state_rows(), s = x.rows();
    const auto [u, z] = compressor_project(C, x, start_pos);
    const auto put = [&](Mat& U, Mat& Z, std::int64_t e, std::int64_t slot, const auto& us, const auto& zs) {
      for (std::int64_t j = 0; j < us.rows(); ++j) {
        U.block(e, (slot + j) * D, 1, D) = us.row(j);
        Z.block(e, (slot + j) * D, 1, D) = zs.row(j);
      }
    };
    if (start_pos == 0) {
      st = Compressor::fresh_state(sp);
      const std::int64_t rem = s % m, cutoff = s - rem, offset = sp.overlap() ? m : 0;
      if (sp.overlap() && cutoff >= m) {  // the last complete block, all κD channels
        st.kv.topRows(m) = u.middleRows(cutoff - m, m);
        st.score.topRows(m) = z.middleRows(cutoff - m, m);
      }
      if (rem > 0) {  // the tail tokens
        st.kv.middleRows(offset, rem) = u.middleRows(cutoff, rem);
        st.score.middleRows(offset, rem) = z.middleRows(cutoff, rem);
      }
      st.next_pos = s;
      const std::int64_t blocks = cutoff / m;
      if (blocks == 0) {
        CompressedEntries none;
        none.entries.resize(0, D);
        return none;
      }
      // overlap: block i − 1's first-half channels (padding for i = 0), then block i's second half
      Mat U = Mat::Zero(blocks, S * D), Z = Mat::Constant(blocks, S * D, -kInf);
      for (std::int64_t i = 0; i < blocks; ++i) {
        if (sp.overlap()) {
          if (i > 0) put(U, Z, i, 0, u.block(m * (i - 1), 0, m, D), z.block(m * (i - 1), 0, m, D));
          put(U, Z, i, m, u.block(m * i, D, m, D), z.block(m * i, D, m, D));
        } else {
          put(U, Z, i, 0, u.middleRows(m * i, m), z.middleRows(m * i, m));
        }
      }
      return compressor_post(C, rope_table, compressor_pool(U, Z, S), 0);
    }
    const std::int64_t pos = start_pos, row = (sp.overlap() ? m : 0) + pos % m;
    st.kv.row(row) = u.row(0);
    st.score.row(row) = z.row(0);
    st.next_pos = pos + 1;
    if ((pos + 1) % m != 0) {
      CompressedEntries none;
      none.first = pos / m;
      none.entries.resize(0, D);
      return none;
    }
    Mat U(1, S * D), Z(1, S * D);
    if (sp.overlap()) {
      put(U, Z, 0, 0, st.kv.block(0, 0, m, D), st.score.block(0, 0, m, D));
      put(U, Z, 0, m, st.kv.block(m, D, m, D), st.score.block(m, D, m, D));
      const Mat k_cur = st.kv.bottomRows(m), z_cur = st.score.bottomRows(m);
      st.kv.topRows(m) = k_cur;
      st.score.topRows(m) = z_cur;
    } else {
      put(U, Z, 0, 0, st.kv, st.score);
    }
    return compressor_post(C, rope_table, compressor_pool(U, Z, S), pos / m);  // RoPE position m·⌊pos/m⌋
  }

  // ---- the Lightning Indexer (spec 02 §2.7; Indexer::run, official mode) ----
  IndexerOutput indexer(const Layer& L, const Mat& x, const Mat& qr, std::int64_t start_pos, IndexerState& st,
                        std::int64_t offset) const {
    const OpIndexer& I = *L.indexer;
    const std::int64_t s = x.rows(), nI = cfg.index_n_heads, cI = cfg.index_head_dim, ratio = 4;
    const bool prefill = start_pos == 0;
    IndexerOutput out;
    // 1. q = wq_b(qr), RoPE at the query positions on the last r_d dims of every head, Hadamard, FP4
    const Mat q = fp4_simulated(hadamard(rope(linear(qr, I.wq_b), L.rope, positions(start_pos, 1, s), cI, false), cI));
    out.q = Eigen::Map<const Mat>(q.data(), s * nI, cI);
    // 2. the indexer compressor writes its cache rows before they are read
    out.compressed = compress(I.compressor, L.rope, x, start_pos, st.compressor);
    if (prefill) st.entries = 0;
    for (std::int64_t r = 0; r < out.compressed.count(); ++r) {
      st.cache.row(out.compressed.first + r) = out.compressed.entries.row(r);
      st.entries = std::max(st.entries, out.compressed.first + r + 1);
    }
    // 3. head weights ω = bf16(fl32(bf16(W_w x) × fl32(c_I^−1/2 n_I^−1/2)))
    out.weights = run1("scale", Call{{1}, {indexer_weight_scale(nI, cI)}, {per_row("x", linear(x, I.weights_proj))}});
    // 4.–7. scores, lists and margins against the first ⌊e/4⌋ entries
    const std::int64_t nk = (start_pos + s) / ratio;
    if (nk > st.entries) throw std::logic_error("GpuModel: the indexer cache has fewer entries than the positions");
    indexer_select(out, st, nk, ratio, prefill, offset);
    return out;
  }

  HcPreOutput hc_pre(const Mat& x, const OpHc& w) const {
    const Outputs o = run("hc_pre", Call{{cfg.hc_mult, cfg.hc_sinkhorn_iters},
                                         {cfg.hc_eps, cfg.norm_eps},
                                         {per_row("x", x), w.fn, w.base, w.scale}});
    return HcPreOutput{ops::to_mat(o.at(0)), ops::to_mat(o.at(1)), ops::to_mat(o.at(2)), ops::to_mat(o.at(3))};
  }
  Mat hc_post(const Mat& f, const Mat& residual, const HcPreOutput& site) const {
    return run1("hc_post", Call{{cfg.hc_mult},
                                {},
                                {per_row("f", f), per_row("residual", residual), per_row("post", site.post),
                                 per_row("comb", site.comb)}});
  }

  // The window (and HCA) lists of a call's query rows (spec 02 §2.8; the index_builders op).
  IndexLists index_lists(std::int64_t start_pos, std::int64_t s, std::int64_t ratio, std::int64_t offset) const {
    const std::int64_t rows = start_pos == 0 ? s : 1;
    std::vector<std::int64_t> query(static_cast<std::size_t>(rows));
    for (std::size_t t = 0; t < query.size(); ++t) query[t] = static_cast<std::int64_t>(t);
    const Array l =
        run("index_builders",
            Call{{start_pos, rows, cfg.window_size, ratio, offset}, {}, {integers("query", query, rows, 1)}})
            .at(0);
    IndexLists out(l.rows, l.cols);
    for (std::size_t i = 0; i < out.data.size(); ++i) out.data[i] = static_cast<std::int32_t>(l.f32[i]);
    return out;
  }

  // spec 02 §2.7 steps 4–7 by the indexer_topk op: the scores and the lists of the indexer's
  // queries o.q, o.weights against the indexer cache's first nk entries; the margins (host step)
  // are official mode's C4 top-k of the op's scores (Indexer::run).
  void indexer_select(IndexerOutput& o, const IndexerState& ist, std::int64_t nk, std::int64_t ratio, bool prefill,
                      std::int64_t offset) const {
    const std::int64_t s = o.weights.rows(), nI = cfg.index_n_heads, cI = cfg.index_head_dim;
    o.margins.resize(static_cast<std::size_t>(s));
    if (nk == 0) {  // nothing to score: empty scores and lists, the margins of an empty top-k
      o.scores = Mat(s, 0);
      o.lists = IndexLists(s, 0);
      for (TopkMargin& m : o.margins) m = topk(std::vector<double>{}, 0).margin;
      return;
    }
    std::vector<std::int64_t> visible(static_cast<std::size_t>(s), nk);
    // prefill's causal mask (spec 02 §2.7 step 5): query t sees the entries τ < ⌊(t + 1)/m⌋
    if (prefill)
      for (std::int64_t t = 0; t < s; ++t) visible[static_cast<std::size_t>(t)] = (t + 1) / ratio;
    const Mat q = Eigen::Map<const Mat>(o.q.data(), s, nI * cI);
    const Outputs r =
        run("indexer_topk", Call{{nI, cfg.index_topk, offset},
                                 {},
                                 {per_row("q", q), per_row("weights", o.weights), integers("visible", visible, s, 1),
                                  shared_mat("cache", ist.cache.topRows(nk))}});
    o.scores = ops::to_mat(r.at(0));
    const Array& list = r.at(1);
    o.lists = IndexLists(list.rows, list.cols);
    for (std::size_t i = 0; i < o.lists.data.size(); ++i) o.lists.data[i] = static_cast<std::int32_t>(list.f32[i]);
    for (std::int64_t t = 0; t < s; ++t) {
      const std::vector<double> row(o.scores.row(t).data(), o.scores.row(t).data() + nk);
      o.margins[static_cast<std::size_t>(t)] = topk(row, list.cols).margin;
    }
  }

  // spec 02 §2.11.2 steps 1–7 (Attention::prefill, start_pos 0: st reset) and §2.11.3 steps 1–6
  // (Attention::decode, start_pos = st.next_pos: one token).
  AttentionOutput attention(const Layer& L, std::int64_t layer, const Mat& x, std::int64_t start_pos,
                            AttentionState& st) const {
    const std::int64_t s = x.rows(), win = cfg.window_size, c = cfg.head_dim, rd = cfg.rope_head_dim;
    const bool prefill = start_pos == 0;
    if (prefill) st = Attention::allocate_state(cfg, layer);
    AttentionOutput out;
    // 1. §2.4 query path, §2.5 window KV path (Attention::project).
    out.q_r = rmsnorm(linear(x, L.wq_a), L.q_norm);
    out.q = linear(out.q_r, L.wq_b);
    out.q = run1("head_rmsnorm", Call{{c}, {cfg.norm_eps}, {per_row("q", out.q)}});
    out.q = rope(out.q, L.rope, start_pos, false);
    out.kv = rope(rmsnorm(linear(x, L.wkv), L.kv_norm), L.rope, start_pos, false);
    out.kv.leftCols(c - rd) = fp8_simulated(out.kv.leftCols(c - rd));  // §2.5 step 4: FP8 of the nope dims
    // 2–3. the lists: the window part ‖ the HCA part (ratio 128) by the index_builders op; a CSA
    // layer's compressed part is the indexer's, concatenated on the host (data movement).
    IndexLists lists = index_lists(start_pos, s, L.ratio == 128 ? L.ratio : 0, prefill ? s : win);
    if (L.indexer) {
      out.indexer = indexer(L, x, out.q_r, start_pos, st.indexer, prefill ? s : win);
      lists = concat_lists(lists, out.indexer->lists);
    }
    out.lists = lists;
    // The window ring (host memory), then the compressed entries of this call (the compressor).
    for (std::int64_t t = std::max<std::int64_t>(0, s - win); t < s; ++t)
      st.window.row((start_pos + t) % win) = out.kv.row(t);
    if (L.ratio > 0) {
      out.compressed = compress(*L.compressor, L.rope, x, start_pos, st.compressor);
      for (std::int64_t r = 0; r < out.compressed.count(); ++r) {
        st.compressed.row(out.compressed.first + r) = out.compressed.entries.row(r);
        st.n_compressed = std::max(st.n_compressed, out.compressed.first + r + 1);
      }
    }
    // The kv rows the lists index: prefill [this call's kv ‖ its compressed entries], decode the
    // whole cache tensor [ring ‖ compressed rows] (Attention::prefill step 6, decode step 6).
    Mat kv_all;
    if (prefill) {
      const std::int64_t n = out.compressed.count();
      kv_all.resize(s + n, c);
      kv_all.topRows(s) = out.kv;
      if (n > 0) kv_all.bottomRows(n) = out.compressed.entries;
    } else {
      kv_all.resize(win + (L.ratio > 0 ? st.compressed.rows() : 0), c);
      kv_all.topRows(win) = st.window;
      if (L.ratio > 0) kv_all.bottomRows(st.compressed.rows()) = st.compressed;
    }
    // sparse attention with the sink, q viewed [s·H, c] = [s, H·c] rows.
    out.attn =
        run1("sparse_attention", Call{{cfg.n_heads},
                                      {1.0 / std::sqrt(static_cast<double>(c))},
                                      {per_row("q", out.q), integers("lists", lists.data, lists.rows, lists.width),
                                       shared_mat("kv", kv_all), L.sink}});
    // §2.10: inverse RoPE, grouped wo_a, wo_b.
    out.o = rope(out.attn, L.rope, start_pos, true);
    out.o_a = run1("grouped_projection", Call{{cfg.o_groups}, {}, {per_row("o", out.o), L.wo_a}});
    out.out = linear(out.o_a, L.wo_b);
    st.next_pos = start_pos + s;
    return out;
  }

  // spec 05 §5.2 steps 1–6 (Block::forward).
  BlockOutput block(const Layer& L, std::int64_t layer, const Mat& x, const std::vector<std::int64_t>& ids,
                    std::int64_t start_pos, AttentionState& st) const {
    BlockOutput o;
    o.hc_attn = hc_pre(x, L.hc_attn);
    o.attn_norm = rmsnorm(o.hc_attn.y, L.attn_norm);
    o.attn = attention(L, layer, o.attn_norm, start_pos, st);
    o.x_mid = hc_post(o.attn.out, x, o.hc_attn);
    o.hc_ffn = hc_pre(o.x_mid, L.hc_ffn);
    o.ffn_norm = rmsnorm(o.hc_ffn.y, L.ffn_norm);
    o.ffn = moe(L, o.ffn_norm, ids);
    o.x_out = hc_post(o.ffn.out, o.x_mid, o.hc_ffn);
    return o;
  }

  // spec 05 §5.3 (head_forward): hc_head and the norm on every row, the logits of the last.
  HeadOutput head_of(const Mat& x, const OpHead& w) const {
    HeadOutput h;
    h.hc_head =
        run1("hc_head", Call{{cfg.hc_mult}, {cfg.hc_eps, cfg.norm_eps}, {per_row("x", x), w.fn, w.base, w.scale}});
    h.norm = rmsnorm(h.hc_head, w.norm);
    h.logits = linear(h.norm.bottomRows(1), head);
    return h;
  }

  // spec 05 §5.5 steps 1–3 (MtpBlock::input_state): X = bf16(e_proj(enorm(embed[ids])) broadcast
  // over the streams + h_proj(hnorm(H)) of every stream).
  Mat mtp_input(const Mtp& mt, const Mat& h, const std::vector<std::int64_t>& ids) const {
    const auto s = static_cast<std::int64_t>(ids.size());
    const std::int64_t n = cfg.hc_mult, d = cfg.dim;
    const Mat e = rmsnorm(embedding(ids), mt.enorm);
    const Mat streams = Eigen::Map<const Mat>(h.data(), s * n, d);
    const Mat pe = linear(e, mt.e_proj);
    const Mat ph = linear(rmsnorm(streams, mt.hnorm), mt.h_proj);
    Mat pe_streams(s * n, d);  // e_proj's row t broadcast over token t's streams (data movement)
    for (std::int64_t t = 0; t < s; ++t)
      for (std::int64_t k = 0; k < n; ++k) pe_streams.row(t * n + k) = pe.row(t);
    const Mat x = run1("add", Call{{1}, {}, {per_row("a", pe_streams), per_row("b", ph)}});  // bf16(fl32(+)), C6
    return Eigen::Map<const Mat>(x.data(), s, n * d);
  }

  Mat embedding(const std::vector<std::int64_t>& ids) const {
    return run1("embedding", Call{{}, {}, {integers("ids", ids, static_cast<std::int64_t>(ids.size()), 1), embed}});
  }

  // spec 03 §3.1 (the gate op) and §3.3 (the combine: host step).
  MoeOutput moe(const Layer& L, const Mat& x, const std::vector<std::int64_t>& ids) const {
    const std::int64_t T = x.rows(), k = cfg.n_activated_experts;
    const bool hash = L.bias.empty();
    const Outputs g = run("gate", Call{{k, static_cast<std::int64_t>(cfg.score_func), cfg.vocab_size},
                                       {cfg.route_scale},
                                       {per_row("x", x), integers("token_ids", ids, T, 1), L.gate_weight,
                                        hash ? Array::shared("bias", {}) : L.gate_bias,
                                        hash ? L.gate_table : Array::shared("tid2eid", {})}});
    MoeOutput out;
    out.gate.weights = ops::to_mat(g.at(0));
    out.gate.scores = ops::to_mat(g.at(2));
    for (const float e : g.at(1).f32) out.gate.indices.push_back(static_cast<std::int64_t>(e));
    // The routing margins (host step): official mode's C4 top-k of fl32(s + b) (Gate::forward).
    for (std::int64_t t = 0; t < T; ++t) {
      if (hash) {
        out.gate.margins.push_back(RoutingMargin{kInf, -kInf, kInf, 0.0, false});
        continue;
      }
      std::vector<double> biased(L.bias.size());
      for (std::size_t e = 0; e < biased.size(); ++e)
        biased[e] = kOfficial.add(out.gate.scores(t, static_cast<Eigen::Index>(e)), L.bias[e]);
      const TopkMargin m = topk(biased, k).margin;
      out.gate.margins.push_back(RoutingMargin{m.kth, m.next, m.gap, m.bound, m.redecided});
    }
    // spec 03 §3.3: the experts in ascending id order, the shared expert, bf16 (the moe_combine op).
    Call combine{L.combine_ints,
                 {cfg.swiglu_limit},
                 {per_row("x", x), per_row("weights", out.gate.weights), integers("indices", out.gate.indices, T, k)}};
    combine.inputs.insert(combine.inputs.end(), L.experts.begin(), L.experts.end());
    out.out = run1("moe_combine", std::move(combine));
    return out;
  }
};

GpuModel::GpuModel(const ModelConfig& cfg, const ModelWeights& weights, OpBackend backend) : backend_(backend) {
  if (backend == OpBackend::kDevice && !ops::device_available())
    throw std::runtime_error("GpuModel: no GPU: " + ops::device_unavailable_reason());
  impl_ = std::make_unique<Impl>(cfg, weights, backend);
}

GpuModel::~GpuModel() = default;

void GpuModel::replace_op(const std::string& stem, ops::Fn fn) {
  if (ops::find_op(stem) == nullptr) throw std::invalid_argument("GpuModel: no op " + stem + " in the registry");
  impl_->replaced[stem] = std::move(fn);
}

GpuModel::Sequence GpuModel::new_sequence() const {
  Sequence seq;
  const ModelConfig& c = impl_->cfg;
  for (std::int64_t l = 0; l < c.n_layers; ++l) seq.layers.push_back(Attention::allocate_state(c, l));
  for (std::int64_t i = 0; i < c.n_mtp_layers; ++i) seq.mtp.push_back(Attention::allocate_state(c, c.n_layers + i));
  return seq;
}

GpuModel::Output GpuModel::forward(const std::vector<std::int64_t>& ids, std::int64_t start_pos, Sequence& seq,
                                   Recorder* rec, const std::string& step, const std::vector<std::int64_t>* mtp_ids,
                                   const ProgressFn& progress) const {
  const Impl& m = *impl_;
  const ModelConfig& c = m.cfg;
  const auto s = static_cast<std::int64_t>(ids.size());
  const auto bad = [](const std::string& why) { throw std::invalid_argument("GpuModel: " + why); };
  if (s == 0) bad("empty sequence");
  if (start_pos < 0) bad("negative start_pos");
  if (start_pos > 0 && s != 1) bad("decode (start_pos > 0) takes one token");
  if (start_pos != seq.next_pos)
    bad("start_pos " + std::to_string(start_pos) + " but the sequence is at position " + std::to_string(seq.next_pos));
  if (static_cast<std::int64_t>(seq.layers.size()) != c.n_layers ||
      static_cast<std::int64_t>(seq.mtp.size()) != c.n_mtp_layers)
    bad("sequence state of another model");
  if (start_pos + s > c.max_seq_len)
    bad("positions up to " + std::to_string(start_pos + s - 1) + " exceed max_seq_len " +
        std::to_string(c.max_seq_len));
  const std::string pre = step.empty() ? std::string() : step + "/";
  m.traffic = ops::CallBytes{};
  m.op_times.clear();
  const auto done = [&](const std::string& module) {
    if (progress) progress(module);
  };
  // §5.1: the embedding, expanded to hc_mult streams.
  const Mat emb = m.embedding(ids);
  record_batch(rec, pre + "embed/out", {emb});
  Mat x = expand_streams(emb, c.hc_mult);
  // §5.2: the blocks.
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const BlockOutput o =
        m.block(m.layers[static_cast<std::size_t>(l)], l, x, ids, start_pos, seq.layers[static_cast<std::size_t>(l)]);
    x = o.x_out;
    record_block(rec, step, "layers." + std::to_string(l), {o});
    done("layers." + std::to_string(l));
  }
  // §5.3: the head.
  Output out;
  const HeadOutput h = m.head_of(x, m.final_head);
  record_batch(rec, pre + "hc_head/out", {h.hc_head});
  record_batch(rec, pre + "norm/out", {h.norm});
  record_batch(rec, pre + "head/out", {h.logits});
  out.logits = h.logits;
  done("head");
  // §5.5: the MTP block on the final state with the next tokens.
  if (mtp_ids != nullptr && !m.mtp.empty()) {
    if (static_cast<std::int64_t>(mtp_ids->size()) != s) bad("mtp_ids: same length as ids expected");
    const Impl::Mtp& mt = m.mtp.front();
    const Mat x_in = m.mtp_input(mt, x, *mtp_ids);
    record_batch(rec, pre + "mtp.0/in", {x_in});
    const BlockOutput o = m.block(mt.block, c.n_layers, x_in, *mtp_ids, start_pos, seq.mtp.front());
    record_block(rec, step, "mtp.0", {o});
    const HeadOutput mh = m.head_of(o.x_out, mt.head);
    record_batch(rec, pre + "mtp.0.hc_head/out", {mh.hc_head});
    record_batch(rec, pre + "mtp.0.norm/out", {mh.norm});
    record_batch(rec, pre + "mtp.0.head/out", {mh.logits});
    out.mtp_logits = mh.logits;
    done("mtp.0");
  }
  seq.next_pos = start_pos + s;
  out.bytes = m.traffic;
  out.op_times = m.op_times;
  return out;
}

}  // namespace dsv4::gpu
