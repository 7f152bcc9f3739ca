/*
 * attention.cl -- attention of query rows over a KV cache in one pass (lib/ops/attention.c):
 * for each (query, head) row the scores q . k^T over the cache positions (scaled, soft-capped,
 * masked), their softmax and the weighted sum of the value rows, with the softmax taken online
 * (a running maximum m and sum l; when m grows, the sums so far are scaled by exp(m_old - m)),
 * so no score reaches global memory. Grouped-query heads: query head h reads KV head
 * h / (heads / kv_heads). The cache is KVTYPE (f16 or f32) rows of d (keys) and dv (values)
 * values, a position's and a KV head's row at pos * kv_pos_stride + head * kv_head_stride;
 * or q8_0 (llama.cpp's -ctk/-ctv q8_0): blocks of 32 values, d * q with d f16 and q int8, rows
 * of d and dv a multiple of 32, so element e of a row lies in its block e / 32;
 * queries are f32 rows, query i's head h at i * q_query_stride + h * q_head_stride; y's row
 * query * heads + head. A row that sees no position (every score -inf) gives zeros. Sums in f32.
 *
 * Two forms of one kernel, attn_fused:
 *   GPUs      a work-group a row; ATT_WG positions at a time, an item a position's score (its
 *             key read 8 values a load), then the weighted value rows: slices of ATT_VCOLS
 *             items, each a share of the positions, ATT_COLS passes of ATT_VCOLS columns
 *             (value rows read along the row, by neighbouring items); the slices' sums meet at
 *             the end. A decode step has only heads x queries rows, so the positions a row's
 *             items walk one after another are what its time is made of (53 us a call on an
 *             H100 with one 64-item slice, doc/perf.md run 31).
 *   CPUs (-DKQ_CPU)  a work-item a row, walking the positions one by one with 16-wide vectors
 *             along d and dv (PoCL runs a work-group as a loop: a tree across items would only
 *             cost); ATT_COLS 16-wide accumulators.
 * The GPU form has a second kernel, attn_roped: the same rows after a decode step's RoPE and
 * cache writes, each row's work-group doing first the share of them it then reads (step_share,
 * below). A CPU pays more for the share's repeated work (a KV head's rows by each of its query
 * heads) than for the launch it saves, so its form has none (lib/ops/attention.c).
 *
 * The cache is read from byte k_at of k and v_at of v: the host may hand a cache's whole buffer
 * with the view's offset rather than a sub-buffer of the view, since NVIDIA's driver (580) dies
 * when two sub-buffers of one buffer that overlap in part are in use together (the K cache's
 * rows just written through one, read through another: doc/reliability.md bug 7).
 *
 * mask_type: 0 none, 1 f32, 2 f16 rows of mask_cols values, query i's row i.
 * Options: KVTYPE, ATT_WG (GPUs: a power of two), ATT_VCOLS (GPUs: divides ATT_WG), ATT_COLS
 * (GPUs: ceil(dv / ATT_VCOLS); CPUs: ceil(dv / 16)).
 */

#ifndef KVTYPE
#define KVTYPE TYPE_F16
#endif
#if KVTYPE != TYPE_F16 && KVTYPE != TYPE_F32 && KVTYPE != TYPE_Q8_0
#error "KVTYPE must be f16, f32 or q8_0"
#endif
#ifndef ATT_WG
#define ATT_WG 64
#endif
#ifndef ATT_COLS
#define ATT_COLS 1
#endif
#if ATT_COLS < 1 || ATT_WG < 1 || (ATT_WG & (ATT_WG - 1)) != 0
#error "attention: ATT_WG a power of two, ATT_COLS >= 1"
#endif

/* The score of query row qr against key row kr (scaled, soft-capped, masked). */
static float masked_score(float dot, float scale, float softcap, int mask_type, __global const void *mask, ulong at)
{
    float v = dot * scale;
    if (softcap != 0.0f)
        v = softcap * tanh(v / softcap);
    if (mask_type == 1)
        v += ((__global const float *)mask)[at];
    else if (mask_type == 2)
        v += vload_half(at, (__global const half *)mask);
    return v;
}

