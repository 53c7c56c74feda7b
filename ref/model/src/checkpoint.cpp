// Checkpoint names of every parameter (official code inference/model.py; converter
// inference/convert.py for the Hugging Face naming). See checkpoint.hpp.
#include "dsv4/model/checkpoint.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

namespace {

std::string str(std::int64_t v) { return std::to_string(v); }

// ---- the one list of parameters (official model.py module tree) ----

WeightKind default_linear_kind(const ModelConfig& c) {
  return c.dtype == "bf16" ? WeightKind::kBF16 : WeightKind::kFP8;
}

WeightKind expert_kind(const ModelConfig& c) {
  if (c.expert_dtype == "fp4") return WeightKind::kFP4;
  if (c.expert_dtype == "fp8") return WeightKind::kFP8;
  return WeightKind::kBF16;
}

void visit_compressor(const ModelConfig& c, const std::string& p, CompressorWeights& w, const CompressorSpec& s,
                      ParamVisitor& v) {
  const std::int64_t kd = (s.ratio == 4 ? 2 : 1) * s.head_dim;
  v.linear(p + ".wkv", w.wkv, WeightKind::kFP32, kd, c.dim);
  v.linear(p + ".wgate", w.wgate, WeightKind::kFP32, kd, c.dim);
  v.matrix(p + ".ape", w.ape, s.ratio, kd);
  v.vec(p + ".norm.weight", w.norm, s.head_dim);
}

void visit_hc(const ModelConfig& c, const std::string& p, HcWeights& w, ParamVisitor& v) {
  const std::int64_t n = c.hc_mult, mix = (2 + n) * n;
  v.matrix(p + "_fn", w.fn, mix, n * c.dim);
  v.vec(p + "_base", w.base, mix);
  v.vec(p + "_scale", w.scale, 3);
}

void visit_hc_head(const ModelConfig& c, const std::string& p, HcHeadWeights& w, ParamVisitor& v) {
  const std::int64_t n = c.hc_mult;
  v.matrix(p + "hc_head_fn", w.fn, n, n * c.dim);
  v.vec(p + "hc_head_base", w.base, n);
  Vec s(1);
  s(0) = w.scale;
  v.vec(p + "hc_head_scale", s, 1);
  w.scale = s(0);
}

void visit_expert(const std::string& p, ExpertWeights& e, WeightKind kind, std::int64_t d, std::int64_t inter,
                  ParamVisitor& v) {
  v.linear(p + ".w1", e.w1, kind, inter, d);
  v.linear(p + ".w2", e.w2, kind, d, inter);
  v.linear(p + ".w3", e.w3, kind, inter, d);
}

// spec 02 §2.1 parameters of Attention (and its compressor / indexer).
void visit_attention(const ModelConfig& c, std::int64_t layer, const std::string& p, AttentionWeights& w,
                     ParamVisitor& v) {
  const WeightKind k = default_linear_kind(c);
  const std::int64_t H = c.n_heads, hd = c.head_dim, G = c.o_groups, m = c.compress_ratio(layer);
  v.linear(p + ".wq_a", w.wq_a, k, c.q_lora_rank, c.dim);
  v.vec(p + ".q_norm.weight", w.q_norm, c.q_lora_rank);
  v.linear(p + ".wq_b", w.wq_b, k, H * hd, c.q_lora_rank);
  v.linear(p + ".wkv", w.wkv, k, hd, c.dim);
  v.vec(p + ".kv_norm.weight", w.kv_norm, hd);
  v.linear(p + ".wo_a", w.wo_a, WeightKind::kBF16, G * c.o_lora_rank, H * hd / G);
  v.linear(p + ".wo_b", w.wo_b, k, c.dim, G * c.o_lora_rank);
  Vec sink = Eigen::Map<const Vec>(w.attn_sink.data(), static_cast<Eigen::Index>(w.attn_sink.size()));
  v.vec(p + ".attn_sink", sink, H);
  w.attn_sink.assign(sink.data(), sink.data() + sink.size());
  if (m > 0) {
    if (!w.compressor) w.compressor.emplace();
    visit_compressor(c, p + ".compressor", *w.compressor, CompressorSpec::main(c, m), v);
  } else {
    w.compressor.reset();
  }
  if (m == 4) {
    if (!w.indexer) w.indexer.emplace();
    v.linear(p + ".indexer.wq_b", w.indexer->wq_b, k, c.index_n_heads * c.index_head_dim, c.q_lora_rank);
    v.linear(p + ".indexer.weights_proj", w.indexer->weights_proj, WeightKind::kBF16, c.index_n_heads, c.dim);
    visit_compressor(c, p + ".indexer.compressor", w.indexer->compressor, CompressorSpec::indexer(c), v);
  } else {
    w.indexer.reset();
  }
}

// spec 03 parameters of MoE.
void visit_moe(const ModelConfig& c, std::int64_t layer, const std::string& p, MoeWeights& w, ParamVisitor& v) {
  const std::int64_t E = c.n_routed_experts;
  v.linear(p + ".gate", w.gate.weight, WeightKind::kBF16, E, c.dim);
  if (layer < c.n_hash_layers) {
    v.ids(p + ".gate.tid2eid", w.gate.tid2eid, c.vocab_size, c.n_activated_experts);
    w.gate.bias.resize(0);
  } else {
    v.vec(p + ".gate.bias", w.gate.bias, E);
    w.gate.tid2eid.clear();
  }
  w.experts.resize(static_cast<std::size_t>(E));
  for (std::int64_t e = 0; e < E; ++e)
    visit_expert(p + ".experts." + str(e), w.experts[static_cast<std::size_t>(e)], expert_kind(c), c.dim,
                 c.moe_inter_dim, v);
  visit_expert(p + ".shared_experts", w.shared, default_linear_kind(c), c.dim, c.moe_inter_dim, v);
}

void visit_block(const ModelConfig& c, std::int64_t layer, const std::string& p, BlockWeights& w, ParamVisitor& v) {
  visit_hc(c, p + ".hc_attn", w.hc_attn, v);
  visit_hc(c, p + ".hc_ffn", w.hc_ffn, v);
  v.vec(p + ".attn_norm.weight", w.attn_norm, c.dim);
  v.vec(p + ".ffn_norm.weight", w.ffn_norm, c.dim);
  visit_attention(c, layer, p + ".attn", w.attn, v);
  visit_moe(c, layer, p + ".ffn", w.ffn, v);
}

}  // namespace

