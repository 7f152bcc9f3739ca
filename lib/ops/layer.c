/*
 * layer.c -- a transformer layer's operations besides its products (include/kqcl.h, "A
 * transformer layer's other operations"): element-wise binary operations with a broadcast
 * operand, scale and bias, the unary and gated activations, RMS normalisation, softmax with a
 * mask, rotary position embedding. The kernels are
 * elementwise.cl's; each call checks its operands, picks the family's variant for the device and
 * launches one kernel.
 */
#include "ops/ops.h"
#include "device/program.h"
#include "kernels/family.h"

#include <math.h>

/* An f32 tensor of ctx, whole on one device (or a view of one). */
static kqcl_status check_operand(kqcl_context *ctx, const kqcl_tensor *t, const char *call, const char *name)
{
    kqcl_status st = kq_check_tensor(ctx, t, call, name);
    if (st != KQCL_OK)
        return st;
    if (t->type != KQCL_TYPE_F32)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: %s is %s; these operations take f32", call, name,
                       kqcl_type_name(t->type));
    if (t->buffer == NULL)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: %s is placed over devices; these operations take whole tensors",
                       call, name);
    return KQCL_OK;
}

static kqcl_status same_device(kqcl_context *ctx, const kqcl_tensor *a, const kqcl_tensor *b, const char *call)
{
    if (a->device != b->device)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: the operands are on devices %d and %d", call, a->device,
                       b->device);
    return KQCL_OK;
}

static kqcl_status same_shape(kqcl_context *ctx, const kqcl_tensor *a, const kqcl_tensor *b, const char *call,
                              const char *what)
{
    if (a->rows != b->rows || a->cols != b->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %s: %lld x %lld and %lld x %lld", call, what,
                       (long long)a->rows, (long long)a->cols, (long long)b->rows, (long long)b->cols);
    return KQCL_OK;
}

/* The start of a call: ctx given, its last error cleared, then x and y checked: f32, whole, on
 * one device, of one shape. */
static kqcl_status begin(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_tensor *y, const char *call)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: ctx is NULL", call);
    kq_clear_error(ctx);
    kqcl_status st;
    if ((st = check_operand(ctx, x, call, "the input")) != KQCL_OK || (st = check_operand(ctx, y, call, "y")) != KQCL_OK ||
        (st = same_device(ctx, x, y, call)) != KQCL_OK || (st = same_shape(ctx, x, y, call, "y's shape is not the input's")) != KQCL_OK)
        return st;
    kq_events_reset(ctx);
    return KQCL_OK;
}

/* elementwise.cl's kernel `name` for y's device. */
static kqcl_status kernel_for(kqcl_context *ctx, const kqcl_tensor *y, const char *name, kq_variant *v,
                              cl_kernel *kernel)
{
    kq_shape s = {0};
    return kq_family_kernel(ctx, kq_tensor_device(y), &kq_elementwise_family, &s, name, v, kernel);
}

/* Launch an element-wise kernel whose arguments were set (err: how that went) over `items`
 * elements, in a grid-stride loop. */
static kqcl_status launch_elements(kqcl_context *ctx, const kqcl_tensor *y, cl_kernel kernel, cl_int err,
                                   uint64_t items, const char *call)
{
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, call);
    return kq_launch_elements(ctx, kq_tensor_device(y), kernel, items, call);
}

/* A work-group a row (softmax_f32, rms_norm_f32's launch). */
static kqcl_status launch_rows(kqcl_context *ctx, const kqcl_tensor *y, cl_kernel kernel, cl_int err,
                               const kq_variant *v, int64_t rows, const char *call)
{
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, call);
    size_t local = v->wg_items, global = (size_t)rows * local;
    return kq_enqueue(ctx, kq_tensor_device(y), kernel, 1, &global, &local, call);
}

static bool divides(int64_t part, int64_t whole) { return part > 0 && whole % part == 0; }

