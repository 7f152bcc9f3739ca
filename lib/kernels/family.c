/*
 * family.c -- the kernel families' descriptors and the one function that turns a descriptor into
 * a variant (family.h).
 *
 * A variant is a family built with -D options (types, shape facts, tunables). Each .cl file
 * states its tunables' constraints (#error guards) and declares its local memory from them; a
 * descriptor holds the same formulas, so a variant is checked before it is built: its tunables
 * against the kernel's constraints, its work-group size against CL_DEVICE_MAX_WORK_GROUP_SIZE,
 * its local memory against CL_DEVICE_LOCAL_MEM_SIZE (an AMD GPU has 64 KiB, an NVIDIA one 48 KiB,
 * a CPU runtime as little as 32 KiB) and, on CPUs, its private memory against a thread's stack.
 * The defaults are lists of candidates, largest first: a device takes the first that fits.
 * Tunables the user set are taken as given, or refused with a message -- never silently
 * changed. `make check-kernels` compiles every variant the descriptors can give and compares the
 * compilers' local-memory figures with the formulas.
 */
#include "kernels/family.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static bool is_pow2(int v) { return v > 0 && (v & (v - 1)) == 0; }
static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

static void add_option(kq_variant *v, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void add_option(kq_variant *v, const char *fmt, ...)
{
    size_t len = strlen(v->options);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->options + len, sizeof v->options - len, fmt, ap);
    va_end(ap);
}

/* ---- kinds of device ------------------------------------------------------------------------ */

/* The kinds the defaults are chosen for. Measured on H100 and H200 only: AMD and Intel GPUs
 * have kinds of their own so that `kqcl devices` says so, with the same values until measured. */
enum { KIND_NVIDIA_SM80, KIND_NVIDIA, KIND_AMD, KIND_INTEL, KIND_GPU, KIND_CPU };

static const char *const kind_names[] = {
    [KIND_NVIDIA_SM80] = "NVIDIA sm_80+ (measured on H100 and H200)",
    [KIND_NVIDIA] = "NVIDIA before sm_80 (untuned: the H200's values)",
    [KIND_AMD] = "AMD GPU (untuned: the H200's values)",
    [KIND_INTEL] = "Intel GPU (untuned: the H200's values)",
    [KIND_GPU] = "GPU family (untuned: the H200's values)",
    [KIND_CPU] = "CPU family (measured with PoCL on EPYC and Xeon)",
};

static bool vendor_is(const kq_device *dev, const char *name) { return strstr(dev->info.vendor, name) != NULL; }

int kq_device_kind(const kq_device *dev)
{
    if (!kq_gpu_kernels(dev))
        return KIND_CPU;
    if (dev->info.nv_compute_capability >= 80)
        return KIND_NVIDIA_SM80;
    if (dev->info.nv_compute_capability > 0)
        return KIND_NVIDIA;
    if (vendor_is(dev, "AMD") || vendor_is(dev, "Advanced Micro Devices"))
        return KIND_AMD;
    return vendor_is(dev, "Intel") ? KIND_INTEL : KIND_GPU;
}

const char *kq_device_kind_name(const kq_device *dev) { return kind_names[kq_device_kind(dev)]; }

/* ---- what fits a device --------------------------------------------------------------------- */

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

/* Rows of k values, k a multiple of 32, start 32-byte aligned and end on a whole unit:
 * activations load 16 bytes at a time with no bounds check. (With k a multiple of 8 only, the
 * last unit of a float-weight row would read past the row, and past X's end.) */
static void add_alignment(kq_variant *v, int64_t k)
{
    if (k % 32 == 0)
        add_option(v, " -DX_ALIGNED");
}

/* ---- decode: matvec.cl and q8.cl's matvec_q8 ------------------------------------------------ */

enum { MV_THREADS_PER_ROW, MV_ROW_GROUPS, MV_ROWS_PER_THREAD };

static const kq_tunable matvec_tunables[] = {
    {KQCL_PARAM_MATVEC_THREADS_PER_ROW, "matvec_threads_per_row", 1, 1024, "KQCL_MATVEC", 0, "THREADS_PER_ROW"},
    {KQCL_PARAM_MATVEC_ROW_GROUPS, "matvec_row_groups", 1, 1024, "KQCL_MATVEC", 1, "ROW_GROUPS"},
    /* 16: the registers a lane's rows take (matvec.cl's and q8.cl's guards) */
    {KQCL_PARAM_MATVEC_ROWS_PER_THREAD, "matvec_rows_per_thread", 1, 16, "KQCL_MATVEC", 2, "ROWS_PER_THREAD"},
};

static const kq_tunable q8_matvec_tunables[] = {
    {KQCL_PARAM_MATVEC_Q8_THREADS_PER_ROW, "matvec_q8_threads_per_row", 1, 1024, "KQCL_MATVEC_Q8", 0,
     "THREADS_PER_ROW"},
    {KQCL_PARAM_MATVEC_Q8_ROW_GROUPS, "matvec_q8_row_groups", 1, 1024, "KQCL_MATVEC_Q8", 1, "ROW_GROUPS"},
    {KQCL_PARAM_MATVEC_Q8_ROWS_PER_THREAD, "matvec_q8_rows_per_thread", 1, 16, "KQCL_MATVEC_Q8", 2,
     "ROWS_PER_THREAD"},
};

/* GPUs: a warp-wide group of lanes along k keeps each row's reads coalesced, and two rows a lane
 * halve the activation loads (measured on H100 and H200). CPUs (PoCL): one work-item owns 4
 * whole rows (matvec.cl's KQ_CPU kernel for quantized weights; float weights one lane a row), since PoCL
 * runs a work-group as one loop and a reduction across items would only cost. The smaller sets
 * are what a device with less local memory or fewer items a work-group steps down to. */
static const kq_candidate matvec_gpu[] = {{{32, 4, 2}, false}, {{32, 2, 2}, false}, {{32, 1, 2}, false},
                                          {{16, 1, 2}, false}, {{8, 1, 1}, false},  {{1, 1, 1}, false}};
static const kq_candidate matvec_cpu[] = {{{1, 1, 4}, false}, {{1, 1, 1}, false}};
/* The small blocks' rows are short (a few hundred bytes in real models): eight rows an item
 * halves the items PoCL schedules and converts the rows' scale halves in two vectors (PoCL,
 * 1536 x 576 q4_1, best of 300: 37 us against 66 with four; doc/perf.md run 23). */
