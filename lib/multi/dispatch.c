/*
 * dispatch.c -- the public products, kqcl_matmul, kqcl_matmul_group and kqcl_matmul_glu, and
 * with the norm before them, kqcl_norm_matmul_group and kqcl_norm_matmul_glu: the
 * operands checked, then the work handed to one device (matmul.c) or spread over several
 * (parallel.c, which launches its pieces through matmul.c). The layering: dispatch.c ->
 * parallel.c -> matmul.c.
 */
#include "ops/ops.h"
#include "multi/multi.h"
#include "device/scratch.h"

#include <stdio.h>

kqcl_status kq_matmul_with(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y,
                           kq_kernel_choice choice)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_matmul: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st = kq_matmul_check(ctx, w, x, y);
    if (st != KQCL_OK)
        return st;
    if (choice == KQ_KERNEL_MATVEC && x->rows > KQ_MATVEC_MAX_N)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "matvec serves n <= %d", KQ_MATVEC_MAX_N);
    kq_events_reset(ctx);
    if (!kq_on_one_device(w, x, y))
        return kq_matmul_multi(ctx, w, x, y, choice);
    return kq_matmul_launch(ctx, kq_tensor_device(w), w, x, y, choice);
}

KQCL_API kqcl_status kqcl_matmul(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y)
{
    return kq_matmul_with(ctx, w, x, y, KQ_KERNEL_BY_N);
}

#define KQ_MAX_GROUP 16

/* Weights i .. that can share one launch with w[i]: on X's device with it, of its type. */
static int same_launch(const kqcl_tensor *const *w, kqcl_tensor *const *y, const kqcl_tensor *x, int i, int count)
{
    int j = i + 1;
    while (j < count && kq_on_one_device(w[j], x, y[j]) && w[j]->type == w[i]->type)
        j++;
    return j - i;
}

/* kqcl_matmul_group's operand checks, named `call`: 1..16 weights, each product's, and no output
 * that is another product's operand. */
static kqcl_status check_group(kqcl_context *ctx, int count, const kqcl_tensor *const *w, const kqcl_tensor *x,
                               kqcl_tensor *const *y, const char *call)
{
    if (count < 1 || count > KQ_MAX_GROUP || w == NULL || y == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: want 1..%d weights and outputs (count %d)", call, KQ_MAX_GROUP,
                       count);
    for (int i = 0; i < count; i++) {
        kqcl_status st = kq_matmul_check(ctx, w[i], x, y[i]);
        if (st != KQCL_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", kqcl_last_error(ctx));
            return kq_fail(ctx, st, "%s: weight %d: %s", call, i, why);
        }
        for (int j = 0; j < i; j++)
            if (y[j] == y[i] || (const kqcl_tensor *)y[j] == w[i] || (const kqcl_tensor *)y[i] == w[j])
                return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: output %d aliases an operand of %d", call, i, j);
    }
    return KQCL_OK;
}

/* The checked group's launches: runs of weights that share a launch, a split weight alone. */
static kqcl_status launch_group(kqcl_context *ctx, int count, const kqcl_tensor *const *w, const kqcl_tensor *x,
                                kqcl_tensor *const *y)
{
    kqcl_status st = KQCL_OK;
    for (int i = 0; i < count && st == KQCL_OK;) {
        bool whole = kq_on_one_device(w[i], x, y[i]);
        int run = whole ? same_launch(w, y, x, i, count) : 1;
        st = whole ? kq_matmul_launch_group(ctx, kq_tensor_device(x), run, w + i, x, y + i, KQ_KERNEL_BY_N)
                   : kq_matmul_multi(ctx, w[i], x, y[i], KQ_KERNEL_BY_N);
        i += run;
    }
    return st;
}

KQCL_API kqcl_status kqcl_matmul_group(kqcl_context *ctx, int count, const kqcl_tensor *const *w,
                                       const kqcl_tensor *x, kqcl_tensor *const *y)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_matmul_group: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st = check_group(ctx, count, w, x, y, "kqcl_matmul_group");
    if (st != KQCL_OK)
        return st;
    kq_events_reset(ctx);
    return launch_group(ctx, count, w, x, y);
}

