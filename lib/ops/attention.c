/*
 * attention.c -- kqcl_attention: queries' attention over a KV cache (include/kqcl.h). One launch
 * on the queries' device: attention.cl's attn_fused, the scores, their softmax (online) and the
 * weighted values of each (query, head) row in one pass; no score goes to global memory.
 */
#include "ops/ops.h"
#include "device/program.h"
#include "kernels/family.h"

#include <math.h>

static kqcl_status check_kv(kqcl_context *ctx, const kqcl_tensor *t, const kqcl_tensor *q, const char *name)
{
    const char *call = "kqcl_attention";
    kqcl_status st = kq_check_tensor(ctx, t, call, name);
    if (st != KQCL_OK)
        return st;
    if (t->type != KQCL_TYPE_F16 && t->type != KQCL_TYPE_F32 && t->type != KQCL_TYPE_Q8_0)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: %s is %s; the cache must be f16, f32 or q8_0", call, name,
                       kqcl_type_name(t->type));
    if (t->buffer == NULL || t->device != q->device)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: %s must be whole on q's device", call, name);
    return KQCL_OK;
}

/* The last row a (position, head) stride pair reaches within `rows`, for every position below
 * `count` and head below `heads`. */
static bool strides_fit(int64_t count, int64_t pos_stride, int64_t heads, int64_t head_stride, int64_t rows)
{
    if (pos_stride < 0 || head_stride < 0)
        return false;
    /* in double: the product of two int64 strides may overflow */
    double last = (double)(count - 1) * (double)pos_stride + (double)(heads - 1) * (double)head_stride;
    return last < (double)rows;
}

static kqcl_status check_params(kqcl_context *ctx, const kqcl_attention_params *p, const kqcl_tensor *q,
                                const kqcl_tensor *k, const kqcl_tensor *v)
{
    const char *call = "kqcl_attention";
    if (p == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: params is NULL", call);
    if (p->heads <= 0 || p->kv_heads <= 0 || p->heads % p->kv_heads != 0 || p->queries <= 0 || p->kv_len <= 0)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: heads %d, kv_heads %d, queries %lld, kv_len %lld", call, p->heads,
                       p->kv_heads, (long long)p->queries, (long long)p->kv_len);
    if (!isfinite(p->scale) || !isfinite(p->softcap) || p->softcap < 0.0f)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: want a finite scale and a finite softcap >= 0", call);
    if (k->cols != q->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: keys of %lld values, queries of %lld", call, (long long)k->cols,
                       (long long)q->cols);
    if (!strides_fit(p->queries, p->q_query_stride, p->heads, p->q_head_stride, q->rows) ||
        !strides_fit(p->kv_len, p->kv_pos_stride, p->kv_heads, p->kv_head_stride, k->rows) ||
        !strides_fit(p->kv_len, p->kv_pos_stride, p->kv_heads, p->kv_head_stride, v->rows))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: the strides reach past q (%lld rows), k (%lld) or v (%lld)", call,
                       (long long)q->rows, (long long)k->rows, (long long)v->rows);
    return KQCL_OK;
}

static kqcl_status check_mask(kqcl_context *ctx, const kqcl_tensor *mask, const kqcl_tensor *q,
                              const kqcl_attention_params *p)
{
    const char *call = "kqcl_attention";
    kqcl_status st = kq_check_tensor(ctx, mask, call, "mask");
    if (st != KQCL_OK)
        return st;
    if ((mask->type != KQCL_TYPE_F32 && mask->type != KQCL_TYPE_F16) || mask->buffer == NULL ||
        mask->device != q->device)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: the mask must be f32 or f16, whole on q's device", call);
    if (mask->rows < p->queries || mask->cols != p->kv_len)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: the mask is %lld x %lld; want at least %lld rows of %lld", call,
                       (long long)mask->rows, (long long)mask->cols, (long long)p->queries, (long long)p->kv_len);
    return KQCL_OK;
}

