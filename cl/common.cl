/*
 * common.cl -- helpers every kernel family shares. Prepended to each family's source at build
 * time, so every program is one translation unit of OpenCL C 1.2 with no extension required.
 *
 * Weight rows are ggml blocks, read straight from a byte buffer. The unit of work is a "unit"
 * of 32 weights: a k-quant block of 256 values is 8 units, a float row is ceil(k/32) units.
 * A unit is 4 "runs" of 8 weights whose positions are consecutive in the row, so activations
 * are loaded 8 at a time. Which 32 positions a unit covers follows the block layout, chosen so
 * a unit reads its quant bytes once:
 *
 *   q4_K, q5_K  unit u = 2c+p (chunk c of 64 values, part p):  qs bytes [32c+16p, +16)
 *               run 0: 64c+16p+[0,8)    low nibbles   sub-block 2c
 *               run 1: 64c+16p+[8,16)   low nibbles   sub-block 2c
 *               run 2: 64c+32+16p+[0,8) high nibbles  sub-block 2c+1
 *               run 3: 64c+32+16p+[8,16) high nibbles sub-block 2c+1
 *   q6_K        unit u = 4h+q (half h of 128, quarter q):  run r: 128h+32r+8q+[0,8)
 *   q8_K, float unit u: run r: 32u+8r+[0,8)
 *   q4_0, q4_1, q5_0, q5_1, q8_0
 *               a block is one unit: run r: 8r+[0,8) (the 4- and 5-bit types: the low nibbles
 *               of the 16 qs bytes are values 0..15, the high nibbles 16..31; q5_0/q5_1's
 *               fifth bits are bits 8r..8r+7 of the qh word)
 *
 * Block sizes and field offsets (Q4K_QS, Q6K_D, ...) are cl/kquant_layout.h's, which is
 * prepended to this file wherever it is built (scripts/embed-cl.sh, scripts/check-kernels.sh).
 *
 * Build options (all have defaults, so the file compiles with the layout header alone):
 *   WTYPE  weight type (ggml id: 0 f32, 1 f16, 2 q4_0, 3 q4_1, 6 q5_0, 7 q5_1, 8 q8_0, 12 q4_K,
 *          13 q5_K, 14 q6_K, 15 q8_K, 30 bf16)
 *   XTYPE  activation type (0 f32, 1 f16, 30 bf16)
 *   NO_CONTRACT  forbid contracting a*b+c into fma (conversions that must be bit-exact)
 *   KQ_NV_PTX    NVIDIA only: inline PTX for byte permutes (set by the host, with a fallback)
 */

/* Vectors wider than the target's registers (float16 without AVX-512, float8 without AVX) are
 * passed to and returned from the builtins (vload16, convert_float16, ...) and our helpers, and
 * clang warns that such a call's ABI depends on the CPU features (-Wpsabi). That matters only
 * between objects compiled for different features; a kernel program is one module, compiled
 * together with the builtin library for the same target (PoCL links its library for the very
 * CPU it runs on), so the warning says nothing here and is switched off -- it alone: PoCL prints
 * a compiler's warnings to the user's terminal, and the offline x86-64 compile of `make
 * check-kernels` fails on any warning. */
#if defined(__clang__) && defined(__has_warning)
#if __has_warning("-Wpsabi") /* NVIDIA's compiler (580) does not know it, and warns of that */
#pragma clang diagnostic ignored "-Wpsabi"
#endif
#endif

/* Conversions must round exactly as the host codec does: no a*b+c fused into one rounding. */
#ifdef NO_CONTRACT
#pragma OPENCL FP_CONTRACT OFF
#endif

/* The test suite switches these on to prove that a failed build is reported with its log, and
 * that a build's warnings reach KQCL_BUILD_LOG. */
#ifdef KQCL_TEST_BROKEN_BUILD
#error "KQCL_TEST_BROKEN_BUILD: a deliberately broken kernel build"
#endif
#ifdef KQCL_TEST_BUILD_WARNING
#warning "KQCL_TEST_BUILD_WARNING: a deliberate warning"
#endif

/* The type ids (TYPE_F32, ...) are kquant_layout.h's, which begins every program. */

#ifndef WTYPE
#define WTYPE TYPE_Q4_K
#endif
#ifndef XTYPE
#define XTYPE TYPE_F32
#endif

#if WTYPE == TYPE_Q4_0
#define BLOCK_BYTES Q40_BYTES
#elif WTYPE == TYPE_Q4_1
#define BLOCK_BYTES Q41_BYTES
#elif WTYPE == TYPE_Q5_0
#define BLOCK_BYTES Q50_BYTES
#elif WTYPE == TYPE_Q5_1
#define BLOCK_BYTES Q51_BYTES
#elif WTYPE == TYPE_Q8_0
#define BLOCK_BYTES Q80_BYTES
#elif WTYPE == TYPE_Q4_K
#define BLOCK_BYTES Q4K_BYTES
#elif WTYPE == TYPE_Q5_K
#define BLOCK_BYTES Q5K_BYTES
#elif WTYPE == TYPE_Q6_K
#define BLOCK_BYTES Q6K_BYTES
#elif WTYPE == TYPE_Q8_K
#define BLOCK_BYTES Q8K_BYTES
#endif

/* W_IS_QUANT: weights in blocks of quants (units come from blocks); W_IS_KQUANT: the 256-value
 * k-quants, which the CPU and tensor-core kernels serve; a block of the 32-value types (q4_0,
 * q4_1, q5_0, q5_1, q8_0) is one unit. */
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K || WTYPE == TYPE_Q6_K || WTYPE == TYPE_Q8_K
#define W_IS_KQUANT 1
#define W_IS_QUANT 1
#define UNITS_PER_BLOCK 8
#define BLOCK_VALUES QK_K
#elif WTYPE == TYPE_Q4_0 || WTYPE == TYPE_Q4_1 || WTYPE == TYPE_Q5_0 || WTYPE == TYPE_Q5_1 || WTYPE == TYPE_Q8_0
#define W_IS_KQUANT 0
#define W_IS_QUANT 1
#define UNITS_PER_BLOCK 1
#define BLOCK_VALUES QK4_0 /* QK4_1, QK5_0, QK5_1 and QK8_0 the same */
#else
#define W_IS_KQUANT 0
#define W_IS_QUANT 0
#endif

/* ---- bf16 and f16 bits ------------------------------------------------------------------- */

static inline float bf16_to_float(ushort b) { return as_float((uint)b << 16); }

static inline float8 bf16x8_to_float8(ushort8 b) { return as_float8(convert_uint8(b) << 16); }

