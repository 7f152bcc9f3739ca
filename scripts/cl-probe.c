/*
 * cl-probe.c -- where the time of a small host-staged all-reduce goes, in plain OpenCL on the
 * first two GPUs: each way of reading, waiting and writing 16 KiB, timed alone (median of 300,
 * microseconds). Not part of kqcl; a measuring aid for doc/perf.md (run 12).
 *
 *   cc -O2 -o cl-probe scripts/cl-probe.c -lOpenCL -lpthread && ./cl-probe [bytes]
 *
 * Built with -DWITH_KQCL against the library (-Iinclude BUILD/lib/.libs/libkqcl.a -lm), it
 * also times kqcl_allreduce on the same two GPUs in the same way, for comparison.
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe-time.h"

#define REPS 300

typedef struct gpu {
    cl_context ctx;
    cl_command_queue q;
    cl_mem buf, pinned_mem;
    float *pinned; /* mapped CL_MEM_ALLOC_HOST_PTR memory of this device's context */
} gpu;

static gpu g[2];
static size_t bytes = 16384;
static float *pageable[2];

#define CHECK(x)                                                                                                    \
    do {                                                                                                            \
        cl_int e_ = (x);                                                                                            \
        if (e_ != CL_SUCCESS) {                                                                                     \
            fprintf(stderr, "%s:%d: %s -> %d\n", __FILE__, __LINE__, #x, e_);                                        \
            exit(1);                                                                                                \
        }                                                                                                           \
    } while (0)

static void setup(cl_device_id dev, cl_context shared, cl_command_queue_properties props, gpu *out)
{
    cl_int err;
    out->ctx = shared ? shared : clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    out->q = clCreateCommandQueue(out->ctx, dev, props, &err);
    CHECK(err);
    out->buf = clCreateBuffer(out->ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    CHECK(err);
    out->pinned_mem = clCreateBuffer(out->ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL, &err);
    CHECK(err);
    out->pinned = clEnqueueMapBuffer(out->q, out->pinned_mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0, NULL,
                                     NULL, &err);
    CHECK(err);
    memset(out->pinned, 0, bytes);
    CHECK(clEnqueueWriteBuffer(out->q, out->buf, CL_TRUE, 0, bytes, out->pinned, 0, NULL, NULL));
}

typedef void (*step_fn)(void);

static void report(const char *name, step_fn fn)
{
    double t[REPS];
    for (int i = -10; i < REPS; i++) {
        clFinish(g[0].q), clFinish(g[1].q);
        double t0 = now_us();
        fn();
        if (i >= 0)
            t[i] = now_us() - t0;
    }
    clFinish(g[0].q), clFinish(g[1].q);
    sort_samples(t, REPS);
    printf("%-62s %8.1f us  (p10 %.1f, p90 %.1f)\n", name, t[REPS / 2], t[REPS / 10], t[REPS * 9 / 10]);
}

static void sum_into(float *acc, const float *src)
{
    for (size_t i = 0; i < bytes / sizeof(float); i++)
        acc[i] += src[i];
}

static void spin(cl_event *ev, int n)
{
    for (int i = 0; i < n; i++) {
        cl_int st = CL_QUEUED;
        do
            clGetEventInfo(ev[i], CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL);
        while (st > CL_COMPLETE);
    }
}

/* ---- the steps ---- */
static void read_blocking(void) { clEnqueueReadBuffer(g[0].q, g[0].buf, CL_TRUE, 0, bytes, g[0].pinned, 0, NULL, NULL); }
static void read_blocking_pageable(void)
{
    clEnqueueReadBuffer(g[0].q, g[0].buf, CL_TRUE, 0, bytes, pageable[0], 0, NULL, NULL);
}
static void write_blocking(void) { clEnqueueWriteBuffer(g[0].q, g[0].buf, CL_TRUE, 0, bytes, g[0].pinned, 0, NULL, NULL); }
static void read_enqueue_only(void)
{
    clEnqueueReadBuffer(g[0].q, g[0].buf, CL_FALSE, 0, bytes, g[0].pinned, 0, NULL, NULL);
}
static void read_event_wait(void)
{
    cl_event ev;
    clEnqueueReadBuffer(g[0].q, g[0].buf, CL_FALSE, 0, bytes, g[0].pinned, 0, NULL, &ev);
    clFlush(g[0].q);
    clWaitForEvents(1, &ev);
    clReleaseEvent(ev);
}
static void read_event_spin(void)
{
    cl_event ev;
    clEnqueueReadBuffer(g[0].q, g[0].buf, CL_FALSE, 0, bytes, g[0].pinned, 0, NULL, &ev);
    clFlush(g[0].q);
    spin(&ev, 1);
    clReleaseEvent(ev);
}
static void read_finish(void)
{
    clEnqueueReadBuffer(g[0].q, g[0].buf, CL_FALSE, 0, bytes, g[0].pinned, 0, NULL, NULL);
    clFinish(g[0].q);
}
static void two_reads_events(void)
{
    cl_event ev[2];
    for (int d = 0; d < 2; d++) {
        clEnqueueReadBuffer(g[d].q, g[d].buf, CL_FALSE, 0, bytes, g[d].pinned, 0, NULL, &ev[d]);
        clFlush(g[d].q);
    }
    clWaitForEvents(2, ev);
    clReleaseEvent(ev[0]), clReleaseEvent(ev[1]);
}
static void two_reads_spin(void)
{
    cl_event ev[2];
    for (int d = 0; d < 2; d++) {
        clEnqueueReadBuffer(g[d].q, g[d].buf, CL_FALSE, 0, bytes, g[d].pinned, 0, NULL, &ev[d]);
        clFlush(g[d].q);
    }
    spin(ev, 2);
    clReleaseEvent(ev[0]), clReleaseEvent(ev[1]);
}

/* Both devices read (polled) and summed into device 0's pinned memory. */
static void reads_and_sum(void)
{
    two_reads_spin();
    sum_into(g[0].pinned, g[1].pinned);
}
static void two_reads_finish(void)
{
    for (int d = 0; d < 2; d++) {
        clEnqueueReadBuffer(g[d].q, g[d].buf, CL_FALSE, 0, bytes, g[d].pinned, 0, NULL, NULL);
        clFlush(g[d].q);
    }
    clFinish(g[0].q), clFinish(g[1].q);
}
static void two_reads_blocking(void)
{
    for (int d = 0; d < 2; d++)
        clEnqueueReadBuffer(g[d].q, g[d].buf, CL_TRUE, 0, bytes, g[d].pinned, 0, NULL, NULL);
}

static pthread_barrier_t start_line;
static void *reader(void *arg)
{
    int d = (int)(size_t)arg;
    pthread_barrier_wait(&start_line);
    clEnqueueReadBuffer(g[d].q, g[d].buf, CL_TRUE, 0, bytes, g[d].pinned, 0, NULL, NULL);
    return NULL;
}
static void two_reads_threads(void)
{
    pthread_t t;
    pthread_create(&t, NULL, reader, (void *)1);
    pthread_barrier_wait(&start_line);
    clEnqueueReadBuffer(g[0].q, g[0].buf, CL_TRUE, 0, bytes, g[0].pinned, 0, NULL, NULL);
    pthread_join(t, NULL);
}

/* A whole small all-reduce: reads, host sum, writes; `done` waits for the writes too. */
static void allreduce(int wait_kind, int done)
{
    cl_event ev[2];
    for (int d = 0; d < 2; d++) {
        clEnqueueReadBuffer(g[d].q, g[d].buf, wait_kind == 2, 0, bytes, g[d].pinned, 0, NULL, wait_kind == 2 ? NULL : &ev[d]);
        clFlush(g[d].q);
    }
    if (wait_kind == 0)
        clWaitForEvents(2, ev);
    else if (wait_kind == 1)
        spin(ev, 2);
    if (wait_kind != 2)
        clReleaseEvent(ev[0]), clReleaseEvent(ev[1]);
    sum_into(g[0].pinned, g[1].pinned);
    for (int d = 0; d < 2; d++) {
        clEnqueueWriteBuffer(g[d].q, g[d].buf, CL_FALSE, 0, bytes, g[0].pinned, 0, NULL, NULL);
        clFlush(g[d].q);
    }
    if (done)
        clFinish(g[0].q), clFinish(g[1].q);
}
static void ar_events(void) { allreduce(0, 0); }
static void ar_spin(void) { allreduce(1, 0); }
static void ar_blocking(void) { allreduce(2, 0); }
static void ar_events_done(void) { allreduce(0, 1); }
static void ar_spin_done(void) { allreduce(1, 1); }
static void ar_blocking_done(void) { allreduce(2, 1); }

/* Raw all-reduce as above, but writes keep events released at the next call (as kqcl's pending
 * writes) */
static cl_event kept[2];
static void ar_kept_events(void)
{
    for (int d = 0; d < 2; d++)
        if (kept[d]) {
            cl_int st = CL_QUEUED;
            clGetEventInfo(kept[d], CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL);
            if (st > CL_COMPLETE)
                clWaitForEvents(1, &kept[d]);
            clReleaseEvent(kept[d]);
            kept[d] = NULL;
        }
    reads_and_sum();
    for (int d = 0; d < 2; d++) {
        clEnqueueWriteBuffer(g[d].q, g[d].buf, CL_FALSE, 0, bytes, g[0].pinned, 0, NULL, &kept[d]);
        clFlush(g[d].q);
    }
}

/* As ar_spin, each device written from its own context's pinned memory (a copy first). */
static void ar_own_slot(void)
{
    reads_and_sum();
    memcpy(g[1].pinned, g[0].pinned, bytes);
    for (int d = 0; d < 2; d++) {
        clEnqueueWriteBuffer(g[d].q, g[d].buf, CL_FALSE, 0, bytes, g[d].pinned, 0, NULL, NULL);
        clFlush(g[d].q);
    }
}

static void run_all(const char *label)
{
    printf("== %s, %zu bytes\n", label, bytes);
    report("device 0: blocking read (pinned)", read_blocking);
    report("device 0: blocking read (malloc)", read_blocking_pageable);
    report("device 0: blocking write (pinned)", write_blocking);
    report("device 0: non-blocking read, the enqueue call alone", read_enqueue_only);
    report("device 0: non-blocking read + clWaitForEvents", read_event_wait);
    report("device 0: non-blocking read + polling the event", read_event_spin);
    report("device 0: non-blocking read + clFinish", read_finish);
    report("both: non-blocking reads + clWaitForEvents", two_reads_events);
    report("both: non-blocking reads + polling", two_reads_spin);
    report("both: non-blocking reads + clFinish each", two_reads_finish);
    report("both: blocking reads one after the other", two_reads_blocking);
    report("both: blocking reads on two threads", two_reads_threads);
    report("all-reduce, reads waited by clWaitForEvents, writes queued", ar_events);
    report("all-reduce, reads polled, writes queued", ar_spin);
    report("all-reduce, blocking reads, writes queued", ar_blocking);
    report("all-reduce, clWaitForEvents, until written (clFinish)", ar_events_done);
    report("all-reduce, polled, until written (clFinish)", ar_spin_done);
    report("all-reduce, blocking reads, until written (clFinish)", ar_blocking_done);
    report("all-reduce, polled, writes queued with events kept", ar_kept_events);
    report("all-reduce, polled, each device written from its own pinned memory", ar_own_slot);
}

#ifdef WITH_KQCL
#include "kqcl.h"

static kqcl_context *kctx;
static kqcl_tensor *kt;
static void kq_ar(void) { kqcl_allreduce(kctx, kt, KQCL_REDUCE_SUM); }
static void kq_ar_done(void)
{
    kqcl_allreduce(kctx, kt, KQCL_REDUCE_SUM);
    kqcl_finish(kctx);
}

#ifdef WITH_KQCL_INTERNALS /* -Ilib: the same raw steps on kqcl's own queues and buffers */
#include "tensor.h"
static gpu saved[2];
static void use_kqcl_objects(void)
{
    saved[0] = g[0], saved[1] = g[1];
    for (int d = 0; d < 2; d++) {
        cl_int err;
        g[d].ctx = kctx->devices[d].cl_ctx;
        g[d].q = kctx->devices[d].queue;
        g[d].buf = kt->parts[d].buffer;
        g[d].pinned_mem = clCreateBuffer(g[d].ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL, &err);
        g[d].pinned = clEnqueueMapBuffer(g[d].q, g[d].pinned_mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0,
                                         NULL, NULL, &err);
    }
}
#endif

static void run_kqcl(void)
{
    if (kqcl_context_create(getenv("PROBE_ANY") ? "all" : "gpu", &kctx) != KQCL_OK ||
        kqcl_tensor_create_split(kctx, KQCL_TYPE_F32, 1, (int64_t)(bytes / 4), KQCL_SPLIT_REPLICATE, &kt) != KQCL_OK) {
        fprintf(stderr, "cl-probe: kqcl: %s\n", kqcl_last_error(kctx));
        return;
    }
    printf("== kqcl_allreduce on %d devices, %zu bytes\n", kqcl_device_count(kctx), bytes);
    report("kqcl_allreduce, until it returns", kq_ar);
    report("kqcl_allreduce + kqcl_finish", kq_ar_done);
#ifdef WITH_KQCL_INTERNALS
    use_kqcl_objects();
    report("raw steps on kqcl's queues and buffers, writes queued", ar_spin);
    report("raw steps on kqcl's queues and buffers, events kept", ar_kept_events);
    report("kqcl_allreduce again, until it returns", kq_ar);
    g[0] = saved[0], g[1] = saved[1];
#endif
    kqcl_context_set_timing(kctx, 1);
    report("kqcl_allreduce, until it returns, device timing on", kq_ar);
    kqcl_tensor_destroy(kt);
    kqcl_context_destroy(kctx);
}
#endif

int main(int argc, char **argv)
{
    if (argc > 1)
        bytes = strtoul(argv[1], NULL, 10);
    cl_platform_id plats[8];
    cl_uint np = 0;
    CHECK(clGetPlatformIDs(8, plats, &np));
    cl_device_id devs[2];
    cl_uint nd = 0;
    for (cl_uint p = 0; p < np && nd < 2; p++) {
        cl_uint got = 0;
        cl_device_type type = getenv("PROBE_ANY") ? CL_DEVICE_TYPE_ALL : CL_DEVICE_TYPE_GPU; /* PoCL, to try it */
        if (clGetDeviceIDs(plats[p], type, 2, devs, &got) == CL_SUCCESS && got >= 2)
            nd = 2;
    }
    if (nd < 2) {
        fprintf(stderr, "cl-probe: wants two GPUs of one platform\n");
        return 77;
    }
    pthread_barrier_init(&start_line, NULL, 2);
    pageable[0] = calloc(1, bytes), pageable[1] = calloc(1, bytes);
    setup(devs[0], NULL, 0, &g[0]);
    setup(devs[1], NULL, 0, &g[1]);
    run_all("a context per device");
#ifdef WITH_KQCL
    run_kqcl();
#endif
    setup(devs[0], NULL, CL_QUEUE_PROFILING_ENABLE, &g[0]);
    setup(devs[1], NULL, CL_QUEUE_PROFILING_ENABLE, &g[1]);
    run_all("a context per device, queues with profiling (as kqcl's compute queues)");
    cl_int err;
    cl_context shared = clCreateContext(NULL, 2, devs, NULL, NULL, &err);
    CHECK(err);
    setup(devs[0], shared, 0, &g[0]);
    setup(devs[1], shared, 0, &g[1]);
    run_all("one context for both devices");
    return 0;
}
