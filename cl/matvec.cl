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
 * GROUP (1..4) weights that share X and their type and width are served by one launch
 * (common.cl's group_matrix): Q, K and V, or gate and up, cost one launch, not three or two.
 *
 * GLU (1 SwiGLU, 2 GeGLU): the gated feed-forward in one launch (kqcl_matmul_glu): w0 is the
 * gate, w1 the up weight, y0 gets act(X . gate^T) * (X . up^T). A lane computes its rows of
 * both weights (ROWS = twice ROWS_PER_THREAD sums, the gate's first) and the lane that stores
 * combines them, so neither product goes to memory.
 *
 * NORM (the GPU form, f32 X with k a multiple of 32): X's rows normalised first, in the same
 * launch (kqcl_norm_matmul_group and _glu). Every work-group reads x (+ res), sums its squares
 * and keeps x / sqrt(mean + eps) * nw in local memory, where the lanes then read it; the
 * work-group that finishes reading last (a counter in `arrivals`, back to 0 after it) writes
 * sum = x + res, so sum may be x or res themselves. A decode step's norm costs no launch.
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
#ifndef GROUP
#define GROUP 1
#endif
#ifndef GLU
#define GLU 0
#endif
#ifndef NORM
#define NORM 0
#endif
#if GLU
#define ROWS (2 * ROWS_PER_THREAD) /* a lane's sums: its gate rows, then the same rows of up */
#else
#define ROWS ROWS_PER_THREAD
#endif

#if THREADS_PER_ROW < 1 || (THREADS_PER_ROW & (THREADS_PER_ROW - 1)) != 0 || ROW_GROUPS < 1 || ROWS_PER_THREAD < 1 || \
    ROWS > 16 || NCOLS < 1 || NCOLS > 8 || GROUP < 1 || GROUP > 4 || GLU < 0 || GLU > 2 || (GLU && GROUP != 1)
#error "matvec: THREADS_PER_ROW a power of two (a tree sums a row's lanes), ROW_GROUPS >= 1, ROWS_PER_THREAD 1..16 (8 with GLU), NCOLS 1..8, GROUP 1..4 (1 with GLU)"
#endif
#if NORM && (XTYPE != TYPE_F32 || !defined(X_ALIGNED) || (defined(KQ_CPU) && W_IS_QUANT))
#error "matvec: NORM takes f32 X of rows a multiple of 32 (X_ALIGNED), in the work-group form"
#endif

#define WG_SIZE (THREADS_PER_ROW * ROW_GROUPS)
#define ROWS_PER_WG (ROW_GROUPS * ROWS_PER_THREAD)

/* The kernel's arguments, in both forms: the group's weights, X, their outputs and heights. */
#define MATVEC_ARGS                                                                                                    \
    const __global uchar *w0, const __global uchar *w1, const __global uchar *w2, const __global uchar *w3,           \
        ulong w_row_bytes, const __global XT *x, __global float *y0, __global float *y1, __global float *y2,          \
        __global float *y3, int m0, int m1, int m2, int m3, int k, int n NORM_ARGS

/* NORM's: the residual (read with has_res), the norm's weight, where x + res goes, the
 * work-groups' counter, the normalised X (NCOLS * XS_STRIDE(k) float4s), eps. */
#if NORM
#define NORM_ARGS                                                                                                      \
    , const __global float *res, const __global float *nw, __global float *sum, volatile __global int *arrivals,    \
        __local float4 *xs, float eps, int has_res
#else
#define NORM_ARGS
#endif

/* Lane row i's weight row: rows row0 .. of w; with GLU, i >= ROWS_PER_THREAD the same rows of
 * w1 (up). Rows past m repeat the last row (their sums are never stored), keeping loads in range. */
static inline const __global uchar *lane_row(const __global uchar *w, const __global uchar *w1, ulong w_row_bytes,
                                             int row0, int i, int m)
{
#if GLU
    if (i >= ROWS_PER_THREAD) {
        w = w1;
        i -= ROWS_PER_THREAD;
    }
#endif
    (void)w1;
    return w + (size_t)min(row0 + i, m - 1) * w_row_bytes;
}

/* What the storing lane writes for row i of its rows and column j, from its sums s(i, j). */
#if GLU == 1
#define LANE_RESULT(s, i, j) (silu(s(i, j)) * s((i) + ROWS_PER_THREAD, j))
#elif GLU == 2
#define LANE_RESULT(s, i, j) (gelu(s(i, j)) * s((i) + ROWS_PER_THREAD, j))
#else
#define LANE_RESULT(s, i, j) s(i, j)
#endif

#if defined(KQ_CPU) && W_IS_QUANT
/* ---- CPUs (PoCL), set by the host with -DKQ_CPU --------------------------------------------
 * PoCL runs a work-group as a loop over its items on one thread. Here a work-item owns
 * ROWS_PER_THREAD whole rows (ROW_GROUPS items a group, THREADS_PER_ROW must be 1) and walks
 * them block by block with explicit 16-wide vectors, group by group (common.cl's CPU helpers):
 *   q4_K/q5_K and the small blocks  fma(q, s, -mo) per group of 16, into the n activation
 *              vectors;
 *   q6_K       (q - 32) formed in bytes (exact), times the group's scale: no offset term;
 *   q8_K       sum(q x) per block in its own accumulator, times d once a block.
 * No local memory, no reduction across items. Rows are short streams (a few KiB) that the
 * hardware prefetchers barely ramp up on, so each row is prefetched KQ_PREFETCH blocks ahead.
 * Variants measured on the way are in doc/perf-cpu-notes.md. */

#ifndef KQ_PREFETCH
#if W_IS_KQUANT
#define KQ_PREFETCH 4 /* blocks ahead */
#else
#define KQ_PREFETCH 32 /* small blocks: about as many bytes ahead */
#endif
#endif

#if WTYPE == TYPE_Q6_K
/* Group t of a q6_K block as (q - 32) floats: the offset is taken in bytes (exact). */
static inline float16 q6_group(const __global uchar *blk, int t)
{
    return convert_float16(as_char16(q6k_group_bytes(blk, t) - (uchar)Q6K_BIAS));
}
#endif

#if !W_IS_KQUANT
/* Every row's scale and offset (weight = s q - mo) for its current small block, four rows'
 * halves converted as one vector: a half by integer ops is some ten instructions, as many as
 * the 32 weights' own arithmetic if done one by one. */
static inline void small_scales(const __global uchar *blk[ROWS], float s[ROWS],
                                float mo[ROWS])
{
#pragma unroll
    for (int i0 = 0; i0 < ROWS; i0 += 4) {
        uint4 w;
        w.x = small_block_halves(blk[i0]);
        w.y = small_block_halves(blk[min(i0 + 1, ROWS - 1)]);
        w.z = small_block_halves(blk[min(i0 + 2, ROWS - 1)]);
        w.w = small_block_halves(blk[min(i0 + 3, ROWS - 1)]);
        uint8 h = (uint8)(w.x & 0xFFFFu, w.x >> 16, w.y & 0xFFFFu, w.y >> 16, w.z & 0xFFFFu, w.z >> 16,
                          w.w & 0xFFFFu, w.w >> 16);
        float f[8];
        vstore8(half8_bits_to_float8(h), 0, f);
#pragma unroll
        for (int r = 0; r < 4 && i0 + r < ROWS; r++) {
            s[i0 + r] = f[2 * r];
            mo[i0 + r] = small_block_offset(f[2 * r], f[2 * r + 1]);
        }
    }
}
#endif

/* acc[i][j] += row i's block (at blk[i]) times activation row j's BLOCK_VALUES values at xb + j*k. */
static inline void block_dot(const __global uchar *blk[ROWS], const __global XT *xb, int k,
                      float16 acc[ROWS][NCOLS])
{
#if !W_IS_KQUANT
    float s[ROWS], mo[ROWS];
    small_scales(blk, s, mo);
#elif WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
    blk_scales sc[ROWS];
#pragma unroll
    for (int i = 0; i < ROWS; i++)
        blk_prep(blk[i], &sc[i]);
#elif WTYPE == TYPE_Q6_K
    float sc[ROWS][16];
#pragma unroll
    for (int i = 0; i < ROWS; i++) {
        float d = half2_bits_to_float2((uint)*(const __global ushort *)(blk[i] + Q6K_D)).x;
        vstore16(d * convert_float16(as_char16(ld16_a2(blk[i] + Q6K_SCALES))), 0, sc[i]);
    }
#else
    float16 bacc[ROWS][NCOLS];
#endif
#pragma unroll
    for (int t = 0; t < CPU_GROUPS; t++) {
        float16 xv[NCOLS];
#pragma unroll
        for (int j = 0; j < NCOLS; j++)
            xv[j] = x_load16(xb + (size_t)j * k, (ulong)(16 * t));
#pragma unroll
        for (int i = 0; i < ROWS; i++) {
#if WTYPE == TYPE_Q6_K
            float16 wv = q6_group(blk[i], t) * sc[i][t];
#elif WTYPE == TYPE_Q8_K
            float16 q = blk_group(blk[i], t);
#elif !W_IS_KQUANT
            float16 wv = fma(blk_group(blk[i], t), (float16)s[i], (float16)(-mo[i]));
#else
            float16 wv = fma(blk_group(blk[i], t), (float16)sc[i].s[t], (float16)(-sc[i].mo[t]));
#endif
#pragma unroll
            for (int j = 0; j < NCOLS; j++) {
#if WTYPE == TYPE_Q8_K
                bacc[i][j] = t == 0 ? q * xv[j] : fma(q, xv[j], bacc[i][j]);
#else
                acc[i][j] = fma(wv, xv[j], acc[i][j]);
#endif
            }
        }
    }
#if WTYPE == TYPE_Q8_K
#pragma unroll
    for (int i = 0; i < ROWS; i++) {
        float d = *(const __global float *)(blk[i] + Q8K_D);
#pragma unroll
        for (int j = 0; j < NCOLS; j++)
            acc[i][j] = fma(bacc[i][j], (float16)d, acc[i][j]);
    }
#endif
}

__kernel __attribute__((reqd_work_group_size(ROW_GROUPS, 1, 1)))
void matvec(MATVEC_ARGS)
{
    GROUP_PICK_SLOT;
    int row0 = wg_row * ROWS_PER_WG + get_local_id(0) * ROWS_PER_THREAD;
    if (row0 >= m)
        return;
    float16 acc[ROWS][NCOLS];
    const __global uchar *wrow[ROWS];
#pragma unroll
    for (int i = 0; i < ROWS; i++) {
        wrow[i] = lane_row(w, w1, w_row_bytes, row0, i, m);
#pragma unroll
        for (int j = 0; j < NCOLS; j++)
            acc[i][j] = (float16)0.0f;
    }
    int nb = k / BLOCK_VALUES;
    for (int b = 0; b < nb; b++) {
        const __global uchar *blk[ROWS];
#pragma unroll
        for (int i = 0; i < ROWS; i++) {
            blk[i] = wrow[i] + (size_t)b * BLOCK_BYTES;
#if KQ_PREFETCH > 0
            if (b + KQ_PREFETCH < nb) /* OpenCL C's prefetch: a hint a driver may ignore */
                prefetch(blk[i] + KQ_PREFETCH * BLOCK_BYTES, BLOCK_BYTES);
#endif
        }
        block_dot(blk, x + (size_t)b * BLOCK_VALUES, k, acc);
    }
#define ROW_SUM(i, j) hsum8(acc[i][j].lo + acc[i][j].hi)
    for (int i = 0; i < ROWS_PER_THREAD; i++)
        if (row0 + i < m)
#pragma unroll
            for (int j = 0; j < NCOLS; j++)
                y[(size_t)j * m + row0 + i] = LANE_RESULT(ROW_SUM, i, j);
#undef ROW_SUM
}

#else /* GPUs, and float weights everywhere */

#if NORM
/* xs keeps a 32-value unit in 9 float4s, one spare: the lanes of a warp read one run of
 * neighbouring units, 128 bytes apart, which unpadded would all fall on the same banks. */
#define XS_STRIDE(k) ((k) / 4 + (k) / 32)
static inline int xs_index(int pos) { return pos / 4 + pos / 32; }

/* The 8 normalised values at pos (a multiple of 8) of row xsr. */
static inline float8 xs_run(const __local float4 *xsr, int pos)
{
    const __local float4 *p = xsr + xs_index(pos);
    return (float8)(p[0], p[1]);
}

/* X's rows normalised into xs as kqcl_rms_norm and kqcl_add_rms_norm compute them: v = x (+ res),
 * v / sqrt(mean(v^2) + eps) * nw; red: WG_SIZE floats for the sums of squares. */
static void stage_norm(const __global float *x, const __global float *res, const __global float *nw, int has_res,
                       float eps, int k, __local float4 *xs, __local float *red)
{
    int lid = get_local_id(0);
    for (int j = 0; j < NCOLS; j++) {
        const __global float *xr = x + (size_t)j * k, *rr = res + (size_t)j * k;
        __local float4 *xsr = xs + j * XS_STRIDE(k);
        float ss = 0.0f;
        for (int c = 4 * lid; c < k; c += 4 * WG_SIZE) {
            float4 v = vload4(0, xr + c);
            if (has_res)
                v += vload4(0, rr + c);
            xsr[xs_index(c)] = v;
            ss = fma(v.x, v.x, fma(v.y, v.y, fma(v.z, v.z, fma(v.w, v.w, ss))));
        }
        float scale = 1.0f / sqrt(group_reduce(red, ss, false, WG_SIZE) / (float)k + eps);
        for (int c = 4 * lid; c < k; c += 4 * WG_SIZE) /* an item rescales only what it stored */
            xsr[xs_index(c)] = xsr[xs_index(c)] * scale * vload4(0, nw + c);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* sum = x + res, by the work-group that finished reading them last: every other one has
 * counted itself in `arrivals` after its reads, so sum may lie on x or res exactly. */
static void store_sum_last(const __global float *x, const __global float *res, __global float *sum,
                           volatile __global int *arrivals, int k, __local int *last)
{
    int lid = get_local_id(0);
    barrier(CLK_GLOBAL_MEM_FENCE); /* this work-group's reads of x and res are done */
    if (lid == 0)
        *last = atomic_inc(arrivals) == (int)get_num_groups(0) - 1;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (!*last)
        return;
    for (int c = 4 * lid; c < NCOLS * k; c += 4 * WG_SIZE)
        vstore4(vload4(0, x + c) + vload4(0, res + c), 0, sum + c);
    if (lid == 0)
        atomic_xchg(arrivals, 0); /* for the next launch, which the queue orders after this one */
}
#endif

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void matvec(MATVEC_ARGS)
{
    __local float partial[ROWS * NCOLS][WG_SIZE];
#if NORM /* X alone: before the work-group picks its weight */
    __local int last;
    stage_norm(x, res, nw, has_res, eps, k, xs, partial[0]);
    if (has_res)
        store_sum_last(x, res, sum, arrivals, k, &last);
#endif
    GROUP_PICK_SLOT;
    int lid = get_local_id(0);
    int lane = lid % THREADS_PER_ROW;
    int row0 = wg_row * ROWS_PER_WG + (lid / THREADS_PER_ROW) * ROWS_PER_THREAD;
    float acc[ROWS][NCOLS];
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < NCOLS; j++)
            acc[i][j] = 0.0f;

    const __global uchar *wrow[ROWS];
    for (int i = 0; i < ROWS; i++)
        wrow[i] = lane_row(w, w1, w_row_bytes, row0, i, m);

    /* A lane takes a whole unit (32 weights) at a time, so its scales are decoded once for 32
     * weights; lanes on neighbouring units read neighbouring quant bytes. (One run a lane, for
     * contiguous activation loads, measured 2-3x slower on an H200: doc/perf.md.) */
    int units = units_per_row(k);
    for (int g = lane; g < units; g += THREADS_PER_ROW) {
        unit_raw raw[ROWS]; /* all rows' loads issued before any is used */
        for (int i = 0; i < ROWS; i++)
            raw[i] = unit_load_row(wrow[i], g, k);
        for (int r = 0; r < 4; r++) {
            int pos = run_position(g, r);
            float8 xv[NCOLS];
            float xsum[NCOLS];
            for (int j = 0; j < NCOLS; j++) {
#if NORM
                xv[j] = xs_run(xs + j * XS_STRIDE(k), pos);
#else
                xv[j] = x_run_fast(x + (size_t)j * k, pos, k);
#endif
                xsum[j] = hsum8(xv[j]);
            }
            for (int i = 0; i < ROWS; i++) {
                float s, mo;
                float8 q = raw_run(&raw[i], r, &s, &mo);
                for (int j = 0; j < NCOLS; j++)
                    acc[i][j] += s * dot8(q, xv[j]) - mo * xsum[j];
            }
        }
    }

    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < NCOLS; j++)
            partial[i * NCOLS + j][lid] = acc[i][j];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = THREADS_PER_ROW / 2; stride > 0; stride >>= 1) {
        if (lane < stride)
            for (int s = 0; s < ROWS * NCOLS; s++)
                partial[s][lid] += partial[s][lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#define ROW_SUM(i, j) partial[(i) * NCOLS + (j)][lid]
    if (lane == 0)
        for (int i = 0; i < ROWS_PER_THREAD; i++)
            if (row0 + i < m)
                for (int j = 0; j < NCOLS; j++)
                    y[(size_t)j * m + row0 + i] = LANE_RESULT(ROW_SUM, i, j);
#undef ROW_SUM
}
#endif
