/*
 * collective.c -- all-reduce and broadcast across the context's devices (and, with MPI, across
 * ranks), staged through pinned host memory.
 *
 * The buffers are cut into chunks. For each chunk the devices' copies are read into pinned
 * staging slots (their own device->host queue), combined in device order, and written back
 * (their own host->device queue). Large buffers are cut into slices, one host thread each.
 * Every element is combined in one fixed order, so the bits never depend on timing.
 *
 * Where the chunk is combined:
 *  - on the host (across ranks, on CPU devices, or KQCL_COLL_SUMS=host): the reads of chunk c
 *    are queued before chunk c-1 is combined, and the writes of c-1 run while c+1 is read, so
 *    the device->host copy of one chunk, the host reduction of the previous one and the
 *    host->device copy of the one before overlap;
 *  - on a device (the default for GPUs within a process): chunk c belongs to one device in
 *    turn, the owner. The others' copies go through the staging slots into the owner's scratch
 *    memory, a kernel (reduce.cl's combine_copies) combines them there in device order, and
 *    the result goes back through the owner's slot to the others: the host only moves bytes,
 *    which at hundreds of MiB its sums could not keep up with (doc/perf.md, runs 9 and 12).
 *    Three steps a chunk -- reads, combine, writes -- with the steps of three chunks in flight.
 *
 * Small blocking collectives (up to 64 KiB) take a direct path on the compute queues instead.
 *
 * Ordering with compute: each device's compute queue gets a marker (what the copies wait for)
 * and then a barrier on a user event that opens when the collective is done -- work queued
 * later waits on the queue, and the host may go on.
 */
#include "multi/multi.h"
#include "kernels/params.h"
#include "device/program.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RING 3                        /* staging slots per slice and device, host sums */
#define DEVICE_RING 4                 /* the same with sums on the devices: three steps in flight */
#define MAX_RING 4
#define DEFAULT_CHUNK (1u << 20)      /* bytes; KQCL_COLL_CHUNK_KIB overrides */
#define MAX_THREADS 8
#define SMALL_BYTES KQ_SMALL_STAGE    /* blocking collectives up to this take the direct path */

struct kqcl_request {
    kqcl_context *ctx;
    int op;          /* KQ_COLL_SUM/MAX/MIN/BCAST */
    bool span;       /* the host stage is an MPI collective across ranks */
    int root_pos;    /* broadcast: position of the local root in devs[], or -1 */
    int root_rank;
    size_t bytes, chunk;
    int n_threads;
    int ring;        /* staging slots per slice and device */
    bool on_devices; /* each chunk combined on its owner device (else on the host) */
    int n;                          /* devices taking part, in device order */
    int devs[KQ_MAX_DEVICES];
    cl_mem bufs[KQ_MAX_DEVICES];    /* retained, unless the small path runs */
    bool retained;
    cl_event marker[KQ_MAX_DEVICES], gate[KQ_MAX_DEVICES];
    /* on_devices: per device, scratch for the other copies of the chunks it owns (slice x slot
     * x other copy), and a combine kernel per slice (a kernel's arguments are per object). */
    cl_mem scratch[KQ_MAX_DEVICES];
    cl_kernel combine[MAX_THREADS][KQ_MAX_DEVICES];
    kq_multi *m;
    kq_stage *stage;
    pthread_t driver;
    bool threaded;
    pthread_mutex_t lock; /* status and error, set by any slice thread */
    kqcl_status status;
    char error[512];
    /* ctx->live_requests, until waited for; `finished`: kqcl_context_destroy waited for it
     * and released what it held of the context (ctx is then NULL). */
    kqcl_request *live_prev, *live_next;
    bool finished;
};

/* ---- per-context state (ctx->multi): the staging sets, transfer queues, measured speeds -------------------------------------------------------------------- */

static void multi_free(kq_multi *m)
{
    kq_settle_pending(m);
    for (int d = 0; d < KQ_MAX_DEVICES; d++) {
        if (m->d2h[d])
            clReleaseCommandQueue(m->d2h[d]);
        if (m->h2d[d])
            clReleaseCommandQueue(m->h2d[d]);
    }
    kq_stage_free(m->spare[0]);
    kq_stage_free(m->spare[1]);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

double kq_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

kq_multi *kq_multi_get(kqcl_context *ctx)
{
    if (ctx->multi == NULL) {
        kq_multi *m = calloc(1, sizeof *m);
        if (m == NULL) {
            kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "no host memory for the multi-device state");
            return NULL;
        }
        pthread_mutex_init(&m->lock, NULL);
        ctx->multi = m;
    }
    return ctx->multi;
}

void kq_multi_release(kqcl_context *ctx)
{
    if (ctx->multi != NULL)
        multi_free(ctx->multi);
    ctx->multi = NULL;
}

/* ---- staging sets ------------------------------------------------------------------------------ */

void kq_stage_free(kq_stage *s)
{
    if (s == NULL)
        return;
    for (int d = 0; d < s->n_devices; d++) {
        if (s->host[d] != NULL) {
            clEnqueueUnmapMemObject(s->queue[d], s->mem[d], s->host[d], 0, NULL, NULL);
            clFinish(s->queue[d]);
        }
        if (s->mem[d] != NULL)
            clReleaseMemObject(s->mem[d]);
        if (s->queue[d] != NULL)
            clReleaseCommandQueue(s->queue[d]);
    }
    free(s);
}