static const kq_candidate matvec_cpu_small[] = {{{1, 1, 8}, false}, {{1, 1, 4}, false}, {{1, 1, 1}, false}};

/* Long rows at n <= 2 in the float modes: 64 lanes a row halve each warp's serial walk along k
 * (448 units at k = 14336: 7 steps, not 14), which is what bounds the float kernel there (H100,
 * doc/perf.md run 26, n = 1, k = 14336: q4_K 32.3 -> 27.2 us, q6_K 44.8 -> 33.7, q8_0 unchanged).
 * At k = 4096 (2 steps either way) it lost 10-15%, at n = 8 up to 30% (q4_0), and Q8's
 * matvec_q8 gained nothing: those keep a warp a row. */
static const kq_candidate matvec_gpu_long[] = {{{64, 1, 2}, false}, {{32, 4, 2}, false}, {{32, 2, 2}, false},
                                               {{32, 1, 2}, false}, {{16, 1, 2}, false}, {{8, 1, 1}, false},
                                               {{1, 1, 1}, false}};
#define KQ_LONG_ROW 8192 /* values from which a float-mode row takes matvec_gpu_long */

static kq_candidates matvec_candidates(const kq_device *dev, const kq_shape *s)
{
    if (kq_gpu_kernels(dev) && s->mode != KQCL_PRECISION_Q8 && s->k >= KQ_LONG_ROW && s->n <= 2)
        return (kq_candidates){matvec_gpu_long, COUNT(matvec_gpu_long)};
    if (kq_gpu_kernels(dev))
        return (kq_candidates){matvec_gpu, COUNT(matvec_gpu)};
    return kq_type_is_quant(s->wtype) && !kq_type_is_kquant(s->wtype)
               ? (kq_candidates){matvec_cpu_small, COUNT(matvec_cpu_small)}
               : (kq_candidates){matvec_cpu, COUNT(matvec_cpu)};
}

static const char *matvec_broken(const int *v, bool cpu_form)
{
    if (!cpu_form && !is_pow2(v[MV_THREADS_PER_ROW]))
        return "threads_per_row must be a power of two (the lanes of a row sum in a tree)";
    return NULL;
}

/* The private memory a work-item of matvec.cl's or q8.cl's work-group kernel holds: per row
 * its sums (a float a column), row pointer and one unit of loaded weights (32 values: 128 bytes
 * of f32 at most); per column 8 activations and their sum; doubled, as a CPU runtime's copies
 * of what crosses a barrier measured up to 1.7x this (PoCL 3.1). */
static size_t decode_private_bytes(int rows_per_thread, int64_t n)
{
    size_t per_row = (size_t)n * sizeof(float) + sizeof(void *) + 32 * sizeof(float);
    size_t per_col = 8 * sizeof(float) + sizeof(float);
    return 2 * ((size_t)rows_per_thread * per_row + (size_t)n * per_col + 64);
}

/* The work-group kernel's partial[ROWS * NCOLS][WG_SIZE] floats (both files; ROWS is
 * ROWS_PER_THREAD, twice that in matvec.cl's GLU form, which sums a gate and an up row each). */
static void decode_work_group(const kq_shape *s, kq_variant *v)
{
    int rows = v->t[MV_ROWS_PER_THREAD] * (s->glu ? 2 : 1);
    v->wg_items = (size_t)v->t[MV_THREADS_PER_ROW] * v->t[MV_ROW_GROUPS];
    v->local_bytes = (size_t)rows * (size_t)s->n * v->wg_items * sizeof(float);
    if (s->norm) /* the normalised X (matvec.cl's XS_STRIDE float4s a row) and one flag */
        v->local_bytes += kq_norm_x_bytes(s->n, s->k) + sizeof(int);
    v->private_bytes = decode_private_bytes(rows, s->n);
}

size_t kq_norm_x_bytes(int64_t n, int64_t k) { return (size_t)n * (size_t)(k / 4 + k / 32) * 4 * sizeof(float); }

static void matvec_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    /* the CPU kernel: whole rows a work-item, block-quantized weights only; ROW_GROUPS items, no local memory */
    v->cpu = !kq_gpu_kernels(dev) && v->t[MV_THREADS_PER_ROW] == 1 && kq_type_is_quant(s->wtype);
    add_option(v, " -DNCOLS=%d", (int)s->n);
    if (s->group > 1) /* weights served by one launch (matmul.c's groups) */
        add_option(v, " -DGROUP=%d", s->group);
    if (s->glu) /* gate and up with the activation (kqcl_matmul_glu) */
        add_option(v, " -DGLU=%d", s->glu);
    add_alignment(v, s->k);
    if (s->norm && !v->cpu) /* X normalised in the launch (kqcl_norm_matmul_group; not the CPU form) */
        add_option(v, " -DNORM=1");
    if (v->cpu) {
        add_option(v, " -DKQ_CPU");
        v->wg_items = (size_t)v->t[MV_ROW_GROUPS];
        return;
    }
    decode_work_group(s, v);
}

/* A work-group a ROW_GROUPS x ROWS_PER_THREAD block of rows, THREADS_PER_ROW lanes a row. */
static unsigned decode_geometry(const kq_variant *v, const kq_shape *s, size_t *global, size_t *local)
{
    size_t rows_per_wg = (size_t)v->t[MV_ROW_GROUPS] * v->t[MV_ROWS_PER_THREAD];
    local[0] = v->wg_items;
    global[0] = ((size_t)s->m + rows_per_wg - 1) / rows_per_wg * local[0];
    return 1;
}

const kq_family_desc kq_matvec_family = {
    .name = "matvec",
    .program = KQ_FAMILY_MATVEC,
    .type_options = KQ_OPT_WTYPE | KQ_OPT_XTYPE,
    .n_tunables = COUNT(matvec_tunables),
    .tunables = matvec_tunables,
    .candidates = matvec_candidates,
    .broken = matvec_broken,
    .layout = matvec_layout,
    .geometry = decode_geometry,
    .ptx_variant = true,
    .steps_down = true,
};

static void q8_matvec_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    add_option(v, " -DNCOLS=%d -DGROUP=%d%s%s", (int)s->n, s->group, dev->int_dot ? " -DKQ_INT_DOT" : "",
               dev->info.nv_compute_capability >= 61 ? " -DKQ_NV_DP4A" : ""); /* dp4a: sm_61 on */
    decode_work_group(s, v);
}

