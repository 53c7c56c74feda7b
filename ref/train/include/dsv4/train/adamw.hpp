// AdamW (spec 06 §6.3; report §4.2.2): the optimizer of the embedding, the head, every RMSNorm
// gain and the mHC static biases and gating factors (spec 06 §6.1; optimizer_assignment.hpp).
//
// One step t ≥ 1 on a parameter w with gradient g, elementwise, exact mode (double):
//   m_t = β1·m_{t−1} + (1 − β1)·g                     (m_0 = 0)
//   v_t = β2·v_{t−1} + (1 − β2)·g²                    (v_0 = 0)
//   m̂ = m_t / (1 − β1^t),  v̂ = v_t / (1 − β2^t)        (bias correction [C: standard AdamW])
//   w_t = w_{t−1}·(1 − η·λ) − η·m̂ / (√v̂ + ε)          (decoupled weight decay [C: Loshchilov–Hutter])
// with β1 = 0.9, β2 = 0.95, ε = 1e-20, λ = 0.1 (report §4.2.2). Order of operations (each fl
// rounds once to double): m = fl(fl(β1·m) + fl(fl(1 − β1)·g)); v = fl(fl(β2·v) + fl(fl(1 − β2)·fl(g·g)));
// c1 = fl(1 − β1^t), c2 = fl(1 − β2^t) with β^t by std::pow; u = fl(fl(m/c1) / fl(fl(√fl(v/c2)) + ε));
// w = fl(fl(w·fl(1 − fl(η·λ))) − fl(η·u)). On the first step m̂ = g and v̂ = g² up to those
// roundings, so the update is η·g/(|g| + ε) = η·sign(g) for |g| ≫ ε.
#pragma once

#include <cstdint>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-20;
  double weight_decay = 0.1;
};

// The optimizer state of one parameter: the moments, shaped as the parameter, and the number of
// steps taken (0 before the first).
struct AdamWState {
  Mat m;
  Mat v;
  std::int64_t step = 0;
};

// A zero state for a parameter of w's shape.
AdamWState adamw_state(const Mat& w);

// One step (the file comment's equations): updates w and state in place and returns the update
// direction u = m̂/(√v̂ + ε) (w moved by −η·u after decay). Throws std::invalid_argument naming the
// argument when shapes differ, g or w holds a non-finite value, lr is negative or non-finite, or a
// hyper-parameter is out of range (β in [0, 1), ε > 0, λ ≥ 0).
Mat adamw_step(Mat& w, AdamWState& state, const Mat& g, double lr, const AdamWConfig& cfg = {});

}  // namespace dsv4