/* Round to nearest even, as ggml: NaN becomes a quiet NaN with the sign and top payload. */
static inline ushort float_to_bf16(float f)
{
    uint u = as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (ushort)((u >> 16) | 0x40u);
    return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* f32 -> f16 bits with integer arithmetic only, so every device rounds the same way
 * (nearest even, subnormals kept, overflow to inf, NaN kept quiet). */
static inline ushort float_to_half_bits(float f)
{
    uint u = as_uint(f);
    uint sign = (u >> 16) & 0x8000u;
    uint abs_u = u & 0x7fffffffu;
    if (abs_u > 0x7f800000u) /* NaN: keep the top of the payload, force quiet */
        return (ushort)(sign | 0x7e00u | ((abs_u >> 13) & 0x3ffu));
    if (abs_u >= 0x477ff000u) /* rounds to >= 65520: inf */
        return (ushort)(sign | 0x7c00u);
    if (abs_u < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (abs_u < 0x33000000u) /* below half of the smallest subnormal: zero */
            return (ushort)sign;
        uint mant = (abs_u & 0x7fffffu) | 0x800000u;
        /* value = mant * 2^(exp-150) and the half subnormal unit is 2^-24, so the quotient is
         * mant >> (126 - exp), a shift of 14..24 here; round the remainder to nearest even. */
        uint shift = 126u - (abs_u >> 23);
        uint q = mant >> shift;
        uint rem = mant & ((1u << shift) - 1u);
        uint halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (q & 1u)))
            q++;
        return (ushort)(sign | q);
    }
    uint rounded = abs_u + 0xfffu + ((abs_u >> 13) & 1u);
    return (ushort)(sign | ((rounded - 0x38000000u) >> 13));
}

/* f16 bit patterns (in the low 16 bits of each lane) as floats by integer ops, 2, 8 or 16 at a
 * time: the magnitude moved into a float's place and scaled by 2^112 (subnormal halves come out
 * exact where float subnormals are kept); exponent 31 (Inf, NaN) set apart, as the multiply would
 * give finite numbers near 2^16. PoCL's vload_half is a long software routine on x86. */
static inline float16 half16_bits_to_float16(uint16 h)
{
    uint16 shifted = (h & 0x7FFFu) << 13;
    float16 mag = as_float16(shifted) * 0x1p112f;
    uint16 bits = select(as_uint16(mag), shifted | 0x7F800000u, (h & 0x7C00u) == (uint16)0x7C00u);
    return as_float16(bits | ((h & 0x8000u) << 16));
}

static inline float8 half8_bits_to_float8(uint8 h)
{
    uint8 shifted = (h & 0x7FFFu) << 13;
    float8 mag = as_float8(shifted) * 0x1p112f;
    uint8 bits = select(as_uint8(mag), shifted | 0x7F800000u, (h & 0x7C00u) == (uint8)0x7C00u);
    return as_float8(bits | ((h & 0x8000u) << 16));
}

/* v's two halves: the low 16 bits in .x, the high in .y. */
static inline float2 half2_bits_to_float2(uint v)
{
    uint2 h = (uint2)(v & 0xFFFFu, v >> 16);
    uint2 shifted = (h & 0x7FFFu) << 13;
    float2 mag = as_float2(shifted) * 0x1p112f;
    uint2 bits = select(as_uint2(mag), shifted | 0x7F800000u, as_uint2((h & 0x7C00u) == (uint2)0x7C00u));
    return as_float2(bits | ((h & 0x8000u) << 16));
}

/* 8 f16 or bf16 values from a 16-byte aligned address in one 16-byte load (vload_half8 from
 * global memory became 8 two-byte loads on NVIDIA: f16 weights decoded at 15% of bandwidth);
 * the f16 bits are converted in registers. */
static inline float8 half8_aligned(const __global ushort *p)
{
    uint4 u = *(const __global uint4 *)p;
    return vload_half8(0, (const __private half *)&u);
}

static inline float8 bf16x8_aligned(const __global ushort *p)
{
    return bf16x8_to_float8(as_ushort8(*(const __global uint4 *)p));
}

/* ---- activations: 8 consecutive values as float8, zero past the row's end ----------------- */

#if XTYPE == TYPE_F32
#define XT float
static inline float x_at(const __global XT *x, ulong i) { return x[i]; }
static inline float8 x_load8(const __global XT *x, ulong i) { return vload8(0, x + i); }
#elif XTYPE == TYPE_F16
#define XT half
static inline float x_at(const __global XT *x, ulong i) { return vload_half(i, x); }
static inline float8 x_load8(const __global XT *x, ulong i) { return vload_half8(0, x + i); }
#elif XTYPE == TYPE_BF16
#define XT ushort
static inline float x_at(const __global XT *x, ulong i) { return bf16_to_float(x[i]); }
static inline float8 x_load8(const __global XT *x, ulong i) { return bf16x8_to_float8(vload8(0, x + i)); }
#endif

/* NAME(row, pos, k): the 8 values at [pos, pos+8) of a row of length k as floats, positions
 * >= k reading as 0; for a row of element type T read with AT (one) and LOAD8 (eight). */
#define DEFINE_RUN_READER(NAME, T, AT, LOAD8)                                                      \
    static inline float8 NAME(const __global T *row, int pos, int k)                             \
    {                                                                                            \
        if (pos + 8 <= k)                                                                        \
            return LOAD8(row, (ulong)pos);                                                       \
        float v[8];                                                                              \
        for (int i = 0; i < 8; i++)                                                              \
            v[i] = pos + i < k ? AT(row, (ulong)(pos + i)) : 0.0f;                                \
        return (float8)(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);                          \
    }

/* x_run: 8 activations of a row */
DEFINE_RUN_READER(x_run, XT, x_at, x_load8)

/* ---- weights --------------------------------------------------------------------------------- */

/* ---- the packed fields every decoder shares, unpacked once, on 32-bit words ----------------
 * Each decoder loads the bytes as wide as its layout and its lanes allow and hands them over as
 * words of 4 bytes; every operation below is byte-wise (no byte's result depends on another),
 * so a word may hold any 4 positions, or just the one byte a caller needs in its low byte. */

/* q4_K/q5_K's six-bit scales and mins from the 12 scale bytes (kquant_layout.h) as three words
 * sw = bytes 0..3, 4..7, 8..11: .x the scales of sub-blocks 0..3, .y those of 4..7, .z the
 * mins of 0..3, .w those of 4..7, a byte each (byte i of a result needs byte i of sw only). */
static inline uint4 k4_scales_mins(uint3 sw)
{
    return (uint4)(sw.x & 0x3F3F3F3Fu, (sw.z & 0x0F0F0F0Fu) | ((sw.x >> 2) & 0x30303030u),
                   sw.y & 0x3F3F3F3Fu, ((sw.z >> 4) & 0x0F0F0F0Fu) | ((sw.y >> 2) & 0x30303030u));
}

