// Precision as a policy (ref/README.md §Precision design). Every component is written once and
// takes a `const Precision&`; the policy supplies the few primitives that differ between modes:
// storage rounding, dot products / matrix products, elementary functions. Component code never
// branches on the mode itself.
//
//   exact     double arithmetic; only the model-defined quantisation points round (FP8/FP4 QAT
//             simulations, quantised weights); every value carries no storage rounding.
//   official  the official inference code's dtype policy (bf16/fp32 cast points of spec 05),
//             evaluated with the canonical arithmetic C1–C8 of spec 01 §1.11: bit-reproducible.
//
// Values are held as double in both modes; in official mode every stored value is exactly a
// bf16 or fp32 number because the policy rounds at the cast points.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "dsv4/model/topk.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/quant_margin.hpp"

namespace dsv4 {

using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vec = Eigen::Matrix<double, Eigen::Dynamic, 1>;
using RowVec = Eigen::Matrix<double, 1, Eigen::Dynamic>;

enum class Mode { kExact, kOfficial };

// A deliberate deviation from the spec: a realistic porting bug, switched on only to build the
// oracle's bug catalogue (candidates that certify/diff must FAIL and blame on the right module;
// tests/bug_catalogue_test.cpp). kNone everywhere else. Only valid in official mode (the engine
// simulation); each names the module it breaks.
enum class Deviation {
  kNone,
  kRopeHalfSplit,        // attn: RoPE pairs (i, i + r/2) instead of the interleaved (2i, 2i+1)
  kRopeFirstDims,        // attn: RoPE on the first rope_head_dim dims instead of the last
  kNoInverseRope,        // attn: no inverse RoPE on the attention output
  kSinkInNumerator,      // attn: the sink's exp also weights a zero value row (sink added as a key)
  kCompressNoOverlap,    // attn.compressor: ratio-4 pooling without the overlapping previous window
  kWindowOffByOne,       // attn: the sliding window one position too long (includes pos − n_win)
  kKvScaleNotPow2,       // attn: KV FP8 simulation with fp32 (not power-of-two) block scales
  kIndexerNoHadamard,    // attn.indexer: Hadamard rotation skipped on the indexer queries
  kIndexerMaskOffByOne,  // attn.indexer: causal mask admits the compressed block still being filled
  kBf16Truncation,       // everywhere: bf16 casts truncate instead of rounding to nearest even
  kSinkhornColumnFirst,  // hc: Sinkhorn normalises columns before rows
  kSinkhornEpsOutside,   // hc: eps added after the division instead of inside the denominators
  kHcCombTransposed,     // hc: hc_post mixes with comb instead of combᵀ
  kGateBiasInWeights,    // ffn.gate: the selection bias leaks into the routing weights
  kClampGateBothSides,   // ffn: the SwiGLU gate clamped to [−limit, limit] (only capped above in V4)
  kHashByPosition,       // ffn.gate: hash routing indexed by position instead of token id
  // Small-scale bugs (issue 15): systematic errors of a few parts in a thousand or less.
  kSoftmaxScaleOff,      // attn: the sparse-attention softmax scale × (1 + 1/128)
  kRmsNormEpsOutside,    // every RMSNorm: 1/(√ms + eps) instead of 1/√(ms + eps)
  kGateScoresBf16,       // ffn.gate: the fp32 routing scores stored as bf16
  kIndexerScaleOmitted,  // attn.indexer: head weights without the n_I^{-1/2} factor
  kRouteScaleTwice,      // ffn: routed expert 0 scales its routing weight by route_scale again
  kKvFp8Truncation,      // attn, attn.compressor: the KV FP8 simulation casts to e4m3 toward zero, not RNE
  kKvFp8RoundHalfAway,   // attn, attn.compressor: the KV FP8 simulation breaks e4m3 ties away from zero
  // Not bugs: legitimate engine variants (all_legitimate_variants()); certify/diff must PASS them.
  kBf16Jitter,            // bf16 casts land on the other neighbour for one value in eight
  kSumSequential,         // C1 sums: sequential fp32 FMA accumulation instead of the exact sum
  kSumPairwise,           // C1 sums: fp32 products added in a pairwise tree in fp32
  kSumSplitK4,            // C1 sums: four contiguous K slices, each sequential, partials added in fp32
  kFaithfulFnJitter2Ulp,  // exp, rsqrt: a pseudo-random 0 to ±2 fp32 ulp off the correctly rounded result
  kFaithfulFnUp2Ulp,      // exp, rsqrt: always 2 fp32 ulp above the correctly rounded result
  // The training step's catalogue (issue 16 item 7): deviations of the official-style training step
  // (ref/train model_backward_official, train_step), never of the forward — a forward run ignores
  // them. Bugs (all_training_deviations()): certify/diff of the step's dump must FAIL, blamed on:
  kSwigluNoClampGrad,       // ffn experts (backward): the gradient passes the SwiGLU clamp outside it too
  kMuonTransposeNotUndone,  // optimizer (Muon): a tall matrix iterated as its transpose, the result not
                            // transposed back (its buffer read in the parameter's shape)
  kAdamWOnRouter,           // optimizer: the router's gate.weight (a Muon parameter) stepped by AdamW
  kNsFastCoefficientsOnly,  // optimizer (Muon): all 10 Newton–Schulz steps with (3.4445, −4.7750, 2.0315)
  kBalanceOnBiasedScores,   // loss (balance) and ffn.gate: the balance loss on the biased scores s + b
  // Not a bug (all_training_legitimate_variants()): must PASS.
  kReductionShuffled,  // weight gradients: sequential fp32 over the rows in a shuffled order (atomic-like)
};
std::string deviation_name(Deviation d);
const std::vector<Deviation>& all_deviations();                    // every bug (not kNone, no legitimate variant)
const std::vector<Deviation>& all_legitimate_variants();           // every legitimate engine variant
const std::vector<Deviation>& all_training_deviations();           // the training step's bugs
const std::vector<Deviation>& all_training_legitimate_variants();  // the training step's legitimate variants
std::string mode_name(Mode m);
// Throws std::invalid_argument naming the string when it is not "exact" or "official".
Mode mode_from_name(const std::string& name);

// The one count of a component's discrete decisions in exact mode (ref/README.md §Precision
// design): proven by the rigorous error bound of the double pipeline, or left open by it and
// re-decided in Mp50 — and of those, the ones whose Mp50 outcome differs from the double one.
// Official mode leaves every count at 0 (its decisions are exact on their fp32/bf16 inputs).
struct DecisionStats {
  std::int64_t certified = 0;   // decisions proven by their bound
  std::int64_t redecided = 0;   // decisions the bound left open: re-decided in Mp50
  std::int64_t recomputed = 0;  // units recomputed in Mp50 (rows, entries, (token, head) rows, top-k candidates)
  std::int64_t flipped = 0;     // re-decided decisions whose Mp50 outcome differs from the double one
  DecisionStats& operator+=(const DecisionStats& o) {
    certified += o.certified;
    redecided += o.redecided;
    recomputed += o.recomputed;
    flipped += o.flipped;
    return *this;
  }
};

// One block-quantised row to certify (Precision::certify_quantised): the double values just before
// the quantiser and a rigorous bound of their error against the exact pipeline, element by element.
struct RowCertificate {
  std::vector<double> value, bound;
};
using RowCertifier = std::function<RowCertificate(std::int64_t row)>;
// The row's quantised dims recomputed in Mp50 from the component's inputs.
using RowMp50 = std::function<std::vector<Mp50>(std::int64_t row)>;
// The rigorous error bound of every score of a top-k (exact mode; computed only when asked).
using TopkBounds = std::function<std::vector<double>()>;

// The arithmetic of the Mp50 re-decisions (and of any scalar without storage rounding): each
// operation of a component body evaluated as written in the scalar type, no cast points. With
// Precision (same member names) it lets one templated body serve both the double pipeline and its
// Mp50 recomputation.
struct ExactArithmetic {
  template <class T>
  T add(const T& a, const T& b) const {
    return a + b;
  }
  template <class T>
  T sub(const T& a, const T& b) const {
    return a - b;
  }
  template <class T>
  T mul(const T& a, const T& b) const {
    return a * b;
  }
  template <class T>
  T bf16(const T& x) const {
    return x;
  }
};

class Precision {
 public:
  explicit Precision(Mode mode) : mode_(mode) {}
  // Official mode with one deliberate deviation (bug catalogue only); std::invalid_argument in exact mode.
  Precision(Mode mode, Deviation deviation);
  Mode mode() const { return mode_; }
  bool deviates(Deviation d) const { return deviation_ == d; }
  Deviation deviation() const { return deviation_; }
  bool official() const { return mode_ == Mode::kOfficial; }

