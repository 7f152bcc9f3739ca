/*
 * plan.c -- placing a model's layers on devices: pipeline stages (layer split) or every tensor
 * split by rows (tensor split), and, in automatic mode, the choice between them.
 *
 * Decode is memory-bound, so a device's time for a layer is its bytes over the device's
 * streaming speed. A layer split runs the stages one after another (one token at a time) and
 * moves the activations once per stage boundary; a tensor split streams every layer on all
 * devices at once but must gather each split matmul's output before the next can start --
 * host-staged, that is two copies and their latencies per matmul. On PCIe boxes the latencies
 * win over the saved compute (llama.cpp users measured 27 vs 40 tokens/s for its row split
 * against its layer split), which the cost model below reproduces from measured numbers.
 */
#include "multi/multi.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kqcl_plan {
    int n_devices, n_layers;
    kqcl_plan_mode mode;
    int *layer_device;
    uint64_t *device_bytes;
    uint64_t transfer;
    char *text;
};

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t layer_bytes(const kqcl_plan_layer *l)
{
    uint64_t b = 0;
    for (int t = 0; t < l->n_tensors; t++)
        b += l->tensor_bytes[t];
    return b;
}

static double speed_of(const kqcl_plan_device *d) { return d->speed_gbps > 0 ? d->speed_gbps : 1.0; }

/* One host-staged hop of `bytes`: device->host and host->device, each with its latency. */
static double hop_us(const kqcl_plan_device *a, const kqcl_plan_device *b, int64_t bytes)
{
    double bw = fmin(a->link_gbps > 0 ? a->link_gbps : 1, b->link_gbps > 0 ? b->link_gbps : 1);
    return a->link_latency_us + b->link_latency_us + 2.0 * (double)bytes / (bw * 1e3);
}

typedef struct text {
    char *buf;
    size_t len, cap;
} text;

static void say(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char line[1024];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t add = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (t->len + add + 1 > t->cap) {
        size_t cap = (t->cap + add + 1) * 2;
        char *b = realloc(t->buf, cap);
        if (b == NULL)
            return;
        t->buf = b, t->cap = cap;
    }
    memcpy(t->buf + t->len, line, add + 1);
    t->len += add;
}

static double mib(uint64_t b) { return (double)b / (1 << 20); }

/* A byte count computed in double, as a uint64_t: a share of a total near 2^64 rounds up to
 * 2^64, which the conversion may not take (found by fuzz_plan); NaN (an infinite speed) is 0. */
static uint64_t to_bytes(double b)
{
    if (!(b > 0))
        return 0;
    return b >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)b;
}

/* ---- layer split: contiguous stages in device order, max stage time minimal, memory bound --- */

/* best[i][d]: the least max stage time placing layers [0, i) on devices [0, d). */
static bool split_layers(const kqcl_plan_request *r, int *layer_device)
{
    int L = r->n_layers, D = r->n_devices;
    double *best = malloc(sizeof(double) * (size_t)(L + 1) * (size_t)(D + 1));
    int *from = malloc(sizeof(int) * (size_t)(L + 1) * (size_t)(D + 1));
    uint64_t *prefix = malloc(sizeof(uint64_t) * (size_t)(L + 1));
    bool ok = best && from && prefix;
    if (ok) {
        prefix[0] = 0;
        for (int i = 0; i < L; i++)
            prefix[i + 1] = prefix[i] + layer_bytes(&r->layers[i]);
#define B(i, d) best[(size_t)(i) * (D + 1) + (d)]
#define F(i, d) from[(size_t)(i) * (D + 1) + (d)]
        for (int i = 0; i <= L; i++)
            for (int d = 0; d <= D; d++)
                B(i, d) = (i == 0) ? 0 : INFINITY, F(i, d) = 0;
        for (int d = 1; d <= D; d++)
            for (int i = 0; i <= L; i++)
                for (int j = 0; j <= i; j++) { /* device d-1 takes layers [j, i) */
                    uint64_t bytes = prefix[i] - prefix[j];
                    if (bytes > r->devices[d - 1].memory_bytes || isinf(B(j, d - 1)))
                        continue;
                    double t = fmax(B(j, d - 1), (double)bytes / (speed_of(&r->devices[d - 1]) * 1e3));
                    if (t < B(i, d))
                        B(i, d) = t, F(i, d) = j;
                }
        ok = !isinf(B(L, D));
        for (int i = L, d = D; ok && d > 0; d--) {
            int j = F(i, d);
            for (int k = j; k < i; k++)
                layer_device[k] = d - 1;
            i = j;
        }
#undef B
#undef F
    }
    free(best), free(from), free(prefix);
    return ok;
}

