/* dsv4 foreign-kernel plugin ABI, version 1 (issue 6; properties/README.md §Foreign kernels).
 *
 * A plugin is a shared library that exports one C function
 *
 *     const struct dsv4_plugin* dsv4_plugin_entry(void);
 *
 * returning a table that lives as long as the library is loaded. `dsv4 fuzz --plugin lib.so
 * --component NAME` loads it with dlopen, checks abi_version == DSV4_PLUGIN_ABI_VERSION and
 * struct_size >= the size the host knows, draws random inputs, calls the plugin's function and
 * compares its outputs with the dsv4 reference (properties/README.md states the tolerance model).
 * A NULL function pointer means "component not provided".
 *
 * Conventions (all components):
 *   - Arrays are dense, row-major, owned by the caller; outputs are fully overwritten by the
 *     plugin and never read before. The plugin keeps no pointer after returning.
 *   - "bf16 values" are passed as float: every input the official model holds in bf16 is a float
 *     whose value is a bf16 number (exactly representable). Outputs are floats; a kernel that
 *     computes in bf16 widens its result (exactly).
 *   - The functions return 0 on success; any other value means the plugin refused the input, and
 *     the fuzzer reports the case as a failure (a plugin must accept every input the section
 *     of its component allows).
 *   - Calls come from one thread at a time.
 * Pure C: no dependency on any dsv4 header or library.
 */
#ifndef DSV4_PROPERTIES_PLUGIN_ABI_H
#define DSV4_PROPERTIES_PLUGIN_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Incremented on any change of the table's layout or of a function's meaning. */
#define DSV4_PLUGIN_ABI_VERSION 1u

/* The name of the one exported symbol. */
#define DSV4_PLUGIN_ENTRY_SYMBOL "dsv4_plugin_entry"

/* act_quant's scale formats (spec 01 §1.4). */
#define DSV4_SCALE_FP32 0  /* s = fl32(max(amax, 1e-4) × fl32(1/448)), unrounded */
#define DSV4_SCALE_UE8M0 1 /* s rounded up to a power of two (production) */

struct dsv4_plugin {
  uint32_t abi_version; /* DSV4_PLUGIN_ABI_VERSION */
  uint32_t struct_size; /* sizeof(struct dsv4_plugin) as the plugin was compiled */
  const char* name;     /* a human-readable name of the implementation (may be NULL) */

  /* act_quant (spec 01 §1.4): x [rows, cols] (bf16 values), blocks of `block` elements from
   * element 0 of each row (block ∈ {32, 64, 128}, cols % block == 0); scale_format one of
   * DSV4_SCALE_*. Outputs: codes [rows, cols] e4m3fn bytes; scales [rows, cols/block] the fp32
   * value of each block's scale. Compared bit for bit. */
  int (*act_quant)(const float* x, int64_t rows, int64_t cols, int32_t block, int32_t scale_format, uint8_t* codes,
                   float* scales);

  /* fp4_act_quant (spec 01 §1.5): x [rows, cols] (bf16 values), cols % 32 == 0, blocks of 32.
   * Outputs: packed [rows, cols/2] e2m1 codes, element 2j in the low nibble of byte j, 2j+1 in
   * the high nibble; scales [rows, cols/32] e8m0 bytes (power-of-two scales). Compared bit for
   * bit. */
  int (*fp4_act_quant)(const float* x, int64_t rows, int64_t cols, uint8_t* packed, uint8_t* scales);

  /* hc_split_sinkhorn (spec 04 §4.3): per token t, mixes [tokens, (2+n)·n] (fp32 values μ), base
   * [(2+n)·n] and scale [3] (fp32), n ≥ 1 streams, iters ≥ 1 Sinkhorn iterations, eps ≥ 0.
   *   pre_j  = σ(μ_j·α_pre + b_j) + eps,     post_j = 2σ(μ_{n+j}·α_post + b_{n+j}),
   *   comb   = Sinkhorn(A), A[j][k] = μ_{2n+jn+k}·α_res + b_{2n+jn+k} (row softmax + eps, column
   *            normalisation, then iters−1 rounds of row and column normalisation with eps in
   *            every denominator).
   * Outputs: pre [tokens, n], post [tokens, n], comb [tokens, n, n] (row j, column k). */
  int (*hc_split_sinkhorn)(const float* mixes, int64_t tokens, int32_t n, const float* base, const float* scale,
                           int32_t iters, float eps, float* pre, float* post, float* comb);

  /* Sparse attention with the attention sink (spec 02 §2.9): q [m, h, c] (bf16 values), kv [n, c]
   * (bf16 values, one shared head used as key and value), sink [h] (fp32), indices [m, k] int32
   * (entries in [0, n) or −1 = no entry; at least one valid entry among the first
   * min(k, 64) of every row), scale > 0. For query r, head g:
   *   s_j = scale · (q[r,g,:] · kv[idx_j,:]) over the valid entries j of row r,
   *   out[r,g,:] = Σ_j e^{s_j} kv[idx_j,:] / (Σ_j e^{s_j} + e^{sink[g]}).
   * Output: out [m, h, c], bf16 values (the official output dtype; a value off the bf16 grid is
   * reported as a failure by the certify tolerance model). */
  int (*sparse_attention)(const float* q, int64_t m, int64_t h, int64_t c, const float* kv, int64_t n,
                          const float* sink, const int32_t* indices, int64_t k, float scale, float* out);

  /* KV compressor prefill (spec 02 §2.6.1–§2.6.4) of one sequence from position 0: x [s, d] (bf16
   * values), ratio m ∈ {4, 128} (κ = 2 when m = 4: overlapping windows; κ = 1 when m = 128),
   * head_dim D, rope_dim r (even, r ≤ D), rotate (0: main compressor, FP8 simulation of dims
   * [0, D − r) in blocks of 64 with ue8m0 scales; 1: indexer compressor, Hadamard rotation of all
   * D dims (D a power of two) then FP4 simulation in blocks of 32), eps of the RMSNorm.
   * Weights: wkv, wgate [κD, d] (bf16 values), ape [m, κD] (fp32), norm [D] (bf16 values).
   * RoPE: cos, sin [s/m, r/2] (fp32): entry i rotates its last r dims by the angles of position
   * m·i, pairs (2p, 2p+1) of those r dims by (cos[i][p], sin[i][p]).
   * Output: entries [s/m, D] (the cache rows: quantised dims hold their dequantised values). */
  int (*compressor_prefill)(const float* x, int64_t s, int64_t d, int32_t ratio, int64_t head_dim, int64_t rope_dim,
                            int32_t rotate, float eps, const float* wkv, const float* wgate, const float* ape,
                            const float* norm, const float* cos, const float* sin, float* entries);
};

/* Marks the entry function exported when a plugin is built with hidden visibility. */
#if defined(__GNUC__)
#define DSV4_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define DSV4_PLUGIN_EXPORT
#endif

/* The one exported function; a plugin defines it as
 *     DSV4_PLUGIN_EXPORT const struct dsv4_plugin* dsv4_plugin_entry(void) { return &table; } */
typedef const struct dsv4_plugin* (*dsv4_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* DSV4_PROPERTIES_PLUGIN_ABI_H */