KQCL_API kqcl_status kqcl_binary(kqcl_context *ctx, kqcl_binary_op op, const kqcl_tensor *a, const kqcl_tensor *b,
                                 kqcl_tensor *y)
{
    const char *call = "kqcl_binary";
    kqcl_status st = begin(ctx, a, y, call);
    if (st != KQCL_OK)
        return st;
    if ((st = check_operand(ctx, b, call, "b")) != KQCL_OK || (st = same_device(ctx, a, b, call)) != KQCL_OK)
        return st;
    if ((int)op < KQCL_BINARY_ADD || (int)op > KQCL_BINARY_DIV)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %d is not a kqcl_binary_op", call, (int)op);
    if (!divides(b->rows, a->rows) || !divides(b->cols, a->cols))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: b (%lld x %lld) does not broadcast over a (%lld x %lld)", call,
                       (long long)b->rows, (long long)b->cols, (long long)a->rows, (long long)a->cols);
    if (b == y && (b->rows != a->rows || b->cols != a->cols))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: y is b, which broadcasts", call);
    kq_variant v;
    cl_kernel k;
    if ((st = kernel_for(ctx, y, "binary_f32", &v, &k)) != KQCL_OK)
        return st;
    cl_ulong rows = (cl_ulong)a->rows, cols = (cl_ulong)a->cols, b_rows = (cl_ulong)b->rows, b_cols = (cl_ulong)b->cols;
    int o = (int)op;
    cl_int err = kq_set_args(k, 8, sizeof(cl_mem), &a->buffer, sizeof(cl_mem), &b->buffer, sizeof(cl_mem), &y->buffer,
                             sizeof rows, &rows, sizeof cols, &cols, sizeof b_rows, &b_rows, sizeof b_cols, &b_cols,
                             sizeof o, &o);
    return launch_elements(ctx, y, k, err, rows * cols, call);
}

KQCL_API kqcl_status kqcl_scale(kqcl_context *ctx, const kqcl_tensor *x, float scale, float bias, kqcl_tensor *y)
{
    const char *call = "kqcl_scale";
    kqcl_status st = begin(ctx, x, y, call);
    if (st != KQCL_OK)
        return st;
    kq_variant v;
    cl_kernel k;
    if ((st = kernel_for(ctx, y, "scale_f32", &v, &k)) != KQCL_OK)
        return st;
    cl_ulong n = (cl_ulong)x->rows * (cl_ulong)x->cols;
    cl_int err = kq_set_args(k, 5, sizeof(cl_mem), &x->buffer, sizeof(cl_mem), &y->buffer, sizeof n, &n, sizeof scale,
                             &scale, sizeof bias, &bias);
    return launch_elements(ctx, y, k, err, n, call);
}

KQCL_API kqcl_status kqcl_unary(kqcl_context *ctx, kqcl_unary_op op, const kqcl_tensor *x, kqcl_tensor *y)
{
    const char *call = "kqcl_unary";
    kqcl_status st = begin(ctx, x, y, call);
    if (st != KQCL_OK)
        return st;
    if ((int)op < KQCL_UNARY_SILU || (int)op > KQCL_UNARY_RELU)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %d is not a kqcl_unary_op", call, (int)op);
    kq_variant v;
    cl_kernel k;
    if ((st = kernel_for(ctx, y, "unary_f32", &v, &k)) != KQCL_OK)
        return st;
    cl_ulong n = (cl_ulong)x->rows * (cl_ulong)x->cols;
    int o = (int)op;
    cl_int err = kq_set_args(k, 4, sizeof(cl_mem), &x->buffer, sizeof(cl_mem), &y->buffer, sizeof n, &n, sizeof o, &o);
    return launch_elements(ctx, y, k, err, n, call);
}

KQCL_API kqcl_status kqcl_glu(kqcl_context *ctx, kqcl_glu_op op, const kqcl_tensor *gate, const kqcl_tensor *up,
                              kqcl_tensor *y)
{
    const char *call = "kqcl_glu";
    kqcl_status st = begin(ctx, gate, y, call);
    if (st != KQCL_OK)
        return st;
    if ((st = check_operand(ctx, up, call, "up")) != KQCL_OK || (st = same_device(ctx, gate, up, call)) != KQCL_OK ||
        (st = same_shape(ctx, gate, up, call, "up's shape is not gate's")) != KQCL_OK)
        return st;
    if ((st = kq_check_glu_op(ctx, op, call)) != KQCL_OK)
        return st;
    return kq_glu_launch(ctx, op, gate, up, y);
}