void visit_model_parameters(const ModelConfig& c, ModelWeights& w, ParamVisitor& v) {
  v.matrix("embed.weight", w.embed, c.vocab_size, c.dim);
  w.layers.resize(static_cast<std::size_t>(c.n_layers));
  for (std::int64_t l = 0; l < c.n_layers; ++l)
    visit_block(c, l, "layers." + str(l), w.layers[static_cast<std::size_t>(l)], v);
  v.vec("norm.weight", w.norm, c.dim);
  v.linear("head", w.head, WeightKind::kFP32, c.vocab_size, c.dim);
  visit_hc_head(c, "", w.hc_head, v);
  w.mtp.resize(static_cast<std::size_t>(c.n_mtp_layers));
  for (std::int64_t i = 0; i < c.n_mtp_layers; ++i) {
    const std::string p = "mtp." + str(i);
    MtpWeights& m = w.mtp[static_cast<std::size_t>(i)];
    v.linear(p + ".e_proj", m.e_proj, default_linear_kind(c), c.dim, c.dim);
    v.linear(p + ".h_proj", m.h_proj, default_linear_kind(c), c.dim, c.dim);
    v.vec(p + ".enorm.weight", m.enorm, c.dim);
    v.vec(p + ".hnorm.weight", m.hnorm, c.dim);
    v.vec(p + ".norm.weight", m.norm, c.dim);
    visit_hc_head(c, p + ".", m.hc_head, v);
    visit_block(c, c.n_layers + i, p, m.block, v);
  }
}

namespace {

[[noreturn]] void fail(const std::string& name, const std::string& why) { throw CheckpointError(name + ": " + why); }

}  // namespace

// ---- the FP8 form of wo_a (spec 00 §0.6) ----

