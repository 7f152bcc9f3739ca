/*
 * matvec.cl -- the fused matrix-vector kernel for decode: Y (n x m) = X (n x k) . W^T with
 * n <= NCOLS (8). Bandwidth bound: every weight byte is read once, dequantized in registers
 * and used for all n activation rows.
 *
 *   work-group: ROW_GROUPS groups of THREADS_PER_ROW lanes; a group owns ROWS_PER_THREAD rows
 *   +-------------------------------------------------------------+
 *   | group 0 : rows r0 .. r0+RPT-1   lanes 0..T-1 take units        |  a lane reads unit g of
 *   |           g = lane, lane+T, ...  (32 weights a unit)            |  each of its RPT rows and
 *   | group 1 : rows r0+RPT .. ...                                    |  the n activation runs
 *   +-------------------------------------------------------------+  once for all of them
 *   then a tree in local memory sums the T lanes of each row, for each of the n columns.
 *
 * Lanes run along k, so a group's weight reads are contiguous; several rows a lane means each
 * activation value loaded from cache serves ROWS_PER_THREAD rows (activations outweigh the
 * weights 8 to 1 in bytes for f32 x and q4_K W, so this, not DRAM, would otherwise limit).
 *
 * Tunables: THREADS_PER_ROW (power of two), ROW_GROUPS, ROWS_PER_THREAD, NCOLS (exactly n).
 */
#ifndef THREADS_PER_ROW
#define THREADS_PER_ROW 32
#endif
#ifndef ROW_GROUPS
#define ROW_GROUPS 4
#endif
#ifndef ROWS_PER_THREAD
#define ROWS_PER_THREAD 1
#endif
#ifndef NCOLS
#define NCOLS 8
#endif

#define WG_SIZE (THREADS_PER_ROW * ROW_GROUPS)
#define ROWS_PER_WG (ROW_GROUPS * ROWS_PER_THREAD)

#if defined(KQ_CPU) && W_IS_KQUANT
/* ---- CPUs (PoCL), set by the host with -DKQ_CPU --------------------------------------------
 * PoCL runs a work-group as a loop over its items on one thread. Here a work-item owns
 * ROWS_PER_THREAD whole rows (ROW_GROUPS items a group, THREADS_PER_ROW must be 1) and walks
 * them block by block with explicit 16-wide vectors: a block is 16 "groups" of 16 weights at
 * positions 16t..16t+15 (every k-quant layout allows this order), each with one scale and one
 * offset, so a group is dequantized as fma(q, s, -mo) into a float16 and multiplied into the
 * n activation vectors. No local memory, no reduction across items. */

#if XTYPE == TYPE_F32
inline float16 x_load16(const __global XT *x, ulong i) { return vload16(0, x + i); }
#else
inline float16 x_load16(const __global XT *x, ulong i) { return (float16)(x_load8(x, i), x_load8(x, i + 8)); }
#endif

/* f16 bits to float with integer ops and one multiply (PoCL's vload_half is a long bit-by-bit
 * routine on x86): exact for normal and subnormal halves; inf/NaN scales are not expected. */
inline float2 half2_bits_to_float2(uint v)
{
    uint2 h = (uint2)(v & 0xFFFFu, v >> 16);
    float2 mag = as_float2((h & 0x7FFFu) << 13) * 0x1p112f;
    return as_float2(as_uint2(mag) | ((h & 0x8000u) << 16));
}

#ifndef KQ_PREFETCH
#define KQ_PREFETCH 4 /* blocks ahead */
#endif

/* Per-block scales of one row: group t of the block has weight = s[t] * q - mo[t]. */
typedef struct blk_scales {
    float s[16], mo[16];
} blk_scales;

