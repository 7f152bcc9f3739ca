/* tensor.c -- creating tensors on a device and moving their bytes to and from the host. */
#include "tensor.h"

#include <stdlib.h>

bool kq_type_is_float(kqcl_type type)
{
    return type == KQCL_TYPE_F32 || type == KQCL_TYPE_F16 || type == KQCL_TYPE_BF16;
}

kqcl_status kq_check_tensor(kqcl_context *ctx, const kqcl_tensor *t, const char *call, const char *name)
{
    if (t == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %s is NULL", call, name);
    if (t->ctx != ctx)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %s belongs to another context", call, name);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_tensor_create(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols,
                                        kqcl_tensor **out)
{
    if (out != NULL)
        *out = NULL;
    if (ctx == NULL || out == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_tensor_create: NULL argument");
    kq_clear_error(ctx);
    if (!kq_type_is_known(type))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_tensor_create: unknown type %d", (int)type);
    size_t row_bytes = kqcl_row_size(type, cols);
    if (rows <= 0 || row_bytes == 0)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG,
                       "kqcl_tensor_create: shape %lld x %lld is not valid for %s (rows > 0, cols a "
                       "positive multiple of %lld)",
                       (long long)rows, (long long)cols, kqcl_type_name(type), (long long)kqcl_block_size(type));
    /* Kernels index rows and columns with 32-bit ints. */
    if (rows > INT32_MAX || cols > INT32_MAX || (uint64_t)rows > SIZE_MAX / row_bytes)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "kqcl_tensor_create: shape %lld x %lld is too large",
                       (long long)rows, (long long)cols);
    size_t bytes = (size_t)rows * row_bytes;
    kq_device *dev = &ctx->devices[0];
    if (bytes > dev->info.max_alloc_bytes)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY,
                       "kqcl_tensor_create: %zu bytes exceed the device's largest allocation (%llu)", bytes,
                       (unsigned long long)dev->info.max_alloc_bytes);

    kqcl_tensor *t = calloc(1, sizeof *t);
    if (t == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "kqcl_tensor_create: no host memory");
    cl_int err;
    t->buffer = clCreateBuffer(dev->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        free(t);
        return kq_cl_fail(ctx, err, "kqcl_tensor_create: clCreateBuffer");
    }
    t->ctx = ctx;
    t->type = type;
    t->rows = rows;
    t->cols = cols;
    t->row_bytes = row_bytes;
    t->bytes = bytes;
    t->device = 0;
    *out = t;
    return KQCL_OK;
}

static kqcl_status check_transfer(kqcl_tensor *t, const void *host, size_t nbytes, const char *call)
{
    if (t == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: tensor is NULL", call);
    kq_clear_error(t->ctx);
    if (host == NULL)
        return kq_fail(t->ctx, KQCL_ERR_INVALID_ARG, "%s: host pointer is NULL", call);
    if (nbytes != t->bytes)
        return kq_fail(t->ctx, KQCL_ERR_INVALID_ARG, "%s: %zu bytes given, the %lld x %lld %s tensor holds %zu",
                       call, nbytes, (long long)t->rows, (long long)t->cols, kqcl_type_name(t->type), t->bytes);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_tensor_write(kqcl_tensor *t, const void *src, size_t nbytes)
{
    kqcl_status st = check_transfer(t, src, nbytes, "kqcl_tensor_write");
    if (st != KQCL_OK)
        return st;
    cl_int err = clEnqueueWriteBuffer(kq_tensor_device(t)->queue, t->buffer, CL_TRUE, 0, nbytes, src, 0, NULL, NULL);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(t->ctx, err, "kqcl_tensor_write");
}

KQCL_API kqcl_status kqcl_tensor_read(kqcl_tensor *t, void *dst, size_t nbytes)
{
    kqcl_status st = check_transfer(t, dst, nbytes, "kqcl_tensor_read");
    if (st != KQCL_OK)
        return st;
    cl_int err = clEnqueueReadBuffer(kq_tensor_device(t)->queue, t->buffer, CL_TRUE, 0, nbytes, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(t->ctx, err, "kqcl_tensor_read");
}

KQCL_API void kqcl_tensor_destroy(kqcl_tensor *t)
{
    if (t == NULL)
        return;
    clReleaseMemObject(t->buffer);
    free(t);
}

KQCL_API int64_t kqcl_tensor_rows(const kqcl_tensor *t) { return t ? t->rows : 0; }
KQCL_API int64_t kqcl_tensor_cols(const kqcl_tensor *t) { return t ? t->cols : 0; }
KQCL_API kqcl_type kqcl_tensor_type(const kqcl_tensor *t) { return t ? t->type : KQCL_TYPE_F32; }
KQCL_API size_t kqcl_tensor_bytes(const kqcl_tensor *t) { return t ? t->bytes : 0; }
