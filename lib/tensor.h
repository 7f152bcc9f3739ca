/* tensor.h -- a tensor's placement on the devices. */
#ifndef KQCL_TENSOR_H
#define KQCL_TENSOR_H

#include "context.h"

struct kqcl_tensor {
    kqcl_context *ctx;
    kqcl_type type;
    int64_t rows, cols;
    size_t row_bytes; /* kqcl_row_size(type, cols) */
    size_t bytes;     /* rows * row_bytes */
    int device;       /* index into ctx->devices */
    cl_mem buffer;    /* ggml layout, rows * row_bytes bytes */
};

/* The device a tensor lives on. */
static inline kq_device *kq_tensor_device(const kqcl_tensor *t) { return &t->ctx->devices[t->device]; }

/* Is `type` one of the float types activations and conversions take? */
bool kq_type_is_float(kqcl_type type);

/* Check a tensor argument of a public call: not NULL and of this context. */
kqcl_status kq_check_tensor(kqcl_context *ctx, const kqcl_tensor *t, const char *call, const char *name);

#endif
