/* tune.c -- launch parameters of the fused kernels: the tuning table (the defaults, per kind of
 * device: kernel family, vendor, architecture) and the user's parameters laid over them
 * (params.c holds those, from kqcl_context_set_param or the environment at creation). Whether a
 * device can run a set is variant.c's concern. */
#include "params.h"
#include "ops.h"

#include <string.h>

struct kq_tuning {
    const char *name;
    bool (*matches)(const kq_device *dev);
    kq_matvec_tune matvec, matvec_q8;
    kq_matmul_tune matmul_kquant, matmul_other; /* the CPU family's tiled kernel is k-quants' only */
    kq_mma_tune mma;                            /* decode: warps, m_tiles */
    int mma_min_n;
};

static bool nvidia_sm80(const kq_device *dev)
{
    return kq_gpu_kernels(dev) && dev->info.nv_compute_capability >= 80;
}
static bool nvidia(const kq_device *dev) { return kq_gpu_kernels(dev) && dev->info.nv_compute_capability > 0; }
static bool vendor_is(const kq_device *dev, const char *a, const char *b)
{
    return kq_gpu_kernels(dev) && (strstr(dev->info.vendor, a) != NULL || (b && strstr(dev->info.vendor, b) != NULL));
}
static bool amd(const kq_device *dev) { return vendor_is(dev, "AMD", "Advanced Micro Devices"); }
static bool intel(const kq_device *dev) { return vendor_is(dev, "Intel", NULL); }
static bool gpu_family(const kq_device *dev) { return kq_gpu_kernels(dev); }
static bool cpu_family(const kq_device *dev) { return !kq_gpu_kernels(dev); }

/* GPUs: a warp-wide group of lanes along k keeps each row's reads coalesced, and two rows a lane
 * halve the activation loads; 128 x 128 tiles, 8 x 8 outputs a work-item (64 FMAs per 4 vector
 * loads from local memory); on NVIDIA's tensor cores 8 warps share 16 rows and split k (4096
 * rows make 2048 warps, enough to cover the memory latency of a 132-SM GPU), from n = 3 (H200,
 * doc/perf.md: n = 1 25 vs 64 us). Measured on H100 and H200 only: AMD and Intel GPUs have
 * entries of their own so that kqcl devices says so, with the same values until measured.
 * CPUs (PoCL): one work-item owns 4 whole rows (matvec.cl's KQ_CPU kernel for k-quants; float
 * weights one lane a row), since PoCL runs a work-group as one loop and a reduction across items
 * would only cost; the tiled KQ_CPU kernel a 256-row x 512-column block a work-item, 64 x 6
 * register tiles, k panels of 128 (doc/perf-cpu-notes.md); float weights the work-group kernel
 * with 64 x 64 tiles. */
#define GPU_VALUES {32, 4, 2}, {32, 4, 2}, {128, 128, 8, 8, 1}, {128, 128, 8, 8, 1}, {8, 1, 1, 1}, 3
static const kq_tuning table[] = {
    {"NVIDIA sm_80+ (measured on H100 and H200)", nvidia_sm80, GPU_VALUES},
    {"NVIDIA before sm_80 (untuned: the H200's values)", nvidia, GPU_VALUES},
    {"AMD GPU (untuned: the H200's values)", amd, GPU_VALUES},
    {"Intel GPU (untuned: the H200's values)", intel, GPU_VALUES},
    {"GPU family (untuned: the H200's values)", gpu_family, GPU_VALUES},
    {"CPU family (measured with PoCL on EPYC and Xeon)", cpu_family, {1, 1, 4}, {1, 1, 4}, {256, 512, 64, 6, 4},
     {64, 64, 8, 8, 1}, {8, 1, 1, 1}, 3},
};

const kq_tuning *kq_tuning_for(const kq_device *dev)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].matches(dev))
            return &table[i];
    return &table[sizeof table / sizeof table[0] - 1];
}

const char *kq_tuning_name(const kq_device *dev) { return dev->tuning ? dev->tuning->name : kq_tuning_for(dev)->name; }

static const kq_tuning *tuning_of(const kq_device *dev) { return dev->tuning ? dev->tuning : kq_tuning_for(dev); }