static kqcl_status stage_alloc(kqcl_context *ctx, kq_multi *m, size_t bytes, kq_stage **out)
{
    kq_stage *s = calloc(1, sizeof *s);
    if (s == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "collective: no host memory");
    s->n_devices = ctx->n_devices;
    s->bytes = bytes;
    cl_int err = CL_SUCCESS;
    for (int d = 0; d < ctx->n_devices && err == CL_SUCCESS; d++) {
        if (m->d2h[d] == NULL)
            continue; /* a device that takes no part in collectives yet */
        /* CL_MEM_ALLOC_HOST_PTR: page-locked memory the DMA engines copy from directly. */
        s->mem[d] = clCreateBuffer(ctx->devices[d].cl_ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL, &err);
        if (err != CL_SUCCESS)
            break;
        s->queue[d] = m->d2h[d];
        clRetainCommandQueue(s->queue[d]);
        s->host[d] = clEnqueueMapBuffer(s->queue[d], s->mem[d], CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0, NULL,
                                        NULL, &err);
    }
    if (err != CL_SUCCESS) {
        kq_stage_free(s);
        return kq_cl_fail(ctx, err, "collective: pinned staging buffer");
    }
    *out = s;
    return KQCL_OK;
}

/* Wait for ev unless it is done already -- asking is cheaper than the driver's wait on a done
 * event (NVIDIA: a few microseconds each, doc/perf.md run 12) -- and give its final status
 * (negative: the command failed) or the wait's error. */
static cl_int settle_event(cl_event ev)
{
    cl_int status = CL_QUEUED;
    cl_int err = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
    if (err == CL_SUCCESS && status <= CL_COMPLETE)
        return status;
    if ((err = clWaitForEvents(1, &ev)) != CL_SUCCESS)
        return err;
    err = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
    return err != CL_SUCCESS ? err : status;
}

void kq_settle_pending(kq_multi *m)
{
    for (int d = 0; d < KQ_MAX_DEVICES; d++)
        if (m->pending[d] != NULL) {
            settle_event(m->pending[d]); /* a failure was the copy's own: nothing to redo */
            clReleaseEvent(m->pending[d]);
            m->pending[d] = NULL;
        }
}

kqcl_status kq_stage_take(kqcl_context *ctx, kq_multi *m, size_t bytes, kq_stage **out)
{
    pthread_mutex_lock(&m->lock);
    kq_settle_pending(m);
    kq_stage **spare = &m->spare[bytes > KQ_SMALL_STAGE];
    kq_stage *s = *spare;
    bool fits = s != NULL && s->bytes >= bytes && s->n_devices == ctx->n_devices;
    for (int d = 0; fits && d < ctx->n_devices; d++)
        fits = m->d2h[d] == NULL || s->host[d] != NULL;
    if (fits)
        *spare = NULL;
    pthread_mutex_unlock(&m->lock);
    if (fits) {
        *out = s;
        return KQCL_OK;
    }
    return stage_alloc(ctx, m, bytes, out);
}

void kq_stage_give(kq_multi *m, kq_stage *s)
{
    pthread_mutex_lock(&m->lock);
    kq_stage **spare = &m->spare[s->bytes > KQ_SMALL_STAGE];
    if (*spare == NULL || (*spare)->bytes < s->bytes) {
        kq_stage *old = *spare;
        *spare = s;
        s = old;
    }
    if (s != NULL)
        kq_settle_pending(m); /* the set to free may be the one left copies still read */
    pthread_mutex_unlock(&m->lock);
    kq_stage_free(s);
}

/* The transfer queues of device d, made on first use. */
static kqcl_status ensure_queues(kqcl_context *ctx, kq_multi *m, int d)
{
    cl_int err = CL_SUCCESS;
    pthread_mutex_lock(&m->lock);
#ifdef __GNUC__
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    if (m->d2h[d] == NULL)
        m->d2h[d] = clCreateCommandQueue(ctx->devices[d].cl_ctx, ctx->devices[d].id, 0, &err);
    if (err == CL_SUCCESS && m->h2d[d] == NULL)
        m->h2d[d] = clCreateCommandQueue(ctx->devices[d].cl_ctx, ctx->devices[d].id, 0, &err);
#ifdef __GNUC__
#pragma GCC diagnostic pop
#endif
    pthread_mutex_unlock(&m->lock);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(ctx, err, "collective: transfer queue");
}

/* ---- the pipeline of one slice ----------------------------------------------------------------- */

typedef struct slice {
    kqcl_request *r;
    int index;
    size_t lo, hi;
} slice;

static void record(kqcl_request *r, cl_int err, const char *what)
{
    pthread_mutex_lock(&r->lock);
    if (r->status == KQCL_OK) {
        r->status = (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY) ? KQCL_ERR_OUT_OF_MEMORY
                                                                                            : KQCL_ERR_DEVICE;
        snprintf(r->error, sizeof r->error, "collective: %s: %s (%d)", what, kq_cl_error_name(err), (int)err);
    }
    pthread_mutex_unlock(&r->lock);
}