inline void blk_prep(const __global uchar *blk, blk_scales *sc)
{
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
    float2 dm = half2_bits_to_float2(*(const __global uint *)blk);
    uint3 sw = vload3(0, (const __global uint *)(blk + 4));
    uint s_lo = sw.x & 0x3F3F3F3Fu, m_lo = sw.y & 0x3F3F3F3Fu;
    uint s_hi = (sw.z & 0x0F0F0F0Fu) | ((sw.x >> 2) & 0x30303030u);
    uint m_hi = ((sw.z >> 4) & 0x0F0F0F0Fu) | ((sw.y >> 2) & 0x30303030u);
    float8 s8 = dm.x * convert_float8(as_uchar8((uint2)(s_lo, s_hi)));
    float8 m8 = dm.y * convert_float8(as_uchar8((uint2)(m_lo, m_hi)));
    float sa[8], ma[8];
    vstore8(s8, 0, sa);
    vstore8(m8, 0, ma);
    /* group t = 4c + 2*high + half: sub-block 2c + high = t >> 1 */
#pragma unroll
    for (int t = 0; t < 16; t++) {
        sc->s[t] = sa[t >> 1];
        sc->mo[t] = ma[t >> 1];
    }
#elif WTYPE == TYPE_Q6_K
    float d = half2_bits_to_float2((uint)*(const __global ushort *)(blk + 208)).x;
    float16 s16 = d * convert_float16(vload16(0, (const __global char *)(blk + 192)));
    float sa[16];
    vstore16(s16, 0, sa);
    /* group t = 8h + 2r + lh: scale byte 8h + lh + 2r = t */
#pragma unroll
    for (int t = 0; t < 16; t++) {
        sc->s[t] = sa[t];
        sc->mo[t] = 32.0f * sa[t];
    }
#else /* q8_K */
    float d = *(const __global float *)blk;
#pragma unroll
    for (int t = 0; t < 16; t++) {
        sc->s[t] = d;
        sc->mo[t] = 0.0f;
    }
#endif
}

/* 16 small unsigned bytes as floats without the int-to-float conversion: 2^23 + b has b in its
 * mantissa, and the subtraction is exact (an integer OR and an FP add, off the FMA pipes). */
#ifdef KQ_CPU_CVT
inline float16 u8x16_to_float16(uchar16 q) { return convert_float16(q); }
#else
inline float16 u8x16_to_float16(uchar16 q)
{
    return as_float16(convert_uint16(q) | (uint16)0x4B000000u) - (float16)8388608.0f;
}
#endif

/* The 16 quants of group t as floats (before scale and offset). */
inline float16 blk_group(const __global uchar *blk, int t)
{
#if WTYPE == TYPE_Q4_K
    int c = t >> 2, high = (t >> 1) & 1, half_ = t & 1;
    uchar16 q = vload16(0, blk + 16 + 32 * c + 16 * half_);
    q = high ? q >> (uchar)4 : q & (uchar)0xF;
    return u8x16_to_float16(q);
#elif WTYPE == TYPE_Q5_K
    int c = t >> 2, high = (t >> 1) & 1, half_ = t & 1;
    uchar16 q = vload16(0, blk + 48 + 32 * c + 16 * half_);
    uchar16 h = vload16(0, blk + 16 + 16 * half_);
    q = high ? q >> (uchar)4 : q & (uchar)0xF;
    q |= ((h >> (uchar)(2 * c + high)) & (uchar)1) << (uchar)4;
    return u8x16_to_float16(q);
#elif WTYPE == TYPE_Q6_K
    int h = t >> 3, r = (t >> 1) & 3, lh = t & 1;
    uchar16 lo = vload16(0, blk + 64 * h + 32 * (r & 1) + 16 * lh);
    uchar16 hi = vload16(0, blk + 128 + 32 * h + 16 * lh);
    lo = (r >> 1) ? lo >> (uchar)4 : lo & (uchar)0xF;
    uchar16 q = lo | (((hi >> (uchar)(2 * r)) & (uchar)3) << (uchar)4);
    return u8x16_to_float16(q);
#else /* q8_K */
    return convert_float16(vload16(0, (const __global char *)(blk + 4 + 16 * t)));
#endif
}

