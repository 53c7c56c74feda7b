// Backward of the MoE combine (forward spec 03 §3.3 with the experts of §3.2, exact mode; backward
// spec 06 §6.12) for given routing: token t routed to experts e_{t,j} with weights w_{t,j}
// (j = 0..k − 1), and the shared expert S:
//   y_t = Σ_j E_{e_{t,j}}(x_t; w_{t,j}) + S(x_t),   E_e(x; w) = W2_e (w · silu(g_c) · u_c)
// (the routing weight enters before the down projection, spec 03 §3.2 step 4). The combine is a sum,
// so every expert output's gradient is dy_t itself; each expert's backward is expert_backward's:
//   dx_t = Σ_j dx^{(e_{t,j})}_t + dx^{(S)}_t;  dw_{t,j} = Σ_i dh_i a_i of expert e_{t,j} at token t
//   (= ⟨dy_t, E_e(x_t; 1)⟩: the expert is linear in its routing weight);
//   dW1_e, dW3_e, dW2_e over the tokens routed to e (ascending token order); the shared expert's over
//   every token.
// The indices are held fixed (the gate's top-k or tid2eid choice has no gradient, spec 06 §6.12);
// the routing weights' gradient flows on into the gate's backward (gate_backward.hpp). Reductions in
// the forward's order: per token, experts in ascending id order, the shared expert last.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/train/expert_backward.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation; the reference's
// Moe::combine runs expert_forward through Precision in double): x [T, d], weights [T, k], indices
// [T, k] (expert ids), the routed experts' w1, w3 [E·de, d] and w2 [E·d, de] (expert e = rows
// e·de.. resp. e·d..), the shared expert's w1, w3 [de, d], w2 [d, de] → y [T, d].
template <class T>
std::vector<T> moe_combine_exact(const std::vector<T>& x, std::int64_t tokens, std::int64_t d,
                                 const std::vector<T>& weights, const std::vector<std::int64_t>& indices,
                                 std::int64_t k, std::int64_t experts, std::int64_t de, const std::vector<T>& w1,
                                 const std::vector<T>& w3, const std::vector<T>& w2, const std::vector<T>& shared_w1,
                                 const std::vector<T>& shared_w3, const std::vector<T>& shared_w2, double limit) {
  std::vector<T> y(static_cast<std::size_t>(tokens * d), T(0));
  const auto block = [](const std::vector<T>& v, std::int64_t e, std::int64_t size) {
    return std::vector<T>(v.begin() + e * size, v.begin() + (e + 1) * size);
  };
  for (std::int64_t e = 0; e < experts; ++e) {
    const std::vector<T> e1 = block(w1, e, de * d), e3 = block(w3, e, de * d), e2 = block(w2, e, d * de);
    for (std::int64_t t = 0; t < tokens; ++t) {
      for (std::int64_t j = 0; j < k; ++j) {
        if (indices[static_cast<std::size_t>(t * k + j)] != e) continue;
        const std::vector<T> xt(x.begin() + t * d, x.begin() + (t + 1) * d);
        const std::vector<T> w{weights[static_cast<std::size_t>(t * k + j)]};
        const std::vector<T> ye = expert_exact(xt, 1, d, &w, e1, e3, e2, de, limit);
        for (std::int64_t i = 0; i < d; ++i) y[static_cast<std::size_t>(t * d + i)] += ye[static_cast<std::size_t>(i)];
      }
    }
  }
  const std::vector<T> ys = expert_exact<T>(x, tokens, d, nullptr, shared_w1, shared_w3, shared_w2, de, limit);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] += ys[i];
  return y;
}

// One expert's (effective) weights: w1, w3 [de, d], w2 [d, de].
struct ExpertMats {
  Mat w1, w3, w2;
};

// One expert's rows: the tokens it saw (ascending; the shared expert: every token) and its per-row
// coefficients h, dg, du [rows, de] (expert_backward.hpp) — what the official-style step reduces by
// spec 06 §6.14 (expert_dweights_fp32).
struct ExpertRows {
  std::vector<std::int64_t> tokens;
  Mat h, dg, du;
};

struct MoeCombineGrads {
  Mat dx;        // [T, d]
  Mat dweights;  // [T, k]
  Mat dw1, dw3;  // [E·de, d]: expert e's rows e·de..
  Mat dw2;       // [E·d, de]
  ExpertMats dshared;
  std::vector<ExpertRows> routed_rows;  // [E] (an expert no token chose: no rows)
  ExpertRows shared_rows;
};
// Exact mode (double). weights [T, k], indices T·k expert ids in [0, E) (E = experts.size()), limit
// the SwiGLU clamp (≤ 0: none), dy [T, d]. std::invalid_argument on a shape mismatch or an id
// outside [0, E).
MoeCombineGrads moe_combine_backward(const Mat& x, const Mat& weights, const std::vector<std::int64_t>& indices,
                                     const std::vector<ExpertMats>& experts, const ExpertMats& shared, double limit,
                                     const Mat& dy, ClampBoundary boundary = ClampBoundary::kClosed);

}  // namespace dsv4
