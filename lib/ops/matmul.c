/*
 * matmul.c -- the products on one device: checking the operands, preparing the activations for
 * the call's precision (precision.c), choosing and launching the fused kernels (matvec.cl for
 * decode, matmul.cl for prefill, mma.cl's tensor cores on NVIDIA, q8.cl's integer decode in
 * Q8), and the unfused reference path. The public calls are dispatch.c's, above this file and
 * parallel.c.
 */
#include "ops/ops.h"
#include "kernels/family.h"
#include "ops/precision.h"
#include "device/program.h"
#include "device/scratch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifdef HAVE_CLBLAST
#include <clblast_c.h>
#endif

kqcl_status kq_matmul_check(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, const kqcl_tensor *y)
{
    kqcl_status st;
    if ((st = kq_check_tensor(ctx, w, "kqcl_matmul", "w")) != KQCL_OK ||
        (st = kq_check_tensor(ctx, x, "kqcl_matmul", "x")) != KQCL_OK ||
        (st = kq_check_tensor(ctx, y, "kqcl_matmul", "y")) != KQCL_OK)
        return st;
    if (!kq_type_is_float(x->type))
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "kqcl_matmul: x is %s; activations must be f32, f16 or bf16",
                       kqcl_type_name(x->type));
    if (y->type != KQCL_TYPE_F32)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "kqcl_matmul: y is %s; the output must be f32",
                       kqcl_type_name(y->type));
    if (w->cols != x->cols || y->rows != x->rows || y->cols != w->rows)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG,
                       "kqcl_matmul: shapes do not fit: w %lld x %lld, x %lld x %lld, y %lld x %lld "
                       "(want y = x.rows x w.rows and x.cols = w.cols)",
                       (long long)w->rows, (long long)w->cols, (long long)x->rows, (long long)x->cols,
                       (long long)y->rows, (long long)y->cols);
    if (w == y || x == y)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_matmul: y must not alias w or x");
    return KQCL_OK;
}

static size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

/* The arguments every matmul kernel takes: w, w's row bytes, x, y, m, k, n. */
static kqcl_status set_matmul_args(kqcl_context *ctx, cl_kernel kernel, const kqcl_tensor *w, const kqcl_tensor *x,
                                   kqcl_tensor *y, const char *what)
{
    cl_ulong row_bytes = w->row_bytes;
    int m = (int)w->rows, k = (int)w->cols, n = (int)x->rows;
    cl_int err = kq_set_args(kernel, 7, sizeof(cl_mem), &w->buffer, sizeof row_bytes, &row_bytes, sizeof(cl_mem),
                             &x->buffer, sizeof(cl_mem), &y->buffer, sizeof m, &m, sizeof k, &k, sizeof n, &n);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(ctx, err, what);
}

/* The shape of a product of w and x for the families' descriptors. */
static kq_shape shape_of(const kqcl_tensor *w, const kqcl_tensor *x, kqcl_precision mode)
{
    return (kq_shape){.wtype = w->type, .xtype = x->type, .m = w->rows, .n = x->rows, .k = w->cols, .mode = mode};
}

/* Pick, build and launch the main kernel of a family over w, x and y (the descriptor's geometry). */
static kqcl_status launch_family(kqcl_context *ctx, kq_device *dev, const kq_family_desc *f, const char *name,
                                 const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y, kqcl_precision mode)
{
    kq_shape s = shape_of(w, x, mode);
    kq_variant v;
    cl_kernel kernel;
    kqcl_status st = kq_family_kernel(ctx, dev, f, &s, name, &v, &kernel);
    if (st != KQCL_OK)
        return st;
    char what[64];
    snprintf(what, sizeof what, "kqcl_matmul: setting %s arguments", f->name);
    if ((st = set_matmul_args(ctx, kernel, w, x, y, what)) != KQCL_OK)
        return st;
    size_t global[3], local[3];
    unsigned dims = f->geometry(&v, &s, global, local);
    snprintf(what, sizeof what, "kqcl_matmul: enqueue %s", f->name);
    return kq_enqueue(ctx, dev, kernel, dims, global, local, what);
}

