// spec 02 §2.9 (official kernel sparse_attn_kernel / wrapper sparse_attn, kernel_tilelang.py).
#include "dsv4/model/sparse_attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/parallel_rows.hpp"

namespace dsv4 {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::int64_t n_chunks(std::int64_t width) {
  return std::max<std::int64_t>(1, (width + kSparseAttnChunk - 1) / kSparseAttnChunk);
}

void validate(const Mat& q, std::int64_t n_heads, const Mat& kv, std::span<const double> sink,
              const IndexLists& lists) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("sparse_attention: " + what); };
  if (n_heads < 1) fail("n_heads must be ≥ 1, got " + std::to_string(n_heads));
  if (q.cols() != kv.cols()) {
    fail("q has head dim " + std::to_string(q.cols()) + ", kv " + std::to_string(kv.cols()));
  }
  if (static_cast<std::int64_t>(sink.size()) != n_heads) {
    fail("sink has " + std::to_string(sink.size()) + " entries, n_heads is " + std::to_string(n_heads));
  }
  if (q.rows() != lists.rows * n_heads) {
    fail("q has " + std::to_string(q.rows()) +
         " rows, expected lists.rows × n_heads = " + std::to_string(lists.rows * n_heads));
  }
  if (static_cast<std::int64_t>(lists.data.size()) != lists.rows * lists.width) fail("lists: data size mismatch");
  for (std::int64_t r = 0; r < lists.rows; ++r) {
    bool first_valid = false;
    for (std::int64_t j = 0; j < lists.width; ++j) {
      const std::int32_t idx = lists.at(r, j);
      if (idx < -1 || idx >= kv.rows()) {
        fail("lists: row " + std::to_string(r) + " entry " + std::to_string(j) + " = " + std::to_string(idx) +
             " outside [-1, " + std::to_string(kv.rows()) + ")");
      }
      if (j < kSparseAttnChunk && idx != -1) first_valid = true;
    }
    if (!first_valid) {
      fail("lists: row " + std::to_string(r) +
           ": the first chunk of 64 entries is all -1 (the official kernel returns NaN: exp(-inf - (-inf)))");
    }
  }
}

