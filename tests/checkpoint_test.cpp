// Checkpoints (issue #4): synthetic weights written as safetensors in the official and the Hugging
// Face naming, with FP4 and FP8 experts, load back to the same logits bit for bit; the bf16 form
// of the same weights gives the same exact-mode logits; a malformed checkpoint names the tensor.
// ctest-labels: model
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "dsv4/checkpoint/checkpoint_file.hpp"
#include "dsv4/io/safetensors.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4 {
namespace {

const std::vector<std::int64_t> kTokens{5, 17, 900, 3, 44, 1023, 0, 12, 301};

Mat logits_of(Mode mode, const ModelConfig& c, ModelWeights w) {
  const Transformer m(Precision(mode), c, std::move(w));
  std::vector<SequenceState> s{m.new_sequence()};
  return m.forward({kTokens}, 0, s).logits[0];
}

void expect_same_bits(const Mat& a, const Mat& b) {
  ASSERT_EQ(a.cols(), b.cols());
  for (std::int64_t v = 0; v < a.cols(); ++v) ASSERT_EQ(double_bits(a(0, v)), double_bits(b(0, v))) << "logit " << v;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("dsv4_checkpoint_test_" + name + ".safetensors")).string();
}

// Writes, reads back, and compares official-mode logits with the in-memory weights.
void round_trip(const ModelConfig& c, CheckpointNaming naming, const std::string& tag) {
  const ModelWeights w = ModelWeights::synthetic(c, 21);
  const std::string path = temp_path(tag);
  write_checkpoint_file(c, w, path, naming);
  const SafetensorsFile f = SafetensorsFile::open(path);
  if (naming == CheckpointNaming::kHuggingFace) {
    EXPECT_TRUE(f.contains("model.layers.0.self_attn.q_a_proj.weight"));
    EXPECT_TRUE(f.contains("model.layers.0.self_attn.q_a_proj.weight_scale_inv"));
    EXPECT_TRUE(f.contains("model.layers.3.mlp.gate.e_score_correction_bias"));
    EXPECT_TRUE(f.contains("model.layers.0.mlp.experts.1.gate_proj.weight"));
  } else {
    EXPECT_TRUE(f.contains("layers.0.attn.wq_a.weight"));
    EXPECT_TRUE(f.contains("layers.0.ffn.gate.tid2eid"));
    EXPECT_TRUE(f.contains("layers.2.attn.indexer.compressor.ape"));
    EXPECT_TRUE(f.contains("mtp.0.e_proj.scale"));
  }
  const ModelWeights back = load_checkpoint_file(c, path);
  std::filesystem::remove(path);
  expect_same_bits(logits_of(Mode::kOfficial, c, w), logits_of(Mode::kOfficial, c, back));
}

TEST(Checkpoint, RoundTripOfficialNamingFp4Experts) {
  round_trip(builtin_config("tiny"), CheckpointNaming::kOfficial, "off_fp4");
}
TEST(Checkpoint, RoundTripHuggingFaceNamingFp4Experts) {
  round_trip(builtin_config("tiny"), CheckpointNaming::kHuggingFace, "hf_fp4");
}
TEST(Checkpoint, RoundTripFp8Experts) {
  ModelConfig c = builtin_config("tiny");
  c.expert_dtype = "fp8";
  round_trip(c, CheckpointNaming::kOfficial, "off_fp8");
  round_trip(c, CheckpointNaming::kHuggingFace, "hf_fp8");
}

TEST(Checkpoint, HuggingFaceNamesMapLikeTheConverter) {
  EXPECT_EQ(official_name_from_hf("model.layers.7.self_attn.q_a_proj.weight_scale_inv"), "layers.7.attn.wq_a.scale");
  EXPECT_EQ(official_name_from_hf("model.layers.1.input_layernorm.weight"), "layers.1.attn_norm.weight");
  EXPECT_EQ(official_name_from_hf("model.layers.1.post_attention_layernorm.weight"), "layers.1.ffn_norm.weight");
  EXPECT_EQ(official_name_from_hf("model.layers.4.mlp.gate.e_score_correction_bias"), "layers.4.ffn.gate.bias");
  EXPECT_EQ(official_name_from_hf("model.layers.4.mlp.experts.9.down_proj.weight"), "layers.4.ffn.experts.9.w2.weight");
  EXPECT_EQ(official_name_from_hf("model.layers.4.hc_attn_fn"), "layers.4.hc_attn_fn");
  EXPECT_EQ(official_name_from_hf("model.layers.2.self_attn.attn_sink"), "layers.2.attn.attn_sink");
  EXPECT_EQ(official_name_from_hf("model.embed_tokens.weight"), "embed.weight");
  EXPECT_EQ(official_name_from_hf("lm_head.weight"), "head.weight");
  EXPECT_EQ(official_name_from_hf("model.mtp.0.embed_tokens.weight"), "");  // dropped: shared embedding
  EXPECT_EQ(official_name_from_hf("model.mtp.0.lm_head.weight"), "");
  // and the writer's names invert
  for (const char* n : {"layers.0.attn.wq_b.scale", "layers.3.ffn.shared_experts.w3.weight", "mtp.0.hnorm.weight",
                        "layers.2.attn.indexer.weights_proj.weight", "layers.5.ffn.gate.bias", "norm.weight",
                        "head.weight", "hc_head_scale", "layers.0.ffn.gate.tid2eid"}) {
    EXPECT_EQ(official_name_from_hf(hf_name_from_official(n)), n) << hf_name_from_official(n);
  }
}

