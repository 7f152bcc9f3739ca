/* buffer.c -- raw device memory (kqcl_buffer): byte ranges written, read, filled and copied, and
 * tensors over parts of it (kqcl_tensor_view, OpenCL sub-buffers). What a ggml backend builds on. */
#include "device/tensor.h"

#include <stdlib.h>
#include <string.h>

/* A sub-buffer the buffer keeps for its views (see "views" below). */
typedef struct kq_sub {
    size_t offset, bytes;
    cl_mem sub;
} kq_sub;

struct kqcl_buffer {
    kqcl_context *ctx; /* NULL once the context was destroyed first (then mem is NULL too) */
    int device;        /* index into ctx->devices */
    size_t bytes;
    cl_mem mem;
    kq_sub *subs;      /* sub_count disjoint ranges sorted by offset, room for sub_slots */
    size_t sub_slots, sub_count;
    struct kqcl_buffer *live_prev, *live_next; /* ctx->live_buffers */
};

cl_mem kq_buffer_mem(const kqcl_buffer *b, int *device)
{
    *device = b->device;
    return b->mem;
}

size_t kq_buffer_bytes(const kqcl_buffer *b) { return b->bytes; }

const kqcl_context *kq_buffer_context(const kqcl_buffer *b) { return b->ctx; }

/* A copy between devices goes through host memory in pieces of at most this many bytes. */
#define STAGE_BYTES ((size_t)16 << 20)

/* ---- checks ------------------------------------------------------------------------------------ */

/* b usable: not NULL, its context alive. Clears the context's last error. */
static kqcl_status check_buffer(const kqcl_buffer *b, const char *call, const char *name)
{
    if (b == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: %s is NULL", call, name);
    if (b->ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG,
                       "%s: %s outlived its context (destroyed first); only kqcl_buffer_destroy is left to call",
                       call, name);
    return KQCL_OK;
}

/* [offset, offset + bytes) inside b, without overflow. */
static kqcl_status check_range(const kqcl_buffer *b, size_t offset, size_t bytes, const char *call, const char *what)
{
    if (offset > b->bytes || bytes > b->bytes - offset)
        return kq_fail(b->ctx, KQCL_ERR_INVALID_ARG,
                       "%s: %s range [%zu, %zu + %zu) lies outside the buffer of %zu bytes", call, what, offset,
                       offset, bytes, b->bytes);
    return KQCL_OK;
}

/* The common prologue of the one-buffer calls: b usable, the host pointer (when `host_needed`)
 * not NULL, the range inside. */
static kqcl_status check_io(const kqcl_buffer *b, size_t offset, const void *host, bool host_needed, size_t bytes,
                            const char *call)
{
    kqcl_status st = check_buffer(b, call, "buffer");
    if (st != KQCL_OK)
        return st;
    kq_clear_error(b->ctx);
    if (host_needed && host == NULL)
        return kq_fail(b->ctx, KQCL_ERR_INVALID_ARG, "%s: host pointer is NULL", call);
    return check_range(b, offset, bytes, call, "byte");
}

static cl_command_queue queue_of(const kqcl_buffer *b) { return b->ctx->devices[b->device].queue; }

/* ---- creation ---------------------------------------------------------------------------------- */

static void link_live(kqcl_buffer *b)
{
    kqcl_context *ctx = b->ctx;
    b->live_next = ctx->live_buffers;
    if (ctx->live_buffers != NULL)
        ctx->live_buffers->live_prev = b;
    ctx->live_buffers = b;
}

static void unlink_live(kqcl_buffer *b)
{
    if (b->live_prev != NULL)
        b->live_prev->live_next = b->live_next;
    else
        b->ctx->live_buffers = b->live_next;
    if (b->live_next != NULL)
        b->live_next->live_prev = b->live_prev;
    b->live_prev = b->live_next = NULL;
}

KQCL_API kqcl_status kqcl_buffer_create(kqcl_context *ctx, int device, size_t bytes, kqcl_buffer **out)
{
    if (out != NULL)
        *out = NULL;
    if (ctx == NULL || out == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_buffer_create: %s is NULL", ctx == NULL ? "ctx" : "out");
    kq_clear_error(ctx);
    if (device < 0 || device >= ctx->n_devices)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_buffer_create: device %d out of range 0..%d", device,
                       ctx->n_devices - 1);
    if (bytes == 0)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_buffer_create: bytes is 0");
    uint64_t max_alloc = ctx->devices[device].info.max_alloc_bytes;
    if ((uint64_t)bytes > max_alloc)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED,
                       "kqcl_buffer_create: %zu bytes exceed device %d's largest allocation (%llu)", bytes, device,
                       (unsigned long long)max_alloc);
    kqcl_buffer *b = calloc(1, sizeof *b);
    if (b == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "kqcl_buffer_create: no host memory");
    cl_int err;
    b->mem = clCreateBuffer(ctx->devices[device].cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS || b->mem == NULL) {
        free(b);
        return kq_cl_fail(ctx, err != CL_SUCCESS ? err : CL_OUT_OF_RESOURCES, "kqcl_buffer_create: clCreateBuffer");
    }
    b->ctx = ctx;
    b->device = device;
    b->bytes = bytes;
    link_live(b);
    *out = b;
    return KQCL_OK;
}

