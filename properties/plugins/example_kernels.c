/* Plain C implementations of the plugin ABI's components, from the spec alone (no dsv4 code).
 * All arithmetic is fp32 unless stated (C on x86-64: SSE, FLT_EVAL_METHOD 0; built without FMA
 * contraction). Where the spec's canonical arithmetic (C1 exact sums, C2 correctly rounded
 * functions) would need more machinery, this file uses plain float loops and libm — an
 * implementation a kernel author might write, differing from the official mode in the last bits,
 * which is what the fuzzer's tolerance rule allows for. */
#include "example_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4/properties/plugin_abi.h"

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Round to the nearest bf16 value, ties to even (finite inputs; overflow gives inf). */
static float round_bf16(float x) {
  uint32_t u = bits_of(x);
  if ((u & 0x7F800000u) == 0x7F800000u) return x;
  u += 0x7FFFu + ((u >> 16) & 1u);
  return float_of(u & 0xFFFF0000u);
}

/* spec 01 §1.3: pow2(log2ceil(t)) read from the fp32 bits of t > 0. */
static float pow2_ceil(float t) {
  const uint32_t u = bits_of(t);
  const int e = (int)((u >> 23) & 0xFFu) - 127 + ((u & 0x7FFFFFu) != 0 ? 1 : 0);
  return float_of((uint32_t)(e + 127) << 23);
}

/* Round |a| to a binary grid with `mant` mantissa bits and minimum normal exponent `emin`
 * (subnormal spacing below), ties to even; returns the rounded value (a exactly scaled). */
static float round_to_grid(float a, int mant, int emin) {
  int e;
  if (a == 0.0f) return 0.0f;
  frexpf(a, &e);
  e -= 1; /* a in [2^e, 2^(e+1)) */
  if (e < emin) e = emin;
  return ldexpf(rintf(ldexpf(a, mant - e)), e - mant); /* rintf: current mode, nearest-even */
}

/* e4m3fn code of v, |v| ≤ 448 (RNE; 3 mantissa bits, bias 7, subnormal step 2^-9). */
static uint8_t e4m3_code(float v, float* value) {
  const uint8_t sign = signbit(v) ? 0x80u : 0u;
  const float r = round_to_grid(fabsf(v), 3, -6);
  int e;
  *value = sign ? -r : r;
  if (r < 0x1p-6f) return (uint8_t)(sign | (uint8_t)ldexpf(r, 9));
  frexpf(r, &e);
  e -= 1;
  return (uint8_t)(sign | (uint8_t)((e + 7) << 3) | (uint8_t)(ldexpf(r, -e) * 8.0f - 8.0f));
}

/* e2m1 code of v, |v| ≤ 6 (RNE; 1 mantissa bit, bias 1, subnormal step 0.5), bit 3 the sign. */
static uint8_t e2m1_code(float v, float* value) {
  const uint8_t sign = signbit(v) ? 0x8u : 0u;
  const float r = round_to_grid(fabsf(v), 1, 0);
  int e;
  *value = sign ? -r : r;
  if (r < 1.0f) return (uint8_t)(sign | (uint8_t)(r * 2.0f));
  frexpf(r, &e);
  e -= 1;
  return (uint8_t)(sign | (uint8_t)((e + 1) << 1) | (uint8_t)(ldexpf(r, -e) * 2.0f - 2.0f));
}

static float block_amax(const float* x, int64_t n) {
  float a = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    const float v = fabsf(x[j]);
    if (v > a) a = v;
  }
  return a;
}

/* spec 01 §1.4 steps 1–2: the block scale. */
static float act_scale(const float* x, int64_t block, int32_t scale_format) {
  float amax = block_amax(x, block);
  if (amax < 1e-4f) amax = 1e-4f;
  const float s = amax * (1.0f / 448.0f);
  return scale_format == DSV4_SCALE_UE8M0 ? pow2_ceil(s) : s;
}

/* spec 01 §1.4 step 3: v = clamp(x / s, ±448), e4m3 RNE. */
static uint8_t act_code(float x, float s, float* value) {
  float v = x / s;
  if (v > 448.0f) v = 448.0f;
  if (v < -448.0f) v = -448.0f;
  return e4m3_code(v, value);
}

