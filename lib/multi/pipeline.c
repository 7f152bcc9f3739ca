/*
 * pipeline.c -- the public calls that run other public calls, on top of the multi-device floor:
 * kqcl_measure_devices (a timed matvec on each device; the speeds weigh automatic splits) and
 * kqcl_pipeline_run (a chain of kqcl_matmul over layers placed on different devices).
 */
#include "device/tensor.h"

#include <string.h>

/* ---- device speeds ---------------------------------------------------------------------------- */

/* A memory-bound f16 matvec, as decode is: GFLOP/s from device events, median of 3. */
static kqcl_status measure_one(kqcl_context *ctx, int device, double *gflops)
{
    const int64_t m = 1024, k = 2048;
    kqcl_tensor *w = NULL, *x = NULL, *y = NULL;
    kqcl_status st = kqcl_tensor_create_on(ctx, KQCL_TYPE_F16, m, k, device, &w);
    if (st == KQCL_OK)
        st = kqcl_tensor_create_on(ctx, KQCL_TYPE_F32, 1, k, device, &x);
    if (st == KQCL_OK)
        st = kqcl_tensor_create_on(ctx, KQCL_TYPE_F32, 1, m, device, &y);
    cl_command_queue q = ctx->devices[device].queue;
    unsigned char zero = 0;
    for (int t = 0; t < 2 && st == KQCL_OK; t++) { /* part by part: a small device may hold them in several */
        const kqcl_tensor *probe = t ? x : w;
        for (int i = 0; i < probe->n_parts && st == KQCL_OK; i++)
            if (clEnqueueFillBuffer(q, probe->parts[i].buffer, &zero, 1, 0, probe->parts[i].bytes, 0, NULL, NULL) !=
                CL_SUCCESS)
                st = kq_fail(ctx, KQCL_ERR_DEVICE, "kqcl_measure_devices: clearing the probe");
    }
    uint64_t ns[4] = {0};
    for (int rep = 0; rep < 4 && st == KQCL_OK; rep++) { /* rep 0 warms up (and builds) */
        st = kqcl_matmul(ctx, w, x, y);
        if (st == KQCL_OK)
            st = kqcl_last_device_time(ctx, &ns[rep]);
    }
    if (st == KQCL_OK) {
        uint64_t a = ns[1], b = ns[2], c = ns[3]; /* median of three */
        uint64_t med = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
        *gflops = 2.0 * (double)m * (double)k / (double)(med ? med : 1);
    }
    kqcl_tensor_destroy(w), kqcl_tensor_destroy(x), kqcl_tensor_destroy(y);
    return st;
}

KQCL_API kqcl_status kqcl_measure_devices(kqcl_context *ctx, double *gflops)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_measure_devices: ctx is NULL");
    kq_clear_error(ctx);
    double speeds[KQ_MAX_DEVICES];
    bool was_timing = ctx->timing; /* the probes are timed on the devices */
    kqcl_status st = kqcl_context_set_timing(ctx, 1);
    for (int d = 0; d < ctx->n_devices && st == KQCL_OK; d++)
        st = measure_one(ctx, d, &speeds[d]);
    kqcl_status restored = kqcl_context_set_timing(ctx, was_timing);
    if (st != KQCL_OK || restored != KQCL_OK)
        return st != KQCL_OK ? st : restored;
    memcpy(ctx->speeds, speeds, sizeof speeds);
    ctx->speeds_measured = true;
    if (gflops != NULL)
        memcpy(gflops, speeds, (size_t)ctx->n_devices * sizeof *gflops);
    return KQCL_OK;
}

/* ---- pipeline executor ------------------------------------------------------------------------- */

/* The activations after a layer live where its weight does: whole on W's device, else
 * replicated, so that the next layer finds them wherever its parts are. */
static kqcl_status activation_for(kqcl_context *ctx, const kqcl_tensor *w, int64_t n, kqcl_tensor **out)
{
    if (w->split == KQCL_SPLIT_NONE)
        return kqcl_tensor_create_on(ctx, KQCL_TYPE_F32, n, w->rows, w->device, out);
    return kqcl_tensor_create_split(ctx, KQCL_TYPE_F32, n, w->rows, KQCL_SPLIT_REPLICATE, out);
}

KQCL_API kqcl_status kqcl_pipeline_run(kqcl_context *ctx, int n_layers, const kqcl_tensor *const *weights,
                                       const kqcl_tensor *x, kqcl_tensor *y)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_pipeline_run: ctx is NULL");
    kq_clear_error(ctx);
    if (n_layers < 1 || weights == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_pipeline_run: no layers");
    for (int i = 0; i < n_layers; i++) {
        kqcl_status st = kq_check_tensor(ctx, weights[i], "kqcl_pipeline_run", "a weight");
        if (st != KQCL_OK)
            return st;
        if (i > 0 && weights[i]->cols != weights[i - 1]->rows)
            return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_pipeline_run: layer %d takes %lld values, layer %d gives %lld",
                           i, (long long)weights[i]->cols, i - 1, (long long)weights[i - 1]->rows);
    }
    const kqcl_tensor *act = x;
    kqcl_tensor *owned = NULL;
    kqcl_status st = kq_check_tensor(ctx, x, "kqcl_pipeline_run", "x");
    for (int i = 0; i < n_layers && st == KQCL_OK; i++) {
        kqcl_tensor *out = y;
        if (i + 1 < n_layers && (st = activation_for(ctx, weights[i], x->rows, &out)) != KQCL_OK)
            break;
        st = kqcl_matmul(ctx, weights[i], act, out);
        kqcl_tensor_destroy(owned); /* the previous activations; queued work keeps them alive */
        owned = out == y ? NULL : out;
        act = out;
    }
    kqcl_tensor_destroy(owned);
    return st;
}