// inference/convert.py: an FP8 wo_a with its 128×128 scale becomes bf16(float(w) · scale).
Tensor fp8_weight_to_bf16(const std::string& name, const Tensor& w, const Tensor& scale) {
  if (w.dtype() != DType::kE4M3 || w.shape().size() != 2)
    throw CheckpointError(name + ": dtype " + std::string(dtype_name(w.dtype())) + " shape " + shape_string(w.shape()) +
                          ", expected a 2-d F8_E4M3 weight");
  const std::int64_t n = w.dim(0), k = w.dim(1), tk = (k + 127) / 128;
  if (scale.dtype() != DType::kE8M0 || scale.shape() != std::vector<std::int64_t>{(n + 127) / 128, tk})
    throw CheckpointError(name + ".scale: dtype " + std::string(dtype_name(scale.dtype())) + " shape " +
                          shape_string(scale.shape()) + ", expected F8_E8M0 " + shape_string({(n + 127) / 128, tk}));
  Tensor o(DType::kBF16, {n, k});
  const auto codes = w.values<std::uint8_t>();
  const auto sc = scale.values<std::uint8_t>();
  auto out = o.values<std::uint16_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < k; ++j) {
      const double s = e8m0_to_float(sc[static_cast<std::size_t>((i / 128) * tk + j / 128)]);
      out[static_cast<std::size_t>(i * k + j)] =
          float_to_bf16(e4m3_to_float(codes[static_cast<std::size_t>(i * k + j)]) * static_cast<float>(s));
    }
  }
  return o;
}

// The inverse for weights on the FP8 grid: per 128×128 tile the smallest power of two 2^e with
// amax ≤ 448·2^e (e4m3's largest finite value), codes RNE of v·2^-e; then fp8_weight_to_bf16 of the
// result must give back every bf16 bit pattern.
std::pair<Tensor, Tensor> bf16_weight_to_fp8(const std::string& name, const Tensor& w) {
  if (w.dtype() != DType::kBF16 || w.shape().size() != 2)
    throw CheckpointError(name + ": dtype " + std::string(dtype_name(w.dtype())) + ", expected a 2-d BF16 weight");
  const std::int64_t n = w.dim(0), k = w.dim(1), tn = (n + 127) / 128, tk = (k + 127) / 128;
  const auto bits = w.values<std::uint16_t>();
  const auto value = [&](std::int64_t i, std::int64_t j) {
    return static_cast<double>(bf16_to_float(bits[static_cast<std::size_t>(i * k + j)]));
  };
  Tensor codes(DType::kE4M3, {n, k});
  Tensor scale(DType::kE8M0, {tn, tk});
  auto c = codes.values<std::uint8_t>();
  auto sc = scale.values<std::uint8_t>();
  for (std::int64_t a = 0; a < tn; ++a) {
    for (std::int64_t b = 0; b < tk; ++b) {
      const std::int64_t i1 = std::min(n, a * 128 + 128), j1 = std::min(k, b * 128 + 128);
      double amax = 0.0;
      for (std::int64_t i = a * 128; i < i1; ++i)
        for (std::int64_t j = b * 128; j < j1; ++j) {
          if (!std::isfinite(value(i, j)))
            fail(name, "element " + str(i * k + j) + " is not finite; it has no FP8 form");
          amax = std::max(amax, std::abs(value(i, j)));
        }
      int e = 0;
      if (amax > 0.0) {
        e = std::ilogb(amax) - 8;  // 448 < 2^9: 448·2^e ≥ amax needs e ≥ ilogb(amax) − 8
        while (std::ldexp(448.0, e) < amax) ++e;
        while (std::ldexp(448.0, e - 1) >= amax) --e;
      }
      if (e < -127 || e > 127)
        fail(name, "tile [" + str(a) + ", " + str(b) + "] needs the scale 2^" + str(e) + ", outside E8M0's range");
      sc[static_cast<std::size_t>(a * tk + b)] = static_cast<std::uint8_t>(127 + e);
      for (std::int64_t i = a * 128; i < i1; ++i)
        for (std::int64_t j = b * 128; j < j1; ++j)
          c[static_cast<std::size_t>(i * k + j)] = double_to_e4m3(std::ldexp(value(i, j), -e));
    }
  }
  const Tensor back = fp8_weight_to_bf16(name, codes, scale);
  const auto bb = back.values<std::uint16_t>();
  for (std::size_t i = 0; i < bb.size(); ++i)
    if (bb[i] != bits[i])
      fail(name, "element " + str(static_cast<std::int64_t>(i)) + " = " +
                     std::to_string(static_cast<double>(bf16_to_float(bits[i]))) +
                     " is not on the FP8 grid of its 128x128 tile; the published Hugging Face checkpoint stores this "
                     "weight in FP8 E4M3 with E8M0 scales");
  return {std::move(codes), std::move(scale)};
}

bool published_fp8_in_hf(const std::string& name) { return name.ends_with(".wo_a"); }