/* The tensor-core decode kernel (mma.cl): k-quant weights, f32 activations, n <= 8, on NVIDIA
 * sm_80+. Returns KQCL_ERR_UNSUPPORTED when it does not apply, so the caller falls back. */
static kqcl_status launch_mma(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                              kqcl_tensor *y, kqcl_precision mode)
{
    return launch_family(ctx, dev, &kq_mma_decode_family, "matvec_mma", w, x, y, mode);
}

/* y += the sums of k-splits 1..parts, which matmul_mma left in `part`. */
static kqcl_status launch_sum_splits(kqcl_context *ctx, kq_device *dev, cl_kernel sum, kqcl_tensor *y, cl_mem part,
                                     size_t count, int parts)
{
    cl_ulong n = count;
    cl_int err = kq_set_args(sum, 4, sizeof(cl_mem), &y->buffer, sizeof(cl_mem), &part, sizeof n, &n,
                             sizeof parts, &parts);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_matmul: setting k-split sum arguments");
    size_t local = 256, global = round_up(count < (size_t)1 << 20 ? count : (size_t)1 << 20, local);
    return kq_enqueue(ctx, dev, sum, 1, &global, &local, "kqcl_matmul: enqueue k-split sum");
}

/* Prefill on the tensor cores (mma.cl), first step: the activations split into the bf16 parts
 * of the mode (scratch KQ_SCRATCH_MMA_XS) and their 32-sums (KQ_SCRATCH_MMA_XSUM), once for every weight that
 * shares them. KQCL_ERR_UNSUPPORTED when the tensor cores do not apply, so the caller falls
 * back to matmul.cl. */
static kqcl_status mma_split(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                             kqcl_precision mode, kq_variant *v)
{
    int k = (int)w->cols, n = (int)x->rows;
    kq_shape s = shape_of(w, x, mode);
    cl_kernel split;
    cl_mem xs, xsum;
    kqcl_status st = kq_family_kernel(ctx, dev, &kq_mma_prefill_family, &s, "split_activations", v, &split);
    if (st == KQCL_OK) /* 2 words a part a 4 activations; a float a 32 */
        st = kq_scratch(ctx, dev, KQ_SCRATCH_MMA_XS, (size_t)n * k / 4 * 2 * kq_mma_parts(mode) * sizeof(cl_uint),
                        "kqcl_matmul: split activations", &xs);
    if (st == KQCL_OK)
        st = kq_scratch(ctx, dev, KQ_SCRATCH_MMA_XSUM, (size_t)n * k / 32 * sizeof(float),
                        "kqcl_matmul: activation sums", &xsum);
    if (st != KQCL_OK)
        return st;
    cl_int err = kq_set_args(split, 5, sizeof(cl_mem), &x->buffer, sizeof(cl_mem), &xs, sizeof(cl_mem), &xsum,
                             sizeof n, &n, sizeof k, &k);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_matmul: setting split arguments");
    size_t local = 256, items = (size_t)n * (k / 4); /* a work-item a 4 activations, looping past 2^22 */
    size_t global = round_up(items < ((size_t)1 << 22) ? items : (size_t)1 << 22, local);
    return kq_enqueue(ctx, dev, split, 1, &global, &local, "kqcl_matmul: enqueue split");
}

/* Second step, a weight: the tiled mma kernel over the split activations, then the k-split sums.
 * The variant is the weight's own (its m sets the tiles), with the split's precision. */
