/*
 * dispatch.c -- the public products, kqcl_matmul, kqcl_matmul_group and kqcl_matmul_glu: the
 * operands checked, then the work handed to one device (matmul.c) or spread over several
 * (parallel.c, which launches its pieces through matmul.c). The layering: dispatch.c ->
 * parallel.c -> matmul.c.
 */
#include "ops/ops.h"
#include "multi/multi.h"

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

KQCL_API kqcl_status kqcl_matmul_group(kqcl_context *ctx, int count, const kqcl_tensor *const *w,
                                       const kqcl_tensor *x, kqcl_tensor *const *y)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_matmul_group: ctx is NULL");
    kq_clear_error(ctx);
    if (count < 1 || count > KQ_MAX_GROUP || w == NULL || y == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_matmul_group: want 1..%d weights and outputs (count %d)",
                       KQ_MAX_GROUP, count);
    kqcl_status st = KQCL_OK;
    for (int i = 0; i < count; i++) {
        if ((st = kq_matmul_check(ctx, w[i], x, y[i])) != KQCL_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", kqcl_last_error(ctx));
            return kq_fail(ctx, st, "kqcl_matmul_group: weight %d: %s", i, why);
        }
        for (int j = 0; j < i; j++)
            if (y[j] == y[i] || (const kqcl_tensor *)y[j] == w[i] || (const kqcl_tensor *)y[i] == w[j])
                return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_matmul_group: output %d aliases an operand of %d", i, j);
    }
    kq_events_reset(ctx);
    for (int i = 0; i < count && st == KQCL_OK;) {
        bool whole = kq_on_one_device(w[i], x, y[i]);
        int run = whole ? same_launch(w, y, x, i, count) : 1;
        st = whole ? kq_matmul_launch_group(ctx, kq_tensor_device(x), run, w + i, x, y + i, KQ_KERNEL_BY_N)
                   : kq_matmul_multi(ctx, w[i], x, y[i], KQ_KERNEL_BY_N);
        i += run;
    }
    return st;
}

KQCL_API kqcl_status kqcl_matmul_glu(kqcl_context *ctx, kqcl_glu_op op, const kqcl_tensor *w_gate,
                                     const kqcl_tensor *w_up, const kqcl_tensor *x, kqcl_tensor *y)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_matmul_glu: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st;
    if ((st = kq_matmul_check(ctx, w_gate, x, y)) != KQCL_OK || (st = kq_matmul_check(ctx, w_up, x, y)) != KQCL_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", kqcl_last_error(ctx));
        return kq_fail(ctx, st, "kqcl_matmul_glu: %s", why);
    }
    if ((st = kq_check_glu_op(ctx, op, "kqcl_matmul_glu")) != KQCL_OK)
        return st;
    if (!kq_on_one_device(w_gate, x, y) || !kq_on_one_device(w_up, x, y))
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED,
                       "kqcl_matmul_glu: the weights, x and y must be whole tensors on one device");
    kq_events_reset(ctx);
    return kq_matmul_glu_launch(ctx, kq_tensor_device(x), op, w_gate, w_up, x, y);
}
