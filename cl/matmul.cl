/*
 * matmul.cl -- the fused tiled kernel for prefill: Y (n x m) = X (n x k) . W^T, any n.
 * Each work-group computes a TILE_M x TILE_N block of Y^T. Per step of KUNITS units of k (32
 * values each) it dequantizes the W tile and loads the X tile into local memory; then each
 * work-item accumulates WPT_M x WPT_N outputs in registers.
 *
 *            k (32*KUNITS a step) ->
 *   W tile  +----------------+ TILE_M        Wl[32*KUNITS][TILE_M]   (k-major, so a work-item
 *   X tile  +----------------+ TILE_N        Xl[32*KUNITS][TILE_N]    reads float4s along m/n)
 *
 *   work-item (tm, tn) owns rows { q*4*THREADS_M + 4*tm + 0..3 : q < WPT_M/4 } of the tile and
 *   likewise columns: groups of 4 consecutive values, neighbouring items on neighbouring
 *   float4s, so local reads are conflict-free and each is one vector load.
 *
 * The next step's W units and X runs are loaded into registers before the current step's FMAs,
 * so global latency hides behind arithmetic; they go to local memory after the step.
 *
 * Tunables: TILE_M, TILE_N, WPT_M, WPT_N (multiples of 4, TILE = THREADS * WPT), KUNITS.
 */
#ifndef TILE_M
#define TILE_M 64
#endif
#ifndef TILE_N
#define TILE_N 64
#endif
#ifndef WPT_M
#define WPT_M 4
#endif
#ifndef WPT_N
#define WPT_N 4
#endif
#ifndef KUNITS
#define KUNITS 1
#endif

#if defined(KQ_CPU) && W_IS_QUANT
/* ---- CPUs (PoCL), set by the host with -DKQ_CPU --------------------------------------------
 * A register-blocked GEMM in the BLIS manner, one work-item a work-group (no work-item loop).
 * A work-item owns TILE_M weight rows x TILE_N activation rows of Y^T and walks k in panels of
 * KC values:
 *   1. dequantize its TILE_M x KC weights once into a k-major panel Wp[kk][TILE_M] (local
 *      memory: one work-group a thread, so it is the thread's own L1-resident scratch);
 *   2. for each strip of WPT_N activation rows, copy the strip's KC values into a contiguous
 *      panel (activation rows are k floats apart, often a multiple of 4 KiB: the same L1 set)
 *      and run the micro-kernel: WPT_M rows (WPT_M/16 float16) x WPT_N columns of
 *      accumulators, per kk one vector load of Wp per 16 rows and one broadcast per column;
 *   3. add the accumulators into y (rows are consecutive in y, so 16 at a time).
 * The k-quants and the small blocks (q4_0, q4_1, q5_0, q5_1, q8_0) both take this form.
 * Tunables (host: KQCL_MATMUL=TILE_M,TILE_N,WPT_M,WPT_N,KUNITS): TILE_M a multiple of WPT_M,
 * WPT_M a multiple of 16, KC = 32*KUNITS a multiple of 16 that divides 256 or is a multiple
 * of 256. */
#ifndef PANEL_M /* weight rows dequantized at a time (TILE_M is a multiple of it) */
#define PANEL_M (TILE_M < 64 ? TILE_M : 64)
#endif
#if WPT_M % 16 != 0 || PANEL_M % WPT_M != 0 || TILE_M % PANEL_M != 0
#error "CPU matmul: WPT_M must be a multiple of 16 dividing PANEL_M, which divides TILE_M"
#endif
#if KUNITS < 1 || (256 % (32 * KUNITS) != 0 && (32 * KUNITS) % 256 != 0)
#error "CPU matmul: 32 * KUNITS must divide 256 or be a multiple of it"
#endif
#define KC (32 * KUNITS)
#define MV (WPT_M / 16)

/* Group values v (16 consecutive k) of row r into the k-major panel from k offset kb. */
static inline void panel_store(__local float *Wp, int kb, int r, float16 v)
{
    float vs[16];
    vstore16(v, 0, vs);
    __local float *dst = Wp + (size_t)kb * PANEL_M + r;
#pragma unroll
    for (int e = 0; e < 16; e++)
        dst[e * PANEL_M] = vs[e];
}