static bool failed(kqcl_request *r)
{
    pthread_mutex_lock(&r->lock);
    bool f = r->status != KQCL_OK;
    pthread_mutex_unlock(&r->lock);
    return f;
}

/* acc op= src, element by element; NaN wins MAX and MIN, as in kqcl_reduce. */
static void combine(int op, float *restrict acc, const float *restrict src, size_t n)
{
    if (op == KQ_COLL_SUM) {
        for (size_t i = 0; i < n; i++)
            acc[i] += src[i];
    } else {
        for (size_t i = 0; i < n; i++) {
            float a = acc[i], b = src[i];
            if (isnan(a))
                continue;
            acc[i] = isnan(b) ? b : op == KQ_COLL_MAX ? (b > a ? b : a) : (b < a ? b : a);
        }
    }
}

static unsigned char *slot_of(const slice *s, int dev, size_t c)
{
    kqcl_request *r = s->r;
    return r->stage->host[dev] + ((size_t)s->index * r->ring + c % r->ring) * r->chunk;
}

/* Chunk c's byte offset and length. */
static size_t chunk_at(const slice *s, size_t c, size_t *len)
{
    size_t off = s->lo + c * s->r->chunk;
    *len = s->hi - off < s->r->chunk ? s->hi - off : s->r->chunk;
    return off;
}

static void wait_release(kqcl_request *r, cl_event *ev, const char *what)
{
    if (*ev == NULL)
        return;
    cl_int status = settle_event(*ev);
    if (status < 0)
        record(r, status, what);
    clReleaseEvent(*ev);
    *ev = NULL;
}

typedef struct slice_events {
    cl_event rd[KQ_MAX_DEVICES][MAX_RING], wr[KQ_MAX_DEVICES][MAX_RING];
    cl_event result[MAX_RING]; /* on_devices: the owner's combined chunk read back */
} slice_events;

/* The device position that combines chunk c (on_devices): the devices take turns. */
static int owner_of(const slice *s, size_t c) { return (int)(((size_t)s->index + c) % (size_t)s->r->n); }

/* Whether chunk c of device position i is read to the host: a broadcast reads the root's, a
 * host reduction every copy, a device reduction every copy but the owner's. */
static bool reads_copy(const slice *s, size_t c, int i)
{
    kqcl_request *r = s->r;
    return r->op == KQ_COLL_BCAST ? i == r->root_pos : !r->on_devices || i != owner_of(s, c);
}

/* Queue the device->host copies of chunk c, once the slot's previous writes are done. */
static void issue_reads(slice *s, slice_events *e, size_t c)
{
    kqcl_request *r = s->r;
    size_t len, off = chunk_at(s, c, &len);
    for (int i = 0; i < r->n; i++)
        wait_release(r, &e->wr[i][c % r->ring], "host->device copy");
    for (int i = 0; i < r->n && !failed(r); i++) {
        if (!reads_copy(s, c, i))
            continue;
        int d = r->devs[i];
        cl_int err = clEnqueueReadBuffer(r->m->d2h[d], r->bufs[i], CL_FALSE, off, len, slot_of(s, d, c), 1,
                                         &r->marker[i], &e->rd[i][c % r->ring]);
        if (err == CL_SUCCESS)
            err = clFlush(r->m->d2h[d]);
        if (err != CL_SUCCESS)
            record(r, err, "queueing a device->host copy");
    }
}

/* Combine chunk c on the host (and across ranks), then queue its host->device copies. */
static void reduce_and_write(slice *s, slice_events *e, size_t c)
{
    kqcl_request *r = s->r;
    size_t len, off = chunk_at(s, c, &len);
    for (int i = 0; i < r->n; i++)
        wait_release(r, &e->rd[i][c % r->ring], "device->host copy");
    if (failed(r))
        return;
    int src_pos = r->op == KQ_COLL_BCAST ? (r->root_pos >= 0 ? r->root_pos : 0) : 0;
    float *acc = (float *)slot_of(s, r->devs[src_pos], c);
    if (r->op != KQ_COLL_BCAST)
        for (int i = 1; i < r->n; i++)
            combine(r->op, acc, (const float *)slot_of(s, r->devs[i], c), len / sizeof(float));
    if (r->span) {
        kqcl_status st = r->op == KQ_COLL_BCAST ? kq_mpi_bcast(acc, len, r->root_rank)
                                                : kq_mpi_allreduce_f32(acc, len / sizeof(float), r->op);
        if (st != KQCL_OK) {
            record(r, CL_INVALID_OPERATION, "the MPI stage failed");
            return;
        }
    }
    for (int i = 0; i < r->n && !failed(r); i++) {
        if (r->op == KQ_COLL_BCAST && i == r->root_pos)
            continue;
        int d = r->devs[i];
        cl_int err = clEnqueueWriteBuffer(r->m->h2d[d], r->bufs[i], CL_FALSE, off, len, acc, 0, NULL,
                                          &e->wr[i][c % r->ring]);
        if (err == CL_SUCCESS)
            err = clFlush(r->m->h2d[d]);
        if (err != CL_SUCCESS)
            record(r, err, "queueing a host->device copy");
    }
}