const kq_family_desc kq_q8_matvec_family = {
    .name = "Q8 matvec",
    .program = KQ_FAMILY_Q8,
    .type_options = KQ_OPT_WTYPE,
    .n_tunables = COUNT(q8_matvec_tunables),
    .tunables = q8_matvec_tunables,
    .candidates = matvec_candidates, /* matvec.cl's shape and sets, its own parameters */
    .broken = matvec_broken,
    .layout = q8_matvec_layout,
    .geometry = decode_geometry,
    .ptx_variant = true,
    .steps_down = true,
};

/* q8.cl's quantizer: QUANT_WG items a work-group, a value an item. The program's largest kernel
 * is its matvec_q8 with the file's defaults (32 x 4 items, one row each, 8 columns), above
 * quantize_q8's amax[], flag[] and sum[]. */
#define Q8_QUANT_WG 64

static void q8_quantize_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    (void)dev, (void)s;
    add_option(v, " -DQUANT_WG=%d", Q8_QUANT_WG);
    v->wg_items = Q8_QUANT_WG;
    v->local_bytes = max_size(Q8_QUANT_WG * (sizeof(float) + 2 * sizeof(int)), (size_t)1 * 8 * 32 * 4 * sizeof(float));
}

/* A value an item, grid-striding past 2^22. */
static unsigned q8_quantize_geometry(const kq_variant *v, const kq_shape *s, size_t *global, size_t *local)
{
    size_t values = (size_t)s->n * (size_t)s->k, cap = (size_t)1 << 22;
    local[0] = v->wg_items;
    global[0] = ((values < cap ? values : cap) + local[0] - 1) / local[0] * local[0];
    return 1;
}

const kq_family_desc kq_q8_quantize_family = {
    .name = "Q8 quantize",
    .program = KQ_FAMILY_Q8,
    .type_options = KQ_OPT_XTYPE,
    .layout = q8_quantize_layout,
    .geometry = q8_quantize_geometry,
};

/* ---- prefill: matmul.cl ------------------------------------------------------------------------ */

enum { MM_TILE_M, MM_TILE_N, MM_WPT_M, MM_WPT_N, MM_KUNITS };

static const kq_tunable tiled_tunables[] = {
    {KQCL_PARAM_MATMUL_TILE_M, "matmul_tile_m", 1, 4096, "KQCL_MATMUL", 0, "TILE_M"},
    {KQCL_PARAM_MATMUL_TILE_N, "matmul_tile_n", 1, 4096, "KQCL_MATMUL", 1, "TILE_N"},
    {KQCL_PARAM_MATMUL_WPT_M, "matmul_wpt_m", 1, 256, "KQCL_MATMUL", 2, "WPT_M"},
    {KQCL_PARAM_MATMUL_WPT_N, "matmul_wpt_n", 1, 256, "KQCL_MATMUL", 3, "WPT_N"},
    {KQCL_PARAM_MATMUL_KUNITS, "matmul_kunits", 1, 64, "KQCL_MATMUL", 4, "KUNITS"},
};

/* GPUs: 128 x 128 tiles, 8 x 8 outputs a work-item (64 FMAs per 4 vector loads from local
 * memory). CPUs: the quantized weights (k-quants and small blocks) take the KQ_CPU kernel, a
 * 256-row x 512-column block a work-item, 64 x 6 register tiles, k panels of 128
 * (doc/perf-cpu-notes.md), narrowing the activation panel (tile_n) first and ending on the
 * work-group kernel's smallest tiles; float weights the work-group kernel with 64 x 64 tiles. */
static const kq_candidate tiled_gpu[] = {{{128, 128, 8, 8, 1}, false}, {{64, 64, 8, 8, 1}, false},
                                         {{64, 64, 4, 4, 1}, false},   {{32, 32, 4, 4, 1}, false},
                                         {{16, 16, 4, 4, 1}, false}};
static const kq_candidate tiled_cpu_quant[] = {{{256, 512, 64, 6, 4}, true}, {{256, 128, 64, 6, 4}, true},
                                                {{256, 64, 64, 6, 4}, true},  {{256, 32, 64, 6, 2}, true},
                                                {{64, 16, 16, 4, 1}, true},   {{16, 16, 4, 4, 1}, false}};
static const kq_candidate tiled_cpu_float[] = {{{64, 64, 8, 8, 1}, false}, {{32, 32, 4, 4, 1}, false},
                                               {{16, 16, 4, 4, 1}, false}};

static kq_candidates tiled_candidates(const kq_device *dev, const kq_shape *s)
{
    if (kq_gpu_kernels(dev))
        return (kq_candidates){tiled_gpu, COUNT(tiled_gpu)};
    return kq_type_is_quant(s->wtype) ? (kq_candidates){tiled_cpu_quant, COUNT(tiled_cpu_quant)}
                                      : (kq_candidates){tiled_cpu_float, COUNT(tiled_cpu_float)};
}

static const char *tiled_broken(const int *v, bool cpu_form)
{
    if (cpu_form) { /* matmul.cl's KQ_CPU kernel: k panels of KC = 32 * kunits, row panels of PANEL_M */
        int panel_m = v[MM_TILE_M] < 64 ? v[MM_TILE_M] : 64, kc = 32 * v[MM_KUNITS];
        if (v[MM_WPT_M] % 16 != 0 || panel_m % v[MM_WPT_M] != 0 || v[MM_TILE_M] % panel_m != 0)
            return "wpt_m must be a multiple of 16 dividing min(tile_m, 64), which divides tile_m";
        if (256 % kc != 0 && kc % 256 != 0)
            return "32 * kunits must divide 256 or be a multiple of it";
        return v[MM_WPT_N] > 16 ? "wpt_n must be at most 16 (registers)" : NULL;
    }
    if (v[MM_WPT_M] % 4 != 0 || v[MM_WPT_N] % 4 != 0)
        return "wpt_m and wpt_n must be multiples of 4 (outputs go in float4 groups)";
    if (v[MM_TILE_M] % v[MM_WPT_M] != 0 || v[MM_TILE_N] % v[MM_WPT_N] != 0)
        return "tile_m and tile_n must be multiples of wpt_m and wpt_n";
    return v[MM_WPT_M] * v[MM_WPT_N] > 256 ? "wpt_m * wpt_n must be at most 256 (registers)" : NULL;
}

