/*
 * bench.cl -- the streaming-read kernel `kqcl bench` measures device memory bandwidth with.
 * Each work-item sums a grid-strided share of a float4 buffer; the sum is written only where
 * it equals an impossible sentinel, so the reads cannot be optimised away but nothing is
 * written in practice.
 */
#ifdef KQ_CPU
/* CPUs (PoCL): each work-item sums one contiguous chunk of the buffer with 64-byte vector
 * loads, so a core streams through memory linearly and the hardware prefetchers follow it;
 * the host launches work-groups of one item, several per core. */
__kernel void stream_read(const __global float4 *src, ulong count, __global float *sink)
{
    ulong items = get_global_size(0), id = get_global_id(0);
    ulong n16 = count / 4; /* float16 count */
    ulong chunk = (n16 + items - 1) / items;
    ulong b = id * chunk, e = min(b + chunk, n16);
    const __global float16 *p = (const __global float16 *)src;
    float16 a0 = (float16)0.0f, a1 = a0, a2 = a0, a3 = a0;
    ulong i = b;
    for (; i + 4 <= e; i += 4) {
        a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
    }
    for (; i < e; i++)
        a0 += p[i];
    float16 a = (a0 + a1) + (a2 + a3);
    float8 h8 = a.lo + a.hi;
    float4 h4 = h8.lo + h8.hi;
    if (id == 0)
        for (ulong j = n16 * 4; j < count; j++)
            h4 += src[j];
    float s = h4.x + h4.y + h4.z + h4.w;
    if (s == -1.2345e-37f)
        sink[id & 1023] = s;
}
#else
__kernel void stream_read(const __global float4 *src, ulong count, __global float *sink)
{
    float4 acc = (float4)0.0f;
    for (ulong i = get_global_id(0); i < count; i += get_global_size(0))
        acc += src[i];
    float s = acc.x + acc.y + acc.z + acc.w;
    if (s == -1.2345e-37f)
        sink[get_global_id(0) & 1023] = s;
}
#endif
