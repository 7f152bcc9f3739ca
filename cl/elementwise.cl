/*
 * elementwise.cl -- the element-wise and row-wise operations of a transformer layer, on f32 rows
 * (lib/ops/layer.c): a binary operation with a broadcast operand, scale and bias, the unary
 * activations, the gated ones, and RMS normalisation with its weight. Each kernel walks its
 * elements in a grid-stride loop with 64-bit indices (a tensor may hold more than 2^31 values),
 * so the host launches as many work-items as fill the device.
 *
 * The activations follow the definitions include/kqcl.h states, in f32: SiLU x / (1 + e^-x),
 * GELU's tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as ggml's CPU backend
 * computes them; exp and tanh are OpenCL's (a few ulp).
 */

#ifndef OP_WG
#define OP_WG 256 /* items a work-group of rms_norm (the host passes the device's), a power of two */
#endif
#if (OP_WG & (OP_WG - 1)) != 0
#error "OP_WG must be a power of two (rms_norm's sums are a tree)"
#endif

/* include/kqcl.h's kqcl_binary_op, kqcl_unary_op and kqcl_glu_op */
#define BIN_ADD 0
#define BIN_SUB 1
#define BIN_MUL 2
#define BIN_DIV 3
#define UN_SILU 0
#define UN_GELU 1
#define UN_RELU 2
#define GLU_SWIGLU 0
#define GLU_GEGLU 1

static float binary(int op, float a, float b)
{
    switch (op) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    default: return a / b;
    }
}

/* y = a (op) b over rows x cols; b has b_rows x b_cols values, b_rows dividing rows and b_cols
 * dividing cols: element (r, c) takes b's (r % b_rows, c % b_cols). */
__kernel void binary_f32(__global const float *a, __global const float *b, __global float *y, ulong rows, ulong cols,
                         ulong b_rows, ulong b_cols, int op)
{
    ulong n = rows * cols;
    bool same = b_rows == rows && b_cols == cols;
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) {
        ulong bi = i;
        if (!same) {
            ulong r = i / cols, c = i - r * cols;
            bi = (r % b_rows) * b_cols + c % b_cols;
        }
        y[i] = binary(op, a[i], b[bi]);
    }
}

/* y = x * scale + bias */
__kernel void scale_f32(__global const float *x, __global float *y, ulong n, float scale, float bias)
{
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0))
        y[i] = x[i] * scale + bias;
}

__kernel void unary_f32(__global const float *x, __global float *y, ulong n, int op)
{
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) {
        float v = x[i];
        y[i] = op == UN_SILU ? silu(v) : op == UN_GELU ? gelu(v) : fmax(v, 0.0f);
    }
}

/* y = act(gate) * up, element by element. */
__kernel void glu_f32(__global const float *gate, __global const float *up, __global float *y, ulong n, int op)
{
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) {
        float g = gate[i];
        y[i] = (op == GLU_SWIGLU ? silu(g) : gelu(g)) * up[i];
    }
}

/* A work-group a row: y = v / sqrt(mean(v^2) + eps), times w (one value a column) when has_w,
 * where v is x, or with has_r the residual sum x + r, which is also written to sum. The squares
 * are summed in each item's stride, then in a tree. Every value of a row is read (pass 1)
 * before the barrier and any y written after it, so y may be x, r or sum; an item reads back
 * only the sums it wrote itself. */