int ex_act_quant(const float* x, int64_t rows, int64_t cols, int32_t block, int32_t scale_format, uint8_t* codes,
                 float* scales) {
  if (block <= 0 || cols % block != 0) return 1;
  for (int64_t b = 0; b < rows * cols / block; ++b) {
    const float* xb = x + b * block;
    const float s = act_scale(xb, block, scale_format);
    float unused;
    scales[b] = s;
    for (int64_t j = 0; j < block; ++j) codes[b * block + j] = act_code(xb[j], s, &unused);
  }
  return 0;
}

/* spec 01 §1.5: the fp4 block scale and codes (block 32). */
static float fp4_scale(const float* x) {
  float amax = block_amax(x, 32);
  if (amax < 6.0f * 0x1p-126f) amax = 6.0f * 0x1p-126f;
  return pow2_ceil(amax * (1.0f / 6.0f));
}
static uint8_t fp4_code(float x, float s, float* value) {
  float v = x / s;
  if (v > 6.0f) v = 6.0f;
  if (v < -6.0f) v = -6.0f;
  return e2m1_code(v, value);
}

int ex_fp4_act_quant(const float* x, int64_t rows, int64_t cols, uint8_t* packed, uint8_t* scales) {
  if (cols % 32 != 0) return 1;
  memset(packed, 0, (size_t)(rows * cols / 2));
  for (int64_t b = 0; b < rows * cols / 32; ++b) {
    const float* xb = x + b * 32;
    const float s = fp4_scale(xb);
    float unused;
    scales[b] = (uint8_t)(bits_of(s) >> 23); /* a normal power of two: its exponent field */
    for (int64_t j = 0; j < 32; ++j) {
      const int64_t i = b * 32 + j;
      const uint8_t code = fp4_code(xb[j], s, &unused);
      packed[i / 2] |= (uint8_t)(i % 2 == 0 ? code : code << 4);
    }
  }
  return 0;
}

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* spec 04 §4.3 steps 5–6: divide every row (rows = 1) or column of the n×n matrix by its sum + eps. */
static void normalise(float* m, int32_t n, int rows, float eps) {
  for (int32_t a = 0; a < n; ++a) {
    float sum = 0.0f;
    for (int32_t b = 0; b < n; ++b) sum += rows ? m[a * n + b] : m[b * n + a];
    const float denom = sum + eps;
    for (int32_t b = 0; b < n; ++b) {
      float* v = rows ? &m[a * n + b] : &m[b * n + a];
      *v = *v / denom;
    }
  }
}

int ex_hc_split_sinkhorn(const float* mixes, int64_t tokens, int32_t n, const float* base, const float* scale,
                         int32_t iters, float eps, float* pre, float* post, float* comb) {
  const int64_t nm = (int64_t)(2 + n) * n;
  if (n < 1 || iters < 1) return 1;
  for (int64_t t = 0; t < tokens; ++t) {
    const float* mu = mixes + t * nm;
    float* m = comb + t * n * n;
    for (int32_t j = 0; j < n; ++j) {
      pre[t * n + j] = sigmoid(fmaf(mu[j], scale[0], base[j])) + eps;           /* step 1 */
      post[t * n + j] = 2.0f * sigmoid(fmaf(mu[n + j], scale[1], base[n + j])); /* step 2 */
    }
    for (int32_t j = 0; j < n * n; ++j) m[j] = fmaf(mu[2 * n + j], scale[2], base[2 * n + j]); /* step 3 */
    for (int32_t j = 0; j < n; ++j) { /* step 4: row softmax + eps */
      float mx = m[j * n], sum = 0.0f;
      for (int32_t k = 1; k < n; ++k) mx = fmaxf(mx, m[j * n + k]);
      for (int32_t k = 0; k < n; ++k) {
        m[j * n + k] = expf(m[j * n + k] - mx);
        sum += m[j * n + k];
      }
      for (int32_t k = 0; k < n; ++k) m[j * n + k] = m[j * n + k] / sum + eps;
    }
    normalise(m, n, 0, eps);                 /* step 5 */
    for (int32_t it = 1; it < iters; ++it) { /* step 6 */
      normalise(m, n, 1, eps);
      normalise(m, n, 0, eps);
    }
  }
  return 0;
}