/* kqcl_matmul_glu's operand checks, named `call`. */
static kqcl_status check_glu(kqcl_context *ctx, kqcl_glu_op op, const kqcl_tensor *w_gate, const kqcl_tensor *w_up,
                             const kqcl_tensor *x, const kqcl_tensor *y, const char *call)
{
    kqcl_status st;
    if ((st = kq_matmul_check(ctx, w_gate, x, y)) != KQCL_OK || (st = kq_matmul_check(ctx, w_up, x, y)) != KQCL_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", kqcl_last_error(ctx));
        return kq_fail(ctx, st, "%s: %s", call, why);
    }
    if ((st = kq_check_glu_op(ctx, op, call)) != KQCL_OK)
        return st;
    if (!kq_on_one_device(w_gate, x, y) || !kq_on_one_device(w_up, x, y))
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: the weights, x and y must be whole tensors on one device", call);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_matmul_glu(kqcl_context *ctx, kqcl_glu_op op, const kqcl_tensor *w_gate,
                                     const kqcl_tensor *w_up, const kqcl_tensor *x, kqcl_tensor *y)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_matmul_glu: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st = check_glu(ctx, op, w_gate, w_up, x, y, "kqcl_matmul_glu");
    if (st != KQCL_OK)
        return st;
    kq_events_reset(ctx);
    return kq_matmul_glu_launch(ctx, kq_tensor_device(x), op, w_gate, w_up, x, y);
}

/* ---- the norm before the products ------------------------------------------------------------ */

/* The norm's operands, and no output among them; everything whole on x's device. */
static kqcl_status check_norm_outputs(kqcl_context *ctx, const kqcl_norm_prologue *norm, int count,
                                      const kqcl_tensor *const *w, const kqcl_tensor *x, kqcl_tensor *const *y,
                                      const char *call)
{
    kqcl_status st = kq_check_norm_prologue(ctx, norm, x, call);
    if (st != KQCL_OK)
        return st;
    for (int i = 0; i < count; i++) {
        const kqcl_tensor *t = y[i];
        if (t == norm->r || t == norm->sum || t == norm->w)
            return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: output %d is an operand of the norm", call, i);
        if (!kq_on_one_device(w[i], x, t))
            return kq_fail(ctx, KQCL_ERR_UNSUPPORTED,
                           "%s: the weights, x and the outputs must be whole tensors on one device", call);
    }
    return KQCL_OK;
}

/* X' = the norm of x in the device's scratch (kqcl_norm_matmul_group's form of two launches). */
static kqcl_status norm_into_scratch(kqcl_context *ctx, const kqcl_norm_prologue *norm, const kqcl_tensor *x,
                                     kqcl_tensor *xn, const char *call)
{
    *xn = *x;
    kqcl_status st = kq_scratch(ctx, kq_tensor_device(x), KQ_SCRATCH_NORM_X, x->bytes, "the normalised X", &xn->buffer);
    return st == KQCL_OK ? kq_norm_launch(ctx, norm, x, xn, call) : st;
}

/* A normed group's runs: up to four consecutive weights of one type, a launch each. The first
 * run's launch adds the residual and writes sum; a later run normalises again what is then x + r
 * (sum), or x, with no residual, so sum may have been x itself. */
static int norm_run(const kqcl_tensor *const *w, int i, int count)
{
    int j = i + 1;
    while (j < count && j - i < 4 && w[j]->type == w[i]->type)
        j++;
    return j - i;
}

static void later_run_norm(const kqcl_norm_prologue *norm, const kqcl_tensor *x, kqcl_norm_prologue *later,
                           const kqcl_tensor **later_x)
{
    *later = (kqcl_norm_prologue){.w = norm->w, .eps = norm->eps};
    *later_x = norm->r ? norm->sum : x;
}

