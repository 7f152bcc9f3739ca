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

#define THREADS_M (TILE_M / WPT_M)
#define THREADS_N (TILE_N / WPT_N)
#define WG_SIZE (THREADS_M * THREADS_N)
#define KSTEP (32 * KUNITS)

/* Dequantize units g0 .. g0+KUNITS-1 of the tile's W rows into Wl (zeros past m): one
 * work-item a (row, unit), so each unit's bytes are loaded once. */
inline void w_tile_to_local(__local float *Wl, const __global uchar *w, ulong w_row_bytes, int m0, int m,
                            int g0, int units, int k, int lid)
{
    for (int t = lid; t < TILE_M * KUNITS; t += WG_SIZE) {
        int row = t % TILE_M, ku = t / TILE_M; /* neighbouring items: neighbouring rows */
        int g = g0 + ku;
        bool live = m0 + row < m && g < units;
        unit_raw raw;
        if (live)
            raw = unit_load_row(w + (size_t)(m0 + row) * w_row_bytes, g, k);
        for (int r = 0; r < 4; r++) {
            float s = 0.0f, mo = 0.0f;
            float8 v = live ? raw_run(&raw, r, &s, &mo) : (float8)0.0f;
            v = v * s - mo;
            __local float *dst = Wl + (32 * ku + 8 * r) * TILE_M + row;
            dst[0 * TILE_M] = v.s0; dst[1 * TILE_M] = v.s1; dst[2 * TILE_M] = v.s2; dst[3 * TILE_M] = v.s3;
            dst[4 * TILE_M] = v.s4; dst[5 * TILE_M] = v.s5; dst[6 * TILE_M] = v.s6; dst[7 * TILE_M] = v.s7;
        }
    }
}

/* The activations at the same positions for the tile's X rows (zeros past n). */
inline void x_tile_to_local(__local float *Xl, const __global XT *x, int n0, int n, int g0, int units, int k,
                            int lid)
{
    for (int t = lid; t < TILE_N * 4 * KUNITS; t += WG_SIZE) {
        int row = t % TILE_N, run = t / TILE_N;
        int g = g0 + run / 4, r = run % 4;
        float8 v = (float8)0.0f;
        if (n0 + row < n && g < units)
            v = x_run_fast(x + (size_t)(n0 + row) * k, run_position(g, r), k);
        __local float *dst = Xl + (8 * run) * TILE_N + row;
        dst[0 * TILE_N] = v.s0; dst[1 * TILE_N] = v.s1; dst[2 * TILE_N] = v.s2; dst[3 * TILE_N] = v.s3;
        dst[4 * TILE_N] = v.s4; dst[5 * TILE_N] = v.s5; dst[6 * TILE_N] = v.s6; dst[7 * TILE_N] = v.s7;
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
    for (int g0 = 0; g0 < units; g0 += KUNITS) {
        w_tile_to_local(Wl, w, w_row_bytes, m0, m, g0, units, k, lid);
        x_tile_to_local(Xl, x, n0, n, g0, units, k, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
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
