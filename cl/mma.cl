/*
 * mma.cl -- NVIDIA only: decode (n <= 8) on the tensor cores, through inline PTX
 * (mma.sync.m16n8k16 with bf16 inputs and f32 accumulation, sm_80 and later). Chosen at run
 * time for NVIDIA devices of compute capability >= 8.0; every other device uses matvec.cl.
 *
 * Why bf16 and still f32-accurate: the quants are small integers, exact in bf16 (<= 8
 * significant bits), and each activation is split into three bf16 parts x = hi + mid + lo
 * (8 + 8 + 8 significant bits), each multiplied in its own mma and summed in f32. So the
 * products are those of f32 arithmetic to ~2^-24, and bf16's f32-sized exponent range means no
 * activation overflows. The block scales are applied in f32 after each scale group.
 *
 *   a warp: MT tiles of 16 weight rows x 8 activation rows (n <= 8), over its share of k
 *   (blocks warp, warp + WARPS, ...); the WARPS warps of a work-group share the rows and are
 *   summed through local memory at the end.
 *
 *   slice = 16 positions of one scale group; thread (g = lane/4, t = lane%4) holds 4 of
 *   them: positions slice + 4t .. 4t+3, for weight rows g and g+8 (fragment A) and for
 *   activation row g (fragment B). mma's k index is a permutation of positions, the same for
 *   A and B, so any assignment inside the slice is correct.
 *
 * Precision (include/kqcl.h): PARTS bf16 parts an activation -- 3 in F32 mode, 1 in BF16 (the
 * part is x rounded once to bf16), 2 in F16 with X_ROUND_F16 (x rounded once to f16 first: its
 * 11 significant bits are exactly two bf16 parts). The mins' activation sums are of the same
 * parts, so every mode multiplies exactly the activations it promises.
 *
 * Tunables: WARPS (warps a work-group), MT (16-row tiles a warp). Needs WTYPE a k-quant and
 * XTYPE f32.
 */
#ifndef WARPS
#define WARPS 8
#endif
#ifndef MT
#define MT 1
#endif

#ifndef PARTS
#define PARTS 3
#endif

#if WARPS < 1 || MT < 1 || PARTS < 1 || PARTS > 3
#error "mma: WARPS and MT at least 1, PARTS 1..3"
#endif

/* Veltkamp-style splits below must round exactly as written. */
#pragma OPENCL FP_CONTRACT OFF

#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
#define SLICES_PER_GROUP 2 /* a 32-value sub-block: one scale and one min */
#define HAS_MIN 1
#define QBIAS_BF16X2 0xC300C300u /* -128: the magic 128 + q */
#elif WTYPE == TYPE_Q6_K
#define SLICES_PER_GROUP 1 /* 16 values a scale */
#define HAS_MIN 0
#define QBIAS_BF16X2 0xC320C320u /* -160: magic 128, and quants stored + 32 */
#else /* q8_K */
#define SLICES_PER_GROUP 16 /* one scale a block */
#define HAS_MIN 0
#endif
#define GROUPS (16 / SLICES_PER_GROUP)