#if !defined(KQ_CPU_V1) && (WTYPE == TYPE_Q6_K || WTYPE == TYPE_Q8_K || defined(KQ_CPU_SUBBLOCK))
/* v2 inner loops (doc/perf-cpu-notes.md, 2026-11-27), the default for q6_K and q8_K; q4_K/q5_K
 * measured no faster this way (in cache 156-164 vs 150-153 us, q5_K 205-210 vs 186-194), so
 * they keep v1 unless built with -DKQ_CPU_SUBBLOCK:
 *  q4_K/q5_K  per 32-weight sub-block: t = q0*x0 + q1*x1 (exact 0..31 quants as floats), then
 *             acc += s_i * t, so the scale costs half an FMA a group and the mins none: they
 *             are Σ_i m_i X_i with X_i the sub-block sums of x, computed once per block for all
 *             the item's rows (a transposing pairwise reduction) and kept in a float8 per row.
 *  q6_K       (q - 32) formed in bytes, sign-extended and converted (2 ops), times the group's
 *             scale, into acc: no offset term.
 *  q8_K       Σ q x per block in its own accumulator, times d once per block. */

/* Pairwise sums of neighbouring lanes of a and b, a's first: [a0+a1, a2+a3, ..., b14+b15]. */
inline float16 pair16(float16 a, float16 b) { return (float16)(a.even, b.even) + (float16)(a.odd, b.odd); }

/* 16 bytes at p, with the alignment the block layout guarantees (a byte-wise vload16 of PoCL
 * became 8 word inserts for some rows: LLVM did not see through it). */
inline uchar16 ld16_a4(const __global uchar *p) { return as_uchar16(vload4(0, (const __global uint *)p)); }
inline uchar16 ld16_a2(const __global uchar *p) { return as_uchar16(vload8(0, (const __global ushort *)p)); }

#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
/* Quants of sub-block sb (weights 32sb .. 32sb+31) as two float16: groups 2sb and 2sb+1. */
inline void sub_quants(const __global uchar *blk, int sb, float16 *q0, float16 *q1)
{
    int c = sb >> 1, high = sb & 1;
#if WTYPE == TYPE_Q4_K
    uchar16 a = ld16_a4(blk + 16 + 32 * c), b = ld16_a4(blk + 16 + 32 * c + 16);
#else
    uchar16 a = ld16_a4(blk + 48 + 32 * c), b = ld16_a4(blk + 48 + 32 * c + 16);
#endif
    a = high ? a >> (uchar)4 : a & (uchar)0xF;
    b = high ? b >> (uchar)4 : b & (uchar)0xF;
#if WTYPE == TYPE_Q5_K
    uchar16 ha = ld16_a4(blk + 16), hb = ld16_a4(blk + 32);
    a |= ((ha >> (uchar)sb) & (uchar)1) << (uchar)4;
    b |= ((hb >> (uchar)sb) & (uchar)1) << (uchar)4;
#endif
    *q0 = convert_float16(a);
    *q1 = convert_float16(b);
}

/* d*scale and dmin*min of the block's 8 sub-blocks. */
inline void sub_scales(const __global uchar *blk, float8 *s8, float8 *m8)
{
    float2 dm = half2_bits_to_float2(*(const __global uint *)blk);
    uint3 sw = vload3(0, (const __global uint *)(blk + 4));
    uint s_lo = sw.x & 0x3F3F3F3Fu, m_lo = sw.y & 0x3F3F3F3Fu;
    uint s_hi = (sw.z & 0x0F0F0F0Fu) | ((sw.x >> 2) & 0x30303030u);
    uint m_hi = ((sw.z >> 4) & 0x0F0F0F0Fu) | ((sw.y >> 2) & 0x30303030u);
    *s8 = dm.x * convert_float8(as_uchar8((uint2)(s_lo, s_hi)));
    *m8 = dm.y * convert_float8(as_uchar8((uint2)(m_lo, m_hi)));
}
#endif

#if WTYPE == TYPE_Q6_K
/* Group t of a q6_K block as (q - 32) floats: the offset is taken in bytes (exact). */
inline float16 q6_group(const __global uchar *blk, int t)
{
    int h = t >> 3, r = (t >> 1) & 3, lh = t & 1;
    uchar16 lo = ld16_a2(blk + 64 * h + 32 * (r & 1) + 16 * lh);
    uchar16 hi = ld16_a2(blk + 128 + 32 * h + 16 * lh);
    lo = (r >> 1) ? lo >> (uchar)4 : lo & (uchar)0xF;
    uchar16 q = lo | (((hi >> (uchar)(2 * r)) & (uchar)3) << (uchar)4);
    return convert_float16(as_char16(q - (uchar)32));
}
#endif

