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
