/*
 * bench.cl -- the streaming-read kernel `kqcl bench` measures device memory bandwidth with.
 * Each work-item sums a grid-strided share of a float4 buffer; the sum is written only where
 * it equals an impossible sentinel, so the reads cannot be optimised away but nothing is
 * written in practice.
 */
__kernel void stream_read(const __global float4 *src, ulong count, __global float *sink)
{
    float4 acc = (float4)0.0f;
    for (ulong i = get_global_id(0); i < count; i += get_global_size(0))
        acc += src[i];
    float s = acc.x + acc.y + acc.z + acc.w;
    if (s == -1.2345e-37f)
        sink[get_global_id(0) & 1023] = s;
}
