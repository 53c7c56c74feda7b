// RMS normalisations of the attention stack (spec 01 §1.11 C8; spec 02 §2.4 step 3).
//
// Both take rows of a row-major matrix. In official mode the input values must be bf16 numbers
// (every caller normalises a bf16 tensor) and the outputs are bf16 numbers; in exact mode the
// functions compute the exact math in double with no storage rounding.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// spec 01 §1.11 C8 (official code RMSNorm.forward): per row of x [rows, dim],
//   y_i = w_i · x_i / sqrt(mean_j x_j² + eps).
// Official: x widened to fp32; v = fl(S × fl32(1/dim)) with S the C1 sum of the (exact) squares;
// r = rsqrt(fl(v + fl32(eps))) correctly rounded; z_i = fl(x_i·r); y_i = bf16(fl(w_i·z_i)).
// weight holds fp32 values (the checkpoint's bf16 weight widened). Throws std::invalid_argument
// when weight.size() != x.cols().
Mat rmsnorm(const Precision& p, const Mat& x, const Vec& weight, double eps);

// The same in the flat-array layout of the op registry and the GPU kernel (gpu/ops): x [rows, dim]
// and weight [dim] as fp32 values → y [rows, dim] as floats (every official-mode output is a bf16
// value; exact-mode outputs are rounded to fp32 here).
std::vector<float> rmsnorm_rows(const Precision& p, const float* x, std::int64_t rows, std::int64_t dim,
                                const float* weight, double eps);

// spec 02 §2.4 step 3 (official code Attention.forward, `q *= rsqrt(q.square().mean(-1) + eps)`):
// weightless RMS normalisation of every head_dim-wide head of every row of x [rows, H·head_dim],
// in place. Official: every step a separate bf16 PyTorch op —
//   u_i = bf16(q_i²); μ = bf16(fl(C1 Σ u_i × fl32(1/c))); v = bf16(fl(μ + fl32(eps)));
//   r = bf16(rsqrt(v)); q_i ← bf16(q_i·r).
// Exact: q_i ← q_i / sqrt(mean q² + eps). Throws std::invalid_argument when head_dim does not
// divide x.cols().
void head_rmsnorm_inplace(const Precision& p, Mat& x, std::int64_t head_dim, double eps);

}  // namespace dsv4
