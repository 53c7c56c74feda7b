// Per-tensor error metrics of a candidate against a reference (issue 5, `dsv4 certify`; the
// definitions are in oracle/compare/README.md §Metrics). Pure computation: no file IO.
//
// One pass over the data computes everything: max abs and max rel error (with their indices), the
// RMS error, DeepGEMM's cosine diff, the ULP histogram in the candidate's number format, the
// reference's ulp scale (the tolerance model's noise floor), the signed bias, and the counts of
// NaN/Inf. The result is deterministic: the same bits for any thread count and any of the
// portable / AVX2 / AVX-512 kernels (fixed summation order inside fixed chunks of 4096 elements,
// chunk partials summed exactly).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "dsv4/compare/ulp.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4::compare {

enum class MetricKernel { kAuto, kPortable, kAvx2, kAvx512 };
bool metric_kernel_supported(MetricKernel k);
const char* metric_kernel_name(MetricKernel k);

struct MetricOptions {
  // The number format whose ULPs are counted: the candidate's own dtype. Default: the storage
  // dtype (kF64, kF32, kBF16, kF16, kE4M3, kE5M2). A bf16 engine that dumps float32 sets kBF16 here;
  // values that are not on that grid are then counted as off_grid.
  std::optional<DType> ulp_dtype;
  // The denominator guard of the relative error: rel_i = |c_i − r_i| / max(|r_i|, rel_floor).
  // Default: the ULP grid's smallest positive normal number (no guard beyond avoiding 0/0).
  // Must be > 0 and finite. tolerance.hpp's rel_floor_for() gives the certify choice.
  std::optional<double> rel_floor;
  int threads = 0;  // 0: automatic (one per core, fewer for small tensors)
  MetricKernel kernel = MetricKernel::kAuto;
};

struct TensorMetrics {
  DType storage = DType::kF32;  // the candidate's storage dtype
  DType ulp_dtype = DType::kF32;
  std::int64_t count = 0;     // elements
  std::int64_t compared = 0;  // elements where candidate and reference are both finite: every
                              // statistic below except the special-value counts is over these

  // Special values.
  std::int64_t cand_nan = 0;                    // NaN candidates (anywhere)
  std::int64_t cand_inf = 0;                    // ±inf candidates (anywhere)
  std::int64_t nonfinite_where_ref_finite = 0;  // candidate NaN/±inf where the reference is finite
  std::int64_t first_nonfinite_where_ref_finite = -1;
  std::int64_t ref_nonfinite = 0;     // reference ±inf/NaN (e.g. −inf masks of a score tensor)
  std::int64_t special_mismatch = 0;  // reference ±inf/NaN where the candidate is not the same value
                                      // (the same infinity, or NaN for NaN)
  std::int64_t first_special_mismatch = -1;
  std::int64_t off_grid = 0;  // finite candidates that are not values of the ULP format
  std::int64_t first_off_grid = -1;

  // Errors (indices: the first element attaining the maximum; −1 when the maximum is 0).
  double max_abs = 0.0;
  std::int64_t max_abs_index = -1;
  double max_abs_candidate = 0.0;  // the values at max_abs_index
  double max_abs_reference = 0.0;
  double rel_floor = 0.0;  // the denominator guard that was used
  double max_rel = 0.0;
  std::int64_t max_rel_index = -1;
  double rms = 0.0;  // sqrt(sum_sq_err / compared)
  double cosine_diff = 0.0;  // 1 − 2⟨c,r⟩/(‖c‖² + ‖r‖²) = sum_sq_err / (sum_sq_cand + sum_sq_ref); 0 if both are 0

  // The sums behind them (relative error ≤ 1e-12, see README §Accuracy).
  double sum_sq_err = 0.0;   // Σ (c − r)²
  double sum_sq_cand = 0.0;  // Σ c²
  double sum_sq_ref = 0.0;   // Σ r²
  double bias_sum = 0.0;     // Σ (c − r)·sign(r): > 0 away from zero, < 0 toward zero

  // Scale of the reference and the candidate format's spacing there (the noise floor).
  double ref_max_abs = 0.0;
  double ref_rms = 0.0;  // sqrt(sum_sq_ref / compared)
  double ulp_max = 0.0;  // max ulp(r_i) in the ULP format
  double ulp_sum = 0.0;  // Σ ulp(r_i)
  double ulp_rms = 0.0;  // sqrt(Σ ulp(r_i)² / compared)

  // ULP distances of c from r rounded to the ULP format.
  UlpHistogram ulp_hist{};
  std::uint64_t max_ulp = 0;
  std::int64_t max_ulp_index = -1;
};

// The candidate as stored: a dtype and its raw bytes (count elements; kF64 doubles, kF32 floats,
// kBF16/kF16 uint16 patterns, kE4M3/kE5M2 bytes — unscaled values).
struct CandidateData {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  std::int64_t count = 0;
};

// Throws std::invalid_argument naming the field: candidate count ≠ reference size, null data, an
// unsupported storage or ULP dtype, rel_floor not > 0 and finite, a kernel the CPU lacks,
// threads < 0.
TensorMetrics compute_metrics(const CandidateData& candidate, std::span<const double> reference,
                              const MetricOptions& options = {});
TensorMetrics compute_metrics(const Tensor& candidate, std::span<const double> reference,
                              const MetricOptions& options = {});
// Candidate values already widened to double; ULPs in `ulp_dtype` (e.g. the official reference's
// bf16 values against the exact ones).
TensorMetrics compute_metrics(std::span<const double> candidate, DType ulp_dtype, std::span<const double> reference,
                              const MetricOptions& options = {});

}  // namespace dsv4::compare