static double layers_step_us(const kqcl_plan_request *r, const int *layer_device, uint64_t *transfer)
{
    double t = 0;
    *transfer = 0;
    for (int i = 0; i < r->n_layers; i++) {
        const kqcl_plan_device *d = &r->devices[layer_device[i]];
        t += (double)layer_bytes(&r->layers[i]) / (speed_of(d) * 1e3);
        if (i > 0 && layer_device[i] != layer_device[i - 1]) {
            t += hop_us(&r->devices[layer_device[i - 1]], d, r->activation_bytes);
            *transfer += (uint64_t)r->activation_bytes;
        }
    }
    return t;
}

/* ---- tensor split: every tensor by rows, shares by speed -------------------------------------- */

static double tensor_step_us(const kqcl_plan_request *r, uint64_t *device_bytes, bool *fits, uint64_t *transfer)
{
    double total_speed = 0, worst_lat = 0, slowest_link = INFINITY;
    for (int d = 0; d < r->n_devices; d++) {
        total_speed += speed_of(&r->devices[d]);
        worst_lat = fmax(worst_lat, r->devices[d].link_latency_us);
        slowest_link = fmin(slowest_link, r->devices[d].link_gbps > 0 ? r->devices[d].link_gbps : 1);
    }
    uint64_t all = 0;
    int syncs = 0;
    for (int i = 0; i < r->n_layers; i++) {
        all += layer_bytes(&r->layers[i]);
        syncs += r->layers[i].n_tensors;
    }
    *fits = true;
    for (int d = 0; d < r->n_devices; d++) {
        device_bytes[d] = to_bytes((double)all * speed_of(&r->devices[d]) / total_speed);
        *fits &= device_bytes[d] <= r->devices[d].memory_bytes;
    }
    /* Each split matmul's output is gathered: every device's slice up, the whole down. */
    *transfer = r->n_devices > 1 ? (uint64_t)syncs * (uint64_t)r->activation_bytes * (uint64_t)r->n_devices : 0;
    double sync_us = r->n_devices > 1 ? 2 * worst_lat + 2.0 * (double)r->activation_bytes / (slowest_link * 1e3) : 0;
    return (double)all / (total_speed * 1e3) + syncs * sync_us;
}

/* ---- the plan ----------------------------------------------------------------------------------- */

static kqcl_status check_request(const kqcl_plan_request *r)
{
    if (r == NULL || r->n_devices < 1 || r->n_devices > KQ_MAX_DEVICES || r->devices == NULL || r->n_layers < 1 ||
        r->layers == NULL || r->activation_bytes < 0 || (int)r->mode < 0 || r->mode > KQCL_PLAN_TENSOR)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_plan_create: bad request (devices, layers or mode)");
    /* Every sum the planner forms is of these sizes: refuse a total past 2^64 (it wrapped, and
     * an impossible plan "fit"), and more tensors than an int counts. */
    uint64_t total = 0;
    int64_t tensors = 0;
    for (int i = 0; i < r->n_layers; i++) {
        const kqcl_plan_layer *l = &r->layers[i];
        if (l->n_tensors < 0 || (l->n_tensors > 0 && l->tensor_bytes == NULL))
            return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_plan_create: layer %d has no tensor sizes", i);
        tensors += l->n_tensors;
        if (tensors > INT32_MAX)
            return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_plan_create: more than %d tensors", INT32_MAX);
        for (int t = 0; t < l->n_tensors; t++) {
            if (l->tensor_bytes[t] > UINT64_MAX - total)
                return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_plan_create: the tensor sizes sum past 2^64 "
                               "(layer %d, tensor %d)", i, t);
            total += l->tensor_bytes[t];
        }
    }
    return KQCL_OK;
}

/* A device's name: the field need not hold a NUL, so never read past its size. */
static int name_length(const kqcl_plan_device *d) { return (int)strnlen(d->name, sizeof d->name); }

