// spec 02 §2.9 (official kernel sparse_attn_kernel / wrapper sparse_attn, kernel_tilelang.py).
#include "dsv4/model/sparse_attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/gemm.hpp"
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

// spec 02 §2.9, official kernel arithmetic under C1–C5.
// Query rows [r0, r1); rows are independent (parallel_rows).
void sparse_official_rows(const Precision& p, const Mat& q, std::int64_t H, const Mat& kv, std::span<const double> sink,
                          const IndexLists& lists, double scale, Mat& out, std::int64_t r0, std::int64_t r1) {
  const std::int64_t c = q.cols();
  const std::int64_t K = lists.width;
  const std::int64_t G = n_chunks(K);
  const double tau = p.fp32(scale);  // the kernel's fp32 constant
  std::vector<std::int32_t> idx(kSparseAttnChunk);
  Mat vt(c, kSparseAttnChunk);  // the chunk's V rows, transposed (v_j of column j; zero for −1)
  std::vector<double> s(kSparseAttnChunk), pr(kSparseAttnChunk), pt(kSparseAttnChunk);
  std::vector<double> o(static_cast<std::size_t>(c));
  for (std::int64_t r = r0; r < r1; ++r) {
    for (std::int64_t h = 0; h < H; ++h) {
      const double* qh = q.row(r * H + h).data();
      double mu = -kInf, ell = 0.0;
      std::fill(o.begin(), o.end(), 0.0);
      for (std::int64_t g = 0; g < G; ++g) {
        // 1. gather (positions past K read as −1; −1 rows are zero)
        for (std::int64_t j = 0; j < kSparseAttnChunk; ++j) {
          const std::int64_t pi = g * kSparseAttnChunk + j;
          idx[static_cast<std::size_t>(j)] = pi < K ? lists.at(r, pi) : -1;
          const std::int32_t i = idx[static_cast<std::size_t>(j)];
          for (std::int64_t d = 0; d < c; ++d) vt(d, j) = i == -1 ? 0.0 : kv(i, d);
        }
        // 2. logits: (0 or −∞) + C1(q·v), then × τ rounded to fp32; 3. running max
        double mu_new = mu;
        for (std::int64_t j = 0; j < kSparseAttnChunk; ++j) {
          const std::int32_t i = idx[static_cast<std::size_t>(j)];
          double sj = -kInf;
          if (i != -1) sj = p.mul(p.dot(qh, kv.row(i).data(), c), tau);
          s[static_cast<std::size_t>(j)] = sj;
          mu_new = std::max(mu_new, sj);
        }
        // 4. rescale factor, 5. probabilities (exp(−∞) = 0 for −1 entries)
        const double alpha = p.exp(p.sub(mu, mu_new));
        for (std::int64_t j = 0; j < kSparseAttnChunk; ++j) {
          const auto jj = static_cast<std::size_t>(j);
          pr[jj] = p.exp(p.sub(s[jj], mu_new));
          pt[jj] = p.bf16(pr[jj]);  // 7. P cast to bf16 for P·V only
        }
        // 6. ℓ ← ℓ·α + Σp as one FMA (C3), Σp a C1 sum of the fp32 p
        ell = p.fma(ell, alpha, p.sum(pr.data(), kSparseAttnChunk));  // one fp32 rounding (not double then fp32)
        // 8. o ← fl(o·α); o ← fl(o + C1 Σ_j bf16(p_j) v_j)
        for (std::int64_t d = 0; d < c; ++d) {
          const auto dd = static_cast<std::size_t>(d);
          o[dd] = p.mul(o[dd], alpha);
          o[dd] = p.add(o[dd], p.dot(pt.data(), vt.row(d).data(), kSparseAttnChunk));
        }
        mu = mu_new;  // 9.
      }
      // finish: the sink in the denominator only, IEEE division, bf16 output
      const double e_sink = p.exp(p.sub(sink[static_cast<std::size_t>(h)], mu));
      ell = p.add(ell, e_sink);
      // Deviation kSinkInNumerator: the sink also weights an all-ones value row.
      if (p.deviates(Deviation::kSinkInNumerator)) {
        for (double& od : o) od = p.add(od, e_sink);
      }
      for (std::int64_t d = 0; d < c; ++d) out(r * H + h, d) = p.bf16(p.div(o[static_cast<std::size_t>(d)], ell));
    }
  }
}

