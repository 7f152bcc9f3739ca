/*
 * kernel_variants.c -- every kernel variant kqcl can select, one line each, for
 * `make check-kernels` (scripts/check-kernels.sh compiles them offline for other vendors).
 *
 * The variants come from the kernel families' descriptors (lib/kernels/family.c) through kq_pick_variant,
 * the function the library itself calls before a build, asked for every weight type x
 * activation type x n x alignment on a few device profiles (a device's kind and limits are all
 * the descriptors read). Every candidate that fits a profile
 * is listed, not only the first: a device of that kind with fewer resources gets the next one.
 *
 *   PROFILE <TAB> LIMIT <TAB> FAMILY <TAB> RANK <TAB> LOCAL_BYTES <TAB> OPTIONS
 *
 * LIMIT is the profile's local memory, RANK 0 the variant a device of the profile gets and 1.. the
 * smaller ones it steps down to, LOCAL_BYTES the variant's own local-memory figure, which the
 * script compares with what the compiler reports. Every n of decode (NCOLS 1..8) is listed for
 * some type pairs and n = 1 and 8 for all (KQCL_VARIANTS_ALL=1: every n for every pair), so
 * that the offline compiles stay within minutes. Prints to stdout; exit 1 on an internal error.
 */
#include "kernels/family.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct profile {
    const char *name;
    bool is_gpu, gpu_kernels, nv, int_dot;
    uint64_t local_bytes;
    size_t max_wg;
    int compute_units;
} profile;

/* gpu: an AMD or Intel GPU (64 KiB of local memory, 256 items a work-group, integer dot products
 * through cl_khr_integer_dot_product); cpu: PoCL (1 MiB);
 * cpu-32k: a CPU runtime with 32 KiB (Intel's); nvidia: an H100/H200 with inline PTX and tensor
 * cores (48 KiB, 1024 items, 132 SMs). */
static const profile profiles[] = {
    {"gpu", true, true, false, true, 65536, 256, 64},
    {"cpu", false, false, false, false, 1 << 20, 4096, 16},
    {"cpu-32k", false, false, false, false, 32768, 8192, 16},
    {"nvidia", true, true, true, false, 49152, 1024, 132},
};

static const kqcl_type weight_types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K,
                                         KQCL_TYPE_Q4_0, KQCL_TYPE_Q4_1, KQCL_TYPE_Q5_0, KQCL_TYPE_Q5_1,
                                         KQCL_TYPE_Q8_0, KQCL_TYPE_F16,  KQCL_TYPE_BF16, KQCL_TYPE_F32};
static const kqcl_type float_types[] = {KQCL_TYPE_F32, KQCL_TYPE_F16, KQCL_TYPE_BF16};
static const kqcl_precision mma_modes[] = {KQCL_PRECISION_F32, KQCL_PRECISION_F16, KQCL_PRECISION_BF16};

static kq_device device_for(const profile *p)
{
    kq_device dev;
    memset(&dev, 0, sizeof dev);
    snprintf(dev.info.name, sizeof dev.info.name, "%s profile", p->name);
    dev.info.is_gpu = p->is_gpu;
    dev.info.local_mem_bytes = p->local_bytes;
    dev.info.compute_units = p->compute_units;
    dev.max_wg = p->max_wg;
    dev.gpu_kernels = p->gpu_kernels;
    dev.nv_ptx = dev.nv_mma = p->nv;
    dev.int_dot = p->int_dot;
    return dev;
}

static void print(const profile *p, const kq_variant *v, int rank)
{
    printf("%s\t%llu\t%s\t%d\t%zu\t%s\n", p->name, (unsigned long long)p->local_bytes, kq_family_file(v->family), rank,
           v->local_bytes, v->options);
    if (p->nv && v->ptx_variant) {
        char ptx[512];
        kq_ptx_options(v->options, ptx, sizeof ptx);
        printf("%s\t%llu\t%s\t%d\t%zu\t%s\n", p->name, (unsigned long long)p->local_bytes, kq_family_file(v->family),
               rank, v->local_bytes, ptx);
    }
}

