/* tensor.h -- a tensor's placement on the devices: whole on one, or in parts over several. */
#ifndef KQCL_TENSOR_H
#define KQCL_TENSOR_H

#include "context.h"

/* What one device holds of a placed tensor: rows [row0, row0 + rows) and columns
 * [col0, col0 + cols), stored in host layout (rows x kqcl_row_size(type, cols) bytes). */
typedef struct kq_part {
    int device;
    int64_t row0, rows, col0, cols;
    size_t row_bytes, bytes;
    cl_mem buffer;
} kq_part;

struct kqcl_tensor {
    kqcl_context *ctx;
    kqcl_type type;
    int64_t rows, cols;
    size_t row_bytes; /* kqcl_row_size(type, cols) */
    size_t bytes;     /* rows * row_bytes */
    int device;       /* index into ctx->devices: the device of a whole tensor, else part 0's */
    cl_mem buffer;    /* a whole tensor's buffer (ggml layout); NULL when split or replicated */
    kqcl_split split;
    int n_parts;      /* 1 for a whole tensor; devices holding something otherwise */
    kq_part *parts;   /* n_parts entries, in device order */
};

/* The device a tensor lives on. */
static inline kq_device *kq_tensor_device(const kqcl_tensor *t) { return &t->ctx->devices[t->device]; }

/* Is `type` one of the float types activations and conversions take? */
bool kq_type_is_float(kqcl_type type);

/* Check a tensor argument of a public call: not NULL and of this context. */
kqcl_status kq_check_tensor(kqcl_context *ctx, const kqcl_tensor *t, const char *call, const char *name);

/* The part of t on `device`, or NULL where it holds nothing. */
const kq_part *kq_tensor_part_on(const kqcl_tensor *t, int device);

/* A single-device view of part p, usable wherever a whole tensor is (no ownership). */
kqcl_tensor kq_part_view(const kqcl_tensor *t, const kq_part *p);

/* Do a and b have the same placement, part for part (same devices and boundaries of rows and
 * columns relative to their own shapes)? */
bool kq_same_layout(const kqcl_tensor *a, const kqcl_tensor *b);

#endif
