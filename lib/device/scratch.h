/* scratch.h -- the per-device scratch buffers of the kernels (slots in context.h). */
#ifndef KQCL_SCRATCH_H
#define KQCL_SCRATCH_H

#include "device/context.h"

/* The device's buffer for `slot`, at least `bytes` long: kept from earlier calls, or made anew
 * (the old one released: queued commands keep it alive until they finish). KQCL_ERR_OUT_OF_MEMORY
 * with `what` in the message when the device cannot hold it. */
kqcl_status kq_scratch(kqcl_context *ctx, kq_device *dev, kq_scratch_slot slot, size_t bytes, const char *what,
                       cl_mem *out);

/* kq_scratch, with a buffer made anew filled with zero bytes first (queued on dev's queue): for
 * kernels that leave what they use at zero when they end. */
kqcl_status kq_scratch_zeroed(kqcl_context *ctx, kq_device *dev, kq_scratch_slot slot, size_t bytes,
                              const char *what, cl_mem *out);

/* Release every scratch buffer of dev (kqcl_context_destroy). */
void kq_scratch_release(kq_device *dev);

#endif