static void tiled_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    (void)dev;
    const int *t = v->t;
    size_t kc = (size_t)32 * t[MM_KUNITS];
    add_alignment(v, s->k);
    if (v->cpu) { /* Wp16[KC * PANEL_M / 16] and Xp16[KC * STRIPS * WPT_N / 16] float16s, one item */
        add_option(v, " -DKQ_CPU");
        size_t panel_m = (size_t)(t[MM_TILE_M] < 64 ? t[MM_TILE_M] : 64);
        size_t strips = (size_t)(t[MM_TILE_N] + t[MM_WPT_N] - 1) / t[MM_WPT_N];
        v->wg_items = 1;
        v->local_bytes = kc * panel_m * sizeof(float) + kc * strips * t[MM_WPT_N] * sizeof(float);
    } else { /* Wl[KSTEP * TILE_M] and Xl[KSTEP * TILE_N] floats */
        v->wg_items = (size_t)(t[MM_TILE_M] / t[MM_WPT_M]) * (size_t)(t[MM_TILE_N] / t[MM_WPT_N]);
        v->local_bytes = kc * (size_t)(t[MM_TILE_M] + t[MM_TILE_N]) * sizeof(float);
    }
}

/* A work-group a tile_m x tile_n block of the output (in size_t: m + tile_m - 1 overflows an
 * int for m near INT32_MAX). */
static unsigned tiled_geometry(const kq_variant *v, const kq_shape *s, size_t *global, size_t *local)
{
    size_t tm = (size_t)v->t[MM_TILE_M], tn = (size_t)v->t[MM_TILE_N];
    local[0] = v->wg_items;
    local[1] = 1;
    global[0] = ((size_t)s->m + tm - 1) / tm * local[0];
    global[1] = ((size_t)s->n + tn - 1) / tn;
    return 2;
}

const kq_family_desc kq_tiled_family = {
    .name = "matmul",
    .program = KQ_FAMILY_MATMUL,
    .type_options = KQ_OPT_WTYPE | KQ_OPT_XTYPE,
    .n_tunables = COUNT(tiled_tunables),
    .tunables = tiled_tunables,
    .candidates = tiled_candidates,
    .broken = tiled_broken,
    .layout = tiled_layout,
    .geometry = tiled_geometry,
    .ptx_variant = true,
    .steps_down = true,
};

/* ---- the tensor cores: mma.cl (NVIDIA, inline PTX) ---------------------------------------- */

enum { MMA_WARPS, MMA_M_TILES, MMA_MIN_N };               /* decode */
enum { MMP_WARPS, MMP_M_TILES, MMP_N_TILES, MMP_K_SPLITS }; /* prefill */

static const kq_tunable mma_decode_tunables[] = {
    {KQCL_PARAM_MMA_WARPS, "mma_warps", 1, 32, "KQCL_MMA_TUNE", 0, "WARPS"},
    {KQCL_PARAM_MMA_M_TILES, "mma_m_tiles", 1, 16, "KQCL_MMA_TUNE", 1, "MT"},
    /* the smallest n the kernel takes: below it the FMA matvec is faster, its cost growing
     * with n where the mma kernel's barely does */
    {KQCL_PARAM_MMA_MIN_N, "mma_min_n", 1, 4096, "KQCL_MMA_MIN_N", 0, NULL},
};

static const kq_tunable mma_prefill_tunables[] = {
    {KQCL_PARAM_MMA_PREFILL_WARPS, "mma_prefill_warps", 1, 32, "KQCL_MMA_PREFILL", 0, "WARPS"},
    {KQCL_PARAM_MMA_PREFILL_M_TILES, "mma_prefill_m_tiles", 1, 16, "KQCL_MMA_PREFILL", 1, "MT"},
    {KQCL_PARAM_MMA_PREFILL_N_TILES, "mma_prefill_n_tiles", 1, 16, "KQCL_MMA_PREFILL", 2, "NT"},
    /* work-groups along k, summed after: at most 64, each past the first an m x n sum */
    {KQCL_PARAM_MMA_KSPLIT, "mma_ksplit", 1, 64, "KQCL_MMA_KSPLIT", 0, NULL},
};

/* Decode: 8 warps share 16 rows and split k (4096 rows make 2048 warps, enough to cover the
 * memory latency of a 132-SM GPU), from n = 3 (H200, doc/perf.md: n = 1 25 vs 64 us). */
static const kq_candidate mma_decode_sets[] = {{{8, 1, 3}, false}};
/* Prefill: 8 warps x 32 rows share 64 activation rows staged in local memory; the k-splits and
 * the row tiles follow the shape (mma_prefill_shape). */
static const kq_candidate mma_prefill_sets[] = {{{8, 2, 8, 0}, false}};

static kq_candidates mma_decode_candidates(const kq_device *dev, const kq_shape *s)
{
    (void)dev, (void)s;
    return (kq_candidates){mma_decode_sets, COUNT(mma_decode_sets)};
}

static kq_candidates mma_prefill_candidates(const kq_device *dev, const kq_shape *s)
{
    (void)dev, (void)s;
    return (kq_candidates){mma_prefill_sets, COUNT(mma_prefill_sets)};
}

static bool mma_applies(const kq_device *dev, const kq_shape *s)
{
    return dev->nv_mma && kq_type_is_kquant(s->wtype) && s->xtype == KQCL_TYPE_F32;
}

static bool mma_decode_applies(const kq_device *dev, const kq_shape *s, const int *v)
{
    return mma_applies(dev, s) && s->n >= v[MMA_MIN_N];
}

static bool mma_prefill_applies(const kq_device *dev, const kq_shape *s, const int *v)
{
    (void)v;
    return mma_applies(dev, s);
}

/* Each 256 x 64 tile is cut along k into k_splits work-groups (summed after), so that a part of
 * a split matrix, or a few activation rows, still make work for every SM: with 2, the whole
 * 4096 x 14336 q4_K at n = 512 makes 256 work-groups and half of it 128 for 132 SMs. The split
 * depends on k and n only -- never on m -- so every row sums in the same order whatever share of
 * the matrix a device holds. When even that leaves half the SMs idle, 16-row warps double the
 * work-groups: each is less efficient (H200: 1770 vs 1333 us for the whole q4_K matrix at
 * n = 512) but all SMs work. */
