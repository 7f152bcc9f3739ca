/* tensor.c -- creating tensors, whole on one device or placed over several, and moving their
 * bytes to and from the host (scattered to and gathered from the parts). */
#include "device/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool kq_type_is_float(kqcl_type type)
{
    return type == KQCL_TYPE_F32 || type == KQCL_TYPE_F16 || type == KQCL_TYPE_BF16;
}

kqcl_status kq_check_tensor(kqcl_context *ctx, const kqcl_tensor *t, const char *call, const char *name)
{
    if (t == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %s is NULL", call, name);
    if (t->ctx == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %s outlived its context (destroyed first)", call, name);
    if (t->ctx != ctx)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %s belongs to another context", call, name);
    return KQCL_OK;
}


/* ---- shares ----------------------------------------------------------------------------------- */

void kq_shares(int64_t units, int n, const double *weights, int64_t *counts)
{
    double total = 0, rem[KQ_MAX_DEVICES];
    for (int i = 0; i < n; i++)
        total += weights[i] > 0 ? weights[i] : 0;
    int64_t given = 0;
    for (int i = 0; i < n; i++) {
        double w = total > 0 ? (weights[i] > 0 ? weights[i] : 0) : 1;
        double exact = (double)units * w / (total > 0 ? total : n);
        counts[i] = (int64_t)exact;
        if (given + counts[i] > units) /* floating-point slack */
            counts[i] = units - given;
        rem[i] = w > 0 ? exact - (double)counts[i] : -1;
        given += counts[i];
    }
    for (; given < units; given++) { /* largest remainder first, ties to the lower device */
        int best = 0;
        for (int i = 1; i < n; i++)
            if (rem[i] > rem[best])
                best = i;
        counts[best]++;
        rem[best] -= 1;
    }
}

void kq_auto_weights(kqcl_context *ctx, double *weights)
{
    for (int d = 0; d < ctx->n_devices; d++) {
        if (ctx->speeds_measured)
            weights[d] = ctx->speeds[d];
        else
            weights[d] = (double)(ctx->devices[d].info.global_mem_bytes ? ctx->devices[d].info.global_mem_bytes : 1);
    }
}

/* ---- creation ------------------------------------------------------------------------------- */

kqcl_status kq_check_shape(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols, const char *call)
{
    if (!kq_type_is_known(type))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: unknown type %d", call, (int)type);
    size_t row_bytes = kqcl_row_size(type, cols);
    if (rows <= 0 || row_bytes == 0)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG,
                       "%s: shape %lld x %lld is not valid for %s (rows > 0, cols a positive multiple of %lld)",
                       call, (long long)rows, (long long)cols, kqcl_type_name(type),
                       (long long)kqcl_block_size(type));
    /* Kernels index rows and columns with 32-bit ints. */
    if (rows > INT32_MAX || cols > INT32_MAX || (uint64_t)rows > SIZE_MAX / row_bytes)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: shape %lld x %lld is too large", call, (long long)rows,
                       (long long)cols);
    return KQCL_OK;
}

static kqcl_tensor *new_tensor(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols, kqcl_split split)
{
    kqcl_tensor *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->ctx = ctx;
    t->type = type;
    t->rows = rows;
    t->cols = cols;
    t->row_bytes = kqcl_row_size(type, cols);
    t->bytes = (size_t)rows * t->row_bytes;
    t->split = split;
    /* on the context's list, so that destroying the context first cannot leave it dangling */
    t->live_next = ctx->live_tensors;
    if (ctx->live_tensors != NULL)
        ctx->live_tensors->live_prev = t;
    ctx->live_tensors = t;
    return t;
}

static void release_buffers(kqcl_tensor *t)
{
    for (int i = 0; i < t->n_parts; i++) {
        if (t->parts[i].buffer)
            clReleaseMemObject(t->parts[i].buffer);
        t->parts[i].buffer = NULL;
    }
    t->buffer = NULL;
    if (t->view_parent) /* after the sub-buffer made from it */
        clReleaseMemObject(t->view_parent);
    t->view_parent = NULL;
}

