/*
 * variant.c -- which kernel variant a call gets on a device, and whether the device can run it.
 *
 * A variant is a kernel family built with -D options (types, shape facts, tunables). Each .cl
 * file states its tunables' constraints (#error guards) and declares its local memory from
 * them; the formulas here are the same ones, so a variant is checked before it is built: its
 * tunables against the kernel's constraints, its work-group size against
 * CL_DEVICE_MAX_WORK_GROUP_SIZE and its local memory against CL_DEVICE_LOCAL_MEM_SIZE (an AMD
 * GPU has 64 KiB, an NVIDIA one 48 KiB, a CPU runtime as little as 32 KiB). The defaults are
 * lists of candidates, largest first: a device takes the first that fits. Tunables the user set
 * are taken as given, or refused with a message -- never silently changed. `make check-kernels`
 * compiles every variant these functions can return and compares the compilers' local-memory
 * figures with the formulas.
 */
#include "variant.h"
#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static bool is_pow2(int v) { return v > 0 && (v & (v - 1)) == 0; }

/* A CPU runtime runs a work-group on one host thread, its work-items in a loop, and keeps what
 * each item holds privately across a barrier in arrays of one element an item -- on that
 * thread's stack (PoCL: a 4096-item matvec of 16 rows a lane overflows the default 8 MiB one and
 * the process dies, where 13 rows run). The stack is the process's RLIMIT_STACK (glibc's
 * default for new threads); a work-group may use a quarter of it. */
static uint64_t cpu_work_group_stack_budget(void)
{
    struct rlimit r;
    uint64_t stack = 8u << 20; /* glibc's thread stack where the limit says nothing */
    if (getrlimit(RLIMIT_STACK, &r) == 0 && r.rlim_cur != RLIM_INFINITY && r.rlim_cur > 0)
        stack = (uint64_t)r.rlim_cur;
    return stack / 4;
}

/* Whether a work-group's private memory, per_item bytes a work-item, fits where the device runs
 * it: a GPU holds it in registers and spills (its limits show in CL_KERNEL_WORK_GROUP_SIZE), a
 * CPU on a thread's stack. */
static bool private_fits(const kq_device *dev, size_t items, uint64_t per_item)
{
    return dev->info.is_gpu || items == 0 || per_item == 0 || (uint64_t)items * per_item <= cpu_work_group_stack_budget();
}

static bool fits(const kq_device *dev, const kq_variant *v)
{
    return (v->wg_items == 0 || v->wg_items <= dev->max_wg) &&
           (dev->info.local_mem_bytes == 0 || v->local_bytes <= dev->info.local_mem_bytes) &&
           private_fits(dev, v->wg_items, v->private_bytes);
}

/* The private memory a work-item of matvec.cl's or q8.cl's work-group kernel holds: per row
 * its sums (a float a column), row pointer and one unit of loaded weights (32 values: 128 bytes
 * of f32 at most); per column 8 activations and their sum; doubled, as a CPU runtime's copies
 * of what crosses a barrier measured up to 1.7x this (PoCL 3.1). */
static size_t decode_private_bytes(const kq_matvec_tune *t, int n)
{
    size_t per_row = (size_t)n * sizeof(float) + sizeof(void *) + 32 * sizeof(float);
    size_t per_col = 8 * sizeof(float) + sizeof(float);
    return 2 * ((size_t)t->rows_per_thread * per_row + (size_t)n * per_col + 64);
}

/* A variant the device cannot run: the user's tunables are refused (INVALID_ARG), a default
 * that fits nowhere is UNSUPPORTED. */
