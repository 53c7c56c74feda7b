// Certification of the exact-mode FP8 decisions of the window KV path (spec 02 §2.5; ref/README.md
// §Precision design): kv = kv_norm(x · wkvᵀ) → RoPE on the last r_d dims → FP8 simulation of dims
// [0, c − r_d) (act_quant, block 64, UE8M0 scale).
//
// The double pipeline (deterministic GEMM, double RMSNorm) carries a rigorous per-element error
// bound (derivation in kv_certify.cpp). A block's power-of-two scale decision is certified when the
// whole interval of possible true amax values gives the same scale; an element's e4m3 rounding is
// certified when the whole interval of its possible true values rounds to the same grid value. RoPE
// leaves the quantised dims untouched, so their bound is the linear + RMSNorm bound only. A row with
// any uncertified decision is recomputed in Mp50 (50 digits) from the layer input and the exactly
// dequantised weight, and all its blocks are re-quantised from the Mp50 values (exact decisions).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/quant_margin.hpp"

namespace dsv4 {

// Rigorous bound of |ŷ − y| per element, ŷ = Precision(kExact).matmul_nt(x, w) (the deterministic
// double GEMM), y = x · wᵀ exactly. [M, N].
Mat linear_error_bound(const Mat& x, const Mat& w);

// Rigorous bound of |ô_i − o_i| for i < cols, ô = the exact-mode double rmsnorm(ŷ, weight, eps)
// (dsv4::rmsnorm) and o = weight ⊙ y / sqrt(mean(y²) + eps) of the exact y with |ŷ − y| ≤ e_y
// (all columns of the row feed the norm). [rows, cols].
Mat rmsnorm_error_bound(const Mat& y_hat, const Mat& e_y, const Vec& weight, double eps, std::int64_t cols);

// Mp50 value of o_j, j < cols, of row `row`: y = x[row] · wᵀ, o = weight ⊙ y / sqrt(mean(y²) + eps).
std::vector<Mp50> linear_rmsnorm_row_mp50(const Mat& x, std::int64_t row, const Mat& w, const Vec& weight, double eps,
                                          std::int64_t cols);

// act_quant of one block (UE8M0 scale, e4m3 RNE, amax floor fl32(1e-4), spec 01 §1.4) with every
// decision taken on the Mp50 values; returns the quantised values q·2^k (exact doubles).
std::vector<double> fp8_ue8m0_block_mp50(std::span<const Mp50> v);
// The same for either exact block quantiser (FP8 above, or FP4: e2m1, qmax 6, amax floor 6·2^-126,
// power-of-two scale, spec 01 §1.5).
std::vector<double> block_quant_mp50(std::span<const Mp50> v, BlockQuant kind);

// Per element of v (its length a multiple of block; blocks of `block` consecutive elements): 1
// when the decision of the exact block quantiser `kind` (block_quant_exact_inplace) for that
// element — its block's power-of-two scale and its own rounding — is the same for every true
// value t with |t_j − v_j| ≤ bound_j for all j, else 0.
std::vector<char> block_decisions_certified(std::span<const double> v, std::span<const double> bound, int block,
                                            BlockQuant kind);

// spec 02 §2.5 step 4, the window KV's FP8 decisions under the policy p
// (Precision::certify_quantised; official mode: nothing to certify). x [s, d] the layer input, w
// [c, d] the exact wkv values, y_hat = matmul_nt(x, w) in double, unquantised [s, ≥ cols] the
// double kv_norm output (columns [0, cols) — RoPE does not touch them), quantised [s, ≥ cols] the
// same after the double quantiser (block_quant_exact_inplace). Certifies every decision of columns
// [0, cols); rows with an uncertified decision get columns [0, cols) replaced by the Mp50
// decisions. Throws std::logic_error if a decision the bound certified disagrees with Mp50 (a
// broken bound). Counts: recomputed = rows.
DecisionStats certify_fp8_kv(const Precision& p, const Mat& x, const Mat& w, const Vec& weight, double eps,
                             const Mat& y_hat, const Mat& unquantised, std::int64_t cols, int block, Mat& quantised);
// The same in exact mode.
DecisionStats certify_fp8_kv(const Mat& x, const Mat& w, const Vec& weight, double eps, const Mat& y_hat,
                             const Mat& unquantised, std::int64_t cols, int block, Mat& quantised);

}  // namespace dsv4
