// Per-tensor metrics (metrics.hpp): validation, kernel dispatch, threads, the classification of
// special values, and the exact summation of the kernel's chunk partials.
#include "dsv4/compare/metrics.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/simd_level.hpp"
#include "metrics_kernel.hpp"

namespace dsv4::compare {
namespace {

using compare_detail::kChunk;
using compare_detail::KernelArgs;
using compare_detail::KernelFn;
using compare_detail::KernelGrid;
using compare_detail::KernelState;
using compare_detail::kSums;
using compare_detail::Storage;

static_assert(compare_detail::kBuckets == kUlpBuckets);

// Below this many elements per thread, a second thread costs more than it saves.
constexpr std::int64_t kElementsPerThread = std::int64_t{1} << 18;
// Slices of non-native storage (fp16, fp8) decoded to double at a time, per thread.
constexpr std::int64_t kDecodeSlice = kChunk;
// Outside [2^−480, 2^480] the squares could underflow or their sums overflow: the sums are then
// taken of values scaled by a power of two (exact), see README §Accuracy.
constexpr int kScaleExponent = 480;

bool cpu_has(MetricKernel k) { return simd::cpu_runs(k); }

MetricKernel resolve(MetricKernel k) { return k != MetricKernel::kAuto ? k : simd::best_level<MetricKernel>(); }

KernelFn kernel_fn(MetricKernel k, Storage s, bool from_bits, bool scaled) {
  switch (k) {
    case MetricKernel::kAvx512:
      return compare_detail::avx512_kernel(s, from_bits, scaled);
    case MetricKernel::kAvx2:
      return compare_detail::avx2_kernel(s, from_bits, scaled);
    default:
      return compare_detail::portable_kernel(s, from_bits, scaled);
  }
}

bool native_storage(DType d) { return d == DType::kF64 || d == DType::kF32 || d == DType::kBF16; }

Storage storage_of(DType d) {
  switch (d) {
    case DType::kF32:
      return Storage::kF32;
    case DType::kBF16:
      return Storage::kBF16;
    default:
      return Storage::kF64;  // kF64, and the decoded slices of kF16 / kE4M3 / kE5M2
  }
}

// The value of candidate element i, widened exactly to double.
double candidate_value(const CandidateData& c, std::int64_t i) {
  const auto* b = static_cast<const unsigned char*>(c.data);
  switch (c.dtype) {
    case DType::kF64: {
      double v;
      std::memcpy(&v, b + 8 * i, 8);
      return v;
    }
    case DType::kF32: {
      float v;
      std::memcpy(&v, b + 4 * i, 4);
      return v;
    }
    case DType::kBF16:
    case DType::kF16: {
      std::uint16_t v;
      std::memcpy(&v, b + 2 * i, 2);
      return c.dtype == DType::kBF16 ? bf16_to_float(v) : fp16_to_float(v);
    }
    case DType::kE4M3:
      return e4m3_to_float(b[i]);
    default:
      return e5m2_to_float(b[i]);
  }
}

KernelGrid kernel_grid(const UlpGrid& g, DType storage) {
  KernelGrid k{};
  const bool f64 = g.dtype == DType::kF64;
  k.shift = 52 - g.mantissa_bits;
  k.exp_offset = static_cast<std::uint64_t>(1022 + g.min_exponent) << 52;
  k.min_normal = f64 ? 0.0 : std::ldexp(1.0, g.min_exponent);
  k.sub_scale = f64 ? 1.0 : std::ldexp(1.0, g.mantissa_bits - g.min_exponent);
  k.max_finite = g.max_finite_ordinal;
  k.clamp_ordinal = g.max_finite_ordinal + (g.has_infinity ? 1 : 0);
  k.ulp_field_min = 1023 + g.min_exponent;
  k.ulp_field_max = 1023 + g.max_exponent;
  k.mantissa_bits = g.mantissa_bits;
  k.cand_sign_shift = storage == DType::kF64 ? 63 : (storage == DType::kF32 ? 31 : 15);
  return k;
}

void fold_max(double v, std::int64_t i, double& best, std::int64_t& best_i) {
  if (v > best || (v == best && i >= 0 && (best_i < 0 || i < best_i))) {
    best = v;
    best_i = i;
  }
}

void merge_state(KernelState& into, const KernelState& s) {
  fold_max(s.max_abs, s.max_abs_index, into.max_abs, into.max_abs_index);
  fold_max(s.max_rel, s.max_rel_index, into.max_rel, into.max_rel_index);
  if (s.max_ulp > into.max_ulp || (s.max_ulp == into.max_ulp && s.max_ulp_index >= 0 &&
                                   (into.max_ulp_index < 0 || s.max_ulp_index < into.max_ulp_index))) {
    into.max_ulp = s.max_ulp;
    into.max_ulp_index = s.max_ulp_index;
  }
  into.ref_max_abs = std::max(into.ref_max_abs, s.ref_max_abs);
  for (int b = 0; b < compare_detail::kBuckets; ++b) into.hist[b] += s.hist[b];
  into.off_grid += s.off_grid;
  if (s.first_off_grid >= 0 && (into.first_off_grid < 0 || s.first_off_grid < into.first_off_grid)) {
    into.first_off_grid = s.first_off_grid;
  }
  into.excluded += s.excluded;
}

// Decoded values of the non-native storages (fp16: 65,536 entries; fp8: 256).
const std::vector<double>& decode_table(DType d) {
  static const std::vector<double> f16 = [] {
    std::vector<double> t(65536);
    for (std::uint32_t b = 0; b < 65536; ++b) t[b] = fp16_to_float(static_cast<std::uint16_t>(b));
    return t;
  }();
  static const std::vector<double> e4m3 = [] {
    std::vector<double> t(256);
    for (std::uint32_t b = 0; b < 256; ++b) t[b] = e4m3_to_float(static_cast<std::uint8_t>(b));
    return t;
  }();
  static const std::vector<double> e5m2 = [] {
    std::vector<double> t(256);
    for (std::uint32_t b = 0; b < 256; ++b) t[b] = e5m2_to_float(static_cast<std::uint8_t>(b));
    return t;
  }();
  return d == DType::kF16 ? f16 : (d == DType::kE4M3 ? e4m3 : e5m2);
}

struct Pass {
  const CandidateData* cand;
  std::span<const double> ref;
  KernelFn fn;
  KernelGrid grid;
  double rel_floor;
  double scale;
  std::vector<double>* partials;  // [kSums][chunks]
  std::vector<std::uint8_t>* excluded;
  std::int64_t chunks;
};

// Elements [first, first + count) (first a multiple of kChunk) into `state`.
void run_range(const Pass& p, std::int64_t first, std::int64_t count, KernelState& state) {
  KernelArgs a{};
  a.storage = storage_of(p.cand->dtype);
  a.grid = p.grid;
  a.rel_floor = p.rel_floor;
  a.scale = p.scale;
  a.partials = p.partials->data();
  a.partial_stride = p.chunks;
  a.chunk_excluded = p.excluded->data();
  if (native_storage(p.cand->dtype)) {
    a.cand =
        static_cast<const unsigned char*>(p.cand->data) + first * static_cast<std::int64_t>(dtype_size(p.cand->dtype));
    a.ref = p.ref.data() + first;
    a.first = first;
    a.count = count;
    p.fn(a, state);
    return;
  }
  const std::vector<double>& table = decode_table(p.cand->dtype);
  std::vector<double> buf(static_cast<std::size_t>(std::min(count, kDecodeSlice)));
  for (std::int64_t s = 0; s < count; s += kDecodeSlice) {
    const std::int64_t n = std::min(kDecodeSlice, count - s);
    const std::int64_t g = first + s;
    if (p.cand->dtype == DType::kF16) {
      const auto* src = static_cast<const std::uint16_t*>(p.cand->data) + g;
      for (std::int64_t i = 0; i < n; ++i) buf[static_cast<std::size_t>(i)] = table[src[i]];
    } else {
      const auto* src = static_cast<const std::uint8_t*>(p.cand->data) + g;
      for (std::int64_t i = 0; i < n; ++i) buf[static_cast<std::size_t>(i)] = table[src[i]];
    }
    a.cand = buf.data();
    a.ref = p.ref.data() + g;
    a.first = g;
    a.count = n;
    p.fn(a, state);
  }
}

KernelState run_pass(const Pass& p, int threads) {
  const auto n = static_cast<std::int64_t>(p.ref.size());
  std::vector<KernelState> states(static_cast<std::size_t>(threads));
  std::vector<std::thread> pool;
  const std::int64_t per = (p.chunks + threads - 1) / threads;
  for (int t = threads - 1; t >= 0; --t) {  // contiguous chunk ranges; thread 0 is this one
    const std::int64_t first = std::min(p.chunks, per * t) * kChunk;
    const std::int64_t count = std::min(n, std::min(p.chunks, per * (t + 1)) * kChunk) - first;
    if (count <= 0) continue;
    KernelState* st = &states[static_cast<std::size_t>(t)];
    if (t == 0) {
      run_range(p, first, count, *st);
    } else {
      pool.emplace_back([&p, first, count, st] { run_range(p, first, count, *st); });
    }
  }
  for (auto& th : pool) th.join();
  KernelState total;
  for (const auto& s : states) merge_state(total, s);
  return total;
}

// Special values, for the chunks that had excluded elements (README §Special values).
void classify_specials(const CandidateData& cand, std::span<const double> ref, const std::vector<std::uint8_t>& flags,
                       TensorMetrics& m) {
  const auto n = static_cast<std::int64_t>(ref.size());
  for (std::size_t chunk = 0; chunk < flags.size(); ++chunk) {
    if (flags[chunk] == 0) continue;
    const std::int64_t c0 = static_cast<std::int64_t>(chunk) * kChunk;
    const std::int64_t c1 = std::min(n, c0 + kChunk);
    for (std::int64_t i = c0; i < c1; ++i) {
      const double c = candidate_value(cand, i);
      const double r = ref[static_cast<std::size_t>(i)];
      if (std::isnan(c)) ++m.cand_nan;
      if (std::isinf(c)) ++m.cand_inf;
      if (std::isfinite(r)) {
        if (!std::isfinite(c)) {
          if (m.nonfinite_where_ref_finite++ == 0) m.first_nonfinite_where_ref_finite = i;
        }
        continue;
      }
      ++m.ref_nonfinite;
      const bool same = std::isnan(r) ? std::isnan(c) : c == r;
      if (!same && m.special_mismatch++ == 0) m.first_special_mismatch = i;
    }
  }
}

double exact_total(const std::vector<double>& partials, std::int64_t chunks, int q) {
  const std::span<const double> s(partials.data() + q * chunks, static_cast<std::size_t>(chunks));
  return exact_sum_to_double(s);
}

}  // namespace

bool metric_kernel_supported(MetricKernel k) { return cpu_has(k); }

const char* metric_kernel_name(MetricKernel k) { return simd::level_name(k); }

TensorMetrics compute_metrics(const CandidateData& candidate, std::span<const double> reference,
                              const MetricOptions& options) {
  const DType st = candidate.dtype;
  if (!(native_storage(st) || st == DType::kF16 || st == DType::kE4M3 || st == DType::kE5M2)) {
    throw std::invalid_argument("compute_metrics: candidate dtype " + std::string(dtype_name(st)) +
                                " is not a comparable storage (f64, f32, bf16, f16, e4m3, e5m2)");
  }
  if (candidate.count < 0) throw std::invalid_argument("compute_metrics: candidate count is negative");
  if (static_cast<std::size_t>(candidate.count) != reference.size()) {
    throw std::invalid_argument("compute_metrics: candidate has " + std::to_string(candidate.count) +
                                " elements, reference " + std::to_string(reference.size()));
  }
  if (candidate.count > 0 && (candidate.data == nullptr || reference.data() == nullptr)) {
    throw std::invalid_argument("compute_metrics: candidate data is null");
  }
  const DType ud = options.ulp_dtype.value_or(st);
  const UlpGrid grid = ulp_grid(ud);  // throws for a non-float ulp_dtype
  const double rel_floor = options.rel_floor.value_or(std::ldexp(1.0, grid.min_exponent));
  if (!(rel_floor > 0.0) || !std::isfinite(rel_floor)) {
    throw std::invalid_argument("compute_metrics: rel_floor must be > 0 and finite, got " + std::to_string(rel_floor));
  }
  if (options.threads < 0) throw std::invalid_argument("compute_metrics: threads must be ≥ 0");
  const MetricKernel kernel = resolve(options.kernel);
  if (!cpu_has(kernel)) {
    throw std::invalid_argument(std::string("compute_metrics: kernel ") + metric_kernel_name(kernel) +
                                " is not supported by this CPU");
  }

  const std::int64_t n = candidate.count;
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  int threads = options.threads;
  if (threads == 0) {
    const auto hw = static_cast<std::int64_t>(std::max(1u, std::thread::hardware_concurrency()));
    threads = static_cast<int>(std::clamp<std::int64_t>(n / kElementsPerThread, 1, hw));
  }
  threads = static_cast<int>(std::clamp<std::int64_t>(chunks, 1, threads));

  std::vector<double> partials(static_cast<std::size_t>(kSums * chunks));
  std::vector<std::uint8_t> excluded(static_cast<std::size_t>(chunks));
  // The candidate's ordinal is its bit pattern when it is stored in the grid's own format.
  const bool from_bits = native_storage(st) && st == ud;
  Pass pass{&candidate,
            reference,
            kernel_fn(kernel, storage_of(st), from_bits, false),
            kernel_grid(grid, st),
            rel_floor,
            1.0,
            &partials,
            &excluded,
            chunks};
  KernelState s = run_pass(pass, threads);

  // README §Accuracy: rescale the summed terms when the magnitudes leave [2^−480, 2^480]
  // (|c| ≤ |r| + |c − r| bounds the candidate's magnitude).
  double mag = s.ref_max_abs + s.max_abs;
  if (!std::isfinite(mag)) {  // c − r overflowed: the candidate's own maximum, the slow way
    mag = s.ref_max_abs;
    for (std::int64_t i = 0; i < n; ++i) {
      const double c = std::fabs(candidate_value(candidate, i));
      if (std::isfinite(c) && std::isfinite(reference[static_cast<std::size_t>(i)])) mag = std::max(mag, c);
    }
  }
  bool finite_partials = true;
  for (double v : partials) finite_partials = finite_partials && std::isfinite(v);
  double scale = 1.0;
  if (mag > 0.0 &&
      (!finite_partials || mag > std::ldexp(1.0, kScaleExponent) || mag < std::ldexp(1.0, -kScaleExponent))) {
    scale = std::ldexp(1.0, -std::ilogb(mag));
    pass.fn = kernel_fn(kernel, storage_of(st), from_bits, true);
    pass.scale = scale;
    (void)run_pass(pass, threads);
  }

  TensorMetrics m;
  m.storage = st;
  m.ulp_dtype = ud;
  m.count = n;
  m.compared = n - s.excluded;
  m.rel_floor = rel_floor;
  if (s.excluded > 0) classify_specials(candidate, reference, excluded, m);
  m.off_grid = s.off_grid;
  m.first_off_grid = s.first_off_grid;

  m.max_abs = s.max_abs;
  m.max_abs_index = s.max_abs_index;
  if (s.max_abs_index >= 0) {
    m.max_abs_candidate = candidate_value(candidate, s.max_abs_index);
    m.max_abs_reference = reference[static_cast<std::size_t>(s.max_abs_index)];
  }
  m.max_rel = s.max_rel;
  m.max_rel_index = s.max_rel_index;
  m.max_ulp = s.max_ulp;
  m.max_ulp_index = s.max_ulp_index;
  std::copy(s.hist, s.hist + kUlpBuckets, m.ulp_hist.begin());
  m.ref_max_abs = s.ref_max_abs;
  m.ulp_max = m.compared > 0 ? ulp_at(grid, s.ref_max_abs) : 0.0;  // ulp(x) is non-decreasing in |x|

  const double err2 = exact_total(partials, chunks, compare_detail::kSumErr2);
  const double cand2 = exact_total(partials, chunks, compare_detail::kSumCand2);
  const double ref2 = exact_total(partials, chunks, compare_detail::kSumRef2);
  // Σc² + Σr² rounded once: the two partial arrays are adjacent.
  const double both2 = exact_sum_to_double(std::span<const double>(partials.data() + compare_detail::kSumCand2 * chunks,
                                                                   static_cast<std::size_t>(2 * chunks)));
  const double bias = exact_total(partials, chunks, compare_detail::kSumBias);
  const double usum = exact_total(partials, chunks, compare_detail::kSumUlp);
  const double usum2 = exact_total(partials, chunks, compare_detail::kSumUlp2);
  const double inv = 1.0 / scale;  // a power of two
  m.sum_sq_err = err2 * inv * inv;
  m.sum_sq_cand = cand2 * inv * inv;
  m.sum_sq_ref = ref2 * inv * inv;
  m.bias_sum = bias * inv;
  m.ulp_sum = usum * inv;
  m.cosine_diff = both2 > 0.0 ? err2 / both2 : 0.0;
  if (m.compared > 0) {
    const auto cnt = static_cast<double>(m.compared);
    m.rms = std::sqrt(err2 / cnt) * inv;
    m.ref_rms = std::sqrt(ref2 / cnt) * inv;
    m.ulp_rms = std::sqrt(usum2 / cnt) * inv;
  }
  return m;
}

TensorMetrics compute_metrics(const Tensor& candidate, std::span<const double> reference,
                              const MetricOptions& options) {
  CandidateData c;
  c.dtype = candidate.dtype();
  c.data = candidate.bytes();
  c.count = candidate.numel();
  if (c.dtype == DType::kE2M1x2) {
    throw std::invalid_argument("compute_metrics: packed fp4 candidates must be dequantised first");
  }
  return compute_metrics(c, reference, options);
}

TensorMetrics compute_metrics(std::span<const double> candidate, DType ulp_dtype, std::span<const double> reference,
                              const MetricOptions& options) {
  CandidateData c;
  c.dtype = DType::kF64;
  c.data = candidate.data();
  c.count = static_cast<std::int64_t>(candidate.size());
  MetricOptions o = options;
  o.ulp_dtype = ulp_dtype;
  return compute_metrics(c, reference, o);
}

}  // namespace dsv4::compare