/* on_devices, step 2 of chunk c: once the other copies are read, write them into the owner's
 * scratch, combine them with the owner's copy there, and read the result into the owner's
 * slot. The owner's copy is not touched before the work queued ahead of the collective is
 * done (its marker); the copies into scratch need not wait for it. */
static void combine_on_owner(slice *s, slice_events *e, size_t c)
{
    kqcl_request *r = s->r;
    size_t len, off = chunk_at(s, c, &len);
    int o = owner_of(s, c), d = r->devs[o], k = (int)(c % r->ring);
    for (int i = 0; i < r->n; i++)
        wait_release(r, &e->rd[i][k], "device->host copy");
    if (failed(r))
        return;
    cl_command_queue in = r->m->h2d[d];
    size_t base = ((size_t)s->index * r->ring + k) * (size_t)(r->n - 1) * r->chunk; /* bytes into scratch */
    cl_int err = CL_SUCCESS;
    for (int i = 0, j = 0; i < r->n && err == CL_SUCCESS; i++)
        if (i != o)
            err = clEnqueueWriteBuffer(in, r->scratch[o], CL_FALSE, base + (size_t)j++ * r->chunk, len,
                                       slot_of(s, r->devs[i], c), 0, NULL, NULL);
    cl_ulong own_at = off / sizeof(float), others_at = base / sizeof(float), stride = r->chunk / sizeof(float);
    cl_uint count = (cl_uint)(len / sizeof(float));
    cl_int copies = r->n, own_pos = o;
    cl_kernel kernel = r->combine[s->index][o];
    if (err == CL_SUCCESS)
        err = kq_set_args(kernel, 8, sizeof(cl_mem), &r->bufs[o], sizeof own_at, &own_at, sizeof(cl_mem), &r->scratch[o],
                          sizeof others_at, &others_at, sizeof stride, &stride, sizeof count, &count, sizeof copies,
                          &copies, sizeof own_pos, &own_pos);
    size_t local = 64, global = ((count < 65536 ? count : 65536) + local - 1) / local * local;
    cl_event combined = NULL;
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(in, kernel, 1, NULL, &global, &local, 1, &r->marker[o], &combined);
    if (err == CL_SUCCESS)
        err = clFlush(in);
    if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer(r->m->d2h[d], r->bufs[o], CL_FALSE, off, len, slot_of(s, d, c), 1, &combined,
                                  &e->result[k]);
    if (err == CL_SUCCESS)
        err = clFlush(r->m->d2h[d]);
    if (combined != NULL)
        clReleaseEvent(combined);
    if (err != CL_SUCCESS)
        record(r, err, "queueing the combination on a device");
}

/* on_devices, step 3 of chunk c: write the owner's result to every other device. */
static void write_result(slice *s, slice_events *e, size_t c)
{
    kqcl_request *r = s->r;
    size_t len, off = chunk_at(s, c, &len);
    int o = owner_of(s, c), k = (int)(c % r->ring);
    wait_release(r, &e->result[k], "combination on a device");
    for (int i = 0; i < r->n && !failed(r); i++) {
        if (i == o)
            continue;
        int d = r->devs[i];
        cl_int err = clEnqueueWriteBuffer(r->m->h2d[d], r->bufs[i], CL_FALSE, off, len, slot_of(s, r->devs[o], c), 0,
                                          NULL, &e->wr[i][k]);
        if (err == CL_SUCCESS)
            err = clFlush(r->m->h2d[d]);
        if (err != CL_SUCCESS)
            record(r, err, "queueing a host->device copy");
    }
}

static void *run_slice(void *arg)
{
    slice *s = arg;
    kqcl_request *r = s->r;
    slice_events *e = calloc(1, sizeof *e);
    if (e == NULL) {
        record(r, CL_OUT_OF_HOST_MEMORY, "slice events");
        return NULL;
    }
    size_t nc = (s->hi - s->lo + r->chunk - 1) / r->chunk;
    int steps = r->on_devices ? 3 : 2; /* a chunk's steps run one loop turn apart */
    for (size_t c = 0; c < nc + (size_t)steps - 1 && !failed(r); c++) {
        if (c < nc)
            issue_reads(s, e, c);
        if (c >= 1 && c - 1 < nc)
            r->on_devices ? combine_on_owner(s, e, c - 1) : reduce_and_write(s, e, c - 1);
        if (r->on_devices && c >= 2)
            write_result(s, e, c - 2);
    }
    for (int k = 0; k < r->ring; k++) { /* drain, also after a failure: the slots must be idle */
        wait_release(r, &e->result[k], "combination on a device");
        for (int i = 0; i < r->n; i++) {
            wait_release(r, &e->rd[i][k], "device->host copy");
            wait_release(r, &e->wr[i][k], "host->device copy");
        }
    }
    free(e);
    return NULL;
}

