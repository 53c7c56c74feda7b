/* A deliberately buggy dsv4 plugin: each component is the example's with one classic kernel bug,
 * which `dsv4 fuzz` must catch (tests/cli_fuzz_test.cpp):
 *   act_quant          ue8m0 requested, but the scale is left unrounded (not a power of two);
 *   fp4_act_quant      the two codes of each byte swapped (element 2j in the high nibble);
 *   hc_split_sinkhorn  comb written transposed (column k, row j);
 *   sparse_attention   the attention sink left out of the denominator (plain softmax);
 *   compressor_prefill RoPE rotated by −θ (sin negated). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4/properties/plugin_abi.h"
#include "example_kernels.h"

static int buggy_act_quant(const float* x, int64_t rows, int64_t cols, int32_t block, int32_t scale_format,
                           uint8_t* codes, float* scales) {
  (void)scale_format;
  return ex_act_quant(x, rows, cols, block, DSV4_SCALE_FP32, codes, scales);
}

static int buggy_fp4_act_quant(const float* x, int64_t rows, int64_t cols, uint8_t* packed, uint8_t* scales) {
  const int rc = ex_fp4_act_quant(x, rows, cols, packed, scales);
  for (int64_t i = 0; i < rows * cols / 2; ++i) packed[i] = (uint8_t)((packed[i] >> 4) | (packed[i] << 4));
  return rc;
}

static int buggy_hc_split_sinkhorn(const float* mixes, int64_t tokens, int32_t n, const float* base, const float* scale,
                                   int32_t iters, float eps, float* pre, float* post, float* comb) {
  const int rc = ex_hc_split_sinkhorn(mixes, tokens, n, base, scale, iters, eps, pre, post, comb);
  for (int64_t t = 0; t < tokens; ++t) {
    float* m = comb + t * n * n;
    for (int32_t j = 0; j < n; ++j) {
      for (int32_t k = j + 1; k < n; ++k) {
        const float v = m[j * n + k];
        m[j * n + k] = m[k * n + j];
        m[k * n + j] = v;
      }
    }
  }
  return rc;
}

static int buggy_sparse_attention(const float* q, int64_t m, int64_t h, int64_t c, const float* kv, int64_t n,
                                  const float* sink, const int32_t* indices, int64_t k, float scale, float* out) {
  float* no_sink = (float*)malloc((size_t)h * sizeof(float));
  if (no_sink == NULL) return 1;
  (void)sink;
  for (int64_t g = 0; g < h; ++g) no_sink[g] = -INFINITY;
  const int rc = ex_sparse_attention(q, m, h, c, kv, n, no_sink, indices, k, scale, out);
  free(no_sink);
  return rc;
}

static int buggy_compressor_prefill(const float* x, int64_t s, int64_t d, int32_t ratio, int64_t head_dim,
                                    int64_t rope_dim, int32_t rotate, float eps, const float* wkv, const float* wgate,
                                    const float* ape, const float* norm, const float* cos, const float* sin,
                                    float* entries) {
  const int64_t count = (s / ratio) * (rope_dim / 2);
  float* neg = (float*)malloc((size_t)(count > 0 ? count : 1) * sizeof(float));
  if (neg == NULL) return 1;
  for (int64_t i = 0; i < count; ++i) neg[i] = -sin[i];
  const int rc =
      ex_compressor_prefill(x, s, d, ratio, head_dim, rope_dim, rotate, eps, wkv, wgate, ape, norm, cos, neg, entries);
  free(neg);
  return rc;
}

static const struct dsv4_plugin kTable = {
    DSV4_PLUGIN_ABI_VERSION, sizeof(struct dsv4_plugin), "dsv4 buggy plugin (one bug per component)",
    buggy_act_quant,         buggy_fp4_act_quant,        buggy_hc_split_sinkhorn,
    buggy_sparse_attention,  buggy_compressor_prefill,
};

DSV4_PLUGIN_EXPORT const struct dsv4_plugin* dsv4_plugin_entry(void) { return &kTable; }