int ex_sparse_attention(const float* q, int64_t m, int64_t h, int64_t c, const float* kv, int64_t n, const float* sink,
                        const int32_t* indices, int64_t k, float scale, float* out) {
  float* o = (float*)malloc((size_t)c * sizeof(float));
  float s[64], p[64];
  if (o == NULL) return 1;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t g = 0; g < h; ++g) {
      const float* qh = q + (r * h + g) * c;
      float mu = -INFINITY, ell = 0.0f;
      for (int64_t e = 0; e < c; ++e) o[e] = 0.0f;
      for (int64_t start = 0; start < k; start += 64) { /* chunks of 64 list positions */
        float mnew = mu, psum = 0.0f, alpha;
        for (int64_t j = 0; j < 64; ++j) {
          const int64_t pos = start + j;
          const int32_t idx = pos < k ? indices[r * k + pos] : -1;
          s[j] = -INFINITY;
          if (idx >= 0 && idx < n) {
            float dot = 0.0f;
            for (int64_t e = 0; e < c; ++e) dot += qh[e] * kv[idx * c + e];
            s[j] = dot * scale;
          }
          mnew = fmaxf(mnew, s[j]);
        }
        alpha = expf(mu - mnew);
        for (int64_t j = 0; j < 64; ++j) {
          p[j] = s[j] == -INFINITY ? 0.0f : expf(s[j] - mnew);
          psum += p[j];
        }
        ell = ell * alpha + psum;
        for (int64_t e = 0; e < c; ++e) o[e] *= alpha;
        for (int64_t j = 0; j < 64; ++j) {
          const int64_t pos = start + j;
          if (p[j] == 0.0f) continue;
          const float pb = round_bf16(p[j]); /* P rounded to bf16 for P·V only */
          const float* v = kv + (int64_t)indices[r * k + pos] * c;
          for (int64_t e = 0; e < c; ++e) o[e] += pb * v[e];
        }
        mu = mnew;
      }
      ell += expf(sink[g] - mu); /* the sink: denominator only */
      for (int64_t e = 0; e < c; ++e) out[(r * h + g) * c + e] = round_bf16(o[e] / ell);
    }
  }
  free(o);
  return 0;
}

/* spec 01 §1.10: orthonormal Walsh–Hadamard transform of D = 2^k values, fp32 butterflies, one
 * scale multiply, bf16 result. */
static void hadamard(float* x, int64_t D) {
  const float sc = (float)(1.0 / sqrt((double)D));
  for (int64_t h = 1; h < D; h *= 2) {
    for (int64_t i = 0; i < D; ++i) {
      if (i & h) continue;
      const float a = x[i], b = x[i + h];
      x[i] = a + b;
      x[i + h] = a - b;
    }
  }
  for (int64_t i = 0; i < D; ++i) x[i] = round_bf16(x[i] * sc);
}