// ---- loading ----

namespace {

void expect_shape(const std::string& name, const Tensor& t, const std::vector<std::int64_t>& shape) {
  if (t.shape() != shape) fail(name, "shape " + shape_string(t.shape()) + ", expected " + shape_string(shape));
}

void expect_dtype(const std::string& name, const Tensor& t, std::initializer_list<DType> ok) {
  for (const DType d : ok)
    if (t.dtype() == d) return;
  std::string want;
  for (const DType d : ok) want += (want.empty() ? "" : " or ") + std::string(dtype_name(d));
  fail(name, "dtype " + std::string(dtype_name(t.dtype())) + ", expected " + want);
}

// The value of every element of a bf16/fp32 tensor, as double.
std::vector<double> float_values(const std::string& name, const Tensor& t) {
  expect_dtype(name, t, {DType::kBF16, DType::kF32});
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  if (t.dtype() == DType::kBF16) {
    const auto b = t.values<std::uint16_t>();
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_float(b[i]);
  } else {
    const auto f = t.values<float>();
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = f[i];
  }
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) fail(name, "element " + str(static_cast<std::int64_t>(i)) + " is not finite");
  return v;
}

Tensor as_f32(const std::string& name, const Tensor& t) {
  const std::vector<double> v = float_values(name, t);
  Tensor o(DType::kF32, t.shape());
  auto f = o.values<float>();
  for (std::size_t i = 0; i < v.size(); ++i) f[i] = static_cast<float>(v[i]);
  return o;
}

class LoadVisitor final : public ParamVisitor {
 public:
  explicit LoadVisitor(const TensorLookup& lookup) : lookup_(lookup) {}

  void linear(const std::string& name, LinearWeight& w, WeightKind kind, std::int64_t n, std::int64_t k) override {
    const std::string wn = name + ".weight", sn = name + ".scale";
    Tensor t = need(wn);
    try {
      switch (kind) {
        case WeightKind::kFP32:
          expect_shape(wn, t, {n, k});
          w = LinearWeight::fp32(as_f32(wn, t));
          return;
        case WeightKind::kBF16:
          expect_shape(wn, t, {n, k});
          if (t.dtype() == DType::kE4M3) t = fp8_weight_to_bf16(wn, t, need(sn));  // HF form of wo_a
          expect_dtype(wn, t, {DType::kBF16});
          w = LinearWeight::bf16(std::move(t));
          return;
        case WeightKind::kFP8: {
          expect_dtype(wn, t, {DType::kE4M3});
          expect_shape(wn, t, {n, k});
          Tensor s = need(sn);
          expect_dtype(sn, s, {DType::kE8M0});
          expect_shape(sn, s, {(n + 127) / 128, (k + 127) / 128});
          w = LinearWeight::fp8(std::move(t), std::move(s));
          return;
        }
        case WeightKind::kFP4: {
          if (t.dtype() == DType::kI8 || t.dtype() == DType::kU8) {  // HF: int8, two codes per byte
            expect_shape(wn, t, {n, k / 2});
            Tensor p(DType::kE2M1x2, {n, k});
            std::memcpy(p.bytes(), t.bytes(), t.nbytes());
            t = std::move(p);
          }
          expect_dtype(wn, t, {DType::kE2M1x2});
          expect_shape(wn, t, {n, k});
          Tensor s = need(sn);
          expect_dtype(sn, s, {DType::kE8M0});
          expect_shape(sn, s, {n, k / 32});
          w = LinearWeight::fp4(std::move(t), std::move(s));
          return;
        }
      }
    } catch (const std::invalid_argument& e) {
      fail(wn, e.what());
    }
  }

  void matrix(const std::string& name, Mat& m, std::int64_t rows, std::int64_t cols) override {
    const Tensor t = need(name);
    expect_shape(name, t, {rows, cols});
    const std::vector<double> v = float_values(name, t);
    m = Eigen::Map<const Mat>(v.data(), rows, cols);
  }

  void vec(const std::string& name, Vec& out, std::int64_t n) override {
    const Tensor t = need(name);
    expect_shape(name, t, {n});
    const std::vector<double> v = float_values(name, t);
    out = Eigen::Map<const Vec>(v.data(), n);
  }