static kqcl_status mma_multiply(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                                kqcl_tensor *y, kqcl_precision mode)
{
    int m = (int)w->rows, k = (int)w->cols, n = (int)x->rows;
    kq_shape s = shape_of(w, x, mode);
    kq_variant v;
    cl_kernel kernel, sum = NULL;
    kqcl_status st = kq_family_kernel(ctx, dev, &kq_mma_prefill_family, &s, "matmul_mma", &v, &kernel);
    int k_splits = kq_variant_value(&v, KQCL_PARAM_MMA_KSPLIT);
    if (st == KQCL_OK && k_splits > 1)
        st = kq_variant_kernel(ctx, dev, &v, "sum_splits", &sum);
    cl_mem part = y->buffer, xs = dev->scratch[KQ_SCRATCH_MMA_XS].mem, xsum = dev->scratch[KQ_SCRATCH_MMA_XSUM].mem;
    if (st == KQCL_OK && k_splits > 1) /* the sums of splits 1.. (split 0 writes y; unused with one) */
        st = kq_scratch(ctx, dev, KQ_SCRATCH_MMA_PART, (size_t)(k_splits - 1) * m * n * sizeof(float),
                        "kqcl_matmul: k-split sums", &part);
    if (st != KQCL_OK)
        return st;
    cl_ulong row_bytes = w->row_bytes;
    cl_int err = kq_set_args(kernel, 9, sizeof(cl_mem), &w->buffer, sizeof row_bytes, &row_bytes, sizeof(cl_mem), &xs,
                             sizeof(cl_mem), &xsum, sizeof(cl_mem), &y->buffer, sizeof(cl_mem), &part, sizeof m, &m,
                             sizeof k, &k, sizeof n, &n);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_matmul: setting mma arguments");
    size_t global[3], local[3];
    unsigned dims = kq_mma_prefill_family.geometry(&v, &s, global, local);
    st = kq_enqueue(ctx, dev, kernel, dims, global, local, "kqcl_matmul: enqueue mma prefill");
    return st == KQCL_OK && sum != NULL ? launch_sum_splits(ctx, dev, sum, y, part, (size_t)m * n, k_splits - 1) : st;
}

static kqcl_status launch_tiled(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                                kqcl_tensor *y)
{
    return launch_family(ctx, dev, &kq_tiled_family, "matmul_tiled", w, x, y, KQCL_PRECISION_F32);
}

/* ---- the activations a mode multiplies ------------------------------------------------------ */

/* X rounded once to `type` (f16 or bf16) in the KQ_SCRATCH_XPREP buffer, as a view that stands for x: the same
 * shape, another type and buffer. */
static kqcl_status round_x(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *x, kqcl_type type,
                           kqcl_tensor *view)
{
    *view = *x;
    if (x->type == type)
        return KQCL_OK;
    view->type = type;
    view->row_bytes = kqcl_row_size(type, x->cols);
    view->bytes = (size_t)x->rows * view->row_bytes;
    kqcl_status st = kq_scratch(ctx, dev, KQ_SCRATCH_XPREP, view->bytes, "kqcl_matmul: rounded activations",
                                &view->buffer);
    return st == KQCL_OK ? kq_convert_into(ctx, x, view->buffer, type) : st;
}

/* X as `mode` multiplies it in the portable kernels: rounded once to f16 or bf16 in those
 * modes, x itself otherwise. */
static kqcl_status x_for_mode(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *x, kqcl_precision mode,
                              kqcl_tensor *view)
{
    *view = *x;
    if (mode != KQCL_PRECISION_F16 && mode != KQCL_PRECISION_BF16)
        return KQCL_OK;
    return round_x(ctx, dev, x, mode == KQCL_PRECISION_F16 ? KQCL_TYPE_F16 : KQCL_TYPE_BF16, view);
}

/* Bytes of X quantized for Q8 (q8.cl's layout): a byte a value, a float d a 32, a float d * sum
 * a 16. */
static size_t q8_bytes(const kqcl_tensor *x)
{
    size_t values = (size_t)x->rows * (size_t)x->cols;
    return values + values / 32 * sizeof(float) + values / 16 * sizeof(float);
}

