// Row-invariant double GEMM for the compressor's exact-mode projections (see compressor_gemm.hpp).
#include "compressor_gemm.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace dsv4::compressor_detail {

namespace {

constexpr Eigen::Index kTileRows = 4;
constexpr Eigen::Index kTileCols = 4;
constexpr Eigen::Index kBlockK = 128;
constexpr Eigen::Index kBlockN = 256;

// y[rows r0..r1) += x[·, k0..k1) · wt[k0..k1, ·), each element continuing its own sum in increasing k.
void accumulate(const Mat& x, const Mat& wt, Mat& y, Eigen::Index r0, Eigen::Index r1, Eigen::Index k0, Eigen::Index k1,
                Eigen::Index n0, Eigen::Index n1) {
  const Eigen::Index ldw = wt.cols();
  for (Eigen::Index i0 = r0; i0 < r1; i0 += kTileRows) {
    const Eigen::Index ni = std::min(kTileRows, r1 - i0);
    for (Eigen::Index j0 = n0; j0 < n1; j0 += kTileCols) {
      const Eigen::Index nj = std::min(kTileCols, n1 - j0);
      if (ni == kTileRows && nj == kTileCols) {
        double acc[kTileRows][kTileCols];
        for (Eigen::Index a = 0; a < kTileRows; ++a) {
          for (Eigen::Index b = 0; b < kTileCols; ++b) acc[a][b] = y(i0 + a, j0 + b);
        }
        for (Eigen::Index k = k0; k < k1; ++k) {
          const double* w = wt.data() + k * ldw + j0;
          for (Eigen::Index a = 0; a < kTileRows; ++a) {
            const double xv = x(i0 + a, k);
            for (Eigen::Index b = 0; b < kTileCols; ++b) acc[a][b] = acc[a][b] + xv * w[b];
          }
        }
        for (Eigen::Index a = 0; a < kTileRows; ++a) {
          for (Eigen::Index b = 0; b < kTileCols; ++b) y(i0 + a, j0 + b) = acc[a][b];
        }
      } else {  // edge tile: the same operations per element
        for (Eigen::Index a = 0; a < ni; ++a) {
          for (Eigen::Index b = 0; b < nj; ++b) {
            double acc = y(i0 + a, j0 + b);
            for (Eigen::Index k = k0; k < k1; ++k) acc = acc + x(i0 + a, k) * wt(k, j0 + b);
            y(i0 + a, j0 + b) = acc;
          }
        }
      }
    }
  }
}

void rows_range(const Mat& x, const Mat& wt, Mat& y, Eigen::Index r0, Eigen::Index r1) {
  const Eigen::Index k = x.cols();
  const Eigen::Index n = wt.cols();
  for (Eigen::Index n0 = 0; n0 < n; n0 += kBlockN) {
    for (Eigen::Index k0 = 0; k0 < k; k0 += kBlockK) {
      accumulate(x, wt, y, r0, r1, k0, std::min(k, k0 + kBlockK), n0, std::min(n, n0 + kBlockN));
    }
  }
}

}  // namespace

Mat rowinv_matmul(const Mat& x, const Mat& wt) {
  if (x.cols() != wt.rows()) {
    throw std::invalid_argument("rowinv_matmul: inner dimensions differ (" + std::to_string(x.cols()) + " vs " +
                                std::to_string(wt.rows()) + ")");
  }
  Mat y = Mat::Zero(x.rows(), wt.cols());
  // Rows are split over threads in whole tiles; every element's sum is computed by one thread in
  // the fixed order, so the result does not depend on the thread count.
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const Eigen::Index work = x.rows() * x.cols() * wt.cols();
  const Eigen::Index threads = work < (Eigen::Index{1} << 22) ? 1 : std::min<Eigen::Index>(hw, x.rows() / kTileRows);
  if (threads <= 1) {
    rows_range(x, wt, y, 0, x.rows());
    return y;
  }
  const Eigen::Index tiles = (x.rows() + kTileRows - 1) / kTileRows;
  std::vector<std::thread> pool;
  for (Eigen::Index t = 0; t < threads; ++t) {
    const Eigen::Index r0 = std::min(x.rows(), tiles * t / threads * kTileRows);
    const Eigen::Index r1 = std::min(x.rows(), tiles * (t + 1) / threads * kTileRows);
    pool.emplace_back([&, r0, r1] { rows_range(x, wt, y, r0, r1); });
  }
  for (std::thread& th : pool) th.join();
  return y;
}

}  // namespace dsv4::compressor_detail