static void mma_prefill_shape(const kq_device *dev, const kq_shape *s, int *v)
{
    int64_t blocks = s->k / 256;
    if (v[MMP_K_SPLITS] == 0)
        v[MMP_K_SPLITS] = blocks >= 16 && s->n <= 64 ? 4 : blocks >= 8 ? 2 : 1;
    int64_t groups = (s->m + 255) / 256 * ((s->n + 63) / 64) * v[MMP_K_SPLITS];
    if (2 * groups <= (int64_t)dev->info.compute_units)
        v[MMP_M_TILES] = 1;
}

int kq_mma_parts(kqcl_precision mode)
{
    return mode == KQCL_PRECISION_BF16 ? 1 : mode == KQCL_PRECISION_F16 ? 2 : 3;
}

/* mma.cl's decode kernel: partial[WARPS][MT * 4][32] floats; prefill: bl[STAGE_SLICES * NT *
 * PARTS * 32] uint2 and sl_sum[(STAGE_SLICES / 2) * 8 * NT] floats, STAGE_SLICES = 4. One program
 * holds both, so a variant's figure is the larger (the decode program's prefill kernel has the
 * file's default NT, 8). */
#define MMA_STAGE_SLICES 4
#define MMA_DEFAULT_NT 8

static size_t mma_decode_local(int warps, int m_tiles) { return (size_t)warps * m_tiles * 4 * 32 * sizeof(float); }

static size_t mma_prefill_local(int n_tiles, int parts)
{
    return (size_t)MMA_STAGE_SLICES * n_tiles * parts * 32 * 2 * sizeof(cl_uint) +
           (size_t)(MMA_STAGE_SLICES / 2) * 8 * n_tiles * sizeof(float);
}

/* The precision options (see mma.cl): F32 keeps the file's defaults, so its programs are the
 * ones they always were. */
static void add_mma_options(kq_variant *v, kqcl_precision mode)
{
    add_option(v, " -DKQ_NV_PTX");
    if (kq_mma_parts(mode) != 3)
        add_option(v, " -DPARTS=%d%s", kq_mma_parts(mode), mode == KQCL_PRECISION_F16 ? " -DX_ROUND_F16" : "");
}

static void mma_decode_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    (void)dev;
    add_mma_options(v, s->mode);
    v->wg_items = (size_t)32 * v->t[MMA_WARPS];
    v->local_bytes = max_size(mma_decode_local(v->t[MMA_WARPS], v->t[MMA_M_TILES]),
                              mma_prefill_local(MMA_DEFAULT_NT, kq_mma_parts(s->mode)));
}

static void mma_prefill_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    (void)dev;
    add_mma_options(v, s->mode);
    v->wg_items = (size_t)32 * v->t[MMP_WARPS];
    v->local_bytes = max_size(mma_decode_local(v->t[MMP_WARPS], v->t[MMP_M_TILES]),
                              mma_prefill_local(v->t[MMP_N_TILES], kq_mma_parts(s->mode)));
}

/* Decode: a warp a 16-row tile, MT tiles a warp's rows. */
static unsigned mma_decode_geometry(const kq_variant *v, const kq_shape *s, size_t *global, size_t *local)
{
    size_t rows_per_wg = (size_t)16 * v->t[MMA_M_TILES];
    local[0] = v->wg_items;
    global[0] = ((size_t)s->m + rows_per_wg - 1) / rows_per_wg * local[0];
    return 1;
}

/* Prefill: a work-group WARPS x MT 16-row tiles by NT 8-column tiles, k_splits along k. */
static unsigned mma_prefill_geometry(const kq_variant *v, const kq_shape *s, size_t *global, size_t *local)
{
    size_t rows = (size_t)16 * v->t[MMP_M_TILES] * v->t[MMP_WARPS], cols = (size_t)8 * v->t[MMP_N_TILES];
    local[0] = v->wg_items;
    local[1] = local[2] = 1;
    global[0] = ((size_t)s->m + rows - 1) / rows * local[0];
    global[1] = ((size_t)s->n + cols - 1) / cols;
    global[2] = (size_t)v->t[MMP_K_SPLITS];
    return 3;
}

const kq_family_desc kq_mma_decode_family = {
    .name = "mma",
    .program = KQ_FAMILY_MMA,
    .type_options = KQ_OPT_WTYPE | KQ_OPT_XTYPE,
    .n_tunables = COUNT(mma_decode_tunables),
    .tunables = mma_decode_tunables,
    .candidates = mma_decode_candidates,
    .applies = mma_decode_applies,
    .layout = mma_decode_layout,
    .geometry = mma_decode_geometry,
    .default_misfit_quiet = true,
};

const kq_family_desc kq_mma_prefill_family = {
    .name = "mma prefill",
    .program = KQ_FAMILY_MMA,
    .type_options = KQ_OPT_WTYPE | KQ_OPT_XTYPE,
    .n_tunables = COUNT(mma_prefill_tunables),
    .tunables = mma_prefill_tunables,
    .candidates = mma_prefill_candidates,
    .applies = mma_prefill_applies,
    .shape_defaults = mma_prefill_shape,
    .layout = mma_prefill_layout,
    .geometry = mma_prefill_geometry,
    .default_misfit_quiet = true,
};

/* ---- the other families ------------------------------------------------------------------------ */

/* convert.cl: s->wtype the source (weights are dequantized, floats converted), s->xtype the
 * destination. */
static void convert_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    (void)dev;
    add_option(v, "-DNO_CONTRACT -D%s=%d -DDTYPE=%d", kq_type_is_quant(s->wtype) ? "WTYPE" : "XTYPE", (int)s->wtype,
               (int)s->xtype);
}

const kq_family_desc kq_convert_family = {
    .name = "convert",
    .program = KQ_FAMILY_CONVERT,
    .layout = convert_layout,
};

/* Items a work-group of a kernel that sums in a tree: 256 where the device allows it, a power
 * of two. */
static size_t tree_work_group(const kq_device *dev)
{
    size_t wg = 256;
    while (wg > dev->max_wg && wg > 1)
        wg >>= 1;
    return wg;
}

