/* tensor.h -- a tensor's placement on the devices: whole on one, or in parts over several. */
#ifndef KQCL_TENSOR_H
#define KQCL_TENSOR_H

#include "device/context.h"

/* What one buffer of a device holds of a tensor: rows [row0, row0 + rows) and columns
 * [col0, col0 + cols), stored in host layout (rows x kqcl_row_size(type, cols) bytes). A device
 * whose share is larger than its largest allocation holds it in several parts, consecutive row
 * chunks ("big tensors", doc/multi-device.md). */
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
    cl_mem buffer;    /* a whole tensor's one buffer (ggml layout); NULL when split, replicated or
                       * held in several buffers */
    kqcl_split split;
    int n_parts;      /* 1 for a whole tensor in one buffer; else the parts over all devices */
    kq_part *parts;   /* n_parts entries, in device order, a device's row chunks in row order */
    cl_mem view_parent; /* a view (kqcl_tensor_view): the buffer its one part is a sub-buffer of,
                         * retained by the view so that it outlives its kqcl_buffer; else NULL */
    size_t view_offset; /* a view's first byte in view_parent (else 0) */
    /* ctx->live_tensors, a doubly linked list; ctx is NULL once the context was destroyed
     * first (the tensor then holds no OpenCL object; only kqcl_tensor_destroy and the shape
     * getters still work on it). */
    struct kqcl_tensor *live_prev, *live_next;
};

/* A shape kqcl_tensor_create takes: KQCL_ERR_INVALID_ARG (unknown type, bad shape) or
 * KQCL_ERR_UNSUPPORTED (too large for the kernels' 32-bit indices), the message prefixed by `call`. */
kqcl_status kq_check_shape(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols, const char *call);

/* A whole tensor on `device` held in `buffer` (taken: released with the tensor, also on failure),
 * a sub-buffer of `parent` (retained by the tensor) for a view. The shape must have passed
 * kq_check_shape. KQCL_ERR_OUT_OF_MEMORY when the host has no memory. */
kqcl_status kq_tensor_wrap(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols, int device, cl_mem buffer,
                           cl_mem parent, const char *call, kqcl_tensor **out);

/* For kqcl_context_destroy: release every live tensor's buffers and detach it from ctx. */
void kq_tensors_detach_all(kqcl_context *ctx);
/* The same for the kqcl_buffers not yet destroyed (buffer.c). */
void kq_buffers_detach_all(kqcl_context *ctx);

/* The memory object a whole tensor's bytes lie in, and where in it they start: a view's parent
 * and offset, else its own buffer and 0 (to tell which operands share bytes, and to reach them
 * through one object). */
static inline cl_mem kq_tensor_root(const kqcl_tensor *t, size_t *offset)
{
    *offset = t->view_parent ? t->view_offset : 0;
    return t->view_parent ? t->view_parent : t->buffer;
}

/* Whether two whole tensors share bytes. */
static inline bool kq_tensors_meet(const kqcl_tensor *a, const kqcl_tensor *b)
{
    size_t oa, ob;
    cl_mem ra = kq_tensor_root(a, &oa), rb = kq_tensor_root(b, &ob);
    return ra == rb && oa < ob + b->bytes && ob < oa + a->bytes;
}

/* The device a tensor lives on. */
static inline kq_device *kq_tensor_device(const kqcl_tensor *t) { return &t->ctx->devices[t->device]; }

/* The single-device case of a product: w, x and y whole, each in one buffer (not split,
 * replicated or held in several), and together. */
static inline bool kq_on_one_device(const kqcl_tensor *w, const kqcl_tensor *x, const kqcl_tensor *y)
{
    return w->buffer != NULL && x->buffer != NULL && y->buffer != NULL && w->device == x->device &&
           w->device == y->device;
}

/* Split `units` over n devices in proportion to weights (largest remainder, ties to the lower
 * device, so it is deterministic); counts[i] may be 0. */
void kq_shares(int64_t units, int n, const double *weights, int64_t *counts);
/* The automatic weights of ctx's devices: measured speeds (kqcl_measure_devices), else memory
 * sizes. */
void kq_auto_weights(kqcl_context *ctx, double *weights);

/* A buffer's OpenCL memory and device, size and context (NULL once the context was destroyed
 * first), for the calls that read raw device memory (kqcl_rope's positions). */
cl_mem kq_buffer_mem(const kqcl_buffer *b, int *device);
size_t kq_buffer_bytes(const kqcl_buffer *b);
const kqcl_context *kq_buffer_context(const kqcl_buffer *b);

/* Is `type` one of the float types activations and conversions take? */
bool kq_type_is_float(kqcl_type type);

/* Check a tensor argument of a public call: not NULL and of this context. */
kqcl_status kq_check_tensor(kqcl_context *ctx, const kqcl_tensor *t, const char *call, const char *name);

/* The (first) part of t on `device`, or NULL where it holds nothing. */
const kq_part *kq_tensor_part_on(const kqcl_tensor *t, int device);

/* Rows of row_bytes each that one buffer of at most max_alloc bytes holds: a multiple of 256
 * where that leaves at least 256; 0 when a single row does not fit. */
int64_t kq_chunk_rows(size_t row_bytes, uint64_t max_alloc);

/* A row range [row0, row0 + rows) that lies in one part of each of two tensors. */
typedef struct kq_segment {
    const kq_part *a, *b;
    int64_t row0, rows;
} kq_segment;

/* Two tensors of the same rows, both placed by rows (whole, in one buffer or several, or split
 * by rows; every part all columns) with every row on the same device in both: the ranges in
 * which no part of either changes, in row order, into a new array (free it) of *count entries.
 * NULL when they are not so placed (or no host memory: *count = -1 then). */
kq_segment *kq_row_segments(const kqcl_tensor *a, const kqcl_tensor *b, int *count);

/* What a segment's rows go through: `in` a single-buffer view of them, `out` the buffer their
 * results go to, `arg` the caller's. */
typedef kqcl_status (*kq_segment_fn)(kqcl_context *ctx, const kqcl_tensor *in, cl_mem out, void *arg);

/* The rows of `seg` of src (its part seg->a) through fn into seg->b's buffer (one device,
 * out_row_bytes a row): a part the range is the whole of is used in place, else the rows go
 * through scratch buffers. `what` prefixes the messages ("kqcl_convert"). */
kqcl_status kq_segment_apply(kqcl_context *ctx, const kqcl_tensor *src, const kq_segment *seg, size_t out_row_bytes,
                             kq_segment_fn fn, void *arg, const char *what);

/* A single-device view of part p, usable wherever a whole tensor is (no ownership). */
kqcl_tensor kq_part_view(const kqcl_tensor *t, const kq_part *p);

/* Do a and b have the same placement, part for part (same devices and boundaries of rows and
 * columns relative to their own shapes)? */
bool kq_same_layout(const kqcl_tensor *a, const kqcl_tensor *b);

#endif