/* The decode n of a type pair: 1 and 8 always, one between them that changes with the pair. */
static bool n_listed(int n, size_t w, size_t x)
{
    const char *all = getenv("KQCL_VARIANTS_ALL");
    return (all && strcmp(all, "1") == 0) || n == 1 || n == KQ_MATVEC_MAX_N || n == 2 + (int)((3 * w + x) % 6);
}

/* k values that give both alignments a type can have: quantized rows are whole blocks. */
static int ks_for(kqcl_type wtype, int64_t ks[2])
{
    ks[0] = 512;
    ks[1] = 300;
    return kq_type_is_quant(wtype) ? 1 : 2;
}

/* Every candidate of family f for the shape, rank 0 the one the profile's device gets. */
static void every_fitting(const profile *p, kq_device *dev, const kq_family_desc *f, const kq_shape *s)
{
    kq_variant v;
    for (int skip = 0; kq_pick_variant(NULL, dev, f, s, skip, &v) == KQCL_OK; skip++)
        print(p, &v, skip);
}

static void matmul_variants(const profile *p, kq_device *dev)
{
    for (size_t w = 0; w < sizeof weight_types / sizeof weight_types[0]; w++)
        for (size_t x = 0; x < sizeof float_types / sizeof float_types[0]; x++) {
            int64_t ks[2];
            int n_ks = ks_for(weight_types[w], ks);
            kq_shape s = {.wtype = weight_types[w], .xtype = float_types[x], .m = 4096, .group = 4}; /* decode: matmul.c's groups */
            for (int ki = 0; ki < n_ks; ki++) {
                s.k = ks[ki];
                for (s.n = 1; s.n <= KQ_MATVEC_MAX_N; s.n++)
                    if (n_listed((int)s.n, w, x))
                        every_fitting(p, dev, &kq_matvec_family, &s);
                every_fitting(p, dev, &kq_tiled_family, &s);
            }
            /* kqcl_matmul_glu's form of the decode kernel, SwiGLU and GeGLU at n 1 and 8: the
             * variant each profile's device gets (the form changes the rows and the store only) */
            kq_shape g = {.wtype = weight_types[w], .xtype = float_types[x], .m = 4096, .k = 512, .group = 1};
            for (g.glu = 1; g.glu <= 2; g.glu++)
                for (g.n = 1; g.n <= KQ_MATVEC_MAX_N; g.n += KQ_MATVEC_MAX_N - 1) {
                    kq_variant v;
                    if (kq_pick_variant(NULL, dev, &kq_matvec_family, &g, 0, &v) == KQCL_OK)
                        print(p, &v, 0);
                }
            /* kqcl_norm_matmul_group's and _glu's form (f32 X, the work-group kernel): the norm in
             * the launch, for a group and for SwiGLU, at n 1 and 8 */
            kq_shape nm = {.wtype = weight_types[w], .xtype = KQCL_TYPE_F32, .m = 4096, .k = 512, .norm = 1};
            for (int glu = 0; float_types[x] == KQCL_TYPE_F32 && glu <= 1; glu++)
                for (nm.n = 1; nm.n <= KQ_MATVEC_MAX_N; nm.n += KQ_MATVEC_MAX_N - 1) {
                    kq_variant v;
                    nm.glu = glu, nm.group = glu ? 1 : 4;
                    if (kq_pick_variant(NULL, dev, &kq_matvec_family, &nm, 0, &v) == KQCL_OK && !v.cpu)
                        print(p, &v, 0);
                }
            for (size_t mi = 0; mi < sizeof mma_modes / sizeof mma_modes[0]; mi++) {
                kq_variant v;
                kq_shape d = {.wtype = weight_types[w], .xtype = float_types[x], .m = 4096, .n = KQ_MATVEC_MAX_N,
                              .k = 4096, .mode = mma_modes[mi]};
                if (kq_pick_variant(NULL, dev, &kq_mma_decode_family, &d, 0, &v) == KQCL_OK)
                    print(p, &v, 0);
                /* a large output (two 16-row tiles a warp) and a small one (one) */
                kq_shape big = {.wtype = weight_types[w], .xtype = float_types[x], .m = 4096, .n = 512, .k = 4096,
                                .mode = mma_modes[mi]};
                kq_shape small = {.wtype = weight_types[w], .xtype = float_types[x], .m = 256, .n = 9, .k = 256,
                                  .mode = mma_modes[mi]};
                if (kq_pick_variant(NULL, dev, &kq_mma_prefill_family, &big, 0, &v) == KQCL_OK)
                    print(p, &v, 0);
                if (kq_pick_variant(NULL, dev, &kq_mma_prefill_family, &small, 0, &v) == KQCL_OK)
                    print(p, &v, 0);
            }
        }
}