/* reduce.cl: reduce_rows's work-group a tree's, sums[REDUCE_WG] and comps[REDUCE_WG] floats. */
static void reduce_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    size_t wg = tree_work_group(dev);
    v->wg_items = wg;
    v->local_bytes = 2 * wg * sizeof(float);
    add_option(v, "-DNO_CONTRACT -DXTYPE=%d -DREDUCE_OP=%d -DREDUCE_WG=%zu", (int)s->xtype, s->op, wg);
}

const kq_family_desc kq_reduce_family = {
    .name = "reduce",
    .program = KQ_FAMILY_REDUCE,
    .layout = reduce_layout,
};

/* bench.cl: the bandwidth probe follows the memory system, not the kernel family. */
static void bench_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    (void)s;
    v->cpu = !dev->info.is_gpu;
    if (v->cpu)
        add_option(v, "-DKQ_CPU");
}

const kq_family_desc kq_bench_family = {
    .name = "bench",
    .program = KQ_FAMILY_BENCH,
    .layout = bench_layout,
};

/* elementwise.cl: the layer's operations (lib/ops/layer.c); rms_norm's work-group a tree's,
 * sums[OP_WG] floats. */
static void elementwise_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    (void)s;
    size_t wg = tree_work_group(dev);
    v->wg_items = wg;
    v->local_bytes = wg * sizeof(float);
    add_option(v, "-DNO_CONTRACT -DOP_WG=%zu", wg); /* scale's multiply and add round apart */
    v->cpu = !kq_gpu_kernels(dev);
    if (v->cpu) /* rope_f32 an item a row, not a pair: a normed row's norm found once */
        add_option(v, " -DKQ_CPU");
}

const kq_family_desc kq_elementwise_family = {
    .name = "elementwise",
    .program = KQ_FAMILY_ELEMENTWISE,
    .layout = elementwise_layout,
};

/* attention.cl's attn_fused: the cache's type (f16 or f32) in s->wtype, the value rows' length
 * dv in s->k. GPUs: a work-group of up to 64 items a row (the positions of a step, one each),
 * each keeping ceil(dv / 64) output columns, p[] and red[] floats; CPUs: one item a row with
 * ceil(dv / 16) 16-wide accumulators. */
static void attention_layout(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    int64_t dv = s->k > 0 ? s->k : 1;
    v->cpu = !kq_gpu_kernels(dev);
    if (v->cpu) {
        v->wg_items = 1;
        v->private_bytes = (size_t)((dv + 15) / 16) * 16 * sizeof(float) + 64 * sizeof(float);
        add_option(v, "-DKVTYPE=%d -DKQ_CPU -DATT_COLS=%lld", (int)s->wtype, (long long)((dv + 15) / 16));
        return;
    }
    /* 256 items a row in slices of 64 columns: four slices share a block's value rows, so an
     * item walks a quarter of the positions (a decode step's few rows are latency chains) */
    size_t wg = tree_work_group(dev), vcols = wg < 64 ? wg : 64;
    int64_t passes = (dv + (int64_t)vcols - 1) / (int64_t)vcols;
    v->wg_items = wg;
    v->local_bytes = 2 * wg * sizeof(float);
    v->private_bytes = (size_t)passes * sizeof(float);
    add_option(v, "-DKVTYPE=%d -DATT_WG=%zu -DATT_VCOLS=%zu -DATT_COLS=%lld", (int)s->wtype, wg, vcols,
               (long long)passes);
}

const kq_family_desc kq_attention_family = {
    .name = "attention",
    .program = KQ_FAMILY_ATTENTION,
    .layout = attention_layout,
};

/* ---- the collectives' parameters ------------------------------------------------------------ */

static const kq_tunable collective_tunables[] = {
    {KQCL_PARAM_COLL_CHUNK_KIB, "coll_chunk_kib", 1, (1 << 20) - 1, "KQCL_COLL_CHUNK_KIB", 0, NULL},
    {KQCL_PARAM_COLL_THREADS, "coll_threads", 1, 64, "KQCL_COLL_THREADS", 0, NULL},
    {KQCL_PARAM_COLL_SPIN_US, "coll_spin_us", 0, 1000000, "KQCL_COLL_SPIN_US", 0, NULL},
    {KQCL_PARAM_COLL_SUMS, "coll_sums", 0, 1, "KQCL_COLL_SUMS", 0, NULL}, /* "host" 0, "device" 1 */
};

const kq_family_desc kq_collective_params = {
    .name = "collectives",
    .n_tunables = COUNT(collective_tunables),
    .tunables = collective_tunables,
    .context_wide = true,
};

const kq_family_desc *const kq_param_families[] = {&kq_matvec_family,      &kq_q8_matvec_family,
                                                   &kq_tiled_family,       &kq_mma_decode_family,
                                                   &kq_mma_prefill_family, &kq_collective_params};
const int kq_n_param_families = COUNT(kq_param_families);

const kq_family_desc *kq_param_family(kqcl_param p, int *index)
{
    for (int f = 0; f < kq_n_param_families; f++)
        for (int i = 0; i < kq_param_families[f]->n_tunables; i++)
            if (kq_param_families[f]->tunables[i].param == p) {
                *index = i;
                return kq_param_families[f];
            }
    return NULL;
}

/* ---- choosing a variant -------------------------------------------------------------------- */

static const kq_candidate no_tunables = {{0}, false};

static kq_candidates candidates_of(const kq_device *dev, const kq_family_desc *f, const kq_shape *s)
{
    return f->candidates ? f->candidates(dev, s) : (kq_candidates){&no_tunables, 1};
}

/* The user's values of f's tunables laid over v: the kernel's (define set) or the host's.
 * True when any was set. */
static bool overlay(const kq_device *dev, const kq_family_desc *f, bool kernel_side, int *v)
{
    bool any = false;
    for (int i = 0; i < f->n_tunables; i++)
        if ((f->tunables[i].define != NULL) == kernel_side)
            any |= kq_param_get(&dev->params, f->tunables[i].param, &v[i]);
    return any;
}

/* What to name when the user's set is refused: its variable when any member came from the
 * environment, else kqcl_context_set_param. */
static const char *origin(const kq_device *dev, const kq_family_desc *f)
{
    for (int i = 0; i < f->n_tunables; i++)
        if (f->tunables[i].define != NULL && kq_param_source_of(&dev->params, f->tunables[i].param) == KQ_FROM_ENV)
            return f->tunables[i].env;
    return "kqcl_context_set_param";
}