/* q6_K: 4 quants of quarter r (0..3) of a half from 4 ql bytes and the 4 qh bytes of the same
 * positions: the low (r < 2) or high nibble of ql, with bits 2r..2r+1 of qh on top. Unsigned:
 * stored + Q6K_BIAS, which each caller takes out its own way (in bytes, or as an offset). */
static inline uint q6k_quants(uint ql, uint qh, int r)
{
    uint lo = (r >> 1) ? (ql >> 4) & 0x0F0F0F0Fu : ql & 0x0F0F0F0Fu;
    return lo | (((qh >> (uint)(2 * r)) & 0x03030303u) << 4);
}

static inline float8 nibbles8(uchar8 q, int high) { return convert_float8(high ? q >> (uchar)4 : q & (uchar)0xF); }

/* A little-endian 32-bit word from a 2-byte-aligned address (q5_0's qh: 22-byte blocks). */
static inline uint load_u32_align2(const __global uchar *p)
{
    ushort2 v = vload2(0, (const __global ushort *)p);
    return (uint)v.x | ((uint)v.y << 16);
}

/* q5_0/q5_1: 4 bits of qh (values i..i+3, bit i in bit 0 of `bits`) spread to 4 bytes as the
 * fifth bit of each quant: byte j is 16 if bit j is set, else 0. The multiply places bit j at
 * bit 8j (the four shifted copies occupy disjoint bits, so nothing carries). */
static inline uint q5_high4(uint bits) { return (((bits & 0xFu) * 0x00204081u) & 0x01010101u) << 4; }

#if W_IS_QUANT

/* Row position (within the block) where run r of unit u starts. */
static inline int run_start(int u, int r)
{
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
    return 64 * (u >> 1) + 16 * (u & 1) + 32 * (r >> 1) + 8 * (r & 1);
#elif WTYPE == TYPE_Q6_K
    return 128 * (u >> 2) + 32 * r + 8 * (u & 3);
#else /* q8_K; q4_0 and q8_0 (u = 0) */
    return 32 * u + 8 * r;
#endif
}

/* The 8 weights of run r of unit u of the block at `blk`. Each value is formed exactly as
 * ggml's dequantize_row_* forms it (same float operations in the same order), so with
 * FP_CONTRACT off the result is bit-identical to the host codec. */
static inline float8 dequant_run(const __global uchar *blk, int u, int r)
{
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
    int c = u >> 1, p = u & 1, high = r >> 1, sub = 2 * c + high;
    /* q5_K's d, dmin and scales sit where q4_K's do */
    float d = vload_half(0, (const __global half *)(blk + Q4K_D));
    float dmin = vload_half(0, (const __global half *)(blk + Q4K_DMIN));
    const __global uchar *sb = blk + Q4K_SCALES; /* the 3 bytes sub-block `sub` needs */
    int sj = sub & 3;
    uint4 sm = k4_scales_mins((uint3)(sb[sj], sb[sj + 4], sb[sj + 8]));
    float d1 = d * (float)(sub < 4 ? sm.x : sm.y), m1 = dmin * (float)(sub < 4 ? sm.z : sm.w);
#if WTYPE == TYPE_Q4_K
    uchar8 qs = vload8(0, blk + Q4K_QS + 32 * c + 16 * p + 8 * (r & 1));
    float8 q = nibbles8(qs, high);
#else
    int l0 = 16 * p + 8 * (r & 1);
    uchar8 qs = vload8(0, blk + Q5K_QS + 32 * c + l0);
    uchar8 qh = vload8(0, blk + Q5K_QH + l0);
    uchar bit = (uchar)(1 << sub);
    float8 q = nibbles8(qs, high) + convert_float8(select((uchar8)0, (uchar8)16, (qh & bit) != (uchar8)0));
#endif
    return d1 * q - m1;
#elif WTYPE == TYPE_Q6_K
    int h = u >> 2, l0 = 8 * (u & 3);
    const __global uchar *ql = blk + Q6K_QL + 64 * h;
    const __global uchar *qh = blk + Q6K_QH + 32 * h;
    const __global char *sc = (const __global char *)(blk + Q6K_SCALES + 8 * h);
    float d = vload_half(0, (const __global half *)(blk + Q6K_D));
    uint2 lo = as_uint2(vload8(0, ql + l0 + 32 * (r & 1)));
    uint2 hi = as_uint2(vload8(0, qh + l0));
    uchar8 q6 = as_uchar8((uint2)(q6k_quants(lo.x, hi.x, r), q6k_quants(lo.y, hi.y, r)));
    float8 q = convert_float8(convert_int8(q6) - Q6K_BIAS);
    return d * (float)sc[(l0 >> 4) + 2 * r] * q;
#elif WTYPE == TYPE_Q8_K
    float d = *(const __global float *)(blk + Q8K_D); /* 292-byte blocks keep it 4-byte aligned */
    char8 q = vload8(0, (const __global char *)(blk + Q8K_QS + 32 * u + 8 * r));
    return d * convert_float8(q);
#elif WTYPE == TYPE_Q8_0
    (void)u;
    float d = vload_half(0, (const __global half *)(blk + Q80_D)); /* 34-byte blocks: 2-byte aligned */
    char8 q = vload8(0, (const __global char *)(blk + Q80_QS + 8 * r));
    return convert_float8(q) * d;
#elif WTYPE == TYPE_Q4_1
    (void)u; /* q * d + m */
    float d = vload_half(0, (const __global half *)(blk + Q41_D));
    float m = vload_half(0, (const __global half *)(blk + Q41_M));
    uchar8 qs = vload8(0, blk + Q41_QS + 8 * (r & 1));
    return nibbles8(qs, r >> 1) * d + m;
#elif WTYPE == TYPE_Q5_0 || WTYPE == TYPE_Q5_1
    (void)u; /* q5_0: (q - 16) * d; q5_1: q * d + m */
#if WTYPE == TYPE_Q5_0
    float d = vload_half(0, (const __global half *)(blk + Q50_D));
    uint qh = load_u32_align2(blk + Q50_QH) >> (uint)(8 * r);
    uchar8 qs = vload8(0, blk + Q50_QS + 8 * (r & 1));
#else
    float d = vload_half(0, (const __global half *)(blk + Q51_D));
    float m = vload_half(0, (const __global half *)(blk + Q51_M));
    uint qh = load_u32_align2(blk + Q51_QH) >> (uint)(8 * r);
    uchar8 qs = vload8(0, blk + Q51_QS + 8 * (r & 1));
#endif
    uchar8 hi = as_uchar8((uint2)(q5_high4(qh), q5_high4(qh >> 4)));
    uchar8 q = ((r >> 1) ? qs >> (uchar)4 : qs & (uchar)0xF) | hi;
#if WTYPE == TYPE_Q5_0
    return convert_float8(convert_int8(q) - Q50_BIAS) * d;
#else
    return convert_float8(q) * d + m;
#endif
#else /* q4_0: (q - 8) * d */
    (void)u;
    float d = vload_half(0, (const __global half *)(blk + Q40_D));
    uchar8 qs = vload8(0, blk + Q40_QS + 8 * (r & 1));
    return convert_float8(convert_int8((r >> 1) ? qs >> (uchar)4 : qs & (uchar)0xF) - Q40_BIAS) * d;
#endif
}

