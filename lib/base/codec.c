/*
 * codec.c -- host (de)quantization of ggml's k-quant blocks, its 32-value blocks (q4_0, q4_1,
 * q5_0, q5_1, q8_0) and the f16/bf16 conversions.
 *
 * Dequantization is bit-exact with ggml's dequantize_row_*: every float operation below is
 * done in the same order and precision as ggml's reference C code. Quantization follows
 * ggml's reference quantizers (quantize_row_*_ref); q8_K, the 32-value blocks and the f16/bf16
 * conversions are bit-exact, q4_K/q5_K/q6_K run the same search algorithms.
 *
 * Block fields are read and written byte by byte (little-endian), because packed blocks such
 * as q6_K (210 bytes) start at addresses that need not be aligned.
 */
#include "base/internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Bit-exactness needs `a*b - c` to round twice, as ggml's reference does; an FMA contraction
 * would round once and change the last bit. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* Block sizes and field offsets (Q4K_QS, Q6K_D, ...): cl/kquant_layout.h, which the kernels
 * are built with too. */

/* ------------------------------------------------------------------------------------------ */
/* Little-endian field access                                                                  */

static uint16_t load_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static void store_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)(v >> 8);
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float load_le_f32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                 ((uint32_t)p[3] << 24);
    return bits_float(u);
}

static void store_le_f32(uint8_t *p, float f)
{
    uint32_t u = float_bits(f);
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

/* ------------------------------------------------------------------------------------------ */
/* f16 and bf16 conversions, with integer operations only so no FPU mode can change them      */

float kq_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    if (exp == 0x1F) /* inf, or NaN made quiet as the hardware converters do */
        return bits_float(sign | 0x7F800000u | (mant << 13) | (mant ? 0x400000u : 0));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0)
        return bits_float(sign);
    /* subnormal: shift the leading one into the implicit position */
    uint32_t e = 113;
    while ((mant & 0x400) == 0) {
        mant <<= 1;
        e--;
    }
    return bits_float(sign | (e << 23) | ((mant & 0x3FF) << 13));
}

/* Round `mant >> shift` to nearest, ties to even. shift is 1..31. */
static uint32_t shift_round_even(uint32_t mant, unsigned shift)
{
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1)))
        q++;
    return q;
}

uint16_t kq_float_to_half(float f)
{
    uint32_t x = float_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7FFFFFFFu;
    if (x > 0x7F800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7E00 | (x >> 13));
    if (x >= 0x477FF000u) /* >= 65520 rounds past 65504 (odd mantissa): inf */
        return (uint16_t)(sign | 0x7C00);
    if (x >= 0x38800000u) /* normal half: rebias 127 -> 15; a carry may bump the exponent */
        return (uint16_t)(sign | shift_round_even(x - 0x38000000u, 13));
    if (x <= 0x33000000u) /* <= 2^-25: the tie at 2^-25 goes to even, i.e. zero */
        return sign;
    /* subnormal half: value / 2^-24 = mant >> (126 - exp); rounding to 0x400 gives the
     * smallest normal, which is the right encoding. */
    uint32_t exp = x >> 23;
    uint32_t mant = (x & 0x7FFFFFu) | 0x800000u;
    return (uint16_t)(sign | shift_round_even(mant, 126 - exp));
}

float kq_bf16_to_float(uint16_t b) { return bits_float((uint32_t)b << 16); }

uint16_t kq_float_to_bf16(float f)
{
    uint32_t x = float_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: truncate and force quiet, as ggml does */
        return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1)) >> 16);
}

/* ------------------------------------------------------------------------------------------ */
/* Dequantization                                                                               */

