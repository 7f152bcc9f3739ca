/* convert.c -- kqcl_convert: float conversions and device dequantization (convert.cl). */
#include "ops.h"
#include "parallel.h"
#include "program.h"

#include <stdio.h>

/* Work-items for an element-wise pass: enough to fill the device, each grid-striding. */
static size_t grid_for(const kq_device *dev, uint64_t items)
{
    size_t cap = (size_t)(dev->info.compute_units > 0 ? dev->info.compute_units : 1) * 2048;
    size_t g = items < cap ? (size_t)items : cap;
    return (g + 63) / 64 * 64;
}

kqcl_status kq_convert_into(kqcl_context *ctx, const kqcl_tensor *src, cl_mem dst, kqcl_type dst_type)
{
    kq_device *dev = kq_tensor_device(src);
    bool dequant = kq_type_is_kquant(src->type);
    char options[128];
    snprintf(options, sizeof options, "-DNO_CONTRACT -D%s=%d -DDTYPE=%d", dequant ? "WTYPE" : "XTYPE",
             (int)src->type, (int)dst_type);
    cl_kernel kernel;
    kqcl_status st = kq_get_kernel(ctx, dev, KQ_FAMILY_CONVERT, options, dequant ? "dequantize" : "convert_elements",
                                   &kernel);
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
    size_t local = 64, global = grid_for(dev, items);
    return kq_enqueue(ctx, dev, kernel, 1, &global, &local, "kqcl_convert: enqueue");
}

/* One whole tensor (or one part's view) into dst's buffer on the same device. */
static kqcl_status convert_one(kqcl_context *ctx, const kqcl_tensor *src, cl_mem dst, kqcl_type dst_type)
{
    if (src->type == dst_type) {
        cl_event ev;
        cl_int err = clEnqueueCopyBuffer(kq_tensor_device(src)->queue, src->buffer, dst, 0, 0, src->bytes, 0, NULL, &ev);
        if (err != CL_SUCCESS)
            return kq_cl_fail(ctx, err, "kqcl_convert: copy");
        kq_events_add(ctx, ev);
        return KQCL_OK;
    }
    return kq_convert_into(ctx, src, dst, dst_type);
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
    /* Placed tensors convert part by part, so both must be placed alike. */
    if (!kq_same_layout(src, dst))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_convert: src and dst are on different devices or placed differently");
    if (src == dst)
        return KQCL_OK;
    if (src->type != dst->type && !kq_type_is_float(dst->type))
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "kqcl_convert: %s -> %s; the destination must be f32, f16 or bf16",
                       kqcl_type_name(src->type), kqcl_type_name(dst->type));
    kq_events_reset(ctx);
    for (int i = 0; i < src->n_parts && st == KQCL_OK; i++) {
        kqcl_tensor view = kq_part_view(src, &src->parts[i]);
        st = convert_one(ctx, &view, dst->parts[i].buffer, dst->type);
    }
    return st;
}