#else /* float weights: a unit is 32 consecutive values of the row, zero past its end */

#if WTYPE == TYPE_F32
#define WT float
static inline float w_at(const __global WT *w, ulong i) { return w[i]; }
static inline float8 w_load8(const __global WT *w, ulong i) { return vload8(0, w + i); }
#elif WTYPE == TYPE_F16
#define WT half
static inline float w_at(const __global WT *w, ulong i) { return vload_half(i, w); }
static inline float8 w_load8(const __global WT *w, ulong i) { return vload_half8(0, w + i); }
#else
#define WT ushort
static inline float w_at(const __global WT *w, ulong i) { return bf16_to_float(w[i]); }
static inline float8 w_load8(const __global WT *w, ulong i) { return bf16x8_to_float8(vload8(0, w + i)); }
#endif

/* w_run: 8 weights of a float-typed row */
DEFINE_RUN_READER(w_run, WT, w_at, w_load8)

#endif

/* ---- whole units, for the dot-product kernels ------------------------------------------------
 * unit_load() reads a unit's bytes with the widest loads its block layout allows (one 16-byte
 * load of quants for q4_K), once; raw_run() expands run r of it into 8 small integers as floats
 * with a scale and an offset: weight = s * q - mo. The kernels fold s and mo out of the dot
 * product (s * sum(q x) - mo * sum(x)), so a weight costs an extract, a subtract and one FMA.
 * Not bit-exact with ggml's dequantization (convert.cl uses dequant_run for that).
 */

/* 4 unsigned bytes as floats, without the int-to-float unit: 2^23 + b has b in its mantissa.
 * On NVIDIA (KQ_NV_PTX) one byte-permute instruction builds each 2^23 + b; elsewhere it takes a
 * shift, a mask and an or. */