__kernel __attribute__((reqd_work_group_size(OP_WG, 1, 1)))
void rms_norm_f32(__global const float *x, __global const float *r, __global const float *w, __global float *sum,
                  __global float *y, ulong cols, float eps, int has_r, int has_w)
{
    __local float sums[OP_WG];
    size_t lid = get_local_id(0);
    ulong row = get_group_id(0) * cols;
    __global const float *xr = x + row;
    __global float *yr = y + row;
    float s = 0.0f;
    for (ulong c = lid; c < cols; c += OP_WG) {
        float v = xr[c];
        if (has_r) {
            v += r[row + c];
            sum[row + c] = v;
        }
        s = fma(v, v, s);
    }
    sums[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t step = OP_WG / 2; step > 0; step >>= 1) {
        if (lid < step)
            sums[lid] += sums[lid + step];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float scale = 1.0f / sqrt(sums[0] / (float)cols + eps);
    for (ulong c = lid; c < cols; c += OP_WG) {
        float v = has_r ? sum[row + c] : xr[c];
        yr[c] = has_w ? v * scale * w[c] : v * scale;
    }
}

/* Row scatter (writing a KV cache): row r of x (cols floats) into row idx[r] of y, stored as
 * dst_type (f32, f16 or bf16, rounded to nearest even as kqcl_convert does); idx int32 values,
 * or int64 with idx64, from element idx_offset on. A row whose index is outside [0, y_rows) is
 * not written (the host cannot check device-side indices without waiting for them). */
__kernel void set_rows_f32(__global const float *x, __global const void *idx, ulong idx_offset, int idx64,
                           __global void *y, ulong rows, ulong cols, ulong y_rows, int dst_type)
{
    ulong n = rows * cols;
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) {
        ulong r = i / cols, c = i - r * cols;
        long t = row_index(idx, idx_offset + r, idx64);
        if (t < 0 || (ulong)t >= y_rows)
            continue;
        store_as(y, (ulong)t * cols + c, x[i], dst_type);
    }
}

/* a / b correctly rounded on any device: OpenCL lets a single division be off by 2.5 ulp, so the
 * quotient is corrected once by its remainder, which fma gives exactly. */
static inline float div_rn(float a, float b)
{
    float q = a / b;
    return q + fma(-q, b, a) / b;
}

/* Row scatter into a q8_0 cache (llama.cpp's -ctk/-ctv q8_0): as set_rows_f32, an item a block
 * of 32 values, quantized as ggml's reference does it (d = max |x| / 127 stored as f16, q =
 * round(x / d) through the f32 1 / d, halves away from zero), so the bytes are kqcl_quantize's. */
__kernel void set_rows_q8_0(__global const float *x, __global const void *idx, ulong idx_offset, int idx64,
                            __global uchar *y, ulong rows, ulong cols, ulong y_rows)
{
    ulong blocks = cols / 32, n = rows * blocks;
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) {
        ulong r = i / blocks, b = i - r * blocks;
        long t = row_index(idx, idx_offset + r, idx64);
        if (t < 0 || (ulong)t >= y_rows)
            continue;
        __global const float *xb = x + r * cols + b * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = fmax(amax, fabs(xb[j]));
        float d = div_rn(amax, 127.0f), id = d != 0.0f ? div_rn(1.0f, d) : 0.0f;
        __global uchar *blk = y + ((ulong)t * blocks + b) * Q80_BYTES;
        *(__global ushort *)(blk + Q80_D) = float_to_half_bits(d);
        for (int j = 0; j < 32; j++) {
            float q = round(xb[j] * id);
            ((__global char *)(blk + Q80_QS))[j] = isnan(q) ? 0 : (char)clamp(q, -128.0f, 127.0f);
        }
    }
}

/* A work-group a row: y = softmax(x * scale + mask), the mask's row r % mask_rows (when
 * has_mask). exp(v - max) summed in f32; a row whose values are all -inf gives NaN. */