/* X quantized for Q8 into *xq (the KQ_SCRATCH_XPREP buffer): one pass, a work-item a value. */
static kqcl_status quantize_x(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *x, cl_mem *xq)
{
    kq_shape s = {.xtype = x->type, .n = x->rows, .k = x->cols};
    kq_variant v;
    cl_kernel kernel;
    kqcl_status st = kq_family_kernel(ctx, dev, &kq_q8_quantize_family, &s, "quantize_q8", &v, &kernel);
    if (st == KQCL_OK)
        st = kq_scratch(ctx, dev, KQ_SCRATCH_XPREP, q8_bytes(x), "kqcl_matmul: quantized activations", xq);
    if (st != KQCL_OK)
        return st;
    int n = (int)x->rows, k = (int)x->cols;
    cl_int err = kq_set_args(kernel, 4, sizeof(cl_mem), &x->buffer, sizeof(cl_mem), xq, sizeof n, &n, sizeof k, &k);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_matmul: setting quantize arguments");
    size_t global[3], local[3];
    unsigned dims = kq_q8_quantize_family.geometry(&v, &s, global, local);
    return kq_enqueue(ctx, dev, kernel, dims, global, local, "kqcl_matmul: enqueue quantize");
}

/* Up to four weights of one type and width that share X, one decode launch (matvec.cl in the
 * F32, F16 and BF16 modes, q8.cl's matvec_q8 on the quantized X in Q8): the kernels take four
 * weight slots and deal their work-groups out in order. Slots past `count` repeat the last
 * weight with no rows, so a group and a single product run the same program. xbuf is the X the
 * kernel reads (x itself, rounded, or quantized). */
#define KQ_GROUP_SLOTS 4

/* matvec.cl's NORM arguments after the 16 others: the residual, the norm's weight, sum, the
 * work-groups' counter, the normalised X's local memory, eps, whether there is a residual. */
static kqcl_status set_norm_args(kqcl_context *ctx, kq_device *dev, cl_kernel kernel, const kqcl_norm_prologue *norm,
                                 const kqcl_tensor *x)
{
    cl_mem arrivals;
    kqcl_status st = kq_scratch_zeroed(ctx, dev, KQ_SCRATCH_ARRIVALS, sizeof(cl_int),
                                       "kqcl_norm_matmul_group: the work-groups' counter", &arrivals);
    if (st != KQCL_OK)
        return st;
    int has_r = norm->r != NULL;
    /* without a residual the kernel touches neither r nor sum: x's buffer stands in */
    cl_mem r = has_r ? norm->r->buffer : x->buffer, sum = has_r ? norm->sum->buffer : x->buffer;
    cl_int err = clSetKernelArg(kernel, 16, sizeof(cl_mem), &r);
    err = err ? err : clSetKernelArg(kernel, 17, sizeof(cl_mem), &norm->w->buffer);
    err = err ? err : clSetKernelArg(kernel, 18, sizeof(cl_mem), &sum);
    err = err ? err : clSetKernelArg(kernel, 19, sizeof(cl_mem), &arrivals);
    err = err ? err : clSetKernelArg(kernel, 20, kq_norm_x_bytes(x->rows, x->cols), NULL);
    err = err ? err : clSetKernelArg(kernel, 21, sizeof norm->eps, &norm->eps);
    err = err ? err : clSetKernelArg(kernel, 22, sizeof has_r, &has_r);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(ctx, err, "kqcl_norm_matmul_group: setting the norm's arguments");
}

/* One launch: `glu` 0, or matvec.cl's GLU form (1 SwiGLU, 2 GeGLU: w[0] the gate, w[1] up, one
 * output y[0] of w[0]'s height; a single slot's work-groups); `norm` NULL, or X normalised in
 * the launch (matvec.cl's NORM form, f32 X). */
