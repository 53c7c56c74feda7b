// Host fallback of the gate kernel: the official-mode reference (gate_rows, the flat-array adapter
// of ref/model) for one token.
#include "gate_reference.hpp"

#include <algorithm>

#include "dsv4/model/gate.hpp"

namespace dsv4::gpu::detail {

static_assert(static_cast<int>(ScoreFunc::kSoftmax) == static_cast<int>(GateScore::kSoftmax) &&
                  static_cast<int>(ScoreFunc::kSigmoid) == static_cast<int>(GateScore::kSigmoid) &&
                  static_cast<int>(ScoreFunc::kSqrtSoftplus) == static_cast<int>(GateScore::kSqrtSoftplus),
              "GateScore mirrors ScoreFunc");

void gate_reference(const float* x, std::int64_t d, std::int64_t token_id, const float* weight, std::int64_t experts,
                    const float* bias, const std::int64_t* tid2eid, std::int64_t vocab, GateScore score, std::int64_t k,
                    double route_scale, float* weights, std::int64_t* indices, float* scores) {
  const GateRows r = gate_rows(Precision(Mode::kOfficial), x, 1, d, &token_id, weight, experts, bias, tid2eid, vocab,
                               static_cast<ScoreFunc>(static_cast<int>(score)), k, route_scale);
  std::copy(r.weights.begin(), r.weights.end(), weights);
  std::copy(r.indices.begin(), r.indices.end(), indices);
  std::copy(r.scores.begin(), r.scores.end(), scores);
}

}  // namespace dsv4::gpu::detail