static inline uint bf16x2_pack(float lo, float hi)
{
    uint r;
    asm volatile("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

static inline float bf16_lo(uint v) { return as_float(v << 16); }
static inline float bf16_hi(uint v) { return as_float(v & 0xFFFF0000u); }

#ifdef X_ROUND_F16
/* x rounded to f16 (nearest even) and back: exact both ways. */
static inline float round_f16(float x)
{
    ushort h;
    float r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(h));
    return r;
}
#endif

/* (x0, x1) as PARTS bf16 pairs, largest first: with 3, their sum is x to 24 bits (each
 * remainder is exact); with 1, x rounded to bf16; with X_ROUND_F16, x's f16 value, exactly. */
static inline void split_parts(float x0, float x1, uint p[PARTS])
{
#ifdef X_ROUND_F16
    x0 = round_f16(x0);
    x1 = round_f16(x1);
#endif
#pragma unroll
    for (int i = 0; i < PARTS; i++) {
        p[i] = bf16x2_pack(x0, x1);
        x0 = x0 - bf16_lo(p[i]);
        x1 = x1 - bf16_hi(p[i]);
    }
}

static inline void mma_bf16(float c[4], uint a0, uint a1, uint a2, uint a3, uint b0, uint b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* The fragment A pair holding bytes (i, i+1) of w as bf16 quants: bytes [b_i, 0x43, b_i+1, 0x43]
 * are 128 + q in bf16, and one bf16x2 fma removes the 128 (and the type's stored offset). */
static inline uint quants_bf16x2(uint w, uint selector)
{
#if WTYPE == TYPE_Q8_K
    /* q8 bytes are signed, up to 8 bits: through f32 (exact) instead of the 7-bit magic */
    uint b0 = (selector == 0x5140u) ? 0u : 2u;
    float q0 = as_float(prmt(w ^ 0x80808080u, 0x4B000000u, 0x7650u + b0)) - 8388736.0f;
    float q1 = as_float(prmt(w ^ 0x80808080u, 0x4B000000u, 0x7651u + b0)) - 8388736.0f;
    return bf16x2_pack(q0, q1);
#else
    uint v = prmt(w, 0x43434343u, selector), r;
    asm volatile("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(v), "r"(0x3F803F80u), "r"(QBIAS_BF16X2));
    return r;
#endif
}

/* Row position (within the block) of slice sl, and the 4 quant bytes thread t holds of it. */
static inline int slice_position(int sl)
{
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
    return 32 * (sl >> 1) + 16 * (sl & 1); /* sub-block j = sl/2 covers 32j .. 32j+31 */
#elif WTYPE == TYPE_Q6_K
    return 128 * (sl >> 3) + 32 * ((sl >> 1) & 3) + 16 * (sl & 1);
#else
    return 16 * sl;
#endif
}

static inline uint slice_quants(const __global uchar *blk, int sl, int t)
{
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
    int j = sl >> 1, c = j >> 1, hi = j & 1, l = 16 * (sl & 1) + 4 * t;
#if WTYPE == TYPE_Q4_K
    uint q = *(const __global uint *)(blk + Q4K_QS + 32 * c + l);
#else
    uint q = *(const __global uint *)(blk + Q5K_QS + 32 * c + l);
#endif
    q = hi ? (q >> 4) & 0x0F0F0F0Fu : q & 0x0F0F0F0Fu;
#if WTYPE == TYPE_Q5_K
    uint qh = *(const __global uint *)(blk + Q5K_QH + l);
    q |= ((qh >> (uint)j) & 0x01010101u) << 4;
#endif
    return q;
#elif WTYPE == TYPE_Q6_K
    int h = sl >> 3, r = (sl >> 1) & 3, l = 16 * (sl & 1) + 4 * t;
    ushort2 lo2 = vload2(0, (const __global ushort *)(blk + Q6K_QL + 64 * h + 32 * (r & 1) + l));
    ushort2 hi2 = vload2(0, (const __global ushort *)(blk + Q6K_QH + 32 * h + l));
    return q6k_quants((uint)lo2.x | ((uint)lo2.y << 16), (uint)hi2.x | ((uint)hi2.y << 16), r);
#else
    return *(const __global uint *)(blk + Q8K_QS + 16 * sl + 4 * t);
#endif
}

/* Scale and min of scale group grp of a block (min 0 where the type has none). */
static inline float2 group_scale(const __global uchar *blk, int grp)
{
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
    /* branchless, as unit_load: sub-blocks 0..3 and 4..7 each have their word of 4 */
    float2 dm = vload_half2(0, (const __global half *)(blk + Q4K_D)); /* d, dmin (q5_K alike) */
    uint4 sm = k4_scales_mins(vload3(0, (const __global uint *)(blk + Q4K_SCALES)));
    uint sc_word = grp < 4 ? sm.x : sm.y;
    uint m_word = grp < 4 ? sm.z : sm.w;
    uint shift = 8u * (uint)(grp & 3);
    return (float2)(dm.x * (float)((sc_word >> shift) & 0xFFu), dm.y * (float)((m_word >> shift) & 0xFFu));
#elif WTYPE == TYPE_Q6_K
    int h = grp >> 3, r = (grp >> 1) & 3, s = grp & 1;
    const __global char *sc = (const __global char *)(blk + Q6K_SCALES);
    return (float2)(vload_half(0, (const __global half *)(blk + Q6K_D)) * (float)sc[8 * h + s + 2 * r], 0.0f);
#else
    return (float2)(*(const __global float *)(blk + Q8K_D), 0.0f);
#endif
}

__kernel __attribute__((reqd_work_group_size(32 * WARPS, 1, 1)))
void matvec_mma(const __global uchar *w, ulong w_row_bytes, const __global float *x, __global float *y,
                int m, int k, int n)
{
    __local float partial[WARPS][MT * 4][32];
    int lid = get_local_id(0), lane = lid & 31, warp = lid >> 5;
    int g = lane >> 2, t = lane & 3;
    int row0 = get_group_id(0) * (16 * MT);

    const __global uchar *wrow[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++)
            wrow[mt][h] = w + (size_t)min(row0 + 16 * mt + g + 8 * h, m - 1) * w_row_bytes;
    bool col_live = g < n;
    const __global float *xcol = x + (size_t)min(g, n - 1) * k + 4 * t;

    float acc[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 4; i++)
            acc[mt][i] = 0.0f;

    int blocks = k / QK_K;
    for (int b = warp; b < blocks; b += WARPS) {
        for (int grp = 0; grp < GROUPS; grp++) {
            float c[MT][4], csum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int i = 0; i < 4; i++)
                    c[mt][i] = 0.0f;
#pragma unroll
            for (int s = 0; s < SLICES_PER_GROUP; s++) {
                int sl = grp * SLICES_PER_GROUP + s;
                float4 xv = col_live ? *(const __global float4 *)(xcol + b * QK_K + slice_position(sl)) : (float4)0.0f;
                uint b01[PARTS], b23[PARTS];
                split_parts(xv.x, xv.y, b01);
                split_parts(xv.z, xv.w, b23);
#if HAS_MIN
                const uint ones = 0x3F803F80u; /* bf16 1.0, 1.0: sums of x for the mins */
#pragma unroll
                for (int part = 0; part < PARTS; part++)
                    mma_bf16(csum, ones, ones, ones, ones, b01[part], b23[part]);
#endif
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    uint q0 = slice_quants(wrow[mt][0] + (size_t)b * BLOCK_BYTES, sl, t);
                    uint q8 = slice_quants(wrow[mt][1] + (size_t)b * BLOCK_BYTES, sl, t);
                    uint a0 = quants_bf16x2(q0, 0x5140u), a1 = quants_bf16x2(q8, 0x5140u);
                    uint a2 = quants_bf16x2(q0, 0x7362u), a3 = quants_bf16x2(q8, 0x7362u);
#pragma unroll
                    for (int part = 0; part < PARTS; part++)
                        mma_bf16(c[mt], a0, a1, a2, a3, b01[part], b23[part]);
                }
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                float2 s0 = group_scale(wrow[mt][0] + (size_t)b * BLOCK_BYTES, grp);
                float2 s8 = group_scale(wrow[mt][1] + (size_t)b * BLOCK_BYTES, grp);
                acc[mt][0] += s0.x * c[mt][0] - s0.y * csum[0];
                acc[mt][1] += s0.x * c[mt][1] - s0.y * csum[1];
                acc[mt][2] += s8.x * c[mt][2] - s8.y * csum[2];
                acc[mt][3] += s8.x * c[mt][3] - s8.y * csum[3];
            }
        }
    }

    /* Sum the warps' shares of k; warp 0 writes. D's layout: c0, c1 are row g, columns 2t and
     * 2t+1; c2, c3 are row g+8. */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 4; i++)
            partial[warp][mt * 4 + i][lane] = acc[mt][i];
    barrier(CLK_LOCAL_MEM_FENCE);
    if (warp != 0)
        return;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float sum = 0.0f;
#pragma unroll
            for (int v = 0; v < WARPS; v++)
                sum += partial[v][mt * 4 + i][lane];
            int row = row0 + 16 * mt + g + 8 * (i >> 1), col = 2 * t + (i & 1);
            if (row < m && col < n)
                y[(size_t)col * m + row] = sum;
        }
}