/* Run every slice (one thread each, the first on this one), then open the gates. */
static void *drive(void *arg)
{
    kqcl_request *r = arg;
    slice slices[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    size_t per = (r->bytes / (size_t)r->n_threads + 63) / 64 * 64; /* 64-byte aligned slices */
    for (int t = 0; t < r->n_threads; t++) {
        size_t lo = per * (size_t)t < r->bytes ? per * (size_t)t : r->bytes;
        size_t hi = lo + per < r->bytes ? lo + per : r->bytes;
        slices[t] = (slice){r, t, lo, hi};
    }
    for (int t = 1; t < r->n_threads; t++)
        started[t] = pthread_create(&threads[t], NULL, run_slice, &slices[t]) == 0;
    run_slice(&slices[0]);
    for (int t = 1; t < r->n_threads; t++) {
        if (started[t])
            pthread_join(threads[t], NULL);
        else
            run_slice(&slices[t]); /* no thread to be had: do it here */
    }
    for (int i = 0; i < r->n; i++)
        if (r->gate[i] != NULL)
            clSetUserEventStatus(r->gate[i], r->status == KQCL_OK ? CL_COMPLETE : -1);
    return NULL;
}

/* ---- starting and finishing ---------------------------------------------------------------------- */

/* A collective parameter of the context (params.c), else the fallback. */
static size_t coll_param(const kqcl_context *ctx, kqcl_param p, size_t fallback)
{
    int v;
    return kq_param_get(&ctx->coll_params, p, &v) ? (size_t)v : fallback;
}

/* PoCL's "basic" device runs commands synchronously inside other calls, and PoCL 3.1 then takes
 * its locks in an order that hangs: inside clSetUserEventStatus, and when two host threads
 * enqueue at once. There the collective runs on one thread, without gates. */
static bool pocl_basic(const kq_device *dev)
{
    return dev->is_pocl && strncmp(dev->info.name, "basic", 5) == 0;
}

static void plan_chunks(kqcl_request *r)
{
    /* 1 MiB chunks, or 1/32 of a big buffer up to 8 MiB: each chunk costs a few event
     * round trips, which at 256 chunks outweighed the copies (H200 pair: doc/perf.md). With
     * sums on the devices, at most 4 MiB (run 12). */
    size_t most = (r->on_devices ? 4 : 8) * DEFAULT_CHUNK;
    size_t fallback = r->bytes / 32 > DEFAULT_CHUNK ? r->bytes / 32 : DEFAULT_CHUNK;
    if (fallback > most)
        fallback = most;
    size_t chunk = coll_param(r->ctx, KQCL_PARAM_COLL_CHUNK_KIB, fallback / 1024) * 1024;
    if (chunk > r->bytes)
        chunk = (r->bytes + 63) / 64 * 64;
    r->chunk = chunk;
    r->ring = r->on_devices ? DEVICE_RING : RING;
    /* Threads pay off once each has a few chunks to itself: host sums want every core; device
     * sums did as well or better on one (two H200s, run 12: 16 MiB 17.7 vs 12.6 GB/s, 256 MiB
     * 33 vs 35). Across ranks one thread keeps the MPI calls in one order on every rank. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = coll_param(r->ctx, KQCL_PARAM_COLL_THREADS, r->on_devices ? 1 : cpus > 0 ? (size_t)cpus : 1);
    size_t by_size = r->bytes / (4 * chunk);
    size_t t = want < by_size ? want : by_size;
    r->n_threads = r->span || t < 1 ? 1 : t > MAX_THREADS ? MAX_THREADS : (int)t;
}

/* Whether the chunks are combined on the devices: an all-reduce within this process over GPUs
 * (CPU devices' memory is the host's: there the device stage only adds copies -- PoCL, 2 cores:
 * 4.7 vs 1.3 GB/s at 256 MiB), or any devices with KQCL_COLL_SUMS=device; KQCL_COLL_SUMS=host
 * keeps the host. PoCL's "basic" devices always keep the host stage (their synchronous
 * queues and cross-queue waits, see pocl_basic). */
static bool sums_on_devices(const kqcl_request *r)
{
    int where = (int)coll_param(r->ctx, KQCL_PARAM_COLL_SUMS, 2); /* 0 host, 1 device, 2 automatic */
    bool forced = where == 1;
    if (r->op == KQ_COLL_BCAST || r->span || r->n < 2 || where == 0)
        return false;
    for (int i = 0; i < r->n; i++) {
        const kq_device *dev = &r->ctx->devices[r->devs[i]];
        if (pocl_basic(dev) || (!forced && !dev->info.is_gpu))
            return false;
    }
    return true;
}

/* on_devices: the scratch memory of every device (what it receives of the chunks it owns) and
 * the combine kernels, one per slice and device; made here, on the caller's thread, since the
 * context's kernel cache is not for the slices' threads. */
static kqcl_status prepare_device_sums(kqcl_request *r)
{
    kqcl_context *ctx = r->ctx;
    size_t bytes = (size_t)r->n_threads * r->ring * (size_t)(r->n - 1) * r->chunk;
    for (int i = 0; i < r->n; i++) {
        kq_device *dev = &ctx->devices[r->devs[i]];
        cl_kernel shared;
        kqcl_status st = kq_reduce_kernel(ctx, dev, (kqcl_reduce_op)r->op, KQCL_TYPE_F32, "combine_copies", &shared);
        if (st != KQCL_OK)
            return st;
        cl_program program;
        cl_int err = clGetKernelInfo(shared, CL_KERNEL_PROGRAM, sizeof program, &program, NULL);
        for (int t = 0; t < r->n_threads && err == CL_SUCCESS; t++)
            r->combine[t][i] = clCreateKernel(program, "combine_copies", &err);
        if (err == CL_SUCCESS)
            r->scratch[i] = clCreateBuffer(dev->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS)
            return kq_cl_fail(ctx, err, "collective: a device's combine kernel and scratch memory");
    }
    return KQCL_OK;
}

/* Marker (what the copies wait for) on each compute queue, and for a non-blocking collective a
 * gate (what later work waits for). A blocking one needs no gate: it is done before the caller
 * can queue anything. */
static kqcl_status chain_queues(kqcl_request *r, bool gated)
{
    kqcl_context *ctx = r->ctx;
    for (int i = 0; i < r->n; i++) {
        kq_device *dev = &ctx->devices[r->devs[i]];
        cl_int err = clEnqueueMarkerWithWaitList(dev->queue, 0, NULL, &r->marker[i]);
        if (err == CL_SUCCESS && gated)
            r->gate[i] = clCreateUserEvent(dev->cl_ctx, &err);
        if (err == CL_SUCCESS && gated)
            err = clEnqueueBarrierWithWaitList(dev->queue, 1, &r->gate[i], NULL);
        if (err == CL_SUCCESS)
            err = clFlush(dev->queue);
        if (err != CL_SUCCESS)
            return kq_cl_fail(ctx, err, "collective: chaining on the queue");
    }
    return KQCL_OK;
}

/* Release what the request holds of its context: events, buffers, kernels, staging set. */
static void request_release(kqcl_request *r)
{
    for (int i = 0; i < r->n; i++) {
        if (r->gate[i] != NULL) {
            clSetUserEventStatus(r->gate[i], CL_COMPLETE); /* opens a gate a failed start left shut */
            clReleaseEvent(r->gate[i]);
        }
        if (r->marker[i] != NULL)
            clReleaseEvent(r->marker[i]);
        if (r->retained)
            clReleaseMemObject(r->bufs[i]);
        if (r->scratch[i] != NULL)
            clReleaseMemObject(r->scratch[i]);
        for (int t = 0; t < MAX_THREADS; t++)
            if (r->combine[t][i] != NULL)
                clReleaseKernel(r->combine[t][i]);
    }
    if (r->stage != NULL)
        kq_stage_give(r->m, r->stage);
    r->stage = NULL;
    r->n = 0;
}

static void request_free(kqcl_request *r)
{
    request_release(r);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void request_link(kqcl_request *r)
{
    kqcl_context *ctx = r->ctx;
    r->live_next = ctx->live_requests;
    if (ctx->live_requests != NULL)
        ctx->live_requests->live_prev = r;
    ctx->live_requests = r;
}

static void request_unlink(kqcl_request *r)
{
    if (r->live_prev != NULL)
        r->live_prev->live_next = r->live_next;
    else
        r->ctx->live_requests = r->live_next;
    if (r->live_next != NULL)
        r->live_next->live_prev = r->live_prev;
    r->live_prev = r->live_next = NULL;
}

void kq_requests_finish_all(kqcl_context *ctx)
{
    while (ctx->live_requests != NULL) {
        kqcl_request *r = ctx->live_requests;
        request_unlink(r);
        if (r->threaded)
            pthread_join(r->driver, NULL);
        r->threaded = false;
        request_release(r);
        r->ctx = NULL;
        r->finished = true;
    }
}

static kqcl_status prepare(kqcl_request *r, bool *async)
{
    if (r->n == 0 || (!r->span && r->n == 1))
        return KQCL_OK; /* nothing to combine or copy */
    r->m = kq_multi_get(r->ctx);
    if (r->m == NULL)
        return KQCL_ERR_OUT_OF_MEMORY;
    kqcl_status st = KQCL_OK;
    for (int i = 0; i < r->n && st == KQCL_OK; i++)
        st = ensure_queues(r->ctx, r->m, r->devs[i]);
    r->on_devices = sums_on_devices(r);
    plan_chunks(r);
    if (st == KQCL_OK && r->on_devices)
        st = prepare_device_sums(r);
    if (st == KQCL_OK)
        st = kq_stage_take(r->ctx, r->m, (size_t)r->n_threads * r->ring * r->chunk, &r->stage);
    /* Across ranks the stage runs on the caller's thread: every rank then issues its MPI calls
     * in the order its collectives were started. Where the queues cannot be gated it runs here
     * too, so that work queued after the call still comes after the collective. */
    for (int i = 0; i < r->n; i++)
        if (pocl_basic(&r->ctx->devices[r->devs[i]]))
            *async = false, r->n_threads = 1;
    *async = *async && !r->span;
    if (st == KQCL_OK)
        st = chain_queues(r, *async);
    return st;
}

/* Wait for the copies in ev[0..n) (NULL entries skipped) and release them. */
static void wait_all(kqcl_request *r, cl_event *ev, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        wait_release(r, &ev[i], what);
}

/* As wait_all, for copies of a few microseconds: their status is polled for up to
 * KQCL_COLL_SPIN_US (default 1000) before the driver's blocking wait, whose wake-up costs a
 * few microseconds more (NVIDIA: 29.5 vs 31.9 us for a 16 KiB all-reduce, doc/perf.md run 12). */
static void await_small(kqcl_request *r, cl_event *ev, int n, const char *what)
{
    double budget = (double)coll_param(r->ctx, KQCL_PARAM_COLL_SPIN_US, 1000), t0 = kq_now_us();
    for (bool pending = budget > 0; pending && kq_now_us() - t0 < budget;) {
        pending = false;
        for (int i = 0; i < n && !pending; i++) {
            cl_int status = CL_COMPLETE;
            if (ev[i] != NULL && clGetEventInfo(ev[i], CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status,
                                                NULL) == CL_SUCCESS)
                pending = status > CL_COMPLETE; /* a failed copy (< 0) is reported by wait_all */
        }
    }
    wait_all(r, ev, n, what);
}

/* A small blocking collective in one process: the copies go on the compute queues themselves,
 * whose order already puts them after the work queued before and before the work queued
 * after, so no markers, transfer queues or threads -- two copy latencies in all (the chunked
 * path pays for its overlap machinery with several more). Same combining order, same bits. */
static kqcl_status small_collective(kqcl_request *r)
{
    kqcl_context *ctx = r->ctx;
    kqcl_status st = KQCL_OK;
    for (int i = 0; i < r->n && st == KQCL_OK; i++)
        st = ensure_queues(ctx, r->m, r->devs[i]); /* the staging memory is mapped through them */
    if (st == KQCL_OK)
        st = kq_stage_take(ctx, r->m, r->bytes, &r->stage);
    if (st != KQCL_OK)
        return st;
    cl_event ev[KQ_MAX_DEVICES] = {0};
    for (int i = 0; i < r->n && !failed(r); i++) {
        if (r->op == KQ_COLL_BCAST && i != r->root_pos)
            continue;
        cl_command_queue q = ctx->devices[r->devs[i]].queue;
        cl_int err = clEnqueueReadBuffer(q, r->bufs[i], CL_FALSE, 0, r->bytes, r->stage->host[r->devs[i]], 0, NULL,
                                         &ev[i]);
        if (err == CL_SUCCESS)
            err = clFlush(q);
        if (err != CL_SUCCESS)
            record(r, err, "queueing a device->host copy");
    }
    await_small(r, ev, r->n, "device->host copy");
    float *acc = (float *)r->stage->host[r->devs[r->op == KQ_COLL_BCAST ? r->root_pos : 0]];
    if (!failed(r) && r->op != KQ_COLL_BCAST)
        for (int i = 1; i < r->n; i++)
            combine(r->op, acc, (const float *)r->stage->host[r->devs[i]], r->bytes / sizeof(float));
    /* The writes are left in flight: each device's queue runs them before anything queued
     * later, and the staging memory they read waits for them where it is next taken. */
    for (int i = 0; i < r->n && !failed(r); i++) {
        if (r->op == KQ_COLL_BCAST && i == r->root_pos)
            continue;
        int d = r->devs[i];
        cl_command_queue q = ctx->devices[d].queue;
        cl_int err = clEnqueueWriteBuffer(q, r->bufs[i], CL_FALSE, 0, r->bytes, acc, 0, NULL, &r->m->pending[d]);
        if (err == CL_SUCCESS)
            err = clFlush(q);
        if (err != CL_SUCCESS)
            record(r, err, "queueing a host->device copy");
    }
    return KQCL_OK;
}

static bool takes_small_path(const kqcl_request *r, bool async)
{
    if (async || r->span || r->bytes > SMALL_BYTES || r->n < 2 || (r->op == KQ_COLL_BCAST && r->root_pos < 0))
        return false;
    for (int i = 0; i < r->n; i++)
        if (pocl_basic(&r->ctx->devices[r->devs[i]]))
            return false;
    return true;
}

kqcl_status kq_collective(kqcl_context *ctx, cl_mem *buffers, size_t bytes, int op, int root, int root_rank,
                          bool async, kqcl_request **req)
{
    *req = NULL;
    kqcl_request *r = calloc(1, sizeof *r);
    if (r == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "collective: no host memory");
    pthread_mutex_init(&r->lock, NULL);
    r->ctx = ctx;
    r->span = !(op & KQ_COLL_LOCAL) && kq_mpi_active();
    r->op = op & ~KQ_COLL_LOCAL;
    r->bytes = bytes;
    r->root_pos = -1;
    r->root_rank = root_rank;
    for (int d = 0; d < ctx->n_devices; d++) {
        if (buffers[d] == NULL)
            continue;
        if (d == root)
            r->root_pos = r->n;
        r->devs[r->n] = d;
        r->bufs[r->n++] = buffers[d];
    }
    /* The small path is done with the buffers when it returns (OpenCL keeps a buffer its
     * queued writes use); the others queue copies later, so they hold them. */
    if (takes_small_path(r, async)) {
        r->m = kq_multi_get(ctx);
        kqcl_status st = r->m != NULL ? small_collective(r) : KQCL_ERR_OUT_OF_MEMORY;
        if (st != KQCL_OK) {
            request_free(r);
            return st;
        }
        request_link(r);
        *req = r; /* done; kqcl_request_wait reports what the copies said */
        return KQCL_OK;
    }
    for (int i = 0; i < r->n; i++)
        clRetainMemObject(r->bufs[i]);
    r->retained = true;
    kqcl_status st = prepare(r, &async);
    if (st != KQCL_OK) {
        request_free(r);
        return st;
    }
    if (r->stage != NULL) {
        r->threaded = async && pthread_create(&r->driver, NULL, drive, r) == 0;
        if (!r->threaded)
            drive(r);
    }
    request_link(r);
    *req = r;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_request_wait(kqcl_request *req)
{
    if (req == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_request_wait: req is NULL");
    if (!req->finished)
        request_unlink(req);
    if (req->threaded)
        pthread_join(req->driver, NULL);
    kqcl_context *ctx = req->ctx; /* NULL when the context was destroyed first */
    kqcl_status st = req->status;
    char msg[sizeof req->error];
    memcpy(msg, req->error, sizeof msg);
    request_free(req);
    return st == KQCL_OK ? KQCL_OK : kq_fail(ctx, st, "%s", msg);
}

/* ---- the public collectives ------------------------------------------------------------------------ */

/* The whole copies of t, by device: a replica's, or a whole tensor's one. */
static kqcl_status copies_of(kqcl_context *ctx, const kqcl_tensor *t, const char *call, cl_mem *bufs)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: ctx is NULL", call);
    kq_clear_error(ctx);
    kqcl_status st = kq_check_tensor(ctx, t, call, "t");
    if (st != KQCL_OK)
        return st;
    if (t->split != KQCL_SPLIT_REPLICATE && t->split != KQCL_SPLIT_NONE)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: t must be replicated (or whole)", call);
    if (t->split == KQCL_SPLIT_NONE && t->n_parts > 1) /* replicas are always one buffer a device */
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: t is held in %d buffers (larger than device %d's largest "
                       "allocation); collectives take one buffer a device", call, t->n_parts, t->device);
    memset(bufs, 0, KQ_MAX_DEVICES * sizeof *bufs);
    for (int i = 0; i < t->n_parts; i++)
        bufs[t->parts[i].device] = t->parts[i].buffer;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_allreduce_start(kqcl_context *ctx, kqcl_tensor *t, kqcl_reduce_op op, kqcl_request **req)
{
    cl_mem bufs[KQ_MAX_DEVICES];
    if (req != NULL)
        *req = NULL;
    kqcl_status st = copies_of(ctx, t, "kqcl_allreduce", bufs);
    if (st != KQCL_OK)
        return st;
    if (req == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_allreduce_start: req is NULL");
    if (t->type != KQCL_TYPE_F32)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "kqcl_allreduce: t is %s; all-reduce takes f32", kqcl_type_name(t->type));
    if (op != KQCL_REDUCE_SUM && op != KQCL_REDUCE_MAX && op != KQCL_REDUCE_MIN)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_allreduce: op %d; want SUM, MAX or MIN", (int)op);
    return kq_collective(ctx, bufs, t->bytes, (int)op, -1, 0, true, req);
}

KQCL_API kqcl_status kqcl_allreduce(kqcl_context *ctx, kqcl_tensor *t, kqcl_reduce_op op)
{
    cl_mem bufs[KQ_MAX_DEVICES];
    kqcl_status st = copies_of(ctx, t, "kqcl_allreduce", bufs);
    if (st != KQCL_OK)
        return st;
    if (t->type != KQCL_TYPE_F32)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "kqcl_allreduce: t is %s; all-reduce takes f32", kqcl_type_name(t->type));
    if (op != KQCL_REDUCE_SUM && op != KQCL_REDUCE_MAX && op != KQCL_REDUCE_MIN)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_allreduce: op %d; want SUM, MAX or MIN", (int)op);
    kqcl_request *req = NULL;
    st = kq_collective(ctx, bufs, t->bytes, (int)op, -1, 0, false, &req);
    return st == KQCL_OK ? kqcl_request_wait(req) : st;
}

static kqcl_status broadcast(kqcl_context *ctx, kqcl_tensor *t, int root, bool async, kqcl_request **req)
{
    cl_mem bufs[KQ_MAX_DEVICES];
    kqcl_status st = copies_of(ctx, t, "kqcl_broadcast", bufs);
    if (st != KQCL_OK)
        return st;
    int n_local = ctx->n_devices, ranks = kq_mpi_active() ? kqcl_mpi_size() : 1;
    if (root < 0 || root >= n_local * ranks)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_broadcast: root %d out of range 0..%d", root, n_local * ranks - 1);
    int root_rank = root / n_local, local = root_rank == (ranks > 1 ? kqcl_mpi_rank() : 0) ? root % n_local : -1;
    if (local >= 0 && bufs[local] == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_broadcast: device %d holds no copy", local);
    return kq_collective(ctx, bufs, t->bytes, KQ_COLL_BCAST, local, root_rank, async, req);
}

KQCL_API kqcl_status kqcl_broadcast_start(kqcl_context *ctx, kqcl_tensor *t, int root, kqcl_request **req)
{
    if (req == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_broadcast_start: req is NULL");
    return broadcast(ctx, t, root, true, req);
}

KQCL_API kqcl_status kqcl_broadcast(kqcl_context *ctx, kqcl_tensor *t, int root)
{
    kqcl_request *req = NULL;
    kqcl_status st = broadcast(ctx, t, root, false, &req);
    return st == KQCL_OK ? kqcl_request_wait(req) : st;
}