kqcl_status kq_check_glu_op(kqcl_context *ctx, kqcl_glu_op op, const char *call)
{
    if ((int)op < KQCL_GLU_SWIGLU || (int)op > KQCL_GLU_GEGLU)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %d is not a kqcl_glu_op", call, (int)op);
    return KQCL_OK;
}

kqcl_status kq_glu_launch(kqcl_context *ctx, kqcl_glu_op op, const kqcl_tensor *gate, const kqcl_tensor *up,
                          kqcl_tensor *y)
{
    kq_variant v;
    cl_kernel k;
    kqcl_status st = kernel_for(ctx, y, "glu_f32", &v, &k);
    if (st != KQCL_OK)
        return st;
    cl_ulong n = (cl_ulong)gate->rows * (cl_ulong)gate->cols;
    int o = (int)op;
    cl_int err = kq_set_args(k, 5, sizeof(cl_mem), &gate->buffer, sizeof(cl_mem), &up->buffer, sizeof(cl_mem),
                             &y->buffer, sizeof n, &n, sizeof o, &o);
    return launch_elements(ctx, y, k, err, n, "kqcl_glu");
}

/* The weight's checks: one row of x's columns, on x's device, not the output. */
static kqcl_status check_norm_weight(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_tensor *w,
                                     const kqcl_tensor *y, const char *call)
{
    kqcl_status st;
    if ((st = check_operand(ctx, w, call, "w")) != KQCL_OK || (st = same_device(ctx, x, w, call)) != KQCL_OK)
        return st;
    if (w->rows != 1 || w->cols != x->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: w is %lld x %lld; want 1 x %lld", call, (long long)w->rows,
                       (long long)w->cols, (long long)x->cols);
    if (w == y)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: y is w", call);
    return KQCL_OK;
}

/* rms_norm_f32 over x's rows, with the residual r added first (into sum) when r is given. */
static kqcl_status launch_rms_norm(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_tensor *r,
                                   const kqcl_tensor *w, float eps, const kqcl_tensor *sum, kqcl_tensor *y,
                                   const char *call)
{
    kq_variant v;
    cl_kernel kernel;
    kqcl_status st = kernel_for(ctx, y, "rms_norm_f32", &v, &kernel);
    if (st != KQCL_OK)
        return st;
    cl_ulong cols = (cl_ulong)x->cols;
    int has_r = r != NULL, has_w = w != NULL;
    /* any buffer where the kernel reads or writes nothing (without has_r, has_w) */
    cl_mem rbuf = r ? r->buffer : x->buffer, wbuf = w ? w->buffer : x->buffer, sbuf = sum ? sum->buffer : y->buffer;
    cl_int err = kq_set_args(kernel, 9, sizeof(cl_mem), &x->buffer, sizeof(cl_mem), &rbuf, sizeof(cl_mem), &wbuf,
                             sizeof(cl_mem), &sbuf, sizeof(cl_mem), &y->buffer, sizeof cols, &cols, sizeof eps, &eps,
                             sizeof has_r, &has_r, sizeof has_w, &has_w);
    return launch_rows(ctx, y, kernel, err, &v, x->rows, call);
}

static kqcl_status check_eps(kqcl_context *ctx, float eps, const char *call)
{
    if (!(eps >= 0.0f) || isinf(eps))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: eps %g: want a finite eps >= 0", call, (double)eps);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_rms_norm(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_tensor *w, float eps,
                                   kqcl_tensor *y)
{
    const char *call = "kqcl_rms_norm";
    kqcl_status st = begin(ctx, x, y, call);
    if (st != KQCL_OK || (st = check_eps(ctx, eps, call)) != KQCL_OK ||
        (w != NULL && (st = check_norm_weight(ctx, x, w, y, call)) != KQCL_OK))
        return st;
    return launch_rms_norm(ctx, x, NULL, w, eps, NULL, y, call);
}