static kqcl_status launch_decode_slots(kqcl_context *ctx, kq_device *dev, const kq_family_desc *f, const char *name,
                                       kqcl_precision mode, int glu, const kqcl_norm_prologue *norm, int count,
                                       const kqcl_tensor *const *w, const kqcl_tensor *x, cl_mem xbuf,
                                       kqcl_tensor *const *y)
{
    int n = (int)x->rows, k = (int)x->cols;
    kq_shape s = shape_of(w[0], x, mode);
    s.group = glu ? 1 : KQ_GROUP_SLOTS;
    s.glu = glu;
    s.norm = norm != NULL;
    kq_variant v;
    cl_kernel kernel;
    kqcl_status st = kq_family_kernel(ctx, dev, f, &s, name, &v, &kernel);
    if (st != KQCL_OK)
        return st;
    cl_mem wb[KQ_GROUP_SLOTS], yb[KQ_GROUP_SLOTS];
    int m[KQ_GROUP_SLOTS];
    size_t global = 0, local[3];
    for (int i = 0; i < KQ_GROUP_SLOTS; i++) { /* the launch: every weight's work-groups in a row */
        int from = i < count ? i : count - 1;
        wb[i] = w[from]->buffer;
        yb[i] = y[glu ? 0 : from]->buffer;
        m[i] = i < (glu ? 1 : count) ? (int)w[i]->rows : 0;
        size_t g[3];
        s.m = m[i];
        f->geometry(&v, &s, g, local);
        global += g[0];
    }
    cl_ulong row_bytes = w[0]->row_bytes;
    cl_int err = kq_set_args(kernel, 16, sizeof(cl_mem), &wb[0], sizeof(cl_mem), &wb[1], sizeof(cl_mem), &wb[2],
                             sizeof(cl_mem), &wb[3], sizeof row_bytes, &row_bytes, sizeof(cl_mem), &xbuf,
                             sizeof(cl_mem), &yb[0], sizeof(cl_mem), &yb[1], sizeof(cl_mem), &yb[2], sizeof(cl_mem),
                             &yb[3], sizeof m[0], &m[0], sizeof m[1], &m[1], sizeof m[2], &m[2], sizeof m[3], &m[3],
                             sizeof k, &k, sizeof n, &n);
    if (err == CL_SUCCESS && norm != NULL && (st = set_norm_args(ctx, dev, kernel, norm, x)) != KQCL_OK)
        return st;
    char what[64];
    if (err != CL_SUCCESS) {
        snprintf(what, sizeof what, "kqcl_matmul: setting %s arguments", f->name);
        return kq_cl_fail(ctx, err, what);
    }
    snprintf(what, sizeof what, "kqcl_matmul: enqueue %s", f->name);
    return kq_enqueue(ctx, dev, kernel, 1, &global, local, what);
}

