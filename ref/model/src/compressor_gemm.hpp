// Private to the compressor: the exact-mode (double) projection with a row-invariant
// accumulation order. Every output element is ((0 + x_0 w_0) + x_1 w_1) + … in increasing k — the
// same operations whatever the number of rows, the tiling or the thread count — so one token's
// projection is bit-identical in a prefill of any length and in a decode step (spec 02 §2.6.5
// "Prefill/decode equivalence" in exact mode). Eigen's GEMM does not have this property: its
// 1-row (GEMV) and multi-row kernels sum in different orders.
#pragma once

#include "dsv4/model/precision.hpp"

namespace dsv4::compressor_detail {

// y [M, N] = x [M, K] · wt [K, N] (wt: the transposed weight, row-major).
Mat rowinv_matmul(const Mat& x, const Mat& wt);

}  // namespace dsv4::compressor_detail
