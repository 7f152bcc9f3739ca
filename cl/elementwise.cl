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

#define GELU_SQRT_2_OVER_PI 0.79788456080286535588f
#define GELU_COEF 0.044715f

static float silu(float x) { return x / (1.0f + exp(-x)); }

static float gelu(float x)
{
    return 0.5f * x * (1.0f + tanh(GELU_SQRT_2_OVER_PI * x * (1.0f + GELU_COEF * x * x)));
}

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

/* A work-group a row: y = x / sqrt(mean(x^2) + eps), times w (one value a column) when has_w.
 * The squares are summed in each item's stride, then in a tree. */
__kernel __attribute__((reqd_work_group_size(OP_WG, 1, 1)))
void rms_norm_f32(__global const float *x, __global const float *w, __global float *y, ulong cols, float eps,
                  int has_w)
{
    __local float sums[OP_WG];
    size_t lid = get_local_id(0);
    __global const float *xr = x + get_group_id(0) * cols;
    __global float *yr = y + get_group_id(0) * cols;
    float s = 0.0f;
    for (ulong c = lid; c < cols; c += OP_WG)
        s = fma(xr[c], xr[c], s);
    sums[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t step = OP_WG / 2; step > 0; step >>= 1) {
        if (lid < step)
            sums[lid] += sums[lid + step];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float scale = 1.0f / sqrt(sums[0] / (float)cols + eps);
    for (ulong c = lid; c < cols; c += OP_WG)
        yr[c] = has_w ? xr[c] * scale * w[c] : xr[c] * scale;
}