/* Dequantize weights [k0, k0+kc) of rows row0 .. row0+PANEL_M-1 into Wp[kk*PANEL_M + r]; kc is
 * KC but in a small-block row's last panel (k a multiple of 32 only). */
static inline void dequant_panel(__local float *Wp, const __global uchar *w, ulong w_row_bytes, int row0, int m, int k0,
                                 int kc)
{
    for (int r = 0; r < PANEL_M; r++) {
        const __global uchar *wrow = w + (size_t)min(row0 + r, m - 1) * w_row_bytes;
#if W_IS_KQUANT
        for (int kb = 0; kb < KC; kb += QK_K) {
            int kg = k0 + kb;
            const __global uchar *blk = wrow + (size_t)(kg / QK_K) * BLOCK_BYTES;
            blk_scales sc;
            blk_prep(blk, &sc);
            int t0 = (kg % QK_K) / 16;
#pragma unroll
            for (int tt = 0; tt < (KC < QK_K ? KC : QK_K) / 16; tt++) {
                int t = t0 + tt;
                panel_store(Wp, kb + 16 * tt, r, fma(blk_group(blk, t), (float16)sc.s[t], (float16)(-sc.mo[t])));
            }
        }
#else /* the small blocks: 32 values, two groups of 16 under one scale and offset */
        for (int kb = 0; kb < kc; kb += BLOCK_VALUES) {
            const __global uchar *blk = wrow + (size_t)((k0 + kb) / BLOCK_VALUES) * BLOCK_BYTES;
            float2 dm = half2_bits_to_float2(small_block_halves(blk));
            float16 s = (float16)dm.x, mo = (float16)small_block_offset(dm.x, dm.y);
            panel_store(Wp, kb, r, fma(blk_group(blk, 0), s, -mo));
            panel_store(Wp, kb + 16, r, fma(blk_group(blk, 1), s, -mo));
        }
#endif
    }
}

#define STRIPS ((TILE_N + WPT_N - 1) / WPT_N)

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void matmul_tiled(const __global uchar *restrict w, ulong w_row_bytes, const __global XT *restrict x,
                  __global float *restrict y, int m, int k, int n)
{
    __local float16 Wp16[KC * PANEL_M / 16];
    __local float16 Xp16[KC * STRIPS * WPT_N / 16];
    __local float *Wp = (__local float *)Wp16;
    __local float *Xp = (__local float *)Xp16;
    int row0 = get_group_id(0) * TILE_M, col0 = get_group_id(1) * TILE_N;
    int row_end = min(row0 + TILE_M, m), col_end = min(col0 + TILE_N, n);
    int strips = (col_end - col0 + WPT_N - 1) / WPT_N;
    for (int k0 = 0; k0 < k; k0 += KC) {
        int kc = min(KC, k - k0);
        /* the panel's activations, contiguous and converted to float: Xp[c*KC + kk] for the
         * tile's columns c (padded to whole strips with the last column) */
        for (int c = 0; c < strips * WPT_N; c++) {
            const __global XT *xr = x + (size_t)min(col0 + c, n - 1) * k + k0;
#ifndef KQ_NO_XPREFETCH
            if (k0 + KC < k) /* bytes, since prefetch() takes no half pointer without cl_khr_fp16 */
                prefetch((const __global uchar *)(xr + KC), KC * sizeof(XT));
#endif
            for (int kk = 0; kk < kc; kk += 16)
                vstore16(x_load16(xr, (ulong)kk), 0, Xp + c * KC + kk);
        }
        for (int p0 = row0; p0 < row_end; p0 += PANEL_M) {
            dequant_panel(Wp, w, w_row_bytes, p0, m, k0, kc);
            for (int s = 0; s < strips; s++) {
                int c0 = col0 + s * WPT_N;
                const __local float *xs0 = Xp + s * WPT_N * KC;
                for (int mt = 0; mt < PANEL_M; mt += WPT_M) {
                    float16 acc[WPT_N][MV];
#pragma unroll
                    for (int j = 0; j < WPT_N; j++)
#pragma unroll
                        for (int v = 0; v < MV; v++)
                            acc[j][v] = (float16)0.0f;
                    for (int kk = 0; kk < kc; kk++) {
                        float16 wv[MV];
#pragma unroll
                        for (int v = 0; v < MV; v++)
                            wv[v] = Wp16[(kk * PANEL_M + mt) / 16 + v];
#pragma unroll
                        for (int j = 0; j < WPT_N; j++) {
                            float xs = xs0[j * KC + kk];
#pragma unroll
                            for (int v = 0; v < MV; v++)
                                acc[j][v] = fma(wv[v], (float16)xs, acc[j][v]);
                        }
                    }
                    int r = p0 + mt;
                    if (r >= m)
                        break;
#pragma unroll
                    for (int j = 0; j < WPT_N; j++) {
                        if (c0 + j >= col_end) /* not n: the next tile owns those columns */
                            break;
                        __global float *yp = y + (size_t)(c0 + j) * m + r;
                        if (r + WPT_M <= m) {
#pragma unroll
                            for (int v = 0; v < MV; v++) {
                                float16 a = acc[j][v];
                                if (k0 > 0)
                                    a += vload16(v, yp);
                                vstore16(a, v, yp);
                            }
                        } else {
                            float as[WPT_M];
#pragma unroll
                            for (int v = 0; v < MV; v++)
                                vstore16(acc[j][v], v, as);
                            for (int i = 0; i < WPT_M && r + i < m; i++)
                                yp[i] = k0 > 0 ? yp[i] + as[i] : as[i];
                        }
                    }
                }
            }
        }
    }
}