#if KVTYPE == TYPE_Q8_0
/* Element i's q8_0 block (the cache's elements counted row after row, rows of whole blocks). */
static inline __global const uchar *q8_block(__global const void *base, ulong i)
{
    return (__global const uchar *)base + i / 32 * Q80_BYTES;
}
#endif

/* Cache element i as a float. */
static inline float kv_value(__global const void *base, ulong i)
{
#if KVTYPE == TYPE_F16
    return vload_half(i, (__global const half *)base);
#elif KVTYPE == TYPE_Q8_0
    __global const uchar *blk = q8_block(base, i);
    return vload_half(0, (__global const half *)(blk + Q80_D)) * (float)((__global const char *)(blk + Q80_QS))[i % 32];
#else
    return ((__global const float *)base)[i];
#endif
}

/* The attention's arguments past its operands q, k and v (lib/ops/attention.c sets them in this
 * order). */
#define ATTEND_REST                                                                                                    \
    __global const void *mask, __global float *y, ulong rows, ulong heads, ulong group, ulong kv_len, ulong d,         \
        ulong dv, ulong q_query_stride, ulong q_head_stride, ulong kv_pos_stride, ulong kv_head_stride, float scale,   \
        float softcap, int mask_type, ulong mask_cols
#define ATTEND_REST_PASS                                                                                               \
    mask, y, rows, heads, group, kv_len, d, dv, q_query_stride, q_head_stride, kv_pos_stride, kv_head_stride, scale,   \
        softcap, mask_type, mask_cols

#ifdef KQ_CPU

/* 16 cache values from element i on (i a multiple of 16), as floats; f16 by integer ops
 * (common.cl). */
static inline float16 kv_load16(__global const void *base, ulong i)
{
#if KVTYPE == TYPE_F16
    return half16_bits_to_float16(convert_uint16(vload16(0, (__global const ushort *)base + i)));
#elif KVTYPE == TYPE_Q8_0
    __global const uchar *blk = q8_block(base, i);
    float d = vload_half(0, (__global const half *)(blk + Q80_D));
    return d * convert_float16(vload16(0, (__global const char *)(blk + Q80_QS) + i % 32));
#else
    return vload16(0, (__global const float *)base + i);
#endif
}