__kernel __attribute__((reqd_work_group_size(ROW_GROUPS, 1, 1)))
void matvec(const __global uchar *w, ulong w_row_bytes, const __global XT *x,
            __global float *y, int m, int k, int n)
{
    int row0 = get_group_id(0) * ROWS_PER_WG + get_local_id(0) * ROWS_PER_THREAD;
    if (row0 >= m)
        return;
    float16 acc[ROWS_PER_THREAD][NCOLS];
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
    float8 macc[ROWS_PER_THREAD][NCOLS];
#endif
    const __global uchar *wrow[ROWS_PER_THREAD];
#pragma unroll
    for (int i = 0; i < ROWS_PER_THREAD; i++) {
        wrow[i] = w + (size_t)min(row0 + i, m - 1) * w_row_bytes;
#pragma unroll
        for (int j = 0; j < NCOLS; j++) {
            acc[i][j] = (float16)0.0f;
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
            macc[i][j] = (float8)0.0f;
#endif
        }
    }
    int nb = k / QK_K;
    for (int b = 0; b < nb; b++) {
        const __global uchar *blk[ROWS_PER_THREAD];
#pragma unroll
        for (int i = 0; i < ROWS_PER_THREAD; i++) {
            blk[i] = wrow[i] + (size_t)b * BLOCK_BYTES;
#if KQ_PREFETCH > 0
            if (b + KQ_PREFETCH < nb)
                for (int l = 0; l < BLOCK_BYTES; l += 64)
                    __builtin_prefetch(blk[i] + KQ_PREFETCH * BLOCK_BYTES + l, 0, 3);
#endif
        }
        const __global XT *xb = x + (size_t)b * QK_K;
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
        float8 s8[ROWS_PER_THREAD], m8[ROWS_PER_THREAD];
#pragma unroll
        for (int i = 0; i < ROWS_PER_THREAD; i++)
            sub_scales(blk[i], &s8[i], &m8[i]);
#pragma unroll
        for (int j = 0; j < NCOLS; j++) {
            float16 xs[8];
#pragma unroll
            for (int sb = 0; sb < 8; sb++) {
                float16 x0 = x_load16(xb + (size_t)j * k, (ulong)(32 * sb));
                float16 x1 = x_load16(xb + (size_t)j * k, (ulong)(32 * sb + 16));
                xs[sb] = x0 + x1;
#pragma unroll
                for (int i = 0; i < ROWS_PER_THREAD; i++) {
                    float16 q0, q1;
                    sub_quants(blk[i], sb, &q0, &q1);
                    float16 t = fma(q1, x1, q0 * x0);
                    float sc[8];
                    vstore8(s8[i], 0, sc);
                    acc[i][j] = fma(t, (float16)sc[sb], acc[i][j]);
                }
            }
            /* X[sb] = sum of xs[sb]'s lanes, all 8 at once */
            float16 c = pair16(pair16(pair16(xs[0], xs[1]), pair16(xs[2], xs[3])),
                               pair16(pair16(xs[4], xs[5]), pair16(xs[6], xs[7])));
            float8 X = c.even + c.odd;
#pragma unroll
            for (int i = 0; i < ROWS_PER_THREAD; i++)
                macc[i][j] = fma(m8[i], X, macc[i][j]);
        }
#elif WTYPE == TYPE_Q6_K
        float sc[ROWS_PER_THREAD][16];
#pragma unroll
        for (int i = 0; i < ROWS_PER_THREAD; i++) {
            float d = half2_bits_to_float2((uint)*(const __global ushort *)(blk[i] + 208)).x;
            vstore16(d * convert_float16(as_char16(ld16_a2(blk[i] + 192))), 0, sc[i]);
        }
#pragma unroll
        for (int t = 0; t < 16; t++) {
            float16 xv[NCOLS];
#pragma unroll
            for (int j = 0; j < NCOLS; j++)
                xv[j] = x_load16(xb + (size_t)j * k, (ulong)(16 * t));
#pragma unroll
            for (int i = 0; i < ROWS_PER_THREAD; i++) {
                float16 wv = q6_group(blk[i], t) * sc[i][t];
#pragma unroll
                for (int j = 0; j < NCOLS; j++)
                    acc[i][j] = fma(wv, xv[j], acc[i][j]);
            }
        }
#else /* q8_K */
        float16 bacc[ROWS_PER_THREAD][NCOLS];
#pragma unroll
        for (int t = 0; t < 16; t++) {
            float16 xv[NCOLS];
#pragma unroll
            for (int j = 0; j < NCOLS; j++)
                xv[j] = x_load16(xb + (size_t)j * k, (ulong)(16 * t));
#pragma unroll
            for (int i = 0; i < ROWS_PER_THREAD; i++) {
                float16 q = convert_float16(as_char16(vload4(0, (const __global uint *)(blk[i] + 4 + 16 * t))));
#pragma unroll
                for (int j = 0; j < NCOLS; j++)
                    bacc[i][j] = t == 0 ? q * xv[j] : fma(q, xv[j], bacc[i][j]);
            }
        }
#pragma unroll
        for (int i = 0; i < ROWS_PER_THREAD; i++) {
            float d = *(const __global float *)blk[i];
#pragma unroll
            for (int j = 0; j < NCOLS; j++)
                acc[i][j] = fma(bacc[i][j], (float16)d, acc[i][j]);
        }
#endif
    }
    for (int i = 0; i < ROWS_PER_THREAD; i++)
        if (row0 + i < m)
#pragma unroll
            for (int j = 0; j < NCOLS; j++) {
                float8 a8 = acc[i][j].lo + acc[i][j].hi;
                float4 a4 = a8.lo + a8.hi;
                float sum = (a4.x + a4.y) + (a4.z + a4.w);
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
                float4 m4 = macc[i][j].lo + macc[i][j].hi;
                sum -= (m4.x + m4.y) + (m4.z + m4.w);
#endif
                y[(size_t)j * m + row0 + i] = sum;
            }
}