/* Q8 precision: the integer decode kernel for every quantized type and n, the quantizer for
 * every activation type. */
static void q8_variants(const profile *p, kq_device *dev)
{
    for (size_t w = 0; w < sizeof weight_types / sizeof weight_types[0]; w++) {
        kq_shape s = {.wtype = weight_types[w], .xtype = KQCL_TYPE_F32, .m = 4096, .k = 512, .group = 4,
                      .mode = KQCL_PRECISION_Q8};
        for (s.n = 1; kq_type_is_quant(weight_types[w]) && s.n <= KQ_MATVEC_MAX_N; s.n++)
            if (n_listed((int)s.n, w, 0))
                every_fitting(p, dev, &kq_q8_matvec_family, &s);
    }
    for (size_t x = 0; x < sizeof float_types / sizeof float_types[0]; x++) {
        kq_shape s = {.xtype = float_types[x]};
        every_fitting(p, dev, &kq_q8_quantize_family, &s);
    }
}

static void other_variants(const profile *p, kq_device *dev)
{
    for (size_t w = 0; w < sizeof weight_types / sizeof weight_types[0]; w++)
        for (size_t d = 0; d < sizeof float_types / sizeof float_types[0]; d++) {
            kq_shape s = {.wtype = weight_types[w], .xtype = float_types[d]};
            every_fitting(p, dev, &kq_convert_family, &s);
        }
    for (int op = KQCL_REDUCE_SUM; op <= KQCL_REDUCE_MEAN; op++)
        for (size_t x = 0; x < sizeof float_types / sizeof float_types[0]; x++) {
            kq_shape s = {.xtype = float_types[x], .op = op};
            every_fitting(p, dev, &kq_reduce_family, &s);
        }
    kq_shape s = {0};
    every_fitting(p, dev, &kq_bench_family, &s);
    every_fitting(p, dev, &kq_elementwise_family, &s);
    /* the cache f16, f32 or q8_0 (whose rows are whole blocks of 32); dv 40 leaves a partial 16
     * on CPUs */
    static const kqcl_type caches[] = {KQCL_TYPE_F16, KQCL_TYPE_F32, KQCL_TYPE_Q8_0};
    static const int64_t head_sizes[] = {40, 64, 128, 256};
    for (size_t t = 0; t < sizeof caches / sizeof caches[0]; t++)
        for (size_t h = 0; h < sizeof head_sizes / sizeof head_sizes[0]; h++) {
            kq_shape a = {.wtype = caches[t], .k = head_sizes[h]};
            if (head_sizes[h] % kqcl_block_size(caches[t]) == 0)
                every_fitting(p, dev, &kq_attention_family, &a);
        }
}

int main(void)
{
    for (size_t i = 0; i < sizeof profiles / sizeof profiles[0]; i++) {
        kq_device dev = device_for(&profiles[i]);
        matmul_variants(&profiles[i], &dev);
        q8_variants(&profiles[i], &dev);
        other_variants(&profiles[i], &dev);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