void kq_tensors_detach_all(kqcl_context *ctx)
{
    for (kqcl_tensor *t = ctx->live_tensors, *next; t != NULL; t = next) {
        next = t->live_next;
        release_buffers(t);
        t->ctx = NULL;
        t->live_prev = t->live_next = NULL;
    }
    ctx->live_tensors = NULL;
}

/* A tensor-only call on a tensor whose context is gone: refused, the message context-less. */
static kqcl_status check_alive(const kqcl_tensor *t, const char *call)
{
    if (t->ctx != NULL)
        return KQCL_OK;
    return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: the tensor's context was destroyed before it; only "
                   "kqcl_tensor_destroy is left to call", call);
}

int64_t kq_chunk_rows(size_t row_bytes, uint64_t max_alloc)
{
    uint64_t r = row_bytes ? max_alloc / row_bytes : 0;
    if (r >= 256)
        r -= r % 256; /* whole kernel tiles in every chunk */
    return r > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)r;
}

/* Turn the devices' shares (`base`, one a device) into the tensor's parts: a share larger than
 * its device's largest allocation is cut into row chunks. Everything is checked before any
 * buffer is made: a device's shares over its memory (KQCL_ERR_OUT_OF_MEMORY), a row larger than
 * one allocation or a column part or replica that would need several buffers
 * (KQCL_ERR_UNSUPPORTED). */
static kqcl_status plan_parts(kqcl_context *ctx, kqcl_tensor *t, const kq_part *base, int n_base, const char *call)
{
    uint64_t on_device[KQ_MAX_DEVICES] = {0};
    int64_t total = 0;
    for (int i = 0; i < n_base; i++) {
        const kq_part *p = &base[i];
        const kqcl_device_info *info = &ctx->devices[p->device].info;
        size_t row_bytes = kqcl_row_size(t->type, p->cols);
        uint64_t bytes = (uint64_t)p->rows * row_bytes; /* rows * row_bytes fits: kq_check_shape */
        on_device[p->device] += bytes;
        if (info->global_mem_bytes > 0 && on_device[p->device] > info->global_mem_bytes)
            return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "%s: %llu bytes exceed device %d's memory (%llu)", call,
                           (unsigned long long)on_device[p->device], p->device,
                           (unsigned long long)info->global_mem_bytes);
        if (bytes <= info->max_alloc_bytes) {
            total++;
            continue;
        }
        if (row_bytes > info->max_alloc_bytes)
            return kq_fail(ctx, KQCL_ERR_UNSUPPORTED,
                           "%s: one row of %lld %s values is %zu bytes, more than device %d's largest allocation "
                           "(%llu); a row must fit one buffer",
                           call, (long long)p->cols, kqcl_type_name(t->type), row_bytes, p->device,
                           (unsigned long long)info->max_alloc_bytes);
        if (t->split == KQCL_SPLIT_COLS || t->split == KQCL_SPLIT_REPLICATE)
            return kq_fail(ctx, KQCL_ERR_UNSUPPORTED,
                           "%s: device %d's %s of %llu bytes exceeds its largest allocation (%llu); only whole "
                           "tensors and row splits are held in several buffers",
                           call, p->device, t->split == KQCL_SPLIT_COLS ? "column part" : "copy",
                           (unsigned long long)bytes, (unsigned long long)info->max_alloc_bytes);
        int64_t per = kq_chunk_rows(row_bytes, info->max_alloc_bytes);
        total += (p->rows + per - 1) / per;
    }
    if (total > INT32_MAX / 2)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: %lld buffers would be needed", call, (long long)total);
    t->parts = calloc((size_t)total, sizeof *t->parts);
    if (t->parts == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "%s: no host memory", call);
    for (int i = 0; i < n_base; i++) {
        kq_part p = base[i];
        p.row_bytes = kqcl_row_size(t->type, p.cols);
        int64_t per = kq_chunk_rows(p.row_bytes, ctx->devices[p.device].info.max_alloc_bytes);
        if ((uint64_t)p.rows * p.row_bytes <= ctx->devices[p.device].info.max_alloc_bytes)
            per = p.rows;
        for (int64_t r = 0; r < p.rows; r += per) {
            kq_part c = p;
            c.row0 = p.row0 + r;
            c.rows = p.rows - r < per ? p.rows - r : per;
            c.bytes = (size_t)c.rows * c.row_bytes;
            t->parts[t->n_parts++] = c;
        }
    }
    return KQCL_OK;
}