#ifdef KQ_NV_PTX
static inline uint prmt(uint a, uint b, uint selector)
{
    uint r;
    asm volatile("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(selector));
    return r;
}

static inline float4 u8x4_to_float4(uint v)
{
    /* selector 0x765i: byte i of v below the three top bytes of 0x4B000000 */
    uint4 b = (uint4)(prmt(v, 0x4B000000u, 0x7650u), prmt(v, 0x4B000000u, 0x7651u),
                      prmt(v, 0x4B000000u, 0x7652u), prmt(v, 0x4B000000u, 0x7653u));
    return as_float4(b) - (float4)8388608.0f;
}
#else
static inline float4 u8x4_to_float4(uint v)
{
    uint4 b = (uint4)(v, v >> 8, v >> 16, v >> 24) & (uint4)0xFFu;
    return as_float4(b | (uint4)0x4B000000u) - (float4)8388608.0f;
}
#endif

static inline float8 u8x8_to_float8(uint lo, uint hi) { return (float8)(u8x4_to_float4(lo), u8x4_to_float4(hi)); }

#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
typedef struct unit_raw {
    uint4 qs;
#if WTYPE == TYPE_Q5_K
    uint4 qh;
    int hbit;
#endif
    float s[2], mo[2]; /* sub-blocks 2c (low nibbles) and 2c+1 (high nibbles) */
} unit_raw;

static inline unit_raw unit_load(const __global uchar *blk, int u)
{
    unit_raw raw;
    int c = u >> 1, p = u & 1;
    float2 dm = vload_half2(0, (const __global half *)(blk + Q4K_D)); /* d, dmin (q5_K alike) */
    /* All 8 six-bit scales and mins at once, four a word, without branching on the lane's
     * sub-block: chunk c's sub-blocks 2c and 2c+1 are bytes 2(c & 1) and 2(c & 1) + 1 of the
     * scale and min words of sub-blocks 0..3 (c < 2) or 4..7. */
    uint4 sm = k4_scales_mins(vload3(0, (const __global uint *)(blk + Q4K_SCALES)));
    uint sc_word = c < 2 ? sm.x : sm.y;
    uint m_word = c < 2 ? sm.z : sm.w;
    uint shift = 16u * (uint)(c & 1);
    raw.s[0] = dm.x * (float)((sc_word >> shift) & 0xFFu);
    raw.s[1] = dm.x * (float)((sc_word >> (shift + 8u)) & 0xFFu);
    raw.mo[0] = dm.y * (float)((m_word >> shift) & 0xFFu);
    raw.mo[1] = dm.y * (float)((m_word >> (shift + 8u)) & 0xFFu);
#if WTYPE == TYPE_Q4_K
    raw.qs = *(const __global uint4 *)(blk + Q4K_QS + 32 * c + 16 * p); /* 144-byte blocks: 16-aligned */
#else
    raw.qs = *(const __global uint4 *)(blk + Q5K_QS + 32 * c + 16 * p); /* 176-byte blocks: 16-aligned */
    raw.qh = *(const __global uint4 *)(blk + Q5K_QH + 16 * p);
    raw.hbit = 2 * c;
#endif
    return raw;
}

static inline uint2 raw_run_bytes(const unit_raw *raw, int r, float *s, float *mo)
{
    int high = r >> 1;
    uint2 q = (r & 1) ? raw->qs.zw : raw->qs.xy;
    q = high ? (q >> 4) & 0x0F0F0F0Fu : q & 0x0F0F0F0Fu;
#if WTYPE == TYPE_Q5_K
    uint2 h = (r & 1) ? raw->qh.zw : raw->qh.xy;
    q |= ((h >> (uint)(raw->hbit + high)) & 0x01010101u) << 4;
#endif
    *s = raw->s[high];
    *mo = raw->mo[high];
    return q;
}

#elif WTYPE == TYPE_Q6_K
typedef struct unit_raw {
    uint2 ql[2]; /* bytes [8q, 8q+8) and [32+8q, 32+8q+8) of the half's ql */
    uint2 qh;
    float s[4];
} unit_raw;

/* 8 bytes from a 2-byte-aligned address (210-byte blocks leave no more). */
static inline uint2 load8_align2(const __global uchar *p)
{
    ushort4 v = vload4(0, (const __global ushort *)p);
    return (uint2)((uint)v.x | ((uint)v.y << 16), (uint)v.z | ((uint)v.w << 16));
}

static inline unit_raw unit_load(const __global uchar *blk, int u)
{
    unit_raw raw;
    int h = u >> 2, l0 = 8 * (u & 3);
    raw.ql[0] = load8_align2(blk + Q6K_QL + 64 * h + l0);
    raw.ql[1] = load8_align2(blk + Q6K_QL + 64 * h + 32 + l0);
    raw.qh = load8_align2(blk + Q6K_QH + 32 * h + l0);
    float d = vload_half(0, (const __global half *)(blk + Q6K_D));
    const __global char *sc = (const __global char *)(blk + Q6K_SCALES + 8 * h + (l0 >> 4));
    for (int r = 0; r < 4; r++)
        raw.s[r] = d * (float)sc[2 * r];
    return raw;
}

static inline uint2 raw_run_bytes(const unit_raw *raw, int r, float *s, float *mo)
{
    uint2 lo = raw->ql[r & 1];
    uint2 q = (uint2)(q6k_quants(lo.x, raw->qh.x, r), q6k_quants(lo.y, raw->qh.y, r));
    *s = raw->s[r];
    *mo = (float)Q6K_BIAS * raw->s[r]; /* quants are stored + 32 */
    return q;
}

#elif WTYPE == TYPE_Q8_K || WTYPE == TYPE_Q8_0
typedef struct unit_raw {
    uint8 qs;
    float d;
} unit_raw;

static inline unit_raw unit_load(const __global uchar *blk, int u)
{
    unit_raw raw;
#if WTYPE == TYPE_Q8_K
    raw.d = *(const __global float *)(blk + Q8K_D);
    raw.qs = vload8(0, (const __global uint *)(blk + Q8K_QS + 32 * u)); /* 292-byte blocks: 4-aligned */
#else
    (void)u; /* a q8_0 block is one unit; 34-byte blocks allow 2-byte loads only */
    raw.d = vload_half(0, (const __global half *)(blk + Q80_D));
    raw.qs = as_uint8(vload16(0, (const __global ushort *)(blk + Q80_QS)));
#endif
    return raw;
}

static inline uint2 raw_run_bytes(const unit_raw *raw, int r, float *s, float *mo)
{
    uint2 q = (r == 0) ? raw->qs.s01 : (r == 1) ? raw->qs.s23 : (r == 2) ? raw->qs.s45 : raw->qs.s67;
    q ^= 0x80808080u; /* signed q -> q + 128, unsigned */
    *s = raw->d;
    *mo = 128.0f * raw->d;
    return q;
}

#elif WTYPE == TYPE_Q4_0
typedef struct unit_raw {
    uint4 qs;
    float d;
} unit_raw;

static inline unit_raw unit_load(const __global uchar *blk, int u)
{
    (void)u;
    unit_raw raw; /* 18-byte blocks: 2-byte loads */
    raw.d = vload_half(0, (const __global half *)(blk + Q40_D));
    raw.qs = as_uint4(vload8(0, (const __global ushort *)(blk + Q40_QS)));
    return raw;
}

static inline uint2 raw_run_bytes(const unit_raw *raw, int r, float *s, float *mo)
{
    uint2 q = (r & 1) ? raw->qs.zw : raw->qs.xy;
    q = (r >> 1) ? (q >> 4) & 0x0F0F0F0Fu : q & 0x0F0F0F0Fu;
    *s = raw->d;
    *mo = (float)Q40_BIAS * raw->d; /* quants are stored + 8 */
    return q;
}

#elif WTYPE == TYPE_Q4_1 || WTYPE == TYPE_Q5_0 || WTYPE == TYPE_Q5_1
/* The nibbles as q4_0's, q5_0/q5_1's fifth bits on top; q4_1/q5_1's min m is the offset with
 * its sign turned (weight = d * q + m = s * q - mo). */
typedef struct unit_raw {
    uint4 qs;
#if WTYPE != TYPE_Q4_1
    uint qh;
#endif
    float d, mo;
} unit_raw;

static inline unit_raw unit_load(const __global uchar *blk, int u)
{
    (void)u;
    unit_raw raw;
#if WTYPE == TYPE_Q4_1
    float2 dm = vload_half2(0, (const __global half *)(blk + Q41_D)); /* d, m */
    raw.qs = vload4(0, (const __global uint *)(blk + Q41_QS)); /* 20-byte blocks: 4-aligned */
    raw.d = dm.x;
    raw.mo = -dm.y;
#elif WTYPE == TYPE_Q5_1
    float2 dm = vload_half2(0, (const __global half *)(blk + Q51_D)); /* d, m */
    raw.qh = *(const __global uint *)(blk + Q51_QH); /* 24-byte blocks: 8-aligned */
    raw.qs = vload4(0, (const __global uint *)(blk + Q51_QS));
    raw.d = dm.x;
    raw.mo = -dm.y;
#else
    raw.d = vload_half(0, (const __global half *)(blk + Q50_D)); /* 22-byte blocks: 2-byte loads */
    raw.qh = load_u32_align2(blk + Q50_QH);
    raw.qs = as_uint4(vload8(0, (const __global ushort *)(blk + Q50_QS)));
    raw.mo = (float)Q50_BIAS * raw.d; /* quants are stored + 16 */
#endif
    return raw;
}

static inline uint2 raw_run_bytes(const unit_raw *raw, int r, float *s, float *mo)
{
    uint2 q = (r & 1) ? raw->qs.zw : raw->qs.xy;
    q = (r >> 1) ? (q >> 4) & 0x0F0F0F0Fu : q & 0x0F0F0F0Fu;
#if WTYPE != TYPE_Q4_1
    uint bits = raw->qh >> (uint)(8 * r); /* values 8r..8r+7 */
    q |= (uint2)(q5_high4(bits), q5_high4(bits >> 4));
#endif
    *s = raw->d;
    *mo = raw->mo;
    return q;
}

#else /* float weights: the values themselves, scale 1 */
typedef struct unit_raw {
    float8 v[4];
} unit_raw;

/* With X_ALIGNED (k a multiple of 32) a unit is 32 whole values whose row starts 64-byte
 * aligned: 16-byte loads, no bounds checks. */
static inline float8 w_run_fast(const __global WT *wrow, int pos, int k)
{
#if defined(X_ALIGNED) && WTYPE == TYPE_F32
    const __global float4 *p = (const __global float4 *)(wrow + pos);
    return (float8)(p[0], p[1]);
#elif defined(X_ALIGNED) && WTYPE == TYPE_F16
    return half8_aligned((const __global ushort *)wrow + pos);
#elif defined(X_ALIGNED)
    return bf16x8_aligned(wrow + pos);
#else
    return w_run(wrow, pos, k);
#endif
}

static inline unit_raw unit_load_row(const __global uchar *wrow, int g, int k)
{
    unit_raw raw;
    for (int r = 0; r < 4; r++)
        raw.v[r] = w_run_fast((const __global WT *)wrow, 32 * g + 8 * r, k);
    return raw;
}

static inline float8 raw_run(const unit_raw *raw, int r, float *s, float *mo)
{
    *s = 1.0f;
    *mo = 0.0f;
    return raw->v[r];
}
#endif

#if W_IS_QUANT
/* Run r as floats: the 8 quants (+ QBIAS, unsigned) and their scale and offset. */
static inline float8 raw_run(const unit_raw *raw, int r, float *s, float *mo)
{
    uint2 q = raw_run_bytes(raw, r, s, mo);
    return u8x8_to_float8(q.x, q.y);
}

/* Unit g (counted from the row's start) of a weight row. */
static inline unit_raw unit_load_row(const __global uchar *wrow, int g, int k)
{
    (void)k;
    return unit_load(wrow + (size_t)(g / UNITS_PER_BLOCK) * BLOCK_BYTES, g % UNITS_PER_BLOCK);
}
#endif

/* 8 activations at pos of a row; X_ALIGNED (k a multiple of 32: runs never pass the row's end)
 * allows two 16-byte loads. */
static inline float8 x_run_fast(const __global XT *xrow, int pos, int k)
{
#if defined(X_ALIGNED) && XTYPE == TYPE_F32
    const __global float4 *p = (const __global float4 *)(xrow + pos);
    return (float8)(p[0], p[1]);
#elif defined(X_ALIGNED) && XTYPE == TYPE_BF16
    return bf16x8_aligned(xrow + pos);
#elif defined(X_ALIGNED) && XTYPE == TYPE_F16
    return half8_aligned((const __global ushort *)xrow + pos);
#else
    return x_run(xrow, pos, k);
#endif
}

static inline float hsum8(float8 v)
{
    float4 p = v.lo + v.hi;
    return (p.x + p.y) + (p.z + p.w);
}

/* The largest (max) or the sum of every work-item's v over a work-group of wg items (a power
 * of two), through red[wg] in local memory; every item gets it. */
static inline float group_reduce(__local float *red, float v, bool max, size_t wg)
{
    size_t lid = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE); /* red may still be read from the previous reduction */
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t step = wg / 2; step > 0; step >>= 1) {
        if (lid < step)
            red[lid] = max ? fmax(red[lid], red[lid + step]) : red[lid] + red[lid + step];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return red[0];
}