static void describe_placement(text *t, const kqcl_plan_request *r, const kqcl_plan *p)
{
    double total = 0;
    for (int d = 0; d < r->n_devices; d++)
        total += (double)p->device_bytes[d];
    for (int d = 0; d < r->n_devices; d++) {
        double share = total > 0 ? (double)p->device_bytes[d] / total : 0;
        int len = name_length(&r->devices[d]);
        say(t, "device %d (%.*s): %.1f MiB of %.1f MiB\n", d, len ? len : 1, len ? r->devices[d].name : "?",
            mib(p->device_bytes[d]), mib(r->devices[d].memory_bytes));
        for (int i = 0; i < r->n_layers; i++) {
            if (p->layer_device[i] != d && p->layer_device[i] != -1)
                continue;
            const kqcl_plan_layer *l = &r->layers[i];
            say(t, "  %s%s:", l->name ? l->name : "layer", p->layer_device[i] == -1 ? " (rows split)" : "");
            for (int k = 0; k < l->n_tensors; k++)
                say(t, " %s %.2f MiB", l->tensor_names && l->tensor_names[k] ? l->tensor_names[k] : "tensor",
                    p->layer_device[i] == -1 ? mib(l->tensor_bytes[k]) * share : mib(l->tensor_bytes[k]));
            say(t, "\n");
        }
    }
}

KQCL_API kqcl_status kqcl_plan_create(const kqcl_plan_request *r, kqcl_plan **out)
{
    kq_clear_error(NULL);
    if (out == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_plan_create: out is NULL");
    *out = NULL;
    kqcl_status st = check_request(r);
    if (st != KQCL_OK)
        return st;
    kqcl_plan *p = calloc(1, sizeof *p);
    int *by_layers = p ? calloc((size_t)r->n_layers, sizeof *by_layers) : NULL;
    uint64_t tensor_bytes[KQ_MAX_DEVICES] = {0};
    if (p == NULL || by_layers == NULL || (p->layer_device = calloc((size_t)r->n_layers, sizeof(int))) == NULL ||
        (p->device_bytes = calloc((size_t)r->n_devices, sizeof(uint64_t))) == NULL) {
        free(by_layers);
        kqcl_plan_destroy(p);
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "kqcl_plan_create: no host memory");
    }
    p->n_devices = r->n_devices, p->n_layers = r->n_layers;
    bool layers_fit = split_layers(r, by_layers), tensor_fit = false;
    uint64_t layers_transfer = 0, tensor_transfer = 0;
    double t_layers = layers_fit ? layers_step_us(r, by_layers, &layers_transfer) : INFINITY;
    double t_tensor = tensor_step_us(r, tensor_bytes, &tensor_fit, &tensor_transfer);
    if (!tensor_fit)
        t_tensor = INFINITY;
    kqcl_plan_mode mode = r->mode;
    if (mode == KQCL_PLAN_AUTO)
        mode = t_tensor < t_layers ? KQCL_PLAN_TENSOR : KQCL_PLAN_LAYERS;
    if ((mode == KQCL_PLAN_LAYERS && !layers_fit) || (mode == KQCL_PLAN_TENSOR && !tensor_fit)) {
        free(by_layers);
        kqcl_plan_destroy(p);
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "kqcl_plan_create: the layers do not fit the devices' memory %s",
                       mode == KQCL_PLAN_LAYERS ? "as contiguous stages" : "split by rows");
    }
    p->mode = mode;
    for (int i = 0; i < r->n_layers; i++) {
        p->layer_device[i] = mode == KQCL_PLAN_LAYERS ? by_layers[i] : -1;
        if (mode == KQCL_PLAN_LAYERS)
            p->device_bytes[by_layers[i]] += layer_bytes(&r->layers[i]);
    }
    if (mode == KQCL_PLAN_TENSOR)
        memcpy(p->device_bytes, tensor_bytes, (size_t)r->n_devices * sizeof(uint64_t));
    p->transfer = mode == KQCL_PLAN_LAYERS ? layers_transfer : tensor_transfer;
    free(by_layers);

    text t = {0};
    say(&t, "mode: %s%s\n", mode == KQCL_PLAN_LAYERS ? "layer split (pipeline)" : "tensor split (rows)",
        r->mode == KQCL_PLAN_AUTO ? " (automatic)" : " (asked for)");
    describe_placement(&t, r, p);
    say(&t, "transfer per step: %.1f KiB\n", (double)p->transfer / 1024);
    say(&t, "expected step: layer split %s%.1f us, tensor split %s%.1f us\n", layers_fit ? "" : "(does not fit) ",
        isinf(t_layers) ? 0.0 : t_layers, tensor_fit ? "" : "(does not fit) ", isinf(t_tensor) ? 0.0 : t_tensor);
    if (r->mode == KQCL_PLAN_AUTO)
        say(&t, "why: %s\n",
            !tensor_fit ? "split tensors do not fit, layers do"
            : !layers_fit ? "contiguous stages do not fit, split tensors do"
            : mode == KQCL_PLAN_LAYERS
                ? "each split matmul must gather its output through the host (latency x matmuls per step), which costs "
                  "more than streaming the layers on one device at a time saves"
                : "the devices stream their shares of every layer at once, and the gathers are cheap next to it");
    p->text = t.buf;
    *out = p;
    return KQCL_OK;
}