/* Row `row` (query row / heads, head row % heads) of the attention, by one work-item. */
static void attend_row(ulong row, __global const float *q, __global const void *k, __global const void *v,
                       ATTEND_REST)
{
    ulong h = row % heads, qi = row / heads;
    __global const float *qr = q + (qi * q_query_stride + h * q_head_stride) * d;
    ulong d16 = d / 16 * 16, dv16 = dv / 16 * 16;
    float16 acc[ATT_COLS];
    for (int t = 0; t < ATT_COLS; t++)
        acc[t] = (float16)0.0f;
    float m = -INFINITY, l = 0.0f;
    for (ulong j = 0; j < kv_len; j++) {
        ulong kr = (j * kv_pos_stride + (h / group) * kv_head_stride) * d;
        float16 dot16 = (float16)0.0f;
        for (ulong c = 0; c < d16; c += 16)
            dot16 = fma(vload16(0, qr + c), kv_load16(k, kr + c), dot16);
        float dot = hsum8(dot16.lo + dot16.hi);
        for (ulong c = d16; c < d; c++)
            dot = fma(qr[c], kv_value(k, kr + c), dot);
        float s = masked_score(dot, scale, softcap, mask_type, mask, qi * mask_cols + j);
        if (s == -INFINITY)
            continue; /* weight 0 */
        if (s > m) { /* a new maximum: what was summed so far scales down */
            float a = exp(m - s);
            l *= a;
            for (int t = 0; t < ATT_COLS; t++)
                acc[t] *= a;
            m = s;
        }
        float e = exp(s - m);
        l += e;
        ulong vr = (j * kv_pos_stride + (h / group) * kv_head_stride) * dv;
        for (ulong c = 0; c < dv16; c += 16)
            acc[c / 16] = fma((float16)e, kv_load16(v, vr + c), acc[c / 16]);
        if (dv16 < dv) { /* the last, partial 16 columns (no array initialiser: a constant
                          * aggregate became a module variable that spirv-val refuses) */
            float tail[16];
            for (ulong t = 0; t < 16; t++)
                tail[t] = dv16 + t < dv ? kv_value(v, vr + dv16 + t) : 0.0f;
            acc[dv16 / 16] = fma((float16)e, vload16(0, tail), acc[dv16 / 16]);
        }
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    __global float *yr = y + row * dv;
    for (ulong c = 0; c < dv16; c += 16)
        vstore16(acc[c / 16] * inv, 0, yr + c);
    if (dv16 < dv) {
        float tail[16];
        vstore16(acc[dv16 / 16] * inv, 0, tail);
        for (ulong c = dv16; c < dv; c++)
            yr[c] = tail[c - dv16];
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void attn_fused(__global const float *q, __global const uchar *k, ulong k_at, __global const uchar *v, ulong v_at,
                ATTEND_REST)
{
    ulong row = get_global_id(0);
    if (row < rows)
        attend_row(row, q, k + k_at, v + v_at, ATTEND_REST_PASS);
}


#else /* GPUs */

/*
 * attn_roped's step (kqcl_rope_jobs_attention): one position's query turned into q's rows, its
 * key turned into the K cache and its value copied into the V cache, each job optional (turn
 * -1: none; 0: copied; else the values turned, rope_pair's n_dims), each normalised first where
 * its `normed` says (rope_pair's norm: q_nw, k_nw, v_nw) and scaled last by its oscale. The
 * caches are written
 * through the memory objects the attention reads them from -- kc and vc, the cache rows a
 * scatter writes (kv_heads rows side by side) from byte kc_at and vc_at, the attention's k and
 * v from k_at and v_at -- and the query through q, so no two memory objects of the launch alias
 * (OpenCL leaves overlapping sub-buffers in one launch undefined). The host takes this form only
 * where query head h's rows of the jobs' output are all that its row of the attention reads of
 * them: q's row h, and KV head h / group's part of the new cache row. Each work-group writes
 * those itself -- a KV head's part by each of its `group` query heads, the same bits each time
 * -- so it needs no other group's writes, and OpenCL promises nothing across groups within a
 * launch.
 */
#define STEP_ARGS                                                                                                      \
    __global const int *pos, ulong pos_offset, int neox, float theta_scale, float freq_scale, float ext_factor,        \
        float attn_factor, float corr_low, float corr_high, __global const float *qx, int q_turn,                      \
        __global const float *kx, int k_turn, __global uchar *kc, ulong kc_at, __global const void *k_idx,             \
        ulong k_idx_offset, int k_idx64, ulong k_cells, __global const float *vx, int v_turn, __global uchar *vc,       \
        ulong vc_at, __global const void *v_idx, ulong v_idx_offset, int v_idx64, ulong v_cells, __global float *q,     \
        ulong k_at, ulong v_at, __global const float *q_nw, float q_eps, int q_normed, float q_oscale,                 \
        __global const float *k_nw, float k_eps, int k_normed, float k_oscale, __global const float *v_nw,             \
        float v_eps, int v_normed, float v_oscale
#define STEP_PASS                                                                                                      \
    pos, pos_offset, neox, theta_scale, freq_scale, ext_factor, attn_factor, corr_low, corr_high, qx, q_turn, kx,      \
        k_turn, kc, kc_at, k_idx, k_idx_offset, k_idx64, k_cells, vx, v_turn, vc, vc_at, v_idx, v_idx_offset, v_idx64, \
        v_cells, q, k_at, v_at, q_nw, q_eps, q_normed, q_oscale, k_nw, k_eps, k_normed, k_oscale, v_nw, v_eps,        \
        v_normed, v_oscale

/* Query head h's share of the step, by `items` items from `first`: q's row h, and KV head g's
 * rows of the key and the value (pairs of rope_pair's numbering, row g of kv_heads a position),
 * the three jobs' pairs one index space, so that the items take them all at once (a decode
 * step's group has more items than pairs: one step of latency, not three). */
static void step_share(ulong h, ulong g, ulong first, ulong items, STEP_ARGS, ulong heads, ulong group, ulong d,
                       ulong dv)
{
    ulong kv_heads = heads / group;
    ulong n_q = q_turn >= 0 ? d / 2 : 0, n_k = k_turn >= 0 ? d / 2 : 0, n_v = v_turn >= 0 ? dv / 2 : 0;
    for (ulong i = first; i < n_q + n_k + n_v; i += items) {
        if (i < n_q) {
            ulong at = h * n_q + i;
            float inv = pair_inv_rms(at, qx, d, q_eps, q_normed);
            rope_pair(at, qx, q_nw, inv, q_normed, q_oscale, q, d, heads, q_turn, 0, qx, 0, 0, 0, TYPE_F32, pos,
                      pos_offset, neox, theta_scale, freq_scale, ext_factor, attn_factor, corr_low, corr_high);
        } else if (i < n_q + n_k) {
            ulong at = g * n_k + (i - n_q);
            float inv = pair_inv_rms(at, kx, d, k_eps, k_normed);
            rope_pair(at, kx, k_nw, inv, k_normed, k_oscale, kc + kc_at, d, kv_heads, k_turn, 1, k_idx, k_idx_offset,
                      k_idx64, k_cells, KVTYPE, pos, pos_offset, neox, theta_scale, freq_scale, ext_factor,
                      attn_factor, corr_low, corr_high);
        } else {
            ulong at = g * n_v + (i - n_q - n_k);
            float inv = pair_inv_rms(at, vx, dv, v_eps, v_normed);
            rope_pair(at, vx, v_nw, inv, v_normed, v_oscale, vc + vc_at, dv, kv_heads, v_turn, 1, v_idx, v_idx_offset,
                      v_idx64, v_cells, KVTYPE, pos, pos_offset, neox, theta_scale, freq_scale, ext_factor,
                      attn_factor, corr_low, corr_high);
        }
    }
}


/* 8 cache values from element i on (i a multiple of 8, within one q8_0 block), as floats: one
 * wide load where the type allows, so that a key's loads are in flight together. */
static inline float8 kv_load8(__global const void *base, ulong i)
{
#if KVTYPE == TYPE_F16
    return vload_half8(0, (__global const half *)base + i);
#elif KVTYPE == TYPE_Q8_0
    __global const uchar *blk = q8_block(base, i);
    float d = vload_half(0, (__global const half *)(blk + Q80_D));
    return d * convert_float8(vload8(0, (__global const char *)(blk + Q80_QS) + i % 32));
#else
    return vload8(0, (__global const float *)base + i);
#endif
}

/* q . k over d values (q f32, k a cache row from element kr). */
static float key_dot(__global const float *qr, __global const void *k, ulong kr, ulong d)
{
    float8 acc = (float8)0.0f;
    ulong c = 0;
    for (; c + 8 <= d; c += 8)
        acc = fma(vload8(0, qr + c), kv_load8(k, kr + c), acc);
    float dot = hsum8(acc);
    for (; c < d; c++)
        dot = fma(qr[c], kv_value(k, kr + c), dot);
    return dot;
}

/* The value columns a slice of ATT_VCOLS items covers; ATT_WG / ATT_VCOLS slices share the
 * positions of a block and are summed at the end. */
#ifndef ATT_VCOLS
#define ATT_VCOLS ATT_WG
#endif
#if ATT_VCOLS < 1 || ATT_WG % ATT_VCOLS != 0
#error "attention: ATT_VCOLS divides ATT_WG"
#endif
#define ATT_SLICES (ATT_WG / ATT_VCOLS)

/* One slice's share of a block's weighted value rows for column col: positions slice,
 * slice + ATT_SLICES, ... below n, four sums apart so that their loads overlap. */
static float value_share(__local const float *p, __global const void *v, ulong vr0, ulong vstep, ulong col, ulong n,
                         ulong slice)
{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    ulong jj = slice;
    for (; jj + 3 * ATT_SLICES < n; jj += 4 * ATT_SLICES) {
        s0 = fma(p[jj], kv_value(v, vr0 + jj * vstep + col), s0);
        s1 = fma(p[jj + ATT_SLICES], kv_value(v, vr0 + (jj + ATT_SLICES) * vstep + col), s1);
        s2 = fma(p[jj + 2 * ATT_SLICES], kv_value(v, vr0 + (jj + 2 * ATT_SLICES) * vstep + col), s2);
        s3 = fma(p[jj + 3 * ATT_SLICES], kv_value(v, vr0 + (jj + 3 * ATT_SLICES) * vstep + col), s3);
    }
    for (; jj < n; jj += ATT_SLICES)
        s0 = fma(p[jj], kv_value(v, vr0 + jj * vstep + col), s0);
    return (s0 + s1) + (s2 + s3);
}

/* A work-group a row. A block of ATT_WG positions at a time: an item a position's score (the
 * key's loads 8 wide), the block's maximum and sum across the group, then the weighted value
 * rows, each slice of ATT_VCOLS items a share of the positions for ATT_COLS passes over the dv
 * columns. An item's sums carry from block to block (a new maximum scales them all alike), and
 * the slices' sums meet once, at the end. */
static void attend_row(ulong row, __local float *red, __local float *p, __global const float *q,
                       __global const void *k, __global const void *v, ATTEND_REST)
{
    size_t lid = get_local_id(0);
    ulong col0 = lid % ATT_VCOLS, slice = lid / ATT_VCOLS;
    ulong h = row % heads, qi = row / heads;
    __global const float *qr = q + (qi * q_query_stride + h * q_head_stride) * d;
    float acc[ATT_COLS];
    for (int t = 0; t < ATT_COLS; t++)
        acc[t] = 0.0f;
    float m = -INFINITY, l = 0.0f; /* the same in every item */
    for (ulong j0 = 0; j0 < kv_len; j0 += ATT_WG) {
        ulong j = j0 + lid;
        float s = -INFINITY;
        if (j < kv_len) {
            float dot = key_dot(qr, k, (j * kv_pos_stride + (h / group) * kv_head_stride) * d, d);
            s = masked_score(dot, scale, softcap, mask_type, mask, qi * mask_cols + j);
        }
        float m_new = fmax(m, group_reduce(red, s, true, ATT_WG));
        if (m_new == -INFINITY)
            continue; /* nothing seen yet: every item takes this branch alike */
        float e = exp(s - m_new), a = exp(m - m_new); /* exp(-inf) = 0 */
        p[lid] = e;
        l = l * a + group_reduce(red, e, false, ATT_WG); /* its barriers also publish p */
        m = m_new;
        ulong n = min((ulong)ATT_WG, kv_len - j0);
        ulong vr0 = (j0 * kv_pos_stride + (h / group) * kv_head_stride) * dv, vstep = kv_pos_stride * dv;
        for (int t = 0; t < ATT_COLS; t++) {
            ulong col = col0 + (ulong)t * ATT_VCOLS;
            if (col < dv)
                acc[t] = acc[t] * a + value_share(p, v, vr0, vstep, col, n, slice);
        }
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int t = 0; t < ATT_COLS; t++) { /* the slices' sums, column by column, through p */
        barrier(CLK_LOCAL_MEM_FENCE); /* p's last readers are done */
        p[lid] = acc[t];
        barrier(CLK_LOCAL_MEM_FENCE);
        ulong col = col0 + (ulong)t * ATT_VCOLS;
        if (slice == 0 && col < dv) {
            float sum = 0.0f;
            for (int sl = 0; sl < ATT_SLICES; sl++)
                sum += p[sl * ATT_VCOLS + col0];
            y[row * dv + col] = sum * inv;
        }
    }
}

__kernel __attribute__((reqd_work_group_size(ATT_WG, 1, 1)))
void attn_fused(__global const float *q, __global const uchar *k, ulong k_at, __global const uchar *v, ulong v_at,
                ATTEND_REST)
{
    __local float red[ATT_WG], p[ATT_WG];
    /* the grid is exactly rows work-groups */
    attend_row(get_group_id(0), red, p, q, k + k_at, v + v_at, ATTEND_REST_PASS);
}

/* kqcl_rope_jobs_attention: the row's share of the step's RoPE and cache writes by the
 * work-group's items, a barrier that makes them visible to the whole group, then its attention,
 * which reads of them only what the group wrote itself. */
__kernel __attribute__((reqd_work_group_size(ATT_WG, 1, 1)))
void attn_roped(STEP_ARGS, ATTEND_REST)
{
    __local float red[ATT_WG], p[ATT_WG];
    ulong row = get_group_id(0), h = row % heads;
    step_share(h, h / group, get_local_id(0), ATT_WG, STEP_PASS, heads, group, d, dv);
    barrier(CLK_GLOBAL_MEM_FENCE);
    attend_row(row, red, p, q, kc + k_at, vc + v_at, ATTEND_REST_PASS);
}

#endif
