// The hybrid Newton–Schulz iteration of Muon (spec 06 §6.2, report eq. 28 and Algorithm 1 step 3),
// written once for every caller (the Muon optimizer, the property suites).
//
//   HybridNewtonSchulz(Y):
//     orient   W = Y, or W = Yᵀ when Y has more rows than columns (the Gram matrix WWᵀ is the
//              smaller one) — spec 06 §6.2 [C: standard Muon practice];
//     X_0    = W / (‖W‖_F + ε), ε = 1e-7 — spec 06 §6.2 [C: "common practice"];
//     X_k    = a X + b (XXᵀ) X + c (XXᵀ)² X,
//              k = 1..8: (a, b, c) = (3.4445, −4.7750, 2.0315)   (aggressive),
//              k = 9, 10: (a, b, c) = (2, −1.5, 0.5)             (stabilising);
//     result = X_10, transposed back when W = Yᵀ.
//
// In exact arithmetic the iteration acts on the singular values alone: with W = U Σ Vᵀ,
// X_k = U p_k(…p_1(Σ/(‖W‖_F + ε))…) Vᵀ, p(σ) = aσ + bσ³ + cσ⁵ (properties/README.md §Newton–Schulz
// derives the bands from these scalar maps).
//
// Arithmetic (the report runs the iteration in BF16 matrix multiplications; the reference runs
// it in double, as the truth to compare such runs with): every matrix product is the deterministic
// GEMM of numerics/gemm.hpp, so the result has the same bits for every thread count, vector width
// and CPU. One step evaluates, in this order,
//     A = fl(X Xᵀ),  A2 = fl(A·A),  B_ij = fl(fl(b·A_ij) + fl(c·A2_ij)),
//     C = fl(B·X),   X'_ij = fl(fl(a·X_ij) + C_ij),
// and newton_schulz_scalar_step evaluates a 1×1 step in the same order, so a diagonal input runs
// exactly (bit for bit) the scalar iteration on each diagonal entry.
#pragma once

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// (a, b, c) of one iteration X ← aX + b(XXᵀ)X + c(XXᵀ)²X (spec 06 §6.2).
struct NsCoefficients {
  double a;
  double b;
  double c;
};
inline constexpr NsCoefficients kNsAggressive{3.4445, -4.7750, 2.0315};  // k = 1..8
inline constexpr NsCoefficients kNsStabilising{2.0, -1.5, 0.5};          // k = 9, 10: p(1) = 1, p'(1) = 0
inline constexpr int kNsAggressiveSteps = 8;
inline constexpr int kNsStabilisingSteps = 2;
inline constexpr double kNsEps = 1e-7;  // the additive ε of the normalisation [C]

// p(σ) = aσ + bσ³ + cσ⁵, evaluated as the matrix step evaluates a 1×1 matrix:
// s2 = σ·σ, s4 = s2·s2, B = b·s2 + c·s4, p = a·σ + B·σ (each operation rounded once).
double newton_schulz_scalar_step(double sigma, const NsCoefficients& c);

// ‖Y‖_F = 2^e · sqrt(Σ (y·2^−e)²) summed in row-major order, e = ilogb(max |y|) (the power-of-two
// scaling is exact, so this equals the plain sqrt(Σ y²) whenever that neither overflows nor
// underflows, and ‖2^k Y‖_F = 2^k ‖Y‖_F exactly). Throws std::invalid_argument when y has a
// non-finite element or the norm overflows double.
double frobenius_norm(const Mat& y);

// spec 06 §6.2: X_0 = Y / (‖Y‖_F + eps), each element divided by fl(‖Y‖_F + eps). Throws
// std::invalid_argument naming the argument: y empty or non-finite, eps negative or non-finite,
// ‖Y‖_F overflowing, or y = 0 with eps = 0.
Mat newton_schulz_normalise(const Mat& y, double eps = kNsEps);

// spec 06 §6.2: one iteration X' = aX + b(XXᵀ)X + c(XXᵀ)²X of an r×c matrix in the order of the
// file comment (any shape; the Gram matrix is r×r). threads: as gemm_nt (0 = gemm_threads()); the
// result never depends on it. Throws std::invalid_argument when x is empty or non-finite.
Mat newton_schulz_step(const Mat& x, const NsCoefficients& c, int threads = 0);

// Both phases of HybridNewtonSchulz(Y), in Y's orientation.
struct NewtonSchulzPhases {
  Mat after_aggressive;  // X_8
  Mat result;            // X_10
};
// spec 06 §6.2 HybridNewtonSchulz (orientation, normalisation, 8 + 2 steps). Throws as
// newton_schulz_normalise.
NewtonSchulzPhases hybrid_newton_schulz_phases(const Mat& y, double eps = kNsEps, int threads = 0);
// X_10 only (Muon step 3: O'_t = HybridNewtonSchulz(μM_t + G_t)).
Mat hybrid_newton_schulz(const Mat& y, double eps = kNsEps, int threads = 0);

}  // namespace dsv4
