// Deterministic double GEMM (gemm.hpp): packing, cache blocking, threads, kernel dispatch and
// the portable kernel.
#include "dsv4/numerics/gemm.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dsv4/numerics/simd_level.hpp"
#include "gemm_kernels.hpp"

namespace dsv4 {
namespace gemm_detail {
namespace {

// Portable kernel: 4×8 tile in plain C++ (the compiler may use SSE2, which performs the same
// IEEE operations). -ffp-contract=off keeps `acc + a * b` two roundings.
constexpr int kPortableMr = 4;
constexpr int kPortableNr = 8;

void portable_kernel(std::int64_t kc, const double* a, const double* b, double* c, std::int64_t ldc, bool first) {
  double acc[kPortableMr][kPortableNr];
  for (int i = 0; i < kPortableMr; ++i) {
    for (int j = 0; j < kPortableNr; ++j) acc[i][j] = first ? 0.0 : c[i * ldc + j];
  }
  for (std::int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < kPortableMr; ++i) {
      const double ai = a[i];
      for (int j = 0; j < kPortableNr; ++j) {
        const double prod = ai * b[j];
        acc[i][j] = acc[i][j] + prod;
      }
    }
    a += kPortableMr;
    b += kPortableNr;
  }
  for (int i = 0; i < kPortableMr; ++i) {
    for (int j = 0; j < kPortableNr; ++j) c[i * ldc + j] = acc[i][j];
  }
}

// Cache blocks. kc: depth of one packed panel pass (a B micro-panel kc×nr stays in L1/L2 while
// the A block is swept); mc: rows of the packed A block (L2); nc: columns of the packed B block.
// They change speed only, never the result.
constexpr std::int64_t kKc = 256;
constexpr std::int64_t kMcRows = 192;
constexpr std::int64_t kNcCols = 3072;

struct Plan {
  KernelInfo k;
  std::int64_t kc, mc, nc;
};

std::atomic<std::int64_t> g_kc{0}, g_mc{0}, g_nc{0};

Plan make_plan(const KernelInfo& k) {
  const std::int64_t kc = g_kc.load(), mc = g_mc.load(), nc = g_nc.load();
  Plan p{k, kc > 0 ? kc : kKc, 0, 0};
  p.mc = std::max<std::int64_t>(k.mr, (mc > 0 ? mc : kMcRows) / k.mr * k.mr);
  p.nc = std::max<std::int64_t>(k.nr, (nc > 0 ? nc : kNcCols) / k.nr * k.nr);
  return p;
}

struct AlignedDeleter {
  void operator()(double* p) const { ::operator delete[](p, std::align_val_t(64)); }
};
using Buffer = std::unique_ptr<double[], AlignedDeleter>;
Buffer make_buffer(std::int64_t n) {
  return Buffer(
      static_cast<double*>(::operator new[](static_cast<std::size_t>(n) * sizeof(double), std::align_val_t(64))));
}

struct PackCache {
  Buffer buf;
  std::int64_t cap = 0;
  double* get(std::int64_t n) {
    if (n > cap) {
      buf.reset();
      cap = 0;  // stays consistent if the allocation throws
      buf = make_buffer(n);
      cap = n;
    }
    return buf.get();
  }
};

// The operands as seen by the driver: element (i, k) of A and (j, k) of B (B stored [N,K] when
// b_nt, else [K,N]).
struct Operands {
  const double* a;
  std::int64_t lda;
  const double* b;
  std::int64_t ldb;
  bool b_nt;
  bool abs;
};

inline double val(double x, bool abs) { return abs ? std::fabs(x) : x; }

// A rows [i0, i0+mb), depth [p0, p0+kb) → panels of mr rows, [k][mr] each, zero-padded.
void pack_a(const Operands& op, std::int64_t i0, std::int64_t mb, std::int64_t p0, std::int64_t kb, int mr,
            double* dst) {
  for (std::int64_t ip = 0; ip < mb; ip += mr) {
    double* panel = dst + ip * kb;
    for (int i = 0; i < mr; ++i) {
      if (ip + i < mb) {
        const double* src = op.a + (i0 + ip + i) * op.lda + p0;
        for (std::int64_t k = 0; k < kb; ++k) panel[k * mr + i] = val(src[k], op.abs);
      } else {
        for (std::int64_t k = 0; k < kb; ++k) panel[k * mr + i] = 0.0;
      }
    }
  }
}

// B columns [j0, j0+nb), depth [p0, p0+kb) → panels of nr columns, [k][nr] each, zero-padded.
void pack_b(const Operands& op, std::int64_t j0, std::int64_t nb, std::int64_t p0, std::int64_t kb, int nr,
            double* dst) {
  for (std::int64_t jp = 0; jp < nb; jp += nr) {
    double* panel = dst + jp * kb;
    const std::int64_t w = std::min<std::int64_t>(nr, nb - jp);
    if (op.b_nt) {
      for (int j = 0; j < nr; ++j) {
        if (j < w) {
          const double* src = op.b + (j0 + jp + j) * op.ldb + p0;
          for (std::int64_t k = 0; k < kb; ++k) panel[k * nr + j] = val(src[k], op.abs);
        } else {
          for (std::int64_t k = 0; k < kb; ++k) panel[k * nr + j] = 0.0;
        }
      }
    } else {
      for (std::int64_t k = 0; k < kb; ++k) {
        const double* src = op.b + (p0 + k) * op.ldb + j0 + jp;
        double* d = panel + k * nr;
        for (std::int64_t j = 0; j < w; ++j) d[j] = val(src[j], op.abs);
        for (std::int64_t j = w; j < nr; ++j) d[j] = 0.0;
      }
    }
  }
}

// One thread's share: C rows [i_begin, i_end), columns [j_begin, j_end), all of K, K blocks in
// increasing order (the running sums pass through C between blocks).
void run_block(const Plan& pl, const Operands& op, std::int64_t K, double* C, std::int64_t ldc, std::int64_t i_begin,
               std::int64_t i_end, std::int64_t j_begin, std::int64_t j_end) {
  const int mr = pl.k.mr;
  const int nr = pl.k.nr;
  const std::int64_t M = i_end - i_begin;
  const std::int64_t N = j_end - j_begin;
  if (M <= 0 || N <= 0) return;
  const std::int64_t kc = std::min(pl.kc, K);
  const std::int64_t mc = std::min(pl.mc, (M + mr - 1) / mr * mr);
  const std::int64_t nc = std::min(pl.nc, (N + nr - 1) / nr * nr);
  // Per-thread pack buffers, kept between calls: callers that run many small products on
  // long-lived threads (sparse attention rows) do not pay fresh page faults on every call.
  thread_local PackCache a_cache, b_cache;
  double* const apack = a_cache.get(mc * kc);
  double* const bpack = b_cache.get(nc * kc);
  double tile[8 * 32];  // partial edge tiles (mr·nr ≤ 256 for every kernel)
  for (std::int64_t jc = j_begin; jc < j_end; jc += nc) {
    const std::int64_t nb = std::min(nc, j_end - jc);
    for (std::int64_t pc = 0; pc < K; pc += kc) {
      const std::int64_t kb = std::min(kc, K - pc);
      const bool first = pc == 0;
      pack_b(op, jc, nb, pc, kb, nr, bpack);
      for (std::int64_t ic = i_begin; ic < i_end; ic += mc) {
        const std::int64_t mb = std::min(mc, i_end - ic);
        pack_a(op, ic, mb, pc, kb, mr, apack);
        for (std::int64_t jr = 0; jr < nb; jr += nr) {
          const std::int64_t n = std::min<std::int64_t>(nr, nb - jr);
          const double* bp = bpack + jr * kb;
          for (std::int64_t ir = 0; ir < mb; ir += mr) {
            const std::int64_t m = std::min<std::int64_t>(mr, mb - ir);
            const double* ap = apack + ir * kb;
            double* c = C + (ic + ir) * ldc + jc + jr;
            if (m == mr && n == nr) {
              pl.k.fn(kb, ap, bp, c, ldc, first);
            } else {
              if (!first) {
                for (std::int64_t i = 0; i < m; ++i) {
                  for (std::int64_t j = 0; j < n; ++j) tile[i * nr + j] = c[i * ldc + j];
                }
              }
              pl.k.fn(kb, ap, bp, tile, nr, first);
              for (std::int64_t i = 0; i < m; ++i) {
                for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = tile[i * nr + j];
              }
            }
          }
        }
      }
    }
  }
}

bool cpu_has(GemmKernel k) { return simd::cpu_runs(k); }

std::atomic<GemmKernel> g_forced{GemmKernel::kAuto};
std::atomic<int> g_threads{0};

KernelInfo kernel_info(GemmKernel k) {
  switch (k) {
    case GemmKernel::kAvx512:
      return avx512_kernel();
    case GemmKernel::kAvx2:
      return avx2_kernel();
    default:
      return KernelInfo{kPortableMr, kPortableNr, &portable_kernel};
  }
}

void gemm_any(std::int64_t M, std::int64_t N, std::int64_t K, const Operands& op, double* C, std::int64_t ldc,
              int threads, const char* who) {
  if (M < 0 || N < 0 || K < 0) throw std::invalid_argument(std::string(who) + ": negative dimension");
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (std::int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0);
    return;
  }
  const Plan pl = make_plan(kernel_info(gemm_kernel()));
  int t = threads > 0 ? threads : gemm_threads();
  // Small products are not worth a thread start; the split never changes the result.
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  if (flops < 4.0e6) t = 1;
  // Split rows when every thread gets a few register blocks of rows, else split columns.
  const int mr = pl.k.mr;
  const int nr = pl.k.nr;
  bool split_rows = true;
  if (M < static_cast<std::int64_t>(t) * 4 * mr) {
    if (N >= static_cast<std::int64_t>(t) * 4 * nr) {
      split_rows = false;
    } else {
      t = std::max<int>(1, static_cast<int>(std::min<std::int64_t>(t, (M + mr - 1) / mr)));
    }
  }
  if (t <= 1) {
    run_block(pl, op, K, C, ldc, 0, M, 0, N);
    return;
  }
  const std::int64_t extent = split_rows ? M : N;
  const std::int64_t unit = split_rows ? mr : nr;
  const std::int64_t units = (extent + unit - 1) / unit;
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(t));
  for (int w = 0; w < t; ++w) {
    const std::int64_t b = std::min(extent, units * w / t * unit);
    const std::int64_t e = std::min(extent, units * (w + 1) / t * unit);
    auto job = [&, b, e, w] {
      try {
        if (split_rows) {
          run_block(pl, op, K, C, ldc, b, e, 0, N);
        } else {
          run_block(pl, op, K, C, ldc, 0, M, b, e);
        }
      } catch (...) {
        errors[static_cast<std::size_t>(w)] = std::current_exception();
      }
    };
    if (w + 1 == t) {
      job();  // the calling thread takes the last share
    } else {
      pool.emplace_back(job);
    }
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

void check_strides(std::int64_t lda, std::int64_t lda_min, std::int64_t ldb, std::int64_t ldb_min, std::int64_t ldc,
                   std::int64_t ldc_min, const char* who) {
  if (lda < lda_min || ldb < ldb_min || ldc < ldc_min) {
    throw std::invalid_argument(std::string(who) + ": a row stride is smaller than the row length");
  }
}

}  // namespace
}  // namespace gemm_detail