Mat sparse_official(const Precision& p, const Mat& q, std::int64_t H, const Mat& kv, std::span<const double> sink,
                    const IndexLists& lists, double scale) {
  Mat out(q.rows(), q.cols());
  parallel_rows(lists.rows, 4, [&](std::int64_t r0, std::int64_t r1) {
    sparse_official_rows(p, q, H, kv, sink, lists, scale, out, r0, r1);
  });
  return out;
}

// The exact math in double (max-subtracted), valid entries in list order. Per query row r, with
// V the gathered valid kv rows [n_v, c]: the logits S = Q_r · Vᵀ [H, n_v] and the numerators
// O = W · V [H, c] are the deterministic GEMM (numerics/gemm.hpp), whose per-element order is the
// sequential one of the plain loops
//   acc = 0; for d: acc += q[d]·v_j[d]        (logit j)
//   o[d] = 0; for j: o[d] += w_j · v_j[d]     (numerator, in list order)
// — the same operations in the same order, hence the same bits, as those loops. Query rows are
// split over threads; each row is computed by one thread, so the thread count never matters.
void sparse_exact_rows(const Mat& q, std::int64_t H, const Mat& kv, std::span<const double> sink,
                       const IndexLists& lists, double scale, Mat& out, std::int64_t r0, std::int64_t r1) {
  const std::int64_t c = q.cols();
  std::vector<std::int32_t> valid;
  std::vector<double> vg, logits, w, o(static_cast<std::size_t>(H * c));
  for (std::int64_t r = r0; r < r1; ++r) {
    valid.clear();
    for (std::int32_t i : lists.row(r)) {
      if (i != -1) valid.push_back(i);
    }
    const auto nv = static_cast<std::int64_t>(valid.size());
    vg.resize(static_cast<std::size_t>(nv * c));
    for (std::int64_t j = 0; j < nv; ++j) {
      std::copy_n(kv.row(valid[static_cast<std::size_t>(j)]).data(), c, vg.data() + j * c);
    }
    logits.resize(static_cast<std::size_t>(H * nv));
    w.resize(static_cast<std::size_t>(H * nv));
    gemm_nt(H, nv, c, q.data() + r * H * c, c, vg.data(), c, logits.data(), nv, 1);
    std::vector<double> den(static_cast<std::size_t>(H));
    for (std::int64_t h = 0; h < H; ++h) {
      double* sh = logits.data() + h * nv;
      double m = -kInf;
      for (std::int64_t j = 0; j < nv; ++j) {
        sh[j] = scale * sh[j];
        m = std::max(m, sh[j]);
      }
      double dh = 0.0;
      for (std::int64_t j = 0; j < nv; ++j) {
        const double wj = std::exp(sh[j] - m);
        dh += wj;
        w[static_cast<std::size_t>(h * nv + j)] = wj;
      }
      dh += std::exp(sink[static_cast<std::size_t>(h)] - m);
      den[static_cast<std::size_t>(h)] = dh;
    }
    gemm_nn(H, c, nv, w.data(), nv, vg.data(), c, o.data(), c, 1);
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t d = 0; d < c; ++d) {
        out(r * H + h, d) = o[static_cast<std::size_t>(h * c + d)] / den[static_cast<std::size_t>(h)];
      }
    }
  }
}

Mat sparse_exact(const Mat& q, std::int64_t H, const Mat& kv, std::span<const double> sink, const IndexLists& lists,
                 double scale) {
  Mat out(q.rows(), q.cols());
  parallel_rows(lists.rows, 8, [&](std::int64_t r0, std::int64_t r1) {
    sparse_exact_rows(q, H, kv, sink, lists, scale, out, r0, r1);
  });
  return out;
}

}  // namespace

// spec 02 §2.9: official kernel semantics (official mode) or the exact math (exact mode).
Mat sparse_attention(const Precision& p, const Mat& q, std::int64_t n_heads, const Mat& kv,
                     std::span<const double> sink, const IndexLists& lists, double scale) {
  validate(q, n_heads, kv, sink, lists);
  return p.official() ? sparse_official(p, q, n_heads, kv, sink, lists, scale)
                      : sparse_exact(q, n_heads, kv, sink, lists, scale);
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