// The bf16 form holds exactly the dequantised FP8/FP4 values (an e4m3 or e2m1 code times a
// power-of-two scale has ≤ 4 significant bits and an exponent inside bf16's range), and exact mode
// multiplies activations by those exact values without quantising the activations (ref/README.md
// §Mode exact). The derived bound between the two forms' exact-mode logits is therefore zero.
TEST(Checkpoint, Bf16FormGivesTheSameExactLogits) {
  const ModelConfig c = builtin_config("tiny");
  ModelConfig cb = c;
  cb.dtype = "bf16";
  cb.expert_dtype = "bf16";
  const ModelWeights w = ModelWeights::synthetic(c, 33);
  const std::string path = temp_path("bf16form");
  write_checkpoint_file(c, w, path, CheckpointNaming::kOfficial, CheckpointForm::kBF16);
  const ModelWeights wb = load_checkpoint_file(cb, path);
  std::filesystem::remove(path);
  EXPECT_EQ(wb.layers[0].attn.wq_a.kind, WeightKind::kBF16);
  EXPECT_EQ(wb.layers[0].ffn.experts[0].w1.kind, WeightKind::kBF16);
  expect_same_bits(logits_of(Mode::kExact, c, w), logits_of(Mode::kExact, cb, wb));
  // Official mode quantises the FP8 linears' activations, the bf16 form does not: the logits differ
  // (so the comparison above is not vacuous about the form).
  const Mat a = logits_of(Mode::kOfficial, c, w), b = logits_of(Mode::kOfficial, cb, wb);
  EXPECT_GT((a - b).cwiseAbs().maxCoeff(), 0.0);
}

// spec 00 §0.6: the published Hugging Face checkpoint stores wo_a in FP8 E4M3 with E8M0 128×128
// scales (inference/convert.py dequantises it to bf16). The synthetic wo_a lies on that grid, so the
// published form holds it in FP8 and the converter's dequantisation gives back every bf16 bit.
TEST(Checkpoint, PublishedHuggingFaceWoAIsFp8AndDequantisesToTheSyntheticBits) {
  const ModelConfig c = builtin_config("tiny");
  const ModelWeights w = ModelWeights::synthetic(c, 1);
  const auto hf = model_weight_tensors(c, w, CheckpointNaming::kHuggingFace, CheckpointForm::kPublished);
  const auto off = model_weight_tensors(c, w, CheckpointNaming::kOfficial, CheckpointForm::kPublished);
  const std::int64_t n = c.o_groups * c.o_lora_rank, k = c.n_heads * c.head_dim / c.o_groups;
  for (std::int64_t l = 0; l <= c.n_layers; ++l) {  // the main layers and mtp.0
    const bool mtp = l == c.n_layers;
    const AttentionWeights& a = mtp ? w.mtp[0].block.attn : w.layers[static_cast<std::size_t>(l)].attn;
    const std::string p =
        mtp ? "model.mtp.0.self_attn.wo_a." : "model.layers." + std::to_string(l) + ".self_attn.wo_a.";
    SCOPED_TRACE(p);
    const Tensor& codes = hf.at(p + "weight");
    const Tensor& scale = hf.at(p + "weight_scale_inv");
    ASSERT_EQ(codes.dtype(), DType::kE4M3);
    ASSERT_EQ(codes.shape(), (std::vector<std::int64_t>{n, k}));
    ASSERT_EQ(scale.dtype(), DType::kE8M0);
    ASSERT_EQ(scale.shape(), (std::vector<std::int64_t>{(n + 127) / 128, (k + 127) / 128}));
    const Tensor back = fp8_weight_to_bf16(p, codes, scale);
    ASSERT_EQ(back.nbytes(), a.wo_a.weight.nbytes());
    EXPECT_EQ(std::memcmp(back.bytes(), a.wo_a.weight.bytes(), back.nbytes()), 0);
    // The official naming is the converted checkpoint's: bf16, no scale.
    const std::string o = mtp ? "mtp.0.attn.wo_a." : "layers." + std::to_string(l) + ".attn.wo_a.";
    EXPECT_EQ(off.at(o + "weight").dtype(), DType::kBF16);
    EXPECT_EQ(off.count(o + "scale"), 0u);
  }
}