// spec 02 §2.9, one body for both modes. Per query row r, chunk by chunk of list positions (the
// official kernel's online softmax over chunks of 64 is part of its result; the exact math is one
// chunk of the whole list): the chunk's valid entries V [n, c] (−1 entries contribute exactly
// nothing — p = 0, v = 0 — so they are left out; a chunk without any leaves μ, ℓ and o unchanged),
//   S = Q_r Vᵀ [H, n] (official: one C1 rounding per element; exact: the deterministic GEMM),
//   s_j ← fl(s_j·fp32(scale)); μ' = max(μ, max_j s_j); α = exp(fl(μ − μ')); p_j = exp(fl(s_j − μ'));
//   ℓ ← fl(fma(ℓ, α, Σ_j p_j)) (C3); o ← fl(fl(o·α) + bf16(P)·V) (C1 per element); μ ← μ'.
// In exact mode every rounding is the identity, α = exp(−∞) = 0 for the single chunk, and the
// loop is the max-subtracted exact math: o = Σ_j e^{s_j − m} v_j / (Σ_j e^{s_j − m} + e^{z − m}).
// Query rows are split over threads; each row is computed by one thread (serial GEMMs inside).
void sparse_rows(const Precision& p, const Mat& q, std::int64_t H, const Mat& kv, std::span<const double> sink,
                 const IndexLists& lists, double scale, Mat& out, std::int64_t r0, std::int64_t r1) {
  const std::int64_t c = q.cols();
  const std::int64_t K = lists.width;
  // The dtype policy's accumulation structure (spec 02 §2.9): official chunks of 64, exact none.
  const std::int64_t width = p.official() ? kSparseAttnChunk : std::max<std::int64_t>(K, 1);
  // the kernel's fp32 constant (Deviation kSoftmaxScaleOff, bug catalogue only: × (1 + 1/128))
  const double tau = p.fp32(p.deviates(Deviation::kSoftmaxScaleOff) ? scale * (1.0 + 1.0 / 128.0) : scale);
  std::vector<std::int32_t> valid;
  Mat qr(H, c), v, pt, o(H, c);
  std::vector<double> mu(static_cast<std::size_t>(H)), ell(static_cast<std::size_t>(H)), pr;
  for (std::int64_t r = r0; r < r1; ++r) {
    qr = q.middleRows(r * H, H);
    std::fill(mu.begin(), mu.end(), -kInf);
    std::fill(ell.begin(), ell.end(), 0.0);
    o.setZero();
    for (std::int64_t g0 = 0; g0 < K; g0 += width) {
      // 1. gather the chunk's valid entries, in list order
      valid.clear();
      for (std::int64_t j = g0; j < std::min(K, g0 + width); ++j) {
        if (lists.at(r, j) != -1) valid.push_back(lists.at(r, j));
      }
      const auto n = static_cast<std::int64_t>(valid.size());
      if (n == 0) continue;
      v.resize(n, c);
      for (std::int64_t j = 0; j < n; ++j) v.row(j) = kv.row(valid[static_cast<std::size_t>(j)]);
      // 2. logits × τ; 3. running max
      const Mat s = p.matmul_nt(qr, v, /*threads=*/1);
      pt.resize(H, n);
      pr.resize(static_cast<std::size_t>(n));
      for (std::int64_t h = 0; h < H; ++h) {
        const auto hh = static_cast<std::size_t>(h);
        double mu_new = mu[hh];
        for (std::int64_t j = 0; j < n; ++j) {
          pt(h, j) = p.mul(s(h, j), tau);
          mu_new = std::max(mu_new, pt(h, j));
        }
        // 4. rescale factor, 5. probabilities, 6. ℓ ← ℓ·α + Σp as one FMA (C3), Σp a C1 sum
        const double alpha = p.exp(p.sub(mu[hh], mu_new));
        for (std::int64_t j = 0; j < n; ++j) {
          pr[static_cast<std::size_t>(j)] = p.exp(p.sub(pt(h, j), mu_new));
          pt(h, j) = p.bf16(pr[static_cast<std::size_t>(j)]);  // 7. P cast to bf16 for P·V only
        }
        ell[hh] = p.fma(ell[hh], alpha, p.sum(pr.data(), n));
        for (std::int64_t d = 0; d < c; ++d) o(h, d) = p.mul(o(h, d), alpha);  // 8. o ← fl(o·α)
        mu[hh] = mu_new;                                                       // 9.
      }
      // 8. o ← fl(o + C1 Σ_j bf16(p_j) v_j)
      const Mat pv = p.matmul_nn(pt, v, /*threads=*/1);
      for (std::int64_t h = 0; h < H; ++h) {
        for (std::int64_t d = 0; d < c; ++d) o(h, d) = p.add(o(h, d), pv(h, d));
      }
    }
    // finish: the sink in the denominator only, IEEE division, bf16 output
    for (std::int64_t h = 0; h < H; ++h) {
      const auto hh = static_cast<std::size_t>(h);
      const double e_sink = p.exp(p.sub(sink[hh], mu[hh]));
      const double den = p.add(ell[hh], e_sink);
      for (std::int64_t d = 0; d < c; ++d) {
        double od = o(h, d);
        // Deviation kSinkInNumerator: the sink also weights an all-ones value row.
        if (p.deviates(Deviation::kSinkInNumerator)) od = p.add(od, e_sink);
        out(r * H + h, d) = p.bf16(p.div(od, den));
      }
    }
  }
}
}  // namespace