static kqcl_status no_fit(kqcl_context *ctx, const kq_device *dev, const kq_variant *v, const char *what,
                          bool from_user)
{
    if (!private_fits(dev, v->wg_items, v->private_bytes))
        return kq_fail(ctx, from_user ? KQCL_ERR_INVALID_ARG : KQCL_ERR_UNSUPPORTED,
                       "%s (%s): %zu work-items of about %zu bytes of private memory a work-group exceed the %llu bytes "
                       "a work-group of %s may take of a thread's stack",
                       what, v->options, v->wg_items, v->private_bytes,
                       (unsigned long long)cpu_work_group_stack_budget(), dev->info.name);
    return kq_fail(ctx, from_user ? KQCL_ERR_INVALID_ARG : KQCL_ERR_UNSUPPORTED,
                   "%s (%s): needs %zu work-items and %zu bytes of local memory a work-group; %s allows %zu and %llu",
                   what, v->options, v->wg_items, v->local_bytes, dev->info.name, dev->max_wg,
                   (unsigned long long)dev->info.local_mem_bytes);
}

static void add_option(kq_variant *v, const char *opt)
{
    size_t len = strlen(v->options);
    snprintf(v->options + len, sizeof v->options - len, " %s", opt);
}

/* Rows of k values, k a multiple of 32, start 32-byte aligned and end on a whole unit:
 * activations load 16 bytes at a time with no bounds check. (With k a multiple of 8 only, the
 * last unit of a float-weight row would read past the row, and past X's end.) */
static void add_alignment(kq_variant *v, int64_t k)
{
    if (k % 32 == 0)
        add_option(v, "-DX_ALIGNED");
}

/* ---- decode: matvec.cl ------------------------------------------------------------------------ */

/* The candidates of a decode kernel (matvec.cl, q8.cl), largest first: the tuning table's
 * values for the device, then the smaller ones a device with less local memory or fewer items
 * a work-group steps down to. */
#define MATVEC_CANDIDATES 8

static int matvec_candidates(const kq_device *dev, const kq_matvec_tune *first, kq_matvec_tune *out)
{
    static const kq_matvec_tune gpu[] = {{32, 4, 2}, {32, 2, 2}, {32, 1, 2}, {16, 1, 2}, {8, 1, 1}, {1, 1, 1}};
    static const kq_matvec_tune cpu[] = {{1, 1, 4}, {1, 1, 1}};
    const kq_matvec_tune *list = kq_gpu_kernels(dev) ? gpu : cpu;
    int count = kq_gpu_kernels(dev) ? COUNT(gpu) : COUNT(cpu), n = 0;
    out[n++] = *first;
    for (int i = 0; i < count; i++)
        if (memcmp(&list[i], first, sizeof *first) != 0)
            out[n++] = list[i];
    return n;
}

/* The constraints of matvec.cl's kernels; NULL when met, else what is wrong. */
static const char *matvec_broken(const kq_matvec_tune *t, bool cpu)
{
    if (cpu)
        return t->rows_per_thread > 16 ? "rows_per_thread must be at most 16 (registers)" : NULL;
    if (!is_pow2(t->threads_per_row))
        return "threads_per_row must be a power of two (the lanes of a row sum in a tree)";
    return t->rows_per_thread > 16 ? "rows_per_thread must be at most 16 (registers)" : NULL;
}

static void matvec_fill(const kq_device *dev, kqcl_type wtype, kqcl_type xtype, int n, int64_t k,
                        const kq_matvec_tune *t, kq_variant *v)
{
    memset(v, 0, sizeof *v);
    v->family = KQ_FAMILY_MATVEC;
    v->mv = *t;
    /* the CPU kernel: whole rows a work-item, k-quant weights only */
    v->cpu = !kq_gpu_kernels(dev) && t->threads_per_row == 1 && kq_type_is_kquant(wtype);
    snprintf(v->options, sizeof v->options,
             "-DWTYPE=%d -DXTYPE=%d -DTHREADS_PER_ROW=%d -DROW_GROUPS=%d -DROWS_PER_THREAD=%d -DNCOLS=%d", (int)wtype,
             (int)xtype, t->threads_per_row, t->row_groups, t->rows_per_thread, n);
    add_alignment(v, k);
    if (v->cpu)
        add_option(v, "-DKQ_CPU");
    /* matvec.cl: the CPU kernel needs ROW_GROUPS items and no local memory; the work-group
     * kernel partial[ROWS_PER_THREAD * NCOLS][WG_SIZE] floats */
    v->wg_items = v->cpu ? (size_t)t->row_groups : (size_t)t->threads_per_row * t->row_groups;
    v->local_bytes = v->cpu ? 0 : (size_t)t->rows_per_thread * n * v->wg_items * sizeof(float);
    v->private_bytes = v->cpu ? 0 : decode_private_bytes(t, n);
    v->ptx_variant = true;
}