KQCL_API void kqcl_plan_destroy(kqcl_plan *p)
{
    if (p == NULL)
        return;
    free(p->layer_device), free(p->device_bytes), free(p->text), free(p);
}

KQCL_API kqcl_plan_mode kqcl_plan_mode_chosen(const kqcl_plan *p) { return p ? p->mode : KQCL_PLAN_AUTO; }
KQCL_API int kqcl_plan_layer_device(const kqcl_plan *p, int layer)
{
    return p && layer >= 0 && layer < p->n_layers ? p->layer_device[layer] : -1;
}
KQCL_API uint64_t kqcl_plan_device_bytes(const kqcl_plan *p, int d)
{
    return p && d >= 0 && d < p->n_devices ? p->device_bytes[d] : 0;
}
KQCL_API uint64_t kqcl_plan_transfer_bytes(const kqcl_plan *p) { return p ? p->transfer : 0; }

KQCL_API kqcl_status kqcl_plan_describe(const kqcl_plan *p, char *buf, size_t capacity, size_t *needed)
{
    if (p == NULL || (buf == NULL && capacity > 0))
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_plan_describe: bad arguments");
    const char *s = p->text ? p->text : "";
    size_t len = strlen(s);
    if (needed)
        *needed = len + 1;
    if (capacity > 0) {
        size_t n = len < capacity - 1 ? len : capacity - 1;
        memcpy(buf, s, n);
        buf[n] = '\0';
    }
    return KQCL_OK;
}

/* ---- the context's devices as the planner sees them --------------------------------------------- */

/* A host-staged round trip of 16 KiB (latency) and a 16 MiB write + read (bandwidth). */
static kqcl_status time_link(kqcl_context *ctx, int d, double *lat_us, double *gbps)
{
    const size_t small = 16 << 10, big = 16 << 20;
    kq_device *dev = &ctx->devices[d];
    void *host = calloc(1, big);
    cl_int err = host ? CL_SUCCESS : CL_OUT_OF_HOST_MEMORY;
    cl_mem buf = host ? clCreateBuffer(dev->cl_ctx, CL_MEM_READ_WRITE, big, NULL, &err) : NULL;
    double best_small = INFINITY, best_big = INFINITY;
    for (int rep = 0; rep < 5 && err == CL_SUCCESS; rep++) {
        double t0 = kq_now_us();
        err = clEnqueueWriteBuffer(dev->queue, buf, CL_TRUE, 0, small, host, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clEnqueueReadBuffer(dev->queue, buf, CL_TRUE, 0, small, host, 0, NULL, NULL);
        double t1 = kq_now_us();
        if (err == CL_SUCCESS && rep < 2)
            err = clEnqueueWriteBuffer(dev->queue, buf, CL_TRUE, 0, big, host, 0, NULL, NULL);
        if (err == CL_SUCCESS && rep < 2)
            err = clEnqueueReadBuffer(dev->queue, buf, CL_TRUE, 0, big, host, 0, NULL, NULL);
        double t2 = kq_now_us();
        best_small = fmin(best_small, (t1 - t0) / 2);
        if (rep < 2)
            best_big = fmin(best_big, (t2 - t1) / 2);
    }
    if (buf)
        clReleaseMemObject(buf);
    free(host);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_plan_devices: timing the link");
    *lat_us = best_small;
    *gbps = (double)big / (best_big * 1e3);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_plan_devices(kqcl_context *ctx, kqcl_plan_device *out, int capacity)
{
    if (ctx == NULL || out == NULL || capacity < ctx->n_devices)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_plan_devices: bad arguments (capacity < %d?)",
                       ctx ? ctx->n_devices : 0);
    kq_clear_error(ctx);
    kqcl_status st = ctx->speeds_measured ? KQCL_OK : kqcl_measure_devices(ctx, NULL);
    for (int d = 0; d < ctx->n_devices && st == KQCL_OK; d++) {
        kqcl_plan_device *p = &out[d];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s", ctx->devices[d].info.name);
        p->memory_bytes = ctx->devices[d].info.global_mem_bytes / 10 * 9; /* room for activations and scratch */
        p->speed_gbps = ctx->speeds[d]; /* the probe is an f16 matvec: a byte of weight per flop */
        st = time_link(ctx, d, &p->link_latency_us, &p->link_gbps);
    }
    return st;
}
