/* convert.c -- kqcl_convert: float conversions and device dequantization (convert.cl). */
#include "ops/ops.h"
#include "device/program.h"
#include "kernels/family.h"

#include <stdio.h>
#include <stdlib.h>

kqcl_status kq_launch_elements(kqcl_context *ctx, kq_device *dev, cl_kernel kernel, uint64_t items, const char *what)
{
    size_t cap = (size_t)(dev->info.compute_units > 0 ? dev->info.compute_units : 1) * 2048;
    size_t g = items < cap ? (size_t)items : cap;
    size_t local = 64, global = (g + 63) / 64 * 64;
    return kq_enqueue(ctx, dev, kernel, 1, &global, &local, what);
}

kqcl_status kq_convert_into(kqcl_context *ctx, const kqcl_tensor *src, cl_mem dst, kqcl_type dst_type)
{
    kq_device *dev = kq_tensor_device(src);
    bool dequant = kq_type_is_quant(src->type);
    kq_variant v;
    kq_shape s = {.wtype = src->type, .xtype = dst_type};
    kq_pick_variant(ctx, dev, &kq_convert_family, &s, 0, &v);
    cl_kernel kernel;
    kqcl_status st = kq_variant_kernel(ctx, dev, &v, dequant ? "dequantize" : "convert_elements", &kernel);
    if (st != KQCL_OK)
        return st;
    cl_int err;
    uint64_t items;
    if (dequant) {
        cl_ulong row_bytes = src->row_bytes, rows = (cl_ulong)src->rows;
        int k = (int)src->cols;
        items = rows * (uint64_t)(k / 32);
        err = kq_set_args(kernel, 5, sizeof(cl_mem), &src->buffer, sizeof row_bytes, &row_bytes, sizeof(cl_mem), &dst,
                          sizeof rows, &rows, sizeof k, &k);
    } else {
        cl_ulong count = (cl_ulong)src->rows * (cl_ulong)src->cols;
        items = count;
        err = kq_set_args(kernel, 3, sizeof(cl_mem), &src->buffer, sizeof(cl_mem), &dst, sizeof count, &count);
    }
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_convert: setting arguments");
    return kq_launch_elements(ctx, dev, kernel, items, "kqcl_convert: enqueue");
}

/* One whole tensor (or one part's view) into dst's buffer on the same device. */
static kqcl_status convert_one(kqcl_context *ctx, const kqcl_tensor *src, cl_mem dst, kqcl_type dst_type)
{
    if (src->type == dst_type) {
        cl_event ev = NULL;
        cl_int err = clEnqueueCopyBuffer(kq_tensor_device(src)->queue, src->buffer, dst, 0, 0, src->bytes, 0, NULL,
                                         ctx->timing ? &ev : NULL);
        if (err != CL_SUCCESS)
            return kq_cl_fail(ctx, err, "kqcl_convert: copy");
        kq_events_add(ctx, ev);
        return KQCL_OK;
    }
    return kq_convert_into(ctx, src, dst, dst_type);
}

/* A segment's rows, for kq_segment_apply: arg is the destination type. */
static kqcl_status convert_rows(kqcl_context *ctx, const kqcl_tensor *in, cl_mem out, void *arg)
{
    return kq_convert_into(ctx, in, out, *(const kqcl_type *)arg);
}

/* Rows [seg->row0, +rows) of src's part seg->a into dst's part seg->b (one device): one copy
 * for the same type, else the conversion through kq_segment_apply. */
static kqcl_status convert_segment(kqcl_context *ctx, const kqcl_tensor *src, const kqcl_tensor *dst,
                                   const kq_segment *seg)
{
    const kq_part *a = seg->a, *b = seg->b;
    if (src->type != dst->type) {
        kqcl_type to = dst->type;
        return kq_segment_apply(ctx, src, seg, b->row_bytes, convert_rows, &to, "kqcl_convert");
    }
    size_t a_off = (size_t)(seg->row0 - a->row0) * a->row_bytes, b_off = (size_t)(seg->row0 - b->row0) * b->row_bytes;
    cl_event ev = NULL;
    cl_int err = clEnqueueCopyBuffer(ctx->devices[a->device].queue, a->buffer, b->buffer, a_off, b_off,
                                     (size_t)seg->rows * a->row_bytes, 0, NULL, ctx->timing ? &ev : NULL);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_convert: copy");
    kq_events_add(ctx, ev);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_convert(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_convert: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st;
    if ((st = kq_check_tensor(ctx, src, "kqcl_convert", "src")) != KQCL_OK ||
        (st = kq_check_tensor(ctx, dst, "kqcl_convert", "dst")) != KQCL_OK)
        return st;
    if (src->rows != dst->rows || src->cols != dst->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_convert: shapes differ (%lld x %lld to %lld x %lld)",
                       (long long)src->rows, (long long)src->cols, (long long)dst->rows, (long long)dst->cols);
    /* Placed tensors convert part by part, so both must be placed alike -- or, held by rows in
     * buffers cut at different rows (big tensors of types of different row sizes), row range by
     * row range where both parts are on one device. */
    bool alike = kq_same_layout(src, dst);
    int n_segs = 0;
    kq_segment *segs = alike ? NULL : kq_row_segments(src, dst, &n_segs);
    if (!alike && segs == NULL)
        return n_segs < 0 ? kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "kqcl_convert: no host memory")
                          : kq_fail(ctx, KQCL_ERR_INVALID_ARG,
                                    "kqcl_convert: src and dst are on different devices or placed differently");
    if (src == dst || (src->type != dst->type && !kq_type_is_float(dst->type))) {
        free(segs);
        return src == dst ? KQCL_OK
                          : kq_fail(ctx, KQCL_ERR_UNSUPPORTED,
                                    "kqcl_convert: %s -> %s; the destination must be f32, f16 or bf16",
                                    kqcl_type_name(src->type), kqcl_type_name(dst->type));
    }
    kq_events_reset(ctx);
    for (int i = 0; alike && i < src->n_parts && st == KQCL_OK; i++) {
        kqcl_tensor view = kq_part_view(src, &src->parts[i]);
        st = convert_one(ctx, &view, dst->parts[i].buffer, dst->type);
    }
    for (int i = 0; i < n_segs && st == KQCL_OK; i++)
        st = convert_segment(ctx, src, dst, &segs[i]);
    free(segs);
    return st;
}
