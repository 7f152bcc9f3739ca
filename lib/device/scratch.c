/* scratch.c -- the per-device scratch buffers the kernels keep between calls: activations
 * prepared for a precision, split for the tensor cores, k-split sums, the unfused path's
 * weights. One buffer a slot, grown on demand, never shrunk. */
#include "device/scratch.h"

kqcl_status kq_scratch(kqcl_context *ctx, kq_device *dev, kq_scratch_slot slot, size_t bytes, const char *what,
                       cl_mem *out)
{
    kq_scratch_buf *b = &dev->scratch[slot];
    if (b->mem == NULL || b->bytes < bytes) {
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

void kq_scratch_release(kq_device *dev)
{
    for (int i = 0; i < KQ_SCRATCH_COUNT; i++) {
        if (dev->scratch[i].mem)
            clReleaseMemObject(dev->scratch[i].mem);
        dev->scratch[i].mem = NULL;
        dev->scratch[i].bytes = 0;
    }
}
