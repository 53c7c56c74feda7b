// Walsh–Hadamard rotation (spec 01 §1.10; official code rotate_activation → fast_hadamard_transform).
#include "dsv4/model/hadamard.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

// spec 01 §1.10: radix-2 butterflies, stage s = 0..log2 N − 1 in increasing order, each sum and
// difference rounded to fp32 (official) — then one multiplication by fl32(N^−1/2) and one bf16
// rounding. In exact mode the same butterflies in double give the exact WHT of any input whose
// partial sums are representable, and the scale is the double N^−1/2.
void hadamard_inplace(const Precision& p, Mat& x, std::int64_t size) {
  const std::int64_t n = size <= 0 ? x.cols() : size;
  if (n <= 0 || (n & (n - 1)) != 0) {
    throw std::invalid_argument("hadamard: size " + std::to_string(n) + " is not a power of two");
  }
  if (x.cols() % n != 0) {
    throw std::invalid_argument("hadamard: size " + std::to_string(n) + " does not divide the row length " +
                                std::to_string(x.cols()));
  }
  const double scale = p.fp32(std::pow(static_cast<double>(n), -0.5));  // Python x.size(-1) ** -0.5
  const Eigen::Index segments = x.cols() / n;
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (Eigen::Index g = 0; g < segments; ++g) {
      double* u = x.row(r).data() + g * n;
      hadamard_butterflies(u, n, p);
      for (std::int64_t i = 0; i < n; ++i) u[i] = p.bf16(p.mul(u[i], scale));
    }
  }
}

Mat hadamard(const Precision& p, const Mat& x, std::int64_t size) {
  Mat y = x;
  hadamard_inplace(p, y, size);
  return y;
}

}  // namespace dsv4