/* Give every part a buffer on its device. */
static kqcl_status alloc_parts(kqcl_context *ctx, kqcl_tensor *t)
{
    for (int i = 0; i < t->n_parts; i++) {
        kq_part *p = &t->parts[i];
        cl_int err;
        p->buffer = clCreateBuffer(ctx->devices[p->device].cl_ctx, CL_MEM_READ_WRITE, p->bytes, NULL, &err);
        if (err != CL_SUCCESS)
            return kq_cl_fail(ctx, err, "clCreateBuffer for a tensor");
    }
    t->device = t->parts[0].device;
    if (t->n_parts == 1 && t->split == KQCL_SPLIT_NONE)
        t->buffer = t->parts[0].buffer;
    return KQCL_OK;
}

/* Plan t's buffers from the devices' parts `base` (cut into chunks where one allocation cannot
 * hold a part) and allocate them; t is destroyed on failure. t NULL: the host had no memory. */
static kqcl_status finish_tensor(kqcl_context *ctx, kqcl_tensor *t, const kq_part *base, int n_base,
                                 const char *call, kqcl_tensor **out)
{
    if (t == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "%s: no host memory", call);
    kqcl_status st = plan_parts(ctx, t, base, n_base, call);
    if (st == KQCL_OK)
        st = alloc_parts(ctx, t);
    if (st != KQCL_OK) {
        kqcl_tensor_destroy(t);
        return st;
    }
    *out = t;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_tensor_create_on(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols,
                                           int device, kqcl_tensor **out)
{
    if (out != NULL)
        *out = NULL;
    if (ctx == NULL || out == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_tensor_create: NULL argument");
    kq_clear_error(ctx);
    if (device < 0 || device >= ctx->n_devices)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_tensor_create_on: device %d out of range 0..%d", device,
                       ctx->n_devices - 1);
    kqcl_status st = kq_check_shape(ctx, type, rows, cols, "kqcl_tensor_create");
    if (st != KQCL_OK)
        return st;
    kqcl_tensor *t = new_tensor(ctx, type, rows, cols, KQCL_SPLIT_NONE);
    kq_part whole = {.device = device, .rows = rows, .cols = cols};
    return finish_tensor(ctx, t, &whole, 1, "kqcl_tensor_create", out);
}

kqcl_status kq_tensor_wrap(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols, int device, cl_mem buffer,
                           cl_mem parent, const char *call, kqcl_tensor **out)
{
    kqcl_tensor *t = new_tensor(ctx, type, rows, cols, KQCL_SPLIT_NONE);
    if (t != NULL)
        t->parts = calloc(1, sizeof *t->parts);
    if (t == NULL || t->parts == NULL) {
        clReleaseMemObject(buffer);
        kqcl_tensor_destroy(t);
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "%s: no host memory", call);
    }
    t->parts[0] = (kq_part){.device = device, .rows = rows, .cols = cols, .row_bytes = t->row_bytes,
                            .bytes = t->bytes, .buffer = buffer};
    t->n_parts = 1;
    t->device = device;
    t->buffer = buffer;
    cl_int err = parent != NULL ? clRetainMemObject(parent) : CL_SUCCESS;
    if (err != CL_SUCCESS) {
        kqcl_tensor_destroy(t);
        return kq_cl_fail(ctx, err, "clRetainMemObject for a view");
    }
    t->view_parent = parent;
    *out = t;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_tensor_create(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols,
                                        kqcl_tensor **out)
{
    return kqcl_tensor_create_on(ctx, type, rows, cols, 0, out);
}

static kqcl_status check_fractions(kqcl_context *ctx, const double *fractions)
{
    double total = 0;
    for (int i = 0; i < ctx->n_devices; i++) {
        if (!(fractions[i] >= 0) || fractions[i] > 1e300) /* also refuses NaN */
            return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_tensor_create_split: fraction %d is %g", i,
                           fractions[i]);
        total += fractions[i];
    }
    if (!(total > 0))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_tensor_create_split: the fractions are all 0");
    return KQCL_OK;
}