/* The residual r and where x + r goes (sum): f32, whole, on x's device, of x's shape. */
static kqcl_status check_residual(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_tensor *r,
                                  const kqcl_tensor *sum, const char *call)
{
    kqcl_status st;
    if ((st = check_operand(ctx, r, call, "r")) != KQCL_OK || (st = same_device(ctx, x, r, call)) != KQCL_OK ||
        (st = check_operand(ctx, sum, call, "sum")) != KQCL_OK || (st = same_device(ctx, x, sum, call)) != KQCL_OK)
        return st;
    if ((st = same_shape(ctx, x, r, call, "r's shape is not x's")) != KQCL_OK ||
        (st = same_shape(ctx, x, sum, call, "sum's shape is not x's")) != KQCL_OK)
        return st;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_add_rms_norm(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_tensor *r,
                                       const kqcl_tensor *w, float eps, kqcl_tensor *sum, kqcl_tensor *y)
{
    const char *call = "kqcl_add_rms_norm";
    kqcl_status st = begin(ctx, x, y, call);
    if (st != KQCL_OK || (st = check_eps(ctx, eps, call)) != KQCL_OK)
        return st;
    if ((st = check_residual(ctx, x, r, sum, call)) != KQCL_OK)
        return st;
    if (w != NULL && ((st = check_norm_weight(ctx, x, w, y, call)) != KQCL_OK ||
                      (w == sum && (st = kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: sum is w", call)) != KQCL_OK)))
        return st;
    return launch_rms_norm(ctx, x, r, w, eps, sum, y, call);
}

kqcl_status kq_check_norm_prologue(kqcl_context *ctx, const kqcl_norm_prologue *norm, const kqcl_tensor *x,
                                   const char *call)
{
    kqcl_status st;
    if (norm == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: norm is NULL", call);
    if ((st = check_operand(ctx, x, call, "x")) != KQCL_OK || (st = check_eps(ctx, norm->eps, call)) != KQCL_OK)
        return st;
    if ((norm->r == NULL) != (norm->sum == NULL))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: the norm's r and sum come together (r %s, sum %s)", call,
                       norm->r ? "given" : "NULL", norm->sum ? "given" : "NULL");
    if (norm->r != NULL && (st = check_residual(ctx, x, norm->r, norm->sum, call)) != KQCL_OK)
        return st;
    return norm->w != NULL ? check_norm_weight(ctx, x, norm->w, norm->sum, call) : KQCL_OK;
}

kqcl_status kq_norm_launch(kqcl_context *ctx, const kqcl_norm_prologue *norm, const kqcl_tensor *x, kqcl_tensor *xn,
                           const char *call)
{
    return launch_rms_norm(ctx, x, norm->r, norm->w, norm->eps, norm->sum, xn, call);
}

KQCL_API kqcl_status kqcl_softmax(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_tensor *mask, float scale,
                                  kqcl_tensor *y)
{
    const char *call = "kqcl_softmax";
    kqcl_status st = begin(ctx, x, y, call);
    if (st != KQCL_OK)
        return st;
    if (!isfinite(scale))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: scale %g is not finite", call, (double)scale);
    if (mask != NULL) {
        if ((st = check_operand(ctx, mask, call, "mask")) != KQCL_OK || (st = same_device(ctx, x, mask, call)) != KQCL_OK)
            return st;
        if (mask->cols != x->cols || !divides(mask->rows, x->rows))
            return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: the mask (%lld x %lld) does not fit x (%lld x %lld)", call,
                           (long long)mask->rows, (long long)mask->cols, (long long)x->rows, (long long)x->cols);
        if (mask == y)
            return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: y is the mask", call);
    }
    kq_variant v;
    cl_kernel k;
    if ((st = kernel_for(ctx, y, "softmax_f32", &v, &k)) != KQCL_OK)
        return st;
    cl_ulong cols = (cl_ulong)x->cols, mask_rows = mask ? (cl_ulong)mask->rows : 1;
    int has_mask = mask != NULL;
    cl_mem mbuf = mask ? mask->buffer : x->buffer; /* read only with has_mask */
    cl_int err = kq_set_args(k, 7, sizeof(cl_mem), &x->buffer, sizeof(cl_mem), &mbuf, sizeof(cl_mem), &y->buffer,
                             sizeof cols, &cols, sizeof mask_rows, &mask_rows, sizeof scale, &scale, sizeof has_mask,
                             &has_mask);
    return launch_rows(ctx, y, k, err, &v, x->rows, call);
}

/* The rope parameters a call may take: every value finite, the turned part even and within the row. */
static kqcl_status check_rope(kqcl_context *ctx, const kqcl_rope_params *p, int64_t cols, const char *call)
{
    if (p == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: params is NULL", call);
    if (cols % 2 != 0 || p->n_dims <= 0 || p->n_dims % 2 != 0 || p->n_dims > cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: n_dims %d with rows of %lld: want an even n_dims within an even row",
                       call, p->n_dims, (long long)cols);
    if (!(p->freq_base > 0.0f) || !(p->freq_scale > 0.0f) || !isfinite(p->freq_base) || !isfinite(p->freq_scale) ||
        !isfinite(p->ext_factor) || !isfinite(p->attn_factor) || !isfinite(p->corr_low) || !isfinite(p->corr_high))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: want finite parameters, freq_base and freq_scale > 0", call);
    return KQCL_OK;
}

/* kqcl_rope's checks of x's rows and the positions (y and the rest are the caller's). */
static kqcl_status check_rope_rows(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_buffer *positions,
                                   size_t offset, int heads, const kqcl_rope_params *params, const char *call)
{
    kqcl_status st = check_rope(ctx, params, x->cols, call);
    if (st != KQCL_OK)
        return st;
    if (positions == NULL || kq_buffer_context(positions) != ctx)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: positions is NULL or of another context", call);
    if (heads <= 0 || x->rows % heads != 0)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: heads %d does not divide x's %lld rows", call, heads,
                       (long long)x->rows);
    int pos_device;
    (void)kq_buffer_mem(positions, &pos_device);
    uint64_t need = (uint64_t)(x->rows / heads) * sizeof(int32_t);
    if (pos_device != x->device || offset % sizeof(int32_t) != 0 || offset > kq_buffer_bytes(positions) ||
        kq_buffer_bytes(positions) - offset < need)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG,
                       "%s: positions: %llu bytes at offset %zu of a %zu-byte buffer on device %d (x on %d)", call,
                       (unsigned long long)need, offset, kq_buffer_bytes(positions), pos_device, x->device);
    return KQCL_OK;
}

/* A job's norm and scale as rope_pair takes them: the weight's memory object (x's where it has
 * none: unread), eps, whether it has one, and the scale (1 for 0). */
cl_int kq_rope_job_norm_args(cl_kernel k, int first, const kqcl_rope_job *j, cl_mem none)
{
    int normed = j != NULL && j->norm_w != NULL;
    float eps = normed ? j->norm_eps : 0.0f, oscale = j == NULL || j->out_scale == 0.0f ? 1.0f : j->out_scale;
    cl_mem w = normed ? j->norm_w->buffer : j != NULL ? j->x->buffer : none;
    return kq_set_args_from(k, first, 4, sizeof(cl_mem), &w, sizeof eps, &eps, sizeof normed, &normed, sizeof oscale,
                            &oscale);
}

/* Job `first / ROPE_JOB_ARGS`'s arguments of rope_f32 (a job with `used` false takes no rows);
 * adds the items it takes to *items: a row each on a CPU's form (`by_rows`), else a pair each. */
#define ROPE_JOB_ARGS 16
static cl_int set_rope_job(cl_kernel k, int first, const kqcl_rope_job *j, bool used, int n_dims, cl_mem pos,
                           bool by_rows, uint64_t *items)
{
    int device;
    cl_mem idx = j->indices ? kq_buffer_mem(j->indices, &device) : pos; /* unread without scatter */
    cl_ulong rows = used ? (cl_ulong)j->x->rows : 0, cols = (cl_ulong)j->x->cols, heads = (cl_ulong)j->heads;
    cl_ulong y_rows = (cl_ulong)j->dst->rows, idx_offset = j->indices ? j->idx_offset / (size_t)j->index_bytes : 0;
    int turned = j->copy ? 0 : n_dims, scatter = j->indices != NULL, idx64 = j->index_bytes == 8;
    int dst_type = (int)j->dst->type;
    *items += by_rows ? rows : rows * (cols / 2);
    cl_int err = kq_set_args_from(k, first, 12, sizeof(cl_mem), &j->x->buffer, sizeof(cl_mem), &j->dst->buffer,
                                  sizeof rows, &rows, sizeof cols, &cols, sizeof heads, &heads, sizeof turned, &turned,
                                  sizeof scatter, &scatter, sizeof(cl_mem), &idx, sizeof idx_offset, &idx_offset,
                                  sizeof idx64, &idx64, sizeof y_rows, &y_rows, sizeof dst_type, &dst_type);
    return err == CL_SUCCESS ? kq_rope_job_norm_args(k, first + 12, j, NULL) : err;
}

float kq_rope_theta_scale(const kqcl_rope_params *p) { return powf(p->freq_base, -2.0f / (float)p->n_dims); }

/* rope_f32 over `count` checked jobs (1..KQCL_ROPE_MAX_JOBS), one launch. */
kqcl_status kq_rope_jobs_launch(kqcl_context *ctx, const kqcl_buffer *positions, size_t pos_offset,
                                    const kqcl_rope_params *p, int count, const kqcl_rope_job *jobs, const char *call)
{
    kq_variant v;
    cl_kernel k;
    kqcl_status st = kernel_for(ctx, jobs[0].dst, "rope_f32", &v, &k);
    if (st != KQCL_OK)
        return st;
    int device;
    cl_mem pos = kq_buffer_mem(positions, &device);
    cl_ulong pos_at = pos_offset / sizeof(int32_t);
    float theta_scale = kq_rope_theta_scale(p);
    cl_int err = kq_set_args(k, 9, sizeof(cl_mem), &pos, sizeof pos_at, &pos_at, sizeof p->neox, &p->neox,
                             sizeof theta_scale, &theta_scale, sizeof p->freq_scale, &p->freq_scale,
                             sizeof p->ext_factor, &p->ext_factor, sizeof p->attn_factor, &p->attn_factor,
                             sizeof p->corr_low, &p->corr_low, sizeof p->corr_high, &p->corr_high);
    uint64_t items = 0;
    for (int i = 0; i < KQCL_ROPE_MAX_JOBS && err == CL_SUCCESS; i++)
        err = set_rope_job(k, 9 + ROPE_JOB_ARGS * i, &jobs[i < count ? i : 0], i < count, p->n_dims, pos, v.cpu,
                           &items);
    return launch_elements(ctx, jobs[0].dst, k, err, items, call);
}

KQCL_API kqcl_status kqcl_rope(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_buffer *positions, size_t offset,
                               int heads, const kqcl_rope_params *params, kqcl_tensor *y)
{
    const char *call = "kqcl_rope";
    kqcl_status st = begin(ctx, x, y, call);
    if (st != KQCL_OK || (st = check_rope_rows(ctx, x, positions, offset, heads, params, call)) != KQCL_OK)
        return st;
    const kqcl_rope_job job = {.x = x, .heads = heads, .dst = y};
    return kq_rope_jobs_launch(ctx, positions, offset, params, 1, &job, call);
}

/* The index buffer of kqcl_set_rows: on dst's device, `count` values of index_bytes from
 * `offset`, which is a multiple of index_bytes. */
static kqcl_status check_indices(kqcl_context *ctx, const kqcl_buffer *indices, size_t offset, int index_bytes,
                                 int64_t count, int device, const char *call)
{
    if (indices == NULL || kq_buffer_context(indices) != ctx)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: indices is NULL or of another context", call);
    if (index_bytes != 4 && index_bytes != 8)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: index_bytes %d: want 4 (int32) or 8 (int64)", call,
                       index_bytes);
    int idx_device;
    (void)kq_buffer_mem(indices, &idx_device);
    uint64_t need = (uint64_t)count * (uint64_t)index_bytes;
    if (idx_device != device || offset % (size_t)index_bytes != 0 || offset > kq_buffer_bytes(indices) ||
        kq_buffer_bytes(indices) - offset < need)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG,
                       "%s: indices: %llu bytes at offset %zu of a %zu-byte buffer on device %d (dst on %d)", call,
                       (unsigned long long)need, offset, kq_buffer_bytes(indices), idx_device, device);
    return KQCL_OK;
}

/* The tensor a row scatter writes: f32, f16 or bf16 (and q8_0 where `q8_0`), whole. */
static kqcl_status check_row_target(kqcl_context *ctx, const kqcl_tensor *dst, bool q8_0, const char *call)
{
    kqcl_status st = kq_check_tensor(ctx, dst, call, "dst");
    if (st != KQCL_OK)
        return st;
    if (dst->type != KQCL_TYPE_F32 && dst->type != KQCL_TYPE_F16 && dst->type != KQCL_TYPE_BF16 &&
        !(q8_0 && dst->type == KQCL_TYPE_Q8_0))
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: dst is %s; want f32, f16 or bf16%s", call,
                       kqcl_type_name(dst->type), q8_0 ? " or q8_0" : "");
    if (dst->buffer == NULL)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: dst is placed over devices; want a whole tensor", call);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_set_rows(kqcl_context *ctx, const kqcl_tensor *src, const kqcl_buffer *indices,
                                   size_t offset, int index_bytes, kqcl_tensor *dst)
{
    const char *call = "kqcl_set_rows";
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: ctx is NULL", call);
    kq_clear_error(ctx);
    kqcl_status st;
    if ((st = check_operand(ctx, src, call, "src")) != KQCL_OK ||
        (st = check_row_target(ctx, dst, true, call)) != KQCL_OK)
        return st;
    if ((st = same_device(ctx, src, dst, call)) != KQCL_OK)
        return st;
    if (src->cols != dst->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: rows of %lld values into rows of %lld", call,
                       (long long)src->cols, (long long)dst->cols);
    if ((st = check_indices(ctx, indices, offset, index_bytes, src->rows, dst->device, call)) != KQCL_OK)
        return st;
    kq_events_reset(ctx);
    kq_variant v;
    cl_kernel k;
    const bool q8_0 = dst->type == KQCL_TYPE_Q8_0; /* an item a block (set_rows_q8_0), else a value */
    if ((st = kernel_for(ctx, dst, q8_0 ? "set_rows_q8_0" : "set_rows_f32", &v, &k)) != KQCL_OK)
        return st;
    int idx_device, idx64 = index_bytes == 8, dst_type = (int)dst->type;
    cl_mem idx = kq_buffer_mem(indices, &idx_device);
    cl_ulong idx_offset = offset / (size_t)index_bytes, rows = (cl_ulong)src->rows, cols = (cl_ulong)src->cols;
    cl_ulong y_rows = (cl_ulong)dst->rows;
    cl_int err = kq_set_args(k, q8_0 ? 8 : 9, sizeof(cl_mem), &src->buffer, sizeof(cl_mem), &idx, sizeof idx_offset,
                             &idx_offset, sizeof idx64, &idx64, sizeof(cl_mem), &dst->buffer, sizeof rows, &rows,
                             sizeof cols, &cols, sizeof y_rows, &y_rows, sizeof dst_type, &dst_type);
    return launch_elements(ctx, dst, k, err, q8_0 ? rows * (cols / 32) : rows * cols, call);
}