static kqcl_status check_operands(kqcl_context *ctx, const kqcl_tensor *q, const kqcl_tensor *k, const kqcl_tensor *v,
                                  const kqcl_tensor *mask, const kqcl_attention_params *p, const kqcl_tensor *y)
{
    const char *call = "kqcl_attention";
    kqcl_status st;
    if ((st = kq_check_tensor(ctx, q, call, "q")) != KQCL_OK || (st = kq_check_tensor(ctx, y, call, "y")) != KQCL_OK)
        return st;
    if (q->type != KQCL_TYPE_F32 || y->type != KQCL_TYPE_F32 || q->buffer == NULL || y->buffer == NULL ||
        y->device != q->device)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: q and y must be f32, whole on one device", call);
    if ((st = check_kv(ctx, k, q, "k")) != KQCL_OK || (st = check_kv(ctx, v, q, "v")) != KQCL_OK)
        return st;
    if (k->type != v->type)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: k is %s and v %s; one type for both", call,
                       kqcl_type_name(k->type), kqcl_type_name(v->type));
    if ((st = check_params(ctx, p, q, k, v)) != KQCL_OK || (mask && (st = check_mask(ctx, mask, q, p)) != KQCL_OK))
        return st;
    if (y->rows != p->queries * p->heads || y->cols != v->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: y is %lld x %lld; want %lld x %lld", call, (long long)y->rows,
                       (long long)y->cols, (long long)(p->queries * p->heads), (long long)v->cols);
    if (y == q || y == k || y == v)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: y must not be an operand", call);
    return KQCL_OK;
}

/* One launch: attention.cl's attn_fused, a work-group (GPUs) or a work-item (CPUs) a row. */
static kqcl_status launch_fused(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *q, const kqcl_tensor *k,
                                const kqcl_tensor *v, const kqcl_tensor *mask, const kqcl_attention_params *p,
                                kqcl_tensor *y)
{
    kq_shape shape = {.wtype = k->type, .k = v->cols};
    kq_variant var;
    cl_kernel kernel;
    kqcl_status st = kq_family_kernel(ctx, dev, &kq_attention_family, &shape, "attn_fused", &var, &kernel);
    if (st != KQCL_OK)
        return st;
    cl_ulong rows = (cl_ulong)(p->queries * p->heads), heads = (cl_ulong)p->heads;
    cl_ulong group = (cl_ulong)(p->heads / p->kv_heads), kv_len = (cl_ulong)p->kv_len;
    cl_ulong d = (cl_ulong)q->cols, dv = (cl_ulong)v->cols;
    cl_ulong qqs = (cl_ulong)p->q_query_stride, qhs = (cl_ulong)p->q_head_stride;
    cl_ulong kps = (cl_ulong)p->kv_pos_stride, khs = (cl_ulong)p->kv_head_stride;
    int mask_type = mask == NULL ? 0 : mask->type == KQCL_TYPE_F32 ? 1 : 2;
    cl_ulong mask_cols = mask ? (cl_ulong)mask->cols : 0;
    cl_mem mbuf = mask ? mask->buffer : q->buffer; /* read only with a mask */
    cl_int err = kq_set_args(kernel, 19, sizeof(cl_mem), &q->buffer, sizeof(cl_mem), &k->buffer, sizeof(cl_mem),
                             &v->buffer, sizeof(cl_mem), &mbuf, sizeof(cl_mem), &y->buffer, sizeof rows, &rows,
                             sizeof heads, &heads, sizeof group, &group, sizeof kv_len, &kv_len, sizeof d, &d,
                             sizeof dv, &dv, sizeof qqs, &qqs, sizeof qhs, &qhs, sizeof kps, &kps, sizeof khs, &khs,
                             sizeof p->scale, &p->scale, sizeof p->softcap, &p->softcap, sizeof mask_type,
                             &mask_type, sizeof mask_cols, &mask_cols);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_attention: setting the arguments");
    size_t local = var.wg_items, global = (size_t)rows * (var.cpu ? 1 : local);
    return kq_enqueue(ctx, dev, kernel, 1, &global, &local, "kqcl_attention: enqueue");
}

KQCL_API kqcl_status kqcl_attention(kqcl_context *ctx, const kqcl_tensor *q, const kqcl_tensor *k,
                                    const kqcl_tensor *v, const kqcl_tensor *mask, const kqcl_attention_params *params,
                                    kqcl_tensor *y)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_attention: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st = check_operands(ctx, q, k, v, mask, params, y);
    if (st != KQCL_OK)
        return st;
    kq_events_reset(ctx);
    return launch_fused(ctx, kq_tensor_device(q), q, k, v, mask, params, y);
}
