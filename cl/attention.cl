/*
 * attention.cl -- attention of query rows over a KV cache (lib/ops/attention.c): the scores
 * q . k^T of every query, head and cache position (scaled, soft-capped, masked) in one pass,
 * then -- after elementwise.cl's softmax of each score row -- the weighted sums of the value
 * rows. Grouped-query heads: query head h reads KV head h / (heads / kv_heads). The cache is
 * KVTYPE (f16 or f32) rows of d (keys) and dv (values) values, a position's and a KV head's row at
 * pos * kv_pos_stride + head * kv_head_stride; queries are f32 rows, query i's head h at
 * i * q_query_stride + h * q_head_stride. Sums in f32 with fma; 64-bit indices, grid-striding.
 */

#ifndef KVTYPE
#define KVTYPE TYPE_F16
#endif
#if KVTYPE != TYPE_F16 && KVTYPE != TYPE_F32
#error "KVTYPE must be f16 or f32"
#endif

static float kv_value(__global const void *base, ulong i)
{
#if KVTYPE == TYPE_F16
    return vload_half(i, (__global const half *)base);
#else
    return ((__global const float *)base)[i];
#endif
}

/* mask_type: 0 none, 1 f32, 2 f16 rows of mask_cols values, query i's row i. */
__kernel void attn_scores(__global const float *q, __global const void *k, __global const void *mask, __global float *s,
                          ulong queries, ulong heads, ulong group, ulong kv_len, ulong d, ulong q_query_stride,
                          ulong q_head_stride, ulong kv_pos_stride, ulong kv_head_stride, float scale, float softcap,
                          int mask_type, ulong mask_cols)
{
    ulong n = queries * heads * kv_len;
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) {
        ulong j = i % kv_len, row = i / kv_len; /* row = query * heads + head */
        ulong h = row % heads, qi = row / heads;
        __global const float *qr = q + (qi * q_query_stride + h * q_head_stride) * d;
        ulong kr = (j * kv_pos_stride + (h / group) * kv_head_stride) * d;
        float dot = 0.0f;
        for (ulong c = 0; c < d; c++)
            dot = fma(qr[c], kv_value(k, kr + c), dot);
        float v = dot * scale;
        if (softcap != 0.0f)
            v = softcap * tanh(v / softcap);
        if (mask_type == 1)
            v += ((__global const float *)mask)[qi * mask_cols + j];
        else if (mask_type == 2)
            v += vload_half(qi * mask_cols + j, (__global const half *)mask);
        s[i] = v;
    }
}

/* y[row][c] = sum over j of p[row][j] * v[j's row][c], row = query * heads + head. */
__kernel void attn_values(__global const float *p, __global const void *v, __global float *y, ulong queries,
                          ulong heads, ulong group, ulong kv_len, ulong dv, ulong kv_pos_stride, ulong kv_head_stride)
{
    ulong n = queries * heads * dv;
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) {
        ulong c = i % dv, row = i / dv, h = row % heads;
        __global const float *pr = p + row * kv_len;
        ulong base = (h / group) * kv_head_stride * dv + c;
        float sum = 0.0f;
        for (ulong j = 0; j < kv_len; j++)
            sum = fma(pr[j], kv_value(v, base + j * kv_pos_stride * dv), sum);
        y[i] = sum;
    }
}