/* Every weight of a group, KQ_GROUP_SLOTS a launch. */
static kqcl_status launch_decode(kqcl_context *ctx, kq_device *dev, const kq_family_desc *f, const char *name,
                                 kqcl_precision mode, int count, const kqcl_tensor *const *w, const kqcl_tensor *x,
                                 cl_mem xbuf, kqcl_tensor *const *y)
{
    kqcl_status st = KQCL_OK;
    for (int i = 0; i < count && st == KQCL_OK; i += KQ_GROUP_SLOTS) {
        int slots = count - i < KQ_GROUP_SLOTS ? count - i : KQ_GROUP_SLOTS;
        st = launch_decode_slots(ctx, dev, f, name, mode, 0, NULL, slots, w + i, x, xbuf, y + i);
    }
    return st;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

/* A tensor-core launch whose kernel does not build on this driver: the portable kernel serves,
 * and only once that works are the tensor cores switched off for the device (a failure of both,
 * such as a broken build of every kernel, is reported as it is, with its log). */
static kqcl_status after_mma(kqcl_context *ctx, kq_device *dev, kqcl_status st_mma, kqcl_status st_portable)
{
    if (st_mma == KQCL_ERR_BUILD && st_portable == KQCL_OK)
        kq_turn_off_ptx(ctx, dev, true);
    return st_portable;
}

static bool mma_failed(kqcl_status st) { return st == KQCL_ERR_UNSUPPORTED || st == KQCL_ERR_BUILD; }

/* The portable kernels for a group in an F32, F16 or BF16 mode: X rounded once for all, then
 * decode four weights a launch, prefill a launch a weight. */
static kqcl_status portable_group(kqcl_context *ctx, kq_device *dev, int count, const kqcl_tensor *const *w,
                                  const kqcl_tensor *x, kqcl_tensor *const *y, bool tiled, kqcl_precision mode)
{
    kqcl_tensor xv;
    kqcl_status st = x_for_mode(ctx, dev, x, mode, &xv);
    if (st == KQCL_OK && !tiled)
        return launch_decode(ctx, dev, &kq_matvec_family, "matvec", KQCL_PRECISION_F32, count, w, &xv, xv.buffer, y);
    for (int i = 0; i < count && st == KQCL_OK; i++)
        st = launch_tiled(ctx, dev, w[i], &xv, y[i]);
    return st;
}

/* The tensor cores for a group, where they apply: decode a launch a weight; prefill one split of
 * X for all. UNSUPPORTED or BUILD before anything is enqueued when they do not apply. */
static kqcl_status mma_group(kqcl_context *ctx, kq_device *dev, int count, const kqcl_tensor *const *w,
                             const kqcl_tensor *x, kqcl_tensor *const *y, bool tiled, kqcl_precision mode)
{
    kqcl_status st = KQCL_OK;
    if (!tiled) {
        for (int i = 0; i < count && st == KQCL_OK; i++)
            st = launch_mma(ctx, dev, w[i], x, y[i], mode);
        return st;
    }
    kq_variant v;
    st = mma_split(ctx, dev, w[0], x, mode, &v);
    for (int i = 0; i < count && st == KQCL_OK; i++)
        st = mma_multiply(ctx, dev, w[i], x, y[i], mode);
    return st;
}

/* Enqueue on one device; the operands are single-device tensors or views of parts, the weights
 * of one type and width, the kernel by `choice`. */
kqcl_status kq_matmul_launch_group(kqcl_context *ctx, kq_device *dev, int count, const kqcl_tensor *const *w,
                                   const kqcl_tensor *x, kqcl_tensor *const *y, kq_kernel_choice choice)
{
    bool tiled = choice == KQ_KERNEL_TILED || choice == KQ_KERNEL_TILED_PIECE ||
                 (choice == KQ_KERNEL_BY_N && x->rows > KQ_MATVEC_MAX_N);
    kqcl_precision mode = kq_precision_resolve(ctx->precision, dev, w[0]->type, !tiled);
    if (mode == KQCL_PRECISION_Q8) {
        cl_mem xq;
        kqcl_status st = quantize_x(ctx, dev, x, &xq);
        if (st == KQCL_OK)
            st = launch_decode(ctx, dev, &kq_q8_matvec_family, "matvec_q8", KQCL_PRECISION_Q8, count, w, x, xq, y);
        if (st != KQCL_ERR_UNSUPPORTED) /* the user's KQCL_MATVEC_Q8 that does not fit: INVALID_ARG */
            return st;
        /* no Q8 variant fits the device (the first launch found none, so nothing was enqueued
         * on the quantized X): a mode is never refused */
        kq_clear_error(ctx);
        mode = kq_precision_instead_of_q8();
    }
    bool mma = choice == KQ_KERNEL_BY_N || choice == KQ_KERNEL_TILED_PIECE; /* forced kernels: the portable ones */
    kqcl_status st_mma = mma ? mma_group(ctx, dev, count, w, x, y, tiled, mode) : KQCL_ERR_UNSUPPORTED;
    if (!mma_failed(st_mma))
        return st_mma;
    return after_mma(ctx, dev, st_mma, portable_group(ctx, dev, count, w, x, y, tiled, mode));
}

kqcl_status kq_matmul_launch(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                             kqcl_tensor *y, kq_kernel_choice choice)
{
    return kq_matmul_launch_group(ctx, dev, 1, &w, x, &y, choice);
}

/* ---- the unfused reference path ---------------------------------------------------------------- */

kqcl_status kq_matmul_unfused(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "unfused matmul: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st = kq_matmul_check(ctx, w, x, y);
    if (st != KQCL_OK)
        return st;
    if (!kq_on_one_device(w, x, y))
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "unfused matmul: operands must be whole and on one device");
#ifdef HAVE_CLBLAST
    if (x->type != KQCL_TYPE_F32)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "unfused matmul: x must be f32");
    kq_device *dev = kq_tensor_device(w);
    kq_events_reset(ctx);
    cl_mem wf = w->buffer;
    if (w->type != KQCL_TYPE_F32) {
        st = kq_scratch(ctx, dev, KQ_SCRATCH_UNFUSED_W, (size_t)w->rows * (size_t)w->cols * sizeof(float),
                        "unfused matmul: scratch buffer", &wf);
        if (st == KQCL_OK)
            st = kq_convert_into(ctx, w, wf, KQCL_TYPE_F32);
        if (st != KQCL_OK)
            return st;
    }
    size_t m = (size_t)w->rows, k = (size_t)w->cols, n = (size_t)x->rows;
    cl_event ev = NULL;
    CLBlastStatusCode code = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, n, m, k,
                                          1.0f, x->buffer, 0, k, wf, 0, k, 0.0f, y->buffer, 0, m, &dev->queue,
                                          ctx->timing ? &ev : NULL);
    if (code != CLBlastSuccess)
        return kq_fail(ctx, KQCL_ERR_DEVICE, "unfused matmul: CLBlastSgemm failed (%d)", (int)code);
    if (ev)
        kq_events_add(ctx, ev);
    return KQCL_OK;
