/*
 * q8.cl -- Q8 precision (include/kqcl.h): activations quantized to 8-bit integers on the
 * device, and the decode kernel that multiplies them with quantized weights in integer dot
 * products, never turning a weight into a float.
 *
 *   quantize_q8   X (n x k, XT) -> xq, one buffer:  q[n][k] char | d[n][k/32] float |
 *                 dsum[n][k/16] float (d * the sum of 16 quants, for q4_K/q5_K's mins and,
 *                 two a block, q4_1/q5_1's)
 *   matvec_q8     Y (n x m) = Xq . W^T for n <= 8: matvec.cl's work-group shape (lanes along
 *                 k, a unit of 32 weights a lane, a tree across the lanes), each run of 8
 *                 weights two 4-way byte dot products per activation row.
 *
 * The integer dot product of 4 signed bytes comes in three forms, chosen by the host: inline
 * PTX dp4a on NVIDIA sm_61 and later (KQ_NV_PTX with KQ_NV_DP4A), cl_khr_integer_dot_product
 * where the device offers it (KQ_INT_DOT), and plain char arithmetic everywhere else.
 *
 * GROUP (1..4) weights that share X and their type and width are served by one launch
 * (common.cl's group_matrix).
 *
 * Tunables as matvec.cl: THREADS_PER_ROW (power of two), ROW_GROUPS, ROWS_PER_THREAD, NCOLS.
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
#ifndef GROUP
#define GROUP 1
#endif

#if THREADS_PER_ROW < 1 || (THREADS_PER_ROW & (THREADS_PER_ROW - 1)) != 0 || ROW_GROUPS < 1 || ROWS_PER_THREAD < 1 || \
    ROWS_PER_THREAD > 16 || NCOLS < 1 || NCOLS > 8 || GROUP < 1 || GROUP > 4
#error "q8: THREADS_PER_ROW a power of two, ROW_GROUPS >= 1, ROWS_PER_THREAD 1..16, NCOLS 1..8, GROUP 1..4"
#endif

#define WG_SIZE (THREADS_PER_ROW * ROW_GROUPS)
#define ROWS_PER_WG (ROW_GROUPS * ROWS_PER_THREAD)
#define Q8_BLOCK 32

/* ---- activation quantization --------------------------------------------------------------- */

/* The integer nearest x / d, halves away from zero, clamped to +-127 -- for the exact quotient,
 * so every device (and the host reference) gets the same q whatever its division rounds: an
 * estimate from x * (1/d), then one correction by the residual x - q d, which fma gives exactly
 * here (|x| >= d: x and q d are multiples of ulp(d) and differ by about d/2 at most). Below d
 * only 0 and +-1 are candidates, decided by comparing |x| with d/2 (exact: d is normal). */
static inline int q8_round(float x, float d, float inv_d)
{
    if (!(d > 0.0f) || isinf(d) || isnan(x)) /* d = 0, NaN or Inf: no quants (d carries it) */
        return 0;
    float h = 0.5f * d, ax = fabs(x);
    if (ax < d)
        return ax >= h ? (x > 0.0f ? 1 : -1) : 0;
    float q = clamp(round(x * inv_d), -127.0f, 127.0f);
    float e = fma(-q, d, x);
    if (e > h || (e == h && x > 0.0f))
        q += 1.0f;
    else if (e < -h || (e == -h && x < 0.0f))
        q -= 1.0f;
    return (int)clamp(q, -127.0f, 127.0f);
}

/* q8_round for any d, however small: a block whose largest |x| is below about 3.7e-37 has a d
 * whose reciprocal overflows (d < 1/FLT_MAX) or that is subnormal (d/2 not exact), so such a
 * block is quantized scaled by 2^64 -- exact for x and d alike, and x / d is unchanged. */
static inline int q8_quant(float x, float d)
{
    float scale = d < 0x1p-64f ? 0x1p64f : 1.0f;
    float ds = d * scale;
    return q8_round(x * scale, ds, ds > 0.0f ? 1.0f / ds : 0.0f);
}

/* A work-item a value, a work-group QUANT_WG of them (whole blocks: k is a multiple of 32, so
 * blocks never straddle rows and block b starts at value 32 b), grid-striding: loads and stores
 * are coalesced, and each block's maximum and 16-sums are trees in local memory (max and
 * integer sums are exact in any order, so the result is the one the header defines). */