kqcl_status kq_matvec_variant(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kqcl_type xtype, int n,
                              int64_t k, int skip, kq_variant *v)
{
    kq_matvec_tune t, list[MATVEC_CANDIDATES];
    bool from_user;
    kqcl_status st = kq_matvec_tune_for(ctx, dev, &t, &from_user);
    if (st != KQCL_OK)
        return st;
    if (from_user) { /* the user's set: checked, never changed */
        const char *who = kq_param_origin(&dev->params, KQCL_PARAM_MATVEC_THREADS_PER_ROW, 3);
        matvec_fill(dev, wtype, xtype, n, k, &t, v);
        const char *broken = matvec_broken(&t, v->cpu);
        if (broken)
            return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s (matvec %d,%d,%d): %s", who, t.threads_per_row, t.row_groups,
                           t.rows_per_thread, broken);
        return fits(dev, v) && skip == 0 ? KQCL_OK : no_fit(ctx, dev, v, who, true);
    }
    int count = matvec_candidates(dev, &t, list);
    for (int i = 0; i < count; i++) {
        matvec_fill(dev, wtype, xtype, n, k, &list[i], v);
        if (fits(dev, v) && skip-- == 0)
            return KQCL_OK;
    }
    return no_fit(ctx, dev, v, "matvec", false);
}

/* ---- prefill: matmul.cl ---------------------------------------------------------------------- */

static const char *tiled_broken(const kq_matmul_tune *t, bool cpu)
{
    if (cpu) { /* matmul.cl's KQ_CPU kernel: k panels of KC = 32 * kunits, row panels of PANEL_M */
        int panel_m = t->tile_m < 64 ? t->tile_m : 64, kc = 32 * t->kunits;
        if (t->wpt_m % 16 != 0 || panel_m % t->wpt_m != 0 || t->tile_m % panel_m != 0)
            return "wpt_m must be a multiple of 16 dividing min(tile_m, 64), which divides tile_m";
        if (256 % kc != 0 && kc % 256 != 0)
            return "32 * kunits must divide 256 or be a multiple of it";
        return t->wpt_n > 16 ? "wpt_n must be at most 16 (registers)" : NULL;
    }
    if (t->wpt_m % 4 != 0 || t->wpt_n % 4 != 0)
        return "wpt_m and wpt_n must be multiples of 4 (outputs go in float4 groups)";
    if (t->tile_m % t->wpt_m != 0 || t->tile_n % t->wpt_n != 0)
        return "tile_m and tile_n must be multiples of wpt_m and wpt_n";
    return t->wpt_m * t->wpt_n > 256 ? "wpt_m * wpt_n must be at most 256 (registers)" : NULL;
}

static void tiled_fill(const kq_device *dev, kqcl_type wtype, kqcl_type xtype, int64_t k, const kq_matmul_tune *t,
                       bool cpu, kq_variant *v)
{
    (void)dev;
    memset(v, 0, sizeof *v);
    v->family = KQ_FAMILY_MATMUL;
    v->mm = *t;
    v->cpu = cpu;
    snprintf(v->options, sizeof v->options, "-DWTYPE=%d -DXTYPE=%d -DTILE_M=%d -DTILE_N=%d -DWPT_M=%d -DWPT_N=%d -DKUNITS=%d",
             (int)wtype, (int)xtype, t->tile_m, t->tile_n, t->wpt_m, t->wpt_n, t->kunits);
    add_alignment(v, k);
    size_t kc = (size_t)32 * t->kunits;
    if (cpu) { /* Wp16[KC * PANEL_M / 16] and Xp16[KC * STRIPS * WPT_N / 16] float16s, one item */
        add_option(v, "-DKQ_CPU");
        size_t panel_m = (size_t)(t->tile_m < 64 ? t->tile_m : 64), strips = (size_t)(t->tile_n + t->wpt_n - 1) / t->wpt_n;
        v->wg_items = 1;
        v->local_bytes = kc * panel_m * sizeof(float) + kc * strips * t->wpt_n * sizeof(float);
    } else { /* Wl[KSTEP * TILE_M] and Xl[KSTEP * TILE_N] floats */
        v->wg_items = (size_t)(t->tile_m / t->wpt_m) * (size_t)(t->tile_n / t->wpt_n);
        v->local_bytes = kc * (size_t)(t->tile_m + t->tile_n) * sizeof(float);
    }
    v->ptx_variant = true;
}