#else /* v1: the first CPU kernel, fma(q, s, -mo) per group of 16 */
__kernel __attribute__((reqd_work_group_size(ROW_GROUPS, 1, 1)))
void matvec(const __global uchar *w, ulong w_row_bytes, const __global XT *x,
            __global float *y, int m, int k, int n)
{
    int row0 = get_group_id(0) * ROWS_PER_WG + get_local_id(0) * ROWS_PER_THREAD;
    if (row0 >= m)
        return;
    float16 acc[ROWS_PER_THREAD][NCOLS];
    const __global uchar *wrow[ROWS_PER_THREAD];
#pragma unroll
    for (int i = 0; i < ROWS_PER_THREAD; i++) {
        wrow[i] = w + (size_t)min(row0 + i, m - 1) * w_row_bytes;
#pragma unroll
        for (int j = 0; j < NCOLS; j++)
            acc[i][j] = (float16)0.0f;
    }
    int nb = k / QK_K;
    for (int b = 0; b < nb; b++) {
        blk_scales sc[ROWS_PER_THREAD];
        const __global uchar *blk[ROWS_PER_THREAD];
#pragma unroll
        for (int i = 0; i < ROWS_PER_THREAD; i++) {
            blk[i] = wrow[i] + (size_t)b * BLOCK_BYTES;
#if KQ_PREFETCH > 0
            /* rows are short streams (a few KiB) the hardware prefetchers barely ramp up on */
            if (b + KQ_PREFETCH < nb)
                for (int l = 0; l < BLOCK_BYTES; l += 64)
                    __builtin_prefetch(blk[i] + KQ_PREFETCH * BLOCK_BYTES + l, 0, 3);
#endif
            blk_prep(blk[i], &sc[i]);
        }
#pragma unroll
        for (int t = 0; t < 16; t++) {
            float16 xv[NCOLS];
#pragma unroll
            for (int j = 0; j < NCOLS; j++)
                xv[j] = x_load16(x + (size_t)j * k, (ulong)(b * QK_K + 16 * t));
    #pragma unroll
        for (int i = 0; i < ROWS_PER_THREAD; i++) {
                float16 wv = fma(blk_group(blk[i], t), (float16)sc[i].s[t], (float16)(-sc[i].mo[t]));
    #pragma unroll
            for (int j = 0; j < NCOLS; j++)
                    acc[i][j] = fma(wv, xv[j], acc[i][j]);
            }
        }
    }
    for (int i = 0; i < ROWS_PER_THREAD; i++)
        if (row0 + i < m)
#pragma unroll
            for (int j = 0; j < NCOLS; j++) {
                float8 a8 = acc[i][j].lo + acc[i][j].hi;
                float4 a4 = a8.lo + a8.hi;
                y[(size_t)j * m + row0 + i] = (a4.x + a4.y) + (a4.z + a4.w);
            }
}