/* ---- views: sub-buffers kept for reuse ---------------------------------------------------------
 * A view is an OpenCL sub-buffer, and through NVIDIA's OpenCL making one and releasing it costs
 * the host 1.0-1.5 us, a quarter of a kernel launch (H100, doc/perf.md runs 26, 27) -- while a
 * ggml graph asks for the same few hundred views at every token (the same weights, the same
 * layout of its compute buffer). So the buffer keeps the sub-buffer of a range asked for, and a
 * later view of exactly that range retains the kept one. Each view holds its own references
 * (kq_tensor_wrap), so views outlive their buffer as before; the buffer drops its kept ones when
 * it goes or its context does.
 * Kept ranges never overlap one another: NVIDIA's driver (580.159) crashes or stalls when
 * sub-buffers of one buffer that overlap in part are kept and used on (scripts/subbuf-probe.c;
 * doc/reliability.md). A new range that overlaps kept ones replaces them: they are dropped from
 * the table (their views keep them until they go) and never handed out again. So the table
 * follows the layout in use -- a graph's compute buffer differs from the prompt's graph to the
 * decode step's -- instead of keeping the first one seen. Past SUB_MAX ranges a view gets a
 * sub-buffer of its own. */
#define SUB_MAX 8192 /* ranges kept a buffer */

/* The first kept range (sorted by offset) that ends after `offset`: the only one that can hold
 * or overlap a range starting there, since kept ranges are disjoint. */