/* ---- rows written by position: RoPE and the KV cache's stores --------------------------------
 * elementwise.cl's rope_f32 and set_rows and attention.cl's attn_roped (a decode step's RoPE and
 * cache writes inside its attention) write rows with these, so both write the same bits. */

/* y[o] = v in dst_type: f32, or f16 or bf16 rounded to nearest even (kqcl_convert's rounding). */
static inline void store_as(__global void *y, ulong o, float v, int dst_type)
{
    if (dst_type == TYPE_F32)
        ((__global float *)y)[o] = v;
    else if (dst_type == TYPE_F16)
        ((__global ushort *)y)[o] = float_to_half_bits(v);
    else
        ((__global ushort *)y)[o] = float_to_bf16(v);
}

/* Element i of a scatter's index array: int32, or int64 with idx64. */
static inline long row_index(__global const void *idx, ulong i, int idx64)
{
    return idx64 ? ((__global const long *)idx)[i] : (long)((__global const int *)idx)[i];
}

/* 1 / sqrt(mean of the squares of a row of `cols` values + eps), summed in one fixed order
 * whatever the work-group's shape (eight strided partial sums, then a tree), so that every item
 * and every program that asks gets the same bits: rope_pair's norm. A CPU's kernels find it once
 * a row; a GPU's each of a row's pairs for itself, which costs a few steps of latency on a
 * decode step's few rows of a head's width, where a pass of its own would cost a launch. */
static inline float row_inv_rms(__global const float *xr, ulong cols, float eps)
{
#pragma OPENCL FP_CONTRACT OFF
    /* eight scalars, not an array: an array's initializer becomes a constant that llvm-spirv
     * leaves out of the entry point's interface (spirv-val refuses it) */
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f, s4 = 0.0f, s5 = 0.0f, s6 = 0.0f, s7 = 0.0f;
    ulong c = 0;
#define SQ_AT(l) (c + (l) < cols ? xr[c + (l)] * xr[c + (l)] : 0.0f)
    for (; c < cols; c += 8) { /* the tail's missing values add 0 */
        s0 += SQ_AT(0), s1 += SQ_AT(1), s2 += SQ_AT(2), s3 += SQ_AT(3);
        s4 += SQ_AT(4), s5 += SQ_AT(5), s6 += SQ_AT(6), s7 += SQ_AT(7);
    }
#undef SQ_AT
    float sum = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
    return 1.0f / sqrt(sum / (float)cols + eps);
}

/* rope_pair's inv for pair i of a job (1 where it has no norm). */
static inline float pair_inv_rms(ulong i, __global const float *x, ulong cols, float eps, int normed)
{
    return normed ? row_inv_rms(x + i / (cols / 2) * cols, cols, eps) : 1.0f;
}

/* Rotary position embedding of rows of `cols` values, `heads` consecutive rows a position
 * (pos[pos_offset + r / heads]): the first n_dims values turn in pairs -- (2i, 2i + 1), or with neox
 * (i, i + n_dims / 2) -- by theta = p * theta_scale^i (theta_scale = freq_base^(-2 / n_dims)),
 * interpolated by freq_scale and, with YaRN (ext_factor != 0), mixed back towards p *
 * theta_scale^i over the correction dims [corr_low, corr_high] with the magnitude scaled;
 * attn_factor scales both. Values past n_dims are copied (n_dims 0: the row is copied, a value's
 * rows). With scatter (kqcl_rope_set_rows), a position's `heads` rows go side by side into row
 * idx[idx_offset + r / heads] of y (int32, or int64 with idx64; rows of heads * cols values in
 * dst_type; an index outside [0, y_rows) writes nothing), as set_rows_f32 would write them; else
 * y is f32 of x's shape. With normed, each row is first RMS-normalised -- times inv, its
 * row_inv_rms, which the caller finds once a row or once a pair -- and multiplied by the weight
 * row nw (a Gemma-3 query's and key's norm). Every value written is multiplied by oscale last
 * (1: exactly the value; Gemma-3's query scale otherwise). This is pair i of one such job. */
