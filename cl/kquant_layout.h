/*
 * kquant_layout.h -- the byte layout of ggml's quant blocks: block sizes and field offsets, the
 * one place kqcl states them. Valid both as C and as OpenCL C (nothing but #defines), so the
 * host and the kernels read the same names:
 *   - lib/base/codec.c includes it;
 *   - scripts/embed-cl.sh prepends it to common.cl's embedded text, so every kernel program
 *     (common.cl + a family's .cl, lib/device/program.c) begins with it;
 *   - scripts/check-kernels.sh prepends it to every offline compile (it + common.cl + family).
 * Multi-byte fields are little-endian; d and dmin are f16, except q8_K's f32 d. A block's
 * address is only as aligned as its size allows (q6_K: 2 bytes, q8_K: 4, q4_K/q5_K: 16 in a
 * 16-aligned row), which is what the kernels' load widths follow.
 */
#ifndef KQCL_KQUANT_LAYOUT_H
#define KQCL_KQUANT_LAYOUT_H

#ifndef QK_K
#define QK_K 256 /* values in a k-quant super-block */
#endif
#define QK4_0 32 /* values in a q4_0 block */
#define QK4_1 32 /* values in a q4_1 block */
#define QK5_0 32 /* values in a q5_0 block */
#define QK5_1 32 /* values in a q5_1 block */
#define QK8_0 32 /* values in a q8_0 block */

/* The type ids: kqcl.h's kqcl_type values (ggml's ids), for the kernels' -DWTYPE / -DXTYPE;
 * lib/base/types.c asserts at compile time that they agree. */
#define TYPE_F32 0
#define TYPE_F16 1
#define TYPE_Q4_0 2
#define TYPE_Q4_1 3
#define TYPE_Q5_0 6
#define TYPE_Q5_1 7
#define TYPE_Q8_0 8
#define TYPE_Q4_K 12
#define TYPE_Q5_K 13
#define TYPE_Q6_K 14
#define TYPE_Q8_K 15
#define TYPE_BF16 30

/*
 * q4_K: 144 bytes, 8 sub-blocks of 32 values, each with a 6-bit scale and a 6-bit min.
 *
 *   0      2      4                  16                                          144
 *   +------+------+------------------+-------------------------------------------+
 *   | d    | dmin | scales: 12 bytes | qs: 128 bytes, chunk c (0..3) = bytes     |
 *   | f16  | f16  | 8 scales, 8 mins | [32c, 32c+32): low nibbles are values     |
 *   |      |      | 6 bits each      | 64c+l (sub-block 2c), high nibbles values |
 *   |      |      |                  | 64c+32+l (sub-block 2c+1), l = 0..31      |
 *   +------+------+------------------+-------------------------------------------+
 *   value = d * scale[j] * q - dmin * min[j]
 *
 * The 12 scale bytes (q5_K the same), byte i of [0, 12):
 *   bytes 0..3   bits 0..5: scale j = i         bits 6..7: top 2 bits of scale j = i + 4
 *   bytes 4..7   bits 0..5: min j = i - 4       bits 6..7: top 2 bits of min j = i
 *   bytes 8..11  bits 0..3: low 4 bits of scale j = i - 4, bits 4..7: low 4 bits of min j = i - 4
 */
#define Q4K_D 0
#define Q4K_DMIN 2
#define Q4K_SCALES 4
#define Q4K_SCALES_BYTES 12
#define Q4K_QS 16
#define Q4K_BYTES 144

/*
 * q5_K: 176 bytes, q4_K's layout with a fifth bit for every value.
 *
 *   0      2      4                  16                    48                         176
 *   +------+------+------------------+---------------------+--------------------------+
 *   | d    | dmin | scales: 12 bytes | qh: 32 bytes, bit   | qs: 128 bytes, as q4_K's |
 *   | f16  | f16  | as q4_K's        | j of byte l is bit  | qs                       |
 *   |      |      |                  | 4 of value 32j+l    |                          |
 *   +------+------+------------------+---------------------+--------------------------+
 */
#define Q5K_D 0
#define Q5K_DMIN 2
#define Q5K_SCALES 4
#define Q5K_SCALES_BYTES 12
#define Q5K_QH 16
#define Q5K_QS 48
#define Q5K_BYTES 176