/* Whether every run takes matvec.cl's NORM form (asked before any launch: a run left to the
 * two-launch form after an earlier one wrote sum over x would add r twice). */
static bool norm_runs_fuse(kqcl_context *ctx, const kqcl_norm_prologue *norm, int count, const kqcl_tensor *const *w,
                           const kqcl_tensor *x)
{
    kq_device *dev = kq_tensor_device(x);
    kqcl_norm_prologue later;
    const kqcl_tensor *later_x;
    later_run_norm(norm, x, &later, &later_x);
    for (int i = 0, run; i < count; i += run) {
        run = norm_run(w, i, count);
        if (!kq_norm_fuses(ctx, dev, i == 0 ? norm : &later, 0, run, w + i, i == 0 ? x : later_x))
            return false;
    }
    return true;
}

static kqcl_status launch_norm_runs(kqcl_context *ctx, const kqcl_norm_prologue *norm, int count,
                                    const kqcl_tensor *const *w, const kqcl_tensor *x, kqcl_tensor *const *y)
{
    kq_device *dev = kq_tensor_device(x);
    kqcl_norm_prologue later;
    const kqcl_tensor *later_x;
    later_run_norm(norm, x, &later, &later_x);
    kqcl_status st = KQCL_OK;
    for (int i = 0, run; i < count && st == KQCL_OK; i += run) {
        run = norm_run(w, i, count);
        st = kq_norm_matmul_fused(ctx, dev, i == 0 ? norm : &later, 0, run, w + i, i == 0 ? x : later_x, y + i);
    }
    return st;
}

KQCL_API kqcl_status kqcl_norm_matmul_group(kqcl_context *ctx, const kqcl_norm_prologue *norm, int count,
                                            const kqcl_tensor *const *w, const kqcl_tensor *x,
                                            kqcl_tensor *const *y)
{
    const char *call = "kqcl_norm_matmul_group";
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: ctx is NULL", call);
    kq_clear_error(ctx);
    kqcl_status st = check_group(ctx, count, w, x, y, call);
    if (st != KQCL_OK || (st = check_norm_outputs(ctx, norm, count, w, x, y, call)) != KQCL_OK)
        return st;
    kq_events_reset(ctx);
    if (norm_runs_fuse(ctx, norm, count, w, x))
        return launch_norm_runs(ctx, norm, count, w, x, y);
    kqcl_tensor xn;
    return (st = norm_into_scratch(ctx, norm, x, &xn, call)) == KQCL_OK ? launch_group(ctx, count, w, &xn, y) : st;
}

KQCL_API kqcl_status kqcl_norm_matmul_glu(kqcl_context *ctx, const kqcl_norm_prologue *norm, kqcl_glu_op op,
                                          const kqcl_tensor *w_gate, const kqcl_tensor *w_up, const kqcl_tensor *x,
                                          kqcl_tensor *y)
{
    const char *call = "kqcl_norm_matmul_glu";
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: ctx is NULL", call);
    kq_clear_error(ctx);
    const kqcl_tensor *w[2] = {w_gate, w_up};
    kqcl_tensor *ys[2] = {y, y};
    kqcl_status st = check_glu(ctx, op, w_gate, w_up, x, y, call);
    if (st != KQCL_OK || (st = check_norm_outputs(ctx, norm, 2, w, x, ys, call)) != KQCL_OK)
        return st;
    kq_events_reset(ctx);
    kq_device *dev = kq_tensor_device(x);
    if (kq_norm_fuses(ctx, dev, norm, (int)op + 1, 2, w, x))
        return kq_norm_matmul_fused(ctx, dev, norm, (int)op + 1, 2, w, x, &y);
    kqcl_tensor xn;
    return (st = norm_into_scratch(ctx, norm, x, &xn, call)) == KQCL_OK
               ? kq_matmul_glu_launch(ctx, dev, op, w_gate, w_up, &xn, y)
               : st;
}
