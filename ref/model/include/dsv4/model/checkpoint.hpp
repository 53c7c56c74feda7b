// Model parameters under their checkpoint names (official code inference/model.py parameter
// names; spec 05). One list of every parameter (visit_model_parameters) drives both loading a
// checkpoint and writing one, so the two can never disagree.
//
// Naming: the official inference naming (`layers.3.attn.wq_a.weight`, `layers.3.attn.wq_a.scale`,
// `layers.0.ffn.experts.5.w1.weight`, `layers.3.hc_attn_fn`, `mtp.0.e_proj.weight`, …). The Hugging
// Face naming is mapped the way the official converter (inference/convert.py) maps it
// (official_name_from_hf); its two conversions are applied at load: FP8 `wo_a` with its scale →
// bf16 (weight × block scale, rounded to bf16), and int8 packed FP4 expert weights → e2m1x2.
//
// The reader of the file format (safetensors) lives in oracle/io; the reference only sees a
// lookup function.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {

// A checkpoint problem; what() names the tensor ("layers.0.attn.wq_a.weight: dtype BF16, expected F8_E4M3").
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One visitor call per parameter, in a fixed order. `name` is the module path (`layers.0.attn.wq_a`)
// for linear layers and the full tensor name otherwise.
class ParamVisitor {
 public:
  virtual ~ParamVisitor() = default;
  // A Linear: `<name>.weight` (+ `<name>.scale` for fp8/fp4), logical shape [n, k].
  virtual void linear(const std::string& name, LinearWeight& w, WeightKind kind, std::int64_t n, std::int64_t k) = 0;
  // An fp32 parameter (bf16 or fp32 in the file) of shape `shape` held as a matrix [rows, cols]
  // (vectors: cols = 1 is not used — see vec).
  virtual void matrix(const std::string& name, Mat& m, std::int64_t rows, std::int64_t cols) = 0;
  virtual void vec(const std::string& name, Vec& v, std::int64_t n) = 0;
  // int32/int64 table [rows, cols] (tid2eid).
  virtual void ids(const std::string& name, std::vector<std::int64_t>& v, std::int64_t rows, std::int64_t cols) = 0;
};

// Every parameter of the model of config c (main model, then MTP), shaping `w` as it goes
// (vectors resized, optional compressor/indexer engaged by the layer's ratio).
void visit_model_parameters(const ModelConfig& c, ModelWeights& w, ParamVisitor& v);

// Name → tensor, nullopt when the checkpoint has no such tensor.
using TensorLookup = std::function<std::optional<Tensor>(const std::string& name)>;

// Loads every parameter; CheckpointError naming the tensor when one is missing, has the wrong
// dtype or shape. Also validates the loaded weights against c (the module constructors do).
ModelWeights load_model_weights(const ModelConfig& c, const TensorLookup& lookup);

enum class CheckpointNaming { kOfficial, kHuggingFace };
// inference/convert.py's conversion of an FP8 weight with its 128×128 E8M0 scale to bf16:
// bf16(float(w) · scale) per element (the published Hugging Face `wo_a`). CheckpointError naming
// the tensor for another dtype or scale shape.
Tensor fp8_weight_to_bf16(const std::string& name, const Tensor& w, const Tensor& scale);
// Its inverse for a bf16 weight on the FP8 grid: E4M3 codes and E8M0 [⌈n/128⌉, ⌈k/128⌉] scales
// (per tile the smallest power of two fitting the amax into ±448, codes RNE) of which
// fp8_weight_to_bf16 gives back every bf16 value; CheckpointError naming the tensor and the first
// element that has no such form.
std::pair<Tensor, Tensor> bf16_weight_to_fp8(const std::string& name, const Tensor& w);
// The bf16-in-code linears the published Hugging Face checkpoint stores in FP8 with 128×128 E8M0
// scales (spec 00 §0.6: `wo_a`; the official converter dequantises them): `name` is the module path.
bool published_fp8_in_hf(const std::string& name);

// kAsIs: every parameter as the code holds it (fp32-in-code parameters as F32, tid2eid as I32);
// kBF16: every FP8/FP4 linear dequantised to bf16 values (exact);
// kPublished: the dtypes of the published checkpoints (spec 00 §0.6): FP8 E4M3 + E8M0 128×128
//   scales, packed FP4 + E8M0 1×32 scales, bf16 for the embedding, the head, every norm weight and
//   the compressors' wkv/wgate ("bf16, fp32 in code": CheckpointError naming the tensor when a value
//   is not a bf16 number), fp32 for hc_*, attn_sink, ape and gate.bias, tid2eid int64; with the
//   Hugging Face naming `wo_a` in FP8 (bf16_weight_to_fp8; the official naming is the converted
//   checkpoint's, where it is bf16).
enum class CheckpointForm { kAsIs, kBF16, kPublished };

// Every parameter as a named tensor (the inverse of load_model_weights): the official naming, or
// the Hugging Face naming (with the converter's inverse forms: in the published form wo_a in FP8
// with its scale, which the converter dequantises; FP4 experts as int8). The first form visits `w` in place
// (shaping it as visit_model_parameters does; no copy of the weights, which are as large as the
// model: issue 13 item 9), the second copies it first.
std::map<std::string, Tensor> model_weight_tensors(const ModelConfig& c, ModelWeights& w,
                                                   CheckpointNaming naming = CheckpointNaming::kOfficial,
                                                   CheckpointForm form = CheckpointForm::kAsIs);
std::map<std::string, Tensor> model_weight_tensors(const ModelConfig& c, const ModelWeights& w,
                                                   CheckpointNaming naming = CheckpointNaming::kOfficial,
                                                   CheckpointForm form = CheckpointForm::kAsIs);

// One tensor of a checkpoint: its name in the chosen naming, shape (logical, in elements: packed FP4
// `F4` counts 4-bit elements; the Hugging Face int8 form [n, k/2] bytes) and dtype.
struct CheckpointTensorInfo {
  std::string name;
  std::vector<std::int64_t> shape;
  DType dtype = DType::kF32;
};

// Every tensor model_weight_tensors(c, w, naming, CheckpointForm::kPublished) writes, in the order of
// visit_model_parameters (embed, layers, norm, head, hc_head, mtp), without any weight data (cheap
// for the full-size configs): `dsv4 weights list`.
std::vector<CheckpointTensorInfo> published_checkpoint_tensors(const ModelConfig& c, CheckpointNaming naming);

// inference/convert.py's renaming of one Hugging Face tensor name (drop `model.`, self_attn → attn,
// mlp → ffn, weight_scale_inv → scale, e_score_correction_bias → bias, and its key table).
std::string official_name_from_hf(const std::string& hf_name);
// The Hugging Face name this project writes for an official name (official_name_from_hf inverts it).
std::string hf_name_from_official(const std::string& official);

// For a file's tensor names: official name → file name. Detects the naming by the `model.` prefix;
// CheckpointError when two file names map to the same official name.
std::map<std::string, std::string> official_name_table(const std::vector<std::string>& file_names);

}  // namespace dsv4