// The FP8 form of a bf16 weight: exact when the values are on a tile's FP8 grid (an all-zero tile,
// e4m3's smallest subnormal under a tile amax of 448), refused naming the tensor otherwise.
TEST(Checkpoint, Bf16WeightToFp8IsExactOrRefused) {
  const auto weight = [](std::vector<float> v) {
    Tensor t(DType::kBF16, {2, 200});  // tiles [1, 2]: columns 0..127 and 128..199
    for (std::size_t i = 0; i < v.size(); ++i) t.values<std::uint16_t>()[i] = float_to_bf16(v[i]);
    return t;
  };
  std::vector<float> v(400, 0.0f);
  v[0] = 448.0f * 1024.0f;     // tile 0: amax 448·2^10 → scale 2^10
  v[1] = std::ldexp(1.0f, 1);  // e4m3's smallest subnormal 2^-9 times 2^10
  v[3] = -3.5f * 1024.0f;
  const Tensor w = weight(v);  // tile 1 all zero
  const auto [codes, scale] = bf16_weight_to_fp8("w", w);
  EXPECT_EQ(scale.values<std::uint8_t>()[0], 127 + 10);
  EXPECT_EQ(scale.values<std::uint8_t>()[1], 127);
  const Tensor back = fp8_weight_to_bf16("w", codes, scale);
  EXPECT_EQ(std::memcmp(back.bytes(), w.bytes(), w.nbytes()), 0);
  v[1] = 1.0f;  // 2^-10 of the tile's scale: below e4m3's subnormals
  EXPECT_THROW(
      {
        try {
          bf16_weight_to_fp8("layers.0.attn.wo_a.weight", weight(v));
        } catch (const CheckpointError& e) {
          EXPECT_NE(std::string(e.what()).find("layers.0.attn.wo_a.weight: element 1 = 1"), std::string::npos)
              << e.what();
          throw;
        }
      },
      CheckpointError);
  v[1] = 0.0f;
  v[2] = 1.0078125f * 1024.0f;  // 1 + 2^-7: a bf16 number, 8 significant bits
  EXPECT_THROW(bf16_weight_to_fp8("w", weight(v)), CheckpointError);
  // The export of a wo_a off the grid names the tensor.
  const ModelConfig c = builtin_config("tiny");
  ModelWeights mw = ModelWeights::synthetic(c, 1);
  Tensor& wo_a = mw.layers[2].attn.wo_a.weight;
  wo_a.values<std::uint16_t>()[5] = float_to_bf16(1.0078125f);
  try {
    model_weight_tensors(c, mw, CheckpointNaming::kHuggingFace, CheckpointForm::kPublished);
    ADD_FAILURE() << "no error";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("layers.2.attn.wo_a.weight: element 5"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(model_weight_tensors(c, mw, CheckpointNaming::kOfficial, CheckpointForm::kPublished));
}

// A checkpoint with one tensor changed; the loader must name that tensor.
void expect_load_error(const ModelConfig& c, std::map<std::string, Tensor> t, const std::string& tensor,
                       const std::string& why) {
  const std::string path = temp_path("bad");
  write_safetensors(path, t);
  try {
    load_checkpoint_file(c, path);
    ADD_FAILURE() << "no error for " << tensor;
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(tensor), std::string::npos) << m;
    EXPECT_NE(m.find(why), std::string::npos) << m;
  }
  std::filesystem::remove(path);
}

TEST(Checkpoint, BadTensorsAreNamed) {
  const ModelConfig c = builtin_config("tiny");
  const auto good = model_weight_tensors(c, ModelWeights::synthetic(c, 1));
  {
    auto t = good;
    t.erase("layers.3.attn.wkv.scale");
    expect_load_error(c, t, "layers.3.attn.wkv.scale", "missing");
  }
  {
    auto t = good;
    t["layers.1.attn.wq_a.weight"] = Tensor(DType::kBF16, {c.q_lora_rank, c.dim});
    expect_load_error(c, t, "layers.1.attn.wq_a.weight", "dtype");
  }
  {
    auto t = good;
    t["layers.0.ffn_norm.weight"] = Tensor(DType::kF32, {c.dim + 1});
    expect_load_error(c, t, "layers.0.ffn_norm.weight", "shape");
  }
  {
    auto t = good;
    t["layers.0.ffn.gate.tid2eid"] = Tensor(DType::kF32, {c.vocab_size, c.n_activated_experts});
    expect_load_error(c, t, "layers.0.ffn.gate.tid2eid", "dtype");
  }
  {
    auto t = good;
    Tensor n(DType::kF32, {c.dim});
    n.values<float>()[7] = std::numeric_limits<float>::quiet_NaN();
    t["norm.weight"] = n;
    expect_load_error(c, t, "norm.weight", "not finite");
  }
  {
    auto t = good;
    t.erase("mtp.0.hc_head_fn");
    expect_load_error(c, t, "mtp.0.hc_head_fn", "missing");
  }
}

}  // namespace
}  // namespace dsv4
