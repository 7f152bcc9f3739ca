/*
 * convert.cl -- element conversions between f32, f16 and bf16, and device dequantization of
 * k-quant rows. Built with -DNO_CONTRACT so results are bit-identical to the host codec.
 *
 * Options: XTYPE (the source float type, as for activations), DTYPE (destination float type),
 * WTYPE (the k-quant type, for `dequantize`).
 */
#ifndef DTYPE
#define DTYPE TYPE_F32
#endif

static inline void store_value(__global void *dst, ulong i, float v)
{
#if DTYPE == TYPE_F32
    ((__global float *)dst)[i] = v;
#elif DTYPE == TYPE_F16
    ((__global ushort *)dst)[i] = float_to_half_bits(v);
#else
    ((__global ushort *)dst)[i] = float_to_bf16(v);
#endif
}

/* dst[i] = src[i] for i < count, each work-item taking a grid-strided share. */
__kernel void convert_elements(const __global XT *src, __global void *dst, ulong count)
{
    for (ulong i = get_global_id(0); i < count; i += get_global_size(0))
        store_value(dst, i, x_at(src, i));
}

#if W_IS_QUANT
/* One work-item a unit (32 values) of one row; rows * units_per_row work-items in all. */
__kernel void dequantize(const __global uchar *src, ulong row_bytes, __global void *dst,
                         ulong rows, int k)
{
    int units = units_per_row(k);
    ulong total = rows * (ulong)units;
    for (ulong t = get_global_id(0); t < total; t += get_global_size(0)) {
        ulong row = t / (ulong)units;
        int g = (int)(t % (ulong)units);
        const __global uchar *wrow = src + row * row_bytes;
        for (int r = 0; r < 4; r++) {
            float vals[8];
            vstore8(weight_run(wrow, g, r, k), 0, vals);
            ulong base = row * (ulong)k + (ulong)run_position(g, r);
            for (int i = 0; i < 8; i++)
                store_value(dst, base + (ulong)i, vals[i]);
        }
    }
}
#endif
