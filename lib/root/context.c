/*
 * context.c -- the composition root: kqcl_context_create reads the environment once (the
 * devices, precision and parameters of a new context), opens the devices (device.c) and hands
 * the parameters to them; kqcl_context_destroy settles what every floor left running and tears
 * the context down, top floor first. The one file that may call every floor.
 */
#include "device/context.h"
#include "device/program.h"
#include "device/tensor.h"
#include "kernels/family.h"
#include "kernels/params.h"
#include "ops/precision.h"
#include "multi/multi.h"

#include <stdlib.h>

KQCL_API kqcl_status kqcl_context_create(const char *devices, kqcl_context **out)
{
    kq_clear_error(NULL);
    if (out == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_context_create: out is NULL");
    *out = NULL;
    if (devices == NULL)
        devices = kq_env("KQCL_DEVICES");
    kqcl_precision precision;
    kq_params params;
    kqcl_status st;
    if ((st = kq_precision_from_env(&precision)) != KQCL_OK || (st = kq_params_from_env(&params)) != KQCL_OK)
        return st;
    kqcl_context *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "kqcl_context_create: no memory for the context");
    ctx->precision = precision;
    if ((st = kq_devices_open(ctx, devices)) != KQCL_OK) {
        kqcl_context_destroy(ctx);
        return st;
    }
    kq_params_apply(ctx, &params); /* the environment's parameters, once */
    *out = ctx;
    return KQCL_OK;
}

KQCL_API void kqcl_context_destroy(kqcl_context *ctx)
{
    if (ctx == NULL)
        return;
    /* Collectives in flight first (their threads use the staging state and the queues), then
     * the tensors and buffers the caller did not destroy: both settled before anything they use goes. */
    kq_requests_finish_all(ctx);
    kq_tensors_detach_all(ctx);
    kq_buffers_detach_all(ctx);
    kq_events_free(ctx);
    kq_multi_release(ctx); /* its queues and pinned buffers belong to the devices' contexts */
    for (int i = 0; i < ctx->n_devices; i++) {
        kq_memo_free(&ctx->devices[i]);
        kq_device_close(&ctx->devices[i]);
    }
    free(ctx);
}