/*
 * q6_K: 210 bytes, 16 groups of 16 values, each with a signed 8-bit scale; two halves of 128.
 *
 *   0                         128                      192             208   210
 *   +-------------------------+------------------------+---------------+-----+
 *   | ql: 128 bytes, half h = | qh: 64 bytes, half h = | scales: 16    | d   |
 *   | bytes [64h, 64h+64)     | bytes [32h, 32h+32)    | int8, half h  | f16 |
 *   |                         |                        | = [8h, 8h+8)  |     |
 *   +-------------------------+------------------------+---------------+-----+
 *   Value 128h + 32r + l (quarter r = 0..3, l = 0..31) of half h: its low 4 bits are the low
 *   (r < 2) or high (r >= 2) nibble of ql byte 64h + 32(r & 1) + l, its top 2 bits are bits
 *   2r..2r+1 of qh byte 32h + l; the 6-bit q is stored + Q6K_BIAS. Its scale is scales byte
 *   8h + 2r + l/16.  value = d * scale * (q - 32)
 */
#define Q6K_QL 0
#define Q6K_QH 128
#define Q6K_SCALES 192
#define Q6K_D 208
#define Q6K_BYTES 210
#define Q6K_BIAS 32

/*
 * q8_K: 292 bytes.
 *
 *   0      4                              260                          292
 *   +------+------------------------------+----------------------------+
 *   | d    | qs: 256 int8, value i = qs i | bsums: 16 int16, the sum   |
 *   | f32  |                              | of qs [16j, 16j+16)        |
 *   +------+------------------------------+----------------------------+
 *   value = d * q
 */
#define Q8K_D 0
#define Q8K_QS 4
#define Q8K_BSUMS 260
#define Q8K_BYTES 292

/*
 * q4_0: 18 bytes, 32 values.          q8_0: 34 bytes, 32 values.
 *   0     2                    18       0     2                    34
 *   +-----+--------------------+        +-----+--------------------+
 *   | d   | qs: 16 bytes; byte |        | d   | qs: 32 int8        |
 *   | f16 | j: value j in the  |        | f16 |                    |
 *   |     | low nibble, value  |        +-----+--------------------+
 *   |     | j+16 in the high   |        value = q * d
 *   +-----+--------------------+
 *   value = (q - Q40_BIAS) * d
 */
#define Q40_D 0
#define Q40_QS 2
#define Q40_BYTES 18
#define Q40_BIAS 8
#define Q80_D 0
#define Q80_QS 2
#define Q80_BYTES 34

/*
 * q4_1: 20 bytes, 32 values: q4_0's nibbles with a min m instead of an offset.
 *   0     2     4                    20
 *   +-----+-----+--------------------+
 *   | d   | m   | qs: 16 bytes, as   |
 *   | f16 | f16 | q4_0's qs          |
 *   +-----+-----+--------------------+
 *   value = q * d + m,  q in 0..15
 *
 * q5_0: 22 bytes, 32 values.             q5_1: 24 bytes, 32 values.
 *   0     2          6             22      0     2     4          8             24
 *   +-----+----------+-------------+       +-----+-----+----------+-------------+
 *   | d   | qh: 4    | qs: 16      |       | d   | m   | qh: 4    | qs: 16      |
 *   | f16 | bytes,   | bytes, as   |       | f16 | f16 | bytes,   | bytes, as   |
 *   |     | a u32    | q4_0's qs   |       |     |     | as q5_0  | q4_0's qs   |
 *   +-----+----------+-------------+       +-----+-----+----------+-------------+
 *   qh is a little-endian 32-bit word whose bit j is the fifth bit (value 16) of value j:
 *   q = nibble | (bit << 4), in 0..31.
 *   q5_0: value = (q - Q50_BIAS) * d         q5_1: value = q * d + m
 */
#define Q41_D 0
#define Q41_M 2
#define Q41_QS 4
#define Q41_BYTES 20
#define Q50_D 0
#define Q50_QH 2
#define Q50_QS 6
#define Q50_BYTES 22
#define Q50_BIAS 16
#define Q51_D 0
#define Q51_M 2
#define Q51_QH 4
#define Q51_QS 8
#define Q51_BYTES 24

#endif /* KQCL_KQUANT_LAYOUT_H */