/* ============================================================================================
 * Prefill on the tensor cores: Y (n x m) = X . W^T for any n.
 *
 * split_activations (one launch before the matmul) writes each group of 4 activations as the
 * 2 * PARTS bf16x2 words a B fragment needs (each part for positions p,p+1 and p+2,p+3), and
 * each 32-value sum of x's parts (the q4_K/q5_K mins multiply it). Then matmul_mma: a work-group of WARPS
 * warps owns 16*MT*WARPS weight rows and 8*NT activation rows; every STAGE_SLICES slices it
 * copies those activations' fragments into local memory once for all its warps; each warp
 * decodes its rows' quants into A fragments and runs PARTS mma a (16-row, 8-column) tile a slice.
 * The next stage's fragments are loaded into registers while the current one computes.
 *
 *   xs[row][k/4][2*PARTS] uint  B-fragment words, row-major by activation row
 *   xsum[row][k/32] float   sums of 32 activations
 * ========================================================================================== */
#ifndef NT
#define NT 8
#endif
#if NT < 1
#error "mma prefill: NT at least 1"
#endif
#define STAGE_SLICES 4
#define WG_COLS (8 * NT)

/* A work-item a group of 4 activations, so a warp reads 512 and writes 768 contiguous bytes
 * (one a 32-activation group left every store 192 bytes from its neighbour's: ~100 us of the
 * 4096 x 14336 prefill at n = 512, paid whole by each device of a row split). The first item
 * of each 32 also sums them, in the order the sums were always taken. */
