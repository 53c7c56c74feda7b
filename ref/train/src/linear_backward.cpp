// Backward of a linear layer (spec 01 §1.6–§1.8 exact mode; spec 06 §6.8, §6.12).
#include "dsv4/train/linear_backward.hpp"

#include <stdexcept>
#include <string>

#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

LinearGrads linear_backward(const Mat& x, const Mat& effective_weight, const Mat& dy) {
  if (x.cols() != effective_weight.cols() || dy.rows() != x.rows() || dy.cols() != effective_weight.rows()) {
    throw std::invalid_argument("linear_backward: x [" + std::to_string(x.rows()) + ", " + std::to_string(x.cols()) +
                                "], weight [" + std::to_string(effective_weight.rows()) + ", " +
                                std::to_string(effective_weight.cols()) + "], dy [" + std::to_string(dy.rows()) + ", " +
                                std::to_string(dy.cols()) + "] do not match");
  }
  const Precision exact(Mode::kExact);
  const Mat dy_t = dy.transpose();
  return {exact.matmul_nn(dy, effective_weight), exact.matmul_nn(dy_t, x)};
}

// spec 06 §6.8: FP32 master → FP4 (1×32 blocks, power-of-two scales) → its exact value.
Mat fp4_qat_weight(const Mat& master) {
  if (master.cols() % 32 != 0) {
    throw std::invalid_argument("fp4_qat_weight: " + std::to_string(master.cols()) + " columns, not a multiple of 32");
  }
  std::vector<float> w(static_cast<std::size_t>(master.size()));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(master.data()[i]);
  fp4_act_quant_inplace(w, master.cols());
  Mat q(master.rows(), master.cols());
  for (std::size_t i = 0; i < w.size(); ++i) q.data()[i] = w[i];
  return q;
}

}  // namespace dsv4
