/* reduce.c -- kqcl_reduce: per-row reductions (reduce.cl). */
#include "ops/ops.h"
#include "device/program.h"
#include "kernels/family.h"

#include <stdio.h>
#include <stdlib.h>

kqcl_status kq_reduce_kernel(kqcl_context *ctx, kq_device *dev, kqcl_reduce_op op, kqcl_type xtype, const char *name,
                             cl_kernel *out)
{
    kq_variant v;
    kq_shape s = {.xtype = xtype, .op = (int)op};
    kq_pick_variant(ctx, dev, &kq_reduce_family, &s, 0, &v);
    return kq_variant_kernel(ctx, dev, &v, name, out);
}

/* One whole tensor (or one part's view) into the f32 buffer dst on its device. */
static kqcl_status reduce_one(kqcl_context *ctx, kqcl_reduce_op op, const kqcl_tensor *src, cl_mem dst)
{
    kq_device *dev = kq_tensor_device(src);
    kq_variant v;
    kq_shape s = {.xtype = src->type, .op = (int)op};
    kq_pick_variant(ctx, dev, &kq_reduce_family, &s, 0, &v);
    size_t wg = v.wg_items;
    cl_kernel kernel;
    kqcl_status st = kq_variant_kernel(ctx, dev, &v, "reduce_rows", &kernel);
    if (st != KQCL_OK)
        return st;
    int cols = (int)src->cols;
    cl_int err = kq_set_args(kernel, 3, sizeof(cl_mem), &src->buffer, sizeof(cl_mem), &dst, sizeof cols, &cols);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_reduce: setting arguments");
    size_t global = (size_t)src->rows * wg;
    return kq_enqueue(ctx, dev, kernel, 1, &global, &wg, "kqcl_reduce: enqueue");
}

/* A segment's rows, for kq_segment_apply: arg is the operation. */
static kqcl_status reduce_rows(kqcl_context *ctx, const kqcl_tensor *in, cl_mem out, void *arg)
{
    return reduce_one(ctx, *(const kqcl_reduce_op *)arg, in, out);
}

KQCL_API kqcl_status kqcl_reduce(kqcl_context *ctx, kqcl_reduce_op op, const kqcl_tensor *src, kqcl_tensor *dst)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_reduce: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st;
    if ((st = kq_check_tensor(ctx, src, "kqcl_reduce", "src")) != KQCL_OK ||
        (st = kq_check_tensor(ctx, dst, "kqcl_reduce", "dst")) != KQCL_OK)
        return st;
    if ((int)op < KQCL_REDUCE_SUM || op > KQCL_REDUCE_SUMSQ)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_reduce: unknown operation %d", (int)op);
    if (!kq_type_is_float(src->type))
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "kqcl_reduce: src is %s; want f32, f16 or bf16",
                       kqcl_type_name(src->type));
    if (dst->type != KQCL_TYPE_F32 || dst->rows != src->rows || dst->cols != 1)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_reduce: dst must be f32 %lld x 1", (long long)src->rows);
    /* Placed tensors reduce part by part: rows split alike, or replicas of both; held by rows in
     * buffers cut at different rows (a big src), row range by row range on each device. */
    bool alike = kq_same_layout(src, dst);
    int n_segs = 0;
    kq_segment *segs = alike ? NULL : kq_row_segments(src, dst, &n_segs);
    if (!alike && segs == NULL)
        return n_segs < 0 ? kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "kqcl_reduce: no host memory")
                          : kq_fail(ctx, KQCL_ERR_INVALID_ARG, src->split == KQCL_SPLIT_COLS
                                    ? "kqcl_reduce: src is split by columns; gather it first"
                                    : "kqcl_reduce: src and dst are on different devices or placed differently");
    kq_events_reset(ctx);
    for (int i = 0; alike && i < src->n_parts && st == KQCL_OK; i++) {
        kqcl_tensor view = kq_part_view(src, &src->parts[i]);
        st = reduce_one(ctx, op, &view, dst->parts[i].buffer);
    }
    for (int i = 0; i < n_segs && st == KQCL_OK; i++)
        st = kq_segment_apply(ctx, src, &segs[i], sizeof(float), reduce_rows, &op, "kqcl_reduce");
    free(segs);
    return st;
}