#endif /* v2 / v1 */

#else /* GPUs, and float weights everywhere */

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void matvec(const __global uchar *w, ulong w_row_bytes, const __global XT *x,
            __global float *y, int m, int k, int n)
{
    __local float partial[ROWS_PER_THREAD * NCOLS][WG_SIZE];
    int lid = get_local_id(0);
    int lane = lid % THREADS_PER_ROW;
    int row0 = get_group_id(0) * ROWS_PER_WG + (lid / THREADS_PER_ROW) * ROWS_PER_THREAD;
    float acc[ROWS_PER_THREAD][NCOLS];
    for (int i = 0; i < ROWS_PER_THREAD; i++)
        for (int j = 0; j < NCOLS; j++)
            acc[i][j] = 0.0f;

    /* rows past m repeat the last row (their sums are never stored), keeping loads in range */
    const __global uchar *wrow[ROWS_PER_THREAD];
    for (int i = 0; i < ROWS_PER_THREAD; i++)
        wrow[i] = w + (size_t)min(row0 + i, m - 1) * w_row_bytes;

    /* A lane takes a whole unit (32 weights) at a time, so its scales are decoded once for 32
     * weights; lanes on neighbouring units read neighbouring quant bytes. (One run a lane, for
     * contiguous activation loads, measured 2-3x slower on an H200: doc/perf.md.) */
    int units = units_per_row(k);
    for (int g = lane; g < units; g += THREADS_PER_ROW) {
        unit_raw raw[ROWS_PER_THREAD]; /* all rows' loads issued before any is used */
        for (int i = 0; i < ROWS_PER_THREAD; i++)
            raw[i] = unit_load_row(wrow[i], g, k);
        for (int r = 0; r < 4; r++) {
            int pos = run_position(g, r);
            float8 xv[NCOLS];
            float xsum[NCOLS];
            for (int j = 0; j < NCOLS; j++) {
                xv[j] = x_run_fast(x + (size_t)j * k, pos, k);
                xsum[j] = hsum8(xv[j]);
            }
            for (int i = 0; i < ROWS_PER_THREAD; i++) {
                float s, mo;
                float8 q = raw_run(&raw[i], r, &s, &mo);
                for (int j = 0; j < NCOLS; j++)
                    acc[i][j] += s * dot8(q, xv[j]) - mo * xsum[j];
            }
        }
    }

    for (int i = 0; i < ROWS_PER_THREAD; i++)
        for (int j = 0; j < NCOLS; j++)
            partial[i * NCOLS + j][lid] = acc[i][j];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = THREADS_PER_ROW / 2; stride > 0; stride >>= 1) {
        if (lane < stride)
            for (int s = 0; s < ROWS_PER_THREAD * NCOLS; s++)
                partial[s][lid] += partial[s][lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lane == 0)
        for (int i = 0; i < ROWS_PER_THREAD; i++)
            if (row0 + i < m)
                for (int j = 0; j < NCOLS; j++)
                    y[(size_t)j * m + row0 + i] = partial[i * NCOLS + j][lid];
}
#endif