/* The activations' values as the mode multiplies them: x itself with 3 parts (the parts sum to
 * it), else the sum of its parts. */
static inline float4 as_multiplied(float4 v)
{
#if PARTS == 3 && !defined(X_ROUND_F16)
    return v;
#else
    uint p01[PARTS], p23[PARTS];
    split_parts(v.x, v.y, p01);
    split_parts(v.z, v.w, p23);
    float4 r = (float4)0.0f;
    for (int i = 0; i < PARTS; i++)
        r += (float4)(bf16_lo(p01[i]), bf16_hi(p01[i]), bf16_lo(p23[i]), bf16_hi(p23[i]));
    return r;
#endif
}

__kernel void split_activations(const __global float *x, __global uint *xs, __global float *xsum, int n, int k)
{
    size_t quads = (size_t)n * (k / 4);
    for (size_t i = get_global_id(0); i < quads; i += get_global_size(0)) {
        float4 v = vload4(i, x);
        uint p01[PARTS], p23[PARTS];
        split_parts(v.x, v.y, p01);
        split_parts(v.z, v.w, p23);
        __global uint2 *dst = (__global uint2 *)(xs + i * 2 * PARTS); /* 8-byte aligned records */
#pragma unroll
        for (int part = 0; part < PARTS; part++)
            dst[part] = (uint2)(p01[part], p23[part]);
        if (i % 8 == 0) { /* k % 32 == 0: groups of 32 never straddle rows */
            float sum = 0.0f;
            for (int q = 0; q < 8; q++) {
                float4 u = as_multiplied(vload4(i + q, x));
                sum += (u.x + u.y) + (u.z + u.w);
            }
            xsum[i / 8] = sum;
        }
    }
}

#define WG_ITEMS (32 * WARPS)
#define STAGE_ITEMS ((STAGE_SLICES * 4 * WG_COLS + WG_ITEMS - 1) / WG_ITEMS) /* a work-item's share */
#define SUM_ITEMS (((STAGE_SLICES / 2) * WG_COLS + WG_ITEMS - 1) / WG_ITEMS)

/* A work-item's share of one stage, held in registers between the global loads and the store
 * to local memory, so the loads of stage s+1 are in flight while stage s computes. */
typedef struct stage_regs {
    uint2 words[STAGE_ITEMS][PARTS]; /* largest part first */
    float sums[SUM_ITEMS];
} stage_regs;

/* Load the stage's B fragments (STAGE_SLICES slices x 4 thread columns t x WG_COLS activation
 * rows x PARTS parts) and the needed 32-sums. Items run over t fastest, so 4 neighbouring
 * work-items read one activation row's 96 contiguous bytes. Rows past n read as 0. */
