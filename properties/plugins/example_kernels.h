/* Plain C implementations of the plugin ABI's components (plugin_abi.h), written from the spec
 * (spec 01 §1.4–§1.5, 02 §2.6 and §2.9, 04 §4.3) without any dsv4 code: the example plugin exports
 * them as they are; the buggy plugin wraps them with one deliberate bug each. */
#ifndef DSV4_EXAMPLE_KERNELS_H
#define DSV4_EXAMPLE_KERNELS_H

#include <stdint.h>

int ex_act_quant(const float* x, int64_t rows, int64_t cols, int32_t block, int32_t scale_format, uint8_t* codes,
                 float* scales);
int ex_fp4_act_quant(const float* x, int64_t rows, int64_t cols, uint8_t* packed, uint8_t* scales);
int ex_hc_split_sinkhorn(const float* mixes, int64_t tokens, int32_t n, const float* base, const float* scale,
                         int32_t iters, float eps, float* pre, float* post, float* comb);
int ex_sparse_attention(const float* q, int64_t m, int64_t h, int64_t c, const float* kv, int64_t n, const float* sink,
                        const int32_t* indices, int64_t k, float scale, float* out);
int ex_compressor_prefill(const float* x, int64_t s, int64_t d, int32_t ratio, int64_t head_dim, int64_t rope_dim,
                          int32_t rotate, float eps, const float* wkv, const float* wgate, const float* ape,
                          const float* norm, const float* cos, const float* sin, float* entries);

#endif
