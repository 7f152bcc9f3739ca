/* tune.c -- launch parameters of the fused kernels, per kind of device: the defaults, and the
 * environment overrides for tuning experiments (read strictly: a malformed value is refused with
 * a message, never half-used). Whether a device can run them is variant.c's concern. */
#include "ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* Parse "a,b,c" of exactly `count` integers in 1..4096 from the environment variable `name`.
 * 0: not set; 1: parsed into v; KQCL_ERR_INVALID_ARG (recorded) when set but malformed. */
static int env_ints(kqcl_context *ctx, const char *name, int *v, int count, kqcl_status *st)
{
    const char *s = getenv(name);
    *st = KQCL_OK;
    if (s == NULL)
        return 0;
    const char *p = s;
    for (int got = 0; got < count; got++) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        bool last = got == count - 1;
        if (end == p || errno != 0 || x < 1 || x > 4096 || (last ? *end != '\0' : *end != ',')) {
            *st = kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s='%s': want %d integer%s in 1..4096, comma-separated", name, s,
                          count, count > 1 ? "s" : "");
            return 0;
        }
        v[got] = (int)x;
        p = end + 1;
    }
    return 1;
}

kqcl_status kq_matvec_tune_for(kqcl_context *ctx, const kq_device *dev, kq_matvec_tune *t, bool *from_env)
{
    /* GPUs: a warp-wide group of lanes along k keeps each row's reads coalesced, and two rows
     * a lane halve the activation loads. CPUs (PoCL): one work-item owns 4 whole rows (with
     * k-quant weights matvec.cl's KQ_CPU kernel; float weights, one lane a row), since PoCL
     * runs a work-group as one loop and a reduction across items would only cost. */
    *t = kq_gpu_kernels(dev) ? (kq_matvec_tune){32, 4, 2} : (kq_matvec_tune){1, 1, 4};
    int v[3];
    kqcl_status st;
    *from_env = env_ints(ctx, "KQCL_MATVEC", v, 3, &st);
    if (*from_env)
        *t = (kq_matvec_tune){v[0], v[1], v[2]};
    return st;
}

kqcl_status kq_q8_tune_for(kqcl_context *ctx, const kq_device *dev, kq_matvec_tune *t, bool *from_env)
{
    /* As matvec: a row's activations are a quarter of the f32 bytes, so the same two rows a
     * lane serve. */
    *t = kq_gpu_kernels(dev) ? (kq_matvec_tune){32, 4, 2} : (kq_matvec_tune){1, 1, 4};
    int v[3];
    kqcl_status st;
    *from_env = env_ints(ctx, "KQCL_MATVEC_Q8", v, 3, &st);
    if (*from_env)
        *t = (kq_matvec_tune){v[0], v[1], v[2]};
    return st;
}

kqcl_status kq_matmul_tune_for(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kq_matmul_tune *t,
                               bool *from_env)
{
    /* GPUs: 128 x 128 tiles, 8 x 8 outputs a work-item (64 FMAs per 4 vector loads from local
     * memory). CPUs, k-quant weights (matmul.cl's KQ_CPU kernel): a work-item a 256-row x
     * 512-column block, 64 x 6 register tiles, k panels of 128 (doc/perf-cpu-notes.md). CPUs,
     * float weights: the GPU-style kernel with 64 x 64 tiles. */
    *t = kq_gpu_kernels(dev)        ? (kq_matmul_tune){128, 128, 8, 8, 1}
         : kq_type_is_kquant(wtype) ? (kq_matmul_tune){256, 512, 64, 6, 4}
                                    : (kq_matmul_tune){64, 64, 8, 8, 1};
    int v[5];
    kqcl_status st;
    *from_env = env_ints(ctx, "KQCL_MATMUL", v, 5, &st);
    if (*from_env)
        *t = (kq_matmul_tune){v[0], v[1], v[2], v[3], v[4]};
    return st;
}

kqcl_status kq_mma_tune_for(kqcl_context *ctx, const kq_device *dev, kq_mma_tune *t)
{
    (void)dev;
    /* 8 warps share 16 rows and split k: 4096 rows make 2048 warps, enough to cover the
     * memory latency of a 132-SM GPU. */
    *t = (kq_mma_tune){8, 1, 1, 1};
    int v[2];
    kqcl_status st;
    if (env_ints(ctx, "KQCL_MMA_TUNE", v, 2, &st))
        *t = (kq_mma_tune){v[0], v[1], 1, 1};
    return st;
}

kqcl_status kq_mma_min_n(kqcl_context *ctx, const kq_device *dev, int *min_n)
{
    (void)dev;
    int v[1];
    kqcl_status st;
    *min_n = env_ints(ctx, "KQCL_MMA_MIN_N", v, 1, &st) ? v[0] : 3; /* H200, doc/perf.md: n=1 25 vs 64 us */
    return st;
}

kqcl_status kq_mma_prefill_tune_for(kqcl_context *ctx, const kq_device *dev, int64_t m, int64_t n, int64_t k,
                                    kq_mma_tune *t)
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
    *t = (kq_mma_tune){8, 2, 8, blocks >= 16 && n <= 64 ? 4 : blocks >= 8 ? 2 : 1};
    int v[3];
    kqcl_status st;
    if (env_ints(ctx, "KQCL_MMA_KSPLIT", v, 1, &st))
        t->k_splits = v[0];
    if (st != KQCL_OK)
        return st;
    int64_t groups = (m + 255) / 256 * ((n + 63) / 64) * t->k_splits;
    if (2 * groups <= (int64_t)dev->info.compute_units)
        t->m_tiles = 1;
    if (env_ints(ctx, "KQCL_MMA_PREFILL", v, 3, &st))
        *t = (kq_mma_tune){v[0], v[1], v[2], t->k_splits};
    return st;
}