KQCL_API kqcl_status kqcl_rope_set_rows(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_buffer *positions,
                                        size_t pos_offset, int heads, const kqcl_rope_params *params,
                                        const kqcl_buffer *indices, size_t idx_offset, int index_bytes,
                                        kqcl_tensor *dst)
{
    const char *call = "kqcl_rope_set_rows";
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: ctx is NULL", call);
    kq_clear_error(ctx);
    kqcl_status st;
    if ((st = check_operand(ctx, x, call, "x")) != KQCL_OK ||
        (st = check_row_target(ctx, dst, false, call)) != KQCL_OK ||
        (st = same_device(ctx, x, dst, call)) != KQCL_OK ||
        (st = check_rope_rows(ctx, x, positions, pos_offset, heads, params, call)) != KQCL_OK)
        return st;
    if (dst->cols != (int64_t)heads * x->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %d heads of %lld values into rows of %lld", call, heads,
                       (long long)x->cols, (long long)dst->cols);
    if ((st = check_indices(ctx, indices, idx_offset, index_bytes, x->rows / heads, dst->device, call)) != KQCL_OK)
        return st;
    kq_events_reset(ctx);
    const kqcl_rope_job job = {.x = x, .heads = heads, .dst = dst, .indices = indices, .idx_offset = idx_offset,
                               .index_bytes = index_bytes};
    return kq_rope_jobs_launch(ctx, positions, pos_offset, params, 1, &job, call);
}

