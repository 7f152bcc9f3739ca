/*
 * reduce.cl -- per-row reductions of an f32/f16/bf16 matrix into one float per row.
 * One work-group per row. Sums are compensated: each work-item keeps a Neumaier sum of its
 * strided share of the row, and the work-items' (sum, compensation) pairs are combined by a
 * pairwise tree in local memory. Built with -DNO_CONTRACT so the compensation terms are exact.
 *
 * Options: XTYPE (source type), REDUCE_OP (0 sum, 1 max, 2 min, 3 mean, 4 sum of squares),
 * REDUCE_WG (work-group size, a power of two).
 * combine_copies (at the end) is the device stage of the collectives.
 */
#ifndef REDUCE_OP
#define REDUCE_OP 0
#endif
#ifndef REDUCE_WG
#define REDUCE_WG 256
#endif

#define OP_SUM 0
#define OP_MAX 1
#define OP_MIN 2
#define OP_MEAN 3
#define OP_SUMSQ 4
#define IS_SUM (REDUCE_OP == OP_SUM || REDUCE_OP == OP_MEAN || REDUCE_OP == OP_SUMSQ)

/* Neumaier's step: s + v, with the rounding error of the addition kept in *c. */
static inline void neumaier_add(float *s, float *c, float v)
{
    float t = *s + v;
    if (fabs(*s) >= fabs(v))
        *c += (*s - t) + v;
    else
        *c += (v - t) + *s;
    *s = t;
}

/* max/min that let a NaN win, as IEEE's maximum/minimum (fmax would drop it). */
static inline float pick(float a, float b)
{
    if (isnan(a))
        return a;
    if (isnan(b))
        return b;
#if REDUCE_OP == OP_MAX
    return a > b ? a : b;
#else
    return a < b ? a : b;
#endif
}

__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void reduce_rows(const __global XT *src, __global float *dst, int cols)
{
    __local float sums[REDUCE_WG];
    __local float comps[REDUCE_WG];
    int lid = get_local_id(0);
    const __global XT *row = src + (size_t)get_group_id(0) * cols;

#if IS_SUM
    float s = 0.0f, c = 0.0f;
    for (int i = lid; i < cols; i += REDUCE_WG) {
        float v = x_at(row, (ulong)i);
#if REDUCE_OP == OP_SUMSQ
        v = v * v;
#endif
        neumaier_add(&s, &c, v);
    }
#else
    float s = x_at(row, 0);
    for (int i = lid; i < cols; i += REDUCE_WG)
        s = pick(s, x_at(row, (ulong)i));
    float c = 0.0f;
#endif
    sums[lid] = s;
    comps[lid] = c;
    barrier(CLK_LOCAL_MEM_FENCE);

    for (int stride = REDUCE_WG / 2; stride > 0; stride >>= 1) {
        if (lid < stride) {
#if IS_SUM
            float a = sums[lid], ca = comps[lid];
            neumaier_add(&a, &ca, sums[lid + stride]);
            sums[lid] = a;
            comps[lid] = ca + comps[lid + stride];
#else
            sums[lid] = pick(sums[lid], sums[lid + stride]);
#endif
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        float total = sums[0] + comps[0];
#if REDUCE_OP == OP_MEAN
        total = total / (float)cols;
#endif
        dst[get_group_id(0)] = total;
    }
}

/* ---- collectives (collective.c): a chunk of every device's copy, combined on one device ----- */

/* acc op v as the host stage combines them: the first NaN wins MAX and MIN. */
static inline float combine_pair(float acc, float v)
{
#if REDUCE_OP == OP_MAX
    return isnan(acc) ? acc : isnan(v) ? v : v > acc ? v : acc;
#elif REDUCE_OP == OP_MIN
    return isnan(acc) ? acc : isnan(v) ? v : v < acc ? v : acc;
#else
    return acc + v;
#endif
}

/* own[own_at + i] = copy 0 op copy 1 op ... op copy (copies - 1), left to right in device order,
 * where copy own_pos is own's and the others lie `stride` floats apart from others[others_at]:
 * the same order, so the same bits, as the host stage. */
__kernel void combine_copies(__global float *own, ulong own_at, const __global float *others, ulong others_at,
                             ulong stride, uint count, int copies, int own_pos)
{
    for (size_t i = get_global_id(0); i < count; i += get_global_size(0)) {
        float acc = 0.0f;
        for (int c = 0; c < copies; c++) {
            float v = c == own_pos ? own[own_at + i] : others[others_at + (size_t)(c - (c > own_pos)) * stride + i];
            acc = c == 0 ? v : combine_pair(acc, v);
        }
        own[own_at + i] = acc;
    }
}
