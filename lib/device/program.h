/* program.h -- building the kernel families for a device, with an on-disk binary cache. */
#ifndef KQCL_PROGRAM_H
#define KQCL_PROGRAM_H

#include "device/context.h"

typedef enum kq_family {
    KQ_FAMILY_MATVEC,
    KQ_FAMILY_MATMUL,
    KQ_FAMILY_CONVERT,
    KQ_FAMILY_REDUCE,
    KQ_FAMILY_BENCH,
    KQ_FAMILY_MMA, /* NVIDIA tensor cores through inline PTX */
    KQ_FAMILY_Q8,  /* Q8 precision: activation quantization and integer-dot decode */
    KQ_FAMILY_ELEMENTWISE, /* a layer's element-wise and row-wise operations */
    KQ_FAMILY_ATTENTION,   /* attention over a KV cache */
    KQ_FAMILY_COUNT
} kq_family;

/* The .cl file of a family, without its extension ("matvec"). */
const char *kq_family_file(kq_family family);

/* The kernel `name` of `family` built with `options` for device `dev` of the context: built
 * (or loaded from the cache) on first use, then kept. KQCL_ERR_BUILD carries the build log. */
kqcl_status kq_get_kernel(kqcl_context *ctx, kq_device *dev, kq_family family, const char *options,
                          const char *name, cl_kernel *out);

/* As kq_get_kernel, with the device-specific variant options added (inline PTX on NVIDIA).
 * A variant that fails to build is switched off for the device and the portable kernel is
 * built instead, so a driver that rejects it costs one failed build, not a failed call. */
kqcl_status kq_get_kernel_ptx_first(kqcl_context *ctx, kq_device *dev, kq_family family, const char *options,
                                  const char *name, cl_kernel *out);

/* After an inline-PTX build failed where the portable kernel then served: the PTX variants (or
 * only the tensor-core kernels) off for the device from now on, its description updated. The one
 * place this policy lives (program.c's fallback and matmul.c's tensor cores call it). */
void kq_turn_off_ptx(kqcl_context *ctx, kq_device *dev, bool tensor_cores_only);

/* The options of a variant's NVIDIA form (inline PTX): options + " -DKQ_NV_PTX". */
void kq_ptx_options(const char *options, char *buf, size_t size);

/* Release every program and kernel of a device. */
void kq_programs_release(kq_device *dev);

/* A short description of the kernels the device runs ("GPU family, portable + NVIDIA inline PTX"). */
void kq_describe_kernels(const kq_device *dev, char *buf, size_t size);

/* Set kernel arguments from a list of (size, pointer) pairs; returns the first failure. */
cl_int kq_set_args(cl_kernel kernel, int count, ...);
/* The same from argument `first` on. */
cl_int kq_set_args_from(cl_kernel kernel, int first, int count, ...);

/* Enqueue a 1- or 2-D range and record its event for kqcl_last_device_time. */
kqcl_status kq_enqueue(kqcl_context *ctx, kq_device *dev, cl_kernel kernel, cl_uint dims,
                       const size_t *global, const size_t *local, const char *what);

#endif