static inline void stage_load(stage_regs *r, const __global uint *xs, const __global float *xsum, int col0, int n, int k,
                       int b, int sl0, int lid)
{
#pragma unroll
    for (int i = 0; i < STAGE_ITEMS; i++) {
        int it = lid + i * WG_ITEMS;
        int t = it % 4, col = (it / 4) % WG_COLS, s = it / (4 * WG_COLS);
#pragma unroll
        for (int part = 0; part < PARTS; part++)
            r->words[i][part] = (uint2)0;
        if (s < STAGE_SLICES && col0 + col < n) {
            int q = (b * QK_K + slice_position(sl0 + s)) / 4 + t;
            /* 8 * PARTS-byte records: 8-byte aligned, so PARTS 8-byte loads */
            const __global uint2 *src =
                (const __global uint2 *)(xs + ((size_t)(col0 + col) * (k / 4) + q) * 2 * PARTS);
#pragma unroll
            for (int part = 0; part < PARTS; part++)
                r->words[i][part] = src[part];
        }
    }
#if HAS_MIN
#pragma unroll
    for (int i = 0; i < SUM_ITEMS; i++) {
        int it = lid + i * WG_ITEMS, col = it % WG_COLS, j = it / WG_COLS;
        int grp32 = (b * QK_K + slice_position(sl0 + 2 * j)) / 32;
        r->sums[i] = j < STAGE_SLICES / 2 && col0 + col < n ? xsum[(size_t)(col0 + col) * (k / 32) + grp32] : 0.0f;
    }
#endif
}

/* Store a stage to local memory: for each slice s, n-tile nt and part, the 32 lanes' uint2
 * words side by side, so a warp's fragment load is 256 contiguous bytes (no bank conflicts). */
static inline void stage_store(const stage_regs *r, __local uint2 *bl, __local float *sl_sum, int lid)
{
#pragma unroll
    for (int i = 0; i < STAGE_ITEMS; i++) {
        int it = lid + i * WG_ITEMS;
        int t = it % 4, col = (it / 4) % WG_COLS, s = it / (4 * WG_COLS);
        if (s >= STAGE_SLICES)
            break;
        __local uint2 *dst = bl + ((s * NT + col / 8) * PARTS) * 32 + 4 * (col % 8) + t;
#pragma unroll
        for (int part = 0; part < PARTS; part++)
            dst[32 * part] = r->words[i][part];
    }
#if HAS_MIN
#pragma unroll
    for (int i = 0; i < SUM_ITEMS; i++) {
        int it = lid + i * WG_ITEMS;
        if (it < (STAGE_SLICES / 2) * WG_COLS)
            sl_sum[it] = r->sums[i];
    }
#endif
}

/* Work-group (i, j, s) computes its tile over the s-th of get_num_groups(2) equal runs of k's
 * blocks (the last one shorter): split 0 writes y, split s > 0 part[s-1], and sum_splits adds
 * them in split order. The runs depend on k alone, so a row's bits do not depend on m -- a
 * row-split matrix gives the bits of the whole one -- and a part of a split matrix still makes
 * enough work-groups for every SM. */
