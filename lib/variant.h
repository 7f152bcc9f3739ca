/* variant.h -- the kernel variant a call gets on a device: which family and kernel, its build
 * options, the work-group size it requires and the local memory it declares, checked against the
 * kernel's constraints and the device's limits before anything is built. The same functions
 * list every variant for `make check-kernels` (tests/kernel_variants.c). */
#ifndef KQCL_VARIANT_H
#define KQCL_VARIANT_H

#include "ops.h"
#include "program.h"

typedef struct kq_variant {
    kq_family family;
    char options[256];  /* the -D options (program.c adds -cl-std and KQCL_EXTRA_BUILD_OPTIONS) */
    size_t local_bytes; /* __local bytes of the largest kernel of its program (one .cl file), by
                         * that file's formula */
    size_t wg_items;    /* work-group items its kernel requires (reqd_work_group_size); 0: any */
    size_t private_bytes; /* private memory a work-item, estimated from the kernel's arrays
                           * (matvec, Q8 decode); 0: not estimated */
    bool cpu;           /* a KQ_CPU kernel (one work-item a work-group, whole rows) */
    bool ptx_variant;   /* on NVIDIA also built with -DKQ_NV_PTX, falling back without it */
    kq_matvec_tune mv;  /* the launch parameters of whichever kernel it is */
    kq_matmul_tune mm;
    kq_mma_tune mma;
} kq_variant;

/* Decode (n <= 8): matvec.cl for w and x types, n and k. A tunable set from the environment that
 * breaks a constraint or does not fit the device is KQCL_ERR_INVALID_ARG; the defaults step down
 * to smaller work-groups until one fits. */
kqcl_status kq_matvec_variant(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kqcl_type xtype, int n,
                              int64_t k, int skip, kq_variant *v);
/* Prefill: matmul.cl, tiles chosen as for kq_matvec_variant. For both, `skip` fitting
 * candidates are passed over: the caller asks again with skip + 1 when a built kernel turns out
 * not to fit (kq_kernel_fits). */
kqcl_status kq_tiled_variant(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kqcl_type xtype, int64_t k,
                             int skip, kq_variant *v);
/* The tensor-core kernels (mma.cl); KQCL_ERR_UNSUPPORTED where they do not apply. `mode` (F32,
 * F16 or BF16) sets how many bf16 parts an activation is multiplied in (kq_mma_parts: 3, 2, 1). */
kqcl_status kq_mma_decode_variant(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kqcl_type xtype, int n,
                                  kqcl_precision mode, kq_variant *v);
kqcl_status kq_mma_prefill_variant(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kqcl_type xtype,
                                   int64_t m, int64_t n, int64_t k, kqcl_precision mode, kq_variant *v);
int kq_mma_parts(kqcl_precision mode);
/* Q8 precision (q8.cl): the integer decode kernel for `group` (1..4) weights of wtype sharing
 * X (candidates and `skip` as kq_matvec_variant; KQCL_MATVEC_Q8 sets the tunables), and the
 * activation quantizer for X of xtype. */
kqcl_status kq_q8_matvec_variant(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, int n, int64_t k,
                                 int group, int skip, kq_variant *v);
void kq_q8_quantize_variant(kqcl_type xtype, kq_variant *v);
/* convert.cl (dequantize or convert src_type into dst_type), reduce.cl, bench.cl. */
void kq_convert_variant(kqcl_type src_type, kqcl_type dst_type, kq_variant *v);
void kq_reduce_variant(const kq_device *dev, int op, kqcl_type xtype, kq_variant *v);
void kq_bench_variant(const kq_device *dev, kq_variant *v);

/* Whether a built kernel fits the device as the variant assumed: its CL_KERNEL_WORK_GROUP_SIZE
 * (registers can lower it), CL_KERNEL_LOCAL_MEM_SIZE and, on a CPU device, a work-group's
 * private memory (CL_KERNEL_PRIVATE_MEM_SIZE or the variant's estimate, whichever is larger)
 * against the stack it runs on; KQCL_ERR_UNSUPPORTED with a message when not. */
kqcl_status kq_kernel_fits(kqcl_context *ctx, const kq_device *dev, cl_kernel kernel, const kq_variant *v,
                           const char *name);

/* The variant's kernel `name`, built (or found) through program.c -- on NVIDIA the inline-PTX
 * form first where the variant has one -- and checked with kq_kernel_fits. */
kqcl_status kq_variant_kernel(kqcl_context *ctx, kq_device *dev, const kq_variant *v, const char *name,
                              cl_kernel *out);

#endif