int ex_compressor_prefill(const float* x, int64_t s, int64_t d, int32_t ratio, int64_t head_dim, int64_t rope_dim,
                          int32_t rotate, float eps, const float* wkv, const float* wgate, const float* ape,
                          const float* norm, const float* cos, const float* sin, float* entries) {
  const int64_t D = head_dim, m = ratio, kappa = ratio == 4 ? 2 : 1, P = kappa * D;
  const int64_t count = s / m, nslots = kappa * m;
  float *u, *z, *row, *zs, *us;
  if ((ratio != 4 && ratio != 128) || rope_dim % 2 != 0 || rope_dim > D) return 1;
  u = (float*)malloc((size_t)(s * P) * sizeof(float));
  z = (float*)malloc((size_t)(s * P) * sizeof(float));
  row = (float*)malloc((size_t)D * sizeof(float));
  zs = (float*)malloc((size_t)nslots * sizeof(float));
  us = (float*)malloc((size_t)nslots * sizeof(float));
  if (!u || !z || !row || !zs || !us) {
    free(u), free(z), free(row), free(zs), free(us);
    return 1;
  }
  /* §2.6.1: u = W_kv x, z̃ = W_gate x + ape[t mod m] (dot products accumulated in double, rounded
   * once to fp32). */
  for (int64_t t = 0; t < s; ++t) {
    for (int64_t ch = 0; ch < P; ++ch) {
      double su = 0.0, sz = 0.0;
      for (int64_t e = 0; e < d; ++e) {
        su += (double)wkv[ch * d + e] * x[t * d + e];
        sz += (double)wgate[ch * d + e] * x[t * d + e];
      }
      u[t * P + ch] = (float)su;
      z[t * P + ch] = (float)sz + ape[(t % m) * P + ch];
    }
  }
  for (int64_t i = 0; i < count; ++i) {
    float* y = entries + i * D;
    /* §2.6.2: per channel, softmax over the slots (−inf = padding), then Σ u·w. */
    for (int64_t ch = 0; ch < D; ++ch) {
      float mx = -INFINITY, sum = 0.0f, acc = 0.0f;
      for (int64_t sl = 0; sl < nslots; ++sl) {
        int64_t tok, col;
        if (kappa == 2) {
          tok = sl < m ? m * (i - 1) + sl : m * i + (sl - m);
          col = sl < m ? ch : D + ch;
        } else {
          tok = m * i + sl;
          col = ch;
        }
        if (tok < 0) {
          zs[sl] = -INFINITY;
          us[sl] = 0.0f;
        } else {
          zs[sl] = z[tok * P + col];
          us[sl] = u[tok * P + col];
        }
        mx = fmaxf(mx, zs[sl]);
      }
      for (int64_t sl = 0; sl < nslots; ++sl) {
        zs[sl] = zs[sl] == -INFINITY ? 0.0f : expf(zs[sl] - mx);
        sum += zs[sl];
      }
      for (int64_t sl = 0; sl < nslots; ++sl) acc += us[sl] * (zs[sl] / sum);
      row[ch] = round_bf16(acc);
    }
    /* §2.6.3 step 1: RMSNorm with γ, bf16 output. */
    {
      float ss = 0.0f, r;
      for (int64_t ch = 0; ch < D; ++ch) ss += row[ch] * row[ch];
      r = 1.0f / sqrtf(ss * (1.0f / (float)D) + eps);
      for (int64_t ch = 0; ch < D; ++ch) y[ch] = round_bf16(norm[ch] * (row[ch] * r));
    }
    /* step 2: RoPE on the last rope_dim dims, interleaved pairs, angles of position m·i. */
    for (int64_t p = 0; p < rope_dim / 2; ++p) {
      float* pr = y + (D - rope_dim) + 2 * p;
      const float co = cos[i * (rope_dim / 2) + p], si = sin[i * (rope_dim / 2) + p];
      const float a = pr[0], b = pr[1];
      pr[0] = round_bf16(a * co - b * si);
      pr[1] = round_bf16(a * si + b * co);
    }
    /* step 3: FP8 (main, dims [0, D − rope_dim), block 64, ue8m0) or Hadamard + FP4 (indexer,
     * all dims, block 32), in place: x ← bf16(q · s). */
    if (rotate) {
      hadamard(y, D);
      for (int64_t b = 0; b < D; b += 32) {
        const float sc = fp4_scale(y + b);
        for (int64_t j = b; j < b + 32; ++j) {
          float v;
          fp4_code(y[j], sc, &v);
          y[j] = round_bf16(v * sc);
        }
      }
    } else {
      for (int64_t b = 0; b < D - rope_dim; b += 64) {
        const float sc = act_scale(y + b, 64, DSV4_SCALE_UE8M0);
        for (int64_t j = b; j < b + 64; ++j) {
          float v;
          act_code(y[j], sc, &v);
          y[j] = round_bf16(v * sc);
        }
      }
    }
  }
  free(u), free(z), free(row), free(zs), free(us);
  return 0;
}
