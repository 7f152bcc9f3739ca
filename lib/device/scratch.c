/* scratch.c -- the per-device scratch buffers the kernels keep between calls: activations
 * prepared for a precision, split for the tensor cores, k-split sums, the unfused path's
 * weights. One buffer a slot, grown on demand, never shrunk. */
#include "device/scratch.h"

/* kq_scratch; *made: the buffer is new. */
static kqcl_status scratch_get(kqcl_context *ctx, kq_device *dev, kq_scratch_slot slot, size_t bytes,
                               const char *what, cl_mem *out, bool *made)
{
    kq_scratch_buf *b = &dev->scratch[slot];
    *made = b->mem == NULL || b->bytes < bytes;
    if (*made) {
        if (b->mem)
            clReleaseMemObject(b->mem);
        b->mem = NULL;
        b->bytes = 0;
        cl_int err;
        b->mem = clCreateBuffer(dev->cl_ctx, CL_MEM_READ_WRITE, bytes > 0 ? bytes : 1, NULL, &err);
        if (err != CL_SUCCESS) {
            b->mem = NULL;
            return kq_cl_fail(ctx, err, what);
        }
        b->bytes = bytes;
    }
    *out = b->mem;
    return KQCL_OK;
}

kqcl_status kq_scratch(kqcl_context *ctx, kq_device *dev, kq_scratch_slot slot, size_t bytes, const char *what,
                       cl_mem *out)
{
    bool made;
    return scratch_get(ctx, dev, slot, bytes, what, out, &made);
}

kqcl_status kq_scratch_zeroed(kqcl_context *ctx, kq_device *dev, kq_scratch_slot slot, size_t bytes,
                              const char *what, cl_mem *out)
{
    bool made;
    kqcl_status st = scratch_get(ctx, dev, slot, bytes, what, out, &made);
    if (st != KQCL_OK || !made)
        return st;
    static const cl_uchar zero = 0;
    cl_int err = clEnqueueFillBuffer(dev->queue, *out, &zero, sizeof zero, 0, dev->scratch[slot].bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS) { /* not zeroed: not kept either */
        clReleaseMemObject(*out);
        dev->scratch[slot].mem = NULL;
        dev->scratch[slot].bytes = 0;
        return kq_cl_fail(ctx, err, what);
    }
    return KQCL_OK;
}

void kq_scratch_release(kq_device *dev)
{
    for (int i = 0; i < KQ_SCRATCH_COUNT; i++) {
        if (dev->scratch[i].mem)
            clReleaseMemObject(dev->scratch[i].mem);
        dev->scratch[i].mem = NULL;
        dev->scratch[i].bytes = 0;
    }
}
