// Muon (spec 06 §6.2, report Algorithm 1 and §4.2.2): the optimizer of every weight matrix
// (spec 06 §6.1; optimizer_assignment.hpp says which parameters), applied to each logically
// independent matrix W ∈ R^{n×m} separately (each expert's w1, w2, w3 are separate tensors and
// separate matrices; every other checkpoint matrix is one matrix — see optimizer_assignment.hpp).
//
// One step, exact mode (double), with μ = 0.95, γ = 0.18, λ = 0.1:
//   M_t = μ·M_{t−1} + G_t                              (no dampening; M_0 = 0)
//   O'  = HybridNewtonSchulz(μ·M_t + G_t)              (Nesterov input; newton_schulz.hpp: Frobenius
//                                                       normalisation Y/(‖Y‖_F + ε) with ε = kNsEps =
//                                                       1e-7, a tall Y iterated as Yᵀ and transposed
//                                                       back, 8 + 2 steps)
//   O   = O'·(√max(n, m)·γ)                            (update RMS γ: an orthogonal n×m matrix has RMS
//                                                       1/√max(n, m))
//   W_t = W_{t−1}·(1 − η·λ) − η·O                      (decoupled weight decay)
// Order of operations (each fl rounds once to double): M = fl(fl(μ·M) + G); Y = fl(fl(μ·M) + G);
// s = fl(fl(√max(n, m))·γ); O = fl(O'·s); W = fl(fl(W·fl(1 − fl(η·λ))) − fl(η·O)).
//
// Update RMS (issue 16 item 8): RMS(O) = s·‖O'‖_F/√(nm) = γ·√(mean of O'’s min(n, m) squared
// singular values) in real arithmetic, so RMS(O) ∈ γ·[σ_min(O'), σ_max(O')]; when every normalised
// singular value of Y is ≥ τ_ok = 3.7e-5 the Newton–Schulz band gives σ(O') ∈ [1 − 1e-9, 1.0020174]
// (properties/README.md §Newton–Schulz), hence RMS(O) ∈ [0.18·(1 − 1e-9), 0.18·1.0020174] up to the
// few roundings of O and of the RMS itself (tests/muon_test).
#pragma once

#include <cstdint>

#include "dsv4/model/precision.hpp"
#include "dsv4/train/newton_schulz.hpp"

namespace dsv4 {

struct MuonConfig {
  double momentum = 0.95;     // μ
  double rms = 0.18;          // γ, the update RMS
  double weight_decay = 0.1;  // λ
  double ns_eps = kNsEps;     // ε of the Frobenius normalisation
  // The training bug catalogue only (precision.hpp): kMuonTransposeNotUndone, kNsFastCoefficientsOnly
  // change muon_direction; any other value is the faithful Muon.
  Deviation deviation = Deviation::kNone;
};

// The momentum buffer M of one matrix (zero before the first step).
struct MuonState {
  Mat momentum;
};

MuonState muon_state(const Mat& w);

// O = HybridNewtonSchulz(y)·(√max(n, m)·γ): the scaled orthogonalised direction of an n×m input.
Mat muon_direction(const Mat& y, const MuonConfig& cfg = {}, int threads = 0);

// One step (the file comment's equations): updates w and state in place and returns O, the update
// before the learning rate. row_blocks > 1: w is that many equal row blocks, each a logically
// independent matrix (`wo_a`, optimizer_assignment.hpp muon_row_blocks) — the momentum is
// elementwise, O is each block's muon_direction, √max(n, m) of the block's shape. threads: as
// gemm_nt (0 = gemm_threads()); the result never depends on it. Throws std::invalid_argument naming
// the argument when shapes differ, w or g holds a non-finite value, lr is negative or non-finite,
// row_blocks does not divide the rows, or a hyper-parameter is out of range (μ in [0, 1), γ > 0,
// λ ≥ 0, ε ≥ 0; Newton–Schulz refuses a zero Nesterov input with ε = 0).
Mat muon_step(Mat& w, MuonState& state, const Mat& g, double lr, const MuonConfig& cfg = {},
              std::int64_t row_blocks = 1, int threads = 0);

}  // namespace dsv4