typedef struct tiled_candidate {
    kq_matmul_tune t;
    bool cpu;
} tiled_candidate;

kqcl_status kq_tiled_variant(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kqcl_type xtype, int64_t k,
                             int skip, kq_variant *v)
{
    /* Largest first; the CPU lists narrow the activation panel (tile_n) before the rest, and
     * end on the work-group kernel's smallest tiles. On CPUs the KQ_CPU kernel serves the
     * k-quants; float weights, q4_0 and q8_0 take the work-group kernel (cpu_float). */
    static const tiled_candidate gpu[] = {{{128, 128, 8, 8, 1}, false}, {{64, 64, 8, 8, 1}, false},
                                          {{64, 64, 4, 4, 1}, false},   {{32, 32, 4, 4, 1}, false},
                                          {{16, 16, 4, 4, 1}, false}};
    static const tiled_candidate cpu_kquant[] = {{{256, 512, 64, 6, 4}, true}, {{256, 128, 64, 6, 4}, true},
                                                 {{256, 64, 64, 6, 4}, true},  {{256, 32, 64, 6, 2}, true},
                                                 {{64, 16, 16, 4, 1}, true},   {{16, 16, 4, 4, 1}, false}};
    static const tiled_candidate cpu_float[] = {{{64, 64, 8, 8, 1}, false}, {{32, 32, 4, 4, 1}, false},
                                                {{16, 16, 4, 4, 1}, false}};
    kq_matmul_tune t;
    bool from_user;
    kqcl_status st = kq_matmul_tune_for(ctx, dev, wtype, &t, &from_user);
    if (st != KQCL_OK)
        return st;
    bool gpu_family = kq_gpu_kernels(dev), kquant = kq_type_is_kquant(wtype);
    bool cpu = !gpu_family && kquant;
    if (from_user) { /* the user's set: checked, never changed */
        const char *who = kq_param_origin(&dev->params, KQCL_PARAM_MATMUL_TILE_M, 5);
        tiled_fill(dev, wtype, xtype, k, &t, cpu, v);
        const char *broken = tiled_broken(&t, cpu);
        if (broken)
            return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s (matmul %d,%d,%d,%d,%d): %s", who, t.tile_m, t.tile_n,
                           t.wpt_m, t.wpt_n, t.kunits, broken);
        return fits(dev, v) && skip == 0 ? KQCL_OK : no_fit(ctx, dev, v, who, true);
    }
    const tiled_candidate *list = gpu_family ? gpu : kquant ? cpu_kquant : cpu_float;
    int count = gpu_family ? COUNT(gpu) : kquant ? COUNT(cpu_kquant) : COUNT(cpu_float);
    /* the tuning table's set first, then the list's others, largest first */
    for (int i = -1; i < count; i++) {
        if (i >= 0 && list[i].cpu == cpu && memcmp(&list[i].t, &t, sizeof t) == 0)
            continue;
        tiled_fill(dev, wtype, xtype, k, i < 0 ? &t : &list[i].t, i < 0 ? cpu : list[i].cpu, v);
        if (fits(dev, v) && skip-- == 0)
            return KQCL_OK;
    }
    return no_fit(ctx, dev, v, "the tiled matmul", false);
}

/* ---- the tensor cores: mma.cl (NVIDIA, inline PTX) ---------------------------------------- */