// spec 02 §2.9: official kernel semantics (official mode) or the exact math (exact mode), one body.
Mat sparse_attention(const Precision& p, const Mat& q, std::int64_t n_heads, const Mat& kv,
                     std::span<const double> sink, const IndexLists& lists, double scale) {
  validate(q, n_heads, kv, sink, lists);
  Mat out(q.rows(), q.cols());
  parallel_rows(lists.rows, 4, [&](std::int64_t r0, std::int64_t r1) {
    sparse_rows(p, q, n_heads, kv, sink, lists, scale, out, r0, r1);
  });
  return out;
}

// spec 02 §2.9 — forward error analysis of the official loop against the exact math (u = 2^−24,
// u_b = 2^−8). Per valid entry j: the logit ŝ_j = fl(C1(q·v)·fl32(τ)) has |ŝ_j − s_j| ≤ 3.01u|s_j|;
// fl(ŝ_j − μ') adds u|ŝ_j − μ'| ≤ uR; exp adds u (C2, correctly rounded); the chain of later
// rescales α (exact for the first chunk: α = 0 with ℓ = o = 0) adds u(|Δμ| + 1) per chunk, Σ|Δμ| ≤ 2S.
// The numerator adds u_b for bf16(p) and ≤ 3u·n_chunks relative to Σ p|v| for o·α, the C1 chunk sum
// and the add; the denominator ≤ 2u·n_chunks (C1 sum, FMA) plus u(R + 3) for the sink term. With
// o = N/D, |ô − o| ≤ (u_b + E₁)A + (E₂ + u)|o| + u_b|o| and |o| ≤ A, E₁ + E₂ + u ≤ 3E. fp32
// underflow of p (< 2^−126 each, ℓ ≥ 1 − tiny) adds at most K·2^−125·max|v|.
Mat sparse_attention_official_bound(const Mat& q, std::int64_t n_heads, const Mat& kv, std::span<const double> sink,
                                    const IndexLists& lists, double scale) {
  validate(q, n_heads, kv, sink, lists);
  const std::int64_t c = q.cols();
  const std::int64_t H = n_heads;
  const double u = 0x1.0p-24, ub = 0x1.0p-8;
  const double nch = static_cast<double>(n_chunks(lists.width));
  Mat bound(q.rows(), c);
  std::vector<std::int32_t> valid;
  std::vector<double> s, w;
  for (std::int64_t r = 0; r < lists.rows; ++r) {
    valid.clear();
    for (std::int32_t i : lists.row(r)) {
      if (i != -1) valid.push_back(i);
    }
    double vmax = 0.0;
    for (std::int32_t i : valid) vmax = std::max(vmax, kv.row(i).cwiseAbs().maxCoeff());
    for (std::int64_t h = 0; h < H; ++h) {
      s.assign(valid.size(), 0.0);
      double m = -kInf, smax_abs = 0.0;
      for (std::size_t j = 0; j < valid.size(); ++j) {
        s[j] = scale * q.row(r * H + h).dot(kv.row(valid[j]));
        m = std::max(m, s[j]);
        smax_abs = std::max(smax_abs, std::abs(s[j]));
      }
      const double z = sink[static_cast<std::size_t>(h)];
      double R = 0.0;
      for (double sj : s) R = std::max(R, m - sj);
      if (std::isfinite(z)) R = std::max(R, std::abs(z - m));
      const double E = u * (5.01 * smax_abs + 2.0 * R + 6.0 * nch + 10.0);
      w.assign(valid.size(), 0.0);
      double den = std::exp(z - m);  // 0 for a sink of −∞
      for (std::size_t j = 0; j < valid.size(); ++j) {
        w[j] = std::exp(s[j] - m);
        den += w[j];
      }
      for (std::int64_t d = 0; d < c; ++d) {
        double a = 0.0;
        for (std::size_t j = 0; j < valid.size(); ++j) a += w[j] * std::abs(kv(valid[j], d));
        a /= den;
        bound(r * H + h, d) = 1.01 * (2.0 * ub + 3.0 * E) * a + static_cast<double>(lists.width) * 0x1.0p-120 * vmax;
      }
    }
  }
  return bound;
}

}  // namespace dsv4