static inline void rope_pair(ulong i, __global const float *x, __global const float *nw, float inv, int normed,
                             float oscale, __global void *y, ulong cols, ulong heads, int n_dims, int scatter,
                             __global const void *idx, ulong idx_offset, int idx64, ulong y_rows, int dst_type,
                             __global const int *pos, ulong pos_offset, int neox, float theta_scale, float freq_scale,
                             float ext_factor, float attn_factor, float corr_low, float corr_high)
{
#pragma OPENCL FP_CONTRACT OFF /* the same bits in every program that has it (elementwise's, attention's) */
    ulong half_cols = cols / 2, r = i / half_cols, j = i - r * half_cols; /* pair j of row r */
    __global const float *xr = x + r * cols;
#define ROPE_IN(c) (normed ? xr[c] * inv * nw[c] : xr[c])
    ulong yr = r * cols; /* the output row's first element */
    if (scatter) {
        long t = row_index(idx, idx_offset + r / heads, idx64);
        if (t < 0 || (ulong)t >= y_rows)
            return;
        yr = ((ulong)t * heads + r % heads) * cols;
    }
    if (2 * j >= (ulong)n_dims) { /* past the rotated part: copied */
        store_as(y, yr + 2 * j, ROPE_IN(2 * j) * oscale, dst_type);
        store_as(y, yr + 2 * j + 1, ROPE_IN(2 * j + 1) * oscale, dst_type);
        return;
    }
    ulong a = neox ? j : 2 * j, b = neox ? j + (ulong)n_dims / 2 : 2 * j + 1;
    float theta_extrap = (float)pos[pos_offset + r / heads] * pown(theta_scale, (int)j);
    float theta = freq_scale * theta_extrap, mscale = attn_factor;
    if (ext_factor != 0.0f) {
        float ramp = 1.0f - clamp(((float)j - corr_low) / fmax(0.001f, corr_high - corr_low), 0.0f, 1.0f);
        float mix = ramp * ext_factor;
        theta = theta * (1.0f - mix) + theta_extrap * mix;
        mscale *= 1.0f + 0.1f * log(1.0f / freq_scale);
    }
    float c, s = sincos(theta, &c) * mscale; /* one argument reduction for both */
    c *= mscale;
    float x0 = ROPE_IN(a), x1 = ROPE_IN(b);
#undef ROPE_IN
    store_as(y, yr + a, (x0 * c - x1 * s) * oscale, dst_type);
    store_as(y, yr + b, (x0 * s + x1 * c) * oscale, dst_type);
}

/* ---- CPUs (PoCL, -DKQ_CPU): helpers of the CPU decode and prefill kernels -------------------
 * A block is CPU_GROUPS "groups" of 16 weights at positions 16t..16t+15 (every block layout
 * allows this order), each with one scale and one offset: weight = s[t] * q - mo[t]. A k-quant
 * block is 16 groups; a small block (q4_0, q4_1, q5_0, q5_1, q8_0) is 2, one scale for both:
 * its low nibbles (or first 16 bytes) are values 0..15, its high nibbles values 16..31. */
#if defined(KQ_CPU) && W_IS_QUANT

#if W_IS_KQUANT
#define CPU_GROUPS 16
#else
#define CPU_GROUPS 2
#endif

/* 16 bytes at p, with the alignment the block layout guarantees (a byte-wise vload16 of PoCL
 * became 8 word inserts for some rows: LLVM did not see through it). */
static inline uchar16 ld16_a4(const __global uchar *p) { return as_uchar16(vload4(0, (const __global uint *)p)); }
static inline uchar16 ld16_a2(const __global uchar *p) { return as_uchar16(vload8(0, (const __global ushort *)p)); }

#if XTYPE == TYPE_F32
static inline float16 x_load16(const __global XT *x, ulong i) { return vload16(0, x + i); }
#elif XTYPE == TYPE_BF16
static inline float16 x_load16(const __global XT *x, ulong i) { return as_float16(convert_uint16(vload16(0, x + i)) << 16); }
#else /* f16 bits by integer ops (PoCL's vload_half is a long software routine on x86) */
static inline float16 x_load16(const __global XT *x, ulong i)
{
    return half16_bits_to_float16(convert_uint16(vload16(0, (const __global ushort *)x + i)));
}
#endif

/* Per-block scales of one row: group t (weights 16t..16t+15 of the block) is s[t]*q - mo[t]. */
typedef struct blk_scales {
    float s[CPU_GROUPS], mo[CPU_GROUPS];
} blk_scales;

static inline void blk_prep(const __global uchar *blk, blk_scales *sc)
{
#if WTYPE == TYPE_Q4_K || WTYPE == TYPE_Q5_K
    float2 dm = half2_bits_to_float2(*(const __global uint *)(blk + Q4K_D)); /* d, dmin (q5_K alike) */
    uint4 sm = k4_scales_mins(vload3(0, (const __global uint *)(blk + Q4K_SCALES)));
    float8 s8 = dm.x * convert_float8(as_uchar8(sm.xy));
    float8 m8 = dm.y * convert_float8(as_uchar8(sm.zw));
    float sa[8], ma[8];
    vstore8(s8, 0, sa);
    vstore8(m8, 0, ma);
#pragma unroll
    for (int t = 0; t < 16; t++) {
        sc->s[t] = sa[t >> 1];
        sc->mo[t] = ma[t >> 1];
    }
#elif WTYPE == TYPE_Q6_K
    float d = half2_bits_to_float2((uint)*(const __global ushort *)(blk + Q6K_D)).x;
    float16 s16 = d * convert_float16(vload16(0, (const __global char *)(blk + Q6K_SCALES)));
    float sa[16];
    vstore16(s16, 0, sa);
#pragma unroll
    for (int t = 0; t < 16; t++) {
        sc->s[t] = sa[t];
        sc->mo[t] = (float)Q6K_BIAS * sa[t];
    }
#elif WTYPE == TYPE_Q8_K
    float d = *(const __global float *)(blk + Q8K_D);
#pragma unroll
    for (int t = 0; t < 16; t++) {
        sc->s[t] = d;
        sc->mo[t] = 0.0f;
    }
#else /* the small blocks: d is the first half of every one (2-byte aligned), m the second */
    float d = half2_bits_to_float2((uint)*(const __global ushort *)blk).x;
#if WTYPE == TYPE_Q4_0
    float mo = (float)Q40_BIAS * d; /* (q - 8) d = q d - 8 d, and 8 d is exact */
#elif WTYPE == TYPE_Q5_0
    float mo = (float)Q50_BIAS * d;
#elif WTYPE == TYPE_Q4_1 || WTYPE == TYPE_Q5_1
    float mo = -half2_bits_to_float2((uint)*(const __global ushort *)(blk + (WTYPE == TYPE_Q4_1 ? Q41_M : Q51_M))).x;
#else /* q8_0 */
    float mo = 0.0f;
#endif
    sc->s[0] = sc->s[1] = d;
    sc->mo[0] = sc->mo[1] = mo;
#endif
}

#if WTYPE == TYPE_Q6_K
/* The 16 quants of q6_K group t as bytes, unsigned (stored + Q6K_BIAS). */
static inline uchar16 q6k_group_bytes(const __global uchar *blk, int t)
{
    int h = t >> 3, r = (t >> 1) & 3, lh = t & 1;
    uint4 lo = as_uint4(ld16_a2(blk + Q6K_QL + 64 * h + 32 * (r & 1) + 16 * lh));
    uint4 hi = as_uint4(ld16_a2(blk + Q6K_QH + 32 * h + 16 * lh));
    return as_uchar16((uint4)(q6k_quants(lo.x, hi.x, r), q6k_quants(lo.y, hi.y, r), q6k_quants(lo.z, hi.z, r),
                              q6k_quants(lo.w, hi.w, r)));
}
#endif

