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