#else /* GPUs, and float weights everywhere */

#if WPT_M % 4 != 0 || WPT_N % 4 != 0 || WPT_M < 4 || WPT_N < 4 || TILE_M % WPT_M != 0 || TILE_N % WPT_N != 0 || KUNITS < 1
#error "tiled matmul: WPT_M and WPT_N multiples of 4 (float4 groups), TILE_M and TILE_N multiples of them, KUNITS >= 1"
#endif

#define THREADS_M (TILE_M / WPT_M)
#define THREADS_N (TILE_N / WPT_N)
#define WG_SIZE (THREADS_M * THREADS_N)
#define KSTEP (32 * KUNITS)

#define W_TASKS ((TILE_M * KUNITS + WG_SIZE - 1) / WG_SIZE)     /* (row, unit) a work-item */
#define X_TASKS ((TILE_N * 4 * KUNITS + WG_SIZE - 1) / WG_SIZE) /* (row, run) a work-item */

/* The next step's tile data, held in registers while the current step computes (software
 * pipelining: the global loads are in flight during the FMAs). */
typedef struct tile_prefetch {
    unit_raw w[W_TASKS];
    bool w_live[W_TASKS];
    float8 x[X_TASKS];
} tile_prefetch;

static inline void prefetch_tiles(tile_prefetch *pf, const __global uchar *w, ulong w_row_bytes, const __global XT *x,
                           int m0, int m, int n0, int n, int g0, int units, int k, int lid)
{
    for (int i = 0; i < W_TASKS; i++) {
        int t = lid + i * WG_SIZE, row = t % TILE_M, g = g0 + t / TILE_M;
        pf->w_live[i] = t < TILE_M * KUNITS && m0 + row < m && g < units;
        if (pf->w_live[i])
            pf->w[i] = unit_load_row(w + (size_t)(m0 + row) * w_row_bytes, g, k);
    }
    for (int i = 0; i < X_TASKS; i++) {
        int t = lid + i * WG_SIZE, row = t % TILE_N, run = t / TILE_N;
        int g = g0 + run / 4;
        bool live = t < TILE_N * 4 * KUNITS && n0 + row < n && g < units;
        pf->x[i] = live ? x_run_fast(x + (size_t)(n0 + row) * k, run_position(g, run % 4), k) : (float8)0.0f;
    }
}