#if !W_IS_KQUANT
/* A small block's d (low 16 bits) and, for q4_1/q5_1, m (high 16 bits): the leading halves. */
static inline uint small_block_halves(const __global uchar *blk)
{
    const __global ushort *h = (const __global ushort *)blk;
#if WTYPE == TYPE_Q4_1 || WTYPE == TYPE_Q5_1
    return (uint)h[0] | (uint)h[1] << 16;
#else
    return (uint)h[0];
#endif
}

/* The offset of a small block of scale d (and m): weight = d q - mo, for both its groups. */
static inline float small_block_offset(float d, float m)
{
#if WTYPE == TYPE_Q4_0
    return (float)Q40_BIAS * d; /* (q - 8) d = q d - 8 d, and 8 d is exact */
#elif WTYPE == TYPE_Q5_0
    return (float)Q50_BIAS * d;
#elif WTYPE == TYPE_Q8_0
    (void)d;
    return 0.0f;
#else
    (void)d;
    return -m; /* q d + m */
#endif
}
#endif

/* The 16 quants of group t as floats (before scale and offset). */
static inline float16 blk_group(const __global uchar *blk, int t)
{
#if WTYPE == TYPE_Q4_K
    int c = t >> 2, high = (t >> 1) & 1, half_ = t & 1;
    uchar16 q = ld16_a4(blk + Q4K_QS + 32 * c + 16 * half_);
    q = high ? q >> (uchar)4 : q & (uchar)0xF;
    return convert_float16(q);
#elif WTYPE == TYPE_Q5_K
    int c = t >> 2, high = (t >> 1) & 1, half_ = t & 1;
    uchar16 q = ld16_a4(blk + Q5K_QS + 32 * c + 16 * half_);
    uchar16 h = ld16_a4(blk + Q5K_QH + 16 * half_);
    q = high ? q >> (uchar)4 : q & (uchar)0xF;
    q |= ((h >> (uchar)(2 * c + high)) & (uchar)1) << (uchar)4;
    return convert_float16(q);
#elif WTYPE == TYPE_Q6_K
    return convert_float16(q6k_group_bytes(blk, t));
#elif WTYPE == TYPE_Q8_K
    return convert_float16(as_char16(ld16_a4(blk + Q8K_QS + 16 * t)));
#elif WTYPE == TYPE_Q8_0
    return convert_float16(as_char16(ld16_a2(blk + Q80_QS + 16 * t)));
#elif WTYPE == TYPE_Q4_0 || WTYPE == TYPE_Q4_1
    uchar16 q = WTYPE == TYPE_Q4_0 ? ld16_a2(blk + Q40_QS) : ld16_a4(blk + Q41_QS);
    return convert_float16(t ? q >> (uchar)4 : q & (uchar)0xF);
#else /* q5_0, q5_1: bit i of the qh word is value i's fifth bit */
    uchar16 q = WTYPE == TYPE_Q5_0 ? ld16_a2(blk + Q50_QS) : ld16_a4(blk + Q51_QS);
    uint qh = WTYPE == TYPE_Q5_0 ? load_u32_align2(blk + Q50_QH) : *(const __global uint *)(blk + Q51_QH);
    uint16 bits = ((uint16)(qh >> (uint)(16 * t)) >> (uint16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)) & 1u;
    return convert_float16((t ? q >> (uchar)4 : q & (uchar)0xF) | (convert_uchar16(bits) << (uchar)4));
#endif
}

#endif /* KQ_CPU */

/* Units in a row of k values. */
static inline int units_per_row(int k) { return (k + 31) / 32; }

/* Row position of the first weight of run r of unit g (units counted from the row's start). */
static inline int run_position(int g, int r)
{
#if W_IS_QUANT
    return (g / UNITS_PER_BLOCK) * BLOCK_VALUES + run_start(g % UNITS_PER_BLOCK, r);
#else
    return 32 * g + 8 * r;
#endif
}

/* The 8 weights of run r of unit g of a weight row (zero past the row's end). */
static inline float8 weight_run(const __global uchar *wrow, int g, int r, int k)
{
#if W_IS_QUANT
    return dequant_run(wrow + (size_t)(g / UNITS_PER_BLOCK) * BLOCK_BYTES, g % UNITS_PER_BLOCK, r);
#else
    return w_run((const __global WT *)wrow, 32 * g + 8 * r, k);
#endif
}

static inline float dot8(float8 a, float8 b)
{
    float4 p = a.lo * b.lo + a.hi * b.hi;
    return (p.x + p.y) + (p.z + p.w);
}

/* ---- activations (kqcl.h's kqcl_unary_op), for the element-wise kernels and the matvec's GLU ---- */

#define GELU_SQRT_2_OVER_PI 0.79788456080286535588f
#define GELU_COEF 0.044715f

static inline float silu(float x) { return x / (1.0f + exp(-x)); }

static inline float gelu(float x)
{
    return 0.5f * x * (1.0f + tanh(GELU_SQRT_2_OVER_PI * x * (1.0f + GELU_COEF * x * x)));
}

/* ---- products that share X: several weights served by one launch ---------------------------
 * Decode kernels take up to four weights (w0..w3, y0..y3, m0..m3) and deal the launch's
 * work-groups out to them in order, each its ceil(m_i / rows_per_wg); a slot with m_i = 0 takes
 * none. The matrix of work-group wg and its first row there, over the first `slots` weights. */
static inline int group_matrix(int wg, const int m[4], int slots, int rows_per_wg, int *row_wg)
{
    int mat = 0;
#pragma unroll
    for (int i = 0; i + 1 < slots && i < 3; i++) {
        int wgs = (m[mat] + rows_per_wg - 1) / rows_per_wg;
        if (mat == i && wg >= wgs) {
            wg -= wgs;
            mat = i + 1;
        }
    }
    *row_wg = wg;
    return mat;
}

/* In such a kernel (arguments w0..w3, y0..y3, m0..m3; GROUP and ROWS_PER_WG defined): this
 * work-group's weight (w), output (y), height (m) and first row group (wg_row). */
#define GROUP_PICK_SLOT                                                                                                \
    const int ms_[4] = {m0, m1, m2, m3};                                                                               \
    int wg_row;                                                                                                        \
    int mat_ = group_matrix(get_group_id(0), ms_, GROUP, ROWS_PER_WG, &wg_row);                                        \
    const __global uchar *w = mat_ == 0 ? w0 : mat_ == 1 ? w1 : mat_ == 2 ? w2 : w3;                                 \
    __global float *y = mat_ == 0 ? y0 : mat_ == 1 ? y1 : mat_ == 2 ? y2 : y3;                                        \
    int m = ms_[mat_]