/* The variant of a set: the types, each kernel-side tunable as -DNAME=value, then the family's
 * own options and figures. */
static void fill(const kq_device *dev, const kq_family_desc *f, const kq_shape *s, const int *values,
                 bool cpu_form, kq_variant *v)
{
    memset(v, 0, sizeof *v);
    v->desc = f;
    v->family = f->program;
    memcpy(v->t, values, sizeof v->t);
    v->cpu = cpu_form;
    v->ptx_variant = f->ptx_variant;
    if (f->type_options & KQ_OPT_WTYPE)
        add_option(v, "-DWTYPE=%d", (int)s->wtype);
    if (f->type_options & KQ_OPT_XTYPE)
        add_option(v, "%s-DXTYPE=%d", v->options[0] ? " " : "", (int)s->xtype);
    for (int i = 0; i < f->n_tunables; i++)
        if (f->tunables[i].define != NULL)
            add_option(v, " -D%s=%d", f->tunables[i].define, values[i]);
    f->layout(dev, s, v);
}

static bool same_kernel_set(const kq_family_desc *f, const int *a, const kq_candidate *b, bool a_cpu)
{
    for (int i = 0; i < f->n_tunables; i++)
        if (f->tunables[i].define != NULL && a[i] != b->v[i])
            return false;
    return a_cpu == b->cpu_form;
}

static kqcl_status refuse_users_set(kqcl_context *ctx, const kq_family_desc *f, const kq_variant *v, const char *who,
                                    const char *broken)
{
    char values[96] = "";
    size_t len = 0;
    for (int i = 0; i < f->n_tunables && len < sizeof values; i++)
        if (f->tunables[i].define != NULL)
            len += (size_t)snprintf(values + len, sizeof values - len, "%s%d", len ? "," : "", v->t[i]);
    return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s (%s %s): %s", who, f->name, values, broken);
}

/* kq_pick_variant's work; *quiet when the answer set no error (a variant, or a family that does
 * not apply): only such answers are remembered. */
static kqcl_status pick_variant(kqcl_context *ctx, const kq_device *dev, const kq_family_desc *f, const kq_shape *s,
                                int skip, kq_variant *v, bool *quiet)
{
    *quiet = false;
    kq_candidates c = candidates_of(dev, f, s);
    int head[KQ_MAX_TUNABLES];
    memcpy(head, c.list[0].v, sizeof head);
    overlay(dev, f, false, head);
    if (f->shape_defaults)
        f->shape_defaults(dev, s, head);
    if (f->applies && !f->applies(dev, s, head)) {
        *quiet = true;
        return KQCL_ERR_UNSUPPORTED;
    }
    if (overlay(dev, f, true, head)) { /* the user's set: checked, never changed */
        const char *who = origin(dev, f);
        fill(dev, f, s, head, c.list[0].cpu_form, v);
        const char *broken = f->broken ? f->broken(v->t, v->cpu) : NULL;
        if (broken)
            return refuse_users_set(ctx, f, v, who, broken);
        *quiet = fits(dev, v) && skip == 0;
        return *quiet ? KQCL_OK : no_fit(ctx, dev, v, who, true);
    }
    /* the head (shape defaults applied), then the list's others, largest first */
    for (int i = -1; i < c.count; i++) {
        if (i >= 0 && same_kernel_set(f, head, &c.list[i], c.list[0].cpu_form))
            continue;
        int set[KQ_MAX_TUNABLES];
        memcpy(set, head, sizeof set);
        for (int j = 0; i >= 0 && j < f->n_tunables; j++)
            if (f->tunables[j].define != NULL)
                set[j] = c.list[i].v[j];
        fill(dev, f, s, set, i < 0 ? c.list[0].cpu_form : c.list[i].cpu_form, v);
        if (fits(dev, v) && skip-- == 0) {
            *quiet = true;
            return KQCL_OK;
        }
    }
    *quiet = f->default_misfit_quiet;
    if (f->default_misfit_quiet)
        return KQCL_ERR_UNSUPPORTED; /* the portable kernels serve */
    return no_fit(ctx, dev, v, f->name, false);
}

/* ---- remembered picks ---------------------------------------------------------------------------
 * A decode step asks for the same few dozen (family, shape) picks at every token, and each costs
 * the host thousands of instructions: the candidates' option strings (vsnprintf), then for the
 * kernel the full options, the program list and three clGetKernelWorkGroupInfo (about 10,000
 * instructions a launch on PoCL, scripts/host-cost-probe.c under callgrind; a launch through
 * NVIDIA's OpenCL costs the host 4-5 us in all). So a device remembers its answers: the picks
 * that set no error (a variant, or a quiet KQCL_ERR_UNSUPPORTED) and kq_family_kernel's kernels,
 * keyed by the family, every field of the shape, the step and the kernel's name. They hold while
 * the device's parameters stay as they were (kq_params.changes) and its programs and variants
 * too (kq_device.memo_epoch, bumped by program.c when it releases the programs or turns the PTX
 * or tensor-core variants off). A slot holds one answer; a new one in the same slot replaces it.
 * The table is made at the device's first kq_family_kernel (without memory, nothing is kept). */
#define MEMO_SLOTS 256

typedef struct kq_memo_entry {
    const kq_family_desc *f; /* NULL: empty */
    const char *name;        /* kq_family_kernel's kernel (callers pass literals); NULL: a pick */
    int skip;
    kq_shape s;
    unsigned epoch, changes;
    kqcl_status status; /* KQCL_OK, or a quiet KQCL_ERR_UNSUPPORTED (picks only) */
    kq_variant v;
    cl_kernel kernel;
} kq_memo_entry;

struct kq_pick_memo {
    kq_memo_entry slot[MEMO_SLOTS];
};

void kq_memo_free(kq_device *dev)
{
    free(dev->memo);
    dev->memo = NULL;
}

/* same_shape and memo_slot name every field of kq_shape; the fields they name, laid out as kq_shape
 * is, must take its size (a field added to kq_shape must be added to them: family.h says so). */
struct kq_shape_as_keyed {
    kqcl_type wtype, xtype;
    int64_t m, n, k;
    int group, glu, norm;
    kqcl_precision mode;
    int op;
};
_Static_assert(sizeof(kq_shape) == sizeof(struct kq_shape_as_keyed), "kq_shape changed: update same_shape and memo_slot");