/* mma.cl's decode kernel: partial[WARPS][MT * 4][32] floats; prefill: bl[STAGE_SLICES * NT *
 * PARTS * 32] uint2 and sl_sum[(STAGE_SLICES / 2) * 8 * NT] floats, STAGE_SLICES = 4. One program
 * holds both, so a variant's figure is the larger (the decode program's prefill kernel has the
 * file's default NT, 8). */
#define MMA_STAGE_SLICES 4
#define MMA_DEFAULT_NT 8

static size_t mma_decode_local(const kq_mma_tune *t) { return (size_t)t->warps * t->m_tiles * 4 * 32 * sizeof(float); }

static size_t mma_prefill_local(int n_tiles, int parts)
{
    return (size_t)MMA_STAGE_SLICES * n_tiles * parts * 32 * 2 * sizeof(cl_uint) +
           (size_t)(MMA_STAGE_SLICES / 2) * 8 * n_tiles * sizeof(float);
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

static kqcl_status mma_check(kqcl_context *ctx, const kq_device *dev, kq_variant *v, bool from_user,
                             const char *who)
{
    if (fits(dev, v))
        return KQCL_OK;
    if (from_user)
        return no_fit(ctx, dev, v, who, true);
    return KQCL_ERR_UNSUPPORTED; /* the defaults do not fit: the portable kernels serve */
}

int kq_mma_parts(kqcl_precision mode)
{
    return mode == KQCL_PRECISION_BF16 ? 1 : mode == KQCL_PRECISION_F16 ? 2 : 3;
}

/* The precision options of an mma variant (see mma.cl): F32 keeps the file's defaults, so its
 * programs are the ones they always were. */
static void add_mma_precision(kq_variant *v, kqcl_precision mode)
{
    char opt[48];
    if (kq_mma_parts(mode) == 3)
        return;
    snprintf(opt, sizeof opt, "-DPARTS=%d%s", kq_mma_parts(mode), mode == KQCL_PRECISION_F16 ? " -DX_ROUND_F16" : "");
    add_option(v, opt);
}

kqcl_status kq_mma_decode_variant(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kqcl_type xtype, int n,
                                  kqcl_precision mode, kq_variant *v)
{
    int min_n;
    kqcl_status st = kq_mma_min_n(ctx, dev, &min_n);
    if (st != KQCL_OK)
        return st;
    if (!dev->nv_mma || !kq_type_is_kquant(wtype) || xtype != KQCL_TYPE_F32 || n < min_n)
        return KQCL_ERR_UNSUPPORTED;
    kq_mma_tune t;
    bool from_user;
    if ((st = kq_mma_tune_for(ctx, dev, &t, &from_user)) != KQCL_OK)
        return st;
    memset(v, 0, sizeof *v);
    v->family = KQ_FAMILY_MMA;
    v->mma = t;
    snprintf(v->options, sizeof v->options, "-DWTYPE=%d -DXTYPE=0 -DWARPS=%d -DMT=%d -DKQ_NV_PTX", (int)wtype, t.warps,
             t.m_tiles);
    add_mma_precision(v, mode);
    v->wg_items = (size_t)32 * t.warps;
    v->local_bytes = max_size(mma_decode_local(&t), mma_prefill_local(MMA_DEFAULT_NT, kq_mma_parts(mode)));
    return mma_check(ctx, dev, v, from_user, kq_param_origin(&dev->params, KQCL_PARAM_MMA_WARPS, 2));
}

kqcl_status kq_mma_prefill_variant(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kqcl_type xtype,
                                   int64_t m, int64_t n, int64_t k, kqcl_precision mode, kq_variant *v)
{
    if (!dev->nv_mma || !kq_type_is_kquant(wtype) || xtype != KQCL_TYPE_F32)
        return KQCL_ERR_UNSUPPORTED;
    kq_mma_tune t;
    bool from_user;
    kqcl_status st = kq_mma_prefill_tune_for(ctx, dev, m, n, k, &t, &from_user);
    if (st != KQCL_OK)
        return st; /* k_splits: at most 64 (kqcl_param_bounds), each past the first an m x n sum */
    memset(v, 0, sizeof *v);
    v->family = KQ_FAMILY_MMA;
    v->mma = t;
    snprintf(v->options, sizeof v->options, "-DWTYPE=%d -DXTYPE=0 -DWARPS=%d -DMT=%d -DNT=%d -DKQ_NV_PTX", (int)wtype,
             t.warps, t.m_tiles, t.n_tiles);
    add_mma_precision(v, mode);
    v->wg_items = (size_t)32 * t.warps;
    v->local_bytes = max_size(mma_decode_local(&t), mma_prefill_local(t.n_tiles, kq_mma_parts(mode)));
    return mma_check(ctx, dev, v, from_user, kq_param_origin(&dev->params, KQCL_PARAM_MMA_PREFILL_WARPS, 3));
}

/* ---- Q8 precision: q8.cl ------------------------------------------------------------------- */

kqcl_status kq_q8_matvec_variant(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, int n, int64_t k,
                                 int group, int skip, kq_variant *v)
{
    /* matvec.cl's shape and candidates (the same partial[] sums in local memory), its own
     * parameters (KQCL_PARAM_MATVEC_Q8_*) */
    kq_matvec_tune t, list[MATVEC_CANDIDATES];
    bool from_user;
    kqcl_status st = kq_q8_tune_for(ctx, dev, &t, &from_user);
    if (st != KQCL_OK)
        return st;
    const char *who = kq_param_origin(&dev->params, KQCL_PARAM_MATVEC_Q8_THREADS_PER_ROW, 3);
    int count = from_user ? 1 : matvec_candidates(dev, &t, list);
    if (from_user)
        list[0] = t;
    if (from_user && !is_pow2(t.threads_per_row))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s (Q8 matvec %d,%d,%d): threads_per_row must be a power of two",
                       who, t.threads_per_row, t.row_groups, t.rows_per_thread);
    for (int i = 0; i < count; i++) {
        memset(v, 0, sizeof *v);
        v->family = KQ_FAMILY_Q8;
        v->mv = list[i];
        snprintf(v->options, sizeof v->options,
                 "-DWTYPE=%d -DTHREADS_PER_ROW=%d -DROW_GROUPS=%d -DROWS_PER_THREAD=%d -DNCOLS=%d -DGROUP=%d%s%s",
                 (int)wtype, list[i].threads_per_row, list[i].row_groups, list[i].rows_per_thread, n, group,
                 dev->int_dot ? " -DKQ_INT_DOT" : "",
                 dev->info.nv_compute_capability >= 61 ? " -DKQ_NV_DP4A" : ""); /* dp4a: sm_61 on */
        (void)k;
        v->wg_items = (size_t)list[i].threads_per_row * list[i].row_groups;
        v->local_bytes = (size_t)list[i].rows_per_thread * n * v->wg_items * sizeof(float);
        v->private_bytes = decode_private_bytes(&list[i], n);
        v->ptx_variant = true;
        if (fits(dev, v) && skip-- == 0)
            return KQCL_OK;
    }
    return no_fit(ctx, dev, v, from_user ? who : "the Q8 matvec", from_user);
}