#ifndef QUANT_WG /* the host's quantize variant passes it (lib/kernels/family.c); the matvec programs take 64 */
#define QUANT_WG 64
#endif

__kernel __attribute__((reqd_work_group_size(QUANT_WG, 1, 1)))
void quantize_q8(const __global XT *x, __global uchar *xq, int n, int k)
{
    __local float amax[QUANT_WG];
    __local int flag[QUANT_WG], sum[QUANT_WG];
    size_t values = (size_t)n * k;
    __global float *xd = (__global float *)(xq + values);
    __global float *dsum = xd + values / Q8_BLOCK;
    int lid = get_local_id(0), first = lid & ~(Q8_BLOCK - 1);
    for (size_t base = get_group_id(0) * (size_t)QUANT_WG; base < values; base += get_num_groups(0) * (size_t)QUANT_WG) {
        size_t i = base + lid;
        bool live = i < values; /* the group's last pass may hold fewer whole blocks */
        float v = live ? x_at(x, (ulong)i) : 0.0f;
        amax[lid] = fabs(v);
        flag[lid] = isnan(v);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int s = Q8_BLOCK / 2; s > 0; s >>= 1) {
            if ((lid & (Q8_BLOCK - 1)) < s) {
                amax[lid] = fmax(amax[lid], amax[lid + s]);
                flag[lid] |= flag[lid + s];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        float d = flag[first] ? NAN : amax[first] * (1.0f / 127.0f);
        int q = q8_quant(v, d);
        sum[lid] = q;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int s = 8; s > 0; s >>= 1) { /* sums of 16 */
            if ((lid & 15) < s)
                sum[lid] += sum[lid + s];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (live) {
            ((__global char *)xq)[i] = (char)q;
            if ((lid & 15) == 0)
                dsum[i / 16] = d * (float)sum[lid];
            if (lid == first)
                xd[i / Q8_BLOCK] = d;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* the next pass reuses the arrays */
    }
}

/* ---- the integer decode kernel -------------------------------------------------------------- */

#if W_IS_QUANT

/* The offset each weight type stores its quants with (raw_run_bytes gives them unsigned):
 * taken out here, in the bytes, so the products are of the true signed quants. q4_K/q5_K and
 * q4_1/q5_1 keep theirs as mins, which multiply the activations' sums instead. */
#if WTYPE == TYPE_Q6_K
#define QBIAS Q6K_BIAS
#elif WTYPE == TYPE_Q4_0
#define QBIAS Q40_BIAS
#elif WTYPE == TYPE_Q5_0
#define QBIAS Q50_BIAS
#elif WTYPE == TYPE_Q8_K || WTYPE == TYPE_Q8_0
#define QBIAS 128
#else
#define QBIAS 0
#define HAS_MIN 1
#endif

/* Runs of a unit that share one weight scale and one activation block, and are consecutive in
 * the row: q4_K/q5_K two (a sub-block's 16 values of the unit), q6_K one (a scale a 16, and a
 * unit's runs 32 apart), the one-scale blocks all four (q4_1/q5_1's min then meets the sums of
 * both 16-value halves of the activation block). */
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
#define RUNS_SHARED 2
#elif WTYPE == TYPE_Q6_K
#define RUNS_SHARED 1
#else
#define RUNS_SHARED 4
#endif

/* 4 bytes at once: b - QBIAS as signed bytes (b < 128 unless QBIAS is 128). */
static inline uint unbias(uint b)
{
#if QBIAS == 128
    return b ^ 0x80808080u;
#elif QBIAS == 0
    return b;
#else
    /* with the top bit set no byte borrows from its neighbour; the xor takes it back out */
    return ((b | 0x80808080u) - (uint)QBIAS * 0x01010101u) ^ 0x80808080u;
#endif
}

#if defined(KQ_INT_DOT) && defined(cl_khr_integer_dot_product)
#pragma OPENCL EXTENSION cl_khr_integer_dot_product : enable
#endif

/* acc + the dot product of 4 signed bytes a and b. */
static inline int dot4_i8(uint a, uint b, int acc)
{
#if defined(KQ_NV_PTX) && defined(KQ_NV_DP4A)
    int r;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#elif defined(KQ_INT_DOT) && defined(cl_khr_integer_dot_product)
    return acc + dot_4x8packed_ss_int(a, b);
#else
    char4 x = as_char4(a), y = as_char4(b);
    return acc + (int)x.x * y.x + (int)x.y * y.y + (int)x.z * y.z + (int)x.w * y.w;
#endif
}

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void matvec_q8(const __global uchar *w0, const __global uchar *w1, const __global uchar *w2, const __global uchar *w3,
               ulong w_row_bytes, const __global uchar *xq, __global float *y0, __global float *y1,
               __global float *y2, __global float *y3, int m0, int m1, int m2, int m3, int k, int n)
{
    __local float partial[ROWS_PER_THREAD * NCOLS][WG_SIZE];
    GROUP_PICK_SLOT;

    const __global float *xd = (const __global float *)(xq + (size_t)n * k);
    const __global float *dsum = xd + (size_t)n * (k / Q8_BLOCK);
    int lid = get_local_id(0);
    int lane = lid % THREADS_PER_ROW;
    int row0 = wg_row * ROWS_PER_WG + (lid / THREADS_PER_ROW) * ROWS_PER_THREAD;
    float acc[ROWS_PER_THREAD][NCOLS];
    for (int i = 0; i < ROWS_PER_THREAD; i++)
        for (int j = 0; j < NCOLS; j++)
            acc[i][j] = 0.0f;
    const __global uchar *wrow[ROWS_PER_THREAD];
    for (int i = 0; i < ROWS_PER_THREAD; i++) /* rows past m repeat the last (never stored) */
        wrow[i] = w + (size_t)min(row0 + i, m - 1) * w_row_bytes;

    /* Software-pipelined: the next unit's weights are loaded before this one's products, so
     * each lane keeps two units' loads in flight (H200, doc/perf.md run 16: q6_K 42.4 -> 34.4 us
     * at n = 1, q4_K within 5%; the same change in matvec.cl's f32 kernel measured slower). */
    int units = k / 32;
    unit_raw raw[ROWS_PER_THREAD], next[ROWS_PER_THREAD];
    if (lane < units)
        for (int i = 0; i < ROWS_PER_THREAD; i++)
            next[i] = unit_load_row(wrow[i], lane, k);
    for (int g = lane; g < units; g += THREADS_PER_ROW) {
        for (int i = 0; i < ROWS_PER_THREAD; i++)
            raw[i] = next[i];
        if (g + THREADS_PER_ROW < units)
            for (int i = 0; i < ROWS_PER_THREAD; i++)
                next[i] = unit_load_row(wrow[i], g + THREADS_PER_ROW, k);
        for (int r = 0; r < 4; r += RUNS_SHARED) {
            int pos = run_position(g, r);
            uint2 xv[NCOLS][RUNS_SHARED];
            float dx[NCOLS];
#ifdef HAS_MIN
            float xm[NCOLS];
#endif
            for (int j = 0; j < NCOLS; j++) {
                const __global uchar *xrow = xq + (size_t)j * k;
                for (int rr = 0; rr < RUNS_SHARED; rr++)
                    xv[j][rr] = *(const __global uint2 *)(xrow + pos + 8 * rr); /* pos % 8 == 0 */
                dx[j] = xd[(size_t)j * (k / Q8_BLOCK) + pos / Q8_BLOCK];
#ifdef HAS_MIN
                xm[j] = dsum[(size_t)j * (k / 16) + pos / 16];
#if RUNS_SHARED == 4
                xm[j] += dsum[(size_t)j * (k / 16) + pos / 16 + 1];
#endif
#endif
            }
            for (int i = 0; i < ROWS_PER_THREAD; i++) {
                float s, mo;
                uint2 q[RUNS_SHARED];
                for (int rr = 0; rr < RUNS_SHARED; rr++) {
                    q[rr] = raw_run_bytes(&raw[i], r + rr, &s, &mo);
                    q[rr] = (uint2)(unbias(q[rr].x), unbias(q[rr].y));
                }
                for (int j = 0; j < NCOLS; j++) {
                    int isum = 0;
                    for (int rr = 0; rr < RUNS_SHARED; rr++)
                        isum = dot4_i8(q[rr].y, xv[j][rr].y, dot4_i8(q[rr].x, xv[j][rr].x, isum));
#ifdef HAS_MIN
                    acc[i][j] += s * (dx[j] * (float)isum) - mo * xm[j];
#else
                    acc[i][j] += s * (dx[j] * (float)isum);
#endif
                }
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

#endif /* W_IS_QUANT */