const char* gemm_kernel_name(GemmKernel k) { return simd::level_name(k); }

bool gemm_kernel_supported(GemmKernel k) { return gemm_detail::cpu_has(k); }

void set_gemm_kernel(GemmKernel k) {
  if (!gemm_kernel_supported(k)) {
    throw std::invalid_argument(std::string("set_gemm_kernel: ") + gemm_kernel_name(k) +
                                " is not supported by this CPU");
  }
  gemm_detail::g_forced.store(k);
}

GemmKernel gemm_kernel() {
  const GemmKernel f = gemm_detail::g_forced.load();
  if (f != GemmKernel::kAuto) return f;
  static const GemmKernel best = simd::best_level<GemmKernel>();
  return best;
}

void set_gemm_blocking(std::int64_t kc, std::int64_t mc, std::int64_t nc) {
  gemm_detail::g_kc.store(kc);
  gemm_detail::g_mc.store(mc);
  gemm_detail::g_nc.store(nc);
}

void set_gemm_threads(int n) { gemm_detail::g_threads.store(n < 0 ? 0 : n); }

int gemm_threads() {
  const int n = gemm_detail::g_threads.load();
  if (n > 0) return n;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void gemm_nt(std::int64_t M, std::int64_t N, std::int64_t K, const double* A, std::int64_t lda, const double* B,
             std::int64_t ldb, double* C, std::int64_t ldc, int threads, bool abs_operands) {
  gemm_detail::check_strides(lda, K, ldb, K, ldc, N, "gemm_nt");
  gemm_detail::gemm_any(M, N, K, gemm_detail::Operands{A, lda, B, ldb, true, abs_operands}, C, ldc, threads, "gemm_nt");
}

void gemm_nn(std::int64_t M, std::int64_t N, std::int64_t K, const double* A, std::int64_t lda, const double* B,
             std::int64_t ldb, double* C, std::int64_t ldc, int threads, bool abs_operands) {
  gemm_detail::check_strides(lda, K, ldb, N, ldc, N, "gemm_nn");
  gemm_detail::gemm_any(M, N, K, gemm_detail::Operands{A, lda, B, ldb, false, abs_operands}, C, ldc, threads,
                        "gemm_nn");
}

}  // namespace dsv4
