// The bug catalogue's expected blame (ref/README.md §Deliberate deviations): for each injected
// deviation, the first module of the tiny config whose output it changes. deviation_test checks it
// against a faithful run, diff_test against the teacher-forced localisation.
#pragma once

#include <map>
#include <set>
#include <string>

#include "dsv4/model/precision.hpp"

namespace dsv4::testing_support {

// tiny: layer 0 SWA, layer 1 HCA (ratio 128), layer 2 CSA (ratio 4); layers 0–2 hash-routed.
inline const std::map<Deviation, std::string>& expected_first_divergent_module() {
  static const std::map<Deviation, std::string> m{
      {Deviation::kRopeHalfSplit, "layers.0.attn"},
      {Deviation::kRopeFirstDims, "layers.0.attn"},
      {Deviation::kNoInverseRope, "layers.0.attn.wo_a"},
      {Deviation::kSinkInNumerator, "layers.0.attn.wo_a"},
      {Deviation::kCompressNoOverlap, "layers.2.attn.compressor"},
      {Deviation::kWindowOffByOne, "layers.0.attn.wo_a"},
      {Deviation::kKvScaleNotPow2, "layers.0.attn"},
      {Deviation::kIndexerNoHadamard, "layers.2.attn.indexer"},
      {Deviation::kIndexerMaskOffByOne, "layers.2.attn.indexer"},
      {Deviation::kBf16Truncation, "layers.0.hc_attn"},
      {Deviation::kSinkhornColumnFirst, "layers.0.hc_attn"},
      {Deviation::kSinkhornEpsOutside, "layers.0.hc_attn"},
      // At layer 0 all four streams hold the embedding, so the attention site's transposed mix
      // differs from the right one only by comb's row vs column sums (~1e-6 apart, spec 04 §4.7),
      // which bf16 does not resolve; the first visible effect is the FFN site's hc_post, whose
      // output is the block output `layers.0/out`.
      {Deviation::kHcCombTransposed, "layers.0"},
      {Deviation::kGateBiasInWeights, "layers.3.ffn.gate"},
      {Deviation::kClampGateBothSides, "layers.0.ffn"},
      {Deviation::kHashByPosition, "layers.0.ffn.gate"},
      {Deviation::kSoftmaxScaleOff, "layers.0.attn.wo_a"},
      {Deviation::kRmsNormEpsOutside, "layers.0.attn_norm"},
      {Deviation::kGateScoresBf16, "layers.0.ffn.gate"},
      {Deviation::kIndexerScaleOmitted, "layers.2.attn.indexer"},
      {Deviation::kRouteScaleTwice, "layers.0.ffn"},
      {Deviation::kKvFp8Truncation, "layers.0.attn"},
      {Deviation::kKvFp8RoundHalfAway, "layers.0.attn"},
  };
  return m;
}

// The deviations `dsv4 diff --teacher-forced` does not catch today on the tiny runs of diff_test
// and diff_checkpoint_test, each at a limit that is measured, not a tolerance:
//  - the gate clamped on both sides changes only gates below −limit, and the FFN's local field
//    includes the FP8 activation quantisation of the expert linears, larger than its effect here;
//  - RMSNorm's eps outside the root, 1/(√ms + ε) for (ms + ε)^−½, moves the output by a relative
//    ε/√ms − ε/(2ms) ≈ 5e-7 at ms ≈ 1 (ε = 1e-6): below the structure tests' 2^−16 floor, at the
//    size of a faithful 2-ulp rsqrt (oracle/compare/README.md §Structure tests). Visible only
//    where ms approaches ε (tiny activations).
// (The softmax scale off by 1 + 1/128 was a miss until the structure tests of issue 15.) Those
// tests check each one is still a miss, so the list shrinks as soon as one is caught.
inline const std::set<Deviation>& diff_misses() {
  static const std::set<Deviation> s{Deviation::kClampGateBothSides, Deviation::kRmsNormEpsOutside};
  return s;
}

}  // namespace dsv4::testing_support