static bool same_shape(const kq_shape *a, const kq_shape *b)
{
    return a->wtype == b->wtype && a->xtype == b->xtype && a->m == b->m && a->n == b->n && a->k == b->k &&
           a->group == b->group && a->glu == b->glu && a->norm == b->norm && a->mode == b->mode && a->op == b->op;
}

static kq_memo_entry *memo_slot(const kq_device *dev, const kq_family_desc *f, const kq_shape *s, const char *name,
                                int skip)
{
    if (dev->memo == NULL)
        return NULL;
    const uint64_t key[] = {(uintptr_t)f, (uintptr_t)name, (uint64_t)skip, (uint64_t)s->wtype, (uint64_t)s->xtype,
                            (uint64_t)s->m, (uint64_t)s->n, (uint64_t)s->k, (uint64_t)s->group, (uint64_t)s->glu,
                            (uint64_t)s->norm, (uint64_t)s->mode, (uint64_t)s->op};
    uint64_t h = 14695981039346656037u; /* FNV-1a over the words */
    for (int i = 0; i < COUNT(key); i++)
        h = (h ^ key[i]) * 1099511628211u;
    return &dev->memo->slot[(h ^ (h >> 32)) % MEMO_SLOTS];
}

static bool memo_holds(const kq_device *dev, const kq_memo_entry *e, const kq_family_desc *f, const kq_shape *s,
                       const char *name, int skip)
{
    return e != NULL && e->f == f && e->name == name && e->skip == skip && e->epoch == dev->memo_epoch &&
           e->changes == dev->params.changes && same_shape(&e->s, s);
}

/* Remember an answer found while the device stood at `epoch` (if a build turned variants off
 * meanwhile, the entry is stale at once). */
static void memo_keep(kq_memo_entry *e, const kq_device *dev, unsigned epoch, const kq_family_desc *f,
                      const kq_shape *s, const char *name, int skip, kqcl_status status, const kq_variant *v,
                      cl_kernel kernel)
{
    if (e == NULL)
        return;
    e->f = f;
    e->name = name;
    e->skip = skip;
    e->s = *s;
    e->epoch = epoch;
    e->changes = dev->params.changes;
    e->status = status;
    if (status == KQCL_OK)
        e->v = *v;
    e->kernel = kernel;
}

kqcl_status kq_pick_variant(kqcl_context *ctx, const kq_device *dev, const kq_family_desc *f, const kq_shape *s,
                            int skip, kq_variant *v)
{
    kq_memo_entry *e = memo_slot(dev, f, s, NULL, skip);
    if (memo_holds(dev, e, f, s, NULL, skip)) {
        if (e->status == KQCL_OK)
            *v = e->v;
        return e->status;
    }
    const unsigned epoch = dev->memo_epoch;
    bool quiet;
    kqcl_status st = pick_variant(ctx, dev, f, s, skip, v, &quiet);
    if (quiet)
        memo_keep(e, dev, epoch, f, s, NULL, skip, st, v, NULL);
    return st;
}

int kq_variant_value(const kq_variant *v, kqcl_param p)
{
    for (int i = 0; v->desc != NULL && i < v->desc->n_tunables; i++)
        if (v->desc->tunables[i].param == p)
            return v->t[i];
    return KQCL_PARAM_AUTO;
}

int kq_param_default(const kq_device *dev, kqcl_param p)
{
    int index;
    const kq_family_desc *f = kq_param_family(p, &index);
    if (f == NULL || f->candidates == NULL || f->shape_defaults != NULL)
        return KQCL_PARAM_AUTO; /* chosen per call */
    /* weight types whose candidates can differ: float, the small blocks, the k-quants */
    static const kqcl_type probes[] = {KQCL_TYPE_F32, KQCL_TYPE_Q8_0, KQCL_TYPE_Q4_K};
    int value = 0;
    for (int i = 0; i < COUNT(probes); i++) {
        kq_shape s = {.wtype = probes[i], .xtype = KQCL_TYPE_F32, .m = 256, .n = 1, .k = 256};
        int head = f->candidates(dev, &s).list[0].v[index];
        if (i > 0 && head != value)
            return KQCL_PARAM_AUTO; /* by the weights' type */
        value = head;
    }
    return value;
}

/* ---- after the build -------------------------------------------------------------------------- */

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

kqcl_status kq_variant_kernel(kqcl_context *ctx, kq_device *dev, const kq_variant *v, const char *name,
                              cl_kernel *out)
{
    kqcl_status st = v->ptx_variant ? kq_get_kernel_ptx_first(ctx, dev, v->family, v->options, name, out)
                                    : kq_get_kernel(ctx, dev, v->family, v->options, name, out);
    return st == KQCL_OK ? kq_kernel_fits(ctx, dev, *out, v, name) : st;
}

/* Candidates a launch may step through: a kernel that builds but does not fit the device
 * (registers can lower its work-group size) hands over to the next smaller one. */
#define MAX_STEPS 8

kqcl_status kq_family_kernel(kqcl_context *ctx, kq_device *dev, const kq_family_desc *f, const kq_shape *s,
                             const char *name, kq_variant *v, cl_kernel *out)
{
    if (dev->memo == NULL)
        dev->memo = calloc(1, sizeof *dev->memo);
    kq_memo_entry *e = memo_slot(dev, f, s, name, 0);
    if (memo_holds(dev, e, f, s, name, 0)) {
        *v = e->v;
        *out = e->kernel;
        return KQCL_OK;
    }
    const unsigned epoch = dev->memo_epoch;
    kqcl_status st = KQCL_ERR_UNSUPPORTED;
    int steps = f->steps_down ? MAX_STEPS : 1;
    for (int skip = 0; st == KQCL_ERR_UNSUPPORTED && skip < steps; skip++)
        if ((st = kq_pick_variant(ctx, dev, f, s, skip, v)) == KQCL_OK)
            st = kq_variant_kernel(ctx, dev, v, name, out);
    if (st == KQCL_OK)
        memo_keep(e, dev, epoch, f, s, name, 0, st, v, *out);
    return st;
}

KQCL_API const char *kqcl_device_tuning(const kqcl_context *ctx, int device)
{
    if (ctx == NULL || device < 0 || device >= ctx->n_devices)
        return "";
    return kq_device_kind_name(&ctx->devices[device]);
}