void kq_q8_quantize_variant(kqcl_type xtype, kq_variant *v)
{
    memset(v, 0, sizeof *v);
    v->family = KQ_FAMILY_Q8;
    snprintf(v->options, sizeof v->options, "-DXTYPE=%d", (int)xtype);
    v->wg_items = 64; /* q8.cl's QUANT_WG */
    /* the program's largest kernel: its matvec_q8 with the file's defaults (32 x 4 items, one
     * row each, 8 columns), above quantize_q8's amax[], flag[] and sum[] */
    v->local_bytes = max_size(64 * (sizeof(float) + 2 * sizeof(int)), (size_t)1 * 8 * 32 * 4 * sizeof(float));
}

/* ---- the other families ------------------------------------------------------------------------ */

void kq_convert_variant(kqcl_type src_type, kqcl_type dst_type, kq_variant *v)
{
    memset(v, 0, sizeof *v);
    v->family = KQ_FAMILY_CONVERT;
    snprintf(v->options, sizeof v->options, "-DNO_CONTRACT -D%s=%d -DDTYPE=%d",
             kq_type_is_quant(src_type) ? "WTYPE" : "XTYPE", (int)src_type, (int)dst_type);
}

/* Items a work-group of reduce_rows: 256 where the device allows it; a power of two for the tree. */
static size_t reduce_wg(const kq_device *dev)
{
    size_t wg = 256;
    while (wg > dev->max_wg && wg > 1)
        wg >>= 1;
    return wg;
}