  void ids(const std::string& name, std::vector<std::int64_t>& v, std::int64_t rows, std::int64_t cols) override {
    const Tensor t = need(name);
    expect_dtype(name, t, {DType::kI32, DType::kI64});
    expect_shape(name, t, {rows, cols});
    v.clear();
    if (t.dtype() == DType::kI32) {
      for (const std::int32_t x : t.values<std::int32_t>()) v.push_back(x);
    } else {
      for (const std::int64_t x : t.values<std::int64_t>()) v.push_back(x);
    }
  }

 private:
  Tensor need(const std::string& name) const {
    std::optional<Tensor> t = lookup_(name);
    if (!t) fail(name, "missing from the checkpoint");
    return std::move(*t);
  }

  const TensorLookup& lookup_;
};

// ---- writing ----

Tensor vector_tensor(const double* v, std::vector<std::int64_t> shape) {
  Tensor t(DType::kF32, std::move(shape));
  auto f = t.values<float>();
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(v[i]);
  return t;
}

// spec 00 §0.6: the fp32-in-code matrices and vectors the published checkpoint stores in bf16 (the
// embedding and every norm weight); the others (hc_*, attn_sink, ape, gate.bias) are fp32.
bool published_bf16(const std::string& official) {
  return official == "embed.weight" || official.ends_with("norm.weight");
}

// The bf16 form of `n` values that must be bf16 numbers (CheckpointError naming the tensor otherwise:
// the published form cannot hold it without rounding).
template <class T>
Tensor exact_bf16_tensor(const std::string& name, const T* v, std::vector<std::int64_t> shape) {
  Tensor t(DType::kBF16, std::move(shape));
  auto b = t.values<std::uint16_t>();
  for (std::size_t i = 0; i < b.size(); ++i) {
    b[i] = double_to_bf16(static_cast<double>(v[i]));
    if (static_cast<double>(bf16_to_float(b[i])) != static_cast<double>(v[i]))
      fail(name, "element " + str(static_cast<std::int64_t>(i)) + " = " + std::to_string(static_cast<double>(v[i])) +
                     " is not a bf16 number; the published checkpoint stores this parameter in bf16");
  }
  return t;
}

// The published dtype and shape of a linear's weight (and its scale, when quantised) — spec 00 §0.6.
struct LinearForm {
  DType weight = DType::kBF16;
  std::vector<std::int64_t> weight_shape;
  std::optional<std::vector<std::int64_t>> scale_shape;  // E8M0
};

LinearForm published_linear(WeightKind kind, std::int64_t n, std::int64_t k, CheckpointNaming naming) {
  switch (kind) {
    case WeightKind::kFP8:
      return {DType::kE4M3, {n, k}, std::vector<std::int64_t>{(n + 127) / 128, (k + 127) / 128}};
    case WeightKind::kFP4:
      if (naming == CheckpointNaming::kHuggingFace)
        return {DType::kI8, {n, k / 2}, std::vector<std::int64_t>{n, k / 32}};
      return {DType::kE2M1x2, {n, k}, std::vector<std::int64_t>{n, k / 32}};
    case WeightKind::kBF16:
    case WeightKind::kFP32:  // compressor wkv/wgate, head: bf16 in the file, fp32 in code
      return {DType::kBF16, {n, k}, std::nullopt};
  }
  return {};
}

class SaveVisitor final : public ParamVisitor {
 public:
  SaveVisitor(CheckpointNaming naming, CheckpointForm form) : naming_(naming), form_(form) {}