/* The devices' shares of a split: rows, or columns in 256-value units (the last may be short);
 * at most one a device, in device order. */
static int layout_shares(const kqcl_tensor *t, const double *weights, kq_part *base)
{
    int n = t->ctx->n_devices, n_base = 0;
    int64_t counts[KQ_MAX_DEVICES];
    if (t->split == KQCL_SPLIT_REPLICATE) {
        for (int d = 0; d < n; d++)
            base[n_base++] = (kq_part){.device = d, .rows = t->rows, .cols = t->cols};
        return n_base;
    }
    bool by_rows = t->split == KQCL_SPLIT_ROWS;
    int64_t units = by_rows ? t->rows : (t->cols + QK_K - 1) / QK_K;
    kq_shares(units, n, weights, counts);
    int64_t at = 0;
    for (int d = 0; d < n; d++) {
        if (counts[d] == 0)
            continue;
        kq_part p = {.device = d, .rows = t->rows, .cols = t->cols};
        if (by_rows) {
            p.row0 = at, p.rows = counts[d];
        } else {
            p.col0 = at * QK_K;
            p.cols = ((at + counts[d]) * QK_K < t->cols ? (at + counts[d]) * QK_K : t->cols) - p.col0;
        }
        at += counts[d];
        base[n_base++] = p;
    }
    return n_base;
}