/* A job of kqcl_rope_jobs: x f32 of an even width and `heads` rows a position, dst as
 * kqcl_rope (no indices) or kqcl_rope_set_rows (indices) takes it, on x's device; `positions`
 * positions. The turned jobs' rows and the positions are checked as kqcl_rope checks them. */
static kqcl_status check_rope_job(kqcl_context *ctx, const kqcl_rope_job *j, const kqcl_buffer *positions,
                                  size_t pos_offset, const kqcl_rope_params *params, int64_t *positions_covered,
                                  const char *call)
{
    kqcl_status st;
    if ((st = check_operand(ctx, j->x, call, "a job's x")) != KQCL_OK)
        return st;
    if (j->indices == NULL ? (st = check_operand(ctx, j->dst, call, "a job's dst")) != KQCL_OK ||
                                 (st = same_shape(ctx, j->x, j->dst, call, "a job's dst is not of its x's shape")) != KQCL_OK
                           : (st = check_row_target(ctx, j->dst, false, call)) != KQCL_OK)
        return st;
    if ((st = same_device(ctx, j->x, j->dst, call)) != KQCL_OK)
        return st;
    if (!j->copy) { /* its width and heads as kqcl_rope checks them */
        if ((st = check_rope_rows(ctx, j->x, positions, pos_offset, j->heads, params, call)) != KQCL_OK)
            return st;
    } else if (j->x->cols % 2 != 0) { /* the kernel's items are pairs */
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: a copied job's rows are of an odd width (%lld)", call,
                       (long long)j->x->cols);
    } else if (j->heads <= 0 || j->x->rows % j->heads != 0) {
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: heads %d does not divide a job's %lld rows", call, j->heads,
                       (long long)j->x->rows);
    }
    if (j->norm_w != NULL && ((st = check_eps(ctx, j->norm_eps, call)) != KQCL_OK ||
                              (st = check_norm_weight(ctx, j->x, j->norm_w, j->dst, call)) != KQCL_OK))
        return st;
    if (!isfinite(j->out_scale))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: a job's out_scale %g is not finite", call, (double)j->out_scale);
    if (j->norm_w != NULL && (kq_tensors_meet(j->x, j->dst) || kq_tensors_meet(j->norm_w, j->dst)))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG,
                       "%s: a normed job's dst shares bytes with its x or its weight (each pair reads the whole row)",
                       call);
    *positions_covered = j->x->rows / j->heads;
    if (j->indices == NULL)
        return KQCL_OK;
    if (j->dst->cols != (int64_t)j->heads * j->x->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: %d heads of %lld values into rows of %lld", call, j->heads,
                       (long long)j->x->cols, (long long)j->dst->cols);
    return check_indices(ctx, j->indices, j->idx_offset, j->index_bytes, *positions_covered, j->dst->device, call);
}

