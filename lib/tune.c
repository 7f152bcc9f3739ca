/* tune.c -- launch parameters of the fused kernels, per kind of device. */
#include "ops.h"

#include <stdlib.h>

/* Parse "a,b,c" of `count` positive ints from the environment variable `name`. */
static bool env_ints(const char *name, int *v, int count)
{
    const char *s = getenv(name);
    if (s == NULL)
        return false;
    int got = 0;
    char *end;
    while (got < count) {
        long x = strtol(s, &end, 10);
        if (end == s || x <= 0 || x > 4096)
            return false;
        v[got++] = (int)x;
        if (*end != ',')
            break;
        s = end + 1;
    }
    return got == count;
}

kq_matvec_tune kq_matvec_tune_for(const kq_device *dev)
{
    /* GPUs: a warp-wide group of lanes along k keeps each row's reads coalesced, and two rows
     * a lane halve the activation loads. CPUs (PoCL): one work-item owns 4 whole rows (with
     * k-quant weights matvec.cl's KQ_CPU kernel; float weights, one lane a row), since PoCL
     * runs a work-group as one loop and a reduction across items would only cost. */
    kq_matvec_tune t = dev->info.is_gpu ? (kq_matvec_tune){32, 4, 2} : (kq_matvec_tune){1, 1, 4};
    int v[3];
    if (env_ints("KQCL_MATVEC", v, 3))
        t = (kq_matvec_tune){v[0], v[1], v[2]};
    return t;
}

kq_matmul_tune kq_matmul_tune_for(const kq_device *dev, kqcl_type wtype)
{
    /* GPUs: 128 x 128 tiles, 8 x 8 outputs a work-item (64 FMAs per 4 vector loads from local
     * memory). CPUs, k-quant weights (matmul.cl's KQ_CPU kernel): a work-item a 256-row x
     * 512-column block, 64 x 6 register tiles, k panels of 128 (doc/perf-cpu-notes.md). CPUs,
     * float weights: the GPU-style kernel with 64 x 64 tiles. */
    kq_matmul_tune t = dev->info.is_gpu              ? (kq_matmul_tune){128, 128, 8, 8, 1}
                       : kq_type_is_kquant(wtype) ? (kq_matmul_tune){256, 512, 64, 6, 4}
                                                  : (kq_matmul_tune){64, 64, 8, 8, 1};
    int v[5];
    if (env_ints("KQCL_MATMUL", v, 5))
        t = (kq_matmul_tune){v[0], v[1], v[2], v[3], v[4]};
    return t;
}

kq_mma_tune kq_mma_tune_for(const kq_device *dev)
{
    (void)dev;
    /* 8 warps share 16 rows and split k: 4096 rows make 2048 warps, enough to cover the
     * memory latency of a 132-SM GPU. */
    kq_mma_tune t = {8, 1, 1, 1};
    int v[2];
    if (env_ints("KQCL_MMA_TUNE", v, 2))
        t = (kq_mma_tune){v[0], v[1], 1, 1};
    return t;
}

int kq_mma_min_n(const kq_device *dev)
{
    (void)dev;
    int v[1];
    return env_ints("KQCL_MMA_MIN_N", v, 1) ? v[0] : 3; /* H200, doc/perf.md: n=1 25 vs 64 us */
}

kq_mma_tune kq_mma_prefill_tune_for(const kq_device *dev, int64_t m, int64_t n, int64_t k)
{
    /* 8 warps x 32 rows share 64 activation rows staged in local memory: 256 x 64 tiles, one
     * work-group an SM at a time. Each tile is cut along k into k_splits work-groups (summed
     * after), so that a part of a split matrix, or a few activation rows, still make work for
     * every SM: with 2, the whole 4096 x 14336 q4_K at n = 512 makes 256 work-groups and half
     * of it 128 for 132 SMs. The split depends on k and n only -- never on m -- so every row
     * sums in the same order whatever share of the matrix a device holds. When even that
     * leaves half the SMs idle, 16-row warps double the work-groups: each is less efficient
     * (H200: 1770 vs 1333 us for the whole q4_K matrix at n = 512) but all SMs work. */
    int64_t blocks = k / 256;
    kq_mma_tune t = {8, 2, 8, blocks >= 16 && n <= 64 ? 4 : blocks >= 8 ? 2 : 1};
    int v[3];
    if (env_ints("KQCL_MMA_KSPLIT", v, 1))
        t.k_splits = v[0];
    int64_t groups = (m + 255) / 256 * ((n + 63) / 64) * t.k_splits;
    if (2 * groups <= (int64_t)dev->info.compute_units)
        t.m_tiles = 1;
    if (env_ints("KQCL_MMA_PREFILL", v, 3))
        t = (kq_mma_tune){v[0], v[1], v[2], t.k_splits};
    return t;
}