static size_t sub_lower(const kqcl_buffer *b, size_t offset)
{
    size_t lo = 0, hi = b->sub_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->subs[mid].offset + b->subs[mid].bytes <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The kept sub-buffer of exactly [offset, offset + bytes), or NULL. */
static cl_mem sub_find(const kqcl_buffer *b, size_t offset, size_t bytes)
{
    size_t i = sub_lower(b, offset);
    if (i < b->sub_count && b->subs[i].offset == offset && b->subs[i].bytes == bytes)
        return b->subs[i].sub;
    return NULL;
}

/* Keep `sub` for later views of its range in place of the kept ranges it overlaps, unless the
 * buffer keeps SUB_MAX already; the buffer takes a reference of its own. bytes > 0. */
static void sub_keep(kqcl_buffer *b, size_t offset, size_t bytes, cl_mem sub)
{
    size_t i = sub_lower(b, offset), j = i;
    while (j < b->sub_count && b->subs[j].offset < offset + bytes)
        clReleaseMemObject(b->subs[j++].sub); /* overlapped: replaced */
    if (j > i) { /* (subs may still be NULL: nothing to move then) */
        memmove(&b->subs[i], &b->subs[j], (b->sub_count - j) * sizeof *b->subs);
        b->sub_count -= j - i;
    }
    if (b->sub_count == SUB_MAX)
        return;
    if (b->sub_count == b->sub_slots) {
        size_t slots = b->sub_slots ? b->sub_slots * 2 : 64;
        kq_sub *subs = realloc(b->subs, slots * sizeof *subs);
        if (subs == NULL)
            return;
        b->subs = subs;
        b->sub_slots = slots;
    }
    if (clRetainMemObject(sub) != CL_SUCCESS)
        return;
    memmove(&b->subs[i + 1], &b->subs[i], (b->sub_count - i) * sizeof *b->subs);
    b->subs[i] = (kq_sub){offset, bytes, sub};
    b->sub_count++;
}

/* The buffer's references to its kept sub-buffers dropped (views still holding one keep theirs). */
static void subs_release(kqcl_buffer *b)
{
    for (size_t i = 0; i < b->sub_count; i++)
        clReleaseMemObject(b->subs[i].sub);
    free(b->subs);
    b->subs = NULL;
    b->sub_slots = b->sub_count = 0;
}

KQCL_API void kqcl_buffer_destroy(kqcl_buffer *b)
{
    if (b == NULL)
        return;
    if (b->ctx != NULL) { /* else detached: its memory went with the context */
        unlink_live(b);
        subs_release(b);
        clReleaseMemObject(b->mem); /* views keep their own reference (kq_tensor_wrap) */
    }
    free(b);
}

void kq_buffers_detach_all(kqcl_context *ctx)
{
    for (kqcl_buffer *b = ctx->live_buffers, *next; b != NULL; b = next) {
        next = b->live_next;
        subs_release(b);
        clReleaseMemObject(b->mem);
        b->mem = NULL;
        b->ctx = NULL;
        b->live_prev = b->live_next = NULL;
    }
    ctx->live_buffers = NULL;
}

KQCL_API size_t kqcl_buffer_size(const kqcl_buffer *b) { return b ? b->bytes : 0; }

/* ---- bytes in and out -------------------------------------------------------------------------- */

KQCL_API kqcl_status kqcl_buffer_write(kqcl_buffer *b, size_t offset, const void *src, size_t bytes)
{
    kqcl_status st = check_io(b, offset, src, true, bytes, "kqcl_buffer_write");
    if (st != KQCL_OK || bytes == 0)
        return st;
    cl_int err = clEnqueueWriteBuffer(queue_of(b), b->mem, CL_TRUE, offset, bytes, src, 0, NULL, NULL);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(b->ctx, err, "kqcl_buffer_write");
}

KQCL_API kqcl_status kqcl_buffer_read(kqcl_buffer *b, size_t offset, void *dst, size_t bytes)
{
    kqcl_status st = check_io(b, offset, dst, true, bytes, "kqcl_buffer_read");
    if (st != KQCL_OK || bytes == 0)
        return st;
    cl_int err = clEnqueueReadBuffer(queue_of(b), b->mem, CL_TRUE, offset, bytes, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(b->ctx, err, "kqcl_buffer_read");
}

KQCL_API kqcl_status kqcl_buffer_fill(kqcl_buffer *b, size_t offset, uint8_t value, size_t bytes)
{
    kqcl_status st = check_io(b, offset, NULL, false, bytes, "kqcl_buffer_fill");
    if (st != KQCL_OK || bytes == 0)
        return st;
    cl_int err = clEnqueueFillBuffer(queue_of(b), b->mem, &value, 1, offset, bytes, 0, NULL, NULL);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(b->ctx, err, "kqcl_buffer_fill: clEnqueueFillBuffer");
}

/* ---- copies ------------------------------------------------------------------------------------ */

/* One device, overlapping ranges of one buffer (OpenCL refuses those: CL_MEM_COPY_OVERLAP):
 * through a temporary buffer of the device. */
static kqcl_status copy_overlapping(kqcl_buffer *b, size_t dst_offset, size_t src_offset, size_t bytes)
{
    cl_int err;
    cl_mem tmp = clCreateBuffer(b->ctx->devices[b->device].cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err == CL_SUCCESS)
        err = clEnqueueCopyBuffer(queue_of(b), b->mem, tmp, src_offset, 0, bytes, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clEnqueueCopyBuffer(queue_of(b), tmp, b->mem, 0, dst_offset, bytes, 0, NULL, NULL);
    if (tmp != NULL) /* queued commands keep it until done */
        clReleaseMemObject(tmp);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(b->ctx, err, "kqcl_buffer_copy: overlapping ranges");
}

/* Two devices: read a piece from src (after its queued work), write it to dst, blocking. */
static kqcl_status copy_through_host(kqcl_buffer *dst, size_t dst_offset, const kqcl_buffer *src, size_t src_offset,
                                     size_t bytes)
{
    size_t piece = bytes < STAGE_BYTES ? bytes : STAGE_BYTES;
    void *host = malloc(piece);
    if (host == NULL)
        return kq_fail(dst->ctx, KQCL_ERR_OUT_OF_MEMORY, "kqcl_buffer_copy: no host memory for %zu bytes", piece);
    cl_int err = CL_SUCCESS;
    const char *what = "kqcl_buffer_copy: reading src";
    for (size_t at = 0; at < bytes && err == CL_SUCCESS; at += piece) {
        size_t n = bytes - at < piece ? bytes - at : piece;
        err = clEnqueueReadBuffer(queue_of(src), src->mem, CL_TRUE, src_offset + at, n, host, 0, NULL, NULL);
        if (err == CL_SUCCESS) {
            what = "kqcl_buffer_copy: writing dst";
            err = clEnqueueWriteBuffer(queue_of(dst), dst->mem, CL_TRUE, dst_offset + at, n, host, 0, NULL, NULL);
        }
    }
    free(host);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(dst->ctx, err, what);
}

KQCL_API kqcl_status kqcl_buffer_copy(kqcl_buffer *dst, size_t dst_offset, const kqcl_buffer *src,
                                      size_t src_offset, size_t bytes)
{
    const char *call = "kqcl_buffer_copy";
    kqcl_status st = check_buffer(dst, call, "dst");
    if (st != KQCL_OK)
        return st;
    kq_clear_error(dst->ctx);
    if (src == NULL || src->ctx == NULL)
        return kq_fail(dst->ctx, KQCL_ERR_INVALID_ARG, "%s: src %s", call,
                       src == NULL ? "is NULL" : "outlived its context (destroyed first)");
    if (src->ctx != dst->ctx)
        return kq_fail(dst->ctx, KQCL_ERR_INVALID_ARG, "%s: src and dst belong to different contexts", call);
    if ((st = check_range(dst, dst_offset, bytes, call, "dst")) != KQCL_OK ||
        (st = check_range(src, src_offset, bytes, call, "src")) != KQCL_OK || bytes == 0)
        return st;
    if (src->device != dst->device)
        return copy_through_host(dst, dst_offset, src, src_offset, bytes);
    if (src == dst && (src_offset < dst_offset ? dst_offset - src_offset : src_offset - dst_offset) < bytes)
        return src_offset == dst_offset ? KQCL_OK : copy_overlapping(dst, dst_offset, src_offset, bytes);
    cl_int err = clEnqueueCopyBuffer(queue_of(dst), src->mem, dst->mem, src_offset, dst_offset, bytes, 0, NULL, NULL);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(dst->ctx, err, "kqcl_buffer_copy: clEnqueueCopyBuffer");
}

/* ---- views ------------------------------------------------------------------------------------- */

KQCL_API size_t kqcl_buffer_alignment(const kqcl_context *ctx, int device)
{
    if (ctx == NULL || device < 0 || device >= ctx->n_devices)
        return 0;
    return ctx->devices[device].base_align;
}

KQCL_API kqcl_status kqcl_tensor_view(kqcl_buffer *b, size_t offset, kqcl_type type, int64_t rows, int64_t cols,
                                      kqcl_tensor **out)
{
    const char *call = "kqcl_tensor_view";
    if (out != NULL)
        *out = NULL;
    kqcl_status st = check_buffer(b, call, "buffer");
    if (st != KQCL_OK)
        return st;
    kqcl_context *ctx = b->ctx;
    kq_clear_error(ctx);
    if (out == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: out is NULL", call);
    if ((st = kq_check_shape(ctx, type, rows, cols, call)) != KQCL_OK)
        return st;
    size_t align = ctx->devices[b->device].base_align;
    if (offset % align != 0)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: offset %zu is not a multiple of %zu (kqcl_buffer_alignment)",
                       call, offset, align);
    size_t bytes = (size_t)rows * kqcl_row_size(type, cols); /* fits: kq_check_shape */
    if ((st = check_range(b, offset, bytes, call, "view's byte")) != KQCL_OK)
        return st;
    cl_mem sub = sub_find(b, offset, bytes);
    if (sub != NULL) {
        cl_int err = clRetainMemObject(sub); /* the view's reference */
        if (err != CL_SUCCESS)
            return kq_cl_fail(ctx, err, "kqcl_tensor_view: clRetainMemObject");
    } else {
        cl_buffer_region region = {offset, bytes};
        cl_int err;
        sub = clCreateSubBuffer(b->mem, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
        if (err != CL_SUCCESS || sub == NULL)
            return kq_cl_fail(ctx, err != CL_SUCCESS ? err : CL_OUT_OF_RESOURCES,
                              "kqcl_tensor_view: clCreateSubBuffer");
        sub_keep(b, offset, bytes, sub);
    }
    st = kq_tensor_wrap(ctx, type, rows, cols, b->device, sub, b->mem, call, out);
    if (st == KQCL_OK)
        (*out)->view_offset = offset;
    return st;
}