kqcl_status kq_rope_jobs_check(kqcl_context *ctx, const kqcl_buffer *positions, size_t pos_offset,
                               const kqcl_rope_params *params, int count, const kqcl_rope_job *jobs, const char *call)
{
    if (jobs == NULL || count < 1 || count > KQCL_ROPE_MAX_JOBS)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: want 1..%d jobs (count %d%s)", call, KQCL_ROPE_MAX_JOBS, count,
                       jobs == NULL ? ", jobs NULL" : "");
    if (params == NULL || positions == NULL || kq_buffer_context(positions) != ctx)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: params NULL, or positions NULL or of another context", call);
    kqcl_status st = KQCL_OK;
    int64_t covered[KQCL_ROPE_MAX_JOBS];
    for (int i = 0; i < count && st == KQCL_OK; i++) {
        if ((st = check_rope_job(ctx, &jobs[i], positions, pos_offset, params, &covered[i], call)) != KQCL_OK)
            break;
        if (i > 0 && (covered[i] != covered[0] || jobs[i].x->device != jobs[0].x->device))
            st = kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: job %d covers %lld positions on device %d, job 0 %lld on %d",
                         call, i, (long long)covered[i], jobs[i].x->device, (long long)covered[0], jobs[0].x->device);
    }
    return st;
}

KQCL_API kqcl_status kqcl_rope_jobs(kqcl_context *ctx, const kqcl_buffer *positions, size_t pos_offset,
                                    const kqcl_rope_params *params, int count, const kqcl_rope_job *jobs)
{
    const char *call = "kqcl_rope_jobs";
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: ctx is NULL", call);
    kq_clear_error(ctx);
    kqcl_status st = kq_rope_jobs_check(ctx, positions, pos_offset, params, count, jobs, call);
    if (st != KQCL_OK)
        return st;
    kq_events_reset(ctx);
    return kq_rope_jobs_launch(ctx, positions, pos_offset, params, count, jobs, call);
}
