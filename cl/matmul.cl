/*
 * matmul.cl -- the fused tiled kernel for prefill: Y (n x m) = X (n x k) . W^T, any n.
 * Each work-group computes a TILE_M x TILE_N block of Y^T; per step of 32 values of k (one
 * unit) it dequantizes the W tile and loads the X tile into local memory, then each work-item
 * accumulates WPT_M x WPT_N outputs in registers.
 *
 *            k (32 a step) ->                       TILE_N rows of X
 *   W tile  +-------------+ TILE_M     X tile  +-------------+ TILE_N
 *   local:  Wl[32][TILE_M]                      Xl[32][TILE_N]
 *
 *   work-item (tm, tn) owns rows tm + i*THREADS_M, columns tn + j*THREADS_N (strided, so the
 *   local reads of neighbouring items fall in different banks and the Y writes coalesce).
 *
 * Tunables: TILE_M, TILE_N (multiples of WPT_M, WPT_N), WPT_M, WPT_N.
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

#define THREADS_M (TILE_M / WPT_M)
#define THREADS_N (TILE_N / WPT_N)
#define WG_SIZE (THREADS_M * THREADS_N)
#define PAD 1

/* Dequantize the W tile's unit g into Wl: TILE_M rows x 4 runs of 8. */
inline void w_tile_to_local(__local float (*Wl)[TILE_M + PAD], const __global uchar *w,
                            ulong w_row_bytes, int m0, int m, int g, int k, int lid)
{
    for (int t = lid; t < TILE_M * 4; t += WG_SIZE) {
        int row = t >> 2, r = t & 3;
        float8 v = (float8)0.0f;
        if (m0 + row < m)
            v = weight_run(w + (size_t)(m0 + row) * w_row_bytes, g, r, k);
        float vals[8];
        vstore8(v, 0, vals);
        for (int i = 0; i < 8; i++)
            Wl[8 * r + i][row] = vals[i];
    }
}

/* Load the activations at unit g's positions for TILE_N rows of X into Xl. */
inline void x_tile_to_local(__local float (*Xl)[TILE_N + PAD], const __global XT *x, int n0,
                            int n, int g, int k, int lid)
{
    for (int t = lid; t < TILE_N * 4; t += WG_SIZE) {
        int row = t >> 2, r = t & 3;
        float8 v = (float8)0.0f;
        if (n0 + row < n)
            v = x_run(x + (size_t)(n0 + row) * k, run_position(g, r), k);
        float vals[8];
        vstore8(v, 0, vals);
        for (int i = 0; i < 8; i++)
            Xl[8 * r + i][row] = vals[i];
    }
}

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void matmul_tiled(const __global uchar *w, ulong w_row_bytes, const __global XT *x,
                  __global float *y, int m, int k, int n)
{
    __local float Wl[32][TILE_M + PAD];
    __local float Xl[32][TILE_N + PAD];
    int lid = get_local_id(0);
    int tm = lid % THREADS_M, tn = lid / THREADS_M;
    int m0 = get_group_id(0) * TILE_M, n0 = get_group_id(1) * TILE_N;

    float acc[WPT_M][WPT_N];
    for (int i = 0; i < WPT_M; i++)
        for (int j = 0; j < WPT_N; j++)
            acc[i][j] = 0.0f;

    int units = units_per_row(k);
    for (int g = 0; g < units; g++) {
        w_tile_to_local(Wl, w, w_row_bytes, m0, m, g, k, lid);
        x_tile_to_local(Xl, x, n0, n, g, k, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < 32; kk++) {
            float wr[WPT_M], xr[WPT_N];
            for (int i = 0; i < WPT_M; i++)
                wr[i] = Wl[kk][tm + i * THREADS_M];
            for (int j = 0; j < WPT_N; j++)
                xr[j] = Xl[kk][tn + j * THREADS_N];
            for (int i = 0; i < WPT_M; i++)
                for (int j = 0; j < WPT_N; j++)
                    acc[i][j] = mad(wr[i], xr[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (int j = 0; j < WPT_N; j++) {
        int col = n0 + tn + j * THREADS_N;
        if (col >= n)
            continue;
        for (int i = 0; i < WPT_M; i++) {
            int row = m0 + tm + i * THREADS_M;
            if (row < m)
                y[(size_t)col * m + row] = acc[i][j];
        }
    }
}