/* Write 8 values down a column of a k-major local tile. */
static inline void store_column8(__local float *dst, int stride, float8 v)
{
    dst[0 * stride] = v.s0; dst[1 * stride] = v.s1; dst[2 * stride] = v.s2; dst[3 * stride] = v.s3;
    dst[4 * stride] = v.s4; dst[5 * stride] = v.s5; dst[6 * stride] = v.s6; dst[7 * stride] = v.s7;
}

/* Dequantize the prefetched W units and store them and the X runs into the local tiles. */
static inline void tiles_to_local(const tile_prefetch *pf, __local float *Wl, __local float *Xl, int lid)
{
    for (int i = 0; i < W_TASKS; i++) {
        int t = lid + i * WG_SIZE, row = t % TILE_M, ku = t / TILE_M;
        if (t >= TILE_M * KUNITS)
            break;
        for (int r = 0; r < 4; r++) {
            float s = 0.0f, mo = 0.0f;
            float8 v = pf->w_live[i] ? raw_run(&pf->w[i], r, &s, &mo) : (float8)0.0f;
            store_column8(Wl + (32 * ku + 8 * r) * TILE_M + row, TILE_M, v * s - mo);
        }
    }
    for (int i = 0; i < X_TASKS; i++) {
        int t = lid + i * WG_SIZE, row = t % TILE_N, run = t / TILE_N;
        if (t < TILE_N * 4 * KUNITS)
            store_column8(Xl + (8 * run) * TILE_N + row, TILE_N, pf->x[i]);
    }
}

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void matmul_tiled(const __global uchar *w, ulong w_row_bytes, const __global XT *x,
                  __global float *y, int m, int k, int n)
{
    __local float Wl[KSTEP * TILE_M];
    __local float Xl[KSTEP * TILE_N];
    int lid = get_local_id(0);
    int tm = lid % THREADS_M, tn = lid / THREADS_M;
    int m0 = get_group_id(0) * TILE_M, n0 = get_group_id(1) * TILE_N;

    float4 acc[WPT_M][WPT_N / 4];
    for (int i = 0; i < WPT_M; i++)
        for (int j = 0; j < WPT_N / 4; j++)
            acc[i][j] = (float4)0.0f;

    int units = units_per_row(k);
    tile_prefetch pf;
    prefetch_tiles(&pf, w, w_row_bytes, x, m0, m, n0, n, 0, units, k, lid);
    for (int g0 = 0; g0 < units; g0 += KUNITS) {
        tiles_to_local(&pf, Wl, Xl, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (g0 + KUNITS < units)
            prefetch_tiles(&pf, w, w_row_bytes, x, m0, m, n0, n, g0 + KUNITS, units, k, lid);
        for (int kk = 0; kk < KSTEP; kk++) {
            float wr[WPT_M];
            float4 xr[WPT_N / 4];
            for (int q = 0; q < WPT_M / 4; q++)
                vstore4(vload4(0, Wl + kk * TILE_M + q * 4 * THREADS_M + 4 * tm), 0, wr + 4 * q);
            for (int q = 0; q < WPT_N / 4; q++)
                xr[q] = vload4(0, Xl + kk * TILE_N + q * 4 * THREADS_N + 4 * tn);
            for (int i = 0; i < WPT_M; i++)
                for (int q = 0; q < WPT_N / 4; q++)
                    acc[i][q] += wr[i] * xr[q];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (int q = 0; q < WPT_N / 4; q++) {
        float vals[4];
        for (int c = 0; c < 4; c++) {
            int col = n0 + q * 4 * THREADS_N + 4 * tn + c;
            if (col >= n)
                continue;
            for (int i = 0; i < WPT_M; i++) {
                int row = m0 + (i / 4) * 4 * THREADS_M + 4 * tm + (i % 4);
                vstore4(acc[i][q], 0, vals);
                if (row < m)
                    y[(size_t)col * m + row] = vals[c];
            }
        }
    }
}
#endif