#else
    return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "unfused matmul: kqcl was built without CLBlast");
#endif
}

/* ---- the gated feed-forward (kqcl_matmul_glu) ------------------------------------------------ */

/* Whether matvec.cl's form of shape s (its glu and norm) serves where the tensor cores would
 * not take the product (their decode kernel has neither form): a variant that fits the device,
 * the work-group kernel for NORM, and for GLU doubled sums a lane within the kernel's 16. */
static bool matvec_form_serves(const kq_device *dev, const kq_shape *s, kq_variant *v)
{
    kq_shape plain = *s;
    plain.glu = plain.norm = plain.group = 0;
    if (kq_pick_variant(NULL, dev, &kq_mma_decode_family, &plain, 0, v) == KQCL_OK ||
        kq_pick_variant(NULL, dev, &kq_matvec_family, s, 0, v) != KQCL_OK)
        return false;
    return (!s->norm || !v->cpu) && (!s->glu || 2 * kq_variant_value(v, KQCL_PARAM_MATVEC_ROWS_PER_THREAD) <= 16);
}

/* Whether matvec.cl's GLU form serves: decode in an F32, F16 or BF16 mode, both weights of one
 * type, matvec_form_serves. */
static bool glu_fuses(const kq_device *dev, const kqcl_tensor *wg, const kqcl_tensor *wu, const kqcl_tensor *x,
                      kqcl_precision mode)
{
    if (x->rows > KQ_MATVEC_MAX_N || wg->type != wu->type || mode == KQCL_PRECISION_Q8)
        return false;
    kq_shape s = shape_of(wg, x, mode);
    s.glu = 1;
    kq_variant v;
    return matvec_form_serves(dev, &s, &v);
}