  void linear(const std::string& name, LinearWeight& w, WeightKind, std::int64_t, std::int64_t) override {
    if (form_ == CheckpointForm::kBF16 && (w.kind == WeightKind::kFP8 || w.kind == WeightKind::kFP4)) {
      put(name + ".weight", LinearWeight::bf16_from(w.values()).weight);
      return;
    }
    if (form_ == CheckpointForm::kPublished && naming_ == CheckpointNaming::kHuggingFace && published_fp8_in_hf(name) &&
        w.kind == WeightKind::kBF16) {
      auto [codes, scale] = bf16_weight_to_fp8(name + ".weight", w.weight);
      put(name + ".weight", std::move(codes));
      put(name + ".scale", std::move(scale));
      return;
    }
    if (form_ == CheckpointForm::kPublished && w.kind == WeightKind::kFP32) {
      const Tensor& f = w.weight;
      put(name + ".weight", exact_bf16_tensor(name + ".weight", f.values<float>().data(), f.shape()));
      return;
    }
    Tensor t = w.weight;
    if (naming_ == CheckpointNaming::kHuggingFace && w.kind == WeightKind::kFP4) {
      Tensor i8(DType::kI8, {t.dim(0), t.dim(1) / 2});
      std::memcpy(i8.bytes(), t.bytes(), t.nbytes());
      t = std::move(i8);
    }
    put(name + ".weight", std::move(t));
    if (w.kind == WeightKind::kFP8 || w.kind == WeightKind::kFP4) put(name + ".scale", w.scale);
  }
  void matrix(const std::string& name, Mat& m, std::int64_t rows, std::int64_t cols) override {
    put(name, floats(name, m.data(), {rows, cols}));
  }
  void vec(const std::string& name, Vec& v, std::int64_t n) override { put(name, floats(name, v.data(), {n})); }
  void ids(const std::string& name, std::vector<std::int64_t>& v, std::int64_t rows, std::int64_t cols) override {
    if (form_ == CheckpointForm::kPublished) {  // int64 in the published file
      Tensor t(DType::kI64, {rows, cols});
      std::copy(v.begin(), v.end(), t.values<std::int64_t>().begin());
      put(name, std::move(t));
      return;
    }
    Tensor t(DType::kI32, {rows, cols});
    auto o = t.values<std::int32_t>();
    for (std::size_t i = 0; i < v.size(); ++i) o[i] = static_cast<std::int32_t>(v[i]);
    put(name, std::move(t));
  }

  std::map<std::string, Tensor> tensors;

 private:
  Tensor floats(const std::string& name, const double* v, std::vector<std::int64_t> shape) const {
    if (form_ == CheckpointForm::kPublished && published_bf16(name))
      return exact_bf16_tensor(name, v, std::move(shape));
    return vector_tensor(v, std::move(shape));
  }
  void put(const std::string& official, Tensor t) {
    tensors.emplace(naming_ == CheckpointNaming::kHuggingFace ? hf_name_from_official(official) : official,
                    std::move(t));
  }
  CheckpointNaming naming_;
  CheckpointForm form_;
};

// The names, shapes and dtypes SaveVisitor writes in the published form, without weight data.
class ListVisitor final : public ParamVisitor {
 public:
  explicit ListVisitor(CheckpointNaming naming) : naming_(naming) {}

  void linear(const std::string& name, LinearWeight&, WeightKind kind, std::int64_t n, std::int64_t k) override {
    const bool fp8 = naming_ == CheckpointNaming::kHuggingFace && published_fp8_in_hf(name);
    const LinearForm f = published_linear(fp8 ? WeightKind::kFP8 : kind, n, k, naming_);
    put(name + ".weight", f.weight_shape, f.weight);
    if (f.scale_shape) put(name + ".scale", *f.scale_shape, DType::kE8M0);
  }
  void matrix(const std::string& name, Mat&, std::int64_t rows, std::int64_t cols) override {
    put(name, {rows, cols}, published_bf16(name) ? DType::kBF16 : DType::kF32);
  }
  void vec(const std::string& name, Vec&, std::int64_t n) override {
    put(name, {n}, published_bf16(name) ? DType::kBF16 : DType::kF32);
  }
  void ids(const std::string& name, std::vector<std::int64_t>&, std::int64_t rows, std::int64_t cols) override {
    put(name, {rows, cols}, DType::kI64);
  }

  std::vector<CheckpointTensorInfo> tensors;  // in visit order

 private:
  void put(const std::string& official, std::vector<std::int64_t> shape, DType dtype) {
    const std::string n = naming_ == CheckpointNaming::kHuggingFace ? hf_name_from_official(official) : official;
    tensors.push_back({n, std::move(shape), dtype});
  }
  CheckpointNaming naming_;
};

}  // namespace

std::vector<CheckpointTensorInfo> published_checkpoint_tensors(const ModelConfig& c, CheckpointNaming naming) {
  ModelWeights w;  // shaped by the visit, never filled
  ListVisitor v(naming);
  visit_model_parameters(c, w, v);
  return std::move(v.tensors);
}

ModelWeights load_model_weights(const ModelConfig& c, const TensorLookup& lookup) {
  ModelWeights w;
  LoadVisitor v(lookup);
  visit_model_parameters(c, w, v);
  return w;
}

std::map<std::string, Tensor> model_weight_tensors(const ModelConfig& c, ModelWeights& w, CheckpointNaming naming,
                                                   CheckpointForm form) {
  SaveVisitor v(naming, form);
  visit_model_parameters(c, w, v);
  return std::move(v.tensors);
}

