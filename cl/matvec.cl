/*
 * matvec.cl -- the fused matrix-vector kernel for decode: Y (n x m) = X (n x k) . W^T with
 * n <= NCOLS (8). Bandwidth bound: every weight byte is read once, dequantized in registers
 * and used for all n activation rows.
 *
 *   work-group (ROWS_PER_WG * THREADS_PER_ROW items)
 *   +--------------------------------------------------+
 *   | row r0   : lanes 0..T-1 take units 0,T,2T,...     |  each lane: 32 weights a unit,
 *   | row r0+1 : lanes 0..T-1                           |  8 at a time (a run), dotted with
 *   | ...                                               |  the n activation rows
 *   +--------------------------------------------------+
 *   then a tree in local memory sums the T lanes of each row, for each of the n columns.
 *
 * Tunables: THREADS_PER_ROW (power of two), ROWS_PER_WG, NCOLS (max n compiled in).
 */
#ifndef THREADS_PER_ROW
#define THREADS_PER_ROW 32
#endif
#ifndef ROWS_PER_WG
#define ROWS_PER_WG 4
#endif
#ifndef NCOLS
#define NCOLS 8
#endif

#define WG_SIZE (THREADS_PER_ROW * ROWS_PER_WG)

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void matvec(const __global uchar *w, ulong w_row_bytes, const __global XT *x,
            __global float *y, int m, int k, int n)
{
    __local float partial[NCOLS][WG_SIZE];
    int lid = get_local_id(0);
    int lane = lid % THREADS_PER_ROW;
    int row = get_group_id(0) * ROWS_PER_WG + lid / THREADS_PER_ROW;
    float acc[NCOLS];
    for (int j = 0; j < NCOLS; j++)
        acc[j] = 0.0f;

    if (row < m) {
        const __global uchar *wrow = w + (size_t)row * w_row_bytes;
        int units = units_per_row(k);
        for (int g = lane; g < units; g += THREADS_PER_ROW) {
            for (int r = 0; r < 4; r++) {
                int pos = run_position(g, r);
                float8 wv = weight_run(wrow, g, r, k);
                for (int j = 0; j < NCOLS; j++)
                    if (j < n)
                        acc[j] += dot8(wv, x_run(x + (size_t)j * k, pos, k));
            }
        }
    }

    for (int j = 0; j < NCOLS; j++)
        partial[j][lid] = acc[j];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = THREADS_PER_ROW / 2; stride > 0; stride >>= 1) {
        if (lane < stride)
            for (int j = 0; j < NCOLS; j++)
                partial[j][lid] += partial[j][lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lane == 0 && row < m)
        for (int j = 0; j < NCOLS; j++)
            if (j < n)
                y[(size_t)j * m + row] = partial[j][lid];
}