/* The 6-bit scale and min of sub-block j from the 12 packed bytes. */
static void get_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* q4_K and q5_K share everything but the fifth bit; qh == NULL means q4_K. */
static void dequant_block_q45k(const uint8_t *b, const uint8_t *qs, const uint8_t *qh,
                               float *y)
{
    const float d = kq_half_to_float(load_le16(b + Q4K_D)); /* q5_K's fields sit alike */
    const float dmin = kq_half_to_float(load_le16(b + Q4K_DMIN));
    const uint8_t *scales = b + Q4K_SCALES;
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        get_scale_min(2 * c, scales, &sc, &m);
        const float d1 = d * sc, m1 = dmin * m; /* ggml rounds these products first */
        get_scale_min(2 * c + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
            if (qh) {
                lo += (qh[l] >> (2 * c)) & 1 ? 16 : 0;
                hi += (qh[l] >> (2 * c + 1)) & 1 ? 16 : 0;
            }
            y[64 * c + l] = d1 * lo - m1;
            y[64 * c + 32 + l] = d2 * hi - m2;
        }
    }
}

static void dequant_block_q6k(const uint8_t *b, float *y)
{
    const float d = kq_half_to_float(load_le16(b + Q6K_D));
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b + Q6K_QL + 64 * h, *qh = b + Q6K_QH + 32 * h;
        const int8_t *sc = (const int8_t *)(b + Q6K_SCALES + 8 * h);
        float *yh = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - Q6K_BIAS;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - Q6K_BIAS;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - Q6K_BIAS;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - Q6K_BIAS;
            /* (d * scale) * q, left to right in float, as ggml */
            yh[l] = d * sc[is + 0] * q1;
            yh[l + 32] = d * sc[is + 2] * q2;
            yh[l + 64] = d * sc[is + 4] * q3;
            yh[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

static void dequant_block_q8k(const uint8_t *b, float *y)
{
    const float d = load_le_f32(b + Q8K_D);
    const int8_t *qs = (const int8_t *)(b + Q8K_QS);
    for (int i = 0; i < QK_K; i++)
        y[i] = d * qs[i];
}

/* q8_0: d (f16) and 32 signed quants; y = q * d. */
static void dequant_block_q80(const uint8_t *b, float *y)
{
    const float d = kq_half_to_float(load_le16(b + Q80_D));
    const int8_t *qs = (const int8_t *)(b + Q80_QS);
    for (int j = 0; j < QK8_0; j++)
        y[j] = qs[j] * d;
}

/* q4_0: d (f16) and 16 bytes: value j in the low nibble of byte j, value j + 16 in its high
 * nibble, both offset by 8; y = (q - 8) * d. */
static void dequant_block_q40(const uint8_t *b, float *y)
{
    const float d = kq_half_to_float(load_le16(b + Q40_D));
    for (int j = 0; j < 16; j++) {
        y[j] = ((b[Q40_QS + j] & 0x0F) - Q40_BIAS) * d;
        y[j + 16] = ((b[Q40_QS + j] >> 4) - Q40_BIAS) * d;
    }
}

/* q4_1: d and m (f16) and 16 bytes of nibbles as q4_0's; y = q * d + m. */
static void dequant_block_q41(const uint8_t *b, float *y)
{
    const float d = kq_half_to_float(load_le16(b + Q41_D));
    const float m = kq_half_to_float(load_le16(b + Q41_M));
    for (int j = 0; j < 16; j++) {
        y[j] = (b[Q41_QS + j] & 0x0F) * d + m;
        y[j + 16] = (b[Q41_QS + j] >> 4) * d + m;
    }
}

static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void store_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The 32 five-bit quants of a q5_0/q5_1 block: the nibbles as q4_0's, and bit j of the
 * little-endian word qh on top of value j's. */
static void q5_quants(const uint8_t *qh_bytes, const uint8_t *qs, int *q)
{
    const uint32_t qh = load_le32(qh_bytes);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
    }
}

/* q5_0: d (f16), qh, nibbles; y = (q - 16) * d. */
static void dequant_block_q50(const uint8_t *b, float *y)
{
    const float d = kq_half_to_float(load_le16(b + Q50_D));
    int q[32];
    q5_quants(b + Q50_QH, b + Q50_QS, q);
    for (int j = 0; j < 32; j++)
        y[j] = (q[j] - Q50_BIAS) * d;
}

/* q5_1: d and m (f16), qh, nibbles; y = q * d + m. */
static void dequant_block_q51(const uint8_t *b, float *y)
{
    const float d = kq_half_to_float(load_le16(b + Q51_D));
    const float m = kq_half_to_float(load_le16(b + Q51_M));
    int q[32];
    q5_quants(b + Q51_QH, b + Q51_QS, q);
    for (int j = 0; j < 32; j++)
        y[j] = q[j] * d + m;
}

void kq_dequantize_row(kqcl_type type, const void *src, float *dst, int64_t cols)
{
    const uint8_t *s = src;
    switch (type) {
    case KQCL_TYPE_F32:
        memcpy(dst, src, (size_t)cols * sizeof(float));
        return;
    case KQCL_TYPE_F16:
        for (int64_t i = 0; i < cols; i++)
            dst[i] = kq_half_to_float(load_le16(s + 2 * i));
        return;
    case KQCL_TYPE_BF16:
        for (int64_t i = 0; i < cols; i++)
            dst[i] = kq_bf16_to_float(load_le16(s + 2 * i));
        return;
    default:
        break;
    }
    const size_t bytes = kq_block_bytes(type);
    const int64_t per_block = kqcl_block_size(type);
    for (int64_t ib = 0; ib < cols / per_block; ib++, s += bytes, dst += per_block) {
        switch (type) {
        case KQCL_TYPE_Q4_0: dequant_block_q40(s, dst); break;
        case KQCL_TYPE_Q4_1: dequant_block_q41(s, dst); break;
        case KQCL_TYPE_Q5_0: dequant_block_q50(s, dst); break;
        case KQCL_TYPE_Q5_1: dequant_block_q51(s, dst); break;
        case KQCL_TYPE_Q8_0: dequant_block_q80(s, dst); break;
        case KQCL_TYPE_Q4_K: dequant_block_q45k(s, s + Q4K_QS, NULL, dst); break;
        case KQCL_TYPE_Q5_K: dequant_block_q45k(s, s + Q5K_QS, s + Q5K_QH, dst); break;
        case KQCL_TYPE_Q6_K: dequant_block_q6k(s, dst); break;
        case KQCL_TYPE_Q8_K: dequant_block_q8k(s, dst); break;
        default: return; /* callers validate the type */
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Quantization helpers                                                                          */

/* ggml's nearest_int: adding 1.5 * 2^23 makes the float adder round to an integer (ties to
 * even) and leaves that integer in the low mantissa bits. Valid for |f| < 2^22; outside that
 * (and for NaN, which only garbage input produces) we saturate instead of asserting. */
static int nearest_int(float f)
{
    if (!(fabsf(f) <= 4194303.f))
        return f > 0 ? 4194303 : (f < 0 ? -4194303 : 0);
    float v = f + 12582912.f;
    int32_t i = (int32_t)float_bits(v);
    return (i & 0x007FFFFF) - 0x00400000;
}

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Weighted squared error of x ~ scale * L + min. */
static float qkx_error(int n, const float *x, const float *w, const uint8_t *L, float scale,
                       float min)
{
    float err = 0;
    for (int i = 0; i < n; i++) {
        float diff = scale * L[i] + min - x[i];
        err += w[i] * (diff * diff);
    }
    return err;
}

/* Quantize x[0..n) to L in 0..nmax as x ~ scale * L + min, min <= 0 (ggml's
 * make_qkx2_quants with squared error). Start from the plain min/max grid, then try nstep+1
 * grids of (nmax + rmin + rdelta*is) steps; for each one solve the weighted least squares for
 * scale and min and keep it when the weighted error drops. Returns scale; *neg_min = -min. */
static float make_qkx2(int n, int nmax, const float *x, const float *w, uint8_t *L,
                       float *neg_min, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale;
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
    float best = qkx_error(n, x, w, L, scale, min);
    uint8_t Laux[QK_K];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0))
            continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) { /* a positive offset is not representable: refit through 0 */
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = qkx_error(n, x, w, Laux, this_scale, this_min);
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *neg_min = -min;
    return scale;
}

/* Sums of w*x*l and w*l*l over the grid iscale, with w = x*x (ggml's rmse_type 1). */
static void qx_sums(int n, int nmax, const float *x, float iscale, float *sumlx, float *suml2)
{
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

static void qx_fill(int n, int nmax, const float *x, float iscale, int8_t *L)
{
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(nmax + clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
}

/* Symmetric quantization x ~ scale * (L - nmax) (ggml's make_qx_quants, rmse_type 1): the
 * grid through the largest-magnitude value and 18 neighbours of it, each refit by x^2-weighted
 * least squares; keeps the best. Returns scale. */
static float make_qx(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < 1e-15f) { /* ggml's GROUP_MAX_EPS: all zero */
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max, sumlx, suml2;
    qx_fill(n, nmax, x, iscale, L);
    qx_sums(n, nmax, x, iscale, &sumlx, &suml2);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        qx_sums(n, nmax, x, iscale, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            qx_fill(n, nmax, x, iscale, L);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* ------------------------------------------------------------------------------------------ */
/* Block quantizers                                                                              */

/* Pack 6-bit scale ls and min lm of sub-block j into the 12 bytes (inverse of get_scale_min).
 * Sub-blocks 0..3 must be packed before 4..7, whose top bits go into their bytes. */
static void put_scale_min(int j, uint8_t *s, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* The common part of q4_K and q5_K: per 32-value sub-block scale/min search, 6-bit
 * quantization of scales and mins against the f16 super-block d/dmin, then requantization of
 * every value against the scales as stored. Writes d, dmin, scales; leaves quants in L. */
static void quantize_q45k_scales(const float *x, int nmax, float rmin, int nstep, uint8_t *b,
                                 uint8_t L[QK_K])
{
    float scales[8], mins[8], weights[32];
    float max_scale = 0, max_min = 0; /* the min is subtracted, so scales are >= 0 */
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += xs[l] * xs[l];
        /* weight by |x| plus the sub-block RMS: big values matter more, none count zero */
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(xs[l]);
        scales[j] = make_qkx2(32, nmax, xs, weights, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t *s = b + Q4K_SCALES; /* q5_K's fields sit alike */
    memset(s, 0, Q4K_SCALES_BYTES);
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]); /* uint8 wrap as ggml */
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        put_scale_min(j, s, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
    }
    store_le16(b + Q4K_D, kq_float_to_half(max_scale / 63.f));
    store_le16(b + Q4K_DMIN, kq_float_to_half(max_min / 63.f));
    const float d_all = kq_half_to_float(load_le16(b + Q4K_D));
    const float m_all = kq_half_to_float(load_le16(b + Q4K_DMIN));
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        get_scale_min(j, s, &sc, &m);
        const float d = d_all * sc;
        if (!d) /* keep the search's quants: nothing better to do with a zero scale */
            continue;
        const float dm = m_all * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clamp_int(nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

static void quantize_block_q4k(const float *x, uint8_t *b)
{
    uint8_t L[QK_K];
    quantize_q45k_scales(x, 15, -1.f, 20, b, L);
    uint8_t *qs = b + Q4K_QS;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}

static void quantize_block_q5k(const float *x, uint8_t *b)
{
    uint8_t L[QK_K];
    quantize_q45k_scales(x, 31, -0.5f, 15, b, L);
    uint8_t *qh = b + Q5K_QH, *qs = b + Q5K_QS;
    memset(qh, 0, 32);
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
            qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
        }
    }
}

static void pack_q6k(const int8_t L[QK_K], uint8_t *b)
{
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = b + Q6K_QL + 64 * h, *qh = b + Q6K_QH + 32 * h;
        const int8_t *Lh = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
            ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
            ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
            qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
    }
}

/* q6_K: a symmetric 6-bit fit per 16 values, then the 16 scales as int8 against one f16
 * d chosen so the largest-magnitude scale maps to -128; values are requantized against the
 * stored scales. */
static void quantize_block_q6k(const float *x, uint8_t *b)
{
    int8_t L[QK_K];
    float scales[16], max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ib++) {
        scales[ib] = make_qx(16, 32, x + 16 * ib, L + 16 * ib);
        if (fabsf(scales[ib]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    memset(b, 0, Q6K_BYTES);
    if (max_abs_scale < 1e-15f) /* all zero (GROUP_MAX_EPS) */
        return;
    float iscale = -128.f / max_scale;
    store_le16(b + Q6K_D, kq_float_to_half(1 / iscale));
    int8_t *sc = (int8_t *)(b + Q6K_SCALES);
    for (int ib = 0; ib < 16; ib++) {
        int v = nearest_int(iscale * scales[ib]);
        sc[ib] = (int8_t)(v < 127 ? v : 127);
    }
    const float d_all = kq_half_to_float(load_le16(b + Q6K_D));
    for (int j = 0; j < 16; j++) {
        float d = d_all * sc[j];
        if (!d)
            continue;
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (int8_t)(clamp_int(nearest_int(x[16 * j + l] / d), -32, 31) + Q6K_BIAS);
    }
    pack_q6k(L, b);
}

/* q8_K, exactly ggml's: d = max/-127 with max the signed value of largest magnitude. */
static void quantize_block_q8k(const float *x, uint8_t *b)
{
    float max = 0, amax = 0;
    for (int j = 0; j < QK_K; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    memset(b, 0, Q8K_BYTES);
    if (!amax) /* ggml leaves bsums unwritten here; we zero them */
        return;
    const float iscale = -127.f / max;
    int8_t *qs = (int8_t *)(b + Q8K_QS);
    for (int j = 0; j < QK_K; j++) {
        int v = nearest_int(iscale * x[j]);
        qs[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int j = 0; j < QK_K / 16; j++) {
        int sum = 0;
        for (int l = 0; l < 16; l++)
            sum += qs[16 * j + l];
        store_le16(b + Q8K_BSUMS + 2 * j, (uint16_t)(int16_t)sum);
    }
    store_le_f32(b + Q8K_D, 1 / iscale);
}

/* The quant of x * id + 8.5 truncated to an integer and capped at 15, as ggml's q4_0 forms it;
 * NaN (only garbage input makes it) gives 0 rather than undefined behaviour. */
static int q4_0_quant(float v)
{
    float t = v + 8.5f;
    if (!(t >= 0.0f)) /* NaN, or below the range ggml's choice of d allows */
        return 0;
    return t >= 15.0f ? 15 : (int)t;
}

/* A rounded q8_0 quant as an int: |q| <= 127 for finite input; NaN (garbage in) gives 0
 * rather than undefined behaviour. */
static int q8_0_quant(float q)
{
    if (!(q == q))
        return 0;
    return q > 127 ? 127 : q < -128 ? -128 : (int)q;
}

/* q8_0, exactly ggml's: d = amax / 127, quants roundf(x / d). */
static void quantize_block_q80(const float *x, uint8_t *b)
{
    float amax = 0;
    for (int j = 0; j < 32; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    store_le16(b + Q80_D, kq_float_to_half(d));
    for (int j = 0; j < 32; j++)
        b[Q80_QS + j] = (uint8_t)(int8_t)q8_0_quant(roundf(x[j] * id));
}

/* The signed value of largest magnitude of a 32-value block (the first of equals), as ggml's
 * q4_0/q5_0 scan finds it. */
static float block_signed_max(const float *x)
{
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

/* q4_0, exactly ggml's: d = max / -8 with max the signed value of largest magnitude. */
static void quantize_block_q40(const float *x, uint8_t *b)
{
    const float d = block_signed_max(x) / -8, id = d ? 1.0f / d : 0.0f;
    store_le16(b + Q40_D, kq_float_to_half(d));
    for (int j = 0; j < 16; j++)
        b[Q40_QS + j] = (uint8_t)(q4_0_quant(x[j] * id) | (q4_0_quant(x[j + 16] * id) << 4));
}

/* t truncated toward zero and capped at `cap`, as ggml's MIN(cap, (int8_t)t) forms a quant from
 * a t that its choice of d keeps in [0, cap + 1); NaN and t < 0 (only garbage input makes them)
 * give 0 rather than undefined behaviour, and so does nothing beyond `cap` wrap. */
static int capped_quant(float t, int cap)
{
    if (!(t >= 0.0f))
        return 0;
    return t >= (float)cap ? cap : (int)t;
}

/* The smallest and largest value of a 32-value block, as ggml's q4_1/q5_1 scan finds them. */
static void block_min_max(const float *x, float *min, float *max)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < lo)
            lo = x[j];
        if (x[j] > hi)
            hi = x[j];
    }
    *min = lo;
    *max = hi;
}

/* q4_1, exactly ggml's: d = (max - min) / 15, m = min, q = min(15, (int)((x - min) / d + 0.5))
 * with 1/d taken once. */
static void quantize_block_q41(const float *x, uint8_t *b)
{
    float min, max;
    block_min_max(x, &min, &max);
    const float d = (max - min) / 15, id = d ? 1.0f / d : 0.0f;
    store_le16(b + Q41_D, kq_float_to_half(d));
    store_le16(b + Q41_M, kq_float_to_half(min));
    for (int j = 0; j < 16; j++) {
        int q0 = capped_quant((x[j] - min) * id + 0.5f, 15);
        int q1 = capped_quant((x[j + 16] - min) * id + 0.5f, 15);
        b[Q41_QS + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

/* The 32 five-bit quants q into a q5_0/q5_1 block's qh word and nibbles. */
static void q5_store(const int *q, uint8_t *qh_bytes, uint8_t *qs)
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        qh |= (uint32_t)((q[j] >> 4) & 1) << j;
        qh |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    store_le32(qh_bytes, qh);
}

/* q5_0, exactly ggml's: d = max / -16 with max the signed value of largest magnitude,
 * q = min(31, (int)(x / d + 16.5)). */
static void quantize_block_q50(const float *x, uint8_t *b)
{
    const float d = block_signed_max(x) / -16, id = d ? 1.0f / d : 0.0f;
    store_le16(b + Q50_D, kq_float_to_half(d));
    int q[32];
    for (int j = 0; j < 32; j++)
        q[j] = capped_quant(x[j] * id + 16.5f, 31);
    q5_store(q, b + Q50_QH, b + Q50_QS);
}

/* q5_1, exactly ggml's: d = (max - min) / 31, m = min, q = (int)((x - min) / d + 0.5), which
 * its d keeps within 31 (capped there, as the gguf package does, should a subnormal d's
 * reciprocal overshoot: ggml's C would wrap). */
static void quantize_block_q51(const float *x, uint8_t *b)
{
    float min, max;
    block_min_max(x, &min, &max);
    const float d = (max - min) / 31, id = d ? 1.0f / d : 0.0f;
    store_le16(b + Q51_D, kq_float_to_half(d));
    store_le16(b + Q51_M, kq_float_to_half(min));
    int q[32];
    for (int j = 0; j < 32; j++)
        q[j] = capped_quant((x[j] - min) * id + 0.5f, 31);
    q5_store(q, b + Q51_QH, b + Q51_QS);
}

static void quantize_row(kqcl_type type, const float *x, uint8_t *dst, int64_t cols)
{
    switch (type) {
    case KQCL_TYPE_F32:
        memcpy(dst, x, (size_t)cols * sizeof(float));
        return;
    case KQCL_TYPE_F16:
        for (int64_t i = 0; i < cols; i++)
            store_le16(dst + 2 * i, kq_float_to_half(x[i]));
        return;
    case KQCL_TYPE_BF16:
        for (int64_t i = 0; i < cols; i++)
            store_le16(dst + 2 * i, kq_float_to_bf16(x[i]));
        return;
    default:
        break;
    }
    const size_t bytes = kq_block_bytes(type);
    const int64_t per_block = kqcl_block_size(type);
    for (int64_t ib = 0; ib < cols / per_block; ib++, x += per_block, dst += bytes) {
        switch (type) {
        case KQCL_TYPE_Q4_0: quantize_block_q40(x, dst); break;
        case KQCL_TYPE_Q4_1: quantize_block_q41(x, dst); break;
        case KQCL_TYPE_Q5_0: quantize_block_q50(x, dst); break;
        case KQCL_TYPE_Q5_1: quantize_block_q51(x, dst); break;
        case KQCL_TYPE_Q8_0: quantize_block_q80(x, dst); break;
        case KQCL_TYPE_Q4_K: quantize_block_q4k(x, dst); break;
        case KQCL_TYPE_Q5_K: quantize_block_q5k(x, dst); break;
        case KQCL_TYPE_Q6_K: quantize_block_q6k(x, dst); break;
        case KQCL_TYPE_Q8_K: quantize_block_q8k(x, dst); break;
        default: return;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Public entry points                                                                           */

/* Check the arguments shared by both directions; on success *row_bytes is the bytes of one
 * row in `type`. */
static kqcl_status check_args(const char *fn, kqcl_type type, const void *src, const void *dst,
                              int64_t rows, int64_t cols, size_t *row_bytes)
{
    if (!kq_type_is_known(type))
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: unknown type %d", fn, (int)type);
    if (src == NULL || dst == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: NULL %s", fn, src ? "dst" : "src");
    if (rows < 0 || cols <= 0)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: bad shape %lld x %lld", fn,
                       (long long)rows, (long long)cols);
    if (cols % kqcl_block_size(type) != 0)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG,
                       "%s: %lld columns is not a multiple of %s's block of %lld", fn,
                       (long long)cols, kqcl_type_name(type), (long long)kqcl_block_size(type));
    *row_bytes = kqcl_row_size(type, cols);
    /* Both the quantized and the float side must be addressable in a size_t. */
    if (*row_bytes == 0 || (uint64_t)cols > SIZE_MAX / sizeof(float))
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: %lld columns overflow memory", fn,
                       (long long)cols);
    size_t float_bytes = (size_t)cols * sizeof(float);
    size_t row_max = *row_bytes > float_bytes ? *row_bytes : float_bytes;
    if (rows > 0 && (uint64_t)rows > SIZE_MAX / row_max)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: %lld x %lld values overflow memory",
                       fn, (long long)rows, (long long)cols);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_dequantize(kqcl_type type, const void *src, float *dst, int64_t rows,
                                     int64_t cols)
{
    kq_clear_error(NULL);
    size_t row_bytes;
    kqcl_status st = check_args("kqcl_dequantize", type, src, dst, rows, cols, &row_bytes);
    if (st != KQCL_OK)
        return st;
    const uint8_t *s = src;
    for (int64_t r = 0; r < rows; r++)
        kq_dequantize_row(type, s + (size_t)r * row_bytes, dst + (size_t)r * (size_t)cols, cols);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_quantize(kqcl_type type, const float *src, void *dst, int64_t rows,
                                   int64_t cols)
{
    kq_clear_error(NULL);
    size_t row_bytes;
    kqcl_status st = check_args("kqcl_quantize", type, src, dst, rows, cols, &row_bytes);
    if (st != KQCL_OK)
        return st;
    uint8_t *d = dst;
    for (int64_t r = 0; r < rows; r++)
        quantize_row(type, src + (size_t)r * (size_t)cols, d + (size_t)r * row_bytes, cols);
    return KQCL_OK;
}