  // ---- storage rounding at the official model's cast points (spec 05) ----
  double bf16(double x) const;  // official: RNE to bf16; exact: identity
  double fp32(double x) const;  // official: RNE to fp32; exact: identity
  void bf16_inplace(Mat& m) const;
  void fp32_inplace(Mat& m) const;

  // ---- C1 (spec 01 §1.11): sums and products ----
  // Σ_i a_i b_i. Official: the exact sum of the exact products rounded once to fp32 (the caller
  // guarantees a_i·b_i is exact in double — operands of ≤ 24 significant bits each, as every
  // bf16/fp32 value is). Exact: double arithmetic.
  double dot(const double* a, const double* b, std::int64_t n) const;
  // Σ_i a_i under the same rule.
  double sum(const double* a, std::int64_t n) const;
  // Y = X · Wᵀ (X [M,K], W [N,K]) with one C1 rounding per output element (official) or a plain
  // double product (exact: the deterministic GEMM of numerics/gemm.hpp — per element the
  // sequential sum over k of fl(x·w), same bits on every machine and thread count). Official mode
  // is that double GEMM plus a rigorous error-bound GEMM; the rare elements whose fp32 rounding
  // the bound does not decide are recomputed exactly.
  // threads: as gemm_nt's (0: the default count; 1: everything on the calling thread, for callers
  // that are themselves row-parallel). The result never depends on it.
  Mat matmul_nt(const Mat& x, const Mat& w, int threads = 0) const;
  // Y = X · W (X [M,K], W [K,N]) under the same rule (numerics/gemm.hpp's gemm_nn order in exact mode).
  Mat matmul_nn(const Mat& x, const Mat& w, int threads = 0) const;