__kernel __attribute__((reqd_work_group_size(OP_WG, 1, 1)))
void softmax_f32(__global const float *x, __global const float *mask, __global float *y, ulong cols, ulong mask_rows,
                 float scale, int has_mask)
{
    __local float red[OP_WG];
    size_t lid = get_local_id(0);
    ulong row = get_group_id(0);
    __global const float *xr = x + row * cols;
    __global const float *mr = mask + (has_mask ? (row % mask_rows) * cols : 0);
    __global float *yr = y + row * cols;
    float m = -INFINITY;
    for (ulong c = lid; c < cols; c += OP_WG)
        m = fmax(m, xr[c] * scale + (has_mask ? mr[c] : 0.0f));
    m = group_reduce(red, m, true, OP_WG);
    float s = 0.0f;
    for (ulong c = lid; c < cols; c += OP_WG) {
        float e = exp(xr[c] * scale + (has_mask ? mr[c] : 0.0f) - m);
        yr[c] = e;
        s += e;
    }
    float inv = 1.0f / group_reduce(red, s, false, OP_WG);
    for (ulong c = lid; c < cols; c += OP_WG)
        yr[c] *= inv;
}

/* One job's arguments (kqcl_rope_job): its rows, where they go, whether they turn, their norm's
 * weight, eps and whether they have one, and the scale of what is written. */
#define ROPE_JOB_ARGS(j)                                                                                               \
    __global const float *x##j, __global void *y##j, ulong rows##j, ulong cols##j, ulong heads##j, int n_dims##j,      \
        int scatter##j, __global const void *idx##j, ulong idx_offset##j, int idx64##j, ulong y_rows##j,                \
        int dst_type##j, __global const float *nw##j, float eps##j, int normed##j, float oscale##j
#define ROPE_JOB_PAIR(j, i, inv)                                                                                       \
    rope_pair(i, x##j, nw##j, inv, normed##j, oscale##j, y##j, cols##j, heads##j, n_dims##j, scatter##j, idx##j,    \
              idx_offset##j, idx64##j, y_rows##j, dst_type##j, pos, pos_offset, neox, theta_scale, freq_scale,         \
              ext_factor, attn_factor, corr_low, corr_high)
/* Row r of a job: its pairs, its norm found once (a CPU's kernels). */
#define ROPE_JOB_ROW(j, r)                                                                                             \
    do {                                                                                                               \
        float inv_ = pair_inv_rms((r) * (cols##j / 2), x##j, cols##j, eps##j, normed##j);                              \
        for (ulong p_ = 0; p_ < cols##j / 2; p_++)                                                                     \
            ROPE_JOB_PAIR(j, (r) * (cols##j / 2) + p_, inv_);                                                          \
    } while (0)

/* Up to three jobs of one rope setting in one launch (kqcl_rope_jobs: a step's query, key and
 * value), the jobs' rows one after another; a job with no rows takes none. GPUs: an item a pair
 * (a normed row's norm found by each of its pairs); CPUs (KQ_CPU): an item a row, its norm found
 * once. */
__kernel void rope_f32(__global const int *pos, ulong pos_offset, int neox, float theta_scale, float freq_scale,
                       float ext_factor, float attn_factor, float corr_low, float corr_high, ROPE_JOB_ARGS(0),
                       ROPE_JOB_ARGS(1), ROPE_JOB_ARGS(2))
{
#ifdef KQ_CPU
    ulong n0 = rows0, n1 = n0 + rows1, n = n1 + rows2;
    for (ulong r = get_global_id(0); r < n; r += get_global_size(0)) {
        if (r < n0)
            ROPE_JOB_ROW(0, r);
        else if (r < n1)
            ROPE_JOB_ROW(1, r - n0);
        else
            ROPE_JOB_ROW(2, r - n1);
    }
#else
    ulong n0 = rows0 * (cols0 / 2), n1 = n0 + rows1 * (cols1 / 2), n = n1 + rows2 * (cols2 / 2);
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) {
        if (i < n0)
            ROPE_JOB_PAIR(0, i, pair_inv_rms(i, x0, cols0, eps0, normed0));
        else if (i < n1)
            ROPE_JOB_PAIR(1, i - n0, pair_inv_rms(i - n0, x1, cols1, eps1, normed1));
        else
            ROPE_JOB_PAIR(2, i - n1, pair_inv_rms(i - n1, x2, cols2, eps2, normed2));
    }
#endif
}
