// The model head (spec 05 §5.3; official code `ParallelHead.forward`) and the embedding
// (spec 05 §5.1): shared by the main model and the MTP block.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/linear.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// spec 05 §5.1: h = embed[id] (bf16 rows). Throws std::invalid_argument naming `token_ids` when
// an id lies outside [0, vocab).
Mat embed_tokens(const Mat& embed, const std::vector<std::int64_t>& token_ids);

// spec 05 §5.1: X0[k] = h for every stream k → [s, n·d].
Mat expand_streams(const Mat& h, std::int64_t n);

struct HeadOutput {
  Mat hc_head;  // [s, d] hc_head output (spec 04 §4.5)
  Mat norm;     // [s, d] after the final RMSNorm
  Mat logits;   // [1, V] fp32 logits of the last position
};

// spec 05 §5.3: hc_head at every position → norm → fp32 logits of the last position with the
// fp32 (bf16-valued) head weight.
HeadOutput head_forward(const Precision& p, const ModelConfig& c, const Mat& x, const HcHeadWeights& hc_head,
                        const Vec& norm, const LinearWeight& head);

// head_forward of every row on its own (each row as the last position of a one-token sequence), on
// flat row-major arrays (the op registry's and the GPU kernel's host fallback's adapter): x
// [tokens, n·d] (bf16 values), the hc_head weights fn [n, n·d], base [n], scale, the norm weight
// [d] (bf16 values), the head weight [V, d] (fp32 values) → per row hc_head [d], norm [d], logits
// [V]. Throws std::invalid_argument for n < 1, d < 1, V < 1 or tokens < 0.
struct HeadRows {
  std::vector<float> hc_head, norm, logits;
};
HeadRows head_rows(const Precision& p, const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d,
                   const float* hc_fn, const float* hc_base, float hc_scale, const float* norm, const float* head,
                   std::int64_t vocab, double hc_eps, double norm_eps);

}  // namespace dsv4