void kq_reduce_variant(const kq_device *dev, int op, kqcl_type xtype, kq_variant *v)
{
    memset(v, 0, sizeof *v);
    v->family = KQ_FAMILY_REDUCE;
    v->wg_items = reduce_wg(dev);
    v->local_bytes = 2 * v->wg_items * sizeof(float); /* sums[REDUCE_WG], comps[REDUCE_WG] */
    snprintf(v->options, sizeof v->options, "-DNO_CONTRACT -DXTYPE=%d -DREDUCE_OP=%d -DREDUCE_WG=%zu", (int)xtype, op,
             v->wg_items);
}

void kq_bench_variant(const kq_device *dev, kq_variant *v)
{
    memset(v, 0, sizeof *v);
    v->family = KQ_FAMILY_BENCH;
    v->cpu = !dev->info.is_gpu; /* the bandwidth probe follows the memory system, not the kernel family */
    snprintf(v->options, sizeof v->options, "%s", v->cpu ? "-DKQ_CPU" : "");
}

/* ---- after the build -------------------------------------------------------------------------- */

kqcl_status kq_variant_kernel(kqcl_context *ctx, kq_device *dev, const kq_variant *v, const char *name,
                              cl_kernel *out)
{
    kqcl_status st = v->ptx_variant ? kq_get_kernel_variant(ctx, dev, v->family, v->options, name, out)
                                    : kq_get_kernel(ctx, dev, v->family, v->options, name, out);
    return st == KQCL_OK ? kq_kernel_fits(ctx, dev, *out, v, name) : st;
}

kqcl_status kq_kernel_fits(kqcl_context *ctx, const kq_device *dev, cl_kernel kernel, const kq_variant *v,
                           const char *name)
{
    size_t max_items = 0;
    cl_ulong local = 0;
    if (clGetKernelWorkGroupInfo(kernel, dev->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof max_items, &max_items, NULL) !=
        CL_SUCCESS)
        max_items = 0;
    if (clGetKernelWorkGroupInfo(kernel, dev->id, CL_KERNEL_LOCAL_MEM_SIZE, sizeof local, &local, NULL) != CL_SUCCESS)
        local = 0;
    cl_ulong priv = 0;
    if (clGetKernelWorkGroupInfo(kernel, dev->id, CL_KERNEL_PRIVATE_MEM_SIZE, sizeof priv, &priv, NULL) != CL_SUCCESS)
        priv = 0;
    uint64_t per_item = v->private_bytes > priv ? v->private_bytes : priv;
    bool items_ok = max_items == 0 || v->wg_items == 0 || v->wg_items <= max_items;
    bool local_ok = dev->info.local_mem_bytes == 0 || local <= dev->info.local_mem_bytes;
    /* only where kqcl estimated it too: a runtime's figure alone (PoCL reports 1024 bytes for
     * any kernel) would refuse the large work-groups of kernels that hold next to nothing */
    bool private_ok = v->private_bytes == 0 || private_fits(dev, v->wg_items, per_item);
    if (items_ok && local_ok && private_ok)
        return KQCL_OK;
    return kq_fail(ctx, KQCL_ERR_UNSUPPORTED,
                   "kernel %s (%s) built for %s takes at most %zu work-items, %llu bytes of local memory and %llu "
                   "bytes of private memory a work-group; the launch needs %zu items of %llu bytes",
                   name, v->options, dev->info.name, max_items, (unsigned long long)local,
                   (unsigned long long)cpu_work_group_stack_budget(), v->wg_items, (unsigned long long)per_item);
}