std::map<std::string, Tensor> model_weight_tensors(const ModelConfig& c, const ModelWeights& w, CheckpointNaming naming,
                                                   CheckpointForm form) {
  ModelWeights copy = w;
  return model_weight_tensors(c, copy, naming, form);
}

// ---- names ----

namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
}

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (std::size_t at = s.find('.'); at != std::string::npos; at = s.find('.', start)) {
    parts.push_back(s.substr(start, at - start));
    start = at + 1;
  }
  parts.push_back(s.substr(start));
  return parts;
}

std::string join_dots(const std::vector<std::string>& parts) {
  std::string s;
  for (std::size_t i = 0; i < parts.size(); ++i) s += (i ? "." : "") + parts[i];
  return s;
}

// inference/convert.py's key table (Hugging Face component → official component).
const std::vector<std::pair<std::string, std::string>>& hf_key_table() {
  static const std::vector<std::pair<std::string, std::string>> t{{"embed_tokens", "embed"},
                                                                  {"input_layernorm", "attn_norm"},
                                                                  {"post_attention_layernorm", "ffn_norm"},
                                                                  {"q_proj", "wq"},
                                                                  {"q_a_proj", "wq_a"},
                                                                  {"q_a_layernorm", "q_norm"},
                                                                  {"q_b_proj", "wq_b"},
                                                                  {"kv_a_proj_with_mqa", "wkv_a"},
                                                                  {"kv_a_layernorm", "kv_norm"},
                                                                  {"kv_b_proj", "wkv_b"},
                                                                  {"o_proj", "wo"},
                                                                  {"gate_proj", "w1"},
                                                                  {"down_proj", "w2"},
                                                                  {"up_proj", "w3"},
                                                                  {"lm_head", "head"}};
  return t;
}

bool contains(const std::string& s, const char* sub) { return s.find(sub) != std::string::npos; }

}  // namespace

std::string official_name_from_hf(const std::string& hf_name) {
  std::string name = hf_name;
  if (name.rfind("model.", 0) == 0) name = name.substr(6);
  // The converter drops the MTP block's copies of the shared embedding and head.
  if (name.rfind("mtp.", 0) == 0 && (contains(name, "emb") || name.ends_with("head.weight"))) return "";
  replace_all(name, "self_attn", "attn");
  replace_all(name, "mlp", "ffn");
  replace_all(name, "weight_scale_inv", "scale");
  replace_all(name, "e_score_correction_bias", "bias");
  const std::vector<std::string> parts = split_dots(name);
  const bool bare = contains(name, "hc") || contains(name, "attn_sink") || contains(name, "ape");
  if (parts.size() < (bare ? 1u : 2u)) return name;
  const std::string key = bare ? parts.back() : parts[parts.size() - 2];
  for (const auto& [from, to] : hf_key_table()) {
    if (key == from) {
      replace_all(name, from, to);
      break;
    }
  }
  return name;
}

std::string hf_name_from_official(const std::string& official) {
  std::vector<std::string> parts = split_dots(official);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    std::string& p = parts[i];
    if (p == "attn")
      p = "self_attn";
    else if (p == "ffn")
      p = "mlp";
    else if (p == "scale" && i + 1 == parts.size())
      p = "weight_scale_inv";
    else if (p == "bias" && i + 1 == parts.size() && i > 0 && parts[i - 1] == "gate")
      p = "e_score_correction_bias";
    else if (i + 2 == parts.size()) {
      for (const auto& [from, to] : hf_key_table()) {
        if (p == to && from != "q_proj" && from != "o_proj" && from != "kv_a_proj_with_mqa" && from != "kv_b_proj") {
          p = from;
          break;
        }
      }
    }
  }
  return "model." + join_dots(parts);
}

std::map<std::string, std::string> official_name_table(const std::vector<std::string>& file_names) {
  bool hf = false;
  for (const std::string& n : file_names) hf = hf || n.rfind("model.", 0) == 0;
  std::map<std::string, std::string> table;
  for (const std::string& n : file_names) {
    const std::string o = hf ? official_name_from_hf(n) : n;
    if (o.empty()) continue;
    if (!table.emplace(o, n).second)
      throw CheckpointError(n + ": maps to " + o + ", which " + table[o] + " maps to too");
  }
  return table;
}

}  // namespace dsv4