kqcl_status kq_matmul_glu_launch(kqcl_context *ctx, kq_device *dev, kqcl_glu_op op, const kqcl_tensor *w_gate,
                                 const kqcl_tensor *w_up, const kqcl_tensor *x, kqcl_tensor *y)
{
    const kqcl_tensor *w[2] = {w_gate, w_up};
    kqcl_precision mode = kq_precision_resolve(ctx->precision, dev, w_gate->type, x->rows <= KQ_MATVEC_MAX_N);
    kqcl_status st = KQCL_OK;
    if (glu_fuses(dev, w_gate, w_up, x, mode)) { /* one launch: neither product goes to memory */
        kqcl_tensor xv;
        st = x_for_mode(ctx, dev, x, mode, &xv);
        return st != KQCL_OK ? st
                             : launch_decode_slots(ctx, dev, &kq_matvec_family, "matvec", KQCL_PRECISION_F32,
                                                   (int)op + 1, NULL, 2, w, &xv, xv.buffer, &y);
    }
    /* elsewhere the two products as a group into scratch, then kqcl_glu's kernel */
    kqcl_tensor gate = *y, up = *y;
    st = kq_scratch(ctx, dev, KQ_SCRATCH_GLU_GATE, y->bytes, "kqcl_matmul_glu: the gate product", &gate.buffer);
    if (st == KQCL_OK)
        st = kq_scratch(ctx, dev, KQ_SCRATCH_GLU_UP, y->bytes, "kqcl_matmul_glu: the up product", &up.buffer);
    kqcl_tensor *products[2] = {&gate, &up};
    if (st == KQCL_OK)
        st = kq_matmul_launch_group(ctx, dev, 2, w, x, products, KQ_KERNEL_BY_N);
    return st == KQCL_OK ? kq_glu_launch(ctx, op, &gate, &up, y) : st;
}

/* ---- the norm before the products (kqcl_norm_matmul_group, kqcl_norm_matmul_glu) ----------- */

/* Every work-group of the NORM form reads x, r and the norm's weight (3 n k floats) before its
 * rows: on a small model's rows that is a few hundred KiB from cache, far less than the launch it
 * saves (a few microseconds), but at Llama-3-8B's widths (768 work-groups for Q, K and V, 48 KiB
 * each) it is some 37 MiB, about what the separate norm launch costs. Above this the norm keeps
 * its own launch (an estimate, not yet measured on a GPU: doc/perf.md run 29). */
#define KQ_NORM_STAGING_MAX ((size_t)8 << 20)

/* Whether matvec.cl's NORM form serves: a weighted norm, f32 X of at most 8 rows a multiple of
 * 32 wide, the F32 mode, 1..4 weights of one type (or GLU's pair), matvec_form_serves, and the
 * work-groups' reads of X within KQ_NORM_STAGING_MAX. */
bool kq_norm_fuses(kqcl_context *ctx, const kq_device *dev, const kqcl_norm_prologue *norm, int glu, int count,
                   const kqcl_tensor *const *w, const kqcl_tensor *x)
{
    if (norm->w == NULL || x->type != KQCL_TYPE_F32 || x->rows > KQ_MATVEC_MAX_N || x->cols % 32 != 0 ||
        count > KQ_GROUP_SLOTS)
        return false;
    int64_t rows = 0;
    for (int i = 0; i < count; i++) {
        if (w[i]->type != w[0]->type)
            return false;
        rows += w[i]->rows;
    }
    kqcl_precision mode = kq_precision_resolve(ctx->precision, dev, w[0]->type, true);
    kq_shape s = shape_of(w[0], x, mode);
    s.group = glu ? 1 : KQ_GROUP_SLOTS;
    s.glu = glu;
    s.norm = 1;
    kq_variant v;
    if (mode != KQCL_PRECISION_F32 || !matvec_form_serves(dev, &s, &v))
        return false;
    int64_t rows_per_wg = (int64_t)kq_variant_value(&v, KQCL_PARAM_MATVEC_ROW_GROUPS) *
                          kq_variant_value(&v, KQCL_PARAM_MATVEC_ROWS_PER_THREAD);
    size_t wgs = (size_t)((glu ? w[0]->rows : rows) + count * rows_per_wg) / (size_t)rows_per_wg;
    return wgs * 3 * (size_t)x->rows * (size_t)x->cols * sizeof(float) <= KQ_NORM_STAGING_MAX;
}

kqcl_status kq_norm_matmul_fused(kqcl_context *ctx, kq_device *dev, const kqcl_norm_prologue *norm, int glu,
                                 int count, const kqcl_tensor *const *w, const kqcl_tensor *x, kqcl_tensor *const *y)
{
    return launch_decode_slots(ctx, dev, &kq_matvec_family, "matvec", KQCL_PRECISION_F32, glu, norm, count, w, x,
                               x->buffer, y);
}