__kernel __attribute__((reqd_work_group_size(32 * WARPS, 1, 1)))
void matmul_mma(const __global uchar *w, ulong w_row_bytes, const __global uint *xs, const __global float *xsum,
                __global float *y, __global float *part, int m, int k, int n)
{
    __local uint2 bl[STAGE_SLICES * NT * PARTS * 32];
    __local float sl_sum[(STAGE_SLICES / 2) * WG_COLS];
    int lid = get_local_id(0), lane = lid & 31, warp = lid >> 5;
    int g = lane >> 2, t = lane & 3;
    int row0 = get_group_id(0) * (16 * MT * WARPS) + warp * 16 * MT;
    int col0 = get_group_id(1) * WG_COLS;

    const __global uchar *wrow[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        for (int h = 0; h < 2; h++)
            wrow[mt][h] = w + (size_t)min(row0 + 16 * mt + g + 8 * h, m - 1) * w_row_bytes;

    float acc[MT][NT][4], c[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++)
                acc[mt][nt][i] = c[mt][nt][i] = 0.0f;

    int split = get_group_id(2), per_split = (k / QK_K + get_num_groups(2) - 1) / get_num_groups(2);
    int b0 = split * per_split, b1 = min(b0 + per_split, k / QK_K);
    int stages = max(b1 - b0, 0) * (16 / STAGE_SLICES);
    stage_regs next;
    if (stages > 0)
        stage_load(&next, xs, xsum, col0, n, k, b0, 0, lid);
    for (int st = 0; st < stages; st++) {
        int b = b0 + st / (16 / STAGE_SLICES), sl0 = (st % (16 / STAGE_SLICES)) * STAGE_SLICES;
        barrier(CLK_LOCAL_MEM_FENCE);
        stage_store(&next, bl, sl_sum, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (st + 1 < stages)
            stage_load(&next, xs, xsum, col0, n, k, b0 + (st + 1) / (16 / STAGE_SLICES),
                       ((st + 1) % (16 / STAGE_SLICES)) * STAGE_SLICES, lid);
        {
            for (int s = 0; s < STAGE_SLICES; s++) {
                int sl = sl0 + s;
                uint a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    uint q0 = slice_quants(wrow[mt][0] + (size_t)b * BLOCK_BYTES, sl, t);
                    uint q8 = slice_quants(wrow[mt][1] + (size_t)b * BLOCK_BYTES, sl, t);
                    a[mt][0] = quants_bf16x2(q0, 0x5140u);
                    a[mt][1] = quants_bf16x2(q8, 0x5140u);
                    a[mt][2] = quants_bf16x2(q0, 0x7362u);
                    a[mt][3] = quants_bf16x2(q8, 0x7362u);
                }
                /* part-major, so neighbouring mma go to different accumulators and do not
                 * wait on each other */
#pragma unroll
                for (int part = 0; part < PARTS; part++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        uint2 bf = bl[((s * NT + nt) * PARTS + part) * 32 + lane];
#pragma unroll
                        for (int mt = 0; mt < MT; mt++)
                            mma_bf16(c[mt][nt], a[mt][0], a[mt][1], a[mt][2], a[mt][3], bf.x, bf.y);
                    }
                if ((sl + 1) % SLICES_PER_GROUP != 0)
                    continue;
                /* end of a scale group: scale the tile sums into the accumulators */
                int grp = sl / SLICES_PER_GROUP;
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    float2 s0 = group_scale(wrow[mt][0] + (size_t)b * BLOCK_BYTES, grp);
                    float2 s8 = group_scale(wrow[mt][1] + (size_t)b * BLOCK_BYTES, grp);
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
#if HAS_MIN
                        const __local float *sums = sl_sum + (s / 2) * WG_COLS + 8 * nt + 2 * t;
                        float x0 = sums[0], x1 = sums[1];
#else
                        float x0 = 0.0f, x1 = 0.0f;
#endif
                        acc[mt][nt][0] += s0.x * c[mt][nt][0] - s0.y * x0;
                        acc[mt][nt][1] += s0.x * c[mt][nt][1] - s0.y * x1;
                        acc[mt][nt][2] += s8.x * c[mt][nt][2] - s8.y * x0;
                        acc[mt][nt][3] += s8.x * c[mt][nt][3] - s8.y * x1;
#pragma unroll
                        for (int i = 0; i < 4; i++)
                            c[mt][nt][i] = 0.0f;
                    }
                }
            }
        }
    }

    __global float *out = split == 0 ? y : part + (size_t)(split - 1) * m * n;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int row = row0 + 16 * mt + g + 8 * (i >> 1), col = col0 + 8 * nt + 2 * t + (i & 1);
                if (row < m && col < n)
                    out[(size_t)col * m + row] = acc[mt][nt][i];
            }
}

/* y += part[0] + part[1] + ..., left to right: the k-splits of matmul_mma in order. */
__kernel void sum_splits(__global float *y, const __global float *part, ulong count, int parts)
{
    for (ulong i = get_global_id(0); i < count; i += get_global_size(0)) {
        float acc = y[i];
        for (int s = 0; s < parts; s++)
            acc += part[s * count + i];
        y[i] = acc;
    }
}