KQCL_API kqcl_status kqcl_tensor_create_split_ex(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols,
                                                 kqcl_split split, const double *fractions, kqcl_tensor **out)
{
    if (out != NULL)
        *out = NULL;
    if (ctx == NULL || out == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_tensor_create_split: NULL argument");
    kq_clear_error(ctx);
    if (split == KQCL_SPLIT_NONE)
        return kqcl_tensor_create_on(ctx, type, rows, cols, 0, out);
    if (split != KQCL_SPLIT_ROWS && split != KQCL_SPLIT_COLS && split != KQCL_SPLIT_REPLICATE)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_tensor_create_split: unknown split %d", (int)split);
    kqcl_status st = kq_check_shape(ctx, type, rows, cols, "kqcl_tensor_create_split");
    if (st == KQCL_OK && fractions != NULL)
        st = check_fractions(ctx, fractions);
    if (st != KQCL_OK)
        return st;
    double weights[KQ_MAX_DEVICES];
    if (fractions != NULL)
        memcpy(weights, fractions, (size_t)ctx->n_devices * sizeof *weights);
    else
        kq_auto_weights(ctx, weights);
    kqcl_tensor *t = new_tensor(ctx, type, rows, cols, split);
    kq_part base[KQ_MAX_DEVICES];
    int n_base = t ? layout_shares(t, weights, base) : 0;
    return finish_tensor(ctx, t, base, n_base, "kqcl_tensor_create_split", out);
}

KQCL_API kqcl_status kqcl_tensor_create_split(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols,
                                              kqcl_split split, kqcl_tensor **out)
{
    return kqcl_tensor_create_split_ex(ctx, type, rows, cols, split, NULL, out);
}

/* ---- parts ------------------------------------------------------------------------------------ */

const kq_part *kq_tensor_part_on(const kqcl_tensor *t, int device)
{
    for (int i = 0; i < t->n_parts; i++)
        if (t->parts[i].device == device)
            return &t->parts[i];
    return NULL;
}

kqcl_tensor kq_part_view(const kqcl_tensor *t, const kq_part *p)
{
    kqcl_tensor v = {.ctx = t->ctx, .type = t->type, .rows = p->rows, .cols = p->cols, .row_bytes = p->row_bytes,
                     .bytes = p->bytes, .device = p->device, .buffer = p->buffer, .split = KQCL_SPLIT_NONE,
                     .n_parts = 1, .parts = (kq_part *)p};
    return v;
}

/* Placed by rows: whole or split by rows, every part all columns, parts in row order. */
static bool by_rows(const kqcl_tensor *t)
{
    if (t->split != KQCL_SPLIT_NONE && t->split != KQCL_SPLIT_ROWS)
        return false;
    for (int i = 0; i < t->n_parts; i++)
        if (t->parts[i].cols != t->cols || t->parts[i].row0 != (i ? t->parts[i - 1].row0 + t->parts[i - 1].rows : 0))
            return false;
    return true;
}

kq_segment *kq_row_segments(const kqcl_tensor *a, const kqcl_tensor *b, int *count)
{
    *count = 0;
    if (a->rows != b->rows || !by_rows(a) || !by_rows(b))
        return NULL;
    kq_segment *segs = malloc((size_t)(a->n_parts + b->n_parts) * sizeof *segs);
    if (segs == NULL) {
        *count = -1;
        return NULL;
    }
    int i = 0, j = 0, n = 0;
    for (int64_t at = 0; at < a->rows;) {
        const kq_part *p = &a->parts[i], *q = &b->parts[j];
        if (p->device != q->device) {
            free(segs);
            return NULL;
        }
        int64_t end_p = p->row0 + p->rows, end_q = q->row0 + q->rows, end = end_p < end_q ? end_p : end_q;
        segs[n++] = (kq_segment){p, q, at, end - at};
        at = end;
        i += end == end_p;
        j += end == end_q;
    }
    *count = n;
    return segs;
}

kqcl_status kq_segment_apply(kqcl_context *ctx, const kqcl_tensor *src, const kq_segment *seg, size_t out_row_bytes,
                             kq_segment_fn fn, void *arg, const char *what)
{
    const kq_part *a = seg->a, *b = seg->b;
    kq_device *dev = &ctx->devices[a->device];
    size_t a_bytes = (size_t)seg->rows * a->row_bytes, b_bytes = (size_t)seg->rows * out_row_bytes;
    kq_part in = *a;
    in.row0 = seg->row0, in.rows = seg->rows, in.bytes = a_bytes;
    cl_mem out = b->buffer;
    bool in_temp = seg->rows != a->rows, out_temp = seg->rows != b->rows;
    cl_int err = CL_SUCCESS;
    if (in_temp) {
        in.buffer = clCreateBuffer(dev->cl_ctx, CL_MEM_READ_WRITE, a_bytes, NULL, &err);
        if (err == CL_SUCCESS)
            err = clEnqueueCopyBuffer(dev->queue, a->buffer, in.buffer, (size_t)(seg->row0 - a->row0) * a->row_bytes, 0,
                                      a_bytes, 0, NULL, NULL);
    }
    if (err == CL_SUCCESS && out_temp)
        out = clCreateBuffer(dev->cl_ctx, CL_MEM_READ_WRITE, b_bytes, NULL, &err);
    char msg[96];
    snprintf(msg, sizeof msg, "%s: scratch rows", what);
    kqcl_status st = err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(ctx, err, msg);
    if (st == KQCL_OK) {
        kqcl_tensor view = kq_part_view(src, &in);
        st = fn(ctx, &view, out, arg);
    }
    if (st == KQCL_OK && out_temp &&
        (err = clEnqueueCopyBuffer(dev->queue, out, b->buffer, 0, (size_t)(seg->row0 - b->row0) * out_row_bytes,
                                   b_bytes, 0, NULL, NULL)) != CL_SUCCESS) {
        snprintf(msg, sizeof msg, "%s: copying rows", what);
        st = kq_cl_fail(ctx, err, msg);
    }
    if (in_temp && in.buffer) /* queued commands keep them until done */
        clReleaseMemObject(in.buffer);
    if (out_temp && out)
        clReleaseMemObject(out);
    return st;
}

/* Copies on several devices; one copy (a context of one device) is a plain tensor. */
static bool replicated(const kqcl_tensor *t) { return t->split == KQCL_SPLIT_REPLICATE && t->ctx->n_devices > 1; }

bool kq_same_layout(const kqcl_tensor *a, const kqcl_tensor *b)
{
    if (a->n_parts != b->n_parts || replicated(a) != replicated(b))
        return false;
    for (int i = 0; i < a->n_parts; i++) {
        const kq_part *p = &a->parts[i], *q = &b->parts[i];
        bool rows_whole = p->rows == a->rows && q->rows == b->rows;
        bool cols_whole = p->cols == a->cols && q->cols == b->cols;
        if (p->device != q->device || !(rows_whole || (p->row0 == q->row0 && p->rows == q->rows)) ||
            !(cols_whole || (p->col0 == q->col0 && p->cols == q->cols)))
            return false;
    }
    return true;
}

KQCL_API kqcl_split kqcl_tensor_split(const kqcl_tensor *t) { return t ? t->split : KQCL_SPLIT_NONE; }

KQCL_API kqcl_status kqcl_tensor_part(const kqcl_tensor *t, int device, int64_t *first, int64_t *count)
{
    if (t == NULL || first == NULL || count == NULL)
        return kq_fail(t ? t->ctx : NULL, KQCL_ERR_INVALID_ARG, "kqcl_tensor_part: NULL argument");
    if (check_alive(t, "kqcl_tensor_part") != KQCL_OK)
        return KQCL_ERR_INVALID_ARG;
    if (device < 0 || device >= t->ctx->n_devices)
        return kq_fail(t->ctx, KQCL_ERR_INVALID_ARG, "kqcl_tensor_part: device %d out of range", device);
    const kq_part *p = kq_tensor_part_on(t, device);
    bool by_cols = t->split == KQCL_SPLIT_COLS;
    *first = p == NULL ? 0 : by_cols ? p->col0 : p->row0;
    *count = 0;
    for (int i = 0; p != NULL && i < t->n_parts; i++) /* a device's row chunks are consecutive */
        if (t->parts[i].device == device)
            *count += by_cols ? t->parts[i].cols : t->parts[i].rows;
    return KQCL_OK;
}

/* ---- moving bytes ----------------------------------------------------------------------------- */

/* Enqueue the copy between part p and the whole tensor's host image (non-blocking; the caller
 * waits). Column parts are strided in host memory: a rectangle copy. */
static cl_int enqueue_part_io(const kqcl_tensor *t, const kq_part *p, void *host, bool write, cl_event *ev)
{
    cl_command_queue q = t->ctx->devices[p->device].queue;
    if (p->cols == t->cols) {
        size_t off = (size_t)p->row0 * t->row_bytes;
        return write ? clEnqueueWriteBuffer(q, p->buffer, CL_FALSE, 0, p->bytes, (char *)host + off, 0, NULL, ev)
                     : clEnqueueReadBuffer(q, p->buffer, CL_FALSE, 0, p->bytes, (char *)host + off, 0, NULL, ev);
    }
    size_t col_off = p->col0 ? kqcl_row_size(t->type, p->col0) : 0; /* col0 is a whole number of blocks */
    size_t buf_origin[3] = {0, 0, 0}, host_origin[3] = {col_off, (size_t)p->row0, 0};
    size_t region[3] = {p->row_bytes, (size_t)p->rows, 1};
    return write ? clEnqueueWriteBufferRect(q, p->buffer, CL_FALSE, buf_origin, host_origin, region, p->row_bytes, 0,
                                            t->row_bytes, 0, host, 0, NULL, ev)
                 : clEnqueueReadBufferRect(q, p->buffer, CL_FALSE, buf_origin, host_origin, region, p->row_bytes, 0,
                                           t->row_bytes, 0, host, 0, NULL, ev);
}

/* Copy every part at once (the devices' copies run side by side), then wait for all; parts
 * beyond KQ_MAX_DEVICES (a device's row chunks) go in batches of that many. */
static kqcl_status transfer_all(kqcl_tensor *t, void *host, bool write, const char *call)
{
    cl_int err = CL_SUCCESS;
    for (int first = 0; first < t->n_parts && err == CL_SUCCESS; first += KQ_MAX_DEVICES) {
        cl_event evs[KQ_MAX_DEVICES];
        int n = 0;
        for (int i = first; i < t->n_parts && i < first + KQ_MAX_DEVICES && err == CL_SUCCESS; i++)
            if ((err = enqueue_part_io(t, &t->parts[i], host, write, &evs[n])) == CL_SUCCESS)
                n++;
        cl_int wait_err = CL_SUCCESS;
        for (int i = 0; i < n; i++) { /* one at a time: the devices' events are of different contexts */
            cl_int e = clWaitForEvents(1, &evs[i]);
            if (wait_err == CL_SUCCESS)
                wait_err = e;
            clReleaseEvent(evs[i]);
        }
        if (err == CL_SUCCESS)
            err = wait_err;
    }
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(t->ctx, err, call);
}

static kqcl_status check_transfer(kqcl_tensor *t, const void *host, size_t nbytes, const char *call)
{
    if (t == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: tensor is NULL", call);
    if (check_alive(t, call) != KQCL_OK)
        return KQCL_ERR_INVALID_ARG;
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
    if (t->buffer != NULL) { /* whole, one buffer */
        cl_int err = clEnqueueWriteBuffer(kq_tensor_device(t)->queue, t->buffer, CL_TRUE, 0, nbytes, src, 0, NULL,
                                          NULL);
        return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(t->ctx, err, "kqcl_tensor_write");
    }
    return transfer_all(t, (void *)src, true, "kqcl_tensor_write");
}

KQCL_API kqcl_status kqcl_tensor_read(kqcl_tensor *t, void *dst, size_t nbytes)
{
    kqcl_status st = check_transfer(t, dst, nbytes, "kqcl_tensor_read");
    if (st != KQCL_OK)
        return st;
    if (t->buffer != NULL) { /* whole, one buffer */
        cl_int err = clEnqueueReadBuffer(kq_tensor_device(t)->queue, t->buffer, CL_TRUE, 0, nbytes, dst, 0, NULL,
                                         NULL);
        return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(t->ctx, err, "kqcl_tensor_read");
    }
    if (t->split == KQCL_SPLIT_REPLICATE) { /* every copy is whole: read one */
        cl_int err = clEnqueueReadBuffer(t->ctx->devices[t->parts[0].device].queue, t->parts[0].buffer, CL_TRUE, 0,
                                         nbytes, dst, 0, NULL, NULL);
        return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(t->ctx, err, "kqcl_tensor_read");
    }
    return transfer_all(t, dst, false, "kqcl_tensor_read");
}

static kqcl_status part_io(kqcl_tensor *t, int device, void *host, size_t nbytes, bool write, const char *call)
{
    if (t == NULL || host == NULL)
        return kq_fail(t ? t->ctx : NULL, KQCL_ERR_INVALID_ARG, "%s: NULL argument", call);
    if (check_alive(t, call) != KQCL_OK)
        return KQCL_ERR_INVALID_ARG;
    kq_clear_error(t->ctx);
    const kq_part *p = (device >= 0 && device < t->ctx->n_devices) ? kq_tensor_part_on(t, device) : NULL;
    if (p == NULL)
        return kq_fail(t->ctx, KQCL_ERR_INVALID_ARG, "%s: device %d holds no part of the tensor", call, device);
    size_t part_bytes = 0; /* a device's row chunks: consecutive rows, consecutive in host layout */
    for (int i = 0; i < t->n_parts; i++)
        part_bytes += t->parts[i].device == device ? t->parts[i].bytes : 0;
    if (nbytes != part_bytes)
        return kq_fail(t->ctx, KQCL_ERR_INVALID_ARG, "%s: %zu bytes given, device %d's part holds %zu", call, nbytes,
                       device, part_bytes);
    cl_command_queue q = t->ctx->devices[device].queue;
    cl_int err = CL_SUCCESS;
    size_t at = 0;
    for (int i = 0; i < t->n_parts && err == CL_SUCCESS; i++) {
        const kq_part *c = &t->parts[i];
        if (c->device != device)
            continue;
        err = write ? clEnqueueWriteBuffer(q, c->buffer, CL_TRUE, 0, c->bytes, (char *)host + at, 0, NULL, NULL)
                    : clEnqueueReadBuffer(q, c->buffer, CL_TRUE, 0, c->bytes, (char *)host + at, 0, NULL, NULL);
        at += c->bytes;
    }
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(t->ctx, err, call);
}

KQCL_API kqcl_status kqcl_tensor_write_part(kqcl_tensor *t, int device, const void *src, size_t nbytes)
{
    return part_io(t, device, (void *)src, nbytes, true, "kqcl_tensor_write_part");
}

KQCL_API kqcl_status kqcl_tensor_read_part(kqcl_tensor *t, int device, void *dst, size_t nbytes)
{
    return part_io(t, device, dst, nbytes, false, "kqcl_tensor_read_part");
}

KQCL_API void kqcl_tensor_destroy(kqcl_tensor *t)
{
    if (t == NULL)
        return;
    if (t->ctx != NULL) { /* else detached by kqcl_context_destroy: nothing of OpenCL left */
        if (t->live_prev != NULL)
            t->live_prev->live_next = t->live_next;
        else
            t->ctx->live_tensors = t->live_next;
        if (t->live_next != NULL)
            t->live_next->live_prev = t->live_prev;
        release_buffers(t);
    }
    free(t->parts);
    free(t);
}

KQCL_API int64_t kqcl_tensor_rows(const kqcl_tensor *t) { return t ? t->rows : 0; }
KQCL_API int64_t kqcl_tensor_cols(const kqcl_tensor *t) { return t ? t->cols : 0; }
KQCL_API kqcl_type kqcl_tensor_type(const kqcl_tensor *t) { return t ? t->type : KQCL_TYPE_F32; }
KQCL_API size_t kqcl_tensor_bytes(const kqcl_tensor *t) { return t ? t->bytes : 0; }

/* ---- copies between placements ------------------------------------------------------------------- */

static kqcl_status check_copy(kqcl_context *ctx, const kqcl_tensor *src, const kqcl_tensor *dst, const char *call)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: ctx is NULL", call);
    kq_clear_error(ctx);
    kqcl_status st;
    if ((st = kq_check_tensor(ctx, src, call, "src")) != KQCL_OK || (st = kq_check_tensor(ctx, dst, call, "dst")) != KQCL_OK)
        return st;
    if (src->type != dst->type || src->rows != dst->rows || src->cols != dst->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: src and dst differ in type or shape", call);
    return KQCL_OK;
}

/* Same layout: each part is copied on its own device, no host stage. */
static kqcl_status copy_part_by_part(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst)
{
    for (int i = 0; i < src->n_parts; i++) {
        cl_int err = clEnqueueCopyBuffer(ctx->devices[src->parts[i].device].queue, src->parts[i].buffer,
                                         dst->parts[i].buffer, 0, 0, src->parts[i].bytes, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return kq_cl_fail(ctx, err, "kqcl_tensor_copy");
    }
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_tensor_copy(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst)
{
    kqcl_status st = check_copy(ctx, src, dst, "kqcl_tensor_copy");
    if (st != KQCL_OK || src == dst)
        return st;
    if (kq_same_layout(src, dst))
        return copy_part_by_part(ctx, src, dst);
    /* Gather to the host, scatter from it: devices share no memory. */
    void *host = malloc(src->bytes);
    if (host == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "kqcl_tensor_copy: no host memory for %zu bytes", src->bytes);
    st = kqcl_tensor_read((kqcl_tensor *)src, host, src->bytes);
    if (st == KQCL_OK)
        st = kqcl_tensor_write(dst, host, dst->bytes);
    free(host);
    return st;
}

KQCL_API kqcl_status kqcl_gather(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst)
{
    kqcl_status st = check_copy(ctx, src, dst, "kqcl_gather");
    if (st == KQCL_OK && dst->split != KQCL_SPLIT_NONE)
        st = kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_gather: dst must be a whole tensor on one device");
    return st == KQCL_OK ? kqcl_tensor_copy(ctx, src, dst) : st;
}

KQCL_API kqcl_status kqcl_scatter(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst)
{
    kqcl_status st = check_copy(ctx, src, dst, "kqcl_scatter");
    if (st == KQCL_OK && (src->split != KQCL_SPLIT_NONE || (dst->split != KQCL_SPLIT_ROWS && dst->split != KQCL_SPLIT_COLS)))
        st = kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_scatter: src must be whole, dst split by rows or columns");
    return st == KQCL_OK ? kqcl_tensor_copy(ctx, src, dst) : st;
}

KQCL_API kqcl_status kqcl_allgather(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst)
{
    kqcl_status st = check_copy(ctx, src, dst, "kqcl_allgather");
    if (st == KQCL_OK && dst->split != KQCL_SPLIT_REPLICATE)
        st = kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_allgather: dst must be replicated");
    return st == KQCL_OK ? kqcl_tensor_copy(ctx, src, dst) : st;
}