int kq_tuning_default(const kq_device *dev, kqcl_param p)
{
    const kq_tuning *t = tuning_of(dev);
    switch (p) {
    case KQCL_PARAM_MATVEC_THREADS_PER_ROW: return t->matvec.threads_per_row;
    case KQCL_PARAM_MATVEC_ROW_GROUPS: return t->matvec.row_groups;
    case KQCL_PARAM_MATVEC_ROWS_PER_THREAD: return t->matvec.rows_per_thread;
    case KQCL_PARAM_MATVEC_Q8_THREADS_PER_ROW: return t->matvec_q8.threads_per_row;
    case KQCL_PARAM_MATVEC_Q8_ROW_GROUPS: return t->matvec_q8.row_groups;
    case KQCL_PARAM_MATVEC_Q8_ROWS_PER_THREAD: return t->matvec_q8.rows_per_thread;
    case KQCL_PARAM_MATMUL_TILE_M: return t->matmul_kquant.tile_m;
    case KQCL_PARAM_MATMUL_TILE_N: return t->matmul_kquant.tile_n;
    case KQCL_PARAM_MATMUL_WPT_M: return t->matmul_kquant.wpt_m;
    case KQCL_PARAM_MATMUL_WPT_N: return t->matmul_kquant.wpt_n;
    case KQCL_PARAM_MATMUL_KUNITS: return t->matmul_kquant.kunits;
    case KQCL_PARAM_MMA_WARPS: return t->mma.warps;
    case KQCL_PARAM_MMA_M_TILES: return t->mma.m_tiles;
    case KQCL_PARAM_MMA_MIN_N: return t->mma_min_n;
    default: return KQCL_PARAM_AUTO; /* chosen per call */
    }
}

/* The user's members of a set laid over `v` (the defaults): true when any was set. */
static bool overlay(const kq_device *dev, kqcl_param first, int count, int *v)
{
    bool any = false;
    for (int i = 0; i < count; i++)
        any |= kq_param_get(&dev->params, (kqcl_param)(first + i), &v[i]);
    return any;
}

kqcl_status kq_matvec_tune_for(kqcl_context *ctx, const kq_device *dev, kq_matvec_tune *t, bool *from_user)
{
    (void)ctx;
    *t = tuning_of(dev)->matvec;
    int v[3] = {t->threads_per_row, t->row_groups, t->rows_per_thread};
    *from_user = overlay(dev, KQCL_PARAM_MATVEC_THREADS_PER_ROW, 3, v);
    *t = (kq_matvec_tune){v[0], v[1], v[2]};
    return KQCL_OK;
}

kqcl_status kq_q8_tune_for(kqcl_context *ctx, const kq_device *dev, kq_matvec_tune *t, bool *from_user)
{
    (void)ctx;
    *t = tuning_of(dev)->matvec_q8;
    int v[3] = {t->threads_per_row, t->row_groups, t->rows_per_thread};
    *from_user = overlay(dev, KQCL_PARAM_MATVEC_Q8_THREADS_PER_ROW, 3, v);
    *t = (kq_matvec_tune){v[0], v[1], v[2]};
    return KQCL_OK;
}

kqcl_status kq_matmul_tune_for(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kq_matmul_tune *t,
                               bool *from_user)
{
    (void)ctx;
    const kq_tuning *tu = tuning_of(dev);
    *t = kq_type_is_kquant(wtype) ? tu->matmul_kquant : tu->matmul_other;
    int v[5] = {t->tile_m, t->tile_n, t->wpt_m, t->wpt_n, t->kunits};
    *from_user = overlay(dev, KQCL_PARAM_MATMUL_TILE_M, 5, v);
    *t = (kq_matmul_tune){v[0], v[1], v[2], v[3], v[4]};
    return KQCL_OK;
}

kqcl_status kq_mma_tune_for(kqcl_context *ctx, const kq_device *dev, kq_mma_tune *t, bool *from_user)
{
    (void)ctx;
    *t = tuning_of(dev)->mma;
    int v[2] = {t->warps, t->m_tiles};
    *from_user = overlay(dev, KQCL_PARAM_MMA_WARPS, 2, v);
    *t = (kq_mma_tune){v[0], v[1], 1, 1};
    return KQCL_OK;
}

kqcl_status kq_mma_min_n(kqcl_context *ctx, const kq_device *dev, int *min_n)
{
    (void)ctx;
    *min_n = tuning_of(dev)->mma_min_n;
    kq_param_get(&dev->params, KQCL_PARAM_MMA_MIN_N, min_n);
    return KQCL_OK;
}

kqcl_status kq_mma_prefill_tune_for(kqcl_context *ctx, const kq_device *dev, int64_t m, int64_t n, int64_t k,
                                    kq_mma_tune *t, bool *from_user)
{
    (void)ctx;
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
    kq_param_get(&dev->params, KQCL_PARAM_MMA_KSPLIT, &t->k_splits);
    int64_t groups = (m + 255) / 256 * ((n + 63) / 64) * t->k_splits;
    if (2 * groups <= (int64_t)dev->info.compute_units)
        t->m_tiles = 1;
    int v[3] = {t->warps, t->m_tiles, t->n_tiles};
    *from_user = overlay(dev, KQCL_PARAM_MMA_PREFILL_WARPS, 3, v);
    *t = (kq_mma_tune){v[0], v[1], v[2], t->k_splits};
    return KQCL_OK;
}