  // ---- C2: elementary functions (official: correctly rounded fp32 of the fp32 argument) ----
  double exp(double x) const;
  double log1p(double x) const;
  double sin(double x) const;
  double cos(double x) const;
  double pow(double x, double y) const;
  double rsqrt(double x) const;  // official: correctly rounded fp32 1/sqrt
  double sigmoid(double x) const;
  double silu(double x) const;
  double softplus(double x) const;

  // ---- C5/C6: one arithmetic operation of a PyTorch fp32 op (official: rounded to fp32) ----
  double add(double a, double b) const { return fp32(a + b); }
  double sub(double a, double b) const { return fp32(a - b); }
  double mul(double a, double b) const { return fp32(a * b); }
  double div(double a, double b) const { return fp32(a / b); }
  // C3: a·b + c written as one kernel expression (nvcc contracts it): official — one fp32 FMA
  // (fmaf, correctly rounded; a double fma then a cast to fp32 could round twice); exact — fma.
  double fma(double a, double b, double c) const;

  // ---- discrete decisions (ref/README.md §Precision design, §Margins) ----
  // The model-defined block quantisation point (spec 01 §1.4 act_quant UE8M0 / §1.5
  // fp4_act_quant) on columns [col0, col0 + cols) of rows [row0, row0 + rows) of x, in place,
  // blocks of `block` from col0: official — the fp32 kernel on the values as fp32; exact — the
  // quantiser with exact decisions on the double values (block_quant_exact_inplace). Returns the
  // margins (blocks counted over all rows).
  QuantMargin quantise(Mat& x, Eigen::Index row0, Eigen::Index rows, Eigen::Index col0, Eigen::Index cols, int block,
                       BlockQuant kind) const;
  // Certify every decision of the block quantiser `kind` on columns [0, n) of the `rows` rows of
  // `quantised` (row r: certificate(r), n = its length): exact mode — decisions the bound leaves
  // open make their row recomputed in Mp50 (mp50(r)) and all its blocks re-decided from the Mp50
  // values, written into `quantised`; a certified decision that Mp50 contradicts is a broken bound
  // (std::logic_error naming `who`, the row and the column). Official mode: nothing to certify,
  // neither callback is called. Returns the counts (recomputed: rows).
  DecisionStats certify_quantised(std::int64_t rows, int block, BlockQuant kind, const RowCertifier& certificate,
                                  const RowMp50& mp50, Mat& quantised, const char* who) const;
  // spec 01 §1.11 C4 top-k with its margin. Official: topk (the fp32/bf16 scores are the decision's
  // exact inputs). Exact: topk_exact with bounds() and `recompute` (the cut certified by the
  // bounds, or re-decided in Mp50); `stats` counts the cut (certified or re-decided, the
  // candidates recomputed, flipped when the chosen set differs from the double top-k).
  TopkResult topk(std::span<const double> scores, std::int64_t k, const TopkBounds& bounds,
                  const TopkRecompute& recompute, DecisionStats& stats) const;

 private:
  Mode mode_;
  Deviation deviation_ = Deviation::kNone;
};

}  // namespace dsv4
